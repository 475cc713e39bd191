//! Reading and building the options the roles exchange.

use std::net::Ipv6Addr;

use pmip_wire::{AccessTechnologyType, FlowIdentification, HandoffIndicator, MnIdSubtype, MobilityOption, Timestamp};

use crate::prefix::Prefix;
use crate::time::Instant;

/// The options of a PBU, PBA, BRI or FMI, picked out.
#[derive(Debug, Clone, Default)]
pub struct Picked {
    pub mn_id: Option<String>,
    pub hnps: Vec<Prefix>,
    pub hnp_present: bool,
    pub hi: Option<HandoffIndicator>,
    pub att: Option<AccessTechnologyType>,
    pub mn_ll_id: Option<Vec<u8>>,
    pub timestamp: Option<Timestamp>,
    pub link_local: Option<Ipv6Addr>,
    pub flows: Vec<FlowIdentification>,
}

pub fn pick(options: &[MobilityOption]) -> Picked {
    let mut p = Picked::default();
    for o in options {
        match o {
            MobilityOption::MnIdentifier { id, .. } => {
                p.mn_id.get_or_insert_with(|| String::from_utf8_lossy(id).into_owned());
            }
            MobilityOption::HomeNetworkPrefix { prefix_len, prefix } => {
                p.hnp_present = true;
                // ::/0 asks the LMA to assign (RFC 5213 §6.9.1.1).
                if !(*prefix_len == 0 && prefix.is_unspecified()) {
                    p.hnps.push(Prefix::new(*prefix, *prefix_len));
                }
            }
            MobilityOption::HandoffIndicator(h) => p.hi = Some(*h),
            MobilityOption::AccessTechnologyType(a) => p.att = Some(*a),
            MobilityOption::MnLinkLayerIdentifier(l) => p.mn_ll_id = Some(l.clone()),
            MobilityOption::Timestamp(t) => p.timestamp = Some(*t),
            MobilityOption::LinkLocalAddress(a) => p.link_local = Some(*a),
            MobilityOption::FlowIdentification(f) => p.flows.push(f.clone()),
            _ => {}
        }
    }
    p
}

/// The MN-ID `pick` would read from these options (the first MN
/// Identifier), without picking out the rest.
pub fn mn_id_of(options: &[MobilityOption]) -> Option<String> {
    options.iter().find_map(|o| match o {
        MobilityOption::MnIdentifier { id, .. } => Some(String::from_utf8_lossy(id).into_owned()),
        _ => None,
    })
}

pub fn nai(mn_id: &str) -> MobilityOption {
    MobilityOption::MnIdentifier { subtype: MnIdSubtype::Nai, id: mn_id.as_bytes().to_vec() }
}

pub fn hnp(p: Prefix) -> MobilityOption {
    MobilityOption::HomeNetworkPrefix { prefix_len: p.prefix_len(), prefix: p.addr() }
}

/// The all-zero HNP that requests assignment.
pub fn hnp_request() -> MobilityOption {
    MobilityOption::HomeNetworkPrefix { prefix_len: 0, prefix: Ipv6Addr::UNSPECIFIED }
}

/// The engine's notion of wall-clock for timestamps: the virtual instant
/// plus an epoch offset the driver chooses (zero in the World).
pub fn timestamp_at(now: Instant, epoch_offset_micros: u64) -> Timestamp {
    Timestamp::from_unix_nanos(u128::from(now.0 + epoch_offset_micros) * 1000)
}

/// Microseconds a timestamp stands for, on the same scale as `timestamp_at`.
pub fn timestamp_micros(t: Timestamp) -> u64 {
    t.seconds() * 1_000_000 + ((u64::from(t.fraction()) * 1_000_000) >> 16)
}
