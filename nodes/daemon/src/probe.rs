//! Test traffic: UDP datagrams whose payload says which flow they belong
//! to, their sequence number and when they were sent, so that a receiver
//! counts loss, reordering, duplicates, latency and the interface each
//! packet arrived on.

use std::collections::BTreeMap;
use std::net::Ipv6Addr;
use std::time::{SystemTime, UNIX_EPOCH};

use etherparse::{IpNumber, Ipv6Slice, PacketBuilder, TcpHeader, TcpSlice, UdpHeader, UdpHeaderSlice, UdpSlice};
use serde::{Deserialize, Serialize};

const MAGIC: &[u8; 4] = b"PMIP";
/// The magic as the 32-bit word that filters on the wire (nftables, BPF) compare.
pub const MAGIC_WORD: u32 = u32::from_be_bytes(*MAGIC);
pub const LEN: usize = 18;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Probe {
    pub flow: u16,
    pub seq: u32,
    /// Microseconds since the Unix epoch at sending.
    pub sent_us: u64,
}

pub fn now_us() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_micros() as u64).unwrap_or(0)
}

impl Probe {
    pub fn to_bytes(self) -> Vec<u8> {
        let mut b = MAGIC.to_vec();
        b.extend_from_slice(&self.flow.to_be_bytes());
        b.extend_from_slice(&self.seq.to_be_bytes());
        b.extend_from_slice(&self.sent_us.to_be_bytes());
        b
    }

    pub fn parse(b: &[u8]) -> Option<Probe> {
        if b.len() < LEN || &b[..4] != MAGIC {
            return None;
        }
        Some(Probe {
            flow: u16::from_be_bytes([b[4], b[5]]),
            seq: u32::from_be_bytes([b[6], b[7], b[8], b[9]]),
            sent_us: u64::from_be_bytes([b[10], b[11], b[12], b[13], b[14], b[15], b[16], b[17]]),
        })
    }

    /// The probe inside an IPv6/UDP packet or a TCP-shaped probe segment.
    pub fn in_packet(pkt: &[u8]) -> Option<Probe> {
        let ip = Ipv6Slice::from_slice(pkt).ok()?;
        let payload = ip.payload().payload;
        match ip.payload().ip_number {
            IpNumber::UDP => Probe::parse(UdpSlice::from_slice(payload).ok()?.payload()),
            IpNumber::TCP => Probe::parse(TcpSlice::from_slice(payload).ok()?.payload()),
            _ => None,
        }
    }
}

/// The destination port and probe of a UDP datagram (header and payload,
/// as a raw UDP socket delivers it), if it carries a probe.
pub fn udp_probe(datagram: &[u8]) -> Option<(u16, Probe)> {
    let udp = UdpHeaderSlice::from_slice(datagram).ok()?;
    Some((udp.destination_port(), Probe::parse(datagram.get(UdpHeader::LEN..)?)?))
}

/// A whole IPv6/UDP packet carrying `payload`, checksum included.
pub fn udp_packet(src: Ipv6Addr, dst: Ipv6Addr, sport: u16, dport: u16, payload: &[u8]) -> Vec<u8> {
    let builder = PacketBuilder::ipv6(src.octets(), dst.octets(), 64).udp(sport, dport);
    let mut p = Vec::with_capacity(builder.size(payload.len()));
    // Writing into a Vec fails only for a payload no UDP length can hold;
    // probes are 18 bytes.
    if builder.write(&mut p, payload).is_err() {
        p.clear();
    }
    p
}

/// A probe flow to send, as the control protocol (`pmip-control`) says it.
pub use pmip_control::FlowSpec;

/// Sends the probes of `spec` at its rate, `count` of them or until the
/// task is aborted, each through `send`, which says whether to go on.
pub fn spawn_sender<F, Fut>(spec: FlowSpec, mut send: F) -> tokio::task::JoinHandle<()>
where
    F: FnMut(Probe) -> Fut + Send + 'static,
    Fut: std::future::Future<Output = bool> + Send,
{
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(spec.interval());
        let mut seq = 0u32;
        while spec.count.is_none_or(|c| seq < c) {
            tick.tick().await;
            if !send(Probe { flow: spec.flow, seq, sent_us: now_us() }).await {
                break;
            }
            seq += 1;
        }
    })
}

/// A TCP header for a probe segment (the kernel fills the checksum).
pub fn tcp_header(sport: u16, dport: u16, seq: u32) -> [u8; 20] {
    let mut h = TcpHeader::new(sport, dport, seq, 65535);
    h.psh = true;
    h.ack = true;
    let mut out = [0u8; 20];
    out.copy_from_slice(&h.to_bytes()[..20]);
    out
}

/// What a receiver saw of one flow.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct FlowStats {
    pub received: u64,
    /// Packets per arrival interface.
    pub by_interface: BTreeMap<String, u64>,
    /// The interface the latest packet arrived on.
    pub last_interface: Option<String>,
    /// The interfaces in the order the flow first arrived on each.
    #[serde(default)]
    pub arrival_order: Vec<String>,
    pub highest_seq: Option<u32>,
    /// Sequence numbers below the highest one seen: arrived out of order.
    pub reordered: u64,
    pub duplicates: u64,
    pub latency_min_us: Option<u64>,
    pub latency_max_us: Option<u64>,
    pub latency_sum_us: u64,
    #[serde(skip)]
    seen: std::collections::BTreeSet<u32>,
}

impl FlowStats {
    pub fn record(&mut self, p: &Probe, iface: &str, at_us: u64) {
        if !self.seen.insert(p.seq) {
            self.duplicates += 1;
            return;
        }
        self.received += 1;
        *self.by_interface.entry(iface.to_string()).or_default() += 1;
        if !self.arrival_order.iter().any(|i| i == iface) {
            self.arrival_order.push(iface.to_string());
        }
        self.last_interface = Some(iface.to_string());
        match self.highest_seq {
            Some(h) if p.seq < h => self.reordered += 1,
            _ => self.highest_seq = Some(p.seq),
        }
        let l = at_us.saturating_sub(p.sent_us);
        self.latency_min_us = Some(self.latency_min_us.map_or(l, |m| m.min(l)));
        self.latency_max_us = Some(self.latency_max_us.map_or(l, |m| m.max(l)));
        self.latency_sum_us += l;
    }

    /// Packets never seen below the highest sequence number.
    pub fn lost(&self) -> u64 {
        self.highest_seq.map_or(0, |h| u64::from(h) + 1 - self.received)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_tcp_probe_segment_is_psh_ack_with_no_options_and_carries_its_probe() {
        let h = tcp_header(7000, 5003, 9);
        assert_eq!(h[..4], [0x1b, 0x58, 0x13, 0x8b]);
        assert_eq!(h[4..8], 9u32.to_be_bytes());
        assert_eq!((h[12], h[13], &h[14..16]), (5 << 4, 0x18, &[0xff, 0xff][..]));
        let p = Probe { flow: 3, seq: 9, sent_us: 42 };
        let seg = [&h[..], &p.to_bytes()].concat();
        let mut pkt = vec![0x60, 0, 0, 0, 0, seg.len() as u8, 6, 64];
        pkt.extend_from_slice(&[0; 32]);
        pkt.extend_from_slice(&seg);
        assert_eq!(Probe::in_packet(&pkt), Some(p));
        assert_eq!(Probe::in_packet(&pkt[..50]), None, "a segment cut short is not read");
    }

    #[test]
    fn probes_round_trip_and_stats_count_loss_reorder_and_duplicates() {
        let p = Probe { flow: 7, seq: 3, sent_us: 1_700_000_000_000_000 };
        let pkt =
            udp_packet("2001:db8:c::1".parse().unwrap(), "2001:db8:1::1".parse().unwrap(), 7000, 5001, &p.to_bytes());
        assert_eq!(Probe::in_packet(&pkt), Some(p));
        let mut s = FlowStats::default();
        for (seq, iface) in [(0, "if1"), (2, "if1"), (1, "if2"), (2, "if2"), (5, "if2")] {
            s.record(&Probe { flow: 7, seq, sent_us: 100 }, iface, 150);
        }
        assert_eq!((s.received, s.reordered, s.duplicates, s.lost()), (4, 1, 1, 2));
        assert_eq!(s.by_interface["if2"], 2);
        assert_eq!(s.last_interface.as_deref(), Some("if2"));
        assert_eq!(s.arrival_order, ["if1", "if2"]);
        assert_eq!(s.latency_max_us, Some(50));
    }
}
