//! The Mobility Header checksum (RFC 6275 §6.1.1): the Internet checksum over
//! the IPv6 pseudo-header (RFC 8200 §8.1) with next header 135, then the
//! whole Mobility Header with its checksum field taken as zero.

use std::net::Ipv6Addr;

/// IP protocol number of the Mobility Header.
pub const IPPROTO_MH: u8 = 135;

fn add_bytes(mut sum: u32, bytes: &[u8]) -> u32 {
    let mut chunks = bytes.chunks_exact(2);
    for c in &mut chunks {
        sum += u32::from(u16::from_be_bytes([c[0], c[1]]));
    }
    if let [last] = chunks.remainder() {
        sum += u32::from(*last) << 8;
    }
    sum
}

fn fold(mut sum: u32) -> u16 {
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    sum as u16
}

/// One's complement sum of the pseudo-header for an upper-layer packet.
pub fn pseudo_header_sum(src: &Ipv6Addr, dst: &Ipv6Addr, next_header: u8, len: u32) -> u32 {
    let mut sum = add_bytes(0, &src.octets());
    sum = add_bytes(sum, &dst.octets());
    sum += len >> 16;
    sum += len & 0xffff;
    sum += u32::from(next_header);
    sum
}

/// The checksum to put in a Mobility Header whose bytes are `mh`, with the
/// checksum field (octets 4–5) ignored.
pub fn mh_checksum(src: &Ipv6Addr, dst: &Ipv6Addr, mh: &[u8]) -> u16 {
    let mut sum = pseudo_header_sum(src, dst, IPPROTO_MH, mh.len() as u32);
    let (head, rest) = mh.split_at(mh.len().min(4));
    sum = add_bytes(sum, head);
    if rest.len() >= 2 {
        sum = add_bytes(sum, &rest[2..]);
    }
    !fold(sum)
}

/// Internet checksum of a UDP datagram over IPv6 (used by the traffic tools
/// and the tests that build whole packets).
pub fn upper_layer_checksum(src: &Ipv6Addr, dst: &Ipv6Addr, proto: u8, data: &[u8]) -> u16 {
    let sum = pseudo_header_sum(src, dst, proto, data.len() as u32);
    let c = !fold(add_bytes(sum, data));
    if c == 0 && proto == 17 {
        0xffff
    } else {
        c
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn checksum_of_message_with_its_checksum_verifies_to_zero() {
        let src: Ipv6Addr = "2001:db8::1".parse().unwrap();
        let dst: Ipv6Addr = "2001:db8::2".parse().unwrap();
        let mut mh = vec![59, 1, 5, 0, 0, 0, 0, 1, 0x82, 0, 0, 10, 1, 2, 0, 0];
        let c = mh_checksum(&src, &dst, &mh);
        mh[4..6].copy_from_slice(&c.to_be_bytes());
        let total = pseudo_header_sum(&src, &dst, IPPROTO_MH, mh.len() as u32);
        assert_eq!(fold(add_bytes(total, &mh)), 0xffff);
    }
}
