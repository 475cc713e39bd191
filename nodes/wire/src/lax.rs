//! A forgiving decoder for captures: it reads what it can of a truncated or
//! malformed Mobility Header and lists every problem with its offset,
//! instead of stopping at the first one.

use serde::Serialize;

use crate::error::{ErrorKind, WireError};
use crate::mh::{field, Endpoints, Message, MhPacket, WireConfig, PAYLOAD_PROTO_NONE};
use crate::options::MobilityOption;
use crate::options::RawOptions;

/// What the lax decoder made of a Mobility Header.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct LaxDecode {
    /// The MH type, when at least three octets were there.
    pub mh_type: Option<u8>,
    /// The message with every option that could be read, if its fixed
    /// fields were all present.
    pub message: Option<Message>,
    /// Every problem found, in the order met.
    #[serde(serialize_with = "ser_problems")]
    pub problems: Vec<WireError>,
}

fn ser_problems<S: serde::Serializer>(p: &[WireError], s: S) -> Result<S::Ok, S::Error> {
    s.collect_seq(p.iter().map(|e| e.to_string()))
}

impl LaxDecode {
    pub fn is_clean(&self) -> bool {
        self.problems.is_empty()
    }
}

/// Reads options until the first one that cannot be read, recording it.
fn lax_options(data: &[u8], base: usize, problems: &mut Vec<WireError>) -> Vec<MobilityOption> {
    let mut out = Vec::new();
    for raw in RawOptions::new(data, base) {
        match raw {
            Ok(r) if r.is_padding() => {}
            Ok(r) => match MobilityOption::parse(r.kind, r.data, r.offset) {
                Ok(o) => out.push(o),
                Err(e) => problems.push(e),
            },
            Err(e) => {
                problems.push(e);
                break;
            }
        }
    }
    out
}

/// Decodes `bytes` as far as possible. With `ends`, the checksum is
/// verified too; a wrong checksum is a problem, not a reason to stop.
pub fn decode(bytes: &[u8], ends: Option<&Endpoints>, cfg: &WireConfig) -> LaxDecode {
    let mut problems = Vec::new();
    let mh_type = bytes.get(field::MH_TYPE).copied();
    if bytes.len() < 8 {
        problems.push(WireError::at(0, ErrorKind::Truncated { needed: 8, available: bytes.len() }));
        return LaxDecode { mh_type, message: None, problems };
    }
    if bytes[field::PAYLOAD_PROTO] != PAYLOAD_PROTO_NONE {
        problems
            .push(WireError::at(field::PAYLOAD_PROTO, ErrorKind::PayloadProto { found: bytes[field::PAYLOAD_PROTO] }));
    }
    let declared = (usize::from(bytes[field::HEADER_LEN]) + 1) * 8;
    // A truncated capture: decode what arrived, as if Header Len said so.
    let mut owned;
    let view: &[u8] = if declared > bytes.len() {
        problems.push(WireError::at(
            field::HEADER_LEN,
            ErrorKind::HeaderLenBeyondBuffer { declared, available: bytes.len() },
        ));
        owned = bytes.to_vec();
        owned.resize(bytes.len().div_ceil(8) * 8, 0);
        let units = (owned.len() / 8 - 1).min(255) as u8;
        owned[field::HEADER_LEN] = units;
        owned.truncate((usize::from(units) + 1) * 8);
        &owned
    } else {
        &bytes[..declared]
    };
    let packet = MhPacket::new_unchecked(view);
    if let (Some(ends), true) = (ends, declared <= bytes.len()) {
        if let Err(e) = packet.verify_checksum(ends) {
            problems.push(e);
        }
    }
    // Options of a truncated message end where the received bytes end.
    let opt_end = bytes.len().min(declared);
    let message = Message::parse_body(&packet, cfg, |_, base| {
        let data = view.get(base..opt_end).unwrap_or(&[]);
        Ok(lax_options(data, base, &mut problems))
    });
    let message = match message {
        Ok(m) => Some(m),
        Err(e) => {
            problems.push(e);
            None
        }
    };
    LaxDecode { mh_type, message, problems }
}
