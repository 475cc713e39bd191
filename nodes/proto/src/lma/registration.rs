//! PBU processing (RFC 5213 §5.3) with the binding cache lookup of §5.4
//! extended for multiple bindings per MN and the partial handoff of the
//! flow mobility slides.

use std::collections::BTreeSet;
use std::net::Ipv6Addr;

use pmip_wire::{HandoffIndicator, Message, MobilityOption, Pba, PbaFlags, PbaStatus, Pbu, RevocationTrigger};

use super::{Bce, BceState, Lma, PrefixModel};
use crate::output::{Output, PbuAccepted};
use crate::prefix::Prefix;
use crate::signalling::{hnp, nai, pick, timestamp_at, timestamp_micros, Picked};
use crate::time::{Instant, Span};

/// What the binding cache lookup decided for a PBU.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Lookup {
    Existing(u16),
    New,
    /// Create a binding for the new interface and move these prefixes to
    /// it from the binding that holds them, if any.
    Partial(Vec<(Prefix, Option<u16>)>),
}

struct Accepted {
    bid: u16,
    lifetime_units: u16,
    hnps: Vec<Prefix>,
    /// A binding this PBU created (not a refresh, a handoff or a
    /// de-registration): flows may move to it in the PBA.
    created: bool,
    /// Flow Identification options for the PBA: the flows moved to this
    /// binding.
    flows: Vec<MobilityOption>,
}

/// The fields of an existing entry that the replay and de-registration
/// checks read.
struct Seen {
    bid: u16,
    proxy_coa: Ipv6Addr,
    last_sequence: u16,
    last_timestamp: Option<pmip_wire::Timestamp>,
}

/// Whether two prefix lists hold the same set, duplicates aside. Lists of
/// a few prefixes: comparing each with each allocates nothing.
fn same_set(a: &[Prefix], b: &[Prefix]) -> bool {
    a.iter().all(|p| b.contains(p)) && b.iter().all(|p| a.contains(p))
}

impl Lma {
    pub(super) fn on_pbu(&mut self, now: Instant, src: Ipv6Addr, pbu: Pbu, out: &mut Output) {
        let opts = pick(&pbu.options);
        // Looked up once, here, for both the 2-level check and `register`.
        let policy = opts.mn_id.as_deref().and_then(|m| self.shared_policy(m));
        let two_level = policy.as_ref().is_some_and(|p| p.model == PrefixModel::TwoLevel);
        if let (true, Some(t)) = (two_level, self.two_level.as_mut()) {
            let pba = t.on_pbu(now, src, &pbu, out);
            out.send(self.config.address, src, Message::Pba(pba));
            return;
        }
        let mut result = self.register(now, src, &pbu, &opts, policy, out);
        if let Ok(a) = &mut result {
            if a.created {
                a.flows = self.flows_to_new_binding(now, src, a.bid, &opts, out);
            }
        }
        let pba = self.build_pba(now, &pbu, &opts, &result);
        match result {
            Ok(a) => out.note(PbuAccepted {
                sequence: pbu.sequence,
                src,
                mn_id: opts.mn_id,
                bid: a.bid,
                hnps: a.hnps,
                lifetime_secs: u32::from(a.lifetime_units) * 4,
            }),
            Err(s) => out.event(format!(
                "PBU seq {} from {src} for {}: rejected with {} ({s:?})",
                pbu.sequence,
                opts.mn_id.as_deref().unwrap_or("?"),
                s.value()
            )),
        }
        out.send(self.config.address, src, Message::Pba(pba));
        // Draft Figure 4: the BRI to the old MAG follows the PBA.
        for (mag, mn_id, prefixes, trigger) in std::mem::take(&mut self.revocations) {
            self.send_bri(now, mag, &mn_id, prefixes, trigger, out);
        }
    }

    fn build_pba(&self, now: Instant, pbu: &Pbu, o: &Picked, result: &Result<Accepted, PbaStatus>) -> Pba {
        // At most one of each option the PBU had, plus its prefixes and flows.
        let mut options = Vec::with_capacity(8 + o.hnps.len().max(1) + o.flows.len());
        if let Some(id) = &o.mn_id {
            options.push(nai(id));
        }
        match result {
            Ok(a) => {
                options.extend(a.hnps.iter().map(|p| hnp(*p)));
                options.extend(a.flows.iter().cloned());
            }
            Err(_) => options
                .extend(pbu.options.iter().filter(|x| matches!(x, MobilityOption::HomeNetworkPrefix { .. })).cloned()),
        }
        if let Some(hi) = o.hi {
            options.push(MobilityOption::HandoffIndicator(hi));
        }
        if let Some(att) = o.att {
            options.push(MobilityOption::AccessTechnologyType(att));
        }
        if let Some(l) = &o.mn_ll_id {
            options.push(MobilityOption::MnLinkLayerIdentifier(l.clone()));
        }
        // RFC 5213 §5.5: a PBA rejecting a timestamp carries the LMA's time.
        let ts = match result {
            Err(PbaStatus::TimestampMismatch) => Some(timestamp_at(now, self.config.epoch_offset_micros)),
            _ => o.timestamp,
        };
        if let Some(ts) = ts {
            options.push(MobilityOption::Timestamp(ts));
        }
        if let Some(ll) = o.link_local {
            options.push(MobilityOption::LinkLocalAddress(ll));
        }
        let (status, lifetime) = match result {
            Ok(a) => (PbaStatus::Accepted, a.lifetime_units),
            Err(s) => (*s, 0),
        };
        Pba { status, flags: PbaFlags { p: true, ..Default::default() }, sequence: pbu.sequence, lifetime, options }
    }

    /// Checks a PBU and updates the binding cache; the error is the PBA status.
    fn register(
        &mut self,
        now: Instant,
        src: Ipv6Addr,
        pbu: &Pbu,
        o: &Picked,
        policy: Option<std::sync::Arc<super::MnPolicy>>,
        out: &mut Output,
    ) -> Result<Accepted, PbaStatus> {
        if !self.config.authorized_mags.contains(&src) {
            return Err(PbaStatus::MagNotAuthorizedForProxyReg);
        }
        let mn_id: &str = o.mn_id.as_deref().ok_or(PbaStatus::MissingMnIdentifierOption)?;
        let policy = policy.ok_or(PbaStatus::ProxyRegNotEnabled)?;
        if !pbu.flags.p || !policy.proxy_enabled {
            return Err(PbaStatus::ProxyRegNotEnabled);
        }
        if policy.served_by.is_some_and(|l| l != self.config.address) {
            return Err(PbaStatus::NotLmaForThisMobileNode);
        }
        if policy.prohibited {
            return Err(PbaStatus::AdministrativelyProhibited);
        }
        if !o.hnp_present {
            return Err(PbaStatus::MissingHomeNetworkPrefixOption);
        }
        let hi = o.hi.ok_or(PbaStatus::MissingHandoffIndicatorOption)?;
        let att = o.att.ok_or(PbaStatus::MissingAccessTechTypeOption)?;
        if let Some(p) = o.hnps.iter().find(|p| !policy.owns(p)) {
            out.event(format!("{mn_id} asked for {p}, which its policy does not give it"));
            return Err(PbaStatus::NotAuthorizedForHomeNetworkPrefix);
        }
        if self.config.use_timestamps {
            let ts = o.timestamp.ok_or(PbaStatus::TimestampMismatch)?;
            let ours = now.0 + self.config.epoch_offset_micros;
            if timestamp_micros(ts).abs_diff(ours) > self.config.timestamp_window.0 {
                return Err(PbaStatus::TimestampMismatch);
            }
        }

        let lookup = self.lookup(mn_id, src, hi, att, o, &policy)?;
        // What the checks below read of the entry, copied rather than the
        // whole entry (its prefixes and identifiers are heap values).
        let existing = match &lookup {
            Lookup::Existing(bid) => self.cache.get(mn_id, *bid).map(|b| Seen {
                bid: b.bid,
                proxy_coa: b.proxy_coa,
                last_sequence: b.last_sequence,
                last_timestamp: b.last_timestamp,
            }),
            _ => None,
        };
        if let Some(b) = &existing {
            if self.config.use_timestamps {
                if let (Some(prev), Some(ts)) = (b.last_timestamp, o.timestamp) {
                    // Equal stamps from another MAG are a handoff race, not a
                    // replay; nor is the very PBU accepted last (same MAG,
                    // sequence number and stamp), which only the network can
                    // have duplicated: answering it 157 could overtake the
                    // first answer and undo the registration at the MAG.
                    let duplicate = ts == prev && b.proxy_coa == src && pbu.sequence == b.last_sequence;
                    if ts < prev || (ts == prev && b.proxy_coa == src && !duplicate) {
                        return Err(PbaStatus::TimestampLowerThanPrevAccepted);
                    }
                }
            } else {
                let d = pbu.sequence.wrapping_sub(b.last_sequence);
                if d == 0 || d >= 0x8000 {
                    return Err(PbaStatus::SequenceNumberOutOfWindow);
                }
            }
        }
        let lifetime_secs = (u32::from(pbu.lifetime) * 4).min(self.config.max_lifetime_secs);
        let lifetime_units = (lifetime_secs / 4) as u16;

        // De-registration (RFC 5213 §5.3.5).
        if pbu.lifetime == 0 {
            let Some(b) = existing else {
                out.event(format!("de-registration for {mn_id} from {src} matched no binding"));
                return Ok(Accepted { bid: 0, lifetime_units: 0, hnps: o.hnps.clone(), created: false, flows: vec![] });
            };
            let hnps = self.cache.get(mn_id, b.bid).map(|e| e.hnps.clone()).unwrap_or_default();
            if b.proxy_coa != src {
                out.event(format!(
                    "de-registration for {mn_id} BID {} from {src} ignored: the binding is now at {}",
                    b.bid, b.proxy_coa
                ));
                return Ok(Accepted { bid: b.bid, lifetime_units: 0, hnps, created: false, flows: vec![] });
            }
            let delay = self.config.min_delay_before_bce_delete;
            self.forget_flows_at_binding(mn_id, b.bid, out);
            if let Some(mut e) = self.cache.get_mut(mn_id, b.bid) {
                e.state = BceState::Deregistered;
                e.expires_at = now + delay;
                e.last_sequence = pbu.sequence;
                e.last_timestamp = o.timestamp;
            }
            out.event(format!("binding {mn_id} BID {} de-registered by {src}", b.bid));
            return Ok(Accepted { bid: b.bid, lifetime_units: 0, hnps, created: false, flows: vec![] });
        }

        // Entries in their de-registration grace period hold a place too.
        let in_use = self.cache.len();
        let fresh = |bid: u16, hnps: Vec<Prefix>| Bce {
            bid,
            bid_pri: (10 * (u32::from(bid) + 1)).min(127) as u8,
            mn_id: mn_id.to_string(),
            att,
            mn_ll_id: o.mn_ll_id.clone(),
            hnps,
            proxy_coa: src,
            link_local: o.link_local,
            lifetime_secs,
            registered_at: now,
            expires_at: now + Span::from_secs(u64::from(lifetime_secs)),
            last_sequence: pbu.sequence,
            last_timestamp: o.timestamp,
            state: BceState::Active,
        };
        match lookup {
            Lookup::Existing(bid) => {
                let mut e = self.cache.get_mut(mn_id, bid).ok_or(PbaStatus::ReasonUnspecified)?;
                if e.proxy_coa != src {
                    out.event(format!("binding {mn_id} BID {bid} handed off from {} to {src}", e.proxy_coa));
                }
                e.proxy_coa = src;
                e.att = att;
                e.mn_ll_id = o.mn_ll_id.clone();
                e.link_local = o.link_local;
                e.lifetime_secs = lifetime_secs;
                e.expires_at = now + Span::from_secs(u64::from(lifetime_secs));
                e.last_sequence = pbu.sequence;
                e.last_timestamp = o.timestamp;
                e.state = BceState::Active;
                Ok(Accepted { bid, lifetime_units, hnps: e.hnps.clone(), created: false, flows: vec![] })
            }
            Lookup::New => {
                if in_use >= self.config.max_bindings {
                    return Err(PbaStatus::InsufficientResources);
                }
                let hnps = if o.hnps.is_empty() { self.allocate(mn_id, &policy)? } else { o.hnps.clone() };
                let bid = self.cache.next_bid(mn_id, self.fmc.bids_of(mn_id));
                let bce = fresh(bid, hnps.clone());
                self.cache.insert(bce);
                Ok(Accepted { bid, lifetime_units, hnps, created: true, flows: vec![] })
            }
            Lookup::Partial(moves) => {
                if in_use >= self.config.max_bindings {
                    return Err(PbaStatus::InsufficientResources);
                }
                let bid = self.cache.next_bid(mn_id, self.fmc.bids_of(mn_id));
                let mut revoke: Vec<(Ipv6Addr, Vec<Prefix>, bool)> = Vec::new();
                for (p, from) in &moves {
                    let Some(from) = from else { continue };
                    if let Some(mut old) = self.cache.get_mut(mn_id, *from) {
                        old.hnps.retain(|x| x != p);
                        out.event(format!("partial handoff: {p} moves from {mn_id} BID {from} to BID {bid}"));
                        let same_att = old.att == att;
                        match revoke.iter_mut().find(|(m, _, _)| *m == old.proxy_coa) {
                            Some(r) => r.1.push(*p),
                            None => revoke.push((old.proxy_coa, vec![*p], same_att)),
                        }
                    }
                }
                let hnps: Vec<Prefix> = moves.iter().map(|(p, _)| *p).collect();
                let bce = fresh(bid, hnps.clone());
                self.cache.insert(bce);
                if self.config.revoke_on_partial_handoff {
                    for (mag, prefixes, same_att) in revoke {
                        let trigger = if same_att {
                            RevocationTrigger::InterMagHandoverSameAccessType
                        } else {
                            RevocationTrigger::InterMagHandoverDifferentAccessType
                        };
                        self.revocations.push((mag, mn_id.to_string(), prefixes, trigger));
                    }
                }
                Ok(Accepted { bid, lifetime_units, hnps, created: true, flows: vec![] })
            }
        }
    }

    /// Prefixes for a new attachment, by the MN's prefix model.
    fn allocate(&self, mn_id: &str, policy: &super::MnPolicy) -> Result<Vec<Prefix>, PbaStatus> {
        let in_use: BTreeSet<Prefix> =
            self.cache.of_mn(mn_id).filter(|b| b.is_active()).flat_map(|b| b.hnps.iter().copied()).collect();
        let mut hnps = Vec::new();
        if matches!(policy.model, PrefixModel::Shared | PrefixModel::Hybrid) {
            hnps.extend(policy.shared_prefixes.iter().copied());
        }
        if matches!(policy.model, PrefixModel::Unique | PrefixModel::Hybrid) {
            let free: Vec<Prefix> = policy
                .unique_prefixes
                .iter()
                .filter(|p| !in_use.contains(p))
                .take(policy.per_attachment)
                .copied()
                .collect();
            if free.len() < policy.per_attachment.min(1) {
                return Err(PbaStatus::InsufficientResources);
            }
            hnps.extend(free);
        }
        if hnps.is_empty() {
            return Err(PbaStatus::InsufficientResources);
        }
        Ok(hnps)
    }

    /// The binding cache lookup (RFC 5213 §5.4.1, multihoming aware).
    fn lookup(
        &self,
        mn_id: &str,
        src: Ipv6Addr,
        hi: HandoffIndicator,
        att: pmip_wire::AccessTechnologyType,
        o: &Picked,
        policy: &super::MnPolicy,
    ) -> Result<Lookup, PbaStatus> {
        let bces: Vec<&Bce> = self.cache.of_mn(mn_id).collect();
        let same_link = bces.iter().find(|b| b.proxy_coa == src && b.mn_ll_id == o.mn_ll_id && b.att == att);
        if let Some(b) = same_link {
            if !o.hnps.is_empty() && !same_set(&o.hnps, &b.hnps) {
                return Err(PbaStatus::BcePbuPrefixSetDoNotMatch);
            }
            return Ok(Lookup::Existing(b.bid));
        }
        if hi == self.config.partial_handoff_hi && !o.hnps.is_empty() {
            let moves = o
                .hnps
                .iter()
                .map(|p| (*p, bces.iter().find(|b| b.is_active() && b.hnps.contains(p)).map(|b| b.bid)))
                .collect();
            return Ok(Lookup::Partial(moves));
        }
        if hi == HandoffIndicator::NewInterface {
            for p in &o.hnps {
                if !policy.is_shared(p) && bces.iter().any(|b| b.is_active() && b.hnps.contains(p)) {
                    return Err(PbaStatus::BcePbuPrefixSetDoNotMatch);
                }
            }
            return Ok(Lookup::New);
        }
        // A handoff (HI 2, 3), unknown (4) or unchanged (5) attachment.
        let by_prefix: Vec<&&Bce> =
            if o.hnps.is_empty() { Vec::new() } else { bces.iter().filter(|b| same_set(&b.hnps, &o.hnps)).collect() };
        if !o.hnps.is_empty() && by_prefix.is_empty() && bces.iter().any(|b| o.hnps.iter().any(|p| b.hnps.contains(p)))
        {
            return Err(PbaStatus::BcePbuPrefixSetDoNotMatch);
        }
        let candidates: Vec<&&Bce> = if !by_prefix.is_empty() {
            by_prefix
        } else if hi == HandoffIndicator::BetweenMags {
            bces.iter().filter(|b| b.mn_ll_id == o.mn_ll_id && b.att == att).collect()
        } else {
            bces.iter().filter(|b| b.att == att).collect()
        };
        match candidates.as_slice() {
            [one] => Ok(Lookup::Existing(one.bid)),
            [] => Ok(Lookup::New),
            many => Ok(Lookup::Existing(
                many.iter().min_by_key(|b| (std::cmp::Reverse(b.is_active()), b.bid)).map(|b| b.bid).unwrap_or(0),
            )),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::same_set;
    use crate::prefix::Prefix;

    /// Set equality, as the BTreeSet comparison it replaced: order and
    /// duplicates do not count, a missing or extra prefix does.
    #[test]
    fn same_set_ignores_order_and_duplicates_only() {
        let p = |s: &str| s.parse::<Prefix>().expect("a prefix");
        let (a, b, c) = (p("2001:db8:1::/64"), p("2001:db8:2::/64"), p("2001:db8:3::/64"));
        assert!(same_set(&[a, b], &[b, a]));
        assert!(same_set(&[a, a, b], &[b, a]));
        assert!(same_set(&[], &[]));
        assert!(!same_set(&[a, b], &[a]));
        assert!(!same_set(&[a], &[a, b]));
        assert!(!same_set(&[a, b], &[a, c]));
        assert!(!same_set(&[], &[a]));
    }
}
