//! Playing a case and the invariants checked after each step.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::net::Ipv6Addr;

use super::{apply, mag_addr, mag_name, Case, Op, Outcome, Topology, DRAIN};
use crate::mag::{BulState, FlowStateKey};
use crate::output::FlowTarget;
use crate::prefix::Prefix;
use crate::time::{Instant, Span};
use crate::world::World;

/// Which invariant failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Kind {
    /// A Flow Mobility Cache entry names a BID that now belongs to another binding.
    BidReused,
    /// What the LMA believes a MAG holds is not what the MAG holds.
    Belief,
    /// A bound flow with an attached interface is not delivered.
    BlackHole,
    /// Our own nodes answered each other with an error, with no fault injected.
    ErrorStatus,
    /// Retransmissions did not stop.
    Retransmission,
    /// State outlived its lifetime or its binding.
    Lifetime,
    /// The same sequence gave another ladder.
    Replay,
    /// The core panicked.
    Panic,
    /// A timer kept firing with no time passing.
    Livelock,
}

impl fmt::Display for Kind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{self:?}")
    }
}

/// A failed invariant: after which step (`ops.len()` for the final drain),
/// what, and the scenario steps that check it (passing once fixed).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Violation {
    pub step: usize,
    pub kind: Kind,
    pub detail: String,
    pub expect: Vec<String>,
    /// How long the final drain ran before the failure, for the scenario's wait.
    pub drain_ms: u64,
}

impl fmt::Display for Violation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} after step {}: {}", self.kind, self.step, self.detail)
    }
}

fn violation(step: usize, kind: Kind, detail: String, expect: Vec<String>) -> Violation {
    Violation { step, kind, detail, expect, drain_ms: 0 }
}

/// Nothing on the wire, nothing waiting for an answer.
pub(crate) fn quiescent(w: &World) -> bool {
    w.in_flight() == 0
        && w.lma().is_none_or(|l| l.pending.is_empty())
        && (0..8).filter_map(|i| w.mag(&mag_name(i))).all(|m| m.bul.iter().all(|e| e.retransmit_at.is_none()))
}

#[derive(Default)]
struct Tracker {
    /// Messages already scanned for error statuses.
    scanned: usize,
    /// A fault was injected: errors and slow convergence are allowed.
    disturbed: bool,
    /// A node crashed: without heartbeats, nobody learns of it until
    /// lifetimes run out, so delivery and belief are not checked.
    crashed: bool,
    /// (MN, FID, BID) → when that binding registered, as first seen named.
    bid_seen: BTreeMap<(String, u16, u16), Option<Instant>>,
    /// (MN, FID) → the BIDs a bind step gave it, while still so.
    bound_by_test: BTreeMap<(String, u16), Vec<u16>>,
}

/// The MN interface (`mn/if`) behind a MAG's access link name.
fn mn_iface(t: &Topology, access: &str) -> Option<String> {
    for (k, m) in t.mns.iter().enumerate() {
        for (i, f) in m.ifaces.iter().enumerate() {
            if t.access_iface(k, i) == access {
                return Some(format!("{}/{}", m.name, f.name));
            }
        }
    }
    None
}

fn mag_index(t: &Topology, addr: Ipv6Addr) -> Option<usize> {
    (0..t.mags).find(|i| mag_addr(*i) == addr)
}

impl Tracker {
    fn check(&mut self, t: &Topology, w: &mut World, step: usize) -> Result<(), Violation> {
        self.errors(w, step)?;
        self.lifetimes(t, w, step)?;
        self.bids(w, step)?;
        // After a fault, the LMA and a MAG may disagree until a refresh
        // or a lifetime settles it; they are checked once that had time
        // (see `play`), not after every step.
        if quiescent(w) && !self.disturbed {
            self.belief(t, w, step)?;
            self.delivery(t, w, step)?;
        }
        Ok(())
    }

    /// Only 129 to an FMI[del] is not an error: the flow state it would
    /// delete went when the MN left, which can cross the FMI[del].
    fn benign(w: &World, m: &crate::world::MessageRecord, status: u8) -> bool {
        let seq = m.summary.split(' ').find(|x| x.starts_with("seq="));
        status == 129
            && w.messages.iter().any(|f| {
                f.from == m.to
                    && f.to == m.from
                    && f.summary.starts_with("FMI ")
                    && f.summary.split(' ').any(|x| Some(x) == seq)
                    && f.summary.split(' ').any(|x| x == "op=del")
            })
    }

    fn errors(&mut self, w: &World, step: usize) -> Result<(), Violation> {
        let new = &w.messages[self.scanned.min(w.messages.len())..];
        self.scanned = w.messages.len();
        if self.disturbed {
            return Ok(());
        }
        for m in new.iter().filter(|m| !m.dropped) {
            let mut words = m.summary.split(' ');
            let name = words.next().unwrap_or("");
            if !matches!(name, "PBA" | "FMA" | "BRA") {
                continue;
            }
            let status = words.find_map(|x| x.strip_prefix("status=")).and_then(|s| s.parse::<u8>().ok());
            if let Some(s) = status.filter(|s| *s >= 128 && !(name == "FMA" && Self::benign(w, m, *s))) {
                return Err(violation(
                    step,
                    Kind::ErrorStatus,
                    format!("{} -> {}: {} with no fault injected", m.from, m.to, m.summary),
                    vec![format!(
                        "expect_message: {{ message: {name}, from: {}, to: {}, with: [status={s}], count: 0 }}",
                        m.from, m.to
                    )],
                ));
            }
        }
        Ok(())
    }

    fn lifetimes(&self, t: &Topology, w: &World, step: usize) -> Result<(), Violation> {
        let now = w.now();
        if let Some(lma) = w.lma() {
            if let Some(b) = lma.cache.iter().find(|b| b.expires_at < now) {
                return Err(violation(
                    step,
                    Kind::Lifetime,
                    format!("LMA binding {} BID {} outlived its lifetime ({} < {now})", b.mn_id, b.bid, b.expires_at),
                    vec![],
                ));
            }
            if let Some(((mn, fid), _)) = lma.signalled.iter().find(|(_, s)| s.expires_at.is_some_and(|e| e < now)) {
                return Err(violation(
                    step,
                    Kind::Lifetime,
                    format!("the LMA still counts on {mn} FID {fid} at its MAG after that state ran out"),
                    vec![],
                ));
            }
        }
        for i in 0..t.mags {
            let name = mag_name(i);
            let Some(mag) = w.mag(&name) else { continue };
            let orphan = mag
                .flows
                .iter()
                .find(|(k, f)| f.expires_at.is_some_and(|e| e < now) || !mag.bul.iter().any(|b| b.mn_id == k.mn_id));
            if let Some((k, f)) = orphan {
                let left = mag.flows.len() - 1;
                return Err(violation(
                    step,
                    Kind::Lifetime,
                    format!(
                        "{name} keeps flow state {k:?} (expires {:?}) past its lifetime or its MN's binding",
                        f.expires_at
                    ),
                    vec![format!("expect_state: {{ node: {name}, path: /flows, len: {left} }}")],
                ));
            }
        }
        Ok(())
    }

    fn bids(&mut self, w: &World, step: usize) -> Result<(), Violation> {
        let Some(lma) = w.lma() else {
            return Ok(());
        };
        let mut named = BTreeSet::new();
        for e in lma.fmc.iter() {
            for bid in &e.bids {
                let k = (e.mn_id.clone(), e.fid, *bid);
                let now = lma.cache.get(&e.mn_id, *bid).map(|b| b.registered_at);
                match self.bid_seen.get(&k) {
                    Some(Some(then)) if now.is_some_and(|n| n != *then) => {
                        let row = lma.fmc.iter().position(|x| x.mn_id == e.mn_id && x.fid == e.fid).unwrap_or(0);
                        return Err(violation(
                            step,
                            Kind::BidReused,
                            format!(
                                "{} FID {} names BID {bid}, which now is another binding (registered at {:?}, not {then})",
                                e.mn_id, e.fid, now
                            ),
                            vec![format!(
                                "expect_state: {{ node: lma, path: /flow_mobility_cache/{row}/state, equals: inactive }}"
                            )],
                        ));
                    }
                    Some(Some(_)) => {}
                    _ => {
                        self.bid_seen.insert(k.clone(), now);
                    }
                }
                named.insert(k);
            }
        }
        self.bid_seen.retain(|k, _| named.contains(k));
        Ok(())
    }

    fn belief(&self, t: &Topology, w: &World, step: usize) -> Result<(), Violation> {
        let Some(lma) = w.lma() else {
            return Ok(());
        };
        let believed: BTreeSet<(Ipv6Addr, FlowStateKey)> = lma
            .signalled
            .iter()
            .map(|((mn, fid), s)| {
                let key = match s.prefix_granularity {
                    Some(p) => FlowStateKey { mn_id: mn.clone(), fid: None, prefix: Some(p) },
                    None => FlowStateKey { mn_id: mn.clone(), fid: Some(*fid), prefix: None },
                };
                (s.mag, key)
            })
            .collect();
        for i in 0..t.mags {
            let name = mag_name(i);
            let Some(mag) = w.mag(&name) else { continue };
            let addr = mag_addr(i);
            let here: BTreeSet<&FlowStateKey> = believed.iter().filter(|(m, _)| *m == addr).map(|(_, k)| k).collect();
            let held: BTreeSet<&FlowStateKey> = mag.flows.keys().collect();
            let missing: Vec<_> = here.difference(&held).collect();
            let extra: Vec<_> = held.difference(&here).collect();
            if !missing.is_empty() || !extra.is_empty() {
                return Err(violation(
                    step,
                    Kind::Belief,
                    format!("the LMA believes {name} holds {here:?}; it holds {held:?}"),
                    vec![format!("expect_state: {{ node: {name}, path: /flows, len: {} }}", here.len())],
                ));
            }
        }
        Ok(())
    }

    fn delivery(&self, t: &Topology, w: &mut World, step: usize) -> Result<(), Violation> {
        for f in &t.flows {
            let key = t.flow_key(f);
            let mn = &t.mns[f.mn].name;
            let Some(lma) = w.lma() else { return Ok(()) };
            let Some(FlowTarget::Forward(target)) = lma.classify(&key) else { continue };
            // A bind step may point a flow at a binding whose MAG has no
            // route for it, with no signalling: that is the test's doing,
            // not the protocol's, until the LMA itself moves the flow.
            if let Some(e) = lma.deciding_entry(&key) {
                let as_bound = self.bound_by_test.get(&(e.mn_id.clone(), e.fid)) == Some(&e.bids);
                let native = lma
                    .cache
                    .iter()
                    .filter(|b| b.mn_id == e.mn_id && b.is_active() && b.proxy_coa == target)
                    .any(|b| b.hnps.iter().any(|p| p.contains(&key.dst)));
                if as_bound && !native {
                    continue;
                }
            }
            let Some(mi) = mag_index(t, target) else { continue };
            let mag_n = mag_name(mi);
            let Some(mag) = w.mag(&mag_n) else { continue };
            let mn_id = t.mn_id(f.mn);
            let Some(entry) = mag.bul.iter().find(|b| b.mn_id == mn_id && b.state == BulState::Registered) else {
                continue;
            };
            if !w.mn(mn).is_some_and(|m| m.addresses().contains(&key.dst)) {
                continue;
            }
            // Where it should arrive: the MAG's route, if that leads to an
            // interface of the MN registered here, else that interface.
            let want = mag
                .route(&key.dst)
                .filter(|r| mag.bul.iter().any(|b| b.iface == *r && b.state == BulState::Registered))
                .map(str::to_string)
                .unwrap_or_else(|| entry.iface.clone());
            let want = mn_iface(t, &want).unwrap_or(want);
            let path = w.downlink("cn", key);
            let via = path.hops.get(2).cloned().unwrap_or_default();
            if path.delivered_on.is_none() || via != mag_n {
                return Err(violation(
                    step,
                    Kind::BlackHole,
                    format!(
                        "flow {} ({key}): the LMA sends it to {mag_n}, yet it {}",
                        f.name,
                        match (&path.delivered_on, &path.dropped) {
                            (Some((m, i)), _) => format!("arrived on {m}/{i} via {}", path.hops.join(" > ")),
                            (None, Some(d)) => format!("was dropped: {d}"),
                            _ => "was lost".into(),
                        }
                    ),
                    vec![format!("expect_flow: {{ flow: {}, arrives_on: {want} }}", f.name)],
                ));
            }
            let arrived = path.delivered_on.map(|(m, i)| format!("{m}/{i}")).unwrap_or_default();
            let up = w.uplink(mn, key.reversed());
            if up.delivered_on.is_none() {
                return Err(violation(
                    step,
                    Kind::BlackHole,
                    format!("uplink of flow {}: {}", f.name, up.dropped.unwrap_or_else(|| "lost".into())),
                    vec![
                        format!("expect_flow: {{ flow: {}, arrives_on: {arrived} }}", f.name),
                        format!("expect_uplink: {{ flow: {}, leaves_on: {arrived} }}", f.name),
                    ],
                ));
            }
        }
        Ok(())
    }

    /// Records the BIDs a bind step gave its flow.
    fn bound(&mut self, t: &Topology, op: &Op) {
        if let Op::Bind { flow, bids, .. } = op {
            let f = &t.flows[*flow];
            self.bound_by_test.insert((t.mn_id(f.mn), f.fid), bids.clone());
        }
    }
}

pub(super) fn play(case: &Case) -> Result<Outcome, Violation> {
    let t = &case.topology;
    let mut w = t.world();
    let mut k = Tracker::default();
    for (i, op) in case.ops.iter().enumerate() {
        match op {
            Op::Fault { .. } => k.disturbed = true,
            Op::Kill(_) | Op::Restart(_) => {
                k.disturbed = true;
                k.crashed = true;
            }
            _ => {}
        }
        if !apply(t, &mut w, op) {
            return Err(violation(
                i,
                Kind::Livelock,
                format!("the world spins at {} with no time passing", w.now()),
                vec![],
            ));
        }
        k.bound(t, op);
        k.check(t, &mut w, i)?;
    }
    let start = w.now();
    let mut spun = false;
    let quiet = super::run_bounded(&mut w, DRAIN, &mut spun, quiescent);
    if spun {
        return Err(violation(
            case.ops.len(),
            Kind::Livelock,
            format!("the world spins at {} with no time passing", w.now()),
            vec![],
        ));
    }
    let drain_ms = w.now().saturating_since(start).as_millis();
    let at_end = |mut v: Violation| {
        v.drain_ms = drain_ms;
        v
    };
    if !quiet {
        let pending: Vec<String> =
            w.lma().map(|l| l.pending.iter().map(|p| p.describe()).collect()).unwrap_or_default();
        return Err(at_end(violation(
            case.ops.len(),
            Kind::Retransmission,
            format!("still not quiet after {} s: LMA pending {pending:?}", DRAIN.as_secs()),
            vec!["expect_state: { node: lma, path: /pending, len: 0 }".into()],
        )));
    }
    k.check(t, &mut w, case.ops.len()).map_err(at_end)?;
    // After faults, what the LMA believes and what is delivered must
    // agree again once every flow state had a refresh or ran out, and the
    // bindings re-registered: the protocol's own repair. An infinite flow
    // lifetime has no refresh to repair it, and a crash is noticed only
    // when a binding expires (no heartbeats here); neither is checked.
    if k.disturbed && !k.crashed && t.flow_lifetime_secs != 0xffff {
        // A flow lifetime for the refreshes, a binding lifetime (400 s,
        // the MAG's default) for the re-registrations.
        let settle = Span::from_secs(u64::from(t.flow_lifetime_secs) + 500);
        let mut spun = false;
        super::run_bounded(&mut w, settle, &mut spun, |_| false);
        let quiet = !spun && super::run_bounded(&mut w, DRAIN, &mut spun, quiescent);
        let drain_ms = w.now().saturating_since(start).as_millis();
        if quiet {
            let converged = k.belief(t, &w, case.ops.len()).and_then(|_| k.delivery(t, &mut w, case.ops.len()));
            converged.map_err(|mut v| {
                v.drain_ms = drain_ms;
                v
            })?;
        }
    }
    Ok(Outcome { ladder: w.ladder() })
}

/// Prefixes are shown as the scenario writes them.
pub(super) fn quote(p: &Prefix) -> String {
    format!("\"{p}\"")
}
