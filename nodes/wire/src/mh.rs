//! The Mobility Header (RFC 6275 §6.1.1) as a checked zero-copy view, and
//! the message `Repr`s that ride in it.
//!
//! ```text
//!  0                   1                   2                   3
//!  0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! | Payload Proto |  Header Len   |   MH Type     |   Reserved    |
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! |           Checksum            |                               |
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+                               |
//! .                       Message Data                            .
//! ```
//!
//! Header Len counts 8-octet units beyond the first 8. Every message
//! pmiplab knows carries six octets of fixed fields after the checksum, so
//! its options start at offset 12 (see `field`).

use std::net::Ipv6Addr;

use serde::{Deserialize, Serialize};

use crate::checksum::mh_checksum;
use crate::codepoints::{
    BraStatus, FmaStatus, MhType, NotificationReason, PbaStatus, RevocationTrigger, RevocationType, UpaStatus,
};
use crate::error::{ErrorKind, Result, WireError};
use crate::options::{emit_options, parse_options, MobilityOption, RawOptions};

/// IPPROTO_NONE, the only valid Payload Proto.
pub const PAYLOAD_PROTO_NONE: u8 = 59;

/// Field offsets, next to the diagrams of each RFC.
pub mod field {
    pub type Field = std::ops::Range<usize>;

    pub const PAYLOAD_PROTO: usize = 0;
    pub const HEADER_LEN: usize = 1;
    pub const MH_TYPE: usize = 2;
    pub const RESERVED: usize = 3;
    pub const CHECKSUM: Field = 4..6;
    /// Every message below has its options here.
    pub const OPTIONS: usize = 12;

    /// PBU (RFC 5213 §8.1, RFC 6275 §6.1.7):
    /// `| Sequence # | A|H|L|K|M|R|P| Reserved | Lifetime |`
    pub mod pbu {
        use super::Field;
        pub const SEQUENCE: Field = 6..8;
        pub const FLAGS: Field = 8..10;
        pub const LIFETIME: Field = 10..12;
        pub const A: u16 = 0x8000;
        pub const H: u16 = 0x4000;
        pub const L: u16 = 0x2000;
        pub const K: u16 = 0x1000;
        pub const M: u16 = 0x0800;
        pub const R: u16 = 0x0400;
        pub const P: u16 = 0x0200;
    }

    /// PBA (RFC 5213 §8.2, RFC 6275 §6.1.8):
    /// `| Status | K|R|P| Reserved | Sequence # | Lifetime |`
    pub mod pba {
        use super::Field;
        pub const STATUS: usize = 6;
        pub const FLAGS: usize = 7;
        pub const SEQUENCE: Field = 8..10;
        pub const LIFETIME: Field = 10..12;
        pub const K: u8 = 0x80;
        pub const R: u8 = 0x40;
        pub const P: u8 = 0x20;
    }

    /// Binding Revocation (RFC 5846 §6.1, §6.2):
    /// `| B.R. Type | R. Trigger or Status | Sequence # | P|V|G| Reserved |`
    pub mod revocation {
        use super::Field;
        pub const TYPE: usize = 6;
        pub const TRIGGER_OR_STATUS: usize = 7;
        pub const SEQUENCE: Field = 8..10;
        pub const FLAGS: usize = 10;
        pub const P: u8 = 0x80;
        pub const V: u8 = 0x40;
        pub const G: u8 = 0x20;
    }

    /// Heartbeat (RFC 5847 §3.1): `| Reserved |...|U|R| Sequence Number (32) |`
    pub mod heartbeat {
        use super::Field;
        pub const FLAGS: usize = 7;
        pub const SEQUENCE: Field = 8..12;
        pub const U: u8 = 0x02;
        pub const R: u8 = 0x01;
    }

    /// FMI/FMA (flow mobility draft §4.1, §4.2):
    /// FMI `| Sequence # | I|C|R| Reserved | Lifetime |`,
    /// FMA `| Sequence # | I| Reserved | Status | Lifetime |`.
    pub mod flow_mobility {
        use super::Field;
        pub const SEQUENCE: Field = 6..8;
        pub const FLAGS: usize = 8;
        pub const STATUS: usize = 9;
        pub const LIFETIME: Field = 10..12;
        pub const I: u8 = 0x80;
        pub const C: u8 = 0x40;
        pub const R: u8 = 0x20;
    }

    /// UPN (RFC 7077 §4.1): `| Sequence # | Notification Reason | A|D| Reserved |`
    /// UPA (RFC 7077 §4.2): `| Sequence # | Status | Reserved |`
    pub mod update_notification {
        use super::Field;
        pub const SEQUENCE: Field = 6..8;
        pub const REASON_OR_STATUS: usize = 8;
        pub const FLAGS: usize = 9;
        pub const A: u8 = 0x80;
        pub const D: u8 = 0x40;
    }
}

/// Codec settings that a topology may change.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct WireConfig {
    /// MH type that carries the draft's FMI/FMA (never assigned by IANA);
    /// 11 (Experimental, RFC 5096) unless a topology says otherwise.
    pub flow_mobility_mh_type: u8,
    /// How the core's FMI/FMA are framed (draft FMI/FMA or RFC 7864's
    /// UPN/UPA); see [`crate::profile`].
    #[serde(default)]
    pub profile: crate::profile::Profile,
}

impl Default for WireConfig {
    fn default() -> Self {
        WireConfig { flow_mobility_mh_type: MhType::Experimental.value(), profile: Default::default() }
    }
}

/// Source and destination of the IPv6 packet, for the checksum.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Endpoints {
    pub src: Ipv6Addr,
    pub dst: Ipv6Addr,
}

impl Endpoints {
    /// `mh` behind a fixed IPv6 header (next header 135, hop limit 64)
    /// from `src` to `dst`: a packet as a capture holds it.
    pub fn ipv6_packet(&self, mh: &[u8]) -> Vec<u8> {
        let mut p = Vec::with_capacity(40 + mh.len());
        p.extend_from_slice(&[0x60, 0, 0, 0]);
        p.extend_from_slice(&(mh.len().min(usize::from(u16::MAX)) as u16).to_be_bytes());
        p.extend_from_slice(&[135, 64]);
        p.extend_from_slice(&self.src.octets());
        p.extend_from_slice(&self.dst.octets());
        p.extend_from_slice(mh);
        p
    }
}

/// A checked view over the bytes of one Mobility Header.
#[derive(Debug, Clone)]
pub struct MhPacket<T: AsRef<[u8]>> {
    buffer: T,
}

fn be16(b: &[u8], f: field::Field) -> u16 {
    u16::from_be_bytes([b[f.start], b[f.start + 1]])
}

impl<T: AsRef<[u8]>> MhPacket<T> {
    /// Wraps a buffer without checking it; accessors may panic on short input.
    pub fn new_unchecked(buffer: T) -> Self {
        MhPacket { buffer }
    }

    /// Wraps a buffer after checking that the header is there and that
    /// Header Len fits in it. Any accessor is then in bounds.
    pub fn new_checked(buffer: T) -> Result<Self> {
        let p = MhPacket { buffer };
        p.check_len()?;
        Ok(p)
    }

    pub fn check_len(&self) -> Result<()> {
        let b = self.buffer.as_ref();
        if b.len() < 8 {
            return Err(WireError::at(0, ErrorKind::Truncated { needed: 8, available: b.len() }));
        }
        let declared = self.total_len();
        if declared > b.len() {
            return Err(WireError::at(
                field::HEADER_LEN,
                ErrorKind::HeaderLenBeyondBuffer { declared, available: b.len() },
            ));
        }
        Ok(())
    }

    pub fn payload_proto(&self) -> u8 {
        self.buffer.as_ref()[field::PAYLOAD_PROTO]
    }
    pub fn header_len(&self) -> u8 {
        self.buffer.as_ref()[field::HEADER_LEN]
    }
    /// Length in octets that Header Len declares.
    pub fn total_len(&self) -> usize {
        (usize::from(self.header_len()) + 1) * 8
    }
    pub fn mh_type(&self) -> u8 {
        self.buffer.as_ref()[field::MH_TYPE]
    }
    pub fn checksum(&self) -> u16 {
        be16(self.buffer.as_ref(), field::CHECKSUM)
    }
    /// The bytes Header Len covers.
    pub fn message(&self) -> &[u8] {
        &self.buffer.as_ref()[..self.total_len()]
    }
    /// Message data after the checksum.
    pub fn data(&self) -> &[u8] {
        &self.message()[field::CHECKSUM.end..]
    }
    /// The option area, for messages whose options start at offset 12.
    pub fn options(&self) -> RawOptions<'_> {
        let m = self.message();
        RawOptions::new(m.get(field::OPTIONS..).unwrap_or(&[]), field::OPTIONS)
    }
    /// The checksum these bytes should carry between `ends`.
    pub fn expected_checksum(&self, ends: &Endpoints) -> u16 {
        mh_checksum(&ends.src, &ends.dst, self.message())
    }
    pub fn verify_checksum(&self, ends: &Endpoints) -> Result<()> {
        let expected = self.expected_checksum(ends);
        if expected != self.checksum() {
            return Err(WireError::at(field::CHECKSUM.start, ErrorKind::Checksum { expected, found: self.checksum() }));
        }
        Ok(())
    }
    pub fn into_inner(self) -> T {
        self.buffer
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> MhPacket<T> {
    pub fn set_checksum(&mut self, value: u16) {
        self.buffer.as_mut()[field::CHECKSUM].copy_from_slice(&value.to_be_bytes());
    }
    /// Computes and writes the checksum for `ends`.
    pub fn fill_checksum(&mut self, ends: &Endpoints) {
        let c = self.expected_checksum(ends);
        self.set_checksum(c);
    }
    pub fn set_header_len(&mut self, v: u8) {
        self.buffer.as_mut()[field::HEADER_LEN] = v;
    }
    pub fn set_mh_type(&mut self, v: u8) {
        self.buffer.as_mut()[field::MH_TYPE] = v;
    }
}

/// Proxy Binding Update flags (RFC 6275 §6.1.7, RFC 5213 §8.1).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PbuFlags {
    pub a: bool,
    pub h: bool,
    pub l: bool,
    pub k: bool,
    pub m: bool,
    pub r: bool,
    pub p: bool,
}

impl PbuFlags {
    /// What RFC 5213 §6.9.1.5 asks a MAG to send: A, H and P set.
    pub fn proxy() -> Self {
        PbuFlags { a: true, h: true, p: true, ..Default::default() }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Pbu {
    pub sequence: u16,
    pub flags: PbuFlags,
    /// In units of 4 seconds.
    pub lifetime: u16,
    pub options: Vec<MobilityOption>,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PbaFlags {
    pub k: bool,
    pub r: bool,
    pub p: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Pba {
    pub status: PbaStatus,
    pub flags: PbaFlags,
    pub sequence: u16,
    /// In units of 4 seconds.
    pub lifetime: u16,
    pub options: Vec<MobilityOption>,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RevocationFlags {
    pub p: bool,
    pub v: bool,
    pub g: bool,
}

/// Binding Revocation Indication (RFC 5846 §6.1).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Bri {
    pub trigger: RevocationTrigger,
    pub sequence: u16,
    pub flags: RevocationFlags,
    pub options: Vec<MobilityOption>,
}

/// Binding Revocation Acknowledgement (RFC 5846 §6.2).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Bra {
    pub status: BraStatus,
    pub sequence: u16,
    pub flags: RevocationFlags,
    pub options: Vec<MobilityOption>,
}

/// Heartbeat (RFC 5847 §3.1).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Heartbeat {
    pub unsolicited: bool,
    pub response: bool,
    pub sequence: u32,
    pub options: Vec<MobilityOption>,
}

/// Flow Mobility Initiate (draft §4.1).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Fmi {
    pub sequence: u16,
    pub cancel: bool,
    pub refresh: bool,
    /// Seconds; 0xffff is infinite.
    pub lifetime: u16,
    pub options: Vec<MobilityOption>,
}

/// Flow Mobility Acknowledge (draft §4.2).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Fma {
    pub sequence: u16,
    pub status: FmaStatus,
    /// Seconds; 0xffff is infinite.
    pub lifetime: u16,
    pub options: Vec<MobilityOption>,
}

/// Update Notification (RFC 7077 §4.1).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Upn {
    pub sequence: u16,
    pub reason: NotificationReason,
    pub ack_requested: bool,
    pub deregister: bool,
    pub options: Vec<MobilityOption>,
}

/// Update Notification Acknowledgement (RFC 7077 §4.2).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Upa {
    pub sequence: u16,
    pub status: UpaStatus,
    pub options: Vec<MobilityOption>,
}

/// A Mobility Header message, decoded.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "message")]
pub enum Message {
    Pbu(Pbu),
    Pba(Pba),
    Bri(Bri),
    Bra(Bra),
    Heartbeat(Heartbeat),
    Fmi(Fmi),
    Fma(Fma),
    Upn(Upn),
    Upa(Upa),
    /// A type this codec does not decode: the message data after the
    /// checksum, as it was (padding included).
    Unknown {
        mh_type: u8,
        data: Vec<u8>,
    },
}

impl Message {
    /// Short name for sequences and ladder diagrams.
    pub fn name(&self) -> &'static str {
        match self {
            Message::Pbu(_) => "PBU",
            Message::Pba(_) => "PBA",
            Message::Bri(_) => "BRI",
            Message::Bra(_) => "BRA",
            Message::Heartbeat(h) if h.response => "HB-RESP",
            Message::Heartbeat(_) => "HB-REQ",
            Message::Fmi(_) => "FMI",
            Message::Fma(_) => "FMA",
            Message::Upn(_) => "UPN",
            Message::Upa(_) => "UPA",
            Message::Unknown { .. } => "MH-UNKNOWN",
        }
    }

    /// One line with the fields a reader of a ladder diagram wants:
    /// sequence, flags, status, lifetime and the options that matter.
    /// Timestamps are left out so that sequences compare across runs.
    pub fn summary(&self) -> String {
        let mut s = String::from(self.name());
        let mut push = |x: String| {
            s.push(' ');
            s.push_str(&x);
        };
        match self {
            Message::Pbu(m) => {
                push(format!("seq={}", m.sequence));
                push(format!("lifetime={}", m.lifetime));
            }
            Message::Pba(m) => {
                push(format!("seq={}", m.sequence));
                push(format!("status={}", m.status.value()));
                push(format!("lifetime={}", m.lifetime));
            }
            Message::Bri(m) => {
                push(format!("seq={}", m.sequence));
                push(format!("trigger={}", m.trigger.value()));
            }
            Message::Bra(m) => {
                push(format!("seq={}", m.sequence));
                push(format!("status={}", m.status.value()));
            }
            Message::Heartbeat(m) => push(format!("seq={}", m.sequence)),
            Message::Fmi(m) => {
                push(format!("seq={}", m.sequence));
                let op = if m.cancel {
                    "del"
                } else if m.refresh {
                    "refresh"
                } else {
                    "add"
                };
                push(format!("op={op}"));
                push(format!("lifetime={}", m.lifetime));
            }
            Message::Fma(m) => {
                push(format!("seq={}", m.sequence));
                push(format!("status={}", m.status.value()));
            }
            Message::Upn(m) => {
                push(format!("seq={}", m.sequence));
                push(format!("reason={}", m.reason.value()));
                push(format!("a={}", u8::from(m.ack_requested)));
                push(format!("d={}", u8::from(m.deregister)));
            }
            Message::Upa(m) => {
                push(format!("seq={}", m.sequence));
                push(format!("status={}", m.status.value()));
            }
            Message::Unknown { mh_type, data } => push(format!("type={mh_type} len={}", data.len() + 6)),
        }
        for o in self.options() {
            match o {
                MobilityOption::MnIdentifier { id, .. } => push(format!("mn={}", String::from_utf8_lossy(id))),
                MobilityOption::HomeNetworkPrefix { prefix_len, prefix } => push(format!("hnp={prefix}/{prefix_len}")),
                MobilityOption::HandoffIndicator(h) => push(format!("hi={}", h.value())),
                MobilityOption::AccessTechnologyType(a) => push(format!("att={}", a.value())),
                MobilityOption::FlowIdentification(f) => push(format!("fid={}/pri={}", f.fid, f.fid_pri)),
                MobilityOption::BindingIdentifier { bid, .. } => push(format!("bid={bid}")),
                MobilityOption::RestartCounter(c) => push(format!("restart={c}")),
                _ => {}
            }
        }
        s
    }

    pub fn mh_type(&self, cfg: &WireConfig) -> u8 {
        match self {
            Message::Pbu(_) => MhType::BindingUpdate.value(),
            Message::Pba(_) => MhType::BindingAck.value(),
            Message::Bri(_) | Message::Bra(_) => MhType::BindingRevocation.value(),
            Message::Heartbeat(_) => MhType::Heartbeat.value(),
            Message::Fmi(_) | Message::Fma(_) => cfg.flow_mobility_mh_type,
            Message::Upn(_) => MhType::UpdateNotification.value(),
            Message::Upa(_) => MhType::UpdateNotificationAck.value(),
            Message::Unknown { mh_type, .. } => *mh_type,
        }
    }

    pub fn options(&self) -> &[MobilityOption] {
        match self {
            Message::Pbu(m) => &m.options,
            Message::Pba(m) => &m.options,
            Message::Bri(m) => &m.options,
            Message::Bra(m) => &m.options,
            Message::Heartbeat(m) => &m.options,
            Message::Fmi(m) => &m.options,
            Message::Fma(m) => &m.options,
            Message::Upn(m) => &m.options,
            Message::Upa(m) => &m.options,
            Message::Unknown { .. } => &[],
        }
    }

    /// Decodes and verifies one Mobility Header. The checksum is checked
    /// against `ends`; the payload proto must be 59.
    pub fn parse(bytes: &[u8], ends: &Endpoints, cfg: &WireConfig) -> Result<Message> {
        let packet = MhPacket::new_checked(bytes)?;
        if packet.payload_proto() != PAYLOAD_PROTO_NONE {
            return Err(WireError::at(field::PAYLOAD_PROTO, ErrorKind::PayloadProto { found: packet.payload_proto() }));
        }
        packet.verify_checksum(ends)?;
        Self::parse_body(&packet, cfg, parse_options)
    }

    /// Decodes the fixed fields of a message and hands its option area to
    /// `options` (strict or lax).
    pub(crate) fn parse_body<T: AsRef<[u8]>>(
        packet: &MhPacket<T>,
        cfg: &WireConfig,
        options: impl FnOnce(&[u8], usize) -> Result<Vec<MobilityOption>>,
    ) -> Result<Message> {
        let m = packet.message();
        let t = packet.mh_type();
        let known = t == cfg.flow_mobility_mh_type
            || matches!(
                MhType::from(t),
                MhType::BindingUpdate
                    | MhType::BindingAck
                    | MhType::BindingRevocation
                    | MhType::Heartbeat
                    | MhType::UpdateNotification
                    | MhType::UpdateNotificationAck
            );
        if !known {
            return Ok(Message::Unknown { mh_type: t, data: packet.data().to_vec() });
        }
        if m.len() < field::OPTIONS {
            return Err(WireError::at(
                0,
                ErrorKind::MessageTooShort { mh_type: t, needed: field::OPTIONS, found: m.len() },
            ));
        }
        let opts = options(&m[field::OPTIONS..], field::OPTIONS)?;
        let be = |f: field::Field| be16(m, f);
        if t == cfg.flow_mobility_mh_type {
            use field::flow_mobility as f;
            let flags = m[f::FLAGS];
            return Ok(if flags & f::I != 0 {
                Message::Fmi(Fmi {
                    sequence: be(f::SEQUENCE),
                    cancel: flags & f::C != 0,
                    refresh: flags & f::R != 0,
                    lifetime: be(f::LIFETIME),
                    options: opts,
                })
            } else {
                Message::Fma(Fma {
                    sequence: be(f::SEQUENCE),
                    status: m[f::STATUS].into(),
                    lifetime: be(f::LIFETIME),
                    options: opts,
                })
            });
        }
        Ok(match MhType::from(t) {
            MhType::BindingUpdate => {
                use field::pbu as f;
                let fl = be(f::FLAGS);
                Message::Pbu(Pbu {
                    sequence: be(f::SEQUENCE),
                    flags: PbuFlags {
                        a: fl & f::A != 0,
                        h: fl & f::H != 0,
                        l: fl & f::L != 0,
                        k: fl & f::K != 0,
                        m: fl & f::M != 0,
                        r: fl & f::R != 0,
                        p: fl & f::P != 0,
                    },
                    lifetime: be(f::LIFETIME),
                    options: opts,
                })
            }
            MhType::BindingAck => {
                use field::pba as f;
                let fl = m[f::FLAGS];
                Message::Pba(Pba {
                    status: m[f::STATUS].into(),
                    flags: PbaFlags { k: fl & f::K != 0, r: fl & f::R != 0, p: fl & f::P != 0 },
                    sequence: be(f::SEQUENCE),
                    lifetime: be(f::LIFETIME),
                    options: opts,
                })
            }
            MhType::BindingRevocation => {
                use field::revocation as f;
                let fl = m[f::FLAGS];
                let flags = RevocationFlags { p: fl & f::P != 0, v: fl & f::V != 0, g: fl & f::G != 0 };
                match RevocationType::from(m[f::TYPE]) {
                    RevocationType::Indication => Message::Bri(Bri {
                        trigger: m[f::TRIGGER_OR_STATUS].into(),
                        sequence: be(f::SEQUENCE),
                        flags,
                        options: opts,
                    }),
                    RevocationType::Acknowledgement => Message::Bra(Bra {
                        status: m[f::TRIGGER_OR_STATUS].into(),
                        sequence: be(f::SEQUENCE),
                        flags,
                        options: opts,
                    }),
                    RevocationType::Unknown(_) => Message::Unknown { mh_type: t, data: packet.data().to_vec() },
                }
            }
            MhType::Heartbeat => {
                use field::heartbeat as f;
                let s = &m[f::SEQUENCE];
                Message::Heartbeat(Heartbeat {
                    unsolicited: m[f::FLAGS] & f::U != 0,
                    response: m[f::FLAGS] & f::R != 0,
                    sequence: u32::from_be_bytes([s[0], s[1], s[2], s[3]]),
                    options: opts,
                })
            }
            MhType::UpdateNotification => {
                use field::update_notification as f;
                Message::Upn(Upn {
                    sequence: be(f::SEQUENCE),
                    reason: m[f::REASON_OR_STATUS].into(),
                    ack_requested: m[f::FLAGS] & f::A != 0,
                    deregister: m[f::FLAGS] & f::D != 0,
                    options: opts,
                })
            }
            MhType::UpdateNotificationAck => {
                use field::update_notification as f;
                Message::Upa(Upa { sequence: be(f::SEQUENCE), status: m[f::REASON_OR_STATUS].into(), options: opts })
            }
            _ => Message::Unknown { mh_type: t, data: packet.data().to_vec() },
        })
    }

    /// Checks what cannot be put on the wire as it is.
    pub fn check_encodable(&self, cfg: &WireConfig) -> Result<()> {
        let bad = |what| Err(WireError::at(0, ErrorKind::Unencodable(what)));
        for o in self.options() {
            o.check_encodable()?;
        }
        let t = self.mh_type(cfg);
        let fm = matches!(self, Message::Fmi(_) | Message::Fma(_));
        if !fm && t == cfg.flow_mobility_mh_type {
            return bad("this message's MH type is the one configured for FMI/FMA");
        }
        if fm
            && MhType::from(cfg.flow_mobility_mh_type) != MhType::Experimental
            && !matches!(MhType::from(cfg.flow_mobility_mh_type), MhType::Unknown(_))
        {
            return bad("the FMI/FMA MH type collides with an MH type this codec decodes");
        }
        if let Message::Unknown { data, .. } = self {
            if (data.len() + 6) % 8 != 0 || data.len() + 6 > 2048 {
                return bad("an opaque message's data must make the header a multiple of 8 octets");
            }
        }
        if self.to_bytes_unchecked(cfg).len() > 2048 {
            return bad("a Mobility Header is limited to 2048 octets by its Header Len field");
        }
        Ok(())
    }

    /// Length in octets of the encoded message.
    pub fn buffer_len(&self, cfg: &WireConfig) -> usize {
        self.to_bytes_unchecked(cfg).len()
    }

    fn to_bytes_unchecked(&self, cfg: &WireConfig) -> Vec<u8> {
        let mut out = vec![PAYLOAD_PROTO_NONE, 0, self.mh_type(cfg), 0, 0, 0];
        let b16 = |out: &mut Vec<u8>, v: u16| out.extend_from_slice(&v.to_be_bytes());
        match self {
            Message::Pbu(m) => {
                use field::pbu as f;
                b16(&mut out, m.sequence);
                let fl = &m.flags;
                let mut bits = 0u16;
                for (set, bit) in
                    [(fl.a, f::A), (fl.h, f::H), (fl.l, f::L), (fl.k, f::K), (fl.m, f::M), (fl.r, f::R), (fl.p, f::P)]
                {
                    if set {
                        bits |= bit;
                    }
                }
                b16(&mut out, bits);
                b16(&mut out, m.lifetime);
            }
            Message::Pba(m) => {
                use field::pba as f;
                out.push(m.status.value());
                let fl = &m.flags;
                out.push(bit(fl.k, f::K) | bit(fl.r, f::R) | bit(fl.p, f::P));
                b16(&mut out, m.sequence);
                b16(&mut out, m.lifetime);
            }
            Message::Bri(m) => {
                out.push(RevocationType::Indication.value());
                out.push(m.trigger.value());
                b16(&mut out, m.sequence);
                out.push(revocation_flags(&m.flags));
                out.push(0);
            }
            Message::Bra(m) => {
                out.push(RevocationType::Acknowledgement.value());
                out.push(m.status.value());
                b16(&mut out, m.sequence);
                out.push(revocation_flags(&m.flags));
                out.push(0);
            }
            Message::Heartbeat(m) => {
                use field::heartbeat as f;
                out.push(0);
                out.push(bit(m.unsolicited, f::U) | bit(m.response, f::R));
                out.extend_from_slice(&m.sequence.to_be_bytes());
            }
            Message::Fmi(m) => {
                use field::flow_mobility as f;
                b16(&mut out, m.sequence);
                out.push(f::I | bit(m.cancel, f::C) | bit(m.refresh, f::R));
                out.push(0);
                b16(&mut out, m.lifetime);
            }
            Message::Fma(m) => {
                b16(&mut out, m.sequence);
                out.push(0);
                out.push(m.status.value());
                b16(&mut out, m.lifetime);
            }
            Message::Upn(m) => {
                use field::update_notification as f;
                b16(&mut out, m.sequence);
                out.push(m.reason.value());
                out.push(bit(m.ack_requested, f::A) | bit(m.deregister, f::D));
                out.extend_from_slice(&[0, 0]);
            }
            Message::Upa(m) => {
                b16(&mut out, m.sequence);
                out.push(m.status.value());
                out.extend_from_slice(&[0, 0, 0]);
            }
            Message::Unknown { data, .. } => {
                out.extend_from_slice(data);
            }
        }
        if !matches!(self, Message::Unknown { .. }) {
            emit_options(&mut out, self.options());
        }
        let units = (out.len() / 8).saturating_sub(1);
        out[field::HEADER_LEN] = units.min(255) as u8;
        out
    }

    /// Encodes the message with its checksum for `ends`.
    pub fn to_bytes(&self, ends: &Endpoints, cfg: &WireConfig) -> Result<Vec<u8>> {
        self.check_encodable(cfg)?;
        let mut out = self.to_bytes_unchecked(cfg);
        MhPacket::new_unchecked(&mut out[..]).fill_checksum(ends);
        Ok(out)
    }

    /// Encodes into `buf`, which must be at least `buffer_len` octets;
    /// returns the number of octets written.
    pub fn emit(&self, buf: &mut [u8], ends: &Endpoints, cfg: &WireConfig) -> Result<usize> {
        let bytes = self.to_bytes(ends, cfg)?;
        let available = buf.len();
        let dst = buf
            .get_mut(..bytes.len())
            .ok_or(WireError::at(available, ErrorKind::Unencodable("the output buffer is shorter than buffer_len")))?;
        dst.copy_from_slice(&bytes);
        Ok(bytes.len())
    }
}

fn revocation_flags(f: &RevocationFlags) -> u8 {
    use field::revocation as r;
    bit(f.p, r::P) | bit(f.v, r::V) | bit(f.g, r::G)
}

fn bit<T: Default>(set: bool, value: T) -> T {
    if set {
        value
    } else {
        T::default()
    }
}
