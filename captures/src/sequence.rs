//! The Mobility Header messages found in captures, merged across links in
//! time order and normalized (timestamps, lifetimes remaining and MACs
//! are not in the lines), so that a sequence can be snapshot.

use std::net::Ipv6Addr;

use pmip_wire::{lax, Endpoints, WireConfig};
use serde::Serialize;

use crate::pcapng::Packet;

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SequenceEntry {
    pub ts_us: u64,
    pub link: String,
    pub src: Ipv6Addr,
    pub dst: Ipv6Addr,
    /// The message summary; problems the lax decoder found are appended.
    pub summary: String,
}

fn addr(b: &[u8]) -> Ipv6Addr {
    let mut a = [0u8; 16];
    a.copy_from_slice(&b[..16]);
    a.into()
}

/// The IPv6 source, destination and Mobility Header of an Ethernet frame
/// that carries one directly after the IPv6 header; `None` for any other.
pub fn mobility_header(frame: &[u8]) -> Option<(Ipv6Addr, Ipv6Addr, &[u8])> {
    if frame.len() < 54 || frame[12..14] != [0x86, 0xdd] || frame[20] != 135 {
        return None;
    }
    let ip = &frame[14..];
    Some((addr(&ip[8..24]), addr(&ip[24..40]), &ip[40..]))
}

/// Mobility Header messages in Ethernet frames; other frames are skipped.
pub fn messages(link: &str, packets: &[Packet], cfg: &WireConfig) -> Vec<SequenceEntry> {
    let mut out = Vec::new();
    for p in packets {
        let Some((src, dst, mh)) = mobility_header(&p.data) else { continue };
        let d = lax::decode(mh, Some(&Endpoints { src, dst }), cfg);
        let mut summary = match &d.message {
            Some(m) => m.summary(),
            None => format!("MH type {:?} (undecodable)", d.mh_type),
        };
        for e in &d.problems {
            summary.push_str(&format!(" [{e}]"));
        }
        out.push(SequenceEntry { ts_us: p.ts_us, link: link.to_string(), src, dst, summary });
    }
    out
}

/// Merges per-link sequences by time; a message seen on two links (both
/// ends of a path) is kept once, at its first sighting.
pub fn merge(mut all: Vec<SequenceEntry>) -> Vec<SequenceEntry> {
    all.sort_by_key(|e| e.ts_us);
    let mut out: Vec<SequenceEntry> = Vec::new();
    for e in all {
        if !out
            .iter()
            .any(|o| o.src == e.src && o.dst == e.dst && o.summary == e.summary && e.ts_us.abs_diff(o.ts_us) < 100_000)
        {
            out.push(e);
        }
    }
    out
}
