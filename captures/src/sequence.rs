//! The Mobility Header messages found in captures, merged across links in
//! time order and normalized (timestamps, lifetimes remaining and MACs
//! are not in the lines), so that a sequence can be snapshot.

use std::net::Ipv6Addr;

use etherparse::{EtherType, Ethernet2Header, Ethernet2HeaderSlice, IpNumber, Ipv6Header, Ipv6HeaderSlice};
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

/// The IPv6 source, destination and Mobility Header of an Ethernet frame
/// that carries one directly after the IPv6 header; `None` for any other.
pub fn mobility_header(frame: &[u8]) -> Option<(Ipv6Addr, Ipv6Addr, &[u8])> {
    let eth = Ethernet2HeaderSlice::from_slice(frame).ok()?;
    if eth.ether_type() != EtherType::IPV6 {
        return None;
    }
    let ip = Ipv6HeaderSlice::from_slice(&frame[Ethernet2Header::LEN..]).ok()?;
    if ip.next_header() != IpNumber::MOBILITY_HEADER {
        return None;
    }
    // What follows the header to the end of the frame: the codec reads the
    // Mobility Header's own length, and checks it.
    let mh = &frame[Ethernet2Header::LEN + Ipv6Header::LEN..];
    Some((Ipv6Addr::from(ip.source()), Ipv6Addr::from(ip.destination()), mh))
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

/// Merges per-link sequences by time. One message can be seen on two
/// links (a bridge floods a frame before it has learnt the destination):
/// such sightings are kept once, at the first. Copies on one link are
/// distinct messages (a duplicate on the wire) and are all kept.
///
/// The earlier sightings of each message are found through an index, not
/// a scan of everything merged so far: a namespace run merges again each
/// time it reads what it saw, and with thousands of messages the scan made
/// every settle slow.
pub fn merge(all: &[SequenceEntry]) -> Vec<SequenceEntry> {
    let mut all: Vec<&SequenceEntry> = all.iter().collect();
    all.sort_by_key(|e| e.ts_us);
    let mut out: Vec<(&SequenceEntry, Vec<&str>)> = Vec::new();
    let mut by_message: std::collections::HashMap<(Ipv6Addr, Ipv6Addr, &str), Vec<usize>> = Default::default();
    for e in all {
        let same = by_message.entry((e.src, e.dst, e.summary.as_str())).or_default();
        let first = same.iter().copied().find(|&i| {
            let (o, links) = &out[i];
            e.ts_us.abs_diff(o.ts_us) < 100_000 && !links.contains(&e.link.as_str())
        });
        match first {
            Some(i) => out[i].1.push(&e.link),
            None => {
                same.push(out.len());
                out.push((e, vec![&e.link]));
            }
        }
    }
    out.into_iter().map(|(e, _)| e.clone()).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The merge as it was first written: a scan of everything merged so
    /// far, the reference the indexed one must agree with.
    fn merge_by_scan(all: &[SequenceEntry]) -> Vec<SequenceEntry> {
        let mut all = all.to_vec();
        all.sort_by_key(|e| e.ts_us);
        let mut out: Vec<(SequenceEntry, Vec<String>)> = Vec::new();
        for e in all {
            let same = out.iter_mut().find(|(o, links)| {
                o.src == e.src
                    && o.dst == e.dst
                    && o.summary == e.summary
                    && e.ts_us.abs_diff(o.ts_us) < 100_000
                    && !links.contains(&e.link)
            });
            match same {
                Some((_, links)) => links.push(e.link),
                None => {
                    let link = e.link.clone();
                    out.push((e, vec![link]));
                }
            }
        }
        out.into_iter().map(|(e, _)| e).collect()
    }

    fn sighting(ts_us: u64, link: &str, src: u16, summary: &str) -> SequenceEntry {
        SequenceEntry {
            ts_us,
            link: link.into(),
            src: Ipv6Addr::new(0x2001, 0xdb8, 0xffff, 0, 0, 0, 0, src),
            dst: Ipv6Addr::new(0x2001, 0xdb8, 0xffff, 0, 0, 0, 0, 1),
            summary: summary.into(),
        }
    }

    #[test]
    fn merging_by_index_keeps_what_the_scan_keeps() {
        // Flooded copies (one message on two links), a duplicate on one
        // link, a repeat 100 ms later, and sightings out of time order, as
        // several capture threads hand them over.
        let seen = vec![
            sighting(5_000, "lma:to-mag2", 0x11, "PBU seq=1"),
            sighting(1_000, "lma:to-mag1", 0x11, "PBU seq=1"),
            sighting(1_200, "lma:to-mag1", 0x11, "PBU seq=1"),
            sighting(1_100, "lma:to-mag2", 0x12, "PBU seq=1"),
            sighting(101_000, "lma:to-mag1", 0x11, "PBU seq=1"),
            sighting(101_500, "lma:to-mag2", 0x11, "PBU seq=1"),
            sighting(2_000, "lma:to-mag1", 0x11, "PBA seq=1"),
            sighting(2_000, "lma:to-mag3", 0x11, "PBU seq=1"),
        ];
        let key = |v: Vec<SequenceEntry>| -> Vec<(u64, String, u16, String)> {
            v.into_iter().map(|e| (e.ts_us, e.link, e.src.segments()[7], e.summary)).collect()
        };
        let want = key(merge_by_scan(&seen));
        assert_eq!(key(merge(&seen)), want);
        assert_eq!(want.len(), 5, "{want:?}");
    }

    #[test]
    fn merging_thousands_of_sightings_takes_milliseconds() {
        // 16,384 messages, each seen on two links (a bridge floods it):
        // the scan of everything merged so far took seconds here.
        let seen: Vec<SequenceEntry> = (0..16_384u64)
            .flat_map(|i| {
                let summary = format!("PBU seq={i}");
                [
                    sighting(i * 1000, "lma:to-mag1", 0x11, &summary),
                    sighting(i * 1000 + 10, "lma:to-mag2", 0x11, &summary),
                ]
            })
            .collect();
        let started = std::time::Instant::now();
        let merged = merge(&seen);
        let took = started.elapsed();
        assert_eq!(merged.len(), 16_384);
        assert!(took < std::time::Duration::from_millis(500), "merging {} sightings took {took:?}", seen.len());
    }

    #[test]
    fn only_a_mobility_header_right_after_ipv6_is_taken() {
        let mut f = vec![0u8; 12];
        f.extend_from_slice(&[0x86, 0xdd, 0x60, 0, 0, 0, 0, 8, 135, 64]);
        f.extend_from_slice(&"2001:db8:ffff::11".parse::<Ipv6Addr>().unwrap().octets());
        f.extend_from_slice(&"2001:db8:ffff::1".parse::<Ipv6Addr>().unwrap().octets());
        f.extend_from_slice(&[59, 0, 5, 0, 0, 0, 0, 0]);
        let (src, dst, mh) = mobility_header(&f).unwrap();
        assert_eq!((src.segments()[7], dst.segments()[7], mh.len()), (0x11, 1, 8));
        let mut udp = f.clone();
        udp[20] = 17;
        assert_eq!(mobility_header(&udp), None);
        let mut v4 = f.clone();
        v4[12..14].copy_from_slice(&[0x08, 0x00]);
        assert_eq!(mobility_header(&v4), None);
        assert_eq!(mobility_header(&f[..40]), None, "a frame cut inside the IPv6 header");
    }

    fn seen(ts_us: u64, link: &str, summary: &str) -> SequenceEntry {
        SequenceEntry {
            ts_us,
            link: link.into(),
            src: "2001:db8:ffff::1".parse().unwrap(),
            dst: "2001:db8:ffff::11".parse().unwrap(),
            summary: summary.into(),
        }
    }

    fn summaries(v: &[SequenceEntry]) -> Vec<(u64, &str)> {
        v.iter().map(|e| (e.ts_us, e.summary.as_str())).collect()
    }

    #[test]
    fn a_flooded_frame_counts_once_and_a_duplicate_on_the_wire_twice() {
        // The bridge floods the first FMI to both MAG ports; the LMA sends
        // it twice (a duplicate fault), and the bridge floods the copy too.
        let merged = merge(&[
            seen(10, "to-mag1", "FMI seq=1"),
            seen(11, "to-mag2", "FMI seq=1"),
            seen(20, "to-mag1", "FMI seq=1"),
            seen(21, "to-mag2", "FMI seq=1"),
            seen(30, "to-mag1", "PBA seq=2"),
        ]);
        assert_eq!(summaries(&merged), [(10, "FMI seq=1"), (20, "FMI seq=1"), (30, "PBA seq=2")]);
    }

    #[test]
    fn the_same_message_much_later_is_a_new_message() {
        let merged = merge(&[seen(0, "to-mag1", "PBU seq=1"), seen(200_000, "to-mag2", "PBU seq=1")]);
        assert_eq!(merged.len(), 2);
    }
}
