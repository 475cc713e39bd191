//! The protocol configuration of each node, from a scenario: one source
//! for both backends, so a setting cannot mean one thing in virtual time
//! and another in namespaces.

use std::net::Ipv6Addr;

use pmip_proto::lma::{LmaConfig, MnPolicy, PrefixModel};
use pmip_proto::mag::{MagConfig, MnBinding};
use pmip_proto::mn::MnConfig;
use pmip_proto::world::mac_for;
use pmip_proto::Span;
use pmip_wire::HandoffIndicator;

use crate::plan::{mn_id, AddressPlan};
use crate::scenario::{Role, Scenario};

/// The LMA's configuration: RFC 5213 defaults, then the scenario's `lma:`
/// settings; every MAG not marked `authorized: false` may send PBUs.
pub fn lma(s: &Scenario, plan: &AddressPlan, address: Ipv6Addr) -> LmaConfig {
    let mut cfg = LmaConfig::new(address);
    cfg.authorized_mags = s
        .nodes
        .iter()
        .filter(|(_, n)| n.value.role == Role::Mag && n.value.authorized != Some(false))
        .filter_map(|(name, _)| plan.of.get(name).copied())
        .collect();
    let l = &s.lma;
    if let Some(hi) = l.partial_handoff_hi {
        cfg.partial_handoff_hi = HandoffIndicator::from(hi);
    }
    cfg.revoke_on_partial_handoff = l.revoke_on_partial_handoff.unwrap_or(cfg.revoke_on_partial_handoff);
    cfg.delete_at_old_mag = l.delete_at_old_mag.unwrap_or(cfg.delete_at_old_mag);
    cfg.notify_shared_moves = l.notify_shared_moves.unwrap_or(cfg.notify_shared_moves);
    cfg.flow_lifetime_secs = l.flow_lifetime_secs.unwrap_or(cfg.flow_lifetime_secs);
    cfg.max_lifetime_secs = l.max_lifetime_secs.unwrap_or(cfg.max_lifetime_secs);
    cfg.use_timestamps = l.use_timestamps.unwrap_or(cfg.use_timestamps);
    if let Some(ms) = l.min_delay_before_bce_delete_ms {
        cfg.min_delay_before_bce_delete = Span::from_millis(ms);
    }
    if let Some(ms) = l.initial_retransmit_ms {
        cfg.backoff.initial = Span::from_millis(ms.get());
    }
    cfg
}

/// The LMA's policy for each MN of the scenario.
pub fn mn_policies(s: &Scenario) -> Vec<MnPolicy> {
    s.nodes
        .iter()
        .filter(|(_, n)| n.value.role == Role::Mn)
        .map(|(name, n)| {
            let spec = &n.value;
            let mut p = MnPolicy::new(mn_id(name, spec), spec.model.unwrap_or(PrefixModel::Unique));
            p.shared_prefixes = spec.shared_prefixes.clone();
            p.unique_prefixes = spec.prefixes.clone();
            p.per_attachment = spec.per_attachment.unwrap_or(1);
            p
        })
        .collect()
}

/// A MAG's configuration: the MNs it serves, by the link-layer identifier
/// of each MN interface linked to it.
pub fn mag(s: &Scenario, mag: &str, address: Ipv6Addr, lma: Ipv6Addr) -> MagConfig {
    let mut c = MagConfig::new(address, lma);
    c.mns = s
        .links
        .iter()
        .filter(|l| l.value.mag.value == mag)
        .filter_map(|l| {
            let (mn, iface) = l.value.mn.value.split_once('/')?;
            let spec = &s.nodes.get(mn)?.value;
            Some(MnBinding { ll_id: mac_for(mn, iface), mn_id: mn_id(mn, spec) })
        })
        .collect();
    c
}

/// An MN's configuration; its uplink prefers its interfaces in the order
/// the scenario lists them.
pub fn mn(s: &Scenario, plan: &AddressPlan, name: &str) -> Option<MnConfig> {
    let spec = &s.nodes.get(name)?.value;
    Some(MnConfig {
        name: name.to_string(),
        iid: plan.iid.get(name).copied().unwrap_or(1),
        interfaces: spec.interfaces.clone(),
        uplink_preference: spec.interfaces.clone(),
    })
}
