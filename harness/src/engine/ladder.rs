//! The ladder the engine writes: the messages the backend observed, with
//! rows the engine adds between them: a note for each step that sets
//! something off ("lma decides to move flow Y to BID 1"), and data-plane
//! events from what the backend saw of the flows (a flow's first packet on
//! an interface, a flow switching interface). Both backends observe the
//! same probes and the same steps, so they give the same rows.

use std::collections::BTreeMap;

use pmip_captures::ladder::Options;

use super::backend::{Backend, Observed};
use crate::scenario::{Direction, Role, Scenario, SpoofMessage, Step};

/// Rows the engine adds, each to go after the messages observed before it.
#[derive(Debug)]
struct Placed {
    on_wire: usize,
    off_wire: usize,
    row: String,
    at: u64,
}

#[derive(Debug, Default)]
pub struct LadderBook {
    /// Each row: how many messages were seen on a link before it, and how
    /// many that never reached one; its text without its time; its time.
    /// The two are counted apart: a namespace run learns of the messages a
    /// sender dropped before any link saw them only at the end, and then
    /// places them by their time.
    rows: Vec<Placed>,
    /// Where each flow was last seen, by direction: `mn/iface`, or `None`
    /// when it was last seen nowhere.
    last: BTreeMap<(String, Direction), Option<String>>,
    /// Every step as it was played: (its time, `line N: <step>[ — note]`),
    /// for the captures' packet comments.
    pub marks: Vec<(u64, String)>,
}

impl LadderBook {
    fn add(&mut self, b: &mut dyn Backend, row: String) {
        let seen = b.messages();
        let on_wire = seen.iter().filter(|m| m.on_wire).count();
        let at = b.elapsed_ms();
        self.rows.push(Placed { on_wire, off_wire: seen.len() - on_wire, row, at });
    }

    /// Marks the step at `line` as played, with a note row for a step
    /// that sets something off (none for the steps that only look).
    pub fn step(&mut self, b: &mut dyn Backend, s: &Scenario, step: &Step, line: u64) {
        let note = note(s, step);
        let name = super::step_name(step);
        let mark = match &note {
            Some(n) => format!("line {line}: {name} ({n})"),
            None => format!("line {line}: {name}"),
        };
        self.marks.push((b.elapsed_ms(), mark));
        if let Some(note) = note {
            self.add(b, format!("* {note}"));
        }
    }

    /// Where a flow's packets arrived (downlink) or left (uplink), in the
    /// order the interfaces first saw them: a row for each interface that
    /// is not where the flow was last seen, and one when it arrives
    /// nowhere after it had arrived somewhere. A flow that ran at a rate
    /// is accounted when it stops (`ran`): its rows say so, since the
    /// backends do not tell when in the run each interface first saw it.
    pub fn flow_seen(
        &mut self,
        b: &mut dyn Backend,
        s: &Scenario,
        flow: &str,
        dir: Direction,
        on: &[String],
        ran: bool,
    ) {
        let key = (flow.to_string(), dir);
        let ran = if ran { " while it ran" } else { "" };
        if on.is_empty() {
            if let Some(Some(was)) = self.last.get(&key).cloned() {
                self.add(b, format!("* {flow}: no packet {}{ran} (was {was})", verb(dir)));
            }
            self.last.insert(key, None);
            return;
        }
        for iface in on {
            let was = self.last.get(&key).cloned().flatten();
            if was.as_deref() == Some(iface.as_str()) {
                continue;
            }
            let mag = mag_of(s, iface).unwrap_or("?");
            let mn = iface.split('/').next().unwrap_or(iface);
            let (from, to) = match dir {
                Direction::Downlink => (mag, mn),
                Direction::Uplink => (mn, mag),
            };
            let what = match (&was, dir) {
                (None, Direction::Downlink) => format!("first packet on {iface}{ran}"),
                (None, Direction::Uplink) => format!("uplink first leaves on {iface}{ran}"),
                (Some(w), Direction::Downlink) => format!("now on {iface}, was {w}{ran}"),
                (Some(w), Direction::Uplink) => format!("uplink now leaves on {iface}, was {w}{ran}"),
            };
            self.add(b, format!("{from} => {to} {flow}: {what}"));
            self.last.insert(key.clone(), Some(iface.clone()));
        }
    }

    /// The whole ladder: the messages with the engine's rows among them.
    /// A row goes after the messages seen before it, and after the
    /// messages never on a link that are older than it.
    pub fn lines(&self, observed: &[Observed]) -> Vec<String> {
        let mut out = Vec::with_capacity(observed.len() + self.rows.len());
        let (mut next, mut on_wire, mut off_wire) = (0, 0, 0);
        for p in &self.rows {
            while let Some(m) = observed.get(next) {
                let before = if m.on_wire { on_wire < p.on_wire } else { off_wire < p.off_wire || m.at_ms < p.at };
                if !before {
                    break;
                }
                if m.on_wire {
                    on_wire += 1;
                } else {
                    off_wire += 1;
                }
                out.push(message_line(m));
                next += 1;
            }
            out.push(format!("{}ms {}", p.at, p.row));
        }
        out.extend(observed[next..].iter().map(message_line));
        out
    }
}

fn verb(dir: Direction) -> &'static str {
    match dir {
        Direction::Downlink => "arrives",
        Direction::Uplink => "leaves",
    }
}

/// The MAG the link of MN interface `iface` attaches to.
fn mag_of<'s>(s: &'s Scenario, iface: &str) -> Option<&'s str> {
    s.links.iter().find(|l| l.value.mn.value == iface).map(|l| l.value.mag.value.as_str())
}

/// What a step that sets something off did, as a note `node: text` for
/// the ladder; `None` for a step that only looks.
pub fn note(s: &Scenario, step: &Step) -> Option<String> {
    let lma = crate::plan::lma_name(s).unwrap_or("lma");
    Some(match step {
        Step::Attach(a) => {
            let mag = mag_of(s, &a.iface.value).unwrap_or("?");
            format!("{mag}: sees {} attach", a.iface.value)
        }
        Step::Detach(i) => format!("{}: sees {} detach", mag_of(s, &i.value).unwrap_or("?"), i.value),
        Step::Carve(c) => format!(
            "{}: carves a level-2 prefix for {}'s {}",
            mag_of(s, &c.iface.value).unwrap_or("?"),
            c.iface.value,
            c.service.value
        ),
        Step::FlowHandover(h) => format!(
            "{}: takes {} for {}",
            mag_of(s, &h.to.value).unwrap_or("?"),
            h.prefixes.iter().map(|p| p.value.to_string()).collect::<Vec<_>>().join(", "),
            h.to.value
        ),
        Step::Bind(b) => format!(
            "{lma}: binds flow {} to BID {}",
            b.flow.value,
            b.bids.iter().map(u16::to_string).collect::<Vec<_>>().join(",")
        ),
        Step::Move(m) => format!("{lma}: decides to move flow {} to BID {}", m.flow.value, m.to_bid),
        Step::MovePrefix(m) => format!("{lma}: decides to move {} to BID {}", m.prefix, m.to_bid),
        Step::Unbind(f) => format!("{lma}: unbinds flow {}", f.value),
        Step::Drop(d) => fault_note(&d.message.value, &d.from, &d.to, d.count, "drop"),
        Step::Fault(f) => fault_note(&f.message.value, &f.from, &f.to, f.count, &f.action.value),
        Step::Link(l) => format!(
            "link {}: latency {} ms, loss {} per mille",
            l.between.value.join("-"),
            l.latency_ms,
            l.loss_per_mille
        ),
        Step::Send(p) => {
            let from = crate::crafted::sender(s, p).unwrap_or_else(|| "?".into());
            format!("{from}: sends a PBU the test made (seq={})", p.seq)
        }
        Step::SendFmi(f) => format!("{lma}: sends {} an FMI the test made (seq={})", f.to.value, f.seq),
        Step::Spoof(sp) => {
            let what = match &sp.message {
                SpoofMessage::Send(_) => "a PBU",
                SpoofMessage::SendFmi(_) => "an FMI",
                SpoofMessage::Bri(_) => "a BRI",
            };
            format!(
                "{}: sends {} {what} with {}'s source address (spoofed)",
                sp.from_node().value,
                sp.to.value,
                sp.as_node.value
            )
        }
        Step::Kill(n) => format!("{}: killed", n.value),
        Step::Restart(n) => format!("{}: restarts with no state", n.value),
        Step::StartFlow(f) => {
            let cn = s.flows.get(&f.flow.value).map(|x| x.value.cn.value.as_str()).unwrap_or("?");
            let who = match f.direction {
                Direction::Downlink => cn.to_string(),
                Direction::Uplink => s.flows.get(&f.flow.value).map(|x| x.value.mn.value.clone()).unwrap_or_default(),
            };
            format!("{who}: starts flow {} {} at {} pps", f.flow.value, f.direction.name(), f.rate_pps.value)
        }
        Step::StopFlow(f) => format!("stops flow {} {}", f.flow.value, f.direction.name()),
        Step::Wait(w) => format!("waits {}", w.value),
        Step::WaitFor(w) => {
            let what = match (&w.seen, &w.holds) {
                (Some(e), _) => {
                    let from = e.from.as_ref().map(|f| format!(" from {}", f.value)).unwrap_or_default();
                    format!("{}{from}", e.message.value.to_ascii_uppercase())
                }
                (_, Some(e)) => format!("{} {}", e.node.value, e.path),
                _ => "nothing".into(),
            };
            format!("waits for {what}, at most {}", w.timeout.value)
        }
        Step::ExpectMessage(_)
        | Step::ExpectFlow(_)
        | Step::ExpectUplink(_)
        | Step::ExpectState(_)
        | Step::Snapshot(_) => return None,
    })
}

fn fault_note(
    message: &str,
    from: &Option<serde_saphyr::Spanned<String>>,
    to: &Option<serde_saphyr::Spanned<String>>,
    count: u32,
    action: &str,
) -> String {
    let kind = message.to_ascii_uppercase();
    let which = if count == 1 { format!("the next {kind}") } else { format!("the next {count} {kind}s") };
    match (from, to) {
        (Some(f), Some(t)) => format!("{}: will {action} {which} it sends to {} (fault rule)", f.value, t.value),
        (Some(f), None) => format!("{}: will {action} {which} it sends (fault rule)", f.value),
        (None, Some(t)) => format!("{}: will {action} {which} it receives (fault rule)", t.value),
        (None, None) => format!("fault rule: {action} {which}"),
    }
}

/// A message's ladder line: its time, sender, receiver and summary, with
/// lifetimes in seconds (a PBU's and PBA's field counts 4-second units,
/// an FMI's seconds, 0xffff there meaning no end) and `(dropped)` for a
/// message its receiver never took in.
pub fn message_line(o: &Observed) -> String {
    let unit = match o.kind() {
        "PBU" | "PBA" => Some(4u64),
        "FMI" => Some(1),
        _ => None,
    };
    let summary: Vec<String> = o
        .summary
        .split(' ')
        .map(|w| match (unit, w.strip_prefix("lifetime=").and_then(|v| v.parse::<u64>().ok())) {
            (Some(1), Some(0xffff)) if o.kind() == "FMI" => "lifetime=infinite".to_string(),
            (Some(u), Some(v)) => format!("lifetime={}s", v * u),
            _ => w.to_string(),
        })
        .collect();
    let dropped = if o.delivered { "" } else { " (dropped)" };
    format!("{}ms {} -> {} {}{dropped}", o.at_ms, o.from, o.to, summary.join(" "))
}

/// How the scenario's ladder is drawn: the columns it names, else CNs,
/// the LMA, the MAGs and the MNs, in that order.
pub fn options(s: &Scenario) -> Options {
    let columns = if s.ladder.columns.is_empty() {
        let mut v: Vec<(u8, &String)> = s
            .nodes
            .iter()
            .map(|(name, n)| {
                let rank = match n.value.role {
                    Role::Cn => 0,
                    Role::Lma => 1,
                    Role::Mag => 2,
                    Role::Mn => 3,
                };
                (rank, name)
            })
            .collect();
        v.sort();
        v.into_iter().map(|(_, n)| n.clone()).collect()
    } else {
        s.ladder.columns.iter().map(|c| c.value.clone()).collect()
    };
    Options { columns, width: s.ladder.width.as_ref().map_or(72, |w| w.value), abbreviate: s.ladder.abbreviate }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn seen(summary: &str, delivered: bool) -> Observed {
        Observed { at_ms: 7, from: "lma".into(), to: "mag1".into(), summary: summary.into(), on_wire: true, delivered }
    }

    fn at(at_ms: u64, summary: &str, on_wire: bool) -> Observed {
        Observed { at_ms, on_wire, delivered: on_wire, ..seen(summary, true) }
    }

    fn placed(on_wire: usize, off_wire: usize, at: u64, row: &str) -> Placed {
        Placed { on_wire, off_wire, row: row.into(), at }
    }

    #[test]
    fn rows_go_after_what_was_seen_before_them_and_a_late_known_drop_by_its_time() {
        let observed = [at(6, "FMI seq=1", true), at(7, "FMA seq=1", false), at(2506, "FMI seq=1", true)];
        let kinds = |book: &LadderBook| -> Vec<String> {
            book.lines(&observed).iter().map(|l| l.split(' ').take(4).collect::<Vec<_>>().join(" ")).collect()
        };
        // Virtual time: the dropped FMA was among what was seen before the
        // wait, at the same millisecond.
        let mut book = LadderBook {
            rows: vec![placed(0, 0, 6, "* lma: decides"), placed(1, 1, 7, "* waits 3s")],
            ..LadderBook::default()
        };
        let want = ["6ms * lma: decides", "6ms lma -> mag1", "7ms lma -> mag1", "7ms * waits 3s", "2506ms lma -> mag1"];
        assert_eq!(kinds(&book), want);
        // Namespaces: the drop is known only at the end; its time places it.
        book.rows = vec![placed(0, 0, 6, "* lma: decides"), placed(1, 0, 9, "* waits 3s")];
        let got = kinds(&book);
        assert_eq!(got[2..4], ["7ms lma -> mag1".to_string(), "9ms * waits 3s".into()][..], "{got:?}");
    }

    #[test]
    fn lifetimes_read_in_seconds_whatever_unit_the_field_counts() {
        assert_eq!(
            message_line(&seen("PBU seq=1 lifetime=100 hi=1", true)),
            "7ms lma -> mag1 PBU seq=1 lifetime=400s hi=1"
        );
        assert_eq!(
            message_line(&seen("PBA seq=1 status=0 lifetime=0", true)),
            "7ms lma -> mag1 PBA seq=1 status=0 lifetime=0s"
        );
        assert_eq!(
            message_line(&seen("FMI seq=1 op=add lifetime=300", false)),
            "7ms lma -> mag1 FMI seq=1 op=add lifetime=300s (dropped)"
        );
        assert_eq!(
            message_line(&seen("FMI seq=1 op=add lifetime=65535", true)),
            "7ms lma -> mag1 FMI seq=1 op=add lifetime=infinite"
        );
        assert_eq!(message_line(&seen("BRI seq=1 trigger=1", true)), "7ms lma -> mag1 BRI seq=1 trigger=1");
    }
}
