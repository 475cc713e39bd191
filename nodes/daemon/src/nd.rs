//! Neighbour Discovery (RFC 4861) messages the MN and the MAG exchange on
//! an access link: RS, RA with Prefix Information, NS and NA, inside
//! Ethernet frames for the MN's packet sockets.

use std::net::Ipv6Addr;

use pmip_proto::Prefix;
use pmip_wire::checksum::upper_layer_checksum;

pub const ETH_P_IPV6: u16 = 0x86dd;
pub const ICMPV6: u8 = 58;
pub const RS: u8 = 133;
pub const RA: u8 = 134;
pub const NS: u8 = 135;
pub const NA: u8 = 136;

pub const ALL_NODES: Ipv6Addr = Ipv6Addr::new(0xff02, 0, 0, 0, 0, 0, 0, 1);
pub const ALL_ROUTERS: Ipv6Addr = Ipv6Addr::new(0xff02, 0, 0, 0, 0, 0, 0, 2);

/// The Ethernet address an IPv6 multicast group maps to (RFC 2464 §7).
pub fn multicast_mac(group: Ipv6Addr) -> [u8; 6] {
    let o = group.octets();
    [0x33, 0x33, o[12], o[13], o[14], o[15]]
}

/// An IPv6 packet carrying `payload`, hop limit 255 as ND requires.
pub fn ipv6(src: Ipv6Addr, dst: Ipv6Addr, next_header: u8, payload: &[u8]) -> Vec<u8> {
    let mut p = vec![0x60, 0, 0, 0];
    p.extend_from_slice(&(payload.len() as u16).to_be_bytes());
    p.push(next_header);
    p.push(255);
    p.extend_from_slice(&src.octets());
    p.extend_from_slice(&dst.octets());
    p.extend_from_slice(payload);
    p
}

/// An ICMPv6 message with its checksum.
pub fn icmpv6(src: Ipv6Addr, dst: Ipv6Addr, body: Vec<u8>) -> Vec<u8> {
    let mut body = body;
    body[2] = 0;
    body[3] = 0;
    let c = upper_layer_checksum(&src, &dst, ICMPV6, &body);
    body[2..4].copy_from_slice(&c.to_be_bytes());
    ipv6(src, dst, ICMPV6, &body)
}

pub fn ethernet(dst: [u8; 6], src: [u8; 6], packet: &[u8]) -> Vec<u8> {
    let mut f = Vec::with_capacity(14 + packet.len());
    f.extend_from_slice(&dst);
    f.extend_from_slice(&src);
    f.extend_from_slice(&ETH_P_IPV6.to_be_bytes());
    f.extend_from_slice(packet);
    f
}

fn link_layer_option(kind: u8, mac: [u8; 6]) -> [u8; 8] {
    [kind, 1, mac[0], mac[1], mac[2], mac[3], mac[4], mac[5]]
}

/// Router Solicitation with the Source Link-Layer Address option.
pub fn router_solicitation(mac: [u8; 6]) -> Vec<u8> {
    let mut b = vec![RS, 0, 0, 0, 0, 0, 0, 0];
    b.extend_from_slice(&link_layer_option(1, mac));
    b
}

/// Router Advertisement body (the kernel fills the checksum on a raw
/// ICMPv6 socket): the MAG as default router, one Prefix Information
/// option per home network prefix, on-link and autonomous.
pub fn router_advertisement(mac: [u8; 6], prefixes: &[Prefix], router_lifetime: u16) -> Vec<u8> {
    let mut b = vec![RA, 0, 0, 0, 64, 0];
    b.extend_from_slice(&router_lifetime.to_be_bytes());
    b.extend_from_slice(&[0; 8]);
    b.extend_from_slice(&link_layer_option(1, mac));
    for p in prefixes {
        b.extend_from_slice(&[3, 4, p.prefix_len(), 0xc0]);
        b.extend_from_slice(&86_400u32.to_be_bytes());
        b.extend_from_slice(&14_400u32.to_be_bytes());
        b.extend_from_slice(&[0; 4]);
        b.extend_from_slice(&p.addr().octets());
    }
    b
}

/// Neighbour Advertisement for `target`: solicited, override, with the
/// Target Link-Layer Address option.
pub fn neighbour_advertisement(target: Ipv6Addr, mac: [u8; 6], solicited: bool) -> Vec<u8> {
    let flags: u8 = if solicited { 0x60 } else { 0x20 };
    let mut b = vec![NA, 0, 0, 0, flags, 0, 0, 0];
    b.extend_from_slice(&target.octets());
    b.extend_from_slice(&link_layer_option(2, mac));
    b
}

/// What an MN cares about in an ICMPv6 message off its access link.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Nd {
    Ra { prefixes: Vec<Prefix>, router_mac: Option<[u8; 6]> },
    Ns { target: Ipv6Addr },
    Rs { mac: Option<[u8; 6]> },
    Other,
}

fn options(mut o: &[u8]) -> Vec<(u8, &[u8])> {
    let mut out = Vec::new();
    while o.len() >= 8 {
        let len = usize::from(o[1]) * 8;
        if len == 0 || len > o.len() {
            break;
        }
        out.push((o[0], &o[..len]));
        o = &o[len..];
    }
    out
}

fn mac_of(opt: &[u8]) -> Option<[u8; 6]> {
    opt.get(2..8).and_then(|m| m.try_into().ok())
}

/// Reads an ICMPv6 message body (after the IPv6 header).
pub fn parse(icmp: &[u8]) -> Nd {
    match icmp.first() {
        Some(&RA) if icmp.len() >= 16 => {
            let mut prefixes = Vec::new();
            let mut router_mac = None;
            for (kind, opt) in options(&icmp[16..]) {
                match kind {
                    1 => router_mac = mac_of(opt),
                    3 if opt.len() == 32 => {
                        let mut a = [0u8; 16];
                        a.copy_from_slice(&opt[16..32]);
                        prefixes.push(Prefix::new(a.into(), opt[2]));
                    }
                    _ => {}
                }
            }
            Nd::Ra { prefixes, router_mac }
        }
        Some(&NS) if icmp.len() >= 24 => {
            let mut a = [0u8; 16];
            a.copy_from_slice(&icmp[8..24]);
            Nd::Ns { target: a.into() }
        }
        Some(&RS) if icmp.len() >= 8 => {
            Nd::Rs { mac: options(&icmp[8..]).into_iter().find(|(k, _)| *k == 1).and_then(|(_, o)| mac_of(o)) }
        }
        _ => Nd::Other,
    }
}

/// Why a Neighbour Discovery message is not valid (RFC 4861 §6.1.1 for
/// an RS, §6.1.2 for an RA): one that only a node on the link itself can
/// send, with hop limit 255 (a router would have lowered it), a link-local
/// source for an RA (a link-local or a router's own address for an RS),
/// ICMP code 0, and a length that holds the fixed part.
pub fn invalid_router_message(hop_limit: u8, src: Ipv6Addr, icmp: &[u8]) -> Option<&'static str> {
    let link_local = src.segments()[0] & 0xffc0 == 0xfe80;
    let (kind, min) = match icmp.first() {
        Some(&RA) => (RA, 16),
        Some(&RS) => (RS, 8),
        _ => return Some("not an RS or an RA"),
    };
    if hop_limit != 255 {
        return Some("hop limit is not 255: it did not come from the link");
    }
    if icmp.len() < min {
        return Some("shorter than its fixed part");
    }
    if icmp[1] != 0 {
        return Some("ICMP code is not 0");
    }
    if !link_local {
        return Some(if kind == RA {
            "an RA must come from a link-local address"
        } else {
            "an RS must come from a link-local address"
        });
    }
    // Every option must have a non-zero length and fit.
    let mut o = &icmp[min..];
    while !o.is_empty() {
        let len = usize::from(*o.get(1).unwrap_or(&0)) * 8;
        if len == 0 || len > o.len() {
            return Some("an option has length 0 or runs past the end");
        }
        o = &o[len..];
    }
    None
}

/// The same for a whole IPv6 packet as an MN's packet socket takes it,
/// with the ICMPv6 checksum checked too (the kernel checks nothing there).
pub fn invalid_router_packet(pkt: &[u8]) -> Option<&'static str> {
    if pkt.len() < 40 || pkt[0] >> 4 != 6 || pkt[6] != ICMPV6 {
        return Some("not an ICMPv6 packet without extension headers");
    }
    let len = usize::from(u16::from_be_bytes([pkt[4], pkt[5]]));
    let Some(icmp) = pkt.get(40..40 + len) else { return Some("shorter than its payload length") };
    let src = Ipv6Addr::from(<[u8; 16]>::try_from(&pkt[8..24]).unwrap_or_default());
    let dst = Ipv6Addr::from(<[u8; 16]>::try_from(&pkt[24..40]).unwrap_or_default());
    if upper_layer_checksum(&src, &dst, ICMPV6, icmp) != 0 {
        return Some("ICMPv6 checksum is wrong");
    }
    invalid_router_message(pkt[7], src, icmp)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_on_link_router_messages_with_a_good_checksum_are_valid() {
        let p: Prefix = "2001:db8:1::/64".parse().unwrap();
        let ll: Ipv6Addr = "fe80::1".parse().unwrap();
        let ra = icmpv6(ll, ALL_NODES, router_advertisement([2, 0, 0, 0, 0, 9], &[p], 1800));
        assert_eq!(invalid_router_packet(&ra), None);
        let mut hop = ra.clone();
        hop[7] = 64;
        assert!(invalid_router_packet(&hop).unwrap().contains("hop limit"));
        let mut sum = ra.clone();
        sum[42] ^= 0xff;
        assert!(invalid_router_packet(&sum).unwrap().contains("checksum"));
        let global: Ipv6Addr = "2001:db8::1".parse().unwrap();
        let off_link = icmpv6(global, ALL_NODES, router_advertisement([2, 0, 0, 0, 0, 9], &[p], 1800));
        assert!(invalid_router_packet(&off_link).unwrap().contains("link-local"));
        let mut code = ra.clone();
        code[41] = 1;
        assert!(invalid_router_packet(&code).is_some());
        assert!(invalid_router_packet(&ra[..45]).is_some());
        let rs = router_solicitation([2, 0, 0, 0, 0, 7]);
        assert_eq!(invalid_router_message(255, ll, &rs), None);
        assert!(invalid_router_message(254, ll, &rs).is_some());
        assert!(invalid_router_message(255, Ipv6Addr::UNSPECIFIED, &rs).is_some());
        let mut zero = rs.clone();
        zero[9] = 0;
        assert!(invalid_router_message(255, ll, &zero).is_some());
    }

    #[test]
    fn an_ra_carries_its_prefixes_and_router_mac_back() {
        let p: Prefix = "2001:db8:1::/64".parse().unwrap();
        let ra = router_advertisement([2, 0, 0, 0, 0, 9], &[p], 1800);
        assert_eq!(parse(&ra), Nd::Ra { prefixes: vec![p], router_mac: Some([2, 0, 0, 0, 0, 9]) });
        let rs = router_solicitation([2, 0, 0, 0, 0, 7]);
        assert_eq!(parse(&rs), Nd::Rs { mac: Some([2, 0, 0, 0, 0, 7]) });
    }

    #[test]
    fn icmpv6_checksum_verifies() {
        let src: Ipv6Addr = "fe80::1".parse().unwrap();
        let pkt = icmpv6(src, ALL_ROUTERS, router_solicitation([2, 0, 0, 0, 0, 7]));
        let body = &pkt[40..];
        // Summing the message with its checksum over the pseudo-header gives 0.
        assert_eq!(upper_layer_checksum(&src, &ALL_ROUTERS, ICMPV6, body), 0);
    }
}
