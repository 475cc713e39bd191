//! `pmip-proto`: the protocol logic of Proxy Mobile IPv6 (RFC 5213) and
//! the flow mobility draft, with no sockets and no clock.
//!
//! Each role ([`lma::Lma`], [`mag::Mag`], [`mn::Mn`]) takes
//! `handle(now, input)` and gives back an [`Output`]: messages to send,
//! data-plane intents and events. `next_timeout()` says when to call it
//! again with a timeout. [`world::World`] wires roles together in virtual
//! time.

pub mod dataplane;
pub mod fault;
pub mod flow;
pub mod heartbeat;
pub mod ingress;
pub mod lma;
pub mod load;
pub mod mag;
pub mod mn;
pub mod output;
pub mod prefix;
pub mod signalling;
pub mod sim;
pub mod time;
pub mod two_level;
pub mod world;

pub use flow::FlowKey;
pub use output::{Event, FlowTarget, Intent, Note, Output, Transmit};
pub use prefix::Prefix;
pub use time::{Backoff, Instant, Span};
