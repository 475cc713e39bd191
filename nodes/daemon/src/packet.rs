//! Just enough of IPv6, UDP and TCP to classify a packet by its 5-tuple.

use std::net::Ipv6Addr;

use pmip_proto::FlowKey;

/// The 5-tuple of an IPv6 packet; ports are zero for other protocols.
/// `None` for anything that is not a whole IPv6 header.
pub fn flow_key(pkt: &[u8]) -> Option<FlowKey> {
    if pkt.len() < 40 || pkt[0] >> 4 != 6 {
        return None;
    }
    let addr = |at: usize| {
        let mut a = [0u8; 16];
        a.copy_from_slice(&pkt[at..at + 16]);
        Ipv6Addr::from(a)
    };
    let next_header = pkt[6];
    let (src_port, dst_port) = match (next_header, pkt.get(40..44)) {
        (6 | 17, Some(p)) => (u16::from_be_bytes([p[0], p[1]]), u16::from_be_bytes([p[2], p[3]])),
        _ => (0, 0),
    };
    Some(FlowKey { src: addr(8), dst: addr(24), next_header, src_port, dst_port })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn udp_over_ipv6() {
        let mut p = vec![0u8; 48];
        p[0] = 0x60;
        p[6] = 17;
        p[8..24].copy_from_slice(&"2001:db8:c::1".parse::<Ipv6Addr>().unwrap().octets());
        p[24..40].copy_from_slice(&"2001:db8:2::1".parse::<Ipv6Addr>().unwrap().octets());
        p[40..44].copy_from_slice(&[0x1b, 0x58, 0x13, 0x8a]);
        let k = flow_key(&p).unwrap();
        assert_eq!((k.src_port, k.dst_port, k.next_header), (7000, 5002, 17));
        assert_eq!(k.dst, "2001:db8:2::1".parse::<Ipv6Addr>().unwrap());
        assert_eq!(flow_key(&p[..39]), None);
        p[0] = 0x45;
        assert_eq!(flow_key(&p), None);
    }
}
