//! pcapng files through the pcap-file crate: one Section Header Block,
//! one Interface Description Block per link (name, link type, nanosecond
//! timestamps), Enhanced Packet Blocks with optional comments; reading
//! back skips a block it cannot decode and stops quietly at a truncated
//! one (a capture cut short).

use std::borrow::Cow;
use std::io::{self, Write};
use std::time::Duration;

use pcap_file::pcapng::blocks::enhanced_packet::{EnhancedPacketBlock, EnhancedPacketOption};
use pcap_file::pcapng::blocks::interface_description::{InterfaceDescriptionBlock, InterfaceDescriptionOption};
use pcap_file::pcapng::blocks::section_header::{SectionHeaderBlock, SectionHeaderOption};
use pcap_file::pcapng::{Block, PcapNgParser, PcapNgWriter};
use pcap_file::{DataLink, Endianness};

pub const LINKTYPE_ETHERNET: u16 = 1;

/// An option's length is 16 bits: a longer comment is cut at a character
/// boundary (with room for the crate's padding).
const MAX_COMMENT: usize = u16::MAX as usize - 3;

fn io_error(e: pcap_file::PcapError) -> io::Error {
    match e {
        pcap_file::PcapError::IoError(e) => e,
        e => io::Error::other(e),
    }
}

pub struct Writer<W: Write> {
    w: PcapNgWriter<W>,
}

impl<W: Write> Writer<W> {
    /// Writes the section header and one interface per `(name, linktype)`.
    pub fn new(w: W, interfaces: &[(&str, u16)]) -> io::Result<Self> {
        let section = SectionHeaderBlock {
            endianness: Endianness::Little,
            options: vec![SectionHeaderOption::UserApplication(Cow::Borrowed("pmiplab"))],
            ..Default::default()
        };
        let mut w = PcapNgWriter::with_section_header(w, section).map_err(io_error)?;
        for (name, linktype) in interfaces {
            let idb = InterfaceDescriptionBlock {
                linktype: DataLink::from(u32::from(*linktype)),
                snaplen: 262_144,
                options: vec![
                    InterfaceDescriptionOption::IfName(Cow::Owned(name.to_string())),
                    // The crate keeps an EPB's timestamp as a count of
                    // nanoseconds: the interface says so.
                    InterfaceDescriptionOption::IfTsResol(9),
                ],
            };
            w.write_pcapng_block(idb).map_err(io_error)?;
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
        let options = comments
            .iter()
            .map(|c| {
                let mut end = c.len().min(MAX_COMMENT);
                while !c.is_char_boundary(end) {
                    end -= 1;
                }
                EnhancedPacketOption::Comment(Cow::Borrowed(&c[..end]))
            })
            .collect();
        let epb = EnhancedPacketBlock {
            interface_id: interface,
            timestamp: Duration::from_micros(ts_us),
            original_len: data.len() as u32,
            data: Cow::Borrowed(data),
            options,
        };
        self.w.write_pcapng_block(epb).map(|_| ()).map_err(io_error)
    }

    pub fn flush(&mut self) -> io::Result<()> {
        self.w.get_mut().flush()
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

/// A packet read back from a pcapng file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Packet {
    pub interface: u32,
    pub ts_us: u64,
    pub data: Vec<u8>,
}

/// Every Enhanced Packet Block of a pcapng file with its comments, in
/// order. A block whose content cannot be decoded (a comment that is not
/// UTF-8, say) is skipped by its length; reading stops quietly at a
/// truncated block (a capture cut short).
fn blocks(bytes: &[u8]) -> Vec<(Packet, Vec<String>)> {
    let Ok((mut rest, mut parser)) = PcapNgParser::new(bytes) else { return Vec::new() };
    let mut out = Vec::new();
    while !rest.is_empty() {
        let block = match parser.next_block(rest) {
            Ok((next, block)) => {
                rest = next;
                block
            }
            Err(_) => match parser.next_raw_block(rest) {
                Ok((next, _)) => {
                    rest = next;
                    continue;
                }
                Err(_) => break,
            },
        };
        let Block::EnhancedPacket(epb) = block else { continue };
        // The timestamp's unit is the interface's if_tsresol (10^-6 s
        // when it has none); the crate hands the raw count as nanoseconds.
        let raw = epb.timestamp.as_nanos();
        let resol = parser
            .packet_interface(&epb)
            .and_then(|i| {
                i.options.iter().find_map(|o| match o {
                    InterfaceDescriptionOption::IfTsResol(r) => Some(*r),
                    _ => None,
                })
            })
            .unwrap_or(6);
        let ts_us = match resol {
            r if r & 0x80 == 0 && r >= 6 => raw / 10u128.pow(u32::from(r - 6).min(30)),
            r if r & 0x80 == 0 => raw * 10u128.pow(u32::from(6 - r)),
            r => (raw * 1_000_000) >> u32::from(r & 0x7f).min(100),
        };
        let comments = epb
            .options
            .iter()
            .filter_map(|o| match o {
                EnhancedPacketOption::Comment(c) => Some(c.to_string()),
                _ => None,
            })
            .collect();
        let packet = Packet { interface: epb.interface_id, ts_us: ts_us as u64, data: epb.data.into_owned() };
        out.push((packet, comments));
    }
    out
}

/// The `opt_comment` options of each Enhanced Packet Block, in order.
pub fn comments(bytes: &[u8]) -> Vec<Vec<String>> {
    blocks(bytes).into_iter().map(|(_, c)| c).collect()
}

/// Reads the Enhanced Packet Blocks of a pcapng file, skipping one it
/// cannot decode; stops quietly at a truncated block (a capture cut short).
pub fn read(bytes: &[u8]) -> Vec<Packet> {
    blocks(bytes).into_iter().map(|(p, _)| p).collect()
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
        assert!(read(b"not a capture").is_empty());
    }

    #[test]
    fn a_block_that_cannot_be_decoded_is_skipped_and_the_rest_read() {
        let mut buf = Vec::new();
        {
            let mut w = Writer::new(&mut buf, &[("to-mag1", LINKTYPE_ETHERNET)]).unwrap();
            w.packet_with_comments(0, 1, &[1; 8], &["zq-note".to_string()]).unwrap();
            w.packet(0, 2, &[2; 8]).unwrap();
        }
        // The first packet's comment becomes bytes that are not UTF-8.
        let at = buf.windows(7).position(|w| w == b"zq-note").unwrap();
        buf[at] = 0xff;
        let p = read(&buf);
        assert_eq!(p.iter().map(|p| p.data[0]).collect::<Vec<_>>(), [2]);
    }

    #[test]
    fn timestamps_read_in_the_interface_resolution() {
        for (resol, raw, us) in [(6u8, 1_234_567u64, 1_234_567u64), (3, 1_234, 1_234_000), (0x80 | 10, 2048, 2_000_000)]
        {
            let mut buf = Vec::new();
            let section = SectionHeaderBlock { endianness: Endianness::Little, ..Default::default() };
            let mut w = PcapNgWriter::with_section_header(&mut buf, section).unwrap();
            let mut idb = InterfaceDescriptionBlock::new(DataLink::ETHERNET, 1500);
            idb.options.push(InterfaceDescriptionOption::IfTsResol(resol));
            w.write_pcapng_block(idb).unwrap();
            let epb = EnhancedPacketBlock {
                interface_id: 0,
                timestamp: Duration::from_nanos(raw),
                original_len: 1,
                data: Cow::Borrowed(&[7u8][..]),
                options: vec![],
            };
            w.write_pcapng_block(epb).unwrap();
            assert_eq!(read(&buf)[0].ts_us, us, "if_tsresol {resol:#x}");
        }
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
