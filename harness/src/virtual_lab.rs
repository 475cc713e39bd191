//! Runs a scenario against the in-memory `World` of `pmip-proto`: the same
//! protocol core the daemons run, in virtual time.

use std::collections::BTreeMap;
use std::net::Ipv6Addr;

use pmip_proto::flow::prefix_selector;
use pmip_proto::lma::{FlowAction, Lma, LmaCommand};
use pmip_proto::mag::Mag;
use pmip_proto::mn::Mn;
use pmip_proto::world::{LinkProps, World};
use pmip_proto::{FlowKey, Span};
use pmip_wire::WireConfig;

use crate::report::{Check, Verdict};
use crate::running_flows::{advance, FlowAccount, Running};
use crate::scenario::*;

/// What the virtual backend can run.
pub const FEATURES: [&str; 3] = ["virtual", "draft-fmi", "binding-revocation"];

/// What `s` requires that a backend with `features` lacks: its `requires`
/// list, and `rfc7864` for a scenario in that profile.
pub fn missing_features<'a>(s: &'a Scenario, features: &[&str]) -> Vec<&'a str> {
    let profile = (s.wire.profile == Profile::Rfc7864).then_some("rfc7864");
    let mut missing: Vec<&str> =
        s.requires.iter().map(|r| r.value.as_str()).chain(profile).filter(|r| !features.contains(r)).collect();
    missing.dedup();
    missing
}

/// Addresses of every node: given ones, else from the plan.
pub struct AddressPlan {
    pub of: BTreeMap<String, Ipv6Addr>,
    pub iid: BTreeMap<String, u64>,
}

pub fn address_plan(s: &Scenario) -> AddressPlan {
    let mut of = BTreeMap::new();
    let mut iid = BTreeMap::new();
    let (mut mags, mut cns, mut mns) = (0u16, 0u16, 0u64);
    for (name, n) in &s.nodes {
        let n = &n.value;
        let planned = match n.role {
            Role::Lma => Some(Ipv6Addr::new(0x2001, 0xdb8, 0xffff, 0, 0, 0, 0, 1)),
            Role::Mag => {
                mags += 1;
                Some(Ipv6Addr::new(0x2001, 0xdb8, 0xffff, 0, 0, 0, 0, 0x10 + mags))
            }
            Role::Cn => {
                cns += 1;
                Some(Ipv6Addr::new(0x2001, 0xdb8, 0xc, 0, 0, 0, 0, cns))
            }
            Role::Mn => {
                mns += 1;
                iid.insert(name.clone(), mns);
                None
            }
        };
        if let Some(a) = n.address.or(planned) {
            of.insert(name.clone(), a);
        }
    }
    AddressPlan { of, iid }
}

pub fn mn_id(name: &str, spec: &NodeSpec) -> String {
    spec.mn_id.clone().unwrap_or_else(|| format!("{name}@pmip.lab"))
}

pub fn access_iface(mn_iface: &str) -> String {
    format!("to-{}", mn_iface.replace('/', "-"))
}

pub struct VirtualLab<'a> {
    pub s: &'a Scenario,
    pub world: World,
    plan: AddressPlan,
    flows: BTreeMap<String, Running>,
}

impl<'a> VirtualLab<'a> {
    pub fn build(s: &'a Scenario) -> Result<Self, String> {
        let plan = address_plan(s);
        let addr = |n: &str| plan.of.get(n).copied().ok_or_else(|| format!("node {n} has no address"));
        let (lma_name, _) = s.nodes.iter().find(|(_, n)| n.value.role == Role::Lma).ok_or("no lma node")?;
        let lma_addr = addr(lma_name)?;
        let cfg = crate::node_config::lma(s, &plan, lma_addr);
        let mut lma = Lma::new(cfg);
        for p in crate::node_config::mn_policies(s) {
            lma.add_policy(p);
        }
        let mut world = World::new();
        world.wire = WireConfig { flow_mobility_mh_type: s.wire.fmi_mh_type };
        for (name, n) in &s.nodes {
            let spec = &n.value;
            match spec.role {
                Role::Mn => {
                    let config = crate::node_config::mn(s, &plan, name).ok_or("no such MN")?;
                    world.add_mn(name, Mn::new(config));
                }
                Role::Mag => world.add_mag(name, Mag::new(crate::node_config::mag(s, name, addr(name)?, lma_addr))),
                Role::Cn => world.add_cn(name, addr(name)?),
                Role::Lma => {}
            }
        }
        world.add_lma(lma_name, lma);
        Ok(VirtualLab { s, world, plan, flows: BTreeMap::new() })
    }

    pub fn flow_key(&self, name: &str) -> Option<FlowKey> {
        let f = &self.s.flows.get(name)?.value;
        let iid = self.plan.iid.get(&f.mn.value).copied()?;
        let next_header = proto_number(&f.proto.value)?;
        Some(FlowKey {
            src: *self.plan.of.get(&f.cn.value)?,
            dst: f.prefix.with_iid(iid),
            next_header,
            src_port: f.sport,
            dst_port: f.dport,
        })
    }

    fn mn_id_of(&self, mn: &str) -> String {
        self.s.nodes.get(mn).map(|n| mn_id(mn, &n.value)).unwrap_or_else(|| mn.to_string())
    }

    /// Lets signalling in flight arrive (at most one virtual second).
    fn settle(&mut self) {
        advance(&mut self.world, &mut self.flows, Span::from_secs(1), |w| w.in_flight() == 0);
    }

    /// Runs one step; expectations return a check.
    pub fn step(&mut self, step: &Step, line: u64) -> Option<Check> {
        let check = |what: String, ok: bool, detail: String| Some(Check { line, what, ok, detail });
        match step {
            Step::Attach(a) => {
                let (mn, iface) = a.iface.value.split_once('/')?;
                let link = self.s.links.iter().find(|l| l.value.mn.value == a.iface.value)?;
                let att = parse_att(&link.value.att.value)?;
                let hi = a.hi.as_ref().and_then(|h| parse_hi(&h.value));
                let mag = link.value.mag.value.clone();
                self.world.attach(mn, iface, &mag, &access_iface(&a.iface.value), att, hi, a.prefixes.clone());
                self.settle();
                None
            }
            Step::Detach(i) => {
                let (mn, iface) = i.value.split_once('/')?;
                self.world.detach(mn, iface);
                self.settle();
                None
            }
            Step::Bind(b) => {
                let f = &self.s.flows.get(&b.flow.value)?.value;
                let selector = match (&b.selector, b.granularity) {
                    (Some(sel), _) => sel.to_selector(),
                    (None, Granularity::Flow) => self.flow_key(&b.flow.value)?.selector(),
                    (None, Granularity::Prefix) => prefix_selector(f.prefix),
                };
                let action = if b.action.value == "drop" { FlowAction::Drop } else { FlowAction::Forward };
                self.world.command(LmaCommand::BindFlow {
                    mn_id: self.mn_id_of(&f.mn.value),
                    fid: b.fid,
                    fid_pri: b.fid_pri,
                    selector,
                    bids: b.bids.clone(),
                    action,
                });
                None
            }
            Step::Move(m) => {
                let fid = self.fid_of(&m.flow.value)?;
                let mn = self.mn_id_of(&self.s.flows.get(&m.flow.value)?.value.mn.value);
                self.world.command(LmaCommand::MoveFlow { mn_id: mn, fid, to_bid: m.to_bid });
                self.settle();
                None
            }
            Step::MovePrefix(m) => {
                let mn = self.mn_id_of(&m.mn.value);
                self.world.command(LmaCommand::MovePrefix { mn_id: mn, prefix: m.prefix, to_bid: m.to_bid });
                self.settle();
                None
            }
            Step::Unbind(f) => {
                let fid = self.fid_of(&f.value)?;
                let mn = self.mn_id_of(&self.s.flows.get(&f.value)?.value.mn.value);
                self.world.command(LmaCommand::UnbindFlow { mn_id: mn, fid });
                self.settle();
                None
            }
            Step::Drop(d) => {
                self.world.add_fault(d.rule()?);
                None
            }
            Step::Fault(f) => {
                self.world.add_fault(f.rule()?);
                None
            }
            Step::Link(l) => {
                let [a, b] = l.between.value.as_slice() else {
                    return None;
                };
                let props = LinkProps { latency: Span::from_millis(l.latency_ms), loss_per_mille: l.loss_per_mille };
                self.world.set_link(a, b, props);
                None
            }
            Step::Wait(w) => {
                advance(&mut self.world, &mut self.flows, parse_duration(&w.value)?, |_| false);
                None
            }
            Step::Send(p) => {
                let now =
                    pmip_proto::signalling::timestamp_micros(pmip_proto::signalling::timestamp_at(self.world.now(), 0));
                let message = crate::crafted::pbu(self.s, p, now)?;
                let from = crate::crafted::sender(self.s, p)?;
                let lma = self.s.nodes.iter().find(|(_, n)| n.value.role == Role::Lma).map(|(n, _)| n.clone())?;
                self.world.inject(&from, *self.plan.of.get(&lma)?, message);
                self.settle();
                None
            }
            Step::SendFmi(f) => {
                let message = crate::crafted::fmi(self.s, f)?;
                let lma = self.s.nodes.iter().find(|(_, n)| n.value.role == Role::Lma).map(|(n, _)| n.clone())?;
                self.world.inject(&lma, *self.plan.of.get(&f.to.value)?, message);
                self.settle();
                None
            }
            Step::Kill(n) => {
                self.world.kill(&n.value);
                None
            }
            Step::Restart(n) => {
                self.restart(&n.value)?;
                self.settle();
                None
            }
            Step::StartFlow(f) => {
                let key = self.flow_key(&f.flow.value)?;
                let spec = &self.s.flows.get(&f.flow.value)?.value;
                let cn = spec.cn.value.clone();
                let uplink_from = (f.direction == Direction::Uplink).then(|| spec.mn.value.clone());
                let interval = Span(1_000_000 / u64::from(f.rate_pps.value.max(1)));
                let now = self.world.now();
                let running = Running { cn, uplink_from, key, interval, next_at: now, account: FlowAccount::default() };
                self.flows.insert(format!("{} {}", f.flow.value, f.direction.name()), running);
                None
            }
            Step::StopFlow(f) => {
                let run = self.flows.remove(&format!("{} {}", f.flow.value, f.direction.name()))?;
                Some(run.account.check(f, line))
            }
            Step::ExpectMessage(e) => Some(message_check(&self.world, e, line)),
            Step::WaitFor(w) => {
                let limit = parse_duration(&w.timeout.value)?;
                let started = self.world.now();
                let held = |world: &World| match (&w.seen, &w.holds) {
                    (Some(e), _) => message_check(world, e, line),
                    (_, Some(e)) => state_check(world, self.s, e, line),
                    _ => Check { line, what: "wait_for".into(), ok: false, detail: "nothing to wait for".into() },
                };
                let ok = advance(&mut self.world, &mut self.flows, limit, |world| held(world).ok);
                let last = held(&self.world);
                let waited = self.world.now().saturating_since(started).as_millis();
                let detail = if ok {
                    format!("held after {waited} ms: {}", last.detail)
                } else {
                    format!("not within {}: {}", w.timeout.value, last.detail)
                };
                check(format!("wait for {}", last.what), ok, detail)
            }
            Step::ExpectFlow(e) => {
                let key = self.flow_key(&e.flow.value)?;
                let cn = self.s.flows.get(&e.flow.value)?.value.cn.value.clone();
                let mut good = 0;
                let mut last = String::new();
                for _ in 0..e.packets.max(1) {
                    let path = self.world.downlink(&cn, key);
                    let hit = match (&e.arrives_on, e.dropped) {
                        (_, true) => path.delivered_on.is_none(),
                        (Some(want), false) => {
                            path.delivered_on.as_ref().map(|(m, i)| format!("{m}/{i}")).as_deref()
                                == Some(want.value.as_str())
                        }
                        (None, false) => false,
                    };
                    if hit {
                        good += 1;
                    }
                    last = match (&path.delivered_on, &path.dropped) {
                        (Some((m, i)), _) => {
                            format!("arrived on {m}/{i} via {}", path.hops.join(" > "))
                        }
                        (None, Some(why)) => format!("dropped: {why}"),
                        _ => "lost".into(),
                    };
                }
                let lost = e.packets.max(1) - good;
                let what = match &e.arrives_on {
                    Some(i) if !e.dropped => {
                        format!("flow {} arrives on {}", e.flow.value, i.value)
                    }
                    _ => format!("flow {} is dropped", e.flow.value),
                };
                check(
                    what,
                    lost <= e.max_lost,
                    format!("{good} of {} as expected; last packet {last}", e.packets.max(1)),
                )
            }
            Step::ExpectUplink(e) => {
                let key = self.flow_key(&e.flow.value)?;
                let mn = self.s.flows.get(&e.flow.value)?.value.mn.value.clone();
                let path = self.world.uplink(&mn, key.reversed());
                let got = path.delivered_on.as_ref().map(|(m, i)| format!("{m}/{i}"));
                let detail = match (&got, &path.dropped) {
                    (Some(g), _) => format!("left on {g} via {}", path.hops.join(" > ")),
                    (None, Some(why)) => format!("dropped: {why}"),
                    _ => "lost".into(),
                };
                check(
                    format!("uplink of {} leaves on {}", e.flow.value, e.leaves_on.value),
                    got.as_deref() == Some(e.leaves_on.value.as_str()),
                    detail,
                )
            }
            Step::ExpectState(e) => Some(state_check(&self.world, self.s, e, line)),
            Step::Snapshot(_) => None,
        }
    }

    /// Puts a fresh LMA or MAG, built from the scenario as at the start,
    /// where a killed one was.
    fn restart(&mut self, node: &str) -> Option<()> {
        let addr = |n: &str| self.plan.of.get(n).copied();
        let (lma_name, _) = self.s.nodes.iter().find(|(_, n)| n.value.role == Role::Lma)?;
        let lma_addr = addr(lma_name)?;
        match self.s.nodes.get(node)?.value.role {
            Role::Lma => {
                let mut lma = Lma::new(crate::node_config::lma(self.s, &self.plan, lma_addr));
                for p in crate::node_config::mn_policies(self.s) {
                    lma.add_policy(p);
                }
                self.world.add_lma(node, lma);
            }
            Role::Mag => {
                let mag = Mag::new(crate::node_config::mag(self.s, node, addr(node)?, lma_addr));
                self.world.add_mag(node, mag);
            }
            _ => return None,
        }
        Some(())
    }

    fn fid_of(&self, flow: &str) -> Option<u16> {
        self.s.steps.iter().find_map(|st| match &st.value {
            Step::Bind(b) if b.flow.value == flow => Some(b.fid),
            _ => None,
        })
    }

    /// The state tables of one node as JSON.
    pub fn node_state(&self, node: &str) -> serde_json::Value {
        node_state(&self.world, self.s, node)
    }

    pub fn verdict_for(checks: &[Check]) -> Verdict {
        if checks.iter().all(|c| c.ok) {
            Verdict::Pass
        } else {
            Verdict::Fail
        }
    }
}

/// The state tables of one node of `world` as JSON.
fn node_state(world: &World, s: &Scenario, node: &str) -> serde_json::Value {
    let st = world.state();
    let v = match s.nodes.get(node).map(|n| n.value.role) {
        Some(Role::Lma) => serde_json::to_value(st.lma),
        Some(Role::Mag) => serde_json::to_value(st.mags.get(node)),
        Some(Role::Mn) => serde_json::to_value(st.mns.get(node)),
        _ => Ok(serde_json::Value::Null),
    };
    v.unwrap_or(serde_json::Value::Null)
}

/// Whether the messages `e` names were delivered (not dropped) so far.
fn message_check(world: &World, e: &ExpectMessage, line: u64) -> Check {
    let name = e.message.value.to_ascii_uppercase();
    let seen = world
        .messages
        .iter()
        .filter(|m| !m.dropped)
        .filter(|m| m.summary.split(' ').next() == Some(name.as_str()))
        .filter(|m| e.from.as_ref().is_none_or(|f| f.value == m.from))
        .filter(|m| e.to.as_ref().is_none_or(|t| t.value == m.to))
        .filter(|m| e.with.iter().all(|w| m.summary.split(' ').any(|tok| tok == w)))
        .count();
    let what = format!(
        "{name}{}{}{}",
        e.from.as_ref().map(|f| format!(" from {}", f.value)).unwrap_or_default(),
        e.to.as_ref().map(|t| format!(" to {}", t.value)).unwrap_or_default(),
        if e.with.is_empty() { String::new() } else { format!(" with {}", e.with.join(" ")) }
    );
    let ok = match e.count {
        Some(n) => seen == n,
        None => seen > 0,
    };
    let want = e.count.map(|n| format!("{n}")).unwrap_or_else(|| "at least 1".into());
    Check { line, what: format!("message {what}"), ok, detail: format!("expected {want}, saw {seen}") }
}

/// Whether a node's state tables hold what `e` says.
fn state_check(world: &World, s: &Scenario, e: &ExpectState, line: u64) -> Check {
    let state = node_state(world, s, &e.node.value);
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
    let want =
        e.equals.as_ref().map(|v| format!("= {v}")).or(e.len.map(|n| format!("has {n} entries"))).unwrap_or_default();
    Check { line, what: format!("{} {} {want}", e.node.value, e.path), ok, detail }
}
