//! The virtual backend: the in-memory `World` of `pmip-proto`, the same
//! protocol core the daemons run, in virtual time. It carries out what the
//! engine asks and reports what the World saw; the steps' meaning and
//! every check are the engine's.

use std::collections::BTreeMap;
use std::net::Ipv6Addr;
use std::path::Path;

use pmip_proto::fault::FaultRule;
use pmip_proto::lma::{Lma, LmaCommand};
use pmip_proto::mag::Mag;
use pmip_proto::mn::Mn;
use pmip_proto::world::{LinkProps, World};
use pmip_proto::Span;
use pmip_wire::Message;

use crate::engine::{Attachment, Backend, DownlinkProbe, FlowRun, Observe, Observed, UplinkProbe};
use crate::forwarding::KernelSection;
use crate::plan::{self, AddressPlan};
use crate::report::ScenarioReport;
use crate::running_flows::{advance, FlowAccount, Running};
use crate::scenario::*;

pub use crate::plan::VIRTUAL_FEATURES as FEATURES;

pub struct VirtualLab<'a> {
    pub s: &'a Scenario,
    pub world: World,
    plan: AddressPlan,
    flows: BTreeMap<String, Running>,
    /// How many times each LMA and MAG has started: its Restart Counter
    /// (RFC 5847 §3.2), as the daemons keep it in a file.
    starts: BTreeMap<String, u32>,
}

/// What the engine reads of a World.
struct View<'w> {
    world: &'w World,
    s: &'w Scenario,
}

fn observed(world: &World) -> Vec<Observed> {
    world
        .messages
        .iter()
        .map(|m| Observed {
            at_ms: m.at_ms,
            from: m.from.clone(),
            to: m.to.clone(),
            summary: m.summary.clone(),
            on_wire: m.on_wire,
            delivered: !m.dropped,
        })
        .collect()
}

/// The state tables of one node of `world` as JSON.
fn node_tables(world: &World, s: &Scenario, node: &str) -> Result<serde_json::Value, String> {
    let st = world.state();
    let v = match s.nodes.get(node).map(|n| n.value.role) {
        Some(Role::Lma) if plan::lma_name(s) == Some(node) => serde_json::to_value(st.lma),
        Some(Role::Lma) => serde_json::to_value(st.other_lmas.get(node)),
        Some(Role::Mag) => serde_json::to_value(st.mags.get(node)),
        Some(Role::Mn) => serde_json::to_value(st.mns.get(node)),
        Some(Role::Cn) => return Err(format!("{node} is a CN, which keeps no tables")),
        None => return Err(format!("the scenario has no node {node}")),
    };
    v.map_err(|e| e.to_string())
}

impl Observe for View<'_> {
    fn messages(&mut self) -> Vec<Observed> {
        observed(self.world)
    }
    fn tables(&mut self, node: &str) -> Result<serde_json::Value, String> {
        node_tables(self.world, self.s, node)
    }
    fn quiet(&mut self) -> bool {
        self.world.on_the_wire() == 0
    }
}

impl<'a> VirtualLab<'a> {
    pub fn build(s: &'a Scenario) -> Result<Self, String> {
        let plan = plan::address_plan(s);
        let addr = |n: &str| plan.of.get(n).copied().ok_or_else(|| format!("node {n} has no address"));
        let lma_name = plan::lma_name(s).ok_or("the scenario has no LMA")?;
        let lma_of = |n: &str| plan::lma_of(s, n).ok_or_else(|| "the scenario has no LMA".to_string()).and_then(addr);
        let mut world = World::new();
        world.wire = s.wire.config();
        for (name, n) in &s.nodes {
            match n.value.role {
                Role::Mn => {
                    let config = crate::node_config::mn(s, &plan, name).ok_or("no such MN")?;
                    world.add_mn(name, Mn::new(config));
                }
                Role::Mag => {
                    let mut c = crate::node_config::mag(s, &plan, name, addr(name)?, lma_of(name)?);
                    c.restart_counter = 1;
                    world.add_mag(name, Mag::new(c))
                }
                Role::Cn => world.add_cn(name, addr(name)?),
                Role::Lma if name == lma_name => world.add_lma(name, Self::lma(s, &plan, name, 1)?),
                Role::Lma => world.add_other_lma(name, Self::lma(s, &plan, name, 1)?),
            }
        }
        let starts = s
            .nodes
            .iter()
            .filter(|(_, n)| matches!(n.value.role, Role::Lma | Role::Mag))
            .map(|(name, _)| (name.clone(), 1))
            .collect();
        Ok(VirtualLab { s, world, plan, flows: BTreeMap::new(), starts })
    }

    /// The LMA named `name`, with its configuration and policy store.
    fn lma(s: &Scenario, plan: &AddressPlan, name: &str, restart_counter: u32) -> Result<Lma, String> {
        let address = plan.of.get(name).copied().ok_or_else(|| format!("node {name} has no address"))?;
        let mut cfg = crate::node_config::lma(s, plan, address);
        cfg.restart_counter = restart_counter;
        let mut lma = Lma::new(cfg);
        for p in crate::node_config::mn_policies(s, plan, name) {
            lma.add_policy(p);
        }
        Ok(lma)
    }

    fn run_key(run: &FlowRun) -> String {
        format!("{} {}", run.flow, run.direction.name())
    }
}

impl Observe for VirtualLab<'_> {
    fn messages(&mut self) -> Vec<Observed> {
        observed(&self.world)
    }
    fn tables(&mut self, node: &str) -> Result<serde_json::Value, String> {
        node_tables(&self.world, self.s, node)
    }
    fn quiet(&mut self) -> bool {
        self.world.on_the_wire() == 0
    }
}

impl crate::engine::Capabilities for VirtualLab<'_> {
    fn features(&self) -> &'static [&'static str] {
        &FEATURES
    }
    fn cannot_play(&self, _: &Step, _: u64) -> Option<String> {
        None
    }
}

impl Backend for VirtualLab<'_> {
    fn name(&self) -> &'static str {
        "virtual"
    }
    fn elapsed_ms(&mut self) -> u64 {
        self.world.now().as_millis()
    }

    fn attach(&mut self, a: &Attachment) -> Result<(), String> {
        self.world.attach(&a.mn, &a.iface, &a.mag, &a.port, a.att, a.hi, a.prefixes.clone());
        Ok(())
    }

    fn carve(&mut self, mn: &str, iface: &str, service: &str) -> Result<(), String> {
        self.world.two_level_carve(mn, iface, service)
    }

    fn flow_handover(&mut self, mn: &str, iface: &str, prefixes: &[pmip_proto::Prefix]) -> Result<(), String> {
        self.world.two_level_move(mn, iface, prefixes)
    }

    fn detach(&mut self, mn: &str, iface: &str) -> Result<(), String> {
        self.world.detach(mn, iface);
        Ok(())
    }

    fn lma_command(&mut self, c: LmaCommand) -> Result<(), String> {
        self.world.command(c)
    }

    fn timestamp_now(&mut self) -> u64 {
        use pmip_proto::signalling::{timestamp_at, timestamp_micros};
        timestamp_micros(timestamp_at(self.world.now(), 0))
    }

    fn inject(&mut self, from: &str, to: Ipv6Addr, message: Message) -> Result<(), String> {
        if self.world.inject(from, to, message) {
            Ok(())
        } else {
            Err(format!("{from} has no address to send from"))
        }
    }

    fn spoof(&mut self, link: &plan::SpoofLink, src: Ipv6Addr, dst: Ipv6Addr, message: Message) -> Result<(), String> {
        // The World knows its own links: it checks that the sender has one
        // to the receiver, and delivers the message on it.
        self.world.spoof(&link.from, src, dst, message)
    }

    fn add_fault(&mut self, rule: FaultRule) -> Result<(), String> {
        self.world.add_fault(rule);
        Ok(())
    }

    fn set_link(&mut self, a: &str, b: &str, latency_ms: u64, loss_per_mille: u16) -> Result<(), String> {
        self.world.set_link(a, b, LinkProps { latency: Span::from_millis(latency_ms), loss_per_mille });
        Ok(())
    }

    fn kill(&mut self, node: &str) -> Result<(), String> {
        if self.world.kill(node) {
            Ok(())
        } else {
            Err(format!("no LMA or MAG named {node} runs"))
        }
    }

    fn restart(&mut self, node: &str) -> Result<(), String> {
        let count = self.starts.entry(node.to_string()).or_insert(0);
        *count += 1;
        let count = *count;
        match self.s.nodes.get(node).map(|n| n.value.role) {
            Some(Role::Lma) if plan::lma_name(self.s) == Some(node) => {
                self.world.add_lma(node, Self::lma(self.s, &self.plan, node, count)?)
            }
            Some(Role::Lma) => self.world.add_other_lma(node, Self::lma(self.s, &self.plan, node, count)?),
            Some(Role::Mag) => {
                let addr = *self.plan.of.get(node).ok_or("the MAG has no address")?;
                let lma_addr =
                    plan::lma_of(self.s, node).and_then(|n| self.plan.of.get(n)).copied().ok_or("no LMA address")?;
                let mut c = crate::node_config::mag(self.s, &self.plan, node, addr, lma_addr);
                c.restart_counter = count;
                self.world.add_mag(node, Mag::new(c));
            }
            _ => return Err(format!("only the LMA or a MAG can restart, not {node}")),
        }
        Ok(())
    }

    fn start_flow(&mut self, run: &FlowRun) -> Result<(), String> {
        let uplink_from = (run.direction == Direction::Uplink).then(|| run.mn.clone());
        let interval = Span(1_000_000 / u64::from(run.rate_pps.max(1)));
        let now = self.world.now();
        let running = Running {
            cn: run.cn.clone(),
            uplink_from,
            key: run.key,
            interval,
            next_at: now,
            account: FlowAccount::default(),
        };
        self.flows.insert(Self::run_key(run), running);
        Ok(())
    }

    fn stop_flow(&mut self, run: &FlowRun) -> Result<FlowAccount, String> {
        // In virtual time a packet arrives when it is sent: nothing is in flight.
        self.flows
            .remove(&Self::run_key(run))
            .map(|r| r.account)
            .ok_or_else(|| format!("flow {} is not running", run.flow))
    }

    fn probe_downlink(&mut self, run: &FlowRun, packets: u32, _: bool) -> Result<DownlinkProbe, String> {
        let mut probe = DownlinkProbe { sent: packets, ..Default::default() };
        let mut account = FlowAccount::default();
        for _ in 0..packets {
            let path = self.world.downlink(&run.cn, run.key);
            probe.trace = match (&path.delivered_on, &path.dropped) {
                (Some((m, i)), _) => {
                    account.arrived(&format!("{m}/{i}"));
                    format!("last packet arrived on {m}/{i} via {}", path.hops.join(" > "))
                }
                (None, Some(why)) => format!("last packet dropped: {why}"),
                _ => "last packet lost".into(),
            };
        }
        probe.by_interface = account.by_interface;
        Ok(probe)
    }

    fn probe_uplink(&mut self, run: &FlowRun) -> Result<UplinkProbe, String> {
        let path = self.world.uplink(&run.mn, run.key.reversed());
        let trace = match (&path.delivered_on, &path.dropped) {
            (Some(_), _) => format!("via {}", path.hops.join(" > ")),
            (None, Some(why)) => format!("dropped: {why}"),
            _ => "lost".into(),
        };
        let left_on: Vec<String> = path.delivered_on.iter().map(|(m, i)| format!("{m}/{i}")).collect();
        Ok(UplinkProbe { reached_cn: !left_on.is_empty(), left_on, trace })
    }

    fn wait(&mut self, limit: Span, until: &mut dyn FnMut(&mut dyn Observe) -> bool) -> bool {
        let s = self.s;
        advance(&mut self.world, &mut self.flows, limit, |world| until(&mut View { world, s }))
    }

    fn kernel(&mut self, node: &str) -> Result<KernelSection, String> {
        let (_, mags, mns) = self.world.planes();
        Ok(match self.s.nodes.get(node).map(|n| n.value.role) {
            Some(Role::Lma) => self.world.lma_plane_of(node).map(KernelSection::of_lma).unwrap_or_default(),
            Some(Role::Mag) => mags.get(node).map(KernelSection::of_mag).unwrap_or_default(),
            Some(Role::Mn) => mns.get(node).map(KernelSection::of_mn).unwrap_or_default(),
            _ => KernelSection::default(),
        })
    }

    fn implied_kernel(&mut self, _: &str) -> Option<KernelSection> {
        // The model's forwarding is built from its own tables' intents:
        // there is no second source to hold it against.
        None
    }

    fn finish(&mut self, _: Option<&Path>, report: &mut ScenarioReport) {
        report.events = self.world.events.iter().map(|e| format!("{}ms {}: {}", e.at_ms, e.node, e.text)).collect();
    }
}
