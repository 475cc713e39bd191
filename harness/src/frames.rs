//! Hand-made Ethernet frames put on a link as they are: what an attacker
//! on that link could send, with any source address, bypassing the
//! sender's own stack (its routes, its source checks, its neighbour cache).
//! The spoofing steps of a run and the daemons' hardening tests both send
//! through here.

use std::io;
use std::net::Ipv6Addr;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};

use etherparse::{IpNumber, PacketBuilder};

/// The Mobility Header's IPv6 next header (RFC 6275 §6.1).
const MOBILITY_HEADER: u8 = 135;

/// An Ethernet frame holding an IPv6 packet (traffic class and flow label
/// 0, no extension headers) of next header `next_header` and hop limit
/// `hop_limit` that carries `payload` from `src` to `dst`, whatever node
/// owns `src`. The payload goes as given: any checksum in it is the
/// caller's, so a test can send a wrong one.
pub fn ipv6_frame(
    dst_mac: [u8; 6],
    src_mac: [u8; 6],
    src: Ipv6Addr,
    dst: Ipv6Addr,
    next_header: u8,
    hop_limit: u8,
    payload: &[u8],
) -> Result<Vec<u8>, String> {
    let builder = PacketBuilder::ethernet2(src_mac, dst_mac).ipv6(src.octets(), dst.octets(), hop_limit);
    let mut frame = Vec::with_capacity(builder.size(payload.len()));
    builder
        .write(&mut frame, IpNumber(next_header), payload)
        .map_err(|e| format!("cannot build an IPv6 frame with a payload of {} octets: {e}", payload.len()))?;
    Ok(frame)
}

/// An Ethernet frame holding an IPv6 packet (hop limit 64) with the
/// Mobility Header `mh` from `src` to `dst`, whatever node owns `src`.
pub fn mh_frame(
    dst_mac: [u8; 6],
    src_mac: [u8; 6],
    src: Ipv6Addr,
    dst: Ipv6Addr,
    mh: &[u8],
) -> Result<Vec<u8>, String> {
    ipv6_frame(dst_mac, src_mac, src, dst, MOBILITY_HEADER, 64, mh)
}

/// The link-local address an interface with `mac` takes by modified
/// EUI-64 (RFC 4291 Appendix A): the source of its RAs and RSs.
pub fn link_local(mac: [u8; 6]) -> Ipv6Addr {
    Ipv6Addr::new(
        0xfe80,
        0,
        0,
        0,
        u16::from_be_bytes([mac[0] ^ 0x02, mac[1]]),
        u16::from_be_bytes([mac[2], 0xff]),
        u16::from_be_bytes([0xfe, mac[3]]),
        u16::from_be_bytes([mac[4], mac[5]]),
    )
}

/// Sends `frame` out of `iface` of the calling thread's namespace through
/// a packet socket: the frame goes on the link as it is, source and all.
/// The link-layer destination is the frame's own first six octets.
pub fn send_frame(iface: &str, frame: &[u8]) -> io::Result<()> {
    // An Ethernet header is 14 octets: destination, source, EtherType.
    let dst: [u8; 6] = frame.get(..14).and_then(|h| h[..6].try_into().ok()).ok_or_else(|| {
        io::Error::new(io::ErrorKind::InvalidInput, format!("a frame of {} octets has no Ethernet header", frame.len()))
    })?;
    let index = nix::net::if_::if_nametoindex(iface)
        .map_err(|e| io::Error::new(io::Error::from(e).kind(), format!("no interface {iface}: {e}")))?;
    let ifindex = i32::try_from(index)
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, format!("{iface}'s index {index} is out of range")))?;
    // SAFETY: a plain socket call; a non-negative result is a descriptor
    // this function alone owns, so OwnedFd may close it.
    let fd = unsafe { libc::socket(libc::AF_PACKET, libc::SOCK_RAW | libc::SOCK_CLOEXEC, 0) };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: `fd` was just opened above and is owned by nothing else.
    let fd = unsafe { OwnedFd::from_raw_fd(fd) };
    // SAFETY: sockaddr_ll is plain data for which all zeroes is valid.
    let mut to: libc::sockaddr_ll = unsafe { std::mem::zeroed() };
    to.sll_family = libc::AF_PACKET as u16;
    to.sll_ifindex = ifindex;
    to.sll_halen = 6;
    to.sll_addr[..6].copy_from_slice(&dst);
    // SAFETY: `fd` is an open socket, `frame` is valid for `frame.len()`
    // octets, and `to` is a filled sockaddr_ll of the size passed.
    let n = unsafe {
        libc::sendto(
            fd.as_raw_fd(),
            frame.as_ptr().cast(),
            frame.len(),
            0,
            (&to as *const libc::sockaddr_ll).cast(),
            std::mem::size_of::<libc::sockaddr_ll>() as libc::socklen_t,
        )
    };
    if n < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const DST_MAC: [u8; 6] = [0x02, 0, 0, 0, 0, 1];
    const SRC_MAC: [u8; 6] = [0x02, 0, 0, 0, 0, 2];

    fn addr(s: &str) -> Ipv6Addr {
        s.parse().expect("a test address")
    }

    #[test]
    fn an_mh_frame_is_the_ethernet_and_ipv6_headers_then_the_mh_as_given() {
        let (src, dst) = (addr("2001:db8:ffff::11"), addr("2001:db8:ffff::1"));
        let mh = [59u8, 1, 5, 0, 0xde, 0xad, 0xbe, 0xef];
        let f = mh_frame(DST_MAC, SRC_MAC, src, dst, &mh).expect("a frame");
        // The layout written out octet by octet, as RFC 8200 §3 draws it.
        let mut want = Vec::new();
        want.extend_from_slice(&DST_MAC);
        want.extend_from_slice(&SRC_MAC);
        want.extend_from_slice(&[0x86, 0xdd]);
        want.extend_from_slice(&[0x60, 0, 0, 0]);
        want.extend_from_slice(&(mh.len() as u16).to_be_bytes());
        want.extend_from_slice(&[135, 64]);
        want.extend_from_slice(&src.octets());
        want.extend_from_slice(&dst.octets());
        want.extend_from_slice(&mh);
        assert_eq!(f, want);
    }

    #[test]
    fn an_ipv6_frame_carries_its_next_header_and_hop_limit_and_leaves_the_payload_alone() {
        let (src, dst) = (addr("fe80::1"), addr("ff02::1"));
        // An ICMPv6 body with a deliberately wrong checksum: it must stay.
        let body = [134u8, 0, 0x12, 0x34, 64, 0, 0, 0];
        let f = ipv6_frame(DST_MAC, SRC_MAC, src, dst, 58, 255, &body).expect("a frame");
        assert_eq!(f.len(), 14 + 40 + body.len());
        assert_eq!(&f[18..20], &(body.len() as u16).to_be_bytes());
        assert_eq!(f[20], 58);
        assert_eq!(f[21], 255);
        assert_eq!(&f[54..], &body);
    }

    #[test]
    fn a_payload_too_long_for_ipv6_is_refused() {
        let big = vec![0u8; usize::from(u16::MAX) + 1];
        let e = mh_frame(DST_MAC, SRC_MAC, Ipv6Addr::LOCALHOST, Ipv6Addr::LOCALHOST, &big).expect_err("too long");
        assert!(e.contains("65536"), "{e}");
    }

    #[test]
    fn a_link_local_flips_the_universal_bit_and_puts_fffe_in_the_middle() {
        // RFC 4291 Appendix A's example, 34-56-78-9A-BC-DE.
        let ll = link_local([0x34, 0x56, 0x78, 0x9a, 0xbc, 0xde]);
        assert_eq!(ll, addr("fe80::3656:78ff:fe9a:bcde"));
        assert_eq!(link_local(SRC_MAC), addr("fe80::ff:fe00:2"));
    }

    #[test]
    fn a_frame_shorter_than_an_ethernet_header_is_not_sent() {
        let e = send_frame("lo", &[0u8; 13]).expect_err("too short");
        assert_eq!(e.kind(), io::ErrorKind::InvalidInput);
    }
}
