//! Captures: every link of a lab recorded with pnet into pcapng, and the
//! Mobility Header messages of all links merged into one time-ordered,
//! normalized message sequence, drawn as a ladder diagram.

pub mod capture;
pub mod ladder;
pub mod pcapng;
pub mod sequence;
