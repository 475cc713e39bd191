//! Typed errors for everything the codec can refuse.

use std::fmt;

/// What was wrong with a Mobility Header, and where.
///
/// `offset` counts octets from the first octet of the Mobility Header
/// (the Payload Proto field), so it points into the bytes a user has.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WireError {
    pub offset: usize,
    pub kind: ErrorKind,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ErrorKind {
    /// The buffer ends before a field that must be there.
    Truncated { needed: usize, available: usize },
    /// Header Len says the message is longer than the bytes we have.
    HeaderLenBeyondBuffer { declared: usize, available: usize },
    /// The payload proto is not IPPROTO_NONE (59), as RFC 6275 §6.1.1 requires.
    PayloadProto { found: u8 },
    /// The checksum over the pseudo-header and the message does not add up.
    Checksum { expected: u16, found: u16 },
    /// The message is too short for the fixed part of its type.
    MessageTooShort { mh_type: u8, needed: usize, found: usize },
    /// An option's length runs past the end of the message.
    OptionOverrun { option_type: u8, declared: usize, available: usize },
    /// An option whose length is fixed by its RFC came with another length.
    OptionLength { option_type: u8, expected: &'static str, found: usize },
    /// A sub-option of a Flow Identification option runs past the option.
    SubOptionOverrun { sub_type: u8, declared: usize, available: usize },
    /// A sub-option with a fixed or structured length came with a wrong one.
    SubOptionLength { sub_type: u8, expected: &'static str, found: usize },
    /// A traffic selector ends before the fields its flags announce.
    TrafficSelectorTruncated { format: u8, needed: usize, found: usize },
    /// A value that cannot be encoded (emit side).
    Unencodable(&'static str),
}

impl WireError {
    pub fn at(offset: usize, kind: ErrorKind) -> Self {
        WireError { offset, kind }
    }

    /// Same error, seen from a container that starts `base` octets earlier.
    pub fn shifted(mut self, base: usize) -> Self {
        self.offset += base;
        self
    }
}

impl fmt::Display for WireError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        use ErrorKind::*;
        let o = self.offset;
        match &self.kind {
            Truncated { needed, available } => write!(
                f,
                "the message is truncated at offset {o}: {needed} octets are needed but only {available} are there"
            ),
            HeaderLenBeyondBuffer { declared, available } => write!(
                f,
                "the Header Len field at offset 1 declares a {declared}-octet message but only {available} octets were received"
            ),
            PayloadProto { found } => write!(
                f,
                "the Payload Proto field at offset {o} is {found}, but a Mobility Header must carry 59 (no next header)"
            ),
            Checksum { expected, found } => write!(
                f,
                "the checksum at offset {o} is {found:#06x}, but the pseudo-header and message add up to {expected:#06x}"
            ),
            MessageTooShort { mh_type, needed, found } => write!(
                f,
                "a message of MH type {mh_type} needs at least {needed} octets, but this one has {found}"
            ),
            OptionOverrun { option_type, declared, available } => write!(
                f,
                "the mobility option of type {option_type} at offset {o} declares {declared} data octets, but only {available} remain in the message"
            ),
            OptionLength { option_type, expected, found } => write!(
                f,
                "the mobility option of type {option_type} at offset {o} has length {found}, but its RFC requires {expected}"
            ),
            SubOptionOverrun { sub_type, declared, available } => write!(
                f,
                "the flow identification sub-option of type {sub_type} at offset {o} declares {declared} data octets, but only {available} remain in the option"
            ),
            SubOptionLength { sub_type, expected, found } => write!(
                f,
                "the flow identification sub-option of type {sub_type} at offset {o} has length {found}, but it requires {expected}"
            ),
            TrafficSelectorTruncated { format, needed, found } => write!(
                f,
                "the traffic selector (format {format}) at offset {o} announces {needed} octets of fields in its flags but carries {found}"
            ),
            Unencodable(what) => write!(f, "cannot encode: {what}"),
        }
    }
}

impl std::error::Error for WireError {}

pub type Result<T> = std::result::Result<T, WireError>;
