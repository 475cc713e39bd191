//! Classifying a packet by its 5-tuple (RFC 6088's selectors): the
//! addresses, the IPv6 header's next header, and the TCP or UDP ports
//! right after it (extension headers are not walked: a packet with one,
//! a fragment included, is classified by it, with no ports). Header
//! parsing is etherparse's.

use std::net::Ipv6Addr;

use etherparse::{IpNumber, Ipv6Header, Ipv6HeaderSlice};
use pmip_proto::FlowKey;

/// The 5-tuple of an IPv6 packet; ports are zero for other protocols.
/// `None` for anything that is not a whole IPv6 header.
pub fn flow_key(pkt: &[u8]) -> Option<FlowKey> {
    let ip = Ipv6HeaderSlice::from_slice(pkt).ok()?;
    let next = ip.next_header();
    let ports = match (next, pkt.get(Ipv6Header::LEN..Ipv6Header::LEN + 4)) {
        (IpNumber::TCP | IpNumber::UDP, Some(p)) => {
            (u16::from_be_bytes([p[0], p[1]]), u16::from_be_bytes([p[2], p[3]]))
        }
        _ => (0, 0),
    };
    Some(FlowKey {
        src: Ipv6Addr::from(ip.source()),
        dst: Ipv6Addr::from(ip.destination()),
        next_header: next.0,
        src_port: ports.0,
        dst_port: ports.1,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn udp_over_ipv6() {
        let mut p = vec![0u8; 48];
        p[0] = 0x60;
        p[5] = 8;
        p[6] = 17;
        p[8..24].copy_from_slice(&"2001:db8:c::1".parse::<Ipv6Addr>().unwrap().octets());
        p[24..40].copy_from_slice(&"2001:db8:2::1".parse::<Ipv6Addr>().unwrap().octets());
        p[40..44].copy_from_slice(&[0x1b, 0x58, 0x13, 0x8a]);
        let k = flow_key(&p).unwrap();
        assert_eq!((k.src_port, k.dst_port, k.next_header), (7000, 5002, 17));
        assert_eq!(k.dst, "2001:db8:2::1".parse::<Ipv6Addr>().unwrap());
        let mut padded = p.clone();
        padded.extend_from_slice(&[0xff; 12]);
        assert_eq!(flow_key(&padded), Some(k), "Ethernet padding after the packet is not read");
        assert_eq!(flow_key(&p[..39]), None);
        p[0] = 0x45;
        assert_eq!(flow_key(&p), None);
    }

    #[test]
    fn a_packet_with_an_extension_header_is_classified_by_it_with_no_ports() {
        let mut p = vec![0u8; 56];
        p[0] = 0x60;
        p[5] = 16;
        p[6] = 60; // Destination Options, 8 bytes, then UDP
        p[40] = 17;
        p[48..52].copy_from_slice(&[0x1b, 0x58, 0x13, 0x8a]);
        let k = flow_key(&p).unwrap();
        assert_eq!((k.next_header, k.src_port, k.dst_port), (60, 0, 0));
        p[6] = 44; // a fragment: its ports are not read either
        assert_eq!(flow_key(&p).map(|k| (k.next_header, k.src_port)), Some((44, 0)));
    }
}
