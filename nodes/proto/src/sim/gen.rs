//! Drawing cases, and shrinking a failing one.

use std::collections::BTreeSet;
use std::net::Ipv6Addr;

use super::{mag_name, run, Att, Case, FlowSpec, IfaceSpec, Kind, MnSpec, Op, SimRng, Topology, Violation};
use crate::fault::FaultAction;
use crate::lma::PrefixModel;
use crate::prefix::Prefix;

/// Prefix `j` of MN `k`: `2001:db8:<k><j>::/64`, shared ones first.
fn prefix(k: usize, j: usize) -> Prefix {
    Prefix::new(Ipv6Addr::new(0x2001, 0xdb8, (0x10 * (k as u16 + 1)) + j as u16, 0, 0, 0, 0, 0), 64)
}

fn topology(r: &mut SimRng) -> Topology {
    let mags = 1 + r.below(3);
    let n_mns = 1 + r.below(2);
    let mut mns = Vec::new();
    for k in 0..n_mns {
        let n_ifaces = 1 + r.below(3);
        let ifaces = (0..n_ifaces)
            .map(|i| IfaceSpec {
                name: format!("if{}", i + 1),
                mag: r.below(mags),
                att: [Att::Wifi, Att::Lte, Att::Ethernet][r.below(3)],
            })
            .collect();
        let model = [PrefixModel::Unique, PrefixModel::Shared, PrefixModel::Hybrid][r.below(3)];
        let per_attachment = 1 + usize::from(r.chance(200));
        let shared = match model {
            PrefixModel::Unique => vec![],
            _ => vec![prefix(k, 0)],
        };
        // Enough unique prefixes for every interface at once: running out
        // (130) is not what these cases look for.
        let unique = match model {
            PrefixModel::Shared => vec![],
            _ => (1..=n_ifaces * per_attachment).map(|j| prefix(k, j)).collect(),
        };
        mns.push(MnSpec { name: format!("mn{}", k + 1), ifaces, model, shared, unique, per_attachment });
    }
    let n_flows = 1 + r.below(4);
    let mut flows = Vec::new();
    for i in 0..n_flows {
        let mn = r.below(n_mns);
        let m = &mns[mn];
        let pool: Vec<Prefix> = m.shared.iter().chain(m.unique.iter()).copied().collect();
        let prefix = pool[r.below(pool.len())];
        flows.push(FlowSpec {
            name: format!("f{}", i + 1),
            mn,
            prefix,
            dport: 5001 + i as u16,
            tcp: r.chance(250),
            fid: i as u16 + 1,
        });
    }
    let flow_lifetime_secs = [300, 30, 0xffff][r.below(3)];
    let min_delay_ms = [10_000, 1000][r.below(2)];
    Topology { mags, mns, flows, flow_lifetime_secs, min_delay_ms }
}

/// What the scenario validator tracks, so that a generated or shrunk
/// sequence is always a valid scenario.
#[derive(Default, Clone)]
struct Validity {
    attached: BTreeSet<(usize, usize)>,
    bound: BTreeSet<usize>,
    killed: BTreeSet<String>,
}

impl Validity {
    /// Whether `op` is valid next; records its effect if so.
    fn admit(&mut self, op: &Op) -> bool {
        match op {
            Op::Attach { mn, iface } => self.attached.insert((*mn, *iface)),
            Op::Detach { mn, iface } => self.attached.remove(&(*mn, *iface)),
            Op::Bind { flow, .. } => {
                self.bound.insert(*flow);
                true
            }
            Op::Move { flow, .. } => self.bound.contains(flow),
            Op::Unbind { flow } => self.bound.remove(flow),
            Op::Kill(n) => self.killed.insert(n.clone()),
            Op::Restart(n) => self.killed.remove(n),
            Op::MovePrefix { .. } | Op::Fault { .. } | Op::Wait { .. } => true,
        }
    }
}

const MESSAGES: [&str; 6] = ["PBU", "PBA", "FMI", "FMA", "BRI", "BRA"];

fn fault(r: &mut SimRng, t: &Topology) -> Op {
    let message = MESSAGES[r.below(MESSAGES.len())].to_string();
    let from_lma = matches!(message.as_str(), "PBA" | "FMI" | "BRI");
    let mag = mag_name(r.below(t.mags));
    let (from, to) = match r.below(3) {
        0 => (None, None),
        1 if from_lma => (Some("lma".to_string()), Some(mag)),
        1 => (Some(mag), None),
        _ if from_lma => (None, Some(mag)),
        _ => (None, Some("lma".to_string())),
    };
    let action = match r.below(4) {
        0 => FaultAction::Drop,
        1 => FaultAction::Duplicate,
        2 => FaultAction::Reorder,
        _ => FaultAction::Delay { ms: [300, 1500, 5000][r.below(3)] },
    };
    Op::Fault { message, from, to, count: 1 + r.below(3) as u32, action }
}

fn op(r: &mut SimRng, t: &Topology, v: &Validity) -> Op {
    let mn = r.below(t.mns.len());
    let iface = r.below(t.mns[mn].ifaces.len());
    let flow = r.below(t.flows.len());
    let bid = 1 + r.below(5) as u16;
    match r.below(100) {
        0..=19 => Op::Attach { mn, iface },
        20..=27 => Op::Detach { mn, iface },
        28..=39 => {
            let mut bids = vec![bid];
            if r.chance(250) {
                bids.push(1 + r.below(5) as u16);
                bids.dedup();
            }
            Op::Bind { flow, fid_pri: [10, 20, 30][r.below(3)], bids, prefix: r.chance(500), drop: r.chance(80) }
        }
        40..=55 => Op::Move { flow, to_bid: bid },
        56..=61 => {
            let m = &t.mns[mn];
            let pool: Vec<Prefix> = m.shared.iter().chain(m.unique.iter()).copied().collect();
            Op::MovePrefix { mn, prefix: pool[r.below(pool.len())], to_bid: bid }
        }
        62..=65 => Op::Unbind { flow },
        66..=75 => fault(r, t),
        76..=78 => {
            let alive: Vec<String> = std::iter::once("lma".to_string())
                .chain((0..t.mags).map(mag_name))
                .filter(|n| !v.killed.contains(n))
                .collect();
            match v.killed.iter().next() {
                Some(k) if r.chance(700) || alive.is_empty() => Op::Restart(k.clone()),
                _ => Op::Kill(alive[r.below(alive.len())].clone()),
            }
        }
        _ => Op::Wait { ms: [100, 1000, 3000, 10_000, 70_000, 250_000, 320_000][r.below(7)] },
    }
}

pub(super) fn generate(seed: u64, max_ops: usize) -> Case {
    let mut r = SimRng::new(seed);
    let topology = topology(&mut r);
    let n = 1 + r.below(max_ops.max(1));
    let mut v = Validity::default();
    let mut ops = Vec::new();
    // Most cases start with the MN attached, as the catalogue's do.
    for (k, m) in topology.mns.iter().enumerate() {
        for i in 0..m.ifaces.len() {
            if r.chance(800) {
                let o = Op::Attach { mn: k, iface: i };
                v.admit(&o);
                ops.push(o);
            }
        }
    }
    let mut tries = 0;
    while ops.len() < n && tries < n * 10 {
        tries += 1;
        let o = op(&mut r, &topology, &v);
        if v.admit(&o) {
            ops.push(o);
        }
    }
    Case { seed, topology, ops }
}

/// Drops the steps a removal left invalid (a detach with no attach, a
/// move before its bind, a restart with no kill).
fn repair(ops: Vec<Op>) -> Vec<Op> {
    let mut v = Validity::default();
    ops.into_iter().filter(|o| v.admit(o)).collect()
}

/// Flows and MNs nothing refers to any more go, and the rest are
/// renumbered, so the written scenario holds only what the failure needs.
fn prune(case: &Case) -> Case {
    let mut c = case.clone();
    let used: BTreeSet<usize> = c
        .ops
        .iter()
        .filter_map(|o| match o {
            Op::Bind { flow, .. } | Op::Move { flow, .. } | Op::Unbind { flow } => Some(*flow),
            _ => None,
        })
        .collect();
    let keep: Vec<usize> = (0..c.topology.flows.len()).filter(|i| used.contains(i)).collect();
    if keep.len() == c.topology.flows.len() {
        return c;
    }
    c.topology.flows = keep.iter().map(|i| case.topology.flows[*i].clone()).collect();
    for (new, f) in c.topology.flows.iter_mut().enumerate() {
        f.name = format!("f{}", new + 1);
        f.fid = new as u16 + 1;
        f.dport = 5001 + new as u16;
    }
    let renumber = |i: usize| keep.iter().position(|k| *k == i).unwrap_or(0);
    for o in &mut c.ops {
        match o {
            Op::Bind { flow, .. } | Op::Move { flow, .. } | Op::Unbind { flow } => *flow = renumber(*flow),
            _ => {}
        }
    }
    c
}

fn still_fails(c: &Case, kind: Kind) -> Option<Violation> {
    match run(c) {
        Err(v) if v.kind == kind => Some(v),
        _ => None,
    }
}

pub(super) fn shrink(case: &Case, kind: Kind, budget: usize) -> (Case, Violation) {
    let mut best = case.clone();
    let mut best_v = match still_fails(&best, kind) {
        Some(v) => v,
        None => {
            let v = Violation {
                step: case.ops.len(),
                kind,
                detail: "the case did not fail again".into(),
                expect: vec![],
                drain_ms: 0,
            };
            return (best, v);
        }
    };
    let mut runs = 0;
    let try_case = |c: Case, best: &mut Case, best_v: &mut Violation, runs: &mut usize| -> bool {
        *runs += 1;
        if let Some(v) = still_fails(&c, kind) {
            *best = c;
            *best_v = v;
            true
        } else {
            false
        }
    };
    // Steps after the one that failed cannot matter.
    if best_v.step + 1 < best.ops.len() {
        let mut c = best.clone();
        c.ops.truncate(best_v.step + 1);
        try_case(c, &mut best, &mut best_v, &mut runs);
    }
    let mut chunk = best.ops.len().div_ceil(2).max(1);
    while chunk >= 1 && runs < budget {
        let mut i = 0;
        let mut progress = false;
        while i < best.ops.len() && runs < budget {
            let mut ops = best.ops.clone();
            let end = (i + chunk).min(ops.len());
            ops.drain(i..end);
            let c = Case { ops: repair(ops), ..best.clone() };
            if c.ops.len() < best.ops.len() && try_case(c, &mut best, &mut best_v, &mut runs) {
                progress = true;
            } else {
                i += chunk;
            }
        }
        if !progress {
            if chunk == 1 {
                break;
            }
            chunk /= 2;
        }
    }
    // Simpler values: shorter waits, single faults.
    for i in 0..best.ops.len() {
        if runs >= budget {
            break;
        }
        let simpler = match &best.ops[i] {
            Op::Wait { ms } if *ms > 100 => {
                let mut out = Vec::new();
                for m in [100, 1000, 3000, 10_000, 70_000, 250_000] {
                    if m < *ms {
                        out.push(Op::Wait { ms: m });
                    }
                }
                out
            }
            Op::Fault { count, .. } if *count > 1 => {
                let mut o = best.ops[i].clone();
                if let Op::Fault { count, .. } = &mut o {
                    *count = 1;
                }
                vec![o]
            }
            _ => vec![],
        };
        for s in simpler {
            let mut c = best.clone();
            c.ops[i] = s;
            if try_case(c, &mut best, &mut best_v, &mut runs) {
                break;
            }
        }
    }
    let pruned = prune(&best);
    if pruned != best {
        if let Some(v) = still_fails(&pruned, kind) {
            return (pruned, v);
        }
    }
    (best, best_v)
}
