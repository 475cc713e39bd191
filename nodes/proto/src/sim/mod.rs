//! Model-based random testing of the protocol core, in the manner of a
//! deterministic simulator: a seeded generator draws a topology (1–3
//! MAGs, 1–2 MNs with 1–3 interfaces each, every prefix model, flows with
//! selectors and priorities) and a sequence of events and faults, plays
//! them in the virtual [`World`] exactly as the scenario runner plays the
//! steps of a scenario file, and checks invariants after every step. A
//! failing case shrinks to a short sequence that [`Case::to_scenario`]
//! writes in the scenario format, to be kept in `topologies/` as a
//! regression.
//!
//! Everything is a pure function of the seed, so a seed printed on failure
//! replays the case.

mod check;
mod gen;
mod yaml;

use std::fmt;
use std::net::Ipv6Addr;

use pmip_wire::AccessTechnologyType;

use crate::fault::{FaultAction, FaultRule};
use crate::flow::prefix_selector;
use crate::lma::{FlowAction, Lma, LmaCommand, LmaConfig, MnPolicy, PrefixModel};
use crate::mag::{Mag, MagConfig, MnBinding};
use crate::mn::{Mn, MnConfig};
use crate::prefix::Prefix;
use crate::time::Span;
use crate::world::{mac_for, World};
use crate::FlowKey;

pub use check::{Kind, Violation};

/// A small seeded generator (SplitMix64): the same seed gives the same
/// case on every machine.
#[derive(Debug, Clone)]
pub struct SimRng(u64);

impl SimRng {
    pub fn new(seed: u64) -> Self {
        SimRng(seed)
    }
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
    /// A number in `0..n` (0 when `n` is 0).
    pub fn below(&mut self, n: usize) -> usize {
        if n == 0 {
            0
        } else {
            (self.next_u64() % n as u64) as usize
        }
    }
    pub fn chance(&mut self, per_mille: u64) -> bool {
        self.next_u64() % 1000 < per_mille
    }
}

/// The seed of the `i`-th case of a run from `base`.
pub fn case_seed(base: u64, i: u64) -> u64 {
    SimRng::new(base ^ i.wrapping_mul(0xa24b_aed4_963e_e407)).next_u64()
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Att {
    Wifi,
    Lte,
    Ethernet,
}

impl Att {
    fn code(self) -> AccessTechnologyType {
        match self {
            Att::Wifi => AccessTechnologyType::Ieee80211,
            Att::Lte => AccessTechnologyType::EUtran,
            Att::Ethernet => AccessTechnologyType::Ieee8023,
        }
    }
    fn name(self) -> &'static str {
        match self {
            Att::Wifi => "wifi",
            Att::Lte => "e-utran",
            Att::Ethernet => "ethernet",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IfaceSpec {
    pub name: String,
    /// Index into the MAGs (`mag1` is 0).
    pub mag: usize,
    pub att: Att,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MnSpec {
    pub name: String,
    pub ifaces: Vec<IfaceSpec>,
    pub model: PrefixModel,
    pub shared: Vec<Prefix>,
    pub unique: Vec<Prefix>,
    pub per_attachment: usize,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FlowSpec {
    pub name: String,
    pub mn: usize,
    pub prefix: Prefix,
    pub dport: u16,
    pub tcp: bool,
    /// Fixed per flow: the scenario runner takes a flow's FID from its
    /// first bind step.
    pub fid: u16,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Topology {
    pub mags: usize,
    pub mns: Vec<MnSpec>,
    pub flows: Vec<FlowSpec>,
    pub flow_lifetime_secs: u16,
    pub min_delay_ms: u64,
}

/// One step, each with the meaning of the scenario step of that name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Op {
    Attach { mn: usize, iface: usize },
    Detach { mn: usize, iface: usize },
    Bind { flow: usize, fid_pri: u16, bids: Vec<u16>, prefix: bool, drop: bool },
    Move { flow: usize, to_bid: u16 },
    MovePrefix { mn: usize, prefix: Prefix, to_bid: u16 },
    Unbind { flow: usize },
    Fault { message: String, from: Option<String>, to: Option<String>, count: u32, action: FaultAction },
    Kill(String),
    Restart(String),
    Wait { ms: u64 },
}

/// A topology and the steps played on it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Case {
    pub seed: u64,
    pub topology: Topology,
    pub ops: Vec<Op>,
}

pub const LMA_ADDR: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 0xffff, 0, 0, 0, 0, 1);
pub const CN_ADDR: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 0xc, 0, 0, 0, 0, 1);

/// The address plan of the scenario runner: MAGs `::11`, `::12`, … in
/// name order.
pub fn mag_addr(i: usize) -> Ipv6Addr {
    Ipv6Addr::new(0x2001, 0xdb8, 0xffff, 0, 0, 0, 0, 0x11 + i as u16)
}

pub fn mag_name(i: usize) -> String {
    format!("mag{}", i + 1)
}

impl Topology {
    pub fn mn_id(&self, mn: usize) -> String {
        format!("{}@pmip.lab", self.mns[mn].name)
    }

    /// MNs take interface identifiers 1, 2, … in name order.
    pub fn flow_key(&self, f: &FlowSpec) -> FlowKey {
        FlowKey {
            src: CN_ADDR,
            dst: f.prefix.with_iid(f.mn as u64 + 1),
            next_header: if f.tcp { 6 } else { 17 },
            src_port: 7000,
            dst_port: f.dport,
        }
    }

    fn lma_config(&self) -> LmaConfig {
        let mut c = LmaConfig::new(LMA_ADDR);
        c.authorized_mags = (0..self.mags).map(mag_addr).collect();
        c.flow_lifetime_secs = self.flow_lifetime_secs;
        c.min_delay_before_bce_delete = Span::from_millis(self.min_delay_ms);
        c
    }

    fn new_lma(&self) -> Lma {
        let mut lma = Lma::new(self.lma_config());
        for (i, m) in self.mns.iter().enumerate() {
            let mut p = MnPolicy::new(self.mn_id(i), m.model);
            p.shared_prefixes = m.shared.clone();
            p.unique_prefixes = m.unique.clone();
            p.per_attachment = m.per_attachment;
            lma.add_policy(p);
        }
        lma
    }

    fn new_mag(&self, i: usize) -> Mag {
        let mut c = MagConfig::new(mag_addr(i), LMA_ADDR);
        for (k, m) in self.mns.iter().enumerate() {
            for f in m.ifaces.iter().filter(|f| f.mag == i) {
                c.mns.push(MnBinding { ll_id: mac_for(&m.name, &f.name), mn_id: self.mn_id(k) });
            }
        }
        Mag::new(c)
    }

    /// The world the scenario runner builds for this topology.
    pub fn world(&self) -> World {
        let mut w = World::new();
        for i in 0..self.mags {
            w.add_mag(&mag_name(i), self.new_mag(i));
        }
        for (k, m) in self.mns.iter().enumerate() {
            let ifaces: Vec<String> = m.ifaces.iter().map(|f| f.name.clone()).collect();
            w.add_mn(
                &m.name,
                Mn::new(MnConfig {
                    name: m.name.clone(),
                    iid: k as u64 + 1,
                    interfaces: ifaces.clone(),
                    uplink_preference: ifaces,
                }),
            );
        }
        w.add_cn("cn", CN_ADDR);
        w.add_lma("lma", self.new_lma());
        w
    }

    /// The MAG access link an MN interface attaches to, as the runner names it.
    pub fn access_iface(&self, mn: usize, iface: usize) -> String {
        format!("to-{}-{}", self.mns[mn].name, self.mns[mn].ifaces[iface].name)
    }
}

/// Most steps of the world one wait may take. A handful of messages and
/// timers per virtual second is normal; a timer that is due but never
/// served makes the world spin at one instant, which this bounds.
const STEP_BUDGET: u32 = 20_000;

/// `World::run_until` with the step budget: false when `done` held, the
/// time passed, or the world spun past the budget (then `spun` is set).
pub(crate) fn run_bounded(w: &mut World, span: Span, spun: &mut bool, mut done: impl FnMut(&World) -> bool) -> bool {
    let mut steps = 0u32;
    let r = w.run_until(span, |w| {
        steps += 1;
        if steps > STEP_BUDGET {
            *spun = true;
            return true;
        }
        done(w)
    });
    r && !*spun
}

/// Lets signalling in flight arrive, at most one virtual second: what the
/// scenario runner does after an event.
fn settle(w: &mut World, spun: &mut bool) {
    run_bounded(w, Span::from_secs(1), spun, |w| w.in_flight() == 0);
}

/// Plays one step on `w` as the scenario runner plays it. False when the
/// world spun without time passing (a timer due but never served).
pub fn apply(t: &Topology, w: &mut World, op: &Op) -> bool {
    let mut spun = false;
    let spun_ref = &mut spun;
    match op {
        Op::Attach { mn, iface } => {
            let m = &t.mns[*mn];
            let f = &m.ifaces[*iface];
            w.attach(&m.name, &f.name, &mag_name(f.mag), &t.access_iface(*mn, *iface), f.att.code(), None, vec![]);
            settle(w, spun_ref);
        }
        Op::Detach { mn, iface } => {
            let m = &t.mns[*mn];
            w.detach(&m.name, &m.ifaces[*iface].name);
            settle(w, spun_ref);
        }
        Op::Bind { flow, fid_pri, bids, prefix, drop } => {
            let f = &t.flows[*flow];
            let selector = if *prefix { prefix_selector(f.prefix) } else { t.flow_key(f).selector() };
            // A command the LMA refuses is one of the outcomes explored.
            let _ = w.command(LmaCommand::BindFlow {
                mn_id: t.mn_id(f.mn),
                fid: f.fid,
                fid_pri: *fid_pri,
                selector,
                bids: bids.clone(),
                action: if *drop { FlowAction::Drop } else { FlowAction::Forward },
            });
        }
        Op::Move { flow, to_bid } => {
            let f = &t.flows[*flow];
            let _ = w.command(LmaCommand::MoveFlow { mn_id: t.mn_id(f.mn), fid: f.fid, to_bid: *to_bid });
            settle(w, spun_ref);
        }
        Op::MovePrefix { mn, prefix, to_bid } => {
            let _ = w.command(LmaCommand::MovePrefix { mn_id: t.mn_id(*mn), prefix: *prefix, to_bid: *to_bid });
            settle(w, spun_ref);
        }
        Op::Unbind { flow } => {
            let f = &t.flows[*flow];
            let _ = w.command(LmaCommand::UnbindFlow { mn_id: t.mn_id(f.mn), fid: f.fid });
            settle(w, spun_ref);
        }
        Op::Fault { message, from, to, count, action } => w.add_fault(FaultRule {
            message: message.clone(),
            from: from.clone(),
            to: to.clone(),
            count: *count,
            action: *action,
        }),
        Op::Kill(n) => {
            w.kill(n);
        }
        Op::Restart(n) => {
            if n == "lma" {
                w.add_lma("lma", t.new_lma());
            } else if let Some(i) = (0..t.mags).find(|i| mag_name(*i) == *n) {
                w.add_mag(n, t.new_mag(i));
            }
            settle(w, spun_ref);
        }
        Op::Wait { ms } => {
            run_bounded(w, Span::from_millis(*ms), spun_ref, |_| false);
        }
    }
    !spun
}

/// What a passing case left: its ladder, for the replay check.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Outcome {
    pub ladder: Vec<String>,
}

/// Longest the final drain waits for the retransmissions to stop: a MAG
/// whose LMA is gone keeps re-registering its MNs until their bindings
/// run out (400 s), then tries once more (63 s).
pub const DRAIN: Span = Span::from_secs(600);

/// Plays a case and checks every invariant after each step and after a
/// final drain. A panic inside the core is a violation too.
pub fn run(case: &Case) -> Result<Outcome, Violation> {
    let played = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| check::play(case)));
    match played {
        Ok(r) => r,
        Err(p) => {
            let what = p
                .downcast_ref::<String>()
                .cloned()
                .or_else(|| p.downcast_ref::<&str>().map(|s| s.to_string()))
                .unwrap_or_else(|| "a panic".into());
            Err(Violation { step: case.ops.len(), kind: Kind::Panic, detail: what, expect: vec![], drain_ms: 0 })
        }
    }
}

/// Plays the case twice and compares the ladders.
pub fn run_twice(case: &Case) -> Result<Outcome, Violation> {
    let first = run(case)?;
    let second = run(case)?;
    if first.ladder != second.ladder {
        let at = first.ladder.iter().zip(&second.ladder).position(|(a, b)| a != b).unwrap_or(0);
        return Err(Violation {
            step: case.ops.len(),
            kind: Kind::Replay,
            detail: format!(
                "the same sequence gave another ladder from line {at}: {:?} vs {:?}",
                first.ladder.get(at),
                second.ladder.get(at)
            ),
            expect: vec![],
            drain_ms: 0,
        });
    }
    Ok(first)
}

impl Case {
    pub fn generate(seed: u64, max_ops: usize) -> Case {
        gen::generate(seed, max_ops)
    }

    /// The smallest case found that still fails with the same kind of
    /// violation, trying at most `budget` runs.
    pub fn shrink(&self, kind: Kind, budget: usize) -> (Case, Violation) {
        gen::shrink(self, kind, budget)
    }

    /// The case as a scenario file, its steps up to the violation and
    /// then the expectations the violated invariant asks for, which pass
    /// once the bug is fixed.
    pub fn to_scenario(&self, id: &str, v: &Violation) -> String {
        yaml::write(self, id, v)
    }

    /// The whole case as a scenario file with `expect` (scenario steps,
    /// e.g. what the virtual run saw) after its steps.
    pub fn to_sample_scenario(&self, id: &str, expect: &[String]) -> String {
        yaml::write_sample(self, id, expect)
    }
}

impl fmt::Display for Op {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{self:?}")
    }
}
