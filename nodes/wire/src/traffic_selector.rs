//! Binary traffic selectors (RFC 6088), carried in the Traffic Selector
//! sub-option of the Flow Identification option (RFC 6089 §4.1.2).
//!
//! ```text
//!  0                   1                   2                   3
//!  0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! |   TS Format   |   Reserved    |A|B|C|D|E|F|G|H|I|J|K|L|M|N|O|P|
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! |           Reserved            |  fields whose flag is set ...
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! ```
//!
//! Only the fields whose flag is set are present, in flag order. IPv6
//! (format 2): A/B source address start/end (128 bits each), C/D destination
//! address, E/F IPsec SPI (32), G/H flow label (32-bit field, 20 bits used),
//! I/J source port (16), K/L destination port (16), M/N traffic class (8),
//! O/P next header (8). IPv4 (format 1) has the same shape with 32-bit
//! addresses, no flow label, and A–N: A–D addresses, E/F SPI, G/H source
//! port, I/J destination port, K/L DS field, M/N protocol.

use std::net::{Ipv4Addr, Ipv6Addr};

use serde::{Deserialize, Serialize};

use crate::codepoints::TsFormat;
use crate::error::{ErrorKind, Result, WireError};

/// Octets before the first selector field: format, reserved, flags, reserved.
pub const SELECTOR_HEADER_LEN: usize = 6;

/// A traffic selector in one of the RFC 6088 binary formats, or an opaque one.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum TrafficSelector {
    Ipv4(Ipv4Selector),
    Ipv6(Ipv6Selector),
    /// A format this codec does not decode; the bytes after the reserved octet.
    Other {
        format: u8,
        data: Vec<u8>,
    },
}

/// RFC 6088 §3.1: each field is present only when set.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Ipv4Selector {
    pub start_src: Option<Ipv4Addr>,
    pub end_src: Option<Ipv4Addr>,
    pub start_dst: Option<Ipv4Addr>,
    pub end_dst: Option<Ipv4Addr>,
    pub start_spi: Option<u32>,
    pub end_spi: Option<u32>,
    pub start_src_port: Option<u16>,
    pub end_src_port: Option<u16>,
    pub start_dst_port: Option<u16>,
    pub end_dst_port: Option<u16>,
    pub start_ds: Option<u8>,
    pub end_ds: Option<u8>,
    pub start_protocol: Option<u8>,
    pub end_protocol: Option<u8>,
}

/// RFC 6088 §3.2: each field is present only when set.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Ipv6Selector {
    pub start_src: Option<Ipv6Addr>,
    pub end_src: Option<Ipv6Addr>,
    pub start_dst: Option<Ipv6Addr>,
    pub end_dst: Option<Ipv6Addr>,
    pub start_spi: Option<u32>,
    pub end_spi: Option<u32>,
    pub start_flow_label: Option<u32>,
    pub end_flow_label: Option<u32>,
    pub start_src_port: Option<u16>,
    pub end_src_port: Option<u16>,
    pub start_dst_port: Option<u16>,
    pub end_dst_port: Option<u16>,
    pub start_traffic_class: Option<u8>,
    pub end_traffic_class: Option<u8>,
    pub start_next_header: Option<u8>,
    pub end_next_header: Option<u8>,
}

/// Reads the fields a flag word announces, in order, from a byte slice.
struct FieldReader<'a> {
    data: &'a [u8],
    pos: usize,
    flags: u16,
    bit: u16,
}

impl<'a> FieldReader<'a> {
    fn next<const N: usize>(&mut self) -> Option<[u8; N]> {
        let set = self.flags & self.bit != 0;
        self.bit >>= 1;
        if !set {
            return None;
        }
        let mut out = [0u8; N];
        // Length was checked up front, so this slice is in bounds.
        out.copy_from_slice(&self.data[self.pos..self.pos + N]);
        self.pos += N;
        Some(out)
    }
}

/// Writes present fields and collects the flag word.
struct FieldWriter {
    out: Vec<u8>,
    flags: u16,
    bit: u16,
}

impl FieldWriter {
    fn put(&mut self, field: Option<&[u8]>) {
        if let Some(bytes) = field {
            self.flags |= self.bit;
            self.out.extend_from_slice(bytes);
        }
        self.bit >>= 1;
    }
}

const V6_WIDTHS: [usize; 16] = [16, 16, 16, 16, 4, 4, 4, 4, 2, 2, 2, 2, 1, 1, 1, 1];
const V4_WIDTHS: [usize; 14] = [4, 4, 4, 4, 4, 4, 2, 2, 2, 2, 1, 1, 1, 1];

fn announced_len(flags: u16, widths: &[usize]) -> usize {
    widths.iter().enumerate().filter(|(i, _)| flags & (0x8000 >> i) != 0).map(|(_, w)| w).sum()
}

impl TrafficSelector {
    pub fn format(&self) -> TsFormat {
        match self {
            TrafficSelector::Ipv4(_) => TsFormat::Ipv4Binary,
            TrafficSelector::Ipv6(_) => TsFormat::Ipv6Binary,
            TrafficSelector::Other { format, .. } => TsFormat::from(*format),
        }
    }

    /// Parses the sub-option data: TS format, reserved, then the selector.
    /// `base` is the offset of `data` within the Mobility Header, for errors.
    pub fn parse(data: &[u8], base: usize) -> Result<Self> {
        if data.len() < 2 {
            return Err(WireError::at(base, ErrorKind::Truncated { needed: 2, available: data.len() }));
        }
        let format = data[0];
        match TsFormat::from(format) {
            TsFormat::Ipv6Binary | TsFormat::Ipv4Binary => {
                if data.len() < SELECTOR_HEADER_LEN {
                    return Err(WireError::at(
                        base,
                        ErrorKind::TrafficSelectorTruncated { format, needed: SELECTOR_HEADER_LEN, found: data.len() },
                    ));
                }
                let flags = u16::from_be_bytes([data[2], data[3]]);
                let v6 = format == TsFormat::Ipv6Binary.value();
                let widths: &[usize] = if v6 { &V6_WIDTHS } else { &V4_WIDTHS };
                // Flags O and P do not exist in the IPv4 format: must be zero.
                let flags = if v6 { flags } else { flags & 0xfffc };
                let needed = announced_len(flags, widths);
                let body = &data[SELECTOR_HEADER_LEN..];
                if body.len() != needed {
                    return Err(WireError::at(
                        base,
                        ErrorKind::TrafficSelectorTruncated { format, needed, found: body.len() },
                    ));
                }
                let mut r = FieldReader { data: body, pos: 0, flags, bit: 0x8000 };
                if v6 {
                    Ok(TrafficSelector::Ipv6(Ipv6Selector {
                        start_src: r.next::<16>().map(Ipv6Addr::from),
                        end_src: r.next::<16>().map(Ipv6Addr::from),
                        start_dst: r.next::<16>().map(Ipv6Addr::from),
                        end_dst: r.next::<16>().map(Ipv6Addr::from),
                        start_spi: r.next::<4>().map(u32::from_be_bytes),
                        end_spi: r.next::<4>().map(u32::from_be_bytes),
                        start_flow_label: r.next::<4>().map(|b| u32::from_be_bytes(b) & 0xfffff),
                        end_flow_label: r.next::<4>().map(|b| u32::from_be_bytes(b) & 0xfffff),
                        start_src_port: r.next::<2>().map(u16::from_be_bytes),
                        end_src_port: r.next::<2>().map(u16::from_be_bytes),
                        start_dst_port: r.next::<2>().map(u16::from_be_bytes),
                        end_dst_port: r.next::<2>().map(u16::from_be_bytes),
                        start_traffic_class: r.next::<1>().map(|b| b[0]),
                        end_traffic_class: r.next::<1>().map(|b| b[0]),
                        start_next_header: r.next::<1>().map(|b| b[0]),
                        end_next_header: r.next::<1>().map(|b| b[0]),
                    }))
                } else {
                    Ok(TrafficSelector::Ipv4(Ipv4Selector {
                        start_src: r.next::<4>().map(Ipv4Addr::from),
                        end_src: r.next::<4>().map(Ipv4Addr::from),
                        start_dst: r.next::<4>().map(Ipv4Addr::from),
                        end_dst: r.next::<4>().map(Ipv4Addr::from),
                        start_spi: r.next::<4>().map(u32::from_be_bytes),
                        end_spi: r.next::<4>().map(u32::from_be_bytes),
                        start_src_port: r.next::<2>().map(u16::from_be_bytes),
                        end_src_port: r.next::<2>().map(u16::from_be_bytes),
                        start_dst_port: r.next::<2>().map(u16::from_be_bytes),
                        end_dst_port: r.next::<2>().map(u16::from_be_bytes),
                        start_ds: r.next::<1>().map(|b| b[0]),
                        end_ds: r.next::<1>().map(|b| b[0]),
                        start_protocol: r.next::<1>().map(|b| b[0]),
                        end_protocol: r.next::<1>().map(|b| b[0]),
                    }))
                }
            }
            _ => Ok(TrafficSelector::Other { format, data: data[2..].to_vec() }),
        }
    }

    /// The sub-option data this selector encodes to.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut w = FieldWriter { out: Vec::new(), flags: 0, bit: 0x8000 };
        match self {
            TrafficSelector::Ipv6(s) => {
                w.put(s.start_src.map(|a| a.octets()).as_ref().map(|a| &a[..]));
                w.put(s.end_src.map(|a| a.octets()).as_ref().map(|a| &a[..]));
                w.put(s.start_dst.map(|a| a.octets()).as_ref().map(|a| &a[..]));
                w.put(s.end_dst.map(|a| a.octets()).as_ref().map(|a| &a[..]));
                w.put(s.start_spi.map(u32::to_be_bytes).as_ref().map(|a| &a[..]));
                w.put(s.end_spi.map(u32::to_be_bytes).as_ref().map(|a| &a[..]));
                let fl = |v: Option<u32>| v.map(|v| (v & 0xfffff).to_be_bytes());
                w.put(fl(s.start_flow_label).as_ref().map(|a| &a[..]));
                w.put(fl(s.end_flow_label).as_ref().map(|a| &a[..]));
                w.put(s.start_src_port.map(u16::to_be_bytes).as_ref().map(|a| &a[..]));
                w.put(s.end_src_port.map(u16::to_be_bytes).as_ref().map(|a| &a[..]));
                w.put(s.start_dst_port.map(u16::to_be_bytes).as_ref().map(|a| &a[..]));
                w.put(s.end_dst_port.map(u16::to_be_bytes).as_ref().map(|a| &a[..]));
                w.put(s.start_traffic_class.map(|v| [v]).as_ref().map(|a| &a[..]));
                w.put(s.end_traffic_class.map(|v| [v]).as_ref().map(|a| &a[..]));
                w.put(s.start_next_header.map(|v| [v]).as_ref().map(|a| &a[..]));
                w.put(s.end_next_header.map(|v| [v]).as_ref().map(|a| &a[..]));
            }
            TrafficSelector::Ipv4(s) => {
                w.put(s.start_src.map(|a| a.octets()).as_ref().map(|a| &a[..]));
                w.put(s.end_src.map(|a| a.octets()).as_ref().map(|a| &a[..]));
                w.put(s.start_dst.map(|a| a.octets()).as_ref().map(|a| &a[..]));
                w.put(s.end_dst.map(|a| a.octets()).as_ref().map(|a| &a[..]));
                w.put(s.start_spi.map(u32::to_be_bytes).as_ref().map(|a| &a[..]));
                w.put(s.end_spi.map(u32::to_be_bytes).as_ref().map(|a| &a[..]));
                w.put(s.start_src_port.map(u16::to_be_bytes).as_ref().map(|a| &a[..]));
                w.put(s.end_src_port.map(u16::to_be_bytes).as_ref().map(|a| &a[..]));
                w.put(s.start_dst_port.map(u16::to_be_bytes).as_ref().map(|a| &a[..]));
                w.put(s.end_dst_port.map(u16::to_be_bytes).as_ref().map(|a| &a[..]));
                w.put(s.start_ds.map(|v| [v]).as_ref().map(|a| &a[..]));
                w.put(s.end_ds.map(|v| [v]).as_ref().map(|a| &a[..]));
                w.put(s.start_protocol.map(|v| [v]).as_ref().map(|a| &a[..]));
                w.put(s.end_protocol.map(|v| [v]).as_ref().map(|a| &a[..]));
            }
            TrafficSelector::Other { format, data } => {
                let mut out = vec![*format, 0];
                out.extend_from_slice(data);
                return out;
            }
        }
        let mut out = Vec::with_capacity(SELECTOR_HEADER_LEN + w.out.len());
        out.push(self.format().value());
        out.push(0);
        out.extend_from_slice(&w.flags.to_be_bytes());
        out.extend_from_slice(&[0, 0]);
        out.extend_from_slice(&w.out);
        out
    }

    pub fn buffer_len(&self) -> usize {
        match self {
            TrafficSelector::Other { data, .. } => 2 + data.len(),
            TrafficSelector::Ipv6(_) | TrafficSelector::Ipv4(_) => self.to_bytes().len(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ipv6_selector_with_destination_and_port_is_laid_out_in_flag_order() {
        let ts = TrafficSelector::Ipv6(Ipv6Selector {
            start_dst: Some("2001:db8:2::".parse().unwrap()),
            end_dst: Some("2001:db8:2::ffff".parse().unwrap()),
            start_dst_port: Some(5001),
            end_dst_port: Some(5001),
            start_next_header: Some(17),
            end_next_header: Some(17),
            ..Default::default()
        });
        let b = ts.to_bytes();
        assert_eq!(&b[..6], &[2, 0, 0b0011_0000, 0b0011_0011, 0, 0]);
        assert_eq!(b.len(), 6 + 32 + 4 + 2);
        assert_eq!(&b[38..40], &5001u16.to_be_bytes());
        assert_eq!(TrafficSelector::parse(&b, 0).unwrap(), ts);
    }

    #[test]
    fn selector_shorter_than_its_flags_is_refused_with_the_count() {
        let mut b = TrafficSelector::Ipv6(Ipv6Selector { start_src_port: Some(1), ..Default::default() }).to_bytes();
        b.pop();
        let e = TrafficSelector::parse(&b, 20).unwrap_err();
        assert_eq!(e.offset, 20);
        assert!(matches!(e.kind, ErrorKind::TrafficSelectorTruncated { needed: 2, found: 1, .. }));
    }
}
