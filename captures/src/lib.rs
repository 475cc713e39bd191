//! Captures: every link of a lab recorded with pnet into pcapng, and the
//! Mobility Header messages of all links merged into one time-ordered,
//! normalized message sequence, drawn as a ladder diagram.

pub mod capture;
pub mod esp;
pub mod ladder;
pub mod ladder_svg;
pub mod pcapng;
pub mod sequence;

/// The Wireshark Lua dissector for what stock Wireshark does not decode in
/// these captures (FMI/FMA, UPN/UPA, flow options, the MH checksum).
pub const LUA_DISSECTOR: &str = include_str!("../wireshark/pmiplab.lua");
