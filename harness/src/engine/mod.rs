//! The scenario engine: the one interpreter of scenario steps. Every step
//! has one meaning and every check one wording here, whichever backend
//! carries the steps out; a backend only does what it is told and reports
//! what it observed (see [`Backend`]).
//!
//! Verdicts rest on observation: message checks read the messages seen
//! between nodes, snapshots read each node's forwarding state from its
//! kernel (or the model's data plane) beside its tables, and a check with
//! nothing to compare against says so rather than passing.

pub mod answers;
pub mod backend;
pub mod ladder;

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use pmip_proto::flow::prefix_selector;
use pmip_proto::lma::{FlowAction, LmaCommand};
use pmip_proto::{Prefix, Span};
use serde_json::Value;

pub use backend::{Attachment, Backend, Capabilities, DownlinkProbe, FlowRun, Observe, Observed, UplinkProbe};

use crate::forwarding::KernelSection;
use crate::plan::{self, AddressPlan};
use crate::report::{Check, ScenarioReport, Verdict};
use crate::scenario::*;
use crate::snapshots::{self, Pins};

/// How long the engine lets signalling on its way arrive after an event,
/// at most: the same bound in every backend.
pub const SETTLE_LIMIT: Span = Span(1_000_000);

/// How much longer a settle waits for an answer the model run alongside
/// gave at once: a daemon slowed by a loaded machine answers late, and
/// one that never answers costs a step this long before its check fails.
pub const ANSWER_PATIENCE: Span = Span(3_000_000);

/// The step index under which the settle after the last step is recorded.
pub const FINAL_SETTLE: usize = usize::MAX;

/// What a model run of the same scenario gave, for a run to be compared
/// with: its state tables at each snapshot step, and the messages it saw.
#[derive(Debug, Clone, Default)]
pub struct Reference {
    pub snapshots: BTreeMap<String, Value>,
    pub messages: Vec<Observed>,
    /// What the model had put on the wire when each step settled, by step
    /// index ([`FINAL_SETTLE`] for the settle after the last step).
    pub settled: BTreeMap<usize, answers::Tally>,
}

impl Reference {
    pub fn of(report: &ScenarioReport) -> Self {
        Reference {
            snapshots: report.snapshots.clone(),
            messages: report.observed.clone(),
            settled: report.settled.clone(),
        }
    }
}

/// What a run compares with: a model run alongside (namespaces), stored
/// pins (the files in `<dir>/snapshots/`), both, or neither.
pub struct Judging<'a> {
    pub reference: Option<&'a Reference>,
    pub pins: Pins,
    /// Where the run's folder goes (captures, logs), if anywhere.
    pub out: Option<&'a Path>,
}

/// Plays `s` (from `file`) on `b` and gives the report with its verdict.
pub fn play(file: &Path, s: &Scenario, b: &mut dyn Backend, judging: Judging<'_>) -> ScenarioReport {
    play_from(file, s, b, judging, 0)
}

/// [`play`], playing only the steps from index `first` on: the ones
/// before are what the lab has been through already (`pmiplab step` on a
/// deployed lab), read for what they set up — a flow's FID from its bind
/// — but not played again.
pub fn play_from(file: &Path, s: &Scenario, b: &mut dyn Backend, judging: Judging<'_>, first: usize) -> ScenarioReport {
    let started = std::time::Instant::now();
    let mut report = ScenarioReport::new(file, s, b.name());
    if let Some(why) = skip_reason(s, b) {
        report.verdict = Verdict::Skip;
        report.reason = Some(why);
        return report;
    }
    let mut e = Engine {
        s,
        file,
        plan: plan::address_plan(s),
        running: BTreeMap::new(),
        judging,
        report,
        book: ladder::LadderBook::default(),
        at_step: first,
    };
    let mut cut_at = None;
    for (index, step) in s.steps.iter().enumerate().skip(first) {
        e.at_step = index;
        let line = step.referenced.line();
        // A run asked to stop plays no more steps, but still finishes
        // (captures, logs, tables) so that what was played is kept.
        if crate::interrupt::requested() {
            cut_at = Some(line);
            break;
        }
        if let Err(why) = e.step(b, &step.value, line) {
            e.report.checks.push(Check::failed(line, format!("step {}", step_name(&step.value)), why));
        }
    }
    e.finish(b);
    let mut report = e.report;
    report.wall_ms = started.elapsed().as_secs_f64() * 1000.0;
    report.judge();
    if let Some(line) = cut_at {
        report.verdict = Verdict::Interrupted;
        report.reason = Some(format!(
            "{} before the step at line {line}: the steps from there on were not played",
            crate::interrupt::reason().unwrap_or("stopped")
        ));
    }
    report
}

/// Why a backend with `caps` cannot play `s`: a feature it lacks, or a
/// step it cannot carry out.
pub fn skip_reason(s: &Scenario, caps: &dyn Capabilities) -> Option<String> {
    let missing = plan::missing_features(s, caps.features());
    if !missing.is_empty() {
        return Some(format!("needs {} (this backend has {})", missing.join(", "), caps.features().join(", ")));
    }
    s.steps.iter().find_map(|st| caps.cannot_play(&st.value, st.referenced.line()))
}

/// The step's keyword, as the scenario writes it.
pub fn step_name(step: &Step) -> &'static str {
    match step {
        Step::Attach(_) => "attach",
        Step::Detach(_) => "detach",
        Step::Bind(_) => "bind",
        Step::Move(_) => "move",
        Step::MovePrefix(_) => "move_prefix",
        Step::Unbind(_) => "unbind",
        Step::Drop(_) => "drop",
        Step::Fault(_) => "fault",
        Step::Link(_) => "link",
        Step::Send(_) => "send",
        Step::SendFmi(_) => "send_fmi",
        Step::Spoof(_) => "spoof",
        Step::Kill(_) => "kill",
        Step::Restart(_) => "restart",
        Step::StartFlow(_) => "start_flow",
        Step::StopFlow(_) => "stop_flow",
        Step::Wait(_) => "wait",
        Step::WaitFor(_) => "wait_for",
        Step::ExpectMessage(_) => "expect_message",
        Step::ExpectFlow(_) => "expect_flow",
        Step::ExpectUplink(_) => "expect_uplink",
        Step::ExpectState(_) => "expect_state",
        Step::Snapshot(_) => "snapshot",
        Step::Carve(_) => "carve",
        Step::FlowHandover(_) => "flow_handover",
    }
}

struct Engine<'a> {
    s: &'a Scenario,
    file: &'a Path,
    plan: AddressPlan,
    /// Flows started and not yet stopped.
    running: BTreeMap<(String, Direction), FlowRun>,
    judging: Judging<'a>,
    report: ScenarioReport,
    /// The ladder's rows besides the messages: notes and data-plane events.
    book: ladder::LadderBook,
    /// The index of the step being played, or [`FINAL_SETTLE`] after the last.
    at_step: usize,
}

impl Engine<'_> {
    /// Lets what is on its way arrive: until no signalling is crossing a
    /// link, at most [`SETTLE_LIMIT`]. A lost answer is the scenario's to
    /// check, not a reason to wait for a retransmission. With a model run
    /// alongside, what the model had sent by the time this step settled,
    /// and each answer it gave at once, is on its way however quiet the
    /// wire is: the engine waits for it, at most [`ANSWER_PATIENCE`] more
    /// (see [`answers`]). Every run records what it had seen at each
    /// settle, for a run beside it to wait on.
    fn settle(&mut self, b: &mut dyn Backend) {
        self.settle_after(b, false);
    }

    /// [`settle`](Self::settle); after an attach or a detach (`caught_up`),
    /// it may also end as soon as the wire holds exactly what the model's
    /// held when the same step settled there, nothing is due, and the
    /// backend has been briefly quiet (`Observe::quiet_briefly`, which for
    /// namespaces includes each attached MN's Router Advertisement). The
    /// quiet window alone cost every such step 100 ms or more, and a lab
    /// of 512 MNs attaches and detaches each: about two minutes of waiting
    /// for nothing. Other steps keep the full window: what they set off
    /// (an RA after a flow move, a restart's re-registration) is not all
    /// on the model's wire.
    fn settle_after(&mut self, b: &mut dyn Backend, caught_up: bool) {
        let step = self.at_step;
        let model = self.judging.reference.filter(|_| caught_up).and_then(|r| Some((r, r.settled.get(&step)?)));
        let caught_up = |o: &mut dyn Observe| {
            model.is_some_and(|(r, sent)| {
                o.quiet_briefly() && {
                    let seen = o.messages();
                    answers::tally(&seen) == *sent && answers::due(&seen, &r.messages).is_empty()
                }
            })
        };
        b.wait(SETTLE_LIMIT, &mut |o| o.quiet() || caught_up(o));
        // A run asked to stop keeps what it has: it waits for nothing more.
        if let Some(r) = self.judging.reference.filter(|_| !crate::interrupt::requested()) {
            let sent = r.settled.get(&self.at_step);
            b.wait(ANSWER_PATIENCE, &mut |o| {
                caught_up(o) || {
                    let seen = o.messages();
                    answers::due(&seen, &r.messages).is_empty()
                        && sent.is_none_or(|t| answers::missing(&seen, t).is_empty())
                        && o.quiet()
                }
            });
        }
        let tally = answers::tally(&b.messages());
        self.report.settled.insert(self.at_step, tally);
    }

    /// The flow run a flow step names, with its key; an error a user can read
    /// when the scenario lacks the flow.
    fn flow_run(&self, flow: &str, direction: Direction, rate_pps: u32) -> Result<FlowRun, String> {
        let spec = &self.s.flows.get(flow).ok_or_else(|| format!("the scenario has no flow named {flow}"))?.value;
        let key = plan::flow_key(self.s, &self.plan, flow)
            .ok_or_else(|| format!("flow {flow} has no address: its CN, MN or protocol is unknown"))?;
        Ok(FlowRun {
            flow: flow.into(),
            direction,
            cn: spec.cn.value.clone(),
            mn: spec.mn.value.clone(),
            key,
            rate_pps,
        })
    }

    fn mn_of_flow(&self, flow: &str) -> Result<String, String> {
        let f = self.s.flows.get(flow).ok_or_else(|| format!("the scenario has no flow named {flow}"))?;
        Ok(plan::mn_id_of(self.s, &f.value.mn.value))
    }

    fn fid_of(&self, flow: &str) -> Result<u16, String> {
        plan::fid_of(self.s, flow).ok_or_else(|| format!("flow {flow} is never bound, so it has no FID"))
    }

    fn lma(&self) -> Result<&str, String> {
        plan::lma_name(self.s).ok_or_else(|| "the scenario has no LMA".to_string())
    }

    /// Carries out one step. `Err` is a step that could not be carried
    /// out, which fails the scenario with the reason.
    fn step(&mut self, b: &mut dyn Backend, step: &Step, line: u64) -> Result<(), String> {
        self.book.step(b, self.s, step, line);
        match step {
            Step::Attach(a) => {
                let (mn, iface) = a.iface.value.split_once('/').ok_or("an interface is named mn/iface")?;
                let link = self
                    .s
                    .links
                    .iter()
                    .find(|l| l.value.mn.value == a.iface.value)
                    .ok_or_else(|| format!("no link names {}", a.iface.value))?;
                let att = parse_att(&link.value.att.value)
                    .ok_or_else(|| format!("unknown access technology {}", link.value.att.value))?;
                let hi = match &a.hi {
                    Some(h) => {
                        Some(parse_hi(&h.value).ok_or_else(|| format!("unknown Handoff Indicator {}", h.value))?)
                    }
                    None => None,
                };
                b.attach(&Attachment {
                    mn: mn.into(),
                    iface: iface.into(),
                    mag: link.value.mag.value.clone(),
                    port: plan::access_iface(&a.iface.value),
                    att,
                    hi,
                    prefixes: a.prefixes.clone(),
                })?;
                self.settle_after(b, true);
            }
            Step::Detach(i) => {
                let (mn, iface) = i.value.split_once('/').ok_or("an interface is named mn/iface")?;
                b.detach(mn, iface)?;
                self.settle_after(b, true);
            }
            Step::Bind(bind) => {
                let f = &self.s.flows.get(&bind.flow.value).ok_or("no such flow")?.value;
                let selector = match (&bind.selector, bind.granularity) {
                    (Some(sel), _) => sel.to_selector(),
                    (None, Granularity::Flow) => {
                        self.flow_run(&bind.flow.value, Direction::Downlink, 0)?.key.selector()
                    }
                    (None, Granularity::Prefix) => prefix_selector(f.prefix),
                };
                let action = if bind.action.value == "drop" { FlowAction::Drop } else { FlowAction::Forward };
                b.lma_command(LmaCommand::BindFlow {
                    mn_id: self.mn_of_flow(&bind.flow.value)?,
                    fid: bind.fid,
                    fid_pri: bind.fid_pri,
                    selector,
                    bids: bind.bids.clone(),
                    action,
                })
                .map_err(|e| format!("the LMA refused to bind flow {}: {e}", bind.flow.value))?;
                self.settle(b);
            }
            Step::Move(m) => {
                let c = LmaCommand::MoveFlow {
                    mn_id: self.mn_of_flow(&m.flow.value)?,
                    fid: self.fid_of(&m.flow.value)?,
                    to_bid: m.to_bid,
                };
                b.lma_command(c).map_err(|e| format!("the LMA refused to move flow {}: {e}", m.flow.value))?;
                self.settle(b);
            }
            Step::MovePrefix(m) => {
                let c = LmaCommand::MovePrefix {
                    mn_id: plan::mn_id_of(self.s, &m.mn.value),
                    prefix: m.prefix,
                    to_bid: m.to_bid,
                };
                b.lma_command(c).map_err(|e| format!("the LMA refused to move {}: {e}", m.prefix))?;
                self.settle(b);
            }
            Step::Unbind(f) => {
                let c = LmaCommand::UnbindFlow { mn_id: self.mn_of_flow(&f.value)?, fid: self.fid_of(&f.value)? };
                b.lma_command(c).map_err(|e| format!("the LMA refused to unbind flow {}: {e}", f.value))?;
                self.settle(b);
            }
            Step::Drop(d) => b.add_fault(d.rule().ok_or("a drop rule the validator should have refused")?)?,
            Step::Fault(f) => b.add_fault(f.rule().ok_or("a fault the validator should have refused")?)?,
            Step::Link(l) => {
                let [x, y] = l.between.value.as_slice() else {
                    return Err("a link is between two nodes".into());
                };
                b.set_link(x, y, l.latency_ms, l.loss_per_mille)?;
            }
            Step::Wait(w) => {
                let d = parse_duration(&w.value).ok_or_else(|| format!("'{}' is not a duration", w.value))?;
                b.wait(d, &mut |_| false);
            }
            Step::Send(p) => {
                let now = b.timestamp_now();
                let message = crate::crafted::pbu(self.s, p, now).ok_or("the PBU names what the scenario lacks")?;
                let from = crate::crafted::sender(self.s, p).ok_or("the PBU has no sender")?;
                // To the LMA that MAG sends its own PBUs to.
                let lma = plan::lma_of(self.s, &from).ok_or("the scenario has no LMA")?;
                let to = *self.plan.of.get(lma).ok_or("the LMA has no address")?;
                b.inject(&from, to, message)?;
                self.settle(b);
            }
            Step::SendFmi(f) => {
                let message = crate::crafted::fmi(self.s, f).ok_or("the FMI names what the scenario lacks")?;
                let lma = self.lma()?.to_string();
                let to = *self.plan.of.get(&f.to.value).ok_or_else(|| format!("{} has no address", f.to.value))?;
                b.inject(&lma, to, message)?;
                self.settle(b);
            }
            Step::Spoof(sp) => {
                let now = b.timestamp_now();
                let message = crate::crafted::spoofed(self.s, sp, now)
                    .ok_or("the spoofed message names what the scenario lacks")?;
                let link = plan::spoof_link(self.s, sp)?;
                let addr = |n: &str| self.plan.of.get(n).copied().ok_or_else(|| format!("{n} has no address"));
                let (src, dst) = (addr(&sp.as_node.value)?, addr(&sp.to.value)?);
                b.spoof(&link, src, dst, message)?;
                self.settle(b);
            }
            Step::Kill(n) => b.kill(&n.value)?,
            Step::Restart(n) => {
                b.restart(&n.value)?;
                self.settle(b);
            }
            Step::StartFlow(f) => {
                let key = (f.flow.value.clone(), f.direction);
                if self.running.contains_key(&key) {
                    return Err(format!("flow {} already runs {}", f.flow.value, f.direction.name()));
                }
                let run = self.flow_run(&f.flow.value, f.direction, f.rate_pps.value.max(1))?;
                b.start_flow(&run)?;
                self.running.insert(key, run);
            }
            Step::StopFlow(f) => {
                let run = self
                    .running
                    .remove(&(f.flow.value.clone(), f.direction))
                    .ok_or_else(|| format!("flow {} was not started {}", f.flow.value, f.direction.name()))?;
                let account = b.stop_flow(&run)?;
                let on: Vec<String> = account.by_interface.iter().map(|(i, _)| i.clone()).collect();
                self.book.flow_seen(b, self.s, &run.flow, run.direction, &on, true);
                self.report.checks.push(account.check(f, line));
            }
            Step::ExpectMessage(e) => {
                let c = message_check(&b.messages(), e, line);
                self.report.checks.push(c);
            }
            Step::WaitFor(w) => {
                let limit = parse_duration(&w.timeout.value)
                    .ok_or_else(|| format!("'{}' is not a duration", w.timeout.value))?;
                if let Some(e) = w.holds.as_ref().filter(|e| b.under_test(&e.node.value)) {
                    // Nothing tells when the state holds, so the whole bound
                    // passes: the steps after it then find what the
                    // scenario waited for, and the check says it could not
                    // be made.
                    b.wait(limit, &mut |_| false);
                    self.settle(b);
                    self.report.checks.push(not_observable(e, line));
                    return Ok(());
                }
                let s = self.s;
                let mut last = None;
                let started = b.elapsed_ms();
                let held = b.wait(limit, &mut |o| {
                    let c = match (&w.seen, &w.holds) {
                        (Some(e), _) => message_check(&o.messages(), e, line),
                        (_, Some(e)) => state_check(o, s, e, line),
                        _ => Check::failed(line, "wait_for", "nothing to wait for"),
                    };
                    let ok = c.passed();
                    last = Some(c);
                    ok
                });
                let last = last.ok_or("the backend never looked")?;
                let waited = b.elapsed_ms().saturating_sub(started);
                // What it waited for is an event like any other: what it set
                // off is let arrive before the next step looks.
                if held {
                    self.settle(b);
                }
                let detail = if held {
                    format!("held after {waited} ms: {}", last.detail)
                } else {
                    format!("not within {}: {}", w.timeout.value, last.detail)
                };
                self.report.checks.push(Check::new(line, format!("wait for {}", last.what), held, detail));
            }
            Step::ExpectFlow(e) => {
                let run = self.flow_run(&e.flow.value, Direction::Downlink, 1000)?;
                let packets = e.packets.max(1);
                let probe = b.probe_downlink(&run, packets, e.dropped)?;
                let on: Vec<String> =
                    probe.by_interface.iter().filter(|(_, n)| *n > 0).map(|(i, _)| i.clone()).collect();
                self.book.flow_seen(b, self.s, &run.flow, Direction::Downlink, &on, false);
                let total: u64 = probe.by_interface.iter().map(|(_, n)| n).sum();
                let check = match (&e.arrives_on, e.dropped) {
                    (_, true) => Check::new(
                        line,
                        format!("flow {} is dropped", e.flow.value),
                        total == 0,
                        format!("{total} of {packets} arrived; {}", probe.trace),
                    ),
                    (Some(want), false) => {
                        let good = probe.by_interface.iter().find(|(i, _)| *i == want.value).map_or(0, |(_, n)| *n);
                        let lost = u64::from(packets).saturating_sub(good);
                        Check::new(
                            line,
                            format!("flow {} arrives on {}", e.flow.value, want.value),
                            lost <= u64::from(e.max_lost),
                            format!("{good} of {packets} as expected; {}", probe.trace),
                        )
                    }
                    (None, false) => return Err("expect_flow needs arrives_on or dropped".into()),
                };
                self.report.checks.push(check);
            }
            Step::ExpectUplink(e) => {
                let run = self.flow_run(&e.flow.value, Direction::Uplink, 1000)?;
                let probe = b.probe_uplink(&run)?;
                self.book.flow_seen(b, self.s, &run.flow, Direction::Uplink, &probe.left_on, false);
                let ok = probe.reached_cn && probe.left_on.contains(&e.leaves_on.value);
                self.report.checks.push(Check::new(
                    line,
                    format!("uplink of {} leaves on {}", e.flow.value, e.leaves_on.value),
                    ok,
                    format!(
                        "left on {:?}; the CN {} it; {}",
                        probe.left_on,
                        if probe.reached_cn { "got" } else { "did not get" },
                        probe.trace
                    ),
                ));
            }
            Step::ExpectState(e) => {
                let c = state_check(b, self.s, e, line);
                self.report.checks.push(c);
            }
            Step::Snapshot(name) => self.snapshot(b, name, line)?,
            Step::Carve(c) => {
                let (mn, iface) = c.iface.value.split_once('/').ok_or("an interface is named mn/iface")?;
                b.carve(mn, iface, &c.service.value)?;
                self.settle(b);
            }
            Step::FlowHandover(h) => {
                let (mn, iface) = h.to.value.split_once('/').ok_or("an interface is named mn/iface")?;
                let prefixes: Vec<Prefix> = h.prefixes.iter().map(|p| p.value).collect();
                b.flow_handover(mn, iface, &prefixes)?;
                self.settle(b);
            }
        }
        Ok(())
    }

    /// Records every node's tables and kernel section under `name`; checks
    /// each kernel section against what the node's tables imply, and the
    /// whole against the model run alongside, else the stored pin.
    fn snapshot(&mut self, b: &mut dyn Backend, name: &str, line: u64) -> Result<(), String> {
        let mut now = serde_json::json!({"lma": Value::Null, "mags": {}, "mns": {}, "kernel": {}});
        for (node, spec) in &self.s.nodes {
            let slot = match spec.value.role {
                Role::Lma if plan::lma_name(self.s) == Some(node.as_str()) => &mut now["lma"],
                // LMAs besides the first, only in scenarios that have them.
                Role::Lma => &mut now["lmas"][node],
                Role::Mag => &mut now["mags"][node],
                Role::Mn => &mut now["mns"][node],
                Role::Cn => continue,
            };
            let iut = b.under_test(node);
            *slot = if iut { Value::String(NOT_OBSERVABLE.into()) } else { b.tables(node)? };
            let kernel = b.kernel(node)?;
            if iut {
                self.report.checks.push(Check {
                    line,
                    what: format!("{node}'s kernel forwards as its tables say"),
                    outcome: crate::report::Outcome::NotObservable,
                    detail: format!("{node} is an implementation under test: its tables and intents are not observable; its kernel section is compared below"),
                });
            } else if let Some(implied) = b.implied_kernel(node) {
                let diff = implied.differences(&kernel);
                self.report.checks.push(Check::new(
                    line,
                    format!("{node}'s kernel forwards as its tables say"),
                    diff.is_empty(),
                    if diff.is_empty() {
                        "identical".to_string()
                    } else {
                        format!("- implied by its tables only, + in its kernel only:\n{}", diff.join("\n"))
                    },
                ));
            }
            now["kernel"][node] = serde_json::to_value(kernel).map_err(|e| e.to_string())?;
        }
        // The model's tables of a node under test are not compared: the
        // node's are not observable (its kernel section still is).
        let model = self.judging.reference.and_then(|r| r.snapshots.get(name)).map(|m| {
            let mut m = m.clone();
            for (node, spec) in &self.s.nodes {
                if b.under_test(node) {
                    let slot = match spec.value.role {
                        Role::Lma => &mut m["lma"],
                        Role::Mag => &mut m["mags"][node],
                        _ => continue,
                    };
                    *slot = Value::String(NOT_OBSERVABLE.into());
                }
            }
            m
        });
        let check = match self.judging.reference {
            Some(_) => snapshots::compare_with_model(name, model.as_ref(), &now, line),
            None => self.judging.pins.compare_state(self.file, self.s, name, &now, line),
        };
        self.report.checks.push(check);
        self.report.snapshots.insert(name.to_string(), now);
        Ok(())
    }

    /// After the last step: flows left running are stopped and accounted,
    /// the message sequence is compared, the backend writes its files.
    fn finish(&mut self, b: &mut dyn Backend) {
        // The last step may have set off an exchange: both backends let it
        // end before the messages are compared.
        self.at_step = FINAL_SETTLE;
        self.settle(b);
        let left: Vec<FlowRun> = std::mem::take(&mut self.running).into_values().collect();
        for run in left {
            match b.stop_flow(&run) {
                Ok(account) => {
                    let on: Vec<String> = account.by_interface.iter().map(|(i, _)| i.clone()).collect();
                    self.book.flow_seen(b, self.s, &run.flow, run.direction, &on, true);
                }
                Err(e) => self.report.checks.push(Check::failed(0, format!("stop flow {} at the end", run.flow), e)),
            }
        }
        self.report.step_marks = self.book.marks.clone();
        b.finish(self.judging.out, &mut self.report);
        let observed = b.messages();
        self.report.ladder = self.book.lines(&observed);
        self.report.ladder_options = ladder::options(self.s);
        let check = match self.judging.reference {
            Some(r) if self.s.nodes.keys().any(|n| b.under_test(n)) => {
                let fair = |v: &[Observed]| -> Vec<Observed> {
                    v.iter().map(|m| standard_part(m, b.under_test(&m.from) || b.under_test(&m.to))).collect()
                };
                snapshots::compare_wire_with_model(&fair(&r.messages), &fair(&observed), 1)
            }
            Some(r) => snapshots::compare_wire_with_model(&r.messages, &observed, 1),
            None => self.judging.pins.compare_ladder(self.file, self.s, &self.report.ladder, 1),
        };
        self.report.checks.push(check);
        self.report.observed = observed;
    }
}

/// What the standard fixes of a message to or from an implementation
/// under test: its kind, ends and statuses, not the sequence numbers and
/// lifetimes that each implementation chooses (RFC 5213 §5.3, §6.9) and
/// that the answers to it echo.
/// A fault that would act inside an implementation under test acts at
/// its peer's receiving side instead (`iut::fault_place`): the message is
/// then on the wire but not taken in where the model never sent it, so
/// what is compared is what was delivered.
fn standard_part(m: &Observed, iut: bool) -> Observed {
    let mut m = m.clone();
    m.on_wire = m.delivered;
    if iut {
        m.summary = m
            .summary
            .split(' ')
            .filter(|t| !t.starts_with("seq=") && !t.starts_with("lifetime="))
            .collect::<Vec<_>>()
            .join(" ");
    }
    m
}

/// Whether the messages `e` names were delivered (taken in by their
/// receiver) so far.
pub fn message_check(messages: &[Observed], e: &ExpectMessage, line: u64) -> Check {
    let name = e.message.value.to_ascii_uppercase();
    let matching: Vec<&Observed> = messages
        .iter()
        .filter(|m| m.kind() == name)
        .filter(|m| e.from.as_ref().is_none_or(|f| f.value == m.from))
        .filter(|m| e.to.as_ref().is_none_or(|t| t.value == m.to))
        .filter(|m| e.with.iter().all(|w| m.summary.split(' ').any(|tok| tok == w)))
        .collect();
    let delivered = matching.iter().filter(|m| m.delivered).count();
    let what = format!(
        "{name}{}{}{}",
        e.from.as_ref().map(|f| format!(" from {}", f.value)).unwrap_or_default(),
        e.to.as_ref().map(|t| format!(" to {}", t.value)).unwrap_or_default(),
        if e.with.is_empty() { String::new() } else { format!(" with {}", e.with.join(" ")) }
    );
    let ok = match e.count {
        Some(n) => delivered == n,
        None => delivered > 0,
    };
    let want = e.count.map(|n| format!("{n}")).unwrap_or_else(|| "at least 1".into());
    let undelivered = matching.len() - delivered;
    let mut detail = format!("expected {want} delivered, saw {delivered}");
    if undelivered > 0 {
        detail.push_str(&format!(" (and {undelivered} sent but not delivered)"));
    }
    if !ok {
        let kind: Vec<String> = messages
            .iter()
            .filter(|m| m.kind() == name)
            .map(|m| format!("{} -> {} {}", m.from, m.to, m.summary))
            .collect();
        if kind.is_empty() {
            detail.push_str(&format!("; no {name} was seen at all"));
        } else {
            detail.push_str(&format!("; every {name} seen: {}", kind.join(" | ")));
        }
    }
    Check::new(line, format!("message {what}"), ok, detail)
}

/// Whether a node's tables hold what `e` says.
pub fn state_check(o: &mut dyn Observe, s: &Scenario, e: &ExpectState, line: u64) -> Check {
    if o.under_test(&e.node.value) {
        return not_observable(e, line);
    }
    let want =
        e.equals.as_ref().map(|v| format!("= {v}")).or(e.len.map(|n| format!("has {n} entries"))).unwrap_or_default();
    let what = format!("{} {} {want}", e.node.value, e.path);
    if !s.nodes.contains_key(&e.node.value) {
        return Check::failed(line, what, format!("the scenario has no node {}", e.node.value));
    }
    let state = match o.tables(&e.node.value) {
        Ok(v) => v,
        Err(err) => return Check::failed(line, what, format!("{}'s tables could not be read: {err}", e.node.value)),
    };
    let found = state.pointer(&e.path).cloned();
    let (ok, detail) = match (&e.equals, e.len, &found) {
        (_, _, None) => (false, format!("{} has nothing at {}", e.node.value, e.path)),
        (Some(want), _, Some(v)) => (v == want, format!("found {v}")),
        (None, Some(n), Some(v)) => {
            let len = v.as_array().map(|a| a.len());
            (len == Some(n), format!("found {} entries", len.map(|l| l.to_string()).unwrap_or("no list".into())))
        }
        _ => (false, "nothing to compare".into()),
    };
    Check::new(line, what, ok, detail)
}

/// A state check of a node under test: its tables cannot be read from
/// outside, so the check is neither passed nor failed.
fn not_observable(e: &ExpectState, line: u64) -> Check {
    Check {
        line,
        what: format!("{} {}", e.node.value, e.path),
        outcome: crate::report::Outcome::NotObservable,
        detail: format!("{} is an implementation under test: its own tables are not observable", e.node.value),
    }
}

/// What a node under test has in a snapshot instead of its tables.
pub const NOT_OBSERVABLE: &str = "not observable: implementation under test";

/// The nodes whose snapshots a run records: every node but the CNs.
pub fn snapshot_nodes(s: &Scenario) -> BTreeSet<&str> {
    s.nodes.iter().filter(|(_, n)| n.value.role != Role::Cn).map(|(k, _)| k.as_str()).collect()
}

/// The kernel section of every node of a snapshot value.
pub fn kernel_of(snapshot: &Value) -> BTreeMap<String, KernelSection> {
    serde_json::from_value(snapshot.get("kernel").cloned().unwrap_or_default()).unwrap_or_default()
}
