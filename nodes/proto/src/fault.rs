//! Faults on signalling messages, as scenarios inject them: one vocabulary
//! for virtual time and for the daemons' userspace fault rules.

use serde::{Deserialize, Serialize};

use crate::time::Span;

/// What happens to a message a fault rule takes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase", tag = "kind")]
pub enum FaultAction {
    Drop,
    Delay {
        ms: u64,
    },
    Duplicate,
    /// Hold the message until the next one in the same direction has gone.
    Reorder,
}

impl FaultAction {
    pub fn delay(self) -> Span {
        match self {
            FaultAction::Delay { ms } => Span::from_millis(ms),
            _ => Span::from_millis(0),
        }
    }
}

/// A fault on the next `count` messages of a kind (by short name, e.g.
/// "PBA"), optionally only from or to a named node. With `from` it acts
/// at the sender, so the wire shows its effect (a message twice, later,
/// after the next one, or not at all); with only `to` it acts at the
/// receiver, so the wire carries the message as sent. With neither, it
/// acts at the LMA: on what the LMA sends as it leaves, on what the MAGs
/// send as it arrives (the one place every such message passes).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct FaultRule {
    pub message: String,
    pub from: Option<String>,
    pub to: Option<String>,
    pub count: u32,
    pub action: FaultAction,
}

impl FaultRule {
    /// Drops the next `count` messages of a kind, wherever they go.
    pub fn drop(message: &str, count: u32) -> Self {
        FaultRule { message: message.into(), from: None, to: None, count, action: FaultAction::Drop }
    }

    pub fn matches(&self, message: &str, from: &str, to: &str) -> bool {
        self.count > 0
            && self.message.eq_ignore_ascii_case(message)
            && self.from.as_deref().is_none_or(|f| f == from)
            && self.to.as_deref().is_none_or(|t| t == to)
    }

    /// Whether the rule acts as the message leaves `sender`, rather than
    /// as it arrives.
    pub fn at_sender(&self, sender_is_lma: bool) -> bool {
        self.from.is_some() || (self.to.is_none() && sender_is_lma)
    }
}

/// A share drawn in parts per thousand from a seeded xorshift64 generator:
/// loss and fault shares that repeat from run to run. A zero state is
/// replaced by a fixed seed, since xorshift never leaves zero.
pub fn draw_per_mille(state: &mut u64) -> u16 {
    let mut x = if *state == 0 { 0x2545_f491_4f6c_dd1d } else { *state };
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    *state = x;
    (x % 1000) as u16
}
