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
        let mut epb = Vec::with_capacity(20 + data.len() + 4);
        epb.extend_from_slice(&interface.to_le_bytes());
        epb.extend_from_slice(&((ts_us >> 32) as u32).to_le_bytes());
        epb.extend_from_slice(&(ts_us as u32).to_le_bytes());
        epb.extend_from_slice(&(data.len() as u32).to_le_bytes());
        epb.extend_from_slice(&(data.len() as u32).to_le_bytes());
        epb.extend_from_slice(data);
        epb.extend(std::iter::repeat_n(0, pad4(data.len())));
        block(&mut self.w, 6, &epb)
    }

    pub fn flush(&mut self) -> io::Result<()> {
        self.w.flush()
    }
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
}
