//! LMA-initiated signalling: flow moves by FMI (draft §3.2, Fig 5), their
//! refresh and cancel, and Binding Revocation (RFC 5846) after a partial
//! handoff (draft Fig 4). Each request waits for its acknowledgement and
//! is retransmitted with backoff.

use std::net::Ipv6Addr;

use pmip_wire::{
    Bra, Bri, FlowIdentification, FlowSubOption, Fma, FmaStatus, Fmi, Message, MobilityOption, RevocationFlags,
    RevocationTrigger, TrafficSelector,
};

use super::{FlowAction, FmcEntry, Lma, LmaCommand, SignalledFlow};
use crate::flow::{prefix_selector, selector_destination};
use crate::output::Output;
use crate::prefix::Prefix;
use crate::signalling::{hnp, nai};
use crate::time::{Instant, Span};

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PendingKind {
    /// FMI[add]: commit the move when the FMA says success.
    FlowAdd {
        mn_id: String,
        fid: u16,
        to_bid: u16,
        from_bids: Vec<u16>,
        commit: bool,
    },
    FlowDelete {
        mn_id: String,
        fid: u16,
    },
    FlowRefresh {
        mn_id: String,
        fid: u16,
    },
    Revocation {
        mn_id: String,
        prefixes: Vec<Prefix>,
    },
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pending {
    pub sequence: u16,
    /// When the first transmission left: a MAG that acknowledges any
    /// transmission started its lifetime no earlier.
    pub first_sent: Instant,
    pub peer: Ipv6Addr,
    pub message: Message,
    pub kind: PendingKind,
    pub attempts: u32,
    pub retransmit_at: Instant,
}

impl Pending {
    pub fn describe(&self) -> String {
        format!("{} seq {} to {} (attempt {})", self.message.name(), self.sequence, self.peer, self.attempts + 1)
    }
}

pub(crate) const NEVER: Instant = Instant(u64::MAX);

impl Lma {
    pub(super) fn on_command(&mut self, now: Instant, c: LmaCommand, out: &mut Output) {
        match c {
            LmaCommand::BindFlow { mn_id, fid, fid_pri, selector, bids, action } => {
                // A bind sets the flow's BIDs with no signalling. Flow state
                // an earlier FMI left at a MAG under this FID (perhaps for
                // another flow: a prefix move picks FIDs itself) no longer
                // describes it; cancel it, described as it was sent.
                if let Some(s) = self.signalled.remove(&(mn_id.clone(), fid)) {
                    if let Some(msg) = self.fmi_del_message(&mn_id, fid, s.prefix_granularity) {
                        out.event(format!("{mn_id} FID {fid} is bound anew: FMI[del] to {}", s.mag));
                        self.start(now, s.mag, msg, PendingKind::FlowDelete { mn_id: mn_id.clone(), fid }, out);
                    }
                }
                out.event(format!("flow {mn_id} FID {fid} (FID-PRI {fid_pri}) bound to BIDs {bids:?}"));
                self.fmc.upsert(FmcEntry { mn_id, fid_pri, fid, selector, bids, action });
            }
            LmaCommand::MoveFlow { mn_id, fid, to_bid } => self.move_flow(now, &mn_id, fid, to_bid, None, out),
            LmaCommand::MovePrefix { mn_id, prefix, to_bid } => {
                let sel = prefix_selector(prefix);
                let known = self.fmc.iter().find(|e| e.mn_id == mn_id && e.selector == sel).map(|e| e.fid);
                let fid = match known {
                    Some(fid) => fid,
                    None => {
                        let Some(current) = self.cache.default_for_prefix(&prefix) else {
                            out.refuse(format!("cannot move {prefix} of {mn_id}: no binding carries it"));
                            return;
                        };
                        let bids = vec![current.bid];
                        let fid = self.fmc.next_fid(&mn_id);
                        let fid_pri =
                            self.fmc.iter().filter(|e| e.mn_id == mn_id).map(|e| e.fid_pri).max().unwrap_or(0) + 10;
                        self.fmc.upsert(FmcEntry {
                            mn_id: mn_id.clone(),
                            fid_pri,
                            fid,
                            selector: sel,
                            bids,
                            action: FlowAction::Forward,
                        });
                        fid
                    }
                };
                self.move_flow(now, &mn_id, fid, to_bid, Some(prefix), out);
            }
            LmaCommand::UnbindFlow { mn_id, fid } => {
                if self.fmc.get(&mn_id, fid).is_none() {
                    out.refuse(format!("cannot unbind {mn_id} FID {fid}: no such flow"));
                    return;
                }
                // The FMI[del] describes the flow, so build it while the entry exists.
                if let Some(s) = self.signalled.remove(&(mn_id.clone(), fid)) {
                    if let Some(msg) = self.fmi_del_message(&mn_id, fid, s.prefix_granularity) {
                        self.start(now, s.mag, msg, PendingKind::FlowDelete { mn_id: mn_id.clone(), fid }, out);
                    }
                }
                self.fmc.remove(&mn_id, fid);
                out.event(format!("flow {mn_id} FID {fid} unbound"));
            }
        }
    }

    fn move_flow(
        &mut self,
        now: Instant,
        mn_id: &str,
        fid: u16,
        to_bid: u16,
        prefix: Option<Prefix>,
        out: &mut Output,
    ) {
        let Some(entry) = self.fmc.get(mn_id, fid).cloned() else {
            out.refuse(format!("cannot move {mn_id} FID {fid}: it is not in the Flow Mobility Cache"));
            return;
        };
        let Some(target) = self.cache.get(mn_id, to_bid).filter(|b| b.is_active()).cloned() else {
            out.refuse(format!("cannot move {mn_id} FID {fid} to BID {to_bid}: no active binding has that BID"));
            return;
        };
        if entry.bids == [to_bid] {
            out.refuse(format!("{mn_id} FID {fid} is already bound to BID {to_bid}"));
            return;
        }
        let key = (mn_id.to_string(), fid);
        let in_flight = self
            .pending
            .iter()
            .any(|p| matches!(&p.kind, PendingKind::FlowAdd { mn_id: m, fid: f, .. } if *m == key.0 && *f == fid));
        if in_flight {
            // A second FMI[add] for the flow would race the first: the MAG
            // would refuse one (133) or apply both, and the LMA could lose
            // track of where the flow is.
            out.event(format!("{mn_id} FID {fid} is already being moved; the move to BID {to_bid} is not started"));
            return;
        }
        let dest = selector_destination(&entry.selector);
        let covered =
            dest.is_some_and(|d| target.hnps.iter().any(|h| h.prefix_len() <= d.prefix_len() && h.contains(&d.addr())));
        if covered {
            // Shared prefix (draft Fig 2): the target MAG already routes it.
            if let Some(e) = self.fmc.get_mut(mn_id, fid) {
                e.bids = vec![to_bid];
            }
            out.event(format!(
                "{mn_id} FID {fid} moved from BIDs {:?} to BID {to_bid} with no signalling: the target binding has its prefix",
                entry.bids
            ));
            self.cancel_elsewhere(now, mn_id, fid, target.proxy_coa, out);
            if self.config.notify_shared_moves {
                let msg = self.fmi_add_message(&entry, to_bid, prefix, false);
                let kind =
                    PendingKind::FlowAdd { mn_id: mn_id.into(), fid, to_bid, from_bids: entry.bids, commit: false };
                self.start(now, target.proxy_coa, msg, kind, out);
            }
            return;
        }
        // The target MAG keys flow state by FID, or by prefix at prefix
        // granularity, where two entries for one prefix share one state.
        let same_state = |(m, f): &(String, u16), s: &SignalledFlow| {
            m.as_str() == mn_id
                && s.mag == target.proxy_coa
                && (*f == fid || (prefix.is_some() && s.prefix_granularity == prefix))
        };
        if let Some(held) = self.signalled.iter().find(|(k, s)| same_state(k, s)).map(|(_, s)| s.clone()) {
            // The target MAG already holds the flow by an earlier FMI, for
            // another binding of the MN there; it routes the flow to the MN
            // whatever the BID, and an FMI[add] would be refused with 133.
            // When that state is another entry's (same prefix), this entry
            // records it as its own too, so that whatever ends it there
            // (that entry's FMI[del], its lifetime) ends this move as well.
            self.signalled.entry(key.clone()).or_insert(held);
            if let Some(e) = self.fmc.get_mut(mn_id, fid) {
                e.bids = vec![to_bid];
            }
            out.event(format!(
                "{mn_id} FID {fid} moved from BIDs {:?} to BID {to_bid} with no signalling: its MAG already holds it",
                entry.bids
            ));
            return;
        }
        if let TrafficSelector::Other { .. } | TrafficSelector::Ipv4(_) = entry.selector {
            out.event(format!("{mn_id} FID {fid} has a selector the target MAG may refuse (131); sending anyway"));
        }
        let msg = self.fmi_add_message(&entry, to_bid, prefix, false);
        out.event(format!("{mn_id} FID {fid}: FMI[add] to {} for BID {to_bid}", target.proxy_coa));
        let kind = PendingKind::FlowAdd { mn_id: mn_id.into(), fid, to_bid, from_bids: entry.bids, commit: true };
        self.start(now, target.proxy_coa, msg, kind, out);
    }

    /// Cancels flow state a MAG other than `keep` holds for this flow.
    fn cancel_elsewhere(&mut self, now: Instant, mn_id: &str, fid: u16, keep: Ipv6Addr, out: &mut Output) {
        let key = (mn_id.to_string(), fid);
        let Some(s) = self.signalled.get(&key).cloned() else {
            return;
        };
        if s.mag == keep {
            return;
        }
        self.signalled.remove(&key);
        if self.config.delete_at_old_mag {
            if let Some(msg) = self.fmi_del_message(mn_id, fid, s.prefix_granularity) {
                self.start(now, s.mag, msg, PendingKind::FlowDelete { mn_id: mn_id.into(), fid }, out);
            }
        }
    }

    fn flow_options(entry: &FmcEntry, bid: Option<u16>, prefix: Option<Prefix>) -> Vec<MobilityOption> {
        let mut options = vec![nai(&entry.mn_id)];
        match prefix {
            Some(p) => options.push(hnp(p)),
            None => {
                let mut sub_options = Vec::new();
                if let Some(b) = bid {
                    sub_options.push(FlowSubOption::BindingReference(vec![b]));
                }
                sub_options.push(FlowSubOption::TrafficSelector(entry.selector.clone()));
                options.push(MobilityOption::FlowIdentification(FlowIdentification {
                    fid: entry.fid,
                    fid_pri: entry.fid_pri,
                    status: 0,
                    sub_options,
                }));
            }
        }
        options
    }

    fn fmi_add_message(&mut self, entry: &FmcEntry, to_bid: u16, prefix: Option<Prefix>, refresh: bool) -> Message {
        Message::Fmi(Fmi {
            sequence: self.take_sequence(),
            cancel: false,
            refresh,
            lifetime: self.config.flow_lifetime_secs,
            options: Self::flow_options(entry, Some(to_bid), prefix),
        })
    }

    fn fmi_del_message(&mut self, mn_id: &str, fid: u16, prefix: Option<Prefix>) -> Option<Message> {
        let entry = self.fmc.get(mn_id, fid).cloned().or_else(|| {
            prefix.map(|p| FmcEntry {
                mn_id: mn_id.into(),
                fid_pri: 0,
                fid,
                selector: prefix_selector(p),
                bids: vec![],
                action: FlowAction::Forward,
            })
        })?;
        Some(Message::Fmi(Fmi {
            sequence: self.take_sequence(),
            cancel: true,
            refresh: false,
            lifetime: 0,
            options: Self::flow_options(&entry, None, prefix),
        }))
    }

    pub(super) fn send_bri(
        &mut self,
        now: Instant,
        mag: Ipv6Addr,
        mn_id: &str,
        prefixes: Vec<Prefix>,
        trigger: RevocationTrigger,
        out: &mut Output,
    ) {
        let mut options = vec![nai(mn_id)];
        options.extend(prefixes.iter().map(|p| hnp(*p)));
        let msg = Message::Bri(Bri {
            trigger,
            sequence: self.take_sequence(),
            flags: RevocationFlags { p: true, ..Default::default() },
            options,
        });
        self.start(now, mag, msg, PendingKind::Revocation { mn_id: mn_id.into(), prefixes }, out);
    }

    fn start(&mut self, now: Instant, peer: Ipv6Addr, message: Message, kind: PendingKind, out: &mut Output) {
        // At prefix granularity the MAG keys flow state by prefix: an
        // FMI[del] for one entry removes the state another entry for the
        // same prefix counts on there too.
        if let (PendingKind::FlowDelete { mn_id, fid }, Message::Fmi(f)) = (&kind, &message) {
            let deleted = f.options.iter().find_map(|o| match o {
                MobilityOption::HomeNetworkPrefix { prefix_len, prefix } => Some(Prefix::new(*prefix, *prefix_len)),
                _ => None,
            });
            if let Some(p) = deleted {
                let siblings: Vec<u16> = self
                    .signalled
                    .iter()
                    .filter(|((m, f), s)| m == mn_id && f != fid && s.mag == peer && s.prefix_granularity == Some(p))
                    .map(|((_, f), _)| *f)
                    .collect();
                for f in siblings {
                    self.fall_back(
                        mn_id,
                        f,
                        None,
                        &format!("the FMI[del] of {p} to {peer} removes its state too"),
                        out,
                    );
                }
            }
        }
        let sequence = match &message {
            Message::Fmi(f) => f.sequence,
            Message::Bri(b) => b.sequence,
            _ => 0,
        };
        out.send(self.config.address, peer, message.clone());
        self.pending.push(Pending {
            sequence,
            first_sent: now,
            peer,
            message,
            kind,
            attempts: 0,
            retransmit_at: now + self.config.backoff.delay(0),
        });
    }

    fn take_pending(&mut self, peer: Ipv6Addr, sequence: u16, is_bri: bool) -> Option<Pending> {
        let i = self
            .pending
            .iter()
            .position(|p| p.peer == peer && p.sequence == sequence && matches!(p.message, Message::Bri(_)) == is_bri)?;
        Some(self.pending.remove(i))
    }

    fn refresh_delay(&self) -> Option<Span> {
        let l = self.config.flow_lifetime_secs;
        (l != 0xffff && l != 0).then(|| Span::from_secs(u64::from(l)).scale(4, 5))
    }

    /// When flow state a MAG took from an FMI first sent at `sent` runs
    /// out there; `None` when it never does (draft §4.1: 0xffff).
    fn flow_expiry(&self, sent: Instant) -> Option<Instant> {
        let l = self.config.flow_lifetime_secs;
        (l != 0xffff).then(|| sent + Span::from_secs(u64::from(l)))
    }

    /// When to refresh flow state a MAG acknowledged now for an FMI first
    /// sent at `sent`, and when it runs out there at the earliest. If that
    /// earliest expiry has already passed, the MAG cannot have kept the
    /// state from the first transmission: it applied a later repeat, at a
    /// time the LMA cannot tell, so it refreshes at once to know again.
    fn timers_after_ack(&self, now: Instant, sent: Instant) -> (Instant, Option<Instant>) {
        match (self.refresh_delay(), self.flow_expiry(sent)) {
            (Some(_), Some(e)) if e <= now => {
                (now, Some(now + Span::from_secs(u64::from(self.config.flow_lifetime_secs))))
            }
            (Some(d), e) => ((sent + d).max(now), e),
            (None, e) => (NEVER, e),
        }
    }

    /// The flow state the LMA put at a MAG is gone (refused, expired,
    /// unreachable or the MN left that MAG). The Flow Mobility Cache
    /// entry must stop naming that MAG's binding, or the LMA would keep
    /// tunnelling the flow to a MAG with no route for it: a black hole.
    /// It falls back to the flow's default binding, the one whose
    /// prefixes cover the flow's destination: that MAG routes the prefix
    /// from its PBA alone, so the fallback needs no signalling that could
    /// fail in turn, and it is where the flow went before any move. With
    /// no such binding the entry names no BID and the flow follows the
    /// prefix routes. `leaving` is a binding about to go, never chosen.
    pub(crate) fn fall_back(&mut self, mn_id: &str, fid: u16, leaving: Option<u16>, why: &str, out: &mut Output) {
        self.signalled.remove(&(mn_id.to_string(), fid));
        self.pending
            .retain(|p| !matches!(&p.kind, PendingKind::FlowRefresh { mn_id: m, fid: f } if m == mn_id && *f == fid));
        let Some(entry) = self.fmc.get(mn_id, fid) else {
            return;
        };
        let dest = selector_destination(&entry.selector);
        let home = dest.and_then(|d| {
            self.cache
                .of_mn(mn_id)
                .filter(|b| b.is_active() && Some(b.bid) != leaving)
                .filter(|b| b.hnps.iter().any(|h| h.prefix_len() <= d.prefix_len() && h.contains(&d.addr())))
                .min_by_key(|b| (b.bid_pri, b.bid))
                .map(|b| b.bid)
        });
        let bids: Vec<u16> = home.into_iter().collect();
        out.event(format!(
            "{mn_id} FID {fid}: {why}; the flow falls back from BIDs {:?} to {}",
            entry.bids,
            match home {
                Some(b) => format!("its default binding, BID {b}"),
                None => "the prefix routes (no binding carries its destination)".into(),
            }
        ));
        if let Some(e) = self.fmc.get_mut(mn_id, fid) {
            e.bids = bids;
        }
    }

    /// Falls back every flow whose state at its MAG has run out by now
    /// with no acknowledged refresh.
    pub(super) fn expire_signalled(&mut self, now: Instant, out: &mut Output) {
        let gone: Vec<(String, u16)> = self
            .signalled
            .iter()
            .filter(|(_, s)| s.expires_at.is_some_and(|t| t <= now))
            .map(|(k, _)| k.clone())
            .collect();
        for (mn_id, fid) in gone {
            self.fall_back(&mn_id, fid, None, "its flow state at the MAG ran out unrefreshed", out);
        }
    }

    /// The MN's binding `bid` is going (de-registered or expired). A MAG
    /// drops the flow state of an MN that leaves it, so the flows the LMA
    /// moved there by FMI are gone with it, unless another binding of the
    /// MN stays at that MAG.
    pub(crate) fn forget_flows_at_binding(&mut self, mn_id: &str, bid: u16, out: &mut Output) {
        let Some(mag) = self.cache.get(mn_id, bid).map(|b| b.proxy_coa) else {
            return;
        };
        if self.cache.of_mn(mn_id).any(|b| b.bid != bid && b.is_active() && b.proxy_coa == mag) {
            return;
        }
        let fids: Vec<u16> =
            self.signalled.iter().filter(|((m, _), s)| m == mn_id && s.mag == mag).map(|((_, f), _)| *f).collect();
        for fid in fids {
            self.fall_back(mn_id, fid, Some(bid), &format!("the MN left {mag}, which held it"), out);
        }
    }

    pub(super) fn on_fma(&mut self, now: Instant, src: Ipv6Addr, fma: Fma, out: &mut Output) {
        let Some(p) = self.take_pending(src, fma.sequence, false) else {
            out.event(format!("FMA seq {} from {src} matches no FMI in flight; ignored", fma.sequence));
            return;
        };
        let ok = fma.status == FmaStatus::Success;
        match p.kind {
            PendingKind::FlowAdd { mn_id, fid, to_bid, from_bids, commit } => {
                // 133: the MAG holds the flow already (an earlier FMI whose
                // answer was lost, or sent before this LMA restarted); the
                // state the move asks for is there.
                let held = fma.status == FmaStatus::FlowMobilityCacheEntryExists;
                if held {
                    out.event(format!("FMA from {src}: it already holds {mn_id} FID {fid} (133); taken as done"));
                }
                if !ok && !held {
                    out.event(format!(
                        "FMA from {src} refused {mn_id} FID {fid} with {} ({:?}); the flow stays on BIDs {from_bids:?}",
                        fma.status.value(),
                        fma.status
                    ));
                    return;
                }
                // A bind may have given the FID another flow while the FMI
                // was in flight: the MAG installed the old one, which no
                // entry describes now. Undo it there instead of committing.
                let sent_selector = match &p.message {
                    Message::Fmi(f) => f.options.iter().find_map(|o| match o {
                        MobilityOption::HomeNetworkPrefix { prefix_len, prefix } => {
                            Some(prefix_selector(Prefix::new(*prefix, *prefix_len)))
                        }
                        MobilityOption::FlowIdentification(fi) => fi.sub_options.iter().find_map(|x| match x {
                            FlowSubOption::TrafficSelector(t) => Some(t.clone()),
                            _ => None,
                        }),
                        _ => None,
                    }),
                    _ => None,
                };
                if self.fmc.get(&mn_id, fid).map(|e| &e.selector) != sent_selector.as_ref() {
                    out.event(format!(
                        "FMA from {src} for {mn_id} FID {fid}, which was bound anew meanwhile; undoing it there"
                    ));
                    if let Message::Fmi(f) = &p.message {
                        let msg = Message::Fmi(Fmi {
                            sequence: self.take_sequence(),
                            cancel: true,
                            refresh: false,
                            lifetime: 0,
                            options: f.options.clone(),
                        });
                        self.start(now, src, msg, PendingKind::FlowDelete { mn_id: mn_id.clone(), fid }, out);
                    }
                    return;
                }
                // The binding may have gone while the FMI was in flight: a
                // flow committed to it would name a dead (or, later, a
                // reused) BID.
                if !self.cache.get(&mn_id, to_bid).is_some_and(|b| b.is_active() && b.proxy_coa == src) {
                    out.event(format!(
                        "FMA from {src} accepted {mn_id} FID {fid}, but BID {to_bid} is no longer active there; the move is abandoned"
                    ));
                    // While the MN is still at that MAG through another
                    // binding, the state the FMI left there stays: delete
                    // it. Once the MN is gone, so is the state.
                    let still_there = self.cache.of_mn(&mn_id).any(|b| b.is_active() && b.proxy_coa == src);
                    let held_before = self.signalled.get(&(mn_id.clone(), fid)).is_some_and(|s| s.mag == src);
                    let prefix = match &p.message {
                        Message::Fmi(f) => f.options.iter().find_map(|o| match o {
                            MobilityOption::HomeNetworkPrefix { prefix_len, prefix } => {
                                Some(Prefix::new(*prefix, *prefix_len))
                            }
                            _ => None,
                        }),
                        _ => None,
                    };
                    if still_there && !held_before {
                        if let Some(msg) = self.fmi_del_message(&mn_id, fid, prefix) {
                            self.start(now, src, msg, PendingKind::FlowDelete { mn_id: mn_id.clone(), fid }, out);
                        }
                    }
                    return;
                }
                if commit {
                    if let Some(e) = self.fmc.get_mut(&mn_id, fid) {
                        e.bids = vec![to_bid];
                    }
                    out.event(format!(
                        "{mn_id} FID {fid} moved from BIDs {from_bids:?} to BID {to_bid} (FMA from {src})"
                    ));
                }
                let prefix = match &p.message {
                    Message::Fmi(f) => f.options.iter().find_map(|o| match o {
                        MobilityOption::HomeNetworkPrefix { prefix_len, prefix } => {
                            Some(Prefix::new(*prefix, *prefix_len))
                        }
                        _ => None,
                    }),
                    _ => None,
                };
                // Every MAG the flow leaves gets one FMI[del]: the one that
                // held it by an earlier FMI and, for a committed move, those
                // of the bindings it was bound to. One MAG can be both.
                // Each FMI[del] describes the flow as that MAG holds it: by
                // the granularity of the FMI that put it there.
                let mut old_mags: Vec<(Ipv6Addr, Option<Prefix>)> = Vec::new();
                let key = (mn_id.clone(), fid);
                if let Some(s) = self.signalled.get(&key).filter(|s| s.mag != src) {
                    old_mags.push((s.mag, s.prefix_granularity));
                    self.signalled.remove(&key);
                }
                // A MAG of an old binding holds the flow only if it routes
                // the flow's destination natively (draft Fig 5's MAG2); a
                // flow merely bound to it left nothing there to delete, and
                // an FMI[del] would be refused with 132.
                let dest = self.fmc.get(&mn_id, fid).and_then(|e| selector_destination(&e.selector));
                if commit {
                    for b in from_bids.iter().filter_map(|b| self.cache.get(&mn_id, *b)) {
                        let native = dest.is_some_and(|d| {
                            self.cache.of_mn(&mn_id).any(|x| {
                                x.is_active()
                                    && x.proxy_coa == b.proxy_coa
                                    && x.hnps.iter().any(|h| h.prefix_len() <= d.prefix_len() && h.contains(&d.addr()))
                            })
                        });
                        if native && b.proxy_coa != src && !old_mags.iter().any(|(m, _)| *m == b.proxy_coa) {
                            old_mags.push((b.proxy_coa, prefix));
                        }
                    }
                }
                if self.config.flow_lifetime_secs != 0 {
                    let (refresh_at, expires_at) = self.timers_after_ack(now, p.first_sent);
                    self.signalled
                        .insert(key, SignalledFlow { mag: src, refresh_at, expires_at, prefix_granularity: prefix });
                }
                if self.config.delete_at_old_mag {
                    for (mag, granularity) in old_mags {
                        if let Some(msg) = self.fmi_del_message(&mn_id, fid, granularity) {
                            out.event(format!("{mn_id} FID {fid}: FMI[del] to {mag}"));
                            self.start(now, mag, msg, PendingKind::FlowDelete { mn_id: mn_id.clone(), fid }, out);
                        }
                    }
                }
            }
            PendingKind::FlowDelete { mn_id, fid } => out.event(format!(
                "FMA for FMI[del] of {mn_id} FID {fid} from {src}: {} ({:?})",
                fma.status.value(),
                fma.status
            )),
            PendingKind::FlowRefresh { mn_id, fid } => {
                let key = (mn_id.clone(), fid);
                if ok {
                    let (refresh_at, expires_at) = self.timers_after_ack(now, p.first_sent);
                    if let Some(s) = self.signalled.get_mut(&key) {
                        s.refresh_at = refresh_at;
                        s.expires_at = expires_at;
                    }
                } else {
                    // Typically 132: the MAG let the flow state expire
                    // before a refresh got through.
                    let why = format!("its refresh at {src} was refused with {}", fma.status.value());
                    self.fall_back(&mn_id, fid, None, &why, out);
                }
            }
            PendingKind::Revocation { .. } => {}
        }
    }

    pub(super) fn on_bra(&mut self, src: Ipv6Addr, bra: Bra, out: &mut Output) {
        match self.take_pending(src, bra.sequence, true) {
            Some(p) => {
                if let PendingKind::Revocation { mn_id, prefixes } = p.kind {
                    out.event(format!(
                        "BRA from {src} for {mn_id} [{}]: {} ({:?})",
                        prefixes.iter().map(|p| p.to_string()).collect::<Vec<_>>().join(", "),
                        bra.status.value(),
                        bra.status
                    ));
                }
            }
            None => out.event(format!("BRA seq {} from {src} matches no BRI in flight; ignored", bra.sequence)),
        }
    }

    pub(super) fn retransmit_due(&mut self, now: Instant, out: &mut Output) {
        let backoff = self.config.backoff;
        let mut unanswered_refreshes = Vec::new();
        let mut i = 0;
        while i < self.pending.len() {
            if self.pending[i].retransmit_at > now {
                i += 1;
                continue;
            }
            if self.pending[i].attempts >= backoff.max_retries {
                let p = self.pending.remove(i);
                out.event(format!("gave up on {}: no answer after {} transmissions", p.describe(), p.attempts + 1));
                if let PendingKind::FlowRefresh { mn_id, fid } = p.kind {
                    unanswered_refreshes.push((mn_id, fid));
                }
                continue;
            }
            let p = &mut self.pending[i];
            p.attempts += 1;
            p.retransmit_at = now + backoff.delay(p.attempts);
            out.event(format!("retransmitting {}", p.describe()));
            out.send(self.config.address, p.peer, p.message.clone());
            i += 1;
        }
        for (mn_id, fid) in unanswered_refreshes {
            self.fall_back(&mn_id, fid, None, "its refresh went unanswered", out);
        }
    }

    pub(super) fn refresh_due(&mut self, now: Instant, out: &mut Output) {
        let due: Vec<((String, u16), SignalledFlow)> =
            self.signalled.iter().filter(|(_, s)| s.refresh_at <= now).map(|(k, s)| (k.clone(), s.clone())).collect();
        for ((mn_id, fid), s) in due {
            let Some(entry) = self.fmc.get(&mn_id, fid).cloned() else {
                self.signalled.remove(&(mn_id, fid));
                continue;
            };
            if let Some(x) = self.signalled.get_mut(&(mn_id.clone(), fid)) {
                x.refresh_at = NEVER;
            }
            let to_bid = entry.bids.first().copied().unwrap_or(0);
            let msg = self.fmi_add_message(&entry, to_bid, s.prefix_granularity, true);
            self.start(now, s.mag, msg, PendingKind::FlowRefresh { mn_id, fid }, out);
        }
    }
}

impl Lma {
    /// Flows moved to a binding a PBU just created, told to its MAG by
    /// Flow Identification options in the PBA (flow mobility draft §3.2,
    /// after Figure 4): those the MN's policy moves to the interface that
    /// attached, and those the MAG asked for in its PBU when the policy
    /// grants such requests. A flow the LMA does not know yet is taken from
    /// the request's traffic selector. The PBA is the MAG's instruction and
    /// no FMA follows, so each move is committed at once.
    pub(super) fn flows_to_new_binding(
        &mut self,
        now: Instant,
        mag: Ipv6Addr,
        bid: u16,
        o: &crate::signalling::Picked,
        out: &mut Output,
    ) -> Vec<MobilityOption> {
        let Some(mn_id) = o.mn_id.clone() else {
            return Vec::new();
        };
        let Some(policy) = self.policy(&mn_id).cloned() else {
            return Vec::new();
        };
        let mut wanted: Vec<(u16, Option<&pmip_wire::FlowIdentification>)> = policy
            .flows_on_attach
            .iter()
            .filter(|(ll, _)| o.mn_ll_id.as_ref() == Some(ll))
            .map(|(_, fid)| (*fid, None))
            .collect();
        for fi in &o.flows {
            if !policy.grant_flow_requests {
                out.event(format!("{mag} asks for {mn_id} FID {} in its PBU: the policy grants no requests", fi.fid));
                continue;
            }
            if !wanted.iter().any(|(f, _)| *f == fi.fid) {
                wanted.push((fi.fid, Some(fi)));
            }
        }
        let mut options = Vec::new();
        for (fid, request) in wanted {
            let entry = match (self.fmc.get(&mn_id, fid).cloned(), request.and_then(|r| r.traffic_selector())) {
                (Some(e), _) => e,
                (None, Some(selector)) => FmcEntry {
                    mn_id: mn_id.clone(),
                    fid_pri: request.map_or(fid, |r| r.fid_pri),
                    fid,
                    selector: selector.clone(),
                    bids: vec![bid],
                    action: FlowAction::Forward,
                },
                (None, None) => {
                    out.event(format!("{mn_id} FID {fid} is not in the Flow Mobility Cache: not moved in the PBA"));
                    continue;
                }
            };
            let in_flight = self
                .pending
                .iter()
                .any(|p| matches!(&p.kind, PendingKind::FlowAdd { mn_id: m, fid: f, .. } if *m == mn_id && *f == fid));
            if in_flight {
                out.event(format!("{mn_id} FID {fid} is being moved by FMI: not moved in the PBA"));
                continue;
            }
            self.cancel_elsewhere(now, &mn_id, fid, mag, out);
            let mut moved = entry.clone();
            moved.bids = vec![bid];
            self.fmc.upsert(moved);
            self.signalled.insert(
                (mn_id.clone(), fid),
                SignalledFlow { mag, refresh_at: NEVER, expires_at: None, prefix_granularity: None },
            );
            out.event(format!(
                "{mn_id} FID {fid} moved from BIDs {:?} to the new BID {bid} at {mag}, told in the PBA",
                entry.bids
            ));
            // The option without the MN Identifier flow_options starts with.
            options.extend(Self::flow_options(&entry, Some(bid), None).into_iter().skip(1));
        }
        options
    }
}
