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

use crate::plan::{fid_of, flow_key, lma_of, mn_id, AddressPlan};
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
    // A UPN has no lifetime field: in the RFC 7864 profile a moved flow
    // lives as long as its binding, so the LMA never refreshes it.
    let rfc7864 = s.wire.profile == crate::scenario::Profile::Rfc7864;
    let flow_lifetime = if rfc7864 { 0xffff } else { cfg.flow_lifetime_secs };
    cfg.flow_lifetime_secs = l.flow_lifetime_secs.unwrap_or(flow_lifetime);
    cfg.max_lifetime_secs = l.max_lifetime_secs.unwrap_or(cfg.max_lifetime_secs);
    cfg.use_timestamps = l.use_timestamps.unwrap_or(cfg.use_timestamps);
    if let Some(ms) = l.min_delay_before_bce_delete_ms {
        cfg.min_delay_before_bce_delete = Span::from_millis(ms);
    }
    if let Some(ms) = l.initial_retransmit_ms {
        cfg.backoff.initial = Span::from_millis(ms.get());
    }
    cfg.heartbeat = l.heartbeat.map(|h| h.config());
    cfg.on_mag_down = l.on_mag_down.unwrap_or(cfg.on_mag_down);
    cfg.two_level =
        two_level_config(s, plan).map(|config| pmip_proto::two_level::LmaSetup { config, mags: mags(s, plan) });
    cfg
}

/// The 2-level model's settings, when a scenario has them, with the
/// names its tables print MAGs (`mag1`) and MN interfaces (`mn1/if1`) by.
fn two_level_config(s: &Scenario, plan: &AddressPlan) -> Option<pmip_proto::two_level::TwoLevelConfig> {
    let mut c = s.lma.two_level.as_ref().and_then(|t| t.value.config())?;
    c.labels.mags = s
        .nodes
        .iter()
        .filter(|(_, n)| n.value.role == Role::Mag)
        .filter_map(|(name, _)| Some((*plan.of.get(name)?, name.clone())))
        .collect();
    c.labels.ifaces = s
        .links
        .iter()
        .filter_map(|l| {
            let (mn, iface) = l.value.mn.value.split_once('/')?;
            Some((mac_for(mn, iface), l.value.mn.value.clone()))
        })
        .collect();
    Some(c)
}

/// The MAGs' addresses in name order: the order the LMA hands them their
/// level-1 temporal prefixes in (2-level model).
fn mags(s: &Scenario, plan: &AddressPlan) -> Vec<Ipv6Addr> {
    s.nodes
        .iter()
        .filter(|(_, n)| n.value.role == Role::Mag)
        .filter_map(|(name, _)| plan.of.get(name).copied())
        .collect()
}

/// The policy the LMA named `lma` holds for each MN of the scenario: an
/// MN another LMA serves is marked as served by that LMA (153), one whose
/// `proxy_enabled` is false as not enabled (152).
pub fn mn_policies(s: &Scenario, plan: &AddressPlan, lma: &str) -> Vec<MnPolicy> {
    s.nodes
        .iter()
        .filter(|(_, n)| n.value.role == Role::Mn)
        .map(|(name, n)| {
            let spec = &n.value;
            let mut p = MnPolicy::new(mn_id(name, spec), spec.model.unwrap_or(PrefixModel::Unique));
            p.shared_prefixes = spec.shared_prefixes.clone();
            p.unique_prefixes = spec.prefixes.clone();
            p.per_attachment = spec.per_attachment.unwrap_or(1);
            p.proxy_enabled = spec.proxy_enabled.unwrap_or(true);
            p.grant_flow_requests = s.lma.grant_flow_requests.unwrap_or(true);
            p.flows_on_attach = s
                .links
                .iter()
                .filter_map(|l| {
                    let (m, iface) = l.value.mn.value.split_once('/')?;
                    (m == name).then_some((iface, &l.value.moved_on_attach))
                })
                .flat_map(|(iface, flows)| {
                    flows.iter().filter_map(move |f| Some((mac_for(name, iface), fid_of(s, &f.value)?)))
                })
                .collect();
            p.served_by = lma_of(s, name).filter(|l| *l != lma).and_then(|l| plan.of.get(l)).copied();
            p
        })
        .collect()
}

/// A MAG's configuration: the MNs it serves, by the link-layer identifier
/// of each MN interface linked to it.
pub fn mag(s: &Scenario, plan: &AddressPlan, mag: &str, address: Ipv6Addr, lma: Ipv6Addr) -> MagConfig {
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
    c.heartbeat = s.nodes.get(mag).and_then(|n| n.value.heartbeat).map(|h| h.config());
    c.two_level = two_level_config(s, plan).and_then(|config| {
        let temporal = pmip_proto::two_level::distribution(&config, &mags(s, plan)).ok()?;
        Some(pmip_proto::two_level::MagSetup { config, temporal, mns: crate::plan::two_level_mns(s) })
    });
    c.flow_requests = s
        .links
        .iter()
        .filter(|l| l.value.mag.value == mag)
        .flat_map(|l| l.value.requested_on_attach.iter().map(move |f| (&l.value.mn.value, &f.value)))
        .filter_map(|(mn_iface, flow)| {
            let (mn, iface) = mn_iface.split_once('/')?;
            Some((mac_for(mn, iface), flow_request(s, plan, flow)?))
        })
        .collect();
    c
}

/// The Flow Identification option a MAG asks for a flow with: the FID and
/// FID-PRI of the flow's bind step, and its downlink 5-tuple.
fn flow_request(s: &Scenario, plan: &AddressPlan, flow: &str) -> Option<pmip_wire::FlowIdentification> {
    let (fid, fid_pri) = s.steps.iter().find_map(|st| match &st.value {
        crate::scenario::Step::Bind(b) if b.flow.value == flow => Some((b.fid, b.fid_pri)),
        _ => None,
    })?;
    let selector = flow_key(s, plan, flow)?.selector();
    Some(pmip_wire::FlowIdentification {
        fid,
        fid_pri,
        status: 0,
        sub_options: vec![pmip_wire::FlowSubOption::TrafficSelector(selector)],
    })
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

/// ESP protection of the MAG–LMA signalling (RFC 5213 §4) for one lab:
/// two security associations per MAG (MAG→LMA, LMA→MAG), AES-GCM with a
/// 16-octet ICV, fresh random keys and SPIs for every lab, so parallel
/// labs never share them.
pub struct EspKeys {
    /// `(spi, src, dst, key)`: the key is 40 hex digits, AES-128 then salt.
    pub sas: Vec<(u32, Ipv6Addr, Ipv6Addr, String)>,
}

impl EspKeys {
    pub fn generate(lma: Ipv6Addr, mags: &[Ipv6Addr]) -> std::io::Result<EspKeys> {
        let base = u32::from_str_radix(&crate::lab::rundir::random_suffix()?[..6], 16).unwrap_or(0) << 8 | 0x100;
        let mut sas = Vec::new();
        for (i, mag) in mags.iter().enumerate() {
            for (j, (src, dst)) in [(*mag, lma), (lma, *mag)].into_iter().enumerate() {
                let key = format!(
                    "{}{}{}",
                    crate::lab::rundir::random_suffix()?,
                    crate::lab::rundir::random_suffix()?,
                    &crate::lab::rundir::random_suffix()?[..8]
                );
                sas.push((base.wrapping_add((2 * i + j) as u32).max(0x100), src, dst, key));
            }
        }
        Ok(EspKeys { sas })
    }

    /// The `esp` setting of a daemon's configuration (each daemon takes
    /// the SAs that name its own address).
    pub fn config(&self) -> serde_json::Value {
        let sas: Vec<serde_json::Value> = self
            .sas
            .iter()
            .map(|(spi, src, dst, key)| serde_json::json!({"spi": spi, "src": src, "dst": dst, "key": key}))
            .collect();
        serde_json::json!({ "sas": sas })
    }

    /// The SAs of an `esp` setting ([`EspKeys::config`]), read back.
    pub fn from_config(v: &serde_json::Value) -> Result<EspKeys, String> {
        let sas = v["sas"].as_array().ok_or("an esp setting has a list 'sas'")?;
        let mut out = Vec::new();
        for sa in sas {
            let field = |k: &str| sa[k].as_str().map(str::to_string).ok_or_else(|| format!("an SA has no '{k}'"));
            let addr = |k: &str| field(k)?.parse::<Ipv6Addr>().map_err(|e| format!("an SA's '{k}': {e}"));
            let spi = sa["spi"].as_u64().and_then(|s| u32::try_from(s).ok()).ok_or("an SA has no 32-bit 'spi'")?;
            out.push((spi, addr("src")?, addr("dst")?, field("key")?));
        }
        Ok(EspKeys { sas: out })
    }

    /// Keys for every MAG of `s` with its own LMA, fresh for this lab.
    pub fn for_scenario(s: &crate::scenario::Scenario, plan: &AddressPlan) -> std::io::Result<EspKeys> {
        let mut sas = Vec::new();
        for lma in crate::plan::nodes_in(s, crate::scenario::Role::Lma) {
            let mags: Vec<Ipv6Addr> = crate::plan::nodes_in(s, crate::scenario::Role::Mag)
                .filter(|m| crate::plan::lma_of(s, m) == Some(lma))
                .filter_map(|m| plan.of.get(m).copied())
                .collect();
            let Some(&addr) = plan.of.get(lma) else { continue };
            if !mags.is_empty() {
                sas.extend(EspKeys::generate(addr, &mags)?.sas);
            }
        }
        Ok(EspKeys { sas })
    }

    /// A reader of captures protected with these keys.
    pub fn reader(&self) -> Result<pmip_captures::esp::EspReader, String> {
        let mut r = pmip_captures::esp::EspReader::default();
        for (spi, src, dst, key) in &self.sas {
            r.add(*spi, *src, *dst, key)?;
        }
        Ok(r)
    }

    /// Wireshark's ESP SA table (the `esp_sa` file of its profile, or
    /// `-o uat:esp_sa:<line>` for tshark) so that captures stay readable.
    pub fn wireshark_esp_sa(&self) -> String {
        let mut out = String::from("# pmiplab: ESP SAs of this lab's MAG-LMA signalling (AES-GCM, RFC 4106)\n");
        for line in self.uat_lines() {
            out.push_str(&line);
            out.push('\n');
        }
        out
    }

    /// One `esp_sa` record per SA, as Wireshark 4.0 reads them.
    pub fn uat_lines(&self) -> Vec<String> {
        self.sas
            .iter()
            .map(|(spi, src, dst, key)| {
                format!(
                    "\"IPv6\",\"{src}\",\"{dst}\",\"{spi:#010x}\",\"AES-GCM with 16 octet ICV [RFC4106]\",\"0x{key}\",\"NULL\",\"\""
                )
            })
            .collect()
    }
}
