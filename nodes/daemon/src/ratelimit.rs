//! Bounds on what outside input can make a daemon keep: histories are
//! rings, refused input is counted and only a few lines of it per window
//! reach the log, and text that came from the wire is escaped and cut
//! before it is printed.

use std::collections::{BTreeMap, VecDeque};
use std::time::{Duration, Instant};

use serde::{Serialize, Serializer};

/// A history that keeps the last `cap` entries.
#[derive(Debug, Clone)]
pub struct Ring<T> {
    items: VecDeque<T>,
    cap: usize,
    dropped: u64,
}

impl<T> Ring<T> {
    pub fn new(cap: usize) -> Self {
        Ring { items: VecDeque::new(), cap: cap.max(1), dropped: 0 }
    }

    pub fn push(&mut self, item: impl Into<T>) {
        if self.items.len() == self.cap {
            self.items.pop_front();
            self.dropped += 1;
        }
        self.items.push_back(item.into());
    }

    /// How many entries fell off the front.
    pub fn dropped(&self) -> u64 {
        self.dropped
    }
}

impl<T> Extend<T> for Ring<T> {
    fn extend<I: IntoIterator<Item = T>>(&mut self, iter: I) {
        for i in iter {
            self.push(i);
        }
    }
}

impl<T: Serialize> Serialize for Ring<T> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_seq(self.items.iter())
    }
}

/// `text` made safe for one log line: control characters (newlines
/// included) escaped as `\n`, `\u{1b}`…, and cut after `max` characters.
pub fn printable(text: &str, max: usize) -> String {
    let mut out = String::with_capacity(text.len().min(max + 8));
    for (n, c) in text.chars().enumerate() {
        if n == max {
            out.push('…');
            break;
        }
        if c.is_control() {
            out.extend(c.escape_default());
        } else {
            out.push(c);
        }
    }
    out
}

/// Bytes from the wire (an MN-ID, say) as text: valid UTF-8 as itself,
/// anything else as `\xNN`, control characters escaped; never lossy, so
/// different byte strings never print the same.
pub fn printable_bytes(bytes: &[u8], max: usize) -> String {
    let mut out = String::new();
    for chunk in bytes.utf8_chunks() {
        out.push_str(&printable(chunk.valid(), max));
        for b in chunk.invalid() {
            out.push_str(&format!("\\x{b:02x}"));
        }
        if out.len() > max * 4 {
            out.push('…');
            break;
        }
    }
    out
}

/// Counts refused input by reason and lets through at most `budget`
/// lines per `window`; what it held back is summarised once the window is
/// over.
#[derive(Debug)]
pub struct Refusals {
    total: u64,
    by_reason: BTreeMap<&'static str, u64>,
    lines: LineBudget,
}

/// Longest line of detail kept for one refusal.
const DETAIL_MAX: usize = 200;

impl Default for Refusals {
    fn default() -> Self {
        Refusals::new(20, Duration::from_secs(10))
    }
}

impl Refusals {
    pub fn new(budget: u32, window: Duration) -> Self {
        Refusals { total: 0, by_reason: BTreeMap::new(), lines: LineBudget::new(budget, window) }
    }

    /// Counts one refusal; returns the line to log if the budget allows,
    /// escaped and cut. `detail` is only built when it is logged.
    pub fn refuse(&mut self, reason: &'static str, detail: impl FnOnce() -> String) -> Option<String> {
        self.total += 1;
        *self.by_reason.entry(reason).or_default() += 1;
        self.lines.allow().then(|| printable(&format!("{} (refused: {reason})", detail()), DETAIL_MAX))
    }

    /// When a window is over and lines were held back in it: one line that
    /// says how many, and a new window.
    pub fn summary(&mut self) -> Option<String> {
        let (held_back, lasted) = self.lines.summary()?;
        Some(format!(
            "refused {held_back} more packets in {lasted:?} without logging each ({} refused in all: {})",
            self.total,
            self.by_reason.iter().map(|(r, n)| format!("{r} {n}")).collect::<Vec<_>>().join(", ")
        ))
    }

    #[cfg(test)]
    pub fn total(&self) -> u64 {
        self.total
    }

    pub fn state(&self) -> serde_json::Value {
        serde_json::json!({ "total": self.total, "by_reason": self.by_reason })
    }
}

/// How many lines of one kind reach the log per `window`; past that they
/// are counted, and `summary` says how many were left out. Under a flood
/// of protocol events the log thread's formatting and writing cost the
/// daemon more than the protocol itself.
#[derive(Debug)]
pub struct LineBudget {
    window: Duration,
    budget: u32,
    window_start: Instant,
    logged: u32,
    held_back: u64,
}

impl LineBudget {
    pub fn new(budget: u32, window: Duration) -> Self {
        LineBudget { window, budget, window_start: Instant::now(), logged: 0, held_back: 0 }
    }

    /// Whether one more line may be logged now; if not, it is counted.
    pub fn allow(&mut self) -> bool {
        if self.logged >= self.budget && self.held_back == 0 && self.window_start.elapsed() >= self.window {
            // A new window; what was held back is reported by `summary` first.
            self.window_start = Instant::now();
            self.logged = 0;
        }
        if self.logged < self.budget {
            self.logged += 1;
            true
        } else {
            self.held_back += 1;
            false
        }
    }

    /// When a window is over and lines were held back in it: how many, and
    /// how long the window lasted; a new window either way.
    pub fn summary(&mut self) -> Option<(u64, Duration)> {
        let lasted = self.window_start.elapsed();
        if lasted < self.window {
            return None;
        }
        let held = std::mem::take(&mut self.held_back);
        self.window_start = Instant::now();
        self.logged = 0;
        (held > 0).then_some((held, lasted))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_ring_keeps_the_last_entries() {
        let mut r = Ring::new(3);
        r.extend(0..10);
        assert_eq!(serde_json::to_value(&r).unwrap(), serde_json::json!([7, 8, 9]));
        assert_eq!(r.dropped(), 7);
    }

    #[test]
    fn wire_text_cannot_forge_lines() {
        assert_eq!(printable("mn\nforged line", 100), "mn\\nforged line");
        assert_eq!(printable("abcdef", 3), "abc…");
        assert_eq!(printable_bytes(b"a\xffb\n", 100), "a\\xffb\\n");
        assert_ne!(printable_bytes(b"\xff", 10), printable_bytes(b"\xfe", 10));
    }

    #[test]
    fn refusals_past_the_budget_are_counted_not_logged() {
        let mut r = Refusals::new(2, Duration::from_millis(30));
        assert!(r.refuse("malformed", || "one".into()).is_some());
        assert!(r.refuse("malformed", || "two".into()).is_some());
        for _ in 0..1000 {
            assert!(r.refuse("malformed", || unreachable!("not built past the budget")).is_none());
        }
        assert_eq!(r.total(), 1002);
        assert!(r.summary().is_none(), "not before the window is over");
        std::thread::sleep(Duration::from_millis(40));
        let s = r.summary().unwrap();
        assert!(s.contains("1000 more"), "{s}");
        assert!(r.refuse("malformed", || "again".into()).is_some());
    }

    #[test]
    fn lines_past_the_budget_are_counted_then_summarised() {
        let mut b = LineBudget::new(3, Duration::from_millis(30));
        assert_eq!((0..10).filter(|_| b.allow()).count(), 3);
        assert_eq!(b.summary(), None, "not before the window is over");
        std::thread::sleep(Duration::from_millis(40));
        // Held back lines keep the window until they are reported.
        assert!(!b.allow());
        assert_eq!(b.summary().map(|(held, _)| held), Some(8));
        assert_eq!(b.summary(), None);
        assert_eq!((0..10).filter(|_| b.allow()).count(), 3, "a new window, a new budget");
    }

    #[test]
    fn a_quiet_window_renews_the_budget_without_a_summary() {
        let mut b = LineBudget::new(2, Duration::from_millis(20));
        assert!(b.allow() && b.allow());
        std::thread::sleep(Duration::from_millis(30));
        assert!(b.allow(), "the window is over and nothing was held back");
        assert_eq!(b.summary(), None);
    }
}
