//! Answers still due: requests seen on the wire that the model run
//! alongside answered at once, and this run has not answered yet.
//!
//! Settling on a quiet wire alone reads a busy daemon as a silent one: an
//! LMA that takes 600 ms to put its routes in place before it answers
//! leaves the wire quiet meanwhile, and the step after the settle would
//! judge a PBA that is still coming as missing. The model says which
//! answers belong to the exchange a step started, so the engine can wait
//! for exactly those and no others: a late answer that the scenario
//! provokes (a delay fault) is late in the model too, and an answer
//! dropped at its sender never reaches the model's wire either.
//!
//! The same holds for what a step sets off: an MN's Router Solicitation
//! reaches a MAG that is slow to send its PBU, and the wire is quiet until
//! it does. So a settle also waits until each kind of message between each
//! pair of nodes has crossed the links as often as in the model when the
//! same step settled there ([`missing`]).
//!
//! Heartbeats are left out: they are periodic, so which sequence number
//! falls just before a step in the model and just after it here is a
//! matter of timing, not of a pending exchange.

use std::collections::{BTreeMap, HashMap};

use super::Observed;

/// How many messages of each kind crossed the links between two nodes:
/// `(from, to, kind)` → count.
pub type Tally = BTreeMap<(String, String, String), usize>;

/// Heartbeats come on their own clock, not a step's.
fn periodic(kind: &str) -> bool {
    kind.starts_with("HB-")
}

/// What crossed the links in `seen`, heartbeats left out.
pub fn tally(seen: &[Observed]) -> Tally {
    let mut t = Tally::new();
    for m in seen.iter().filter(|m| m.on_wire && !periodic(m.kind())) {
        *t.entry((m.from.clone(), m.to.clone(), m.kind().to_string())).or_default() += 1;
    }
    t
}

/// What the model had put on the wire by a step's settle and `seen` has
/// not yet: one line per kind and pair of nodes that falls short.
pub fn missing(seen: &[Observed], model: &Tally) -> Vec<String> {
    let now = tally(seen);
    model
        .iter()
        .filter_map(|(k, want)| {
            let got = now.get(k).copied().unwrap_or(0);
            (got < *want).then(|| format!("{} -> {} {}: {got} of {want}", k.0, k.1, k.2))
        })
        .collect()
}

/// Request kinds and the answer each expects from its receiver.
const EXCHANGES: [(&str, &str); 4] = [("PBU", "PBA"), ("FMI", "FMA"), ("UPN", "UPA"), ("BRI", "BRA")];

/// An answer the model gave within this long of its request came at once:
/// it belongs to the step that sent the request.
pub const PROMPT_IN_MODEL_MS: u64 = 100;

fn answer_kind(request: &str) -> Option<&'static str> {
    EXCHANGES.iter().find(|(q, _)| *q == request).map(|(_, a)| *a)
}

fn sequence(summary: &str) -> Option<u16> {
    summary.split(' ').find_map(|w| w.strip_prefix("seq=")?.parse().ok())
}

/// A message's kind, ends and sequence number: what pairs a request with
/// its answer and a retransmission with the request it repeats.
type Key<'a> = (&'a str, &'a str, &'a str, u16);

fn key(m: &Observed) -> Option<Key<'_>> {
    Some((m.kind(), m.from.as_str(), m.to.as_str(), sequence(&m.summary)?))
}

/// The requests in `seen` still waiting for an answer the model gave at
/// once. A request is answered by a message of its answer's kind and
/// number from its receiver back to its sender, not before it; it is
/// matched with the same occurrence of the same request (kind, ends,
/// number) in the model, since a retransmission repeats the number.
///
/// A settle asks this every few milliseconds with every message of the
/// run so far, so it indexes both lists once per call instead of
/// searching them per request: a lab of hundreds of MNs has thousands of
/// messages, and the search made each settle quadratic in them.
pub fn due<'a>(seen: &'a [Observed], model: &[Observed]) -> Vec<&'a Observed> {
    // The latest time each (answer kind, from, to, number) was seen.
    let mut answered: HashMap<Key<'_>, u64> = HashMap::new();
    for m in seen {
        if let Some(k) = key(m) {
            let at = answered.entry(k).or_insert(m.at_ms);
            *at = (*at).max(m.at_ms);
        }
    }
    let mut in_model: Option<ModelIndex<'_>> = None;
    let mut occurrences: HashMap<Key<'_>, usize> = HashMap::new();
    let mut out = Vec::new();
    for r in seen {
        let Some(k @ (kind, from, to, seq)) = key(r) else { continue };
        // Every earlier copy of the request counts, delivered or not.
        let nth = {
            let n = occurrences.entry(k).or_default();
            *n += 1;
            *n - 1
        };
        let Some(answer) = answer_kind(kind) else { continue };
        if !r.delivered || answered.get(&(answer, to, from, seq)).is_some_and(|at| *at >= r.at_ms) {
            continue;
        }
        if in_model.get_or_insert_with(|| ModelIndex::of(model)).prompt(k, nth, answer) {
            out.push(r);
        }
    }
    out
}

/// The model's requests by kind, ends and number, in order, and the times
/// of the answers it put on the wire.
struct ModelIndex<'a> {
    requests: HashMap<Key<'a>, Vec<&'a Observed>>,
    answers: HashMap<Key<'a>, Vec<u64>>,
}

impl<'a> ModelIndex<'a> {
    fn of(model: &'a [Observed]) -> Self {
        let mut requests: HashMap<Key<'a>, Vec<&'a Observed>> = HashMap::new();
        let mut answers: HashMap<Key<'a>, Vec<u64>> = HashMap::new();
        for m in model {
            let Some(k) = key(m) else { continue };
            requests.entry(k).or_default().push(m);
            if m.on_wire {
                answers.entry(k).or_default().push(m.at_ms);
            }
        }
        ModelIndex { requests, answers }
    }

    /// Whether the model's `nth` copy of the request `k` was delivered and
    /// answered (with `answer`) on the wire within [`PROMPT_IN_MODEL_MS`].
    fn prompt(&self, (kind, from, to, seq): Key<'_>, nth: usize, answer: &str) -> bool {
        let Some(q) = self.requests.get(&(kind, from, to, seq)).and_then(|v| v.get(nth)) else { return false };
        q.delivered
            && self
                .answers
                .get(&(answer, to, from, seq))
                .is_some_and(|at| at.iter().any(|a| *a >= q.at_ms && a - q.at_ms <= PROMPT_IN_MODEL_MS))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn msg(at_ms: u64, from: &str, to: &str, summary: &str) -> Observed {
        Observed { at_ms, from: from.into(), to: to.into(), summary: summary.into(), on_wire: true, delivered: true }
    }

    fn model() -> Vec<Observed> {
        vec![
            msg(10, "mag1", "lma", "PBU seq=1 lifetime=100"),
            msg(11, "lma", "mag1", "PBA seq=1 status=0 lifetime=100"),
            msg(20, "lma", "mag1", "FMI seq=1 op=add lifetime=10"),
            msg(21, "mag1", "lma", "FMA seq=1 status=0"),
        ]
    }

    #[test]
    fn a_request_the_model_answered_at_once_is_due_until_its_answer_is_seen() {
        let model = model();
        let mut seen = vec![msg(500, "mag1", "lma", "PBU seq=1 lifetime=100")];
        let due_now: Vec<&str> = due(&seen, &model).iter().map(|r| r.summary.as_str()).collect();
        assert_eq!(due_now, ["PBU seq=1 lifetime=100"]);
        // An answer of another number, or going the other way, is not it.
        seen.push(msg(900, "lma", "mag1", "PBA seq=2 status=0 lifetime=100"));
        seen.push(msg(900, "mag1", "lma", "PBA seq=1 status=0 lifetime=100"));
        assert_eq!(due(&seen, &model).len(), 1);
        seen.push(msg(1140, "lma", "mag1", "PBA seq=1 status=0 lifetime=100"));
        assert!(due(&seen, &model).is_empty());
    }

    #[test]
    fn an_answer_the_model_gave_late_or_never_put_on_the_wire_is_not_waited_for() {
        let mut model = model();
        model[1].at_ms = 1510; // a delay fault: late in the model too
        model[3].on_wire = false; // an FMA its sender dropped
        let seen = vec![
            msg(5, "mag1", "lma", "PBU seq=1 lifetime=100"),
            msg(20, "lma", "mag1", "FMI seq=1 op=add lifetime=10"),
        ];
        assert!(due(&seen, &model).is_empty());
    }

    #[test]
    fn requests_the_model_never_made_or_that_were_not_taken_in_are_not_due() {
        let model = model();
        let mut seen = vec![msg(5, "mag2", "lma", "PBU seq=1 lifetime=100"), msg(6, "mag1", "lma", "PBU seq=7")];
        let mut dropped = msg(7, "lma", "mag1", "FMI seq=1 op=add lifetime=10");
        dropped.delivered = false;
        seen.push(dropped);
        seen.push(msg(8, "lma", "mag1", "HB-REQ seq=1"));
        assert!(due(&seen, &model).is_empty());
    }

    #[test]
    fn an_answer_before_a_request_of_the_same_number_does_not_answer_it() {
        // A MAG that restarted numbers its PBUs from 1 again.
        let mut model = model();
        model.push(msg(700, "mag1", "lma", "PBU seq=1 lifetime=100"));
        model.push(msg(701, "lma", "mag1", "PBA seq=1 status=0 lifetime=100"));
        let seen = vec![
            msg(10, "mag1", "lma", "PBU seq=1 lifetime=100"),
            msg(11, "lma", "mag1", "PBA seq=1 status=0 lifetime=100"),
            msg(800, "mag1", "lma", "PBU seq=1 lifetime=100"),
        ];
        let due_now: Vec<u64> = due(&seen, &model).iter().map(|r| r.at_ms).collect();
        assert_eq!(due_now, [800]);
    }

    #[test]
    fn a_summary_without_a_number_is_never_due() {
        assert_eq!(sequence("PBU lifetime=3"), None);
        assert_eq!(sequence("PBU seq=x"), None);
        assert_eq!(sequence("FMA seq=65535 status=0"), Some(65535));
        let seen = vec![msg(1, "mag1", "lma", "PBU lifetime=3")];
        assert!(due(&seen, &model()).is_empty());
    }
    #[test]
    fn a_request_is_matched_with_the_same_occurrence_in_the_model() {
        // The model's first FMA is dropped at MAG1 and never on the wire;
        // the LMA's repeat of the FMI is answered at once. The first FMI
        // here waits for nothing: its answer is the repeat's business.
        let mut model = model();
        model[3].on_wire = false;
        model.push(msg(1020, "lma", "mag1", "FMI seq=1 op=add lifetime=10"));
        model.push(msg(1021, "mag1", "lma", "FMA seq=1 status=129"));
        let mut seen = vec![
            msg(5, "mag1", "lma", "PBU seq=1 lifetime=100"),
            msg(6, "lma", "mag1", "PBA seq=1 status=0 lifetime=100"),
            msg(30, "lma", "mag1", "FMI seq=1 op=add lifetime=10"),
        ];
        assert!(due(&seen, &model).is_empty());
        seen.push(msg(1300, "lma", "mag1", "FMI seq=1 op=add lifetime=10"));
        let due_now: Vec<u64> = due(&seen, &model).iter().map(|r| r.at_ms).collect();
        assert_eq!(due_now, [1300]);
        // A third repeat the model never made is nobody's to wait for.
        seen.push(msg(1400, "mag1", "lma", "FMA seq=1 status=129"));
        seen.push(msg(2500, "lma", "mag1", "FMI seq=1 op=add lifetime=10"));
        assert!(due(&seen, &model).is_empty());
    }
    #[test]
    fn a_tally_counts_what_crossed_the_links_and_missing_says_what_falls_short() {
        let mut model = model();
        model.push(msg(40, "lma", "mag1", "HB-REQ seq=1"));
        let mut dropped = msg(50, "mag1", "lma", "FMA seq=1 status=0");
        dropped.on_wire = false;
        model.push(dropped);
        let want = tally(&model);
        assert_eq!(want.get(&("mag1".into(), "lma".into(), "FMA".into())), Some(&1), "{want:?}");
        assert!(!want.keys().any(|k| k.2.starts_with("HB-")), "heartbeats have their own clock: {want:?}");
        let seen = vec![msg(3, "mag1", "lma", "PBU seq=1 lifetime=100")];
        assert_eq!(
            missing(&seen, &want),
            ["lma -> mag1 FMI: 0 of 1", "lma -> mag1 PBA: 0 of 1", "mag1 -> lma FMA: 0 of 1"]
        );
        assert!(missing(&model, &want).is_empty());
        // More than the model is not for the settle to judge.
        let mut more = model.clone();
        more.push(msg(60, "mag1", "lma", "PBU seq=2 lifetime=100"));
        assert!(missing(&more, &want).is_empty());
    }

    #[test]
    fn due_costs_about_the_same_per_message_with_thousands_of_messages() {
        // A lab of 10,000 MNs: each PBU answered at once in the model;
        // here every other one still waits. Searching every message per
        // request took seconds here (quadratic); indexed, milliseconds.
        let n = 10_000u64;
        let mut model = Vec::new();
        let mut seen = Vec::new();
        for i in 0..n {
            let mag = format!("mag{}", i % 64);
            let seq = (i / 64) as u16;
            model.push(msg(10 * i, &mag, "lma", &format!("PBU seq={seq} lifetime=100")));
            model.push(msg(10 * i + 1, "lma", &mag, &format!("PBA seq={seq} status=0 lifetime=100")));
            seen.push(msg(10 * i, &mag, "lma", &format!("PBU seq={seq} lifetime=100")));
            if i % 2 == 0 {
                seen.push(msg(10 * i + 2, "lma", &mag, &format!("PBA seq={seq} status=0 lifetime=100")));
            }
        }
        let started = std::time::Instant::now();
        let due_now = due(&seen, &model);
        let took = started.elapsed();
        assert_eq!(due_now.len(), n as usize / 2);
        assert!(due_now.iter().all(|r| (r.at_ms / 10) % 2 == 1), "only the unanswered are due");
        assert!(took < std::time::Duration::from_secs(1), "due() over {} messages took {took:?}", seen.len());
    }
}
