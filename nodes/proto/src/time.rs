//! Virtual time: the engine never reads a clock, time is an argument.

use std::fmt;
use std::ops::{Add, Sub};

use serde::{Deserialize, Serialize};

/// A point in time, in microseconds since an arbitrary origin chosen by
/// whoever drives the engine (the `World` starts at zero, the daemon maps
/// its monotonic clock onto it).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default, Serialize, Deserialize)]
pub struct Instant(pub u64);

/// A span of time in microseconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default, Serialize, Deserialize)]
pub struct Span(pub u64);

impl Span {
    pub const ZERO: Span = Span(0);

    pub const fn from_millis(ms: u64) -> Span {
        Span(ms * 1000)
    }
    pub const fn from_secs(s: u64) -> Span {
        Span(s * 1_000_000)
    }
    pub fn as_secs(self) -> u64 {
        self.0 / 1_000_000
    }
    pub fn as_millis(self) -> u64 {
        self.0 / 1000
    }
    pub fn times(self, k: u64) -> Span {
        Span(self.0.saturating_mul(k))
    }
    /// `self * num / den`, without overflow for the values we use.
    pub fn scale(self, num: u64, den: u64) -> Span {
        Span((u128::from(self.0) * u128::from(num) / u128::from(den.max(1))) as u64)
    }
}

impl Instant {
    pub const ZERO: Instant = Instant(0);
    pub fn saturating_since(self, earlier: Instant) -> Span {
        Span(self.0.saturating_sub(earlier.0))
    }
    pub fn as_millis(self) -> u64 {
        self.0 / 1000
    }
}

impl Add<Span> for Instant {
    type Output = Instant;
    fn add(self, rhs: Span) -> Instant {
        Instant(self.0.saturating_add(rhs.0))
    }
}

impl Sub<Instant> for Instant {
    type Output = Span;
    fn sub(self, rhs: Instant) -> Span {
        self.saturating_since(rhs)
    }
}

impl fmt::Display for Instant {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{:03}s", self.0 / 1_000_000, (self.0 / 1000) % 1000)
    }
}

/// Retransmission with exponential backoff (RFC 6275 §11.8: start at
/// INITIAL_BINDACK_TIMEOUT, double each time, stop at MAX_BINDACK_TIMEOUT).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Backoff {
    pub initial: Span,
    pub max: Span,
    /// Transmissions after the first before giving up.
    pub max_retries: u32,
}

impl Default for Backoff {
    fn default() -> Self {
        Backoff { initial: Span::from_secs(1), max: Span::from_secs(32), max_retries: 5 }
    }
}

impl Backoff {
    /// Wait after the `attempt`-th transmission (0 for the first).
    pub fn delay(&self, attempt: u32) -> Span {
        let d = self.initial.times(1u64 << attempt.min(20));
        d.min(self.max)
    }
}
