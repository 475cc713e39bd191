//! The mobile access gateway: RFC 5213 §6 plus the MAG side of the flow
//! mobility draft (FMI → FMA) and of Binding Revocation (BRI → BRA).

mod flows;

use std::collections::BTreeMap;
use std::net::Ipv6Addr;

use pmip_wire::{
    AccessTechnologyType, Bra, BraStatus, Bri, HandoffIndicator, Message, MobilityOption, Pba, PbaStatus, Pbu, PbuFlags,
};
use serde::{Deserialize, Serialize};

pub use flows::{FlowState, FlowStateKey};

use crate::lma::binding_cache::hex;
use crate::output::{reconcile, Intent, Output};
use crate::prefix::Prefix;
use crate::signalling::{hnp, hnp_request, nai, pick, timestamp_at, timestamp_micros};
use crate::time::{Backoff, Instant, Span};

/// Which MN-ID a link-layer identifier belongs to: the MAG's view of the
/// policy store (RFC 5213 §6.2).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MnBinding {
    pub ll_id: Vec<u8>,
    pub mn_id: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MagConfig {
    /// The MAG's Proxy-CoA.
    pub address: Ipv6Addr,
    pub lma: Ipv6Addr,
    /// Lifetime asked for in PBUs, in seconds.
    pub lifetime_secs: u32,
    pub backoff: Backoff,
    /// Re-register when this share of the granted lifetime has passed.
    pub reregister_at: (u64, u64),
    pub mns: Vec<MnBinding>,
    pub epoch_offset_micros: u64,
    /// The link-local address the MAG uses on access links (RFC 5213 §6.8),
    /// sent in the Link-local Address option.
    pub link_local: Option<Ipv6Addr>,
    /// How long the uplink path of a prefix stays after an FMI[del] or a
    /// BRI takes its route away while the MN is still attached. The LMA
    /// switches the downlink at once, but the MN switches its uplink only
    /// when the downlink reaches it on its other interface (draft §6);
    /// until then its uplink still arrives here and must still go into
    /// the tunnel, or it is lost.
    #[serde(default = "default_uplink_hold")]
    pub uplink_hold: Span,
    /// Heartbeats to its LMA while it has MNs registered there (RFC 5847);
    /// none sends no requests, though requests are still answered.
    #[serde(default)]
    pub heartbeat: Option<crate::heartbeat::HeartbeatConfig>,
    /// This MAG's Restart Counter (RFC 5847 §3.2): one more at each start.
    #[serde(default)]
    pub restart_counter: u32,
    /// Flows this MAG asks the LMA for, with a Flow Identification option
    /// in the PBU, when the MN interface with that link-layer identifier
    /// first registers here (flow mobility draft §3.2, after Figure 4).
    #[serde(default)]
    pub flow_requests: Vec<(Vec<u8>, pmip_wire::FlowIdentification)>,
    /// The 2-level prefix model, for the MNs that use it.
    #[serde(default)]
    pub two_level: Option<crate::two_level::MagSetup>,
}

fn default_uplink_hold() -> Span {
    Span::from_secs(2)
}

impl MagConfig {
    pub fn new(address: Ipv6Addr, lma: Ipv6Addr) -> Self {
        MagConfig {
            address,
            lma,
            lifetime_secs: 400,
            backoff: Backoff::default(),
            reregister_at: (3, 4),
            mns: Vec::new(),
            epoch_offset_micros: 0,
            link_local: None,
            uplink_hold: default_uplink_hold(),
            heartbeat: None,
            restart_counter: 0,
            flow_requests: Vec::new(),
            two_level: None,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MagInput {
    /// An MN's interface came up on access link `iface` (link up or RS).
    Attach {
        iface: String,
        ll_id: Vec<u8>,
        att: AccessTechnologyType,
        /// The HI to send; new interface (1) when the MAG cannot tell.
        handoff: Option<HandoffIndicator>,
        /// Prefixes to ask for; empty asks the LMA to assign.
        prefixes: Vec<Prefix>,
    },
    Detach {
        iface: String,
    },
    /// A Router Solicitation on an access link: answer with an RA.
    RouterSolicitation {
        iface: String,
    },
    Message {
        src: Ipv6Addr,
        dst: Ipv6Addr,
        message: Message,
    },
    Timeout,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum BulState {
    Registering,
    Registered,
    Deregistering,
    Rejected(u8),
}

/// A Binding Update List entry (RFC 5213 §6.1): one per attached MN interface.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BulEntry {
    pub mn_id: String,
    pub iface: String,
    pub ll_id: Vec<u8>,
    pub att: AccessTechnologyType,
    pub handoff: HandoffIndicator,
    pub requested: Vec<Prefix>,
    pub hnps: Vec<Prefix>,
    pub state: BulState,
    pub sequence: u16,
    pub attempts: u32,
    pub retransmit_at: Option<Instant>,
    pub lifetime_secs: u32,
    pub expires_at: Option<Instant>,
    pub reregister_at: Option<Instant>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct BulRow {
    pub mn_id: String,
    pub iface: String,
    pub mn_ll_id: String,
    pub att: String,
    pub hnps: Vec<Prefix>,
    pub state: BulState,
    pub lifetime_secs: u32,
}

/// One row of the MAG routing state (draft Figure 3).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize)]
pub struct RouteRow {
    pub dest: String,
    pub next_hop: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct MagState {
    pub binding_update_list: Vec<BulRow>,
    pub flows: Vec<flows::FlowRow>,
    pub routes: Vec<RouteRow>,
    /// Its LMA as the heartbeats see it (only when heartbeats are on).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub heartbeats: Vec<crate::heartbeat::PeerRow>,
    /// The 2-level model's binding update list (only when it is on).
    #[serde(skip)]
    pub two_level: Vec<crate::two_level::Row>,
    /// The same rows as the draft's figures print them.
    #[serde(rename = "two_level", skip_serializing_if = "Vec::is_empty")]
    pub two_level_figure: Vec<String>,
}

pub struct Mag {
    pub config: MagConfig,
    pub(crate) bul: Vec<BulEntry>,
    pub(crate) flows: BTreeMap<FlowStateKey, FlowState>,
    next_sequence: u16,
    /// The latest FMIs from the LMA, newest last, each with the FMA it
    /// got, for retransmissions.
    pub(crate) recent_fmi: Vec<(u16, pmip_wire::Fmi, Message)>,
    /// Last BRI sequence and its BRA, so a retransmitted BRI gets the same answer.
    last_bri: Option<(u16, Message)>,
    installed_tunnel: BTreeMap<Ipv6Addr, ()>,
    installed_routes: BTreeMap<Prefix, String>,
    installed_uplink: BTreeMap<Prefix, ()>,
    /// Uplink paths kept after their route went, until the instant given.
    held_uplink: BTreeMap<Prefix, Instant>,
    /// The last PBU timestamp sent, in microseconds, so that the next is later.
    last_timestamp: u64,
    advertised: BTreeMap<String, Vec<Prefix>>,
    heartbeats: crate::heartbeat::Heartbeats,
    /// The 2-level prefix model, for the MNs that use it, with the access
    /// link each of their interfaces (by link-layer id) is on.
    two_level: Option<(crate::two_level::TwoLevelMag, BTreeMap<Vec<u8>, String>)>,
}

impl Mag {
    pub fn new(config: MagConfig) -> Self {
        let mut mag = Mag {
            bul: Vec::new(),
            flows: BTreeMap::new(),
            next_sequence: 1,
            recent_fmi: Vec::new(),
            last_bri: None,
            installed_tunnel: BTreeMap::new(),
            installed_routes: BTreeMap::new(),
            installed_uplink: BTreeMap::new(),
            held_uplink: BTreeMap::new(),
            last_timestamp: 0,
            advertised: BTreeMap::new(),
            heartbeats: crate::heartbeat::Heartbeats::new(config.heartbeat, config.restart_counter),
            two_level: None,
            config,
        };
        if let Some(setup) = mag.config.two_level.clone() {
            mag.enable_two_level(setup.config, &setup.temporal, setup.mns);
        }
        mag
    }

    /// Turns the 2-level prefix model on for `mns`, with every MAG's
    /// level-1 temporal prefix as the LMA distributed them.
    pub fn enable_two_level(
        &mut self,
        config: crate::two_level::TwoLevelConfig,
        temporal: &BTreeMap<Ipv6Addr, Prefix>,
        mns: impl IntoIterator<Item = String>,
    ) {
        let mut t = crate::two_level::TwoLevelMag::new(self.config.address, config);
        t.learn_temporal(temporal);
        t.mns.extend(mns);
        self.two_level = Some((t, BTreeMap::new()));
    }

    pub fn two_level(&self) -> Option<&crate::two_level::TwoLevelMag> {
        self.two_level.as_ref().map(|(t, _)| t)
    }

    /// 2-level model: carves a level-2 prefix for a service of the MN
    /// interface `ll_id` and registers it (PBU with HI 5).
    pub fn two_level_carve(&mut self, now: Instant, ll_id: &[u8], service: &str) -> Output {
        let mut out = Output::default();
        let Some(mn_id) = self.mn_id_for(ll_id) else {
            out.refuse(format!("link-layer id {} is not in this MAG's policy store", hex(ll_id)));
            return out;
        };
        let lma = self.config.lma;
        match self.two_level.as_mut().map(|(t, _)| t.carve(&mn_id, ll_id, service)) {
            Some(Some((p, pbu))) => {
                out.event(format!("2-level: carved {p} for {mn_id}'s {service}"));
                out.send(self.config.address, lma, Message::Pbu(pbu));
            }
            Some(None) => out.refuse("this MAG's temporal prefix has no level-2 prefix left".to_string()),
            None => out.refuse("the 2-level prefix model is not on at this MAG".to_string()),
        }
        self.reconcile_data_plane(&mut out);
        let _ = now;
        out
    }

    /// 2-level model: a flow handover to (or back to) this MAG, PBU with
    /// HI 5 naming level-2 prefixes (PFHO) or a level-1 temporal one (FFHO).
    pub fn two_level_take(&mut self, ll_id: &[u8], prefixes: &[Prefix]) -> Output {
        let mut out = Output::default();
        let Some(mn_id) = self.mn_id_for(ll_id) else {
            out.refuse(format!("link-layer id {} is not in this MAG's policy store", hex(ll_id)));
            return out;
        };
        let lma = self.config.lma;
        match self.two_level.as_mut() {
            Some((t, _)) => {
                let pbu = t.take_flows(&mn_id, ll_id, prefixes);
                out.send(self.config.address, lma, Message::Pbu(pbu));
            }
            None => out.refuse("the 2-level prefix model is not on at this MAG".to_string()),
        }
        out
    }

    /// 2-level model: the L2 hint that an MN's flows within `prefixes`
    /// left this MAG; their entries are kept Idle. The MN is named by its
    /// MN-ID: the interface the flows went to may be one this MAG has
    /// never served.
    pub fn two_level_hint(&mut self, now: Instant, mn_id: &str, prefixes: &[Prefix]) -> Output {
        let mut out = Output::default();
        if let Some((t, _)) = self.two_level.as_mut() {
            t.hint_moved(now, mn_id, prefixes);
        }
        self.reconcile_data_plane(&mut out);
        out
    }

    /// The link-layer id of the MN on each access link this MAG serves:
    /// its Binding Update List's and the 2-level model's interfaces.
    pub fn access_ll_ids(&self) -> BTreeMap<String, Vec<u8>> {
        let mut m: BTreeMap<String, Vec<u8>> = self.bul.iter().map(|e| (e.iface.clone(), e.ll_id.clone())).collect();
        if let Some((_, links)) = &self.two_level {
            m.extend(links.iter().map(|(ll, iface)| (iface.clone(), ll.clone())));
        }
        m
    }

    pub fn bul(&self) -> &[BulEntry] {
        &self.bul
    }

    pub fn handle(&mut self, now: Instant, input: MagInput) -> Output {
        let mut out = Output::default();
        // Only what the LMA tells the MAG (FMI[del], BRI) moves a prefix
        // away from an MN that is still here; a detach or expiry means the
        // MN itself is gone, and its uplink with it.
        let signalled = matches!(input, MagInput::Message { .. });
        let routes_before = signalled.then(|| self.desired_routes());
        match input {
            MagInput::Attach { iface, ll_id, att, handoff, prefixes } => {
                self.attach(now, iface, ll_id, att, handoff, prefixes, &mut out)
            }
            MagInput::Detach { iface } => self.detach(now, &iface, &mut out),
            MagInput::RouterSolicitation { iface } => {
                self.advertised.remove(&iface);
            }
            MagInput::Message { src, dst, message } => self.on_message(now, src, dst, message, &mut out),
            MagInput::Timeout => self.on_timeout(now, &mut out),
        }
        if let Some(before) = routes_before {
            let after = self.desired_routes();
            for p in before.keys().filter(|p| !after.contains_key(p)) {
                out.event(format!(
                    "uplink from {p} kept for {} ms while the MN switches",
                    self.config.uplink_hold.as_millis()
                ));
                self.held_uplink.insert(*p, now + self.config.uplink_hold);
            }
        }
        self.held_uplink.retain(|_, until| *until > now);
        self.follow_the_mn(&mut out);
        self.reconcile_data_plane(&mut out);
        // An MN being registered again (after an LMA restart) keeps the
        // LMA probed, and its last Restart Counter remembered.
        let live = self.bul.iter().any(|e| matches!(e.state, BulState::Registered | BulState::Registering));
        self.heartbeats.track(now, live.then_some(self.config.lma));
        out
    }

    /// The LMA restarted (its Restart Counter changed): it has lost every
    /// binding, so each MN registered here is registered again, asking
    /// for the prefixes it had (RFC 5847 §5.3), as after an expiry.
    fn reregister_all(&mut self, now: Instant, out: &mut Output) {
        let ifaces: Vec<String> =
            self.bul.iter().filter(|e| e.state == BulState::Registered).map(|e| e.iface.clone()).collect();
        for iface in ifaces {
            if let Some(e) = self.bul.iter_mut().find(|e| e.iface == iface) {
                out.event(format!("{iface}: the LMA restarted; registering {} again", e.mn_id));
                e.state = BulState::Registering;
                e.handoff = HandoffIndicator::HandoffStateUnknown;
                e.requested = std::mem::take(&mut e.hnps);
                e.expires_at = None;
                e.reregister_at = None;
            }
            self.send_pbu(now, &iface, false, out);
        }
    }

    /// Flow state the LMA put here is for an MN attached here, routed to
    /// one of its interfaces. Whichever way an interface goes (detach,
    /// expiry, a de-registration acknowledged or given up, a rejection),
    /// flow state routed to it follows the MN to another interface it has
    /// here (its logical interface takes the flow on any), or goes with
    /// the MN's last one. An interface still registering counts: the LMA
    /// takes it as active as soon as its PBU arrives.
    fn follow_the_mn(&mut self, out: &mut Output) {
        let live = |e: &&BulEntry| matches!(e.state, BulState::Registered | BulState::Registering);
        let mut gone = Vec::new();
        for (k, f) in self.flows.iter_mut() {
            if self.bul.iter().filter(live).any(|e| e.mn_id == k.mn_id && e.iface == f.iface) {
                continue;
            }
            match self.bul.iter().filter(live).find(|e| e.mn_id == k.mn_id) {
                Some(e) => f.iface = e.iface.clone(),
                None => gone.push(k.clone()),
            }
        }
        for k in gone {
            out.event(format!("flow state {} {:?}/{:?} dropped: the MN has left this MAG", k.mn_id, k.fid, k.prefix));
            self.flows.remove(&k);
        }
    }

    pub fn mn_id_for(&self, ll_id: &[u8]) -> Option<String> {
        self.config.mns.iter().find(|m| m.ll_id == ll_id).map(|m| m.mn_id.clone())
    }

    #[allow(clippy::too_many_arguments)]
    fn attach(
        &mut self,
        now: Instant,
        iface: String,
        ll_id: Vec<u8>,
        att: AccessTechnologyType,
        handoff: Option<HandoffIndicator>,
        prefixes: Vec<Prefix>,
        out: &mut Output,
    ) {
        let Some(mn_id) = self.mn_id_for(&ll_id) else {
            out.event(format!("{iface}: link-layer id {} is not in the policy store; no PBU sent", hex(&ll_id)));
            return;
        };
        if let Some((t, links)) = self.two_level.as_mut().filter(|(t, _)| t.mns.contains(&mn_id)) {
            if links.get(&ll_id) == Some(&iface) {
                // The MN's RS after an attach the harness announced.
                out.event(format!("{iface}: {mn_id} is already attached"));
                return;
            }
            out.event(format!("{iface}: {mn_id} attached ({att:?}), 2-level prefix model"));
            links.insert(ll_id.clone(), iface);
            let pbu = t.attach(&mn_id, &ll_id, handoff.unwrap_or(HandoffIndicator::NewInterface), &prefixes);
            out.send(self.config.address, self.config.lma, Message::Pbu(pbu));
            return;
        }
        if let Some(e) = self.bul.iter().find(|e| e.iface == iface) {
            if e.ll_id == ll_id && e.state != BulState::Deregistering {
                out.event(format!("{iface}: {mn_id} is already attached"));
                return;
            }
        }
        self.bul.retain(|e| e.iface != iface);
        out.event(format!("{iface}: {mn_id} attached ({att:?})"));
        self.bul.push(BulEntry {
            mn_id,
            iface: iface.clone(),
            ll_id,
            att,
            handoff: handoff.unwrap_or(HandoffIndicator::NewInterface),
            requested: prefixes,
            hnps: Vec::new(),
            state: BulState::Registering,
            sequence: 0,
            attempts: 0,
            retransmit_at: None,
            lifetime_secs: 0,
            expires_at: None,
            reregister_at: None,
        });
        self.send_pbu(now, &iface, false, out);
    }

    fn detach(&mut self, now: Instant, iface: &str, out: &mut Output) {
        if let Some((t, links)) = self.two_level.as_mut() {
            if let Some(ll) = links.iter().find(|(_, i)| *i == iface).map(|(ll, _)| ll.clone()) {
                // 2-level model: the interface's entries go with it here;
                // the LMA moves them when the new MAG (IAHO) or the other
                // interface (IIHO) registers, and keeps them till then.
                links.remove(&ll);
                t.table.rows.retain(|r| r.iface != ll);
                out.event(format!("{iface}: detached, its 2-level entries dropped here"));
                return;
            }
        }
        let Some(e) = self.bul.iter_mut().find(|e| e.iface == iface) else {
            out.event(format!("{iface}: detach with nothing attached"));
            return;
        };
        out.event(format!("{iface}: {} detached", e.mn_id));
        if matches!(e.state, BulState::Rejected(_)) {
            self.bul.retain(|e| e.iface != iface);
            return;
        }
        e.state = BulState::Deregistering;
        e.attempts = 0;
        e.reregister_at = None;
        self.send_pbu(now, iface, false, out);
    }

    /// Builds and sends the PBU for the entry on `iface`: a fresh sequence
    /// number and timestamp each time, as retransmissions need too.
    fn send_pbu(&mut self, now: Instant, iface: &str, retransmission: bool, out: &mut Output) {
        let seq = self.next_sequence;
        self.next_sequence = self.next_sequence.wrapping_add(1);
        let cfg = &self.config;
        let Some(e) = self.bul.iter_mut().find(|e| e.iface == iface) else {
            return;
        };
        let dereg = e.state == BulState::Deregistering;
        let mut options = vec![nai(&e.mn_id)];
        let ask: &[Prefix] = if e.hnps.is_empty() { &e.requested } else { &e.hnps };
        if ask.is_empty() {
            options.push(hnp_request());
        } else {
            options.extend(ask.iter().map(|p| hnp(*p)));
        }
        let hi = if e.state == BulState::Registering && e.hnps.is_empty() {
            e.handoff
        } else {
            HandoffIndicator::NotChanged
        };
        options.push(MobilityOption::HandoffIndicator(hi));
        options.push(MobilityOption::AccessTechnologyType(e.att));
        options.push(MobilityOption::MnLinkLayerIdentifier(e.ll_id.clone()));
        if e.state == BulState::Registering && e.hnps.is_empty() {
            let asked = cfg.flow_requests.iter().filter(|(ll, _)| *ll == e.ll_id);
            options.extend(asked.map(|(_, fi)| MobilityOption::FlowIdentification(fi.clone())));
        }
        // RFC 5213 §5.5: the LMA takes a PBU only with a timestamp above
        // the last it accepted for the binding; two PBUs in one tick of
        // the clock (a re-registration and a detach) must still differ.
        let ts = timestamp_micros(timestamp_at(now, cfg.epoch_offset_micros)).max(self.last_timestamp + 16);
        self.last_timestamp = ts;
        options.push(MobilityOption::Timestamp(pmip_wire::Timestamp::from_unix_nanos(u128::from(ts) * 1000)));
        if let Some(ll) = cfg.link_local {
            options.push(MobilityOption::LinkLocalAddress(ll));
        }
        let lifetime = if dereg { 0 } else { (cfg.lifetime_secs / 4).min(u32::from(u16::MAX)) as u16 };
        e.sequence = seq;
        if !retransmission {
            e.attempts = 0;
        }
        e.retransmit_at = Some(now + cfg.backoff.delay(e.attempts));
        let pbu = Pbu { sequence: seq, flags: PbuFlags::proxy(), lifetime, options };
        out.send(cfg.address, cfg.lma, Message::Pbu(pbu));
    }

    fn on_message(&mut self, now: Instant, src: Ipv6Addr, dst: Ipv6Addr, message: Message, out: &mut Output) {
        if dst != self.config.address {
            out.event(format!("ignored {} for {dst}: not this MAG's address", message.name()));
            return;
        }
        // RFC 5213 §6.9.1 and the reliability rules: only our LMA may
        // answer, revoke or move flows.
        if src != self.config.lma {
            out.event(format!("ignored {} from {src}: not this MAG's LMA", message.name()));
            return;
        }
        self.heartbeats.heard_from(now, src, out);
        match message {
            Message::Heartbeat(hb) => {
                let news = self.heartbeats.on_heartbeat(self.config.address, src, hb, out);
                if matches!(news, Some(crate::heartbeat::PeerNews::Restarted(_))) {
                    self.reregister_all(now, out);
                }
            }
            Message::Pba(pba) => self.on_pba(now, pba, out),
            Message::Bri(bri) => self.on_bri(bri, out),
            Message::Fmi(fmi) => self.on_fmi(now, fmi, out),
            other => out.event(format!("ignored {} from {src}: the MAG does not handle it", other.name())),
        }
    }

    fn on_pba(&mut self, now: Instant, pba: Pba, out: &mut Output) {
        if let Some((t, _)) = self.two_level.as_mut().filter(|(t, _)| t.awaits(pba.sequence)) {
            t.on_pba(now, &pba, out);
            return;
        }
        let Some(i) = self.bul.iter().position(|e| {
            e.sequence == pba.sequence
                && matches!(e.state, BulState::Registering | BulState::Registered | BulState::Deregistering)
        }) else {
            out.event(format!("PBA seq {} matches no PBU in flight; ignored", pba.sequence));
            return;
        };
        let o = pick(&pba.options);
        let e = &mut self.bul[i];
        if e.retransmit_at.is_none() {
            out.event(format!("PBA seq {} for {} is a duplicate; ignored", pba.sequence, e.mn_id));
            return;
        }
        e.retransmit_at = None;
        let stale_timestamp =
            matches!(pba.status, PbaStatus::TimestampMismatch | PbaStatus::TimestampLowerThanPrevAccepted);
        if stale_timestamp && e.attempts < self.config.backoff.max_retries {
            // A PBU late on the way (or overtaken) carries a stale
            // timestamp; the next one carries a fresh one. Giving up would
            // leave the MN without service on a registration, or the LMA
            // routing to a MAG the MN left on a de-registration.
            e.attempts += 1;
            let iface = e.iface.clone();
            out.event(format!("{iface}: PBU refused with {} for its timestamp; sending it again", pba.status.value()));
            self.send_pbu(now, &iface, true, out);
            return;
        }
        if e.state == BulState::Deregistering {
            out.event(format!("{}: de-registration of {} acknowledged", e.iface, e.mn_id));
            self.bul.remove(i);
            return;
        }
        if !pba.status.is_accepted() {
            out.event(format!("{}: PBA rejected {} with {} ({:?})", e.iface, e.mn_id, pba.status.value(), pba.status));
            e.state = BulState::Rejected(pba.status.value());
            e.hnps.clear();
            return;
        }
        let lifetime = u32::from(pba.lifetime) * 4;
        e.state = BulState::Registered;
        e.hnps = o.hnps;
        e.lifetime_secs = lifetime;
        e.expires_at = Some(now + Span::from_secs(u64::from(lifetime)));
        let (n, d) = self.config.reregister_at;
        e.reregister_at = Some(now + Span::from_secs(u64::from(lifetime)).scale(n, d));
        out.event(format!(
            "{}: {} registered with [{}] for {lifetime} s",
            e.iface,
            e.mn_id,
            e.hnps.iter().map(|p| p.to_string()).collect::<Vec<_>>().join(", ")
        ));
        if pba.status == PbaStatus::AcceptedPrefixDiscoveryNecessary {
            out.event("the LMA asks for prefix discovery (status 1)");
        }
        let (mn_id, iface) = (e.mn_id.clone(), e.iface.clone());
        self.flows_from_pba(&mn_id, &iface, &o.flows, out);
    }

    fn on_bri(&mut self, bri: Bri, out: &mut Output) {
        if let Some((seq, bra)) = &self.last_bri {
            if *seq == bri.sequence {
                out.event(format!("BRI seq {} is a retransmission; repeating the BRA", bri.sequence));
                out.send(self.config.address, self.config.lma, bra.clone());
                return;
            }
        }
        let o = pick(&bri.options);
        let mn_id = o.mn_id.clone().unwrap_or_default();
        let status = match self.bul.iter_mut().find(|e| e.mn_id == mn_id && e.state == BulState::Registered) {
            None => BraStatus::BindingDoesNotExist,
            Some(e) if o.hnps.is_empty() => {
                out.event(format!("{}: BRI revokes the whole binding of {mn_id}", e.iface));
                let iface = e.iface.clone();
                self.bul.retain(|b| b.iface != iface);
                self.flows.retain(|k, _| k.mn_id != mn_id);
                BraStatus::Success
            }
            Some(e) => {
                let before = e.hnps.len();
                e.hnps.retain(|p| !o.hnps.contains(p));
                let removed = before - e.hnps.len();
                out.event(format!(
                    "{}: BRI revokes [{}] of {mn_id}",
                    e.iface,
                    o.hnps.iter().map(|p| p.to_string()).collect::<Vec<_>>().join(", ")
                ));
                if removed == o.hnps.len() {
                    BraStatus::Success
                } else if removed > 0 {
                    BraStatus::PartialSuccess
                } else {
                    BraStatus::BindingDoesNotExist
                }
            }
        };
        let bra = Message::Bra(Bra { status, sequence: bri.sequence, flags: bri.flags, options: vec![nai(&mn_id)] });
        self.last_bri = Some((bri.sequence, bra.clone()));
        out.send(self.config.address, self.config.lma, bra);
    }

    fn on_timeout(&mut self, now: Instant, out: &mut Output) {
        if let Some((t, _)) = self.two_level.as_mut() {
            t.on_timeout(now, out);
        }
        let max_retries = self.config.backoff.max_retries;
        let ifaces: Vec<String> = self.bul.iter().map(|e| e.iface.clone()).collect();
        for iface in ifaces {
            let Some(e) = self.bul.iter_mut().find(|e| e.iface == iface) else {
                continue;
            };
            if e.expires_at.is_some_and(|t| t <= now) && e.state == BulState::Registered {
                // No detach came: the MN is still on the link, so the MAG
                // registers it again, asking for the prefixes it had,
                // rather than leaving it without service.
                out.event(format!("{iface}: binding of {} expired; registering it again", e.mn_id));
                e.state = BulState::Registering;
                e.handoff = HandoffIndicator::HandoffStateUnknown;
                e.requested = std::mem::take(&mut e.hnps);
                e.expires_at = None;
                e.reregister_at = None;
                self.send_pbu(now, &iface, false, out);
                continue;
            }
            if e.retransmit_at.is_some_and(|t| t <= now) {
                if e.attempts >= max_retries {
                    out.event(format!("{iface}: no PBA for {} after {} PBUs; giving up", e.mn_id, e.attempts + 1));
                    e.retransmit_at = None;
                    if e.state == BulState::Deregistering || e.hnps.is_empty() {
                        self.bul.retain(|b| b.iface != iface);
                    } else if e.state == BulState::Registered {
                        // The MN is still on the link: a re-registration
                        // that went unanswered is tried again later, while
                        // the binding lasts, or the MN would lose service
                        // until its link went down and up.
                        let again = now + self.config.backoff.max;
                        e.reregister_at = Some(e.expires_at.map_or(again, |x| again.min(x)));
                    }
                    continue;
                }
                e.attempts += 1;
                out.event(format!("{iface}: retransmitting PBU for {} (attempt {})", e.mn_id, e.attempts + 1));
                self.send_pbu(now, &iface, true, out);
                continue;
            }
            if e.state == BulState::Registered && e.reregister_at.is_some_and(|t| t <= now) {
                e.reregister_at = None;
                out.event(format!("{iface}: re-registering {}", e.mn_id));
                self.send_pbu(now, &iface, false, out);
            }
        }
        self.expire_flows(now, out);
        for news in self.heartbeats.on_timeout(now, self.config.address, out) {
            // RFC 5847 §5.3 leaves it to local policy: the MAG keeps its
            // MNs' bindings (they run out with their lifetimes) and tells.
            if let crate::heartbeat::PeerNews::Down(lma) = news {
                out.event(format!("heartbeat: the LMA {lma} is down; keeping the bindings"));
            }
        }
    }

    pub fn next_timeout(&self) -> Option<Instant> {
        let bul = self
            .bul
            .iter()
            // Re-registration and expiry concern registered entries only: a
            // timer reported for any other would be due forever, never served.
            .flat_map(|e| {
                let registered = e.state == BulState::Registered;
                [e.retransmit_at, e.reregister_at.filter(|_| registered), e.expires_at.filter(|_| registered)]
            })
            .flatten()
            .min();
        let flows = self.flows.values().filter_map(|f| f.expires_at).min();
        let held = self.held_uplink.values().min().copied();
        let idle = self.two_level.as_ref().and_then(|(t, _)| t.next_timeout());
        [bul, flows, held, self.heartbeats.next_timeout(), idle].into_iter().flatten().min()
    }

    /// The access link a downlink packet to `dst` leaves on, by longest match.
    pub fn route(&self, dst: &Ipv6Addr) -> Option<&str> {
        self.installed_routes
            .iter()
            .filter(|(p, _)| p.contains(dst))
            .max_by_key(|(p, _)| p.prefix_len())
            .map(|(_, i)| i.as_str())
    }

    fn desired_routes(&self) -> BTreeMap<Prefix, String> {
        let mut routes = BTreeMap::new();
        for e in self.bul.iter().filter(|e| e.state == BulState::Registered) {
            for p in &e.hnps {
                routes.insert(*p, e.iface.clone());
            }
        }
        for f in self.flows.values() {
            routes.entry(f.route).or_insert_with(|| f.iface.clone());
        }
        for (iface, prefixes) in self.two_level_ra() {
            for p in prefixes {
                routes.insert(p, iface.clone());
            }
        }
        routes
    }

    /// 2-level model: per access link, what its RA carries (the permanent
    /// prefix beside the Active level-2 prefixes).
    fn two_level_ra(&self) -> BTreeMap<String, Vec<Prefix>> {
        let mut ra = BTreeMap::new();
        if let Some((t, links)) = &self.two_level {
            for r in &t.table.rows {
                if let Some(iface) = links.get(&r.iface) {
                    ra.entry(iface.clone()).or_insert_with(|| t.ra_prefixes(&r.mn_id, &r.iface));
                }
            }
        }
        ra
    }

    fn reconcile_data_plane(&mut self, out: &mut Output) {
        let routes = self.desired_routes();
        let mut tunnel = BTreeMap::new();
        let two_level_live = self
            .two_level
            .as_ref()
            .is_some_and(|(t, _)| t.table.rows.iter().any(|r| r.flag == crate::two_level::Flag::A));
        if self.bul.iter().any(|e| e.state == BulState::Registered) || two_level_live {
            tunnel.insert(self.config.lma, ());
        }
        let uplink: BTreeMap<Prefix, ()> = routes.keys().chain(self.held_uplink.keys()).map(|p| (*p, ())).collect();
        reconcile(&mut self.installed_tunnel, tunnel, |l, _, up| Intent::MagTunnel { lma: *l, up }, out);
        reconcile(
            &mut self.installed_routes,
            routes,
            |p, i, up| Intent::MagRoute { prefix: *p, iface: i.clone(), up },
            out,
        );
        reconcile(&mut self.installed_uplink, uplink, |p, _, up| Intent::MagUplinkRule { prefix: *p, up }, out);
        // RFC 5213 §6.7: an RA carries exactly the MN's current prefixes,
        // and goes out again whenever they change.
        let mut ra: BTreeMap<String, Vec<Prefix>> = BTreeMap::new();
        for e in self.bul.iter().filter(|e| e.state != BulState::Registering) {
            ra.insert(e.iface.clone(), if e.state == BulState::Registered { e.hnps.clone() } else { vec![] });
        }
        ra.extend(self.two_level_ra());
        for (iface, prefixes) in &ra {
            if self.advertised.get(iface) != Some(prefixes) {
                out.intents.push(Intent::RouterAdvertisement { iface: iface.clone(), prefixes: prefixes.clone() });
            }
        }
        self.advertised = ra;
    }

    pub fn state(&self) -> MagState {
        let mut routes: Vec<RouteRow> = self
            .installed_routes
            .iter()
            .map(|(p, i)| RouteRow { dest: p.to_string(), next_hop: format!("p2p {i}") })
            .collect();
        if !self.installed_tunnel.is_empty() {
            routes.push(RouteRow { dest: "::/0".into(), next_hop: "LMA tunnel".into() });
        }
        MagState {
            binding_update_list: self
                .bul
                .iter()
                .map(|e| BulRow {
                    mn_id: e.mn_id.clone(),
                    iface: e.iface.clone(),
                    mn_ll_id: hex(&e.ll_id),
                    att: format!("{:?}", e.att),
                    hnps: e.hnps.clone(),
                    state: e.state,
                    lifetime_secs: e.lifetime_secs,
                })
                .collect(),
            flows: self.flows.iter().map(|(k, f)| f.row(k)).collect(),
            routes,
            heartbeats: self.heartbeats.rows(),
            two_level: self.two_level.as_ref().map(|(t, _)| t.table.rows.clone()).unwrap_or_default(),
            two_level_figure: self.two_level.as_ref().map(|(t, _)| t.figure()).unwrap_or_default(),
        }
    }
}
