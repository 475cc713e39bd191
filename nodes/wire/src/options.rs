//! Mobility options (RFC 6275 §6.2) and the options pmiplab uses from
//! RFC 4283, 5213, 5648, 5847, 6089.
//!
//! ```text
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+- - - - - - - - -
//! |  Option Type  | Option Length |   Option Data...
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+- - - - - - - - -
//! ```
//!
//! Pad1 is a single zero octet; every other option is a TLV whose length
//! excludes the type and length octets. Padding is not kept in the `Repr`:
//! the emitter inserts the minimal Pad1/PadN each option's alignment needs.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use serde::{Deserialize, Serialize};

use crate::codepoints::{AccessTechnologyType, HandoffIndicator, MnIdSubtype, PbaStatus};
use crate::error::{ErrorKind, Result, WireError};
use crate::traffic_selector::TrafficSelector;

pub mod kind {
    pub const PAD1: u8 = 0;
    pub const PADN: u8 = 1;
    pub const MN_IDENTIFIER: u8 = 8;
    pub const HOME_NETWORK_PREFIX: u8 = 22;
    pub const HANDOFF_INDICATOR: u8 = 23;
    pub const ACCESS_TECHNOLOGY_TYPE: u8 = 24;
    pub const MN_LINK_LAYER_ID: u8 = 25;
    pub const LINK_LOCAL_ADDRESS: u8 = 26;
    pub const TIMESTAMP: u8 = 27;
    pub const RESTART_COUNTER: u8 = 28;
    pub const BINDING_IDENTIFIER: u8 = 35;
    pub const FLOW_SUMMARY: u8 = 44;
    pub const FLOW_IDENTIFICATION: u8 = 45;
}

/// Flow Identification sub-option types (RFC 6089 §4.1).
pub mod sub_kind {
    pub const PAD1: u8 = 0;
    pub const PADN: u8 = 1;
    pub const BINDING_REFERENCE: u8 = 2;
    pub const TRAFFIC_SELECTOR: u8 = 3;
}

/// RFC 5213 §8.8 timestamp: 48 bits of seconds since 1970-01-01 and 16 bits
/// of 1/65536 second, the NTP-like fixed point of RFC 5905 without the era.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct Timestamp(pub u64);

impl Timestamp {
    pub fn from_parts(seconds: u64, fraction: u16) -> Self {
        Timestamp(((seconds & 0xffff_ffff_ffff) << 16) | u64::from(fraction))
    }
    /// From a time in nanoseconds since the Unix epoch.
    pub fn from_unix_nanos(nanos: u128) -> Self {
        let secs = (nanos / 1_000_000_000) as u64;
        let frac = ((nanos % 1_000_000_000) * 65536 / 1_000_000_000) as u16;
        Self::from_parts(secs, frac)
    }
    pub fn seconds(self) -> u64 {
        self.0 >> 16
    }
    pub fn fraction(self) -> u16 {
        self.0 as u16
    }
}

/// One sub-option of a Flow Identification option.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum FlowSubOption {
    /// RFC 6089 §4.1.1: the BIDs the flow is bound to.
    BindingReference(Vec<u16>),
    /// RFC 6089 §4.1.2 with an RFC 6088 selector.
    TrafficSelector(TrafficSelector),
    Unknown {
        kind: u8,
        data: Vec<u8>,
    },
}

/// RFC 6089 §4.1 Flow Identification option.
///
/// ```text
/// |  Option Type  | Option Len    |            FID                |
/// |            FID-PRI            |  Reserved     |    Status     |
/// |   Sub-options (optional) ...
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FlowIdentification {
    pub fid: u16,
    pub fid_pri: u16,
    pub status: u8,
    pub sub_options: Vec<FlowSubOption>,
}

impl FlowIdentification {
    pub fn traffic_selector(&self) -> Option<&TrafficSelector> {
        self.sub_options.iter().find_map(|s| match s {
            FlowSubOption::TrafficSelector(t) => Some(t),
            _ => None,
        })
    }
    pub fn binding_reference(&self) -> Option<&[u16]> {
        self.sub_options.iter().find_map(|s| match s {
            FlowSubOption::BindingReference(b) => Some(&b[..]),
            _ => None,
        })
    }
}

/// A mobility option, decoded.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum MobilityOption {
    /// RFC 4283: subtype and identifier (a NAI for subtype 1).
    MnIdentifier {
        subtype: MnIdSubtype,
        id: Vec<u8>,
    },
    /// RFC 5213 §8.3, alignment 8n+4.
    HomeNetworkPrefix {
        prefix_len: u8,
        prefix: Ipv6Addr,
    },
    /// RFC 5213 §8.4.
    HandoffIndicator(HandoffIndicator),
    /// RFC 5213 §8.5.
    AccessTechnologyType(AccessTechnologyType),
    /// RFC 5213 §8.6, alignment 8n+2.
    MnLinkLayerIdentifier(Vec<u8>),
    /// RFC 5213 §8.7, alignment 8n+6.
    LinkLocalAddress(Ipv6Addr),
    /// RFC 5213 §8.8, alignment 8n+2.
    Timestamp(Timestamp),
    /// RFC 5847 §3.2.
    RestartCounter(u32),
    /// RFC 5648 §6.1 with RFC 6089's BID-PRI in the low seven bits.
    BindingIdentifier {
        bid: u16,
        status: PbaStatus,
        h: bool,
        bid_pri: u8,
        coa: Option<IpAddr>,
    },
    /// RFC 6089 §4.2: registered FIDs.
    FlowSummary(Vec<u16>),
    FlowIdentification(FlowIdentification),
    /// Any other option, kept so that it round-trips.
    Unknown {
        kind: u8,
        data: Vec<u8>,
    },
}

impl MobilityOption {
    pub fn kind(&self) -> u8 {
        use MobilityOption::*;
        match self {
            MnIdentifier { .. } => kind::MN_IDENTIFIER,
            HomeNetworkPrefix { .. } => kind::HOME_NETWORK_PREFIX,
            HandoffIndicator(_) => kind::HANDOFF_INDICATOR,
            AccessTechnologyType(_) => kind::ACCESS_TECHNOLOGY_TYPE,
            MnLinkLayerIdentifier(_) => kind::MN_LINK_LAYER_ID,
            LinkLocalAddress(_) => kind::LINK_LOCAL_ADDRESS,
            Timestamp(_) => kind::TIMESTAMP,
            RestartCounter(_) => kind::RESTART_COUNTER,
            BindingIdentifier { .. } => kind::BINDING_IDENTIFIER,
            FlowSummary(_) => kind::FLOW_SUMMARY,
            FlowIdentification(_) => kind::FLOW_IDENTIFICATION,
            Unknown { kind, .. } => *kind,
        }
    }

    /// Alignment requirement `xn+y` as `(x, y)`, counted from the start of
    /// the Mobility Header (RFC 6275 §6.2.1 and each option's RFC).
    pub fn alignment(&self) -> (usize, usize) {
        use MobilityOption::*;
        match self {
            HomeNetworkPrefix { .. } => (8, 4),
            LinkLocalAddress(_) => (8, 6),
            Timestamp(_) | MnLinkLayerIdentifier(_) => (8, 2),
            RestartCounter(_) => (4, 2),
            BindingIdentifier { .. } | FlowIdentification(_) | FlowSummary(_) => (2, 0),
            _ => (1, 0),
        }
    }

    /// Option data (without type and length octets).
    pub fn data(&self) -> Vec<u8> {
        use MobilityOption::*;
        match self {
            MnIdentifier { subtype, id } => {
                let mut v = vec![subtype.value()];
                v.extend_from_slice(id);
                v
            }
            HomeNetworkPrefix { prefix_len, prefix } => {
                let mut v = vec![0, *prefix_len];
                v.extend_from_slice(&prefix.octets());
                v
            }
            HandoffIndicator(hi) => vec![0, hi.value()],
            AccessTechnologyType(att) => vec![0, att.value()],
            MnLinkLayerIdentifier(id) => {
                let mut v = vec![0, 0];
                v.extend_from_slice(id);
                v
            }
            LinkLocalAddress(a) => a.octets().to_vec(),
            Timestamp(t) => t.0.to_be_bytes().to_vec(),
            RestartCounter(c) => c.to_be_bytes().to_vec(),
            BindingIdentifier { bid, status, h, bid_pri, coa } => {
                let mut v = bid.to_be_bytes().to_vec();
                v.push(status.value());
                v.push((u8::from(*h) << 7) | (bid_pri & 0x7f));
                match coa {
                    Some(IpAddr::V4(a)) => v.extend_from_slice(&a.octets()),
                    Some(IpAddr::V6(a)) => v.extend_from_slice(&a.octets()),
                    None => {}
                }
                v
            }
            FlowSummary(fids) => fids.iter().flat_map(|f| f.to_be_bytes()).collect(),
            FlowIdentification(fi) => {
                let mut v = fi.fid.to_be_bytes().to_vec();
                v.extend_from_slice(&fi.fid_pri.to_be_bytes());
                v.push(0);
                v.push(fi.status);
                for s in &fi.sub_options {
                    let (k, d) = match s {
                        FlowSubOption::BindingReference(bids) => {
                            (sub_kind::BINDING_REFERENCE, bids.iter().flat_map(|b| b.to_be_bytes()).collect())
                        }
                        FlowSubOption::TrafficSelector(ts) => (sub_kind::TRAFFIC_SELECTOR, ts.to_bytes()),
                        FlowSubOption::Unknown { kind, data } => (*kind, data.clone()),
                    };
                    v.push(k);
                    v.push(d.len() as u8);
                    v.extend_from_slice(&d);
                }
                v
            }
            Unknown { data, .. } => data.clone(),
        }
    }

    /// Checks the lengths an emitter cannot fix by itself.
    pub fn check_encodable(&self) -> Result<()> {
        let too_long = |what| Err(WireError::at(0, ErrorKind::Unencodable(what)));
        if self.data().len() > 255 {
            return too_long("a mobility option's data is longer than 255 octets");
        }
        match self {
            MobilityOption::FlowIdentification(fi) => {
                for s in &fi.sub_options {
                    let len = match s {
                        FlowSubOption::BindingReference(b) => b.len() * 2,
                        FlowSubOption::TrafficSelector(t) => t.buffer_len(),
                        FlowSubOption::Unknown { kind, data } => {
                            if *kind <= sub_kind::PADN {
                                return too_long("a flow sub-option may not use the padding types 0 or 1");
                            }
                            data.len()
                        }
                    };
                    if len > 255 {
                        return too_long("a flow identification sub-option is longer than 255 octets");
                    }
                }
            }
            MobilityOption::Unknown { kind, .. } if *kind <= kind::PADN => {
                return too_long("an unknown option may not use the padding types 0 or 1");
            }
            MobilityOption::FlowSummary(f) if f.is_empty() => {
                return too_long("a Flow Summary option needs at least one FID");
            }
            _ => {}
        }
        Ok(())
    }

    /// Decodes one option from its type and data. `base` is the offset of
    /// the option's type octet within the Mobility Header.
    pub fn parse(kind_: u8, data: &[u8], base: usize) -> Result<Self> {
        let fixed = |expected: &'static str, ok: bool| -> Result<()> {
            if ok {
                Ok(())
            } else {
                Err(WireError::at(base, ErrorKind::OptionLength { option_type: kind_, expected, found: data.len() }))
            }
        };
        Ok(match kind_ {
            kind::MN_IDENTIFIER => {
                fixed("at least 2 (subtype and identifier)", data.len() >= 2)?;
                MobilityOption::MnIdentifier { subtype: data[0].into(), id: data[1..].to_vec() }
            }
            kind::HOME_NETWORK_PREFIX => {
                fixed("exactly 18", data.len() == 18)?;
                let mut p = [0u8; 16];
                p.copy_from_slice(&data[2..18]);
                MobilityOption::HomeNetworkPrefix { prefix_len: data[1], prefix: p.into() }
            }
            kind::HANDOFF_INDICATOR => {
                fixed("exactly 2", data.len() == 2)?;
                MobilityOption::HandoffIndicator(data[1].into())
            }
            kind::ACCESS_TECHNOLOGY_TYPE => {
                fixed("exactly 2", data.len() == 2)?;
                MobilityOption::AccessTechnologyType(data[1].into())
            }
            kind::MN_LINK_LAYER_ID => {
                fixed("at least 3 (reserved and identifier)", data.len() >= 3)?;
                MobilityOption::MnLinkLayerIdentifier(data[2..].to_vec())
            }
            kind::LINK_LOCAL_ADDRESS => {
                fixed("exactly 16", data.len() == 16)?;
                let mut a = [0u8; 16];
                a.copy_from_slice(data);
                MobilityOption::LinkLocalAddress(a.into())
            }
            kind::TIMESTAMP => {
                fixed("exactly 8", data.len() == 8)?;
                let mut t = [0u8; 8];
                t.copy_from_slice(data);
                MobilityOption::Timestamp(Timestamp(u64::from_be_bytes(t)))
            }
            kind::RESTART_COUNTER => {
                fixed("exactly 4", data.len() == 4)?;
                MobilityOption::RestartCounter(u32::from_be_bytes([data[0], data[1], data[2], data[3]]))
            }
            kind::BINDING_IDENTIFIER => {
                fixed("4, 8 or 20", matches!(data.len(), 4 | 8 | 20))?;
                let coa = match data.len() {
                    8 => Some(IpAddr::V4(Ipv4Addr::new(data[4], data[5], data[6], data[7]))),
                    20 => {
                        let mut a = [0u8; 16];
                        a.copy_from_slice(&data[4..20]);
                        Some(IpAddr::V6(a.into()))
                    }
                    _ => None,
                };
                MobilityOption::BindingIdentifier {
                    bid: u16::from_be_bytes([data[0], data[1]]),
                    status: data[2].into(),
                    h: data[3] & 0x80 != 0,
                    bid_pri: data[3] & 0x7f,
                    coa,
                }
            }
            kind::FLOW_SUMMARY => {
                fixed("a positive even number", !data.is_empty() && data.len().is_multiple_of(2))?;
                MobilityOption::FlowSummary(data.chunks_exact(2).map(|c| u16::from_be_bytes([c[0], c[1]])).collect())
            }
            kind::FLOW_IDENTIFICATION => {
                fixed("at least 6", data.len() >= 6)?;
                MobilityOption::FlowIdentification(FlowIdentification {
                    fid: u16::from_be_bytes([data[0], data[1]]),
                    fid_pri: u16::from_be_bytes([data[2], data[3]]),
                    status: data[5],
                    sub_options: parse_sub_options(&data[6..], base + 2 + 6)?,
                })
            }
            other => MobilityOption::Unknown { kind: other, data: data.to_vec() },
        })
    }
}

fn parse_sub_options(mut data: &[u8], mut base: usize) -> Result<Vec<FlowSubOption>> {
    let mut out = Vec::new();
    while let Some(&k) = data.first() {
        if k == sub_kind::PAD1 {
            data = &data[1..];
            base += 1;
            continue;
        }
        if data.len() < 2 {
            return Err(WireError::at(base, ErrorKind::SubOptionOverrun { sub_type: k, declared: 0, available: 0 }));
        }
        let len = usize::from(data[1]);
        if data.len() - 2 < len {
            return Err(WireError::at(
                base,
                ErrorKind::SubOptionOverrun { sub_type: k, declared: len, available: data.len() - 2 },
            ));
        }
        let body = &data[2..2 + len];
        match k {
            sub_kind::PADN => {}
            sub_kind::BINDING_REFERENCE => {
                if body.is_empty() || !body.len().is_multiple_of(2) {
                    return Err(WireError::at(
                        base,
                        ErrorKind::SubOptionLength { sub_type: k, expected: "a positive even number", found: len },
                    ));
                }
                out.push(FlowSubOption::BindingReference(
                    body.chunks_exact(2).map(|c| u16::from_be_bytes([c[0], c[1]])).collect(),
                ));
            }
            sub_kind::TRAFFIC_SELECTOR => {
                out.push(FlowSubOption::TrafficSelector(TrafficSelector::parse(body, base + 2)?));
            }
            other => out.push(FlowSubOption::Unknown { kind: other, data: body.to_vec() }),
        }
        data = &data[2 + len..];
        base += 2 + len;
    }
    Ok(out)
}

/// A raw option as it sits in the buffer: zero-copy.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RawOption<'a> {
    /// Offset of the type octet within the Mobility Header.
    pub offset: usize,
    pub kind: u8,
    pub data: &'a [u8],
}

impl RawOption<'_> {
    pub fn is_padding(&self) -> bool {
        self.kind == kind::PAD1 || self.kind == kind::PADN
    }
}

/// Iterates over the TLVs of an option area without copying. Stops after
/// the first error.
pub struct RawOptions<'a> {
    data: &'a [u8],
    pos: usize,
    base: usize,
    failed: bool,
}

impl<'a> RawOptions<'a> {
    /// `base` is the offset of `data` within the Mobility Header.
    pub fn new(data: &'a [u8], base: usize) -> Self {
        RawOptions { data, pos: 0, base, failed: false }
    }
}

impl<'a> Iterator for RawOptions<'a> {
    type Item = Result<RawOption<'a>>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.failed || self.pos >= self.data.len() {
            return None;
        }
        let offset = self.base + self.pos;
        let k = self.data[self.pos];
        if k == kind::PAD1 {
            self.pos += 1;
            return Some(Ok(RawOption { offset, kind: k, data: &[] }));
        }
        let rest = &self.data[self.pos..];
        if rest.len() < 2 {
            self.failed = true;
            return Some(Err(WireError::at(
                offset,
                ErrorKind::OptionOverrun { option_type: k, declared: 0, available: 0 },
            )));
        }
        let len = usize::from(rest[1]);
        if rest.len() - 2 < len {
            self.failed = true;
            return Some(Err(WireError::at(
                offset,
                ErrorKind::OptionOverrun { option_type: k, declared: len, available: rest.len() - 2 },
            )));
        }
        self.pos += 2 + len;
        Some(Ok(RawOption { offset, kind: k, data: &rest[2..2 + len] }))
    }
}

/// Decodes an option area, dropping padding.
pub fn parse_options(data: &[u8], base: usize) -> Result<Vec<MobilityOption>> {
    let mut out = Vec::new();
    for raw in RawOptions::new(data, base) {
        let raw = raw?;
        if !raw.is_padding() {
            out.push(MobilityOption::parse(raw.kind, raw.data, raw.offset)?);
        }
    }
    Ok(out)
}

/// Writes the minimal padding that takes `len` octets: Pad1 or PadN.
fn push_padding(out: &mut Vec<u8>, len: usize) {
    match len {
        0 => {}
        1 => out.push(kind::PAD1),
        n => {
            out.push(kind::PADN);
            out.push((n - 2) as u8);
            out.extend(std::iter::repeat_n(0, n - 2));
        }
    }
}

/// Appends `options` to `out` (whose length is the current offset in the
/// Mobility Header) with alignment padding, then pads the whole header to a
/// multiple of 8 octets.
pub fn emit_options(out: &mut Vec<u8>, options: &[MobilityOption]) {
    for opt in options {
        let (x, y) = opt.alignment();
        let pos = out.len();
        let pad = (y + x - (pos % x)) % x;
        push_padding(out, pad);
        let data = opt.data();
        out.push(opt.kind());
        out.push(data.len() as u8);
        out.extend_from_slice(&data);
    }
    let pad = (8 - out.len() % 8) % 8;
    push_padding(out, pad);
}
