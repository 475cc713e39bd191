//! Neighbour Discovery (RFC 4861) messages the MN and the MAG exchange on
//! an access link: RS, RA with Prefix Information, NS and NA, inside
//! Ethernet frames for the MN's packet sockets. Headers, options and
//! checksums are etherparse's; this module only says which to send and
//! which to believe.

use std::net::Ipv6Addr;

use etherparse::icmpv6::{
    Icmpv6PayloadSlice, NdpOptionHeader, NdpOptionType, NeighborAdvertisementHeader, PrefixInformation,
    PrefixInformationOptionSlice, RouterAdvertisementHeader, RouterAdvertisementPayload,
};
use etherparse::{
    EtherType, Ethernet2Header, Icmpv6Header, Icmpv6Slice, Icmpv6Type, IpNumber, Ipv6Header, Ipv6HeaderSlice,
};
use pmip_proto::Prefix;
use pmip_wire::checksum::upper_layer_checksum;

pub const ETH_P_IPV6: u16 = 0x86dd;
pub const ICMPV6: u8 = 58;
pub const RS: u8 = 133;
pub const RA: u8 = 134;

pub const ALL_NODES: Ipv6Addr = Ipv6Addr::new(0xff02, 0, 0, 0, 0, 0, 0, 1);
pub const ALL_ROUTERS: Ipv6Addr = Ipv6Addr::new(0xff02, 0, 0, 0, 0, 0, 0, 2);

/// The option types of RFC 4861 §4.6 this module writes.
const SOURCE_LINK_LAYER_ADDRESS: u8 = 1;
const TARGET_LINK_LAYER_ADDRESS: u8 = 2;

/// The Ethernet address an IPv6 multicast group maps to (RFC 2464 §7).
pub fn multicast_mac(group: Ipv6Addr) -> [u8; 6] {
    let o = group.octets();
    [0x33, 0x33, o[12], o[13], o[14], o[15]]
}

/// An IPv6 packet carrying `payload`, hop limit 255 as ND requires.
pub fn ipv6(src: Ipv6Addr, dst: Ipv6Addr, next_header: u8, payload: &[u8]) -> Vec<u8> {
    let header = Ipv6Header {
        // A payload longer than 64 KiB cannot be an ND message; the
        // header then says 0 and the receiver drops it as malformed.
        payload_length: u16::try_from(payload.len()).unwrap_or(0),
        next_header: IpNumber(next_header),
        hop_limit: 255,
        source: src.octets(),
        destination: dst.octets(),
        ..Default::default()
    };
    let mut p = header.to_bytes().to_vec();
    p.extend_from_slice(payload);
    p
}

/// An ICMPv6 message (`body`: its header, checksum field any value, and
/// what follows) with its checksum, in an IPv6 packet. The sum is over
/// the bytes sent, not over a parsed and re-encoded header, which would
/// leave out flags and reserved bits the parser does not keep.
pub fn icmpv6(src: Ipv6Addr, dst: Ipv6Addr, body: Vec<u8>) -> Vec<u8> {
    let mut body = body;
    if body.len() >= 4 {
        body[2..4].copy_from_slice(&[0, 0]);
        let c = upper_layer_checksum(&src, &dst, ICMPV6, &body);
        body[2..4].copy_from_slice(&c.to_be_bytes());
    }
    ipv6(src, dst, ICMPV6, &body)
}

pub fn ethernet(dst: [u8; 6], src: [u8; 6], packet: &[u8]) -> Vec<u8> {
    let header = Ethernet2Header { source: src, destination: dst, ether_type: EtherType::IPV6 };
    let mut f = Vec::with_capacity(Ethernet2Header::LEN + packet.len());
    f.extend_from_slice(&header.to_bytes());
    f.extend_from_slice(packet);
    f
}

fn link_layer_option(kind: u8, mac: [u8; 6]) -> [u8; 8] {
    [kind, 1, mac[0], mac[1], mac[2], mac[3], mac[4], mac[5]]
}

/// Router Solicitation with the Source Link-Layer Address option.
pub fn router_solicitation(mac: [u8; 6]) -> Vec<u8> {
    let mut b = Icmpv6Header::new(Icmpv6Type::RouterSolicitation).to_bytes().to_vec();
    b.extend_from_slice(&link_layer_option(SOURCE_LINK_LAYER_ADDRESS, mac));
    b
}

/// Router Advertisement (checksum left to [`icmpv6`]): the MAG as default
/// router, one Prefix Information option per home network prefix,
/// on-link and autonomous.
pub fn router_advertisement(mac: [u8; 6], prefixes: &[Prefix], router_lifetime: u16) -> Vec<u8> {
    let ra = RouterAdvertisementHeader {
        cur_hop_limit: 64,
        managed_address_config: false,
        other_config: false,
        router_lifetime,
    };
    let mut b = Icmpv6Header::new(Icmpv6Type::RouterAdvertisement(ra)).to_bytes().to_vec();
    b.extend_from_slice(&RouterAdvertisementPayload { reachable_time: 0, retrans_timer: 0 }.to_bytes());
    b.extend_from_slice(&link_layer_option(SOURCE_LINK_LAYER_ADDRESS, mac));
    for p in prefixes {
        let info = PrefixInformation {
            prefix_length: p.prefix_len(),
            on_link: true,
            autonomous_address_configuration: true,
            valid_lifetime: 86_400,
            preferred_lifetime: 14_400,
            prefix: p.addr().octets(),
        };
        b.extend_from_slice(&info.to_bytes());
    }
    b
}

/// Neighbour Advertisement for `target`: solicited, override, with the
/// Target Link-Layer Address option.
pub fn neighbour_advertisement(target: Ipv6Addr, mac: [u8; 6], solicited: bool) -> Vec<u8> {
    let na = NeighborAdvertisementHeader { router: false, solicited, r#override: true };
    let mut b = Icmpv6Header::new(Icmpv6Type::NeighborAdvertisement(na)).to_bytes().to_vec();
    b.extend_from_slice(&target.octets());
    b.extend_from_slice(&link_layer_option(TARGET_LINK_LAYER_ADDRESS, mac));
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

/// Each option whole, by its header's length alone (RFC 4861 §4.6): an
/// option of a known type but an unexpected length is handed on like any
/// other, for the reader to skip, as a receiver must; `Err` at an option
/// of length 0 or one that runs past the end, after which nothing is read.
fn options(mut o: &[u8]) -> impl Iterator<Item = Result<(NdpOptionType, &[u8]), ()>> {
    std::iter::from_fn(move || {
        if o.is_empty() {
            return None;
        }
        let len = NdpOptionHeader::from_slice(o).ok().map(|(h, _)| h.byte_len()).filter(|n| *n > 0 && *n <= o.len());
        let Some(len) = len else {
            o = &[];
            return Some(Err(()));
        };
        let (opt, rest) = o.split_at(len);
        o = rest;
        Some(Ok((NdpOptionType(opt[0]), opt)))
    })
}

/// The link-layer address of a Source Link-Layer Address option: the
/// first six octets after its header, whatever its length (Ethernet's).
fn source_mac(o: &[u8]) -> Option<[u8; 6]> {
    options(o).map_while(Result::ok).find_map(|(kind, opt)| match kind {
        NdpOptionType::SOURCE_LINK_LAYER_ADDRESS => opt.get(2..8).and_then(|m| m.try_into().ok()),
        _ => None,
    })
}

/// Reads an ICMPv6 message body (after the IPv6 header).
pub fn parse(icmp: &[u8]) -> Nd {
    let Ok(payload) = Icmpv6Slice::from_slice(icmp).and_then(|m| m.payload_slice()) else { return Nd::Other };
    match payload {
        Icmpv6PayloadSlice::RouterAdvertisement(ra) => {
            let prefixes = options(ra.options())
                .map_while(Result::ok)
                .filter(|(kind, _)| *kind == NdpOptionType::PREFIX_INFORMATION)
                .filter_map(|(_, opt)| PrefixInformationOptionSlice::from_slice(opt).ok())
                .map(|p| Prefix::new(p.prefix().into(), p.prefix_length()))
                .collect();
            Nd::Ra { prefixes, router_mac: source_mac(ra.options()) }
        }
        Icmpv6PayloadSlice::NeighborSolicitation(ns) => Nd::Ns { target: ns.target_address() },
        Icmpv6PayloadSlice::RouterSolicitation(rs) => Nd::Rs { mac: source_mac(rs.options()) },
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
    let (kind, fixed) = match icmp.first() {
        Some(&RA) => (RA, Icmpv6Header::MIN_LEN + RouterAdvertisementPayload::LEN),
        Some(&RS) => (RS, Icmpv6Header::MIN_LEN),
        _ => return Some("not an RS or an RA"),
    };
    if hop_limit != 255 {
        return Some("hop limit is not 255: it did not come from the link");
    }
    let Some(after_fixed) = icmp.get(fixed..) else { return Some("shorter than its fixed part") };
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
    if options(after_fixed).any(|o| o.is_err()) {
        return Some("an option has length 0 or runs past the end");
    }
    None
}

/// The same for a whole IPv6 packet as an MN's packet socket takes it,
/// with the ICMPv6 checksum checked too (the kernel checks nothing there).
pub fn invalid_router_packet(pkt: &[u8]) -> Option<&'static str> {
    let Ok(ip) = Ipv6HeaderSlice::from_slice(pkt) else { return Some("not an IPv6 packet") };
    if ip.next_header() != IpNumber::IPV6_ICMP {
        return Some("not an ICMPv6 packet without extension headers");
    }
    let len = usize::from(ip.payload_length());
    let Some(icmp) = pkt.get(Ipv6Header::LEN..Ipv6Header::LEN + len) else {
        return Some("shorter than its payload length");
    };
    let Ok(message) = Icmpv6Slice::from_slice(icmp) else { return Some("shorter than its fixed part") };
    if !message.is_checksum_valid(ip.source(), ip.destination()) {
        return Some("ICMPv6 checksum is wrong");
    }
    invalid_router_message(ip.hop_limit(), ip.source_addr(), icmp)
}

#[cfg(test)]
mod tests {
    use super::*;
    use pmip_wire::checksum::upper_layer_checksum;

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
        code[42] = 0;
        code[43] = 0;
        let code = icmpv6(ll, ALL_NODES, code[40..].to_vec());
        assert_eq!(invalid_router_packet(&code), Some("ICMP code is not 0"));
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
    fn the_messages_are_laid_out_as_rfc_4861_draws_them() {
        let p: Prefix = "2001:db8:1::/64".parse().unwrap();
        let mac = [2, 0, 0, 0, 0, 9];
        let ra = router_advertisement(mac, &[p], 1800);
        assert_eq!(ra[..16], [RA, 0, 0, 0, 64, 0, 0x07, 0x08, 0, 0, 0, 0, 0, 0, 0, 0]);
        assert_eq!(ra[16..24], [1, 1, 2, 0, 0, 0, 0, 9]);
        let pi = [[3, 4, 64, 0xc0], 86_400u32.to_be_bytes(), 14_400u32.to_be_bytes(), [0; 4]].concat();
        assert_eq!(ra[24..40], pi[..]);
        assert_eq!(ra[40..56], p.addr().octets());
        let target: Ipv6Addr = "2001:db8:1::5".parse().unwrap();
        let na = neighbour_advertisement(target, mac, true);
        assert_eq!(na[..8], [136, 0, 0, 0, 0x60, 0, 0, 0]);
        assert_eq!(na[8..24], target.octets());
        assert_eq!(na[24..], [2, 1, 2, 0, 0, 0, 0, 9]);
        assert_eq!(neighbour_advertisement(target, mac, false)[4], 0x20);
        let frame = ethernet(multicast_mac(ALL_NODES), mac, &[0x60]);
        assert_eq!(frame[..14], [0x33, 0x33, 0, 0, 0, 1, 2, 0, 0, 0, 0, 9, 0x86, 0xdd]);
    }

    #[test]
    fn an_option_of_a_known_type_but_another_length_is_skipped_not_fatal() {
        let p: Prefix = "2001:db8:1::/64".parse().unwrap();
        let q: Prefix = "2001:db8:2::/64".parse().unwrap();
        let ll: Ipv6Addr = "fe80::1".parse().unwrap();
        let mut ra = router_advertisement([2, 0, 0, 0, 0, 9], &[], 1800);
        // A Prefix Information option of 5 units (RFC 4861 has 4), then a
        // good one, then a Source Link-Layer Address option of 2 units.
        let good = router_advertisement([2, 0, 0, 0, 0, 9], &[q], 1800);
        let mut odd = router_advertisement([2, 0, 0, 0, 0, 9], &[p], 1800)[24..56].to_vec();
        odd[1] = 5;
        odd.extend_from_slice(&[0; 8]);
        ra.truncate(16);
        ra.extend_from_slice(&odd);
        ra.extend_from_slice(&good[24..56]);
        ra.extend_from_slice(&[1, 2, 2, 0, 0, 0, 0, 7, 0, 0, 0, 0, 0, 0, 0, 0]);
        assert_eq!(invalid_router_packet(&icmpv6(ll, ALL_NODES, ra.clone())), None);
        assert_eq!(parse(&ra), Nd::Ra { prefixes: vec![q], router_mac: Some([2, 0, 0, 0, 0, 7]) });
    }

    #[test]
    fn the_checksum_covers_every_bit_sent() {
        let src: Ipv6Addr = "fe80::1".parse().unwrap();
        let mut ra = router_advertisement([2, 0, 0, 0, 0, 9], &[], 1800);
        ra[5] = 0x08 | 0x07; // the H flag and reserved bits a parser may not keep
        let pkt = icmpv6(src, ALL_NODES, ra);
        assert_eq!(pkt[45], 0x0f);
        assert_eq!(invalid_router_packet(&pkt), None);
    }

    #[test]
    fn no_input_makes_the_checks_panic() {
        // An option of 32 units or more (256+ bytes) overflows an 8-bit
        // length computation in some parsers: it must simply be read.
        let ll: Ipv6Addr = "fe80::1".parse().unwrap();
        let mut long = router_solicitation([2, 0, 0, 0, 0, 7]);
        long.extend_from_slice(&[9, 32]);
        long.extend(std::iter::repeat_n(0, 254));
        assert_eq!(invalid_router_message(255, ll, &long), None);
        assert_eq!(parse(&long), Nd::Rs { mac: Some([2, 0, 0, 0, 0, 7]) });
        let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
        for _ in 0..20_000 {
            let mut pkt = icmpv6(ll, ALL_NODES, router_advertisement([2, 0, 0, 0, 0, 9], &[], 1800));
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            let at = (x as usize) % pkt.len();
            pkt[at] ^= (x >> 32) as u8;
            pkt.truncate(at + (x >> 48) as usize % (pkt.len() - at + 1));
            let _ = invalid_router_packet(&pkt);
            let _ = parse(pkt.get(40..).unwrap_or_default());
        }
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
