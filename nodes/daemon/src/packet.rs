//! Classifying a packet by its 5-tuple (RFC 6088's selectors): the
//! addresses, the upper-layer protocol after any extension headers, and
//! the TCP or UDP ports. Parsing is etherparse's.

use std::net::Ipv6Addr;

use etherparse::{IpNumber, Ipv6Slice};
use pmip_proto::FlowKey;

/// The 5-tuple of an IPv6 packet; ports are zero for other protocols and
/// for fragments (as they were before: a fragment is not reassembled).
/// `None` for anything that is not a whole IPv6 packet.
pub fn flow_key(pkt: &[u8]) -> Option<FlowKey> {
    let ip = Ipv6Slice::from_slice(pkt).ok()?;
    let header = ip.header();
    let payload = ip.payload();
    let ports = match (payload.ip_number, payload.payload.get(..4)) {
        (IpNumber::TCP | IpNumber::UDP, Some(p)) if !payload.fragmented => {
            (u16::from_be_bytes([p[0], p[1]]), u16::from_be_bytes([p[2], p[3]]))
        }
        _ => (0, 0),
    };
    Some(FlowKey {
        src: Ipv6Addr::from(header.source()),
        dst: Ipv6Addr::from(header.destination()),
        next_header: payload.ip_number.0,
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
        p[0] = 0x60;
        p[5] = 9;
        assert_eq!(flow_key(&p), None, "a payload length past the end is not a whole packet");
    }

    #[test]
    fn the_protocol_and_ports_come_after_the_extension_headers() {
        let mut p = vec![0u8; 56];
        p[0] = 0x60;
        p[5] = 16;
        p[6] = 60; // Destination Options, 8 bytes, then UDP
        p[40] = 17;
        p[48..52].copy_from_slice(&[0x1b, 0x58, 0x13, 0x8a]);
        let k = flow_key(&p).unwrap();
        assert_eq!((k.next_header, k.src_port, k.dst_port), (17, 7000, 5002));
        p[6] = 135; // a Mobility Header is the upper layer here
        assert_eq!(flow_key(&p).unwrap().next_header, 135);
    }
}
