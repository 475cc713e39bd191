//! The local mobility anchor: RFC 5213 §5 with the flow mobility draft's
//! extended binding cache, Flow Mobility Cache and flow moves.

pub(crate) mod binding_cache;
mod fast_hash;
mod flow_cache;
mod plane;
mod policy;
mod registration;
mod transactions;

use std::collections::BTreeMap;
use std::net::Ipv6Addr;
use std::sync::Arc;

use pmip_wire::{HandoffIndicator, Message, TrafficSelector};
use serde::{Deserialize, Serialize};

pub use binding_cache::{Bce, BceRow, BceState, BindingCache};
pub use flow_cache::{FlowAction, FlowMobilityCache, FmcEntry, FmcRow};
pub use policy::{MnPolicy, PrefixModel};
pub use transactions::{Pending, PendingKind};

use crate::flow::{selector_matches, FlowKey};
use crate::output::{FlowTarget, Output};
use crate::prefix::Prefix;
use crate::time::{Backoff, Instant, Span};

/// LMA settings; `Default` gives the RFC 5213 §12 values.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LmaConfig {
    pub address: Ipv6Addr,
    /// MAGs allowed to send PBUs (RFC 5213 §5.3.1: else 154).
    pub authorized_mags: Vec<Ipv6Addr>,
    /// The Handoff Indicator that asks to move the listed prefixes to a
    /// new interface (the slides' `HI=IANA-1`).
    pub partial_handoff_hi: HandoffIndicator,
    /// Longest lifetime granted, in seconds.
    pub max_lifetime_secs: u32,
    /// RFC 5213 §12: MinDelayBeforeBCEDelete.
    pub min_delay_before_bce_delete: Span,
    /// Timestamp-based replay protection (RFC 5213 §5.5); without it, the
    /// sequence number is checked (135).
    pub use_timestamps: bool,
    /// RFC 5213 §12: TimestampValidityWindow.
    pub timestamp_window: Span,
    /// Added to the virtual clock to read timestamps.
    pub epoch_offset_micros: u64,
    /// More bindings than this gives 130.
    pub max_bindings: usize,
    /// Lifetime in seconds the LMA asks of flow state at a MAG (FMI).
    pub flow_lifetime_secs: u16,
    pub backoff: Backoff,
    /// Send FMI[del] to the MAG a flow left (draft Fig 5, optional).
    pub delete_at_old_mag: bool,
    /// Send BRI[prefix] to the MAG a prefix left in a partial handoff
    /// (draft Fig 4, optional).
    pub revoke_on_partial_handoff: bool,
    /// Tell MAGs about shared-prefix moves by FMI too (draft §3.2: only
    /// when a MAG needs flow descriptors).
    pub notify_shared_moves: bool,
    /// Heartbeats to the MAGs it has bindings with (RFC 5847); none sends
    /// no requests, though requests are still answered.
    #[serde(default)]
    pub heartbeat: Option<crate::heartbeat::HeartbeatConfig>,
    /// What happens to the bindings of a MAG the heartbeats declare down.
    #[serde(default)]
    pub on_mag_down: MagDownAction,
    /// This LMA's Restart Counter (RFC 5847 §3.2): one more at each start.
    #[serde(default)]
    pub restart_counter: u32,
    /// The 2-level prefix model, for the MNs whose policy asks for it.
    #[serde(default)]
    pub two_level: Option<crate::two_level::LmaSetup>,
}

/// What the LMA does with the bindings of a MAG that stopped answering
/// heartbeats. RFC 5847 §5 leaves it to local policy.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum MagDownAction {
    /// Keep them until their lifetime runs out or the MAG is heard again:
    /// a MAG cut off for a moment keeps its MNs' sessions.
    #[default]
    Hold,
    /// Delete them at once, as a de-registration would: the downlink
    /// stops going into a tunnel to a MAG that is gone.
    Drop,
}

impl LmaConfig {
    pub fn new(address: Ipv6Addr) -> Self {
        LmaConfig {
            address,
            authorized_mags: Vec::new(),
            partial_handoff_hi: HandoffIndicator::NewInterfaceSharingPrefixes,
            max_lifetime_secs: 3600,
            min_delay_before_bce_delete: Span::from_secs(10),
            use_timestamps: true,
            timestamp_window: Span::from_millis(300),
            epoch_offset_micros: 0,
            max_bindings: 100_000,
            flow_lifetime_secs: 300,
            backoff: Backoff::default(),
            delete_at_old_mag: true,
            revoke_on_partial_handoff: true,
            notify_shared_moves: false,
            heartbeat: None,
            on_mag_down: MagDownAction::Hold,
            restart_counter: 0,
            two_level: None,
        }
    }
}

/// What the harness or an operator tells the LMA to do.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum LmaCommand {
    /// Puts a flow in the Flow Mobility Cache, bound to BIDs, with no
    /// signalling (the initial state of draft Figures 2 and 5).
    BindFlow { mn_id: String, fid: u16, fid_pri: u16, selector: TrafficSelector, bids: Vec<u16>, action: FlowAction },
    /// Moves a flow to another binding (draft Fig 2 or Fig 5).
    MoveFlow { mn_id: String, fid: u16, to_bid: u16 },
    /// Moves every packet to a prefix to another binding, signalled with
    /// an HNP option (prefix granularity).
    MovePrefix { mn_id: String, prefix: Prefix, to_bid: u16 },
    /// Removes a flow from the cache, cancelling it at MAGs that hold it.
    UnbindFlow { mn_id: String, fid: u16 },
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LmaInput {
    Message { src: Ipv6Addr, dst: Ipv6Addr, message: Message },
    Command(LmaCommand),
    Timeout,
}

/// A flow whose moved state lives at a MAG and must be refreshed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct SignalledFlow {
    pub mag: Ipv6Addr,
    /// `NEVER` for an infinite lifetime (0xffff): nothing to refresh, but
    /// the LMA must still remember which MAG holds the flow, so that a
    /// later move or unbind cancels it there.
    pub refresh_at: Instant,
    /// When the MAG's flow state runs out unless refreshed, counted from
    /// the first transmission of the FMI the MAG last acknowledged: never
    /// later than the MAG's own expiry, which starts on receipt. `None`
    /// for an infinite lifetime.
    pub expires_at: Option<Instant>,
    /// FMI option set that describes the flow (FI option or HNP).
    pub prefix_granularity: Option<Prefix>,
}

/// The LMA's state tables as a snapshot shows them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct LmaState {
    pub binding_cache: Vec<BceRow>,
    pub flow_mobility_cache: Vec<FmcRow>,
    pub pending: Vec<String>,
    /// The MAGs probed by heartbeats (only when heartbeats are on).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub heartbeats: Vec<crate::heartbeat::PeerRow>,
    /// The 2-level model's table (only when it is on), rows as the
    /// draft's figures show them, with their Active/Idle flag.
    #[serde(skip)]
    pub two_level: Vec<crate::two_level::Row>,
    /// The same rows as the draft's figures print them.
    #[serde(rename = "two_level", skip_serializing_if = "Vec::is_empty")]
    pub two_level_figure: Vec<String>,
}

pub struct Lma {
    pub config: LmaConfig,
    /// Hashed, for a lookup per PBU that costs the same with any number
    /// of MNs; shared so that a PBU holds its MN's policy while it changes
    /// the tables, without copying it.
    policies: fast_hash::FastMap<String, Arc<MnPolicy>>,
    pub(crate) cache: BindingCache,
    pub(crate) fmc: FlowMobilityCache,
    pub(crate) pending: Vec<Pending>,
    pub(crate) signalled: BTreeMap<(String, u16), SignalledFlow>,
    pub(crate) next_sequence: u16,
    /// BRIs a PBU decided on, sent after its PBA.
    pub(crate) revocations: Vec<(Ipv6Addr, String, Vec<Prefix>, pmip_wire::RevocationTrigger)>,
    installed: plane::InstalledPlane,
    heartbeats: crate::heartbeat::Heartbeats,
    /// The 2-level prefix model, for the MNs whose policy asks for it.
    pub(crate) two_level: Option<crate::two_level::TwoLevelLma>,
}

impl Lma {
    pub fn new(config: LmaConfig) -> Self {
        let mut lma = Lma {
            policies: Default::default(),
            cache: BindingCache::default(),
            fmc: FlowMobilityCache::default(),
            pending: Vec::new(),
            signalled: BTreeMap::new(),
            next_sequence: 1,
            revocations: Vec::new(),
            installed: plane::InstalledPlane::default(),
            heartbeats: crate::heartbeat::Heartbeats::new(config.heartbeat, config.restart_counter),
            two_level: None,
            config,
        };
        if let Some(setup) = lma.config.two_level.clone() {
            // The harness validates the pool against the MAGs. A pool too
            // small leaves the MAGs past its end without a temporal prefix,
            // and the LMA refuses their PBUs (154): loud on the wire.
            if lma.enable_two_level(setup.config.clone(), &setup.mags).is_err() {
                lma.two_level = Some(crate::two_level::TwoLevelLma::new(lma.config.address, setup.config));
            }
        }
        lma
    }

    pub fn add_policy(&mut self, p: MnPolicy) {
        if let (PrefixModel::TwoLevel, Some(t)) = (p.model, self.two_level.as_mut()) {
            t.add_mn(&p.mn_id, p.unique_prefixes.clone());
        }
        self.policies.insert(p.mn_id.clone(), Arc::new(p));
    }

    /// Turns the 2-level prefix model on: hands every MAG of `mags` its
    /// level-1 temporal prefix before any session, and gives back the
    /// whole distribution, which each MAG is told (draft §3).
    pub fn enable_two_level(
        &mut self,
        config: crate::two_level::TwoLevelConfig,
        mags: &[Ipv6Addr],
    ) -> Result<BTreeMap<Ipv6Addr, Prefix>, String> {
        let mut t = crate::two_level::TwoLevelLma::new(self.config.address, config);
        // In MN-ID order, whatever order the policies were added in.
        let mut two_level: Vec<&MnPolicy> =
            self.policies.values().map(|p| &**p).filter(|p| p.model == PrefixModel::TwoLevel).collect();
        two_level.sort_by(|a, b| a.mn_id.cmp(&b.mn_id));
        for p in two_level {
            t.add_mn(&p.mn_id, p.unique_prefixes.clone());
        }
        let all = t.distribute(mags)?;
        self.two_level = Some(t);
        Ok(all)
    }

    pub fn two_level(&self) -> Option<&crate::two_level::TwoLevelLma> {
        self.two_level.as_ref()
    }

    pub fn policy(&self, mn_id: &str) -> Option<&MnPolicy> {
        self.policies.get(mn_id).map(|p| &**p)
    }

    pub(crate) fn shared_policy(&self, mn_id: &str) -> Option<Arc<MnPolicy>> {
        self.policies.get(mn_id).cloned()
    }

    pub fn binding_cache(&self) -> &BindingCache {
        &self.cache
    }

    pub fn flow_cache(&self) -> &FlowMobilityCache {
        &self.fmc
    }

    pub fn handle(&mut self, now: Instant, input: LmaInput) -> Output {
        let mut out = Output::default();
        // A PBU changes only its MN's bindings and flows; anything else may
        // touch any MN.
        let touched = match &input {
            LmaInput::Message { message: Message::Pbu(pbu), .. } => crate::signalling::mn_id_of(&pbu.options),
            _ => None,
        };
        match input {
            LmaInput::Message { src, dst, message } => self.on_message(now, src, dst, message, &mut out),
            LmaInput::Command(c) => self.on_command(now, c, &mut out),
            LmaInput::Timeout => self.on_timeout(now, &mut out),
        }
        match touched {
            Some(mn) => self.reconcile_plane([mn.as_str()], &mut out),
            None => {
                let mns = self.all_mns();
                self.reconcile_plane(mns.iter().map(String::as_str), &mut out);
            }
        }
        self.heartbeats.track(now, self.cache.active_mags());
        out
    }

    /// A MAG the heartbeats found down or restarted. A restarted MAG has
    /// lost its Binding Update List, so its bindings here are stale; a MAG
    /// that is down loses them only when `on_mag_down` says so.
    fn on_peer_news(&mut self, news: crate::heartbeat::PeerNews, out: &mut Output) {
        use crate::heartbeat::PeerNews;
        let mag = match news {
            PeerNews::Down(m) if self.config.on_mag_down == MagDownAction::Drop => m,
            PeerNews::Down(m) => {
                out.event(format!("heartbeat: holding the bindings of {m}, which is down"));
                return;
            }
            PeerNews::Restarted(m) => m,
        };
        let gone: Vec<(String, u16)> =
            self.cache.iter().filter(|b| b.proxy_coa == mag).map(|b| (b.mn_id.clone(), b.bid)).collect();
        for (mn, bid) in gone {
            self.forget_flows_at_binding(&mn, bid, out);
            self.cache.remove(&mn, bid);
            out.event(format!("binding {mn} BID {bid} deleted: its MAG {mag} is gone"));
        }
    }

    fn on_message(&mut self, now: Instant, src: Ipv6Addr, dst: Ipv6Addr, message: Message, out: &mut Output) {
        if dst != self.config.address {
            out.event(format!("ignored {} for {dst}: not this LMA's address", message.name()));
            return;
        }
        self.heartbeats.heard_from(now, src, out);
        match message {
            Message::Heartbeat(hb) => {
                if let Some(news) = self.heartbeats.on_heartbeat(self.config.address, src, hb, out) {
                    self.on_peer_news(news, out);
                }
            }
            Message::Pbu(pbu) => self.on_pbu(now, src, pbu, out),
            Message::Fma(fma) => self.on_fma(now, src, fma, out),
            Message::Bra(bra) => self.on_bra(src, bra, out),
            other => out.event(format!("ignored {} from {src}: the LMA does not handle it", other.name())),
        }
    }

    fn on_timeout(&mut self, now: Instant, out: &mut Output) {
        self.expire_bindings(now, out);
        self.retransmit_due(now, out);
        self.expire_signalled(now, out);
        self.refresh_due(now, out);
        for news in self.heartbeats.on_timeout(now, self.config.address, out) {
            self.on_peer_news(news, out);
        }
        if let Some(t) = self.two_level.as_mut() {
            t.on_timeout(now, out);
        }
    }

    /// Removes bindings whose lifetime ran out and de-registered entries
    /// whose grace period ended.
    fn expire_bindings(&mut self, now: Instant, out: &mut Output) {
        let expired: Vec<(String, u16, BceState)> = self
            .cache
            .expired(now)
            .into_iter()
            .filter_map(|(mn, bid)| self.cache.get(&mn, bid).map(|b| (mn, bid, b.state)))
            .collect();
        for (mn, bid, state) in expired {
            if state == BceState::Active {
                self.forget_flows_at_binding(&mn, bid, out);
            }
            match state {
                BceState::Active => {
                    out.event(format!("binding {mn} BID {bid} expired: its lifetime ran out"));
                }
                BceState::Deregistered => {
                    out.event(format!("binding {mn} BID {bid} deleted after MinDelayBeforeBCEDelete"));
                }
            }
            self.cache.remove(&mn, bid);
        }
    }

    pub fn next_timeout(&self) -> Option<Instant> {
        let bce = self.cache.next_expiry();
        let pend = self.pending.iter().map(|p| p.retransmit_at).min();
        let refresh = self.signalled.values().map(|s| s.refresh_at).filter(|t| *t != transactions::NEVER).min();
        let expiry = self.signalled.values().filter_map(|s| s.expires_at).min();
        let idle = self.two_level.as_ref().and_then(|t| t.next_timeout());
        [bce, pend, refresh, expiry, self.heartbeats.next_timeout(), idle].into_iter().flatten().min()
    }

    pub(crate) fn take_sequence(&mut self) -> u16 {
        let s = self.next_sequence;
        self.next_sequence = self.next_sequence.wrapping_add(1).max(1);
        s
    }

    pub(crate) fn bid_is_active(&self, mn_id: &str, bid: u16) -> bool {
        self.cache.get(mn_id, bid).is_some_and(|b| b.is_active())
    }

    /// Where the LMA sends a downlink packet: the first active Flow
    /// Mobility Cache entry that matches, in FID-PRI order, else the
    /// prefix's default binding. `None` when nothing is bound.
    pub fn classify(&self, key: &FlowKey) -> Option<FlowTarget> {
        if let Some(mag) = self.two_level.as_ref().and_then(|t| t.route(&key.dst)) {
            return Some(FlowTarget::Forward(mag));
        }
        for e in self.fmc.iter() {
            if !selector_matches(&e.selector, key) {
                continue;
            }
            if let Some(t) = self.flow_target(e) {
                return Some(t);
            }
        }
        let bce = self
            .cache
            .iter()
            .filter(|b| b.is_active() && b.hnps.iter().any(|p| p.contains(&key.dst)))
            .min_by_key(|b| (b.bid_pri, b.bid))?;
        Some(FlowTarget::Forward(bce.proxy_coa))
    }

    /// The Flow Mobility Cache entry that decides where `key` goes: the
    /// first active one that matches, in FID-PRI order.
    pub fn deciding_entry(&self, key: &FlowKey) -> Option<&FmcEntry> {
        self.fmc.iter().find(|e| selector_matches(&e.selector, key) && self.flow_target(e).is_some())
    }

    /// An entry's target, or `None` when it is inactive.
    fn flow_target(&self, e: &FmcEntry) -> Option<FlowTarget> {
        let bce = e
            .bids
            .iter()
            .filter_map(|bid| self.cache.get(&e.mn_id, *bid))
            .filter(|b| b.is_active())
            .min_by_key(|b| (b.bid_pri, b.bid))?;
        Some(match e.action {
            FlowAction::Forward => FlowTarget::Forward(bce.proxy_coa),
            FlowAction::Drop => FlowTarget::Drop,
        })
    }

    pub fn state(&self) -> LmaState {
        LmaState {
            binding_cache: self.cache.rows(),
            flow_mobility_cache: self.fmc.rows(|mn, bid| self.bid_is_active(mn, bid)),
            pending: self.pending.iter().map(|p| p.describe()).collect(),
            heartbeats: self.heartbeats.rows(),
            two_level: self.two_level.as_ref().map(|t| t.table.rows.clone()).unwrap_or_default(),
            two_level_figure: self.two_level.as_ref().map(|t| t.figure()).unwrap_or_default(),
        }
    }
}
