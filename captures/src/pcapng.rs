//! A minimal pcapng writer and reader: one Section Header Block, one
//! Interface Description Block per interface (link type, name), Enhanced
//! Packet Blocks with microsecond timestamps.

use std::io::{self, Write};

pub const LINKTYPE_ETHERNET: u16 = 1;

fn pad4(n: usize) -> usize {
    (4 - n % 4) % 4
}

fn option(out: &mut Vec<u8>, code: u16, value: &[u8]) {
    out.extend_from_slice(&code.to_le_bytes());
    out.extend_from_slice(&(value.len() as u16).to_le_bytes());
    out.extend_from_slice(value);
    out.extend(std::iter::repeat_n(0, pad4(value.len())));
}

fn block(w: &mut impl Write, kind: u32, body: &[u8]) -> io::Result<()> {
    let len = (12 + body.len()) as u32;
    w.write_all(&kind.to_le_bytes())?;
    w.write_all(&len.to_le_bytes())?;
    w.write_all(body)?;
    w.write_all(&len.to_le_bytes())
}

pub struct Writer<W: Write> {
    w: W,
}

impl<W: Write> Writer<W> {
    /// Writes the section header and one interface per `(name, linktype)`.
    pub fn new(mut w: W, interfaces: &[(&str, u16)]) -> io::Result<Self> {
        let mut shb = Vec::new();
        shb.extend_from_slice(&0x1A2B_3C4Du32.to_le_bytes());
        shb.extend_from_slice(&1u16.to_le_bytes());
        shb.extend_from_slice(&0u16.to_le_bytes());
        shb.extend_from_slice(&(-1i64).to_le_bytes());
        option(&mut shb, 4, b"pmiplab");
        option(&mut shb, 0, &[]);
        block(&mut w, 0x0A0D_0D0A, &shb)?;
        for (name, linktype) in interfaces {
            let mut idb = Vec::new();
            idb.extend_from_slice(&linktype.to_le_bytes());
            idb.extend_from_slice(&0u16.to_le_bytes());
            idb.extend_from_slice(&262_144u32.to_le_bytes());
            option(&mut idb, 2, name.as_bytes());
            option(&mut idb, 9, &[6]); // if_tsresol: microseconds
            option(&mut idb, 0, &[]);
            block(&mut w, 1, &idb)?;
        }
        Ok(Writer { w })
    }

    pub fn packet(&mut self, interface: u32, ts_us: u64, data: &[u8]) -> io::Result<()> {
        self.packet_with_comments(interface, ts_us, data, &[])
    }

    /// A packet with an `opt_comment` option per comment (pcapng §4.3).
    pub fn packet_with_comments(
        &mut self,
        interface: u32,
        ts_us: u64,
        data: &[u8],
        comments: &[String],
    ) -> io::Result<()> {
        let mut epb = Vec::with_capacity(20 + data.len() + 4);
        epb.extend_from_slice(&interface.to_le_bytes());
        epb.extend_from_slice(&((ts_us >> 32) as u32).to_le_bytes());
        epb.extend_from_slice(&(ts_us as u32).to_le_bytes());
        epb.extend_from_slice(&(data.len() as u32).to_le_bytes());
        epb.extend_from_slice(&(data.len() as u32).to_le_bytes());
        epb.extend_from_slice(data);
        epb.extend(std::iter::repeat_n(0, pad4(data.len())));
        if !comments.is_empty() {
            for c in comments {
                // An option's length is 16 bits: a longer comment is cut at a
                // character boundary.
                let mut end = c.len().min(u16::MAX as usize - 3);
                while !c.is_char_boundary(end) {
                    end -= 1;
                }
                option(&mut epb, 1, &c.as_bytes()[..end]);
            }
            option(&mut epb, 0, &[]);
        }
        block(&mut self.w, 6, &epb)
    }

    pub fn flush(&mut self) -> io::Result<()> {
        self.w.flush()
    }
}

/// Writes every link's packets into one file, one interface per link (in
/// the order given), in time order, with each of `marks` (a time in
/// microseconds since the epoch and what happened then) as a comment on
/// the first packet at or after it, or on the last packet when none came
/// after. Returns how many packets were written.
pub fn merge(w: impl Write, links: &[(String, Vec<Packet>)], marks: &[(u64, String)]) -> io::Result<usize> {
    let names: Vec<(&str, u16)> = links.iter().map(|(n, _)| (n.as_str(), LINKTYPE_ETHERNET)).collect();
    let mut out = Writer::new(w, &names)?;
    let mut all: Vec<(u64, u32, &[u8])> = links
        .iter()
        .enumerate()
        .flat_map(|(k, (_, ps))| ps.iter().map(move |p| (p.ts_us, k as u32, p.data.as_slice())))
        .collect();
    all.sort_by_key(|(ts, k, _)| (*ts, *k));
    let mut comments: Vec<Vec<String>> = vec![Vec::new(); all.len()];
    for (at, text) in marks {
        let i = all.partition_point(|(ts, _, _)| ts < at);
        if let Some(c) = comments.get_mut(i.min(all.len().saturating_sub(1))) {
            c.push(text.clone());
        }
    }
    for ((ts, k, data), c) in all.iter().zip(&comments) {
        out.packet_with_comments(*k, *ts, data, c)?;
    }
    out.flush()?;
    Ok(all.len())
}

/// The `opt_comment` options of each Enhanced Packet Block of a
/// little-endian pcapng file, in order.
pub fn comments(bytes: &[u8]) -> Vec<Vec<String>> {
    let mut out = Vec::new();
    let mut at = 0;
    while at + 12 <= bytes.len() {
        let u32_at = |i: usize| u32::from_le_bytes([bytes[i], bytes[i + 1], bytes[i + 2], bytes[i + 3]]);
        let (kind, len) = (u32_at(at), u32_at(at + 4) as usize);
        if len < 12 || at + len > bytes.len() {
            break;
        }
        if kind == 6 && len >= 32 {
            let b = &bytes[at + 8..at + len - 4];
            let caplen = u32::from_le_bytes([b[12], b[13], b[14], b[15]]) as usize;
            let mut o = 20 + caplen + pad4(caplen);
            let mut found = Vec::new();
            while o + 4 <= b.len() {
                let code = u16::from_le_bytes([b[o], b[o + 1]]);
                let n = u16::from_le_bytes([b[o + 2], b[o + 3]]) as usize;
                if code == 0 || o + 4 + n > b.len() {
                    break;
                }
                if code == 1 {
                    found.push(String::from_utf8_lossy(&b[o + 4..o + 4 + n]).into_owned());
                }
                o += 4 + n + pad4(n);
            }
            out.push(found);
        }
        at += len;
    }
    out
}

/// A packet read back from a file this writer made.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Packet {
    pub interface: u32,
    pub ts_us: u64,
    pub data: Vec<u8>,
}

/// Reads the Enhanced Packet Blocks of a little-endian pcapng file;
/// stops quietly at a truncated block (a capture cut short).
pub fn read(bytes: &[u8]) -> Vec<Packet> {
    let mut out = Vec::new();
    let mut at = 0;
    while at + 12 <= bytes.len() {
        let kind = u32::from_le_bytes([bytes[at], bytes[at + 1], bytes[at + 2], bytes[at + 3]]);
        let len = u32::from_le_bytes([bytes[at + 4], bytes[at + 5], bytes[at + 6], bytes[at + 7]]) as usize;
        if len < 12 || at + len > bytes.len() {
            break;
        }
        if kind == 6 && len >= 32 {
            let b = &bytes[at + 8..at + len - 4];
            let u32at = |i: usize| u32::from_le_bytes([b[i], b[i + 1], b[i + 2], b[i + 3]]);
            let caplen = u32at(12) as usize;
            if 20 + caplen <= b.len() {
                out.push(Packet {
                    interface: u32at(0),
                    ts_us: (u64::from(u32at(4)) << 32) | u64::from(u32at(8)),
                    data: b[20..20 + caplen].to_vec(),
                });
            }
        }
        at += len;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn what_is_written_reads_back() {
        let mut buf = Vec::new();
        {
            let mut w = Writer::new(&mut buf, &[("to-mag1", LINKTYPE_ETHERNET)]).unwrap();
            w.packet(0, 1_700_000_000_123_456, &[1, 2, 3, 4, 5]).unwrap();
            w.packet(0, 1_700_000_000_223_456, &[6; 64]).unwrap();
        }
        let p = read(&buf);
        assert_eq!(p.len(), 2);
        assert_eq!(p[0], Packet { interface: 0, ts_us: 1_700_000_000_123_456, data: vec![1, 2, 3, 4, 5] });
        assert_eq!(p[1].data.len(), 64);
        assert_eq!(read(&buf[..buf.len() - 3]).len(), 1, "a truncated last block is left out");
    }

    #[test]
    fn links_merge_in_time_order_with_each_step_on_the_packet_after_it() {
        let p = |ts_us, b: u8| Packet { interface: 0, ts_us, data: vec![b; 60] };
        let links = vec![("lma:to-mag1".to_string(), vec![p(10, 1), p(30, 3)]), ("mag2:to-lma".into(), vec![p(20, 2)])];
        let marks =
            vec![(5, "line 3: attach".to_string()), (15, "line 4: move".into()), (99, "line 5: snapshot".into())];
        let mut buf = Vec::new();
        assert_eq!(merge(&mut buf, &links, &marks).unwrap(), 3);
        let got: Vec<(u32, u64, u8)> = read(&buf).iter().map(|q| (q.interface, q.ts_us, q.data[0])).collect();
        assert_eq!(got, [(0, 10, 1), (1, 20, 2), (0, 30, 3)]);
        assert_eq!(
            comments(&buf),
            [vec!["line 3: attach".to_string()], vec!["line 4: move".into()], vec!["line 5: snapshot".into()]]
        );
    }
}
