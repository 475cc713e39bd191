//! `pmip-wire`: the bytes of Proxy Mobile IPv6 and flow mobility signalling.
//!
//! A checked zero-copy view ([`MhPacket`], [`RawOptions`]) sits over the
//! bytes, and decoded `Repr` types ([`Message`], [`MobilityOption`],
//! [`TrafficSelector`]) parse from and emit to them. Parsing never panics;
//! every refusal is a [`WireError`] that says what and at which offset.
//! The [`lax`] decoder reads as much as it can of a broken message, for
//! captures.

pub mod checksum;
pub mod codepoints;
pub mod error;
pub mod lax;
pub mod mh;
pub mod options;
pub mod profile;
pub mod traffic_selector;

pub use codepoints::*;
pub use error::{ErrorKind, Result, WireError};
pub use mh::{
    Bra, Bri, Endpoints, Fma, Fmi, Heartbeat, Message, MhPacket, Pba, PbaFlags, Pbu, PbuFlags, RevocationFlags, Upa,
    Upn, WireConfig, PAYLOAD_PROTO_NONE,
};
pub use options::{FlowIdentification, FlowSubOption, MobilityOption, RawOption, RawOptions, Timestamp};
pub use profile::Profile;
pub use traffic_selector::{Ipv4Selector, Ipv6Selector, TrafficSelector};
