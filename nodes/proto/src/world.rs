//! A deterministic in-memory world: an LMA, MAGs, MNs and CNs wired
//! together in virtual time with per-link latency, loss and message faults.
//! Every message goes through the wire codec on its way, and the data
//! plane is built only from the intents the roles emit, so a run checks
//! the codec, the protocol and the intents together.

use std::cmp::Reverse;
use std::collections::{BTreeMap, BTreeSet, BinaryHeap};
use std::net::Ipv6Addr;

use pmip_wire::{AccessTechnologyType, Endpoints, HandoffIndicator, Message, WireConfig};
use serde::Serialize;

use crate::dataplane::{LmaPlane, MagPlane};
use crate::fault::{FaultAction, FaultRule};
use crate::flow::FlowKey;
use crate::ingress::{self, Side};
use crate::lma::{Lma, LmaCommand, LmaInput, LmaState};
use crate::mag::{Mag, MagInput, MagState};
use crate::mn::{Mn, MnInput, MnState};
use crate::output::{FlowTarget, Intent, Output};
use crate::prefix::Prefix;
use crate::time::{Instant, Span};

/// Deterministic link-layer identifier of an MN interface (a locally
/// administered MAC), so that topologies and snapshots are stable.
pub fn mac_for(mn: &str, iface: &str) -> Vec<u8> {
    let mut h: u32 = 0x811c_9dc5;
    for b in mn.bytes().chain([b'/']).chain(iface.bytes()) {
        h ^= u32::from(b);
        h = h.wrapping_mul(0x0100_0193);
    }
    let b = h.to_be_bytes();
    vec![0x02, 0x00, b[0], b[1], b[2], b[3]]
}

/// Latency and loss of the path between two named nodes (both directions).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct LinkProps {
    pub latency: Span,
    /// Share of signalling messages lost, in parts per thousand, drawn from
    /// the world's seeded generator so that a run is repeatable.
    pub loss_per_mille: u16,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct MessageRecord {
    pub at_ms: u64,
    pub from: String,
    pub to: String,
    pub summary: String,
    /// Not taken in by its receiver: dropped by a fault or lost on the link.
    pub dropped: bool,
    /// It crossed the link, where a capture would have seen it: false only
    /// for a message a fault dropped at its sender.
    pub on_wire: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct EventRecord {
    pub at_ms: u64,
    pub node: String,
    pub text: String,
}

/// What happened to one data packet.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PacketPath {
    pub hops: Vec<String>,
    /// `(mn, interface)` for downlink that arrived, `None` otherwise.
    pub delivered_on: Option<(String, String)>,
    pub dropped: Option<String>,
}

impl PacketPath {
    fn drop(mut self, why: impl Into<String>) -> Self {
        self.dropped = Some(why.into());
        self
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct WorldState {
    pub lma: Option<LmaState>,
    /// The LMAs besides the first (153 needs a second LMA), by name.
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub other_lmas: BTreeMap<String, LmaState>,
    pub mags: BTreeMap<String, MagState>,
    pub mns: BTreeMap<String, MnState>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Delivery {
    /// A message arriving; `hold` keeps it at the receiver until the next
    /// one to that node has been handled (a reorder fault there).
    Message {
        to: String,
        src: Ipv6Addr,
        dst: Ipv6Addr,
        bytes: Vec<u8>,
        hold: bool,
        /// The side of the receiver it arrives on: the core for what the
        /// LMA and the MAGs send each other, another link for a message a
        /// CN or an MN sends with a forged source ([`World::spoof`]).
        side: Side,
    },
    /// A message a delay fault at its sender kept back, now leaving.
    Send(Outgoing),
    Ra {
        mn: String,
        iface: String,
        prefixes: Vec<Prefix>,
    },
}

/// A message on its way out of a node, encoded.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Outgoing {
    from: String,
    to: String,
    src: Ipv6Addr,
    dst: Ipv6Addr,
    summary: String,
    bytes: Vec<u8>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct Scheduled {
    at: Instant,
    order: u64,
    what: Delivery,
    /// Kept back by a delay fault rather than crossing a link.
    held: bool,
}

impl Ord for Scheduled {
    fn cmp(&self, o: &Self) -> std::cmp::Ordering {
        (self.at, self.order).cmp(&(o.at, o.order))
    }
}
impl PartialOrd for Scheduled {
    fn partial_cmp(&self, o: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(o))
    }
}

pub struct World {
    now: Instant,
    pub latency: Span,
    pub wire: WireConfig,
    lma: Option<(String, Lma)>,
    /// LMAs besides the first, each with its data plane. They answer the
    /// MAGs that send them PBUs; the CNs are behind the first LMA, and
    /// flow commands go to it.
    other_lmas: BTreeMap<String, (Lma, LmaPlane)>,
    mags: BTreeMap<String, Mag>,
    mns: BTreeMap<String, Mn>,
    cns: BTreeMap<String, Ipv6Addr>,
    names: BTreeMap<Ipv6Addr, String>,
    /// (mag, mag iface) → (mn, mn iface) for attached access links.
    links: BTreeMap<(String, String), (String, String)>,
    queue: BinaryHeap<Reverse<Scheduled>>,
    order: u64,
    faults: Vec<FaultRule>,
    /// Per sender, the message a reorder fault holds until its next one.
    held_out: BTreeMap<String, Outgoing>,
    /// Per receiver, the message a reorder fault holds until its next one.
    held_in: BTreeMap<String, (Ipv6Addr, Ipv6Addr, Vec<u8>, Side)>,
    link_props: BTreeMap<(String, String), LinkProps>,
    rng: u64,
    lma_plane: LmaPlane,
    mag_planes: BTreeMap<String, MagPlane>,
    mn_planes: BTreeMap<String, BTreeSet<Ipv6Addr>>,
    pub messages: Vec<MessageRecord>,
    pub events: Vec<EventRecord>,
}

impl Default for World {
    fn default() -> Self {
        Self::new()
    }
}

impl World {
    pub fn new() -> Self {
        World {
            now: Instant::ZERO,
            latency: Span::from_millis(1),
            wire: WireConfig::default(),
            lma: None,
            other_lmas: BTreeMap::new(),
            mags: BTreeMap::new(),
            mns: BTreeMap::new(),
            cns: BTreeMap::new(),
            names: BTreeMap::new(),
            links: BTreeMap::new(),
            queue: BinaryHeap::new(),
            order: 0,
            faults: Vec::new(),
            held_out: BTreeMap::new(),
            held_in: BTreeMap::new(),
            link_props: BTreeMap::new(),
            rng: 0x9e37_79b9_7f4a_7c15,
            lma_plane: LmaPlane::default(),
            mag_planes: BTreeMap::new(),
            mn_planes: BTreeMap::new(),
            messages: Vec::new(),
            events: Vec::new(),
        }
    }

    pub fn now(&self) -> Instant {
        self.now
    }

    /// Messages and RAs still on their way.
    pub fn in_flight(&self) -> usize {
        self.queue.len()
    }

    /// Messages and RAs crossing a link now, leaving out those a delay
    /// fault keeps back: what a capture of every link would still see come.
    pub fn on_the_wire(&self) -> usize {
        self.queue.iter().filter(|s| !s.0.held).count()
    }

    /// The forwarding the intents built so far: the LMA's, each MAG's, and
    /// the addresses on each MN's logical interface.
    pub fn planes(&self) -> (&LmaPlane, &BTreeMap<String, MagPlane>, &BTreeMap<String, BTreeSet<Ipv6Addr>>) {
        (&self.lma_plane, &self.mag_planes, &self.mn_planes)
    }

    pub fn add_lma(&mut self, name: &str, lma: Lma) {
        self.names.insert(lma.config.address, name.into());
        self.lma = Some((name.into(), lma));
    }
    /// Adds an LMA besides the first one (or restarts it after a kill).
    pub fn add_other_lma(&mut self, name: &str, lma: Lma) {
        self.names.insert(lma.config.address, name.into());
        self.other_lmas.insert(name.into(), (lma, LmaPlane::default()));
    }
    pub fn add_mag(&mut self, name: &str, mag: Mag) {
        self.names.insert(mag.config.address, name.into());
        self.mags.insert(name.into(), mag);
    }
    /// Sends `message` from node `from` to `dst` as that node sends its
    /// own: a conformance test's crafted message. False when `from` has no
    /// address.
    pub fn inject(&mut self, from: &str, dst: Ipv6Addr, message: Message) -> bool {
        let Some(src) = self.names.iter().find(|(_, n)| *n == from).map(|(a, _)| *a) else {
            return false;
        };
        let mut out = Output::default();
        out.transmits.push(crate::output::Transmit { src, dst, message });
        self.apply(from, out);
        true
    }

    /// Sends `message` from node `from` (a CN or an MN) with the forged
    /// source `src` to `dst`, over the one link between them: a CN's link
    /// to the LMA its CNs are behind, or an MN's access link to a MAG it is
    /// attached to. It bypasses every fault rule, as a frame an attacker
    /// puts on a link does, and arrives on that link, not on the
    /// receiver's signalling side: the receiver's ingress rule
    /// ([`ingress::check`]) decides. The record names `from` as the sender
    /// and says whose source it carried.
    pub fn spoof(&mut self, from: &str, src: Ipv6Addr, dst: Ipv6Addr, message: Message) -> Result<(), String> {
        let to = self.names.get(&dst).cloned().ok_or_else(|| format!("no node has the address {dst}"))?;
        let first_lma = self.lma.as_ref().map(|(n, _)| n.as_str());
        let linked = if self.cns.contains_key(from) {
            first_lma == Some(to.as_str())
        } else if self.mns.contains_key(from) {
            self.links.iter().any(|((mag, _), (mn, _))| *mag == to && mn == from)
        } else {
            return Err(format!("{from} is not a CN or an MN: only they spoof"));
        };
        if !linked {
            return Err(format!("{from} has no link up to {to}: a spoofed message crosses one link"));
        }
        let message = self.wire.profile.outgoing(message);
        let bytes = message
            .to_bytes(&Endpoints { src, dst }, &self.wire)
            .map_err(|e| format!("could not encode the {}: {e}", message.name()))?;
        let forged = self.names.get(&src).cloned().unwrap_or_else(|| src.to_string());
        let summary = format!("{} src={forged}", message.summary());
        let o = Outgoing { from: from.into(), to: to.clone(), src, dst, summary, bytes };
        self.record(&o, false, true);
        let at = self.now + self.link(from, &to).latency;
        let what = Delivery::Message { to, src, dst, bytes: o.bytes, hold: false, side: Side::Other };
        self.schedule(at, what);
        Ok(())
    }

    /// Takes an LMA or a MAG away as a crash would: its state and its data
    /// plane go, messages to it are lost, and an `add_lma`/`add_mag` of a
    /// fresh role is its restart. False when no such node runs.
    pub fn kill(&mut self, name: &str) -> bool {
        if self.lma.as_ref().is_some_and(|(n, _)| n == name) {
            self.lma = None;
            self.lma_plane = LmaPlane::default();
        } else if self.other_lmas.remove(name).is_some() {
            // Its data plane went with it.
        } else if self.mags.remove(name).is_some() {
            self.mag_planes.remove(name);
        } else {
            return false;
        }
        self.held_out.remove(name);
        self.held_in.remove(name);
        self.event(name, "killed".into());
        true
    }

    pub fn add_mn(&mut self, name: &str, mn: Mn) {
        self.mns.insert(name.into(), mn);
    }
    pub fn add_cn(&mut self, name: &str, addr: Ipv6Addr) {
        self.cns.insert(name.into(), addr);
    }

    pub fn lma(&self) -> Option<&Lma> {
        self.lma.as_ref().map(|(_, l)| l)
    }
    pub fn lma_mut(&mut self) -> Option<&mut Lma> {
        self.lma.as_mut().map(|(_, l)| l)
    }
    /// Any LMA by name, the first or another.
    pub fn lma_named(&self, name: &str) -> Option<&Lma> {
        match &self.lma {
            Some((n, l)) if n == name => Some(l),
            _ => self.other_lmas.get(name).map(|(l, _)| l),
        }
    }
    /// The data plane of any LMA by name; an LMA that is not running has
    /// none.
    pub fn lma_plane_of(&self, name: &str) -> Option<&LmaPlane> {
        match &self.lma {
            Some((n, _)) if n == name => Some(&self.lma_plane),
            _ => self.other_lmas.get(name).map(|(_, p)| p),
        }
    }
    pub fn mag(&self, name: &str) -> Option<&Mag> {
        self.mags.get(name)
    }
    pub fn mn(&self, name: &str) -> Option<&Mn> {
        self.mns.get(name)
    }

    pub fn add_fault(&mut self, rule: FaultRule) {
        self.faults.push(rule);
    }

    /// Sets latency and loss between two nodes, overriding `latency`.
    pub fn set_link(&mut self, a: &str, b: &str, props: LinkProps) {
        let key = if a <= b { (a.to_string(), b.to_string()) } else { (b.to_string(), a.to_string()) };
        self.link_props.insert(key, props);
    }

    /// Reseeds the generator behind link loss.
    pub fn seed_loss(&mut self, seed: u64) {
        self.rng = seed.max(1);
    }

    fn link(&self, a: &str, b: &str) -> LinkProps {
        let key = if a <= b { (a.to_string(), b.to_string()) } else { (b.to_string(), a.to_string()) };
        self.link_props.get(&key).copied().unwrap_or(LinkProps { latency: self.latency, loss_per_mille: 0 })
    }

    fn draw_per_mille(&mut self) -> u16 {
        crate::fault::draw_per_mille(&mut self.rng)
    }

    /// An MN interface comes up on a MAG's access link.
    #[allow(clippy::too_many_arguments)]
    pub fn attach(
        &mut self,
        mn: &str,
        mn_iface: &str,
        mag: &str,
        mag_iface: &str,
        att: AccessTechnologyType,
        handoff: Option<HandoffIndicator>,
        prefixes: Vec<Prefix>,
    ) {
        self.links.insert((mag.into(), mag_iface.into()), (mn.into(), mn_iface.into()));
        self.feed_mn(mn, MnInput::LinkUp { iface: mn_iface.into() });
        let input = MagInput::Attach { iface: mag_iface.into(), ll_id: mac_for(mn, mn_iface), att, handoff, prefixes };
        self.feed_mag(mag, input);
    }

    /// Turns the 2-level prefix model on (draft-park-...-2level-prefix-01):
    /// the LMA distributes a level-1 temporal prefix to every MAG before
    /// any session, and every MAG learns them all.
    pub fn enable_two_level(&mut self, config: crate::two_level::TwoLevelConfig, mns: &[String]) -> Result<(), String> {
        let mags: Vec<Ipv6Addr> = self.mags.values().map(|m| m.config.address).collect();
        let (_, lma) = self.lma.as_mut().ok_or("there is no LMA for the 2-level model")?;
        let all = lma.enable_two_level(config.clone(), &mags)?;
        for m in self.mags.values_mut() {
            m.enable_two_level(config.clone(), &all, mns.iter().cloned());
        }
        Ok(())
    }

    /// The MAG an MN interface is attached to, by name.
    fn mag_of(&self, mn: &str, mn_iface: &str) -> Option<String> {
        self.links.iter().find(|(_, v)| v.0 == mn && v.1 == mn_iface).map(|(k, _)| k.0.clone())
    }

    /// 2-level model: the MAG of `mn/mn_iface` carves a level-2 prefix for
    /// a service and registers it with the LMA.
    pub fn two_level_carve(&mut self, mn: &str, mn_iface: &str, service: &str) -> Result<(), String> {
        let mag = self.mag_of(mn, mn_iface).ok_or_else(|| format!("{mn}/{mn_iface} is not attached"))?;
        let now = self.now;
        let m = self.mags.get_mut(&mag).ok_or_else(|| format!("no MAG named {mag}"))?;
        let out = m.two_level_carve(now, &mac_for(mn, mn_iface), service);
        let refused = out.refused().map(str::to_string);
        self.apply(&mag, out);
        refused.map_or(Ok(()), Err)
    }

    /// 2-level model: a flow handover (PFHO with level-2 prefixes, FFHO
    /// with a level-1 temporal prefix, or the reverse of either) to the MAG
    /// of `mn/to_iface`, which sends the PBU with HI 5; every other MAG is
    /// given the L2 hint that those flows left it (draft §5.1.2).
    pub fn two_level_move(&mut self, mn: &str, to_iface: &str, prefixes: &[Prefix]) -> Result<(), String> {
        let mag = self.mag_of(mn, to_iface).ok_or_else(|| format!("{mn}/{to_iface} is not attached"))?;
        let ll = mac_for(mn, to_iface);
        let now = self.now;
        let m = self.mags.get_mut(&mag).ok_or_else(|| format!("no MAG named {mag}"))?;
        let mn_id = m.mn_id_for(&ll).ok_or_else(|| format!("{mn}/{to_iface} is not in {mag}'s policy store"))?;
        let out = m.two_level_take(&ll, prefixes);
        let refused = out.refused().map(str::to_string);
        self.apply(&mag, out);
        if let Some(r) = refused {
            return Err(r);
        }
        let others: Vec<String> = self.mags.keys().filter(|k| **k != mag).cloned().collect();
        for other in others {
            if let Some(m) = self.mags.get_mut(&other) {
                let out = m.two_level_hint(now, &mn_id, prefixes);
                self.apply(&other, out);
            }
        }
        Ok(())
    }

    /// An MN interface goes down.
    pub fn detach(&mut self, mn: &str, mn_iface: &str) {
        let link = self.links.iter().find(|(_, v)| v.0 == mn && v.1 == mn_iface).map(|(k, _)| k.clone());
        self.feed_mn(mn, MnInput::LinkDown { iface: mn_iface.into() });
        if let Some((mag, iface)) = link {
            self.links.remove(&(mag.clone(), iface.clone()));
            self.feed_mag(&mag, MagInput::Detach { iface });
        }
    }

    /// Hands a command to the LMA; `Err` says why the LMA refused it, or
    /// that there is no LMA.
    pub fn command(&mut self, c: LmaCommand) -> Result<(), String> {
        let now = self.now;
        let Some((name, lma)) = self.lma.as_mut() else {
            return Err("there is no LMA to take the command".into());
        };
        let name = name.clone();
        let out = lma.handle(now, LmaInput::Command(c));
        let refused = out.refused().map(str::to_string);
        self.apply(&name, out);
        refused.map_or(Ok(()), Err)
    }

    fn feed_mag(&mut self, name: &str, input: MagInput) {
        let now = self.now;
        if let Some(m) = self.mags.get_mut(name) {
            let out = m.handle(now, input);
            self.apply(name, out);
        } else {
            self.event(name, format!("no MAG named {name}"));
        }
    }

    fn feed_mn(&mut self, name: &str, input: MnInput) {
        let now = self.now;
        if let Some(m) = self.mns.get_mut(name) {
            let out = m.handle(now, input);
            self.apply(name, out);
        } else {
            self.event(name, format!("no MN named {name}"));
        }
    }

    fn event(&mut self, node: &str, text: String) {
        self.events.push(EventRecord { at_ms: self.now.as_millis(), node: node.into(), text });
    }

    fn schedule(&mut self, at: Instant, what: Delivery) {
        self.schedule_held(at, what, false);
    }

    fn schedule_held(&mut self, at: Instant, what: Delivery, held: bool) {
        self.order += 1;
        self.queue.push(Reverse(Scheduled { at, order: self.order, what, held }));
    }

    /// Takes a role's output: messages go on the wire (through the codec),
    /// intents go into the data plane, events into the log.
    fn apply(&mut self, node: &str, out: Output) {
        for e in out.events {
            self.event(node, e.to_string());
        }
        for mut t in out.transmits {
            // The profile frames the core's FMI/FMA (RFC 7864: UPN/UPA).
            t.message = self.wire.profile.outgoing(t.message);
            let to = self.names.get(&t.dst).cloned().unwrap_or_else(|| t.dst.to_string());
            let name = t.message.name();
            let bytes = match t.message.to_bytes(&Endpoints { src: t.src, dst: t.dst }, &self.wire) {
                Ok(b) => b,
                Err(e) => {
                    self.event(node, format!("could not encode {name}: {e}"));
                    continue;
                }
            };
            let sender_is_lma = self.lma.as_ref().is_some_and(|(n, _)| n == node) || self.other_lmas.contains_key(node);
            let fault = self.faults.iter_mut().find(|r| r.matches(name, node, &to)).map(|r| {
                r.count -= 1;
                (r.action, r.at_sender(sender_is_lma))
            });
            let o = Outgoing { from: node.into(), to, src: t.src, dst: t.dst, summary: t.message.summary(), bytes };
            match fault {
                None => {
                    self.send(o, Span::ZERO, false);
                    // A message a reorder fault held leaves right after.
                    if let Some(held) = self.held_out.remove(node) {
                        self.send(held, Span::ZERO, false);
                    }
                }
                Some((FaultAction::Drop, at_sender)) => self.record(&o, true, !at_sender),
                Some((FaultAction::Duplicate, at_sender)) => {
                    if at_sender {
                        self.send(o.clone(), Span::ZERO, false);
                        self.send(o, Span::ZERO, false);
                    } else {
                        self.send(o.clone(), Span::ZERO, false);
                        self.arrive(o, Span::ZERO, false);
                    }
                }
                Some((a @ FaultAction::Delay { .. }, true)) => {
                    let at = self.now + a.delay();
                    self.schedule_held(at, Delivery::Send(o), true);
                }
                Some((a @ FaultAction::Delay { .. }, false)) => self.send(o, a.delay(), false),
                Some((FaultAction::Reorder, true)) => {
                    if let Some(earlier) = self.held_out.insert(node.into(), o) {
                        self.send(earlier, Span::ZERO, false);
                    }
                }
                Some((FaultAction::Reorder, false)) => self.send(o, Span::ZERO, true),
            }
        }
        for i in out.intents {
            self.apply_intent(node, i);
        }
    }

    fn record(&mut self, o: &Outgoing, dropped: bool, on_wire: bool) {
        self.messages.push(MessageRecord {
            at_ms: self.now.as_millis(),
            from: o.from.clone(),
            to: o.to.clone(),
            summary: o.summary.clone(),
            dropped,
            on_wire,
        });
    }

    /// Puts a message on the wire now: the link may lose it; else it
    /// arrives after the link's latency and `extra` (a delay fault at the
    /// receiver).
    fn send(&mut self, o: Outgoing, extra: Span, hold: bool) {
        let props = self.link(&o.from, &o.to);
        let lost = props.loss_per_mille > 0 && self.draw_per_mille() < props.loss_per_mille;
        self.record(&o, lost, true);
        if !lost {
            self.arrive_held(o, Span(props.latency.0 + extra.0), hold, extra.0 > 0);
        }
    }

    /// Schedules the arrival of a message already on the wire.
    fn arrive(&mut self, o: Outgoing, after: Span, hold: bool) {
        self.arrive_held(o, after, hold, false);
    }

    /// [`arrive`](World::arrive); `held` when a delay fault at the
    /// receiver keeps it back.
    fn arrive_held(&mut self, o: Outgoing, after: Span, hold: bool, held: bool) {
        let at = self.now + after;
        let what = Delivery::Message { to: o.to, src: o.src, dst: o.dst, bytes: o.bytes, hold, side: Side::Signalling };
        self.schedule_held(at, what, held);
    }

    fn apply_intent(&mut self, node: &str, i: Intent) {
        match i {
            Intent::LmaTunnel { .. } | Intent::LmaPrefixRoute { .. } | Intent::LmaFlowBinding { .. } => {
                match self.other_lmas.get_mut(node) {
                    Some((_, plane)) => plane.apply(&i),
                    None => self.lma_plane.apply(&i),
                }
            }
            Intent::MagTunnel { .. } | Intent::MagRoute { .. } | Intent::MagUplinkRule { .. } => {
                self.mag_planes.entry(node.into()).or_default().apply(&i)
            }
            Intent::RouterAdvertisement { iface, prefixes } => {
                if let Some((mn, mn_iface)) = self.links.get(&(node.to_string(), iface)).cloned() {
                    let at = self.now + self.link(node, &mn).latency;
                    self.schedule(at, Delivery::Ra { mn, iface: mn_iface, prefixes });
                }
            }
            Intent::MnAddress { addr, up } => {
                let p = self.mn_planes.entry(node.into()).or_default();
                if up {
                    p.insert(addr);
                } else {
                    p.remove(&addr);
                }
            }
        }
    }

    fn deliver(&mut self, what: Delivery) {
        match what {
            Delivery::Ra { mn, iface, prefixes } => {
                // The link may have gone down while the RA was in flight.
                if self.links.values().any(|(m, i)| *m == mn && *i == iface) {
                    self.feed_mn(&mn, MnInput::RouterAdvertisement { iface, prefixes });
                }
            }
            Delivery::Send(o) => {
                let from = o.from.clone();
                self.send(o, Span::ZERO, false);
                if let Some(held) = self.held_out.remove(&from) {
                    self.send(held, Span::ZERO, false);
                }
            }
            Delivery::Message { to, src, dst, bytes, hold: true, side } => {
                if let Some((s, d, b, sd)) = self.held_in.insert(to.clone(), (src, dst, bytes, side)) {
                    self.receive(&to, s, d, b, sd);
                }
            }
            Delivery::Message { to, src, dst, bytes, hold: false, side } => {
                self.receive(&to, src, dst, bytes, side);
                // A message a reorder fault held here is handled right after.
                if let Some((s, d, b, sd)) = self.held_in.remove(&to) {
                    self.receive(&to, s, d, b, sd);
                }
            }
        }
    }

    /// Decodes a message that arrived at `to` and hands it to that role.
    fn receive(&mut self, to: &str, src: Ipv6Addr, dst: Ipv6Addr, bytes: Vec<u8>, side: Side) {
        let now = self.now;
        // The daemons' ingress rule, before the message is even decoded,
        // as a daemon checks the arrival interface first.
        let peer = self.mags.get(to).map(|m| m.config.lma);
        if let Err(r) = ingress::check(side, src, peer) {
            let on = match side {
                Side::Signalling => "its signalling side",
                Side::Other => "a link that is not its signalling side",
            };
            self.event(to, format!("refused ({r}): Mobility Header from {src} arrived on {on}"));
            return;
        }
        let message = match Message::parse(&bytes, &Endpoints { src, dst }, &self.wire) {
            Ok(m) => self.wire.profile.incoming(m),
            Err(e) => {
                self.event(to, format!("undecodable message from {src}: {e}"));
                return;
            }
        };
        if self.lma.as_ref().is_some_and(|(n, _)| n == to) {
            if let Some((name, lma)) = self.lma.as_mut() {
                let name = name.clone();
                let out = lma.handle(now, LmaInput::Message { src, dst, message });
                self.apply(&name, out);
            }
        } else if let Some((lma, _)) = self.other_lmas.get_mut(to) {
            let out = lma.handle(now, LmaInput::Message { src, dst, message });
            self.apply(to, out);
        } else if self.mags.contains_key(to) {
            self.feed_mag(to, MagInput::Message { src, dst, message });
        } else {
            self.event(to, format!("{} to {dst}: no node has that address", message.name()));
        }
    }

    fn next_timer(&self) -> Option<Instant> {
        let l = self.lma.as_ref().and_then(|(_, l)| l.next_timeout());
        let o = self.other_lmas.values().filter_map(|(l, _)| l.next_timeout()).min();
        let m = self.mags.values().filter_map(|m| m.next_timeout()).min();
        [l, o, m].into_iter().flatten().min()
    }

    /// Runs one step that is due no later than `limit`; false when none is.
    fn step(&mut self, limit: Instant) -> bool {
        let next_msg = self.queue.peek().map(|s| s.0.at);
        let next_timer = self.next_timer();
        let Some(t) = [next_msg, next_timer].into_iter().flatten().min() else {
            return false;
        };
        if t > limit {
            return false;
        }
        self.now = self.now.max(t);
        if next_msg == Some(t) {
            if let Some(Reverse(s)) = self.queue.pop() {
                self.deliver(s.what);
            }
            return true;
        }
        let now = self.now;
        if let Some((name, lma)) = self.lma.as_mut() {
            if lma.next_timeout().is_some_and(|x| x <= now) {
                let name = name.clone();
                let out = lma.handle(now, LmaInput::Timeout);
                self.apply(&name, out);
            }
        }
        let due: Vec<String> = self
            .other_lmas
            .iter()
            .filter(|(_, (l, _))| l.next_timeout().is_some_and(|x| x <= now))
            .map(|(n, _)| n.clone())
            .collect();
        for n in due {
            if let Some((lma, _)) = self.other_lmas.get_mut(&n) {
                let out = lma.handle(now, LmaInput::Timeout);
                self.apply(&n, out);
            }
        }
        let due: Vec<String> = self
            .mags
            .iter()
            .filter(|(_, m)| m.next_timeout().is_some_and(|x| x <= now))
            .map(|(n, _)| n.clone())
            .collect();
        for n in due {
            self.feed_mag(&n, MagInput::Timeout);
        }
        true
    }

    /// Advances virtual time by `span`, running everything due.
    pub fn run_for(&mut self, span: Span) {
        let limit = self.now + span;
        let mut guard = 0u64;
        while self.step(limit) {
            guard += 1;
            assert!(guard < 10_000_000, "the world does not settle: a timer keeps firing at {}", self.now);
        }
        self.now = limit;
    }

    /// Runs until `done` holds or `limit` of virtual time has passed.
    pub fn run_until(&mut self, limit: Span, mut done: impl FnMut(&World) -> bool) -> bool {
        let end = self.now + limit;
        loop {
            if done(self) {
                return true;
            }
            if !self.step(end) {
                self.now = end;
                return done(self);
            }
        }
    }

    /// Sends one downlink packet from a CN through the data plane the
    /// intents built: LMA classification, tunnel, MAG route, access link.
    pub fn downlink(&mut self, cn: &str, flow: FlowKey) -> PacketPath {
        let mut path = PacketPath { hops: vec![cn.into()], delivered_on: None, dropped: None };
        if self.cns.get(cn) != Some(&flow.src) {
            return path.drop(format!("{} is not the address of {cn}", flow.src));
        }
        let lma_name = match &self.lma {
            Some((n, _)) => n.clone(),
            None => return path.drop("there is no LMA"),
        };
        path.hops.push(lma_name);
        let target = self.lma_plane.classify(&flow);
        let mag_addr = match target {
            Some(FlowTarget::Forward(m)) => m,
            Some(FlowTarget::Drop) => return path.drop("the LMA's flow binding drops it"),
            None => return path.drop("the LMA has no binding for the destination"),
        };
        if !self.lma_plane.tunnels.contains(&mag_addr) {
            return path.drop(format!("the LMA has no tunnel to {mag_addr}"));
        }
        let Some(mag) = self.names.get(&mag_addr).cloned() else {
            return path.drop(format!("no MAG has address {mag_addr}"));
        };
        path.hops.push(mag.clone());
        let plane = self.mag_planes.get(&mag).cloned().unwrap_or_default();
        let Some(iface) = plane.route(&flow.dst).map(str::to_string) else {
            return path.drop(format!("{mag} has no route to {}", flow.dst));
        };
        let Some((mn, mn_iface)) = self.links.get(&(mag.clone(), iface.clone())).cloned() else {
            return path.drop(format!("nothing is attached to {mag} {iface}"));
        };
        path.hops.push(format!("{mn}/{mn_iface}"));
        if !self.mn_planes.get(&mn).is_some_and(|a| a.contains(&flow.dst)) {
            return path.drop(format!("{} is not an address of {mn}'s logical interface", flow.dst));
        }
        self.feed_mn(&mn, MnInput::Downlink { iface: mn_iface.clone(), flow });
        path.delivered_on = Some((mn, mn_iface));
        path
    }

    /// Sends one uplink packet (MN → CN) out of the interface the MN's
    /// logical interface picks. `delivered_on` names that interface when
    /// the packet reached the CN.
    pub fn uplink(&mut self, mn: &str, flow: FlowKey) -> PacketPath {
        let mut path = PacketPath { hops: vec![mn.into()], delivered_on: None, dropped: None };
        let Some(node) = self.mns.get(mn) else {
            return path.drop(format!("no MN named {mn}"));
        };
        if !self.mn_planes.get(mn).is_some_and(|a| a.contains(&flow.src)) {
            return path.drop(format!("{} is not an address of {mn}'s logical interface", flow.src));
        }
        let Some(iface) = node.uplink_interface(&flow).map(str::to_string) else {
            return path.drop(format!("{mn} has no interface up"));
        };
        path.hops[0] = format!("{mn}/{iface}");
        let Some(((mag, _), _)) =
            self.links.iter().find(|(_, v)| v.0 == mn && v.1 == iface).map(|(k, v)| (k.clone(), v.clone()))
        else {
            return path.drop(format!("{mn}/{iface} is attached to no MAG"));
        };
        path.hops.push(mag.clone());
        let plane = self.mag_planes.get(&mag).cloned().unwrap_or_default();
        if !plane.tunnels_uplink_from(&flow.src) {
            return path.drop(format!("{mag} has no uplink rule for {}", flow.src));
        }
        if let Some((n, _)) = &self.lma {
            path.hops.push(n.clone());
        }
        if !self.lma_plane.anchors(&flow.src) {
            return path.drop(format!("the LMA does not anchor {}", flow.src));
        }
        match self.cns.iter().find(|(_, a)| **a == flow.dst) {
            Some((cn, _)) => {
                path.hops.push(cn.clone());
                path.delivered_on = Some((mn.into(), iface));
                path
            }
            None => path.drop(format!("no CN has address {}", flow.dst)),
        }
    }

    pub fn state(&self) -> WorldState {
        WorldState {
            lma: self.lma.as_ref().map(|(_, l)| l.state()),
            other_lmas: self.other_lmas.iter().map(|(n, (l, _))| (n.clone(), l.state())).collect(),
            mags: self.mags.iter().map(|(n, m)| (n.clone(), m.state())).collect(),
            mns: self.mns.iter().map(|(n, m)| (n.clone(), m.state())).collect(),
        }
    }

    /// The message sequence as ladder lines, e.g. `12ms mag1 -> lma PBU seq=1 …`.
    pub fn ladder(&self) -> Vec<String> {
        self.messages
            .iter()
            .map(|m| {
                format!(
                    "{}ms {} -> {} {}{}",
                    m.at_ms,
                    m.from,
                    m.to,
                    m.summary,
                    if m.dropped { " (dropped)" } else { "" }
                )
            })
            .collect()
    }
}
