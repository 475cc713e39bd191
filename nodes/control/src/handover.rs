//! What pmiplab hands to an implementation under test (`impl:` in a
//! topology): the node's addresses, interface names, peers, MNs and policy,
//! as one JSON file whose path is in `PMIPLAB_CONFIG`. The schema is the
//! contract of docs/implementation-under-test.md; a wrapper script reads
//! it and writes its daemon's own configuration.
//!
//! `pmip-node --impl` reads this file too: it is how the project's own
//! daemon runs as a foreign implementation would, with nothing else from
//! the harness.

use std::net::Ipv6Addr;

use pmip_proto::lma::{LmaConfig, MnPolicy, PrefixModel};
use pmip_proto::mag::{MagConfig, MnBinding};
use pmip_proto::{Prefix, Span};
use pmip_wire::HandoffIndicator;
use serde::{Deserialize, Serialize};

/// The version of this schema; a change that is not an addition bumps it.
pub const HANDOVER_VERSION: u32 = 1;

/// The whole file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HandOver {
    pub version: u32,
    /// The node's name in the scenario (`mag1`, `lma`).
    pub node: String,
    /// `lma` or `mag`.
    pub role: String,
    /// The node's signalling address (the LMA address or the MAG's Proxy-CoA).
    pub address: Ipv6Addr,
    /// The interface that holds `address`: the LMA's side of the core
    /// segment, or the MAG's LMA-facing link.
    pub core_interface: String,
    /// The prefix length of `address` on `core_interface`.
    pub core_prefix_len: u8,
    /// The MH type the flow mobility draft's FMI/FMA are carried on.
    pub fmi_mh_type: u8,
    /// `draft-fmi` or `rfc7864`.
    pub profile: String,
    /// MAG: its LMA's address (the scenario's `lma:` of the MAG, else the
    /// first LMA).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lma: Option<Ipv6Addr>,
    /// MAG: heartbeats to its LMA (RFC 5847), when the scenario asks for
    /// them; the LMA's own are in `lma_settings`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub heartbeat: Option<HeartbeatSettings>,
    /// MAG: flows it asks its LMA for with a Flow Identification option
    /// in the PBU when an MN interface first registers here (flow
    /// mobility draft §3.2, after Figure 4).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub flow_requests: Vec<FlowRequest>,
    /// MAG: its access links, one per MN interface that attaches here.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub access: Vec<AccessLink>,
    /// LMA: the MAGs of the lab.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub mags: Vec<MagPeer>,
    /// LMA: each MN's policy profile (RFC 5213 §6.2).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub mns: Vec<MnProfile>,
    /// LMA: the scenario's `lma:` settings, each as the scenario names
    /// it; a field left out means the implementation's default.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lma_settings: Option<LmaSettings>,
    /// LMA: the interfaces towards the correspondent nodes, with the
    /// LMA's address on each and the CN behind it.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub cn_links: Vec<CnLink>,
    /// LMA, in a scenario with the 2-level prefix model: its settings and
    /// the MAGs in the order it hands them level-1 temporal prefixes
    /// (docs/protocol.md, "The 2-level prefix model").
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub two_level_lma: Option<pmip_proto::two_level::LmaSetup>,
    /// MAG, in a scenario with the 2-level prefix model: its settings,
    /// every MAG's level-1 temporal prefix and the MNs that use the model.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub two_level_mag: Option<pmip_proto::two_level::MagSetup>,
}

/// A MAG's access link: the MN interface on its other end.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AccessLink {
    /// The MAG's interface name.
    pub interface: String,
    /// Access Technology Type (RFC 5213 §8.5) of the link.
    pub att: u8,
    /// The MN and its interface on the other end (`mn1`, `if1`).
    pub mn: String,
    pub mn_interface: String,
    /// The MN interface's MAC, `02:…` hex with colons: its link-layer
    /// identifier in PBUs.
    pub mn_ll_id: String,
    /// The MN's identifier (NAI) the MAG puts in its PBUs.
    pub mn_id: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MagPeer {
    pub name: String,
    pub address: Ipv6Addr,
    /// Whether the LMA accepts its PBUs (false: the scenario expects 154).
    pub authorized: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MnProfile {
    pub name: String,
    pub mn_id: String,
    /// `unique`, `shared` or `hybrid` (the flow mobility draft's models).
    pub model: String,
    /// Prefixes handed out `per_attachment` at a time to new attachments.
    pub prefixes: Vec<Prefix>,
    /// Prefixes given to every attachment.
    pub shared_prefixes: Vec<Prefix>,
    pub per_attachment: usize,
    /// False: its policy does not enable proxy registration, and its PBUs
    /// are answered with PROXY_REG_NOT_ENABLED (152).
    #[serde(default = "yes")]
    pub proxy_enabled: bool,
    /// Set when another LMA serves the MN (its address): its PBUs here are
    /// answered with NOT_LMA_FOR_THIS_MOBILE_NODE (153).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub served_by: Option<Ipv6Addr>,
    /// Flows (by FID) moved to an MN interface when it gets a new binding,
    /// each named in the PBA with a Flow Identification option.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub flows_on_attach: Vec<FlowOnAttach>,
}

fn yes() -> bool {
    true
}

/// RFC 5847 HEARTBEAT_INTERVAL and MISSING_HEARTBEATS_ALLOWED.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct HeartbeatSettings {
    pub interval_ms: u64,
    pub missing_allowed: u32,
}

impl HeartbeatSettings {
    pub fn config(&self) -> pmip_proto::heartbeat::HeartbeatConfig {
        pmip_proto::heartbeat::HeartbeatConfig {
            interval: Span::from_millis(self.interval_ms),
            missing_allowed: self.missing_allowed,
        }
    }

    pub fn of(c: &pmip_proto::heartbeat::HeartbeatConfig) -> Self {
        HeartbeatSettings { interval_ms: c.interval.as_millis(), missing_allowed: c.missing_allowed }
    }
}

/// A flow the LMA moves to an MN interface when that interface attaches.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FlowOnAttach {
    /// The MN interface's MAC, as in `access`.
    pub mn_ll_id: String,
    pub fid: u16,
}

/// A flow a MAG asks for in its PBU: FID, FID-PRI and the downlink
/// 5-tuple of its traffic selector (RFC 6088 IPv6 selector with the start
/// fields set).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FlowRequest {
    pub mn_ll_id: String,
    pub fid: u16,
    pub fid_pri: u16,
    pub src: Ipv6Addr,
    pub dst: Ipv6Addr,
    pub src_port: u16,
    pub dst_port: u16,
    pub next_header: u8,
}

impl FlowRequest {
    /// The request as a MAG configuration holds it, or `None` when its
    /// selector is not the 5-tuple this form carries.
    pub fn of(ll_id: &[u8], fi: &pmip_wire::FlowIdentification) -> Option<Self> {
        let pmip_wire::TrafficSelector::Ipv6(t) = fi.traffic_selector()? else { return None };
        Some(FlowRequest {
            mn_ll_id: format_mac(ll_id),
            fid: fi.fid,
            fid_pri: fi.fid_pri,
            src: t.start_src?,
            dst: t.start_dst?,
            src_port: t.start_src_port?,
            dst_port: t.start_dst_port?,
            next_header: t.start_next_header?,
        })
    }

    pub fn flow_identification(&self) -> pmip_wire::FlowIdentification {
        let key = pmip_proto::FlowKey {
            src: self.src,
            dst: self.dst,
            src_port: self.src_port,
            dst_port: self.dst_port,
            next_header: self.next_header,
        };
        pmip_wire::FlowIdentification {
            fid: self.fid,
            fid_pri: self.fid_pri,
            status: 0,
            sub_options: vec![pmip_wire::FlowSubOption::TrafficSelector(key.selector())],
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CnLink {
    pub interface: String,
    pub address: Ipv6Addr,
    pub cn: String,
    pub cn_address: Ipv6Addr,
}

/// The scenario's `lma:` settings (docs/scenario-format.md).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct LmaSettings {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub partial_handoff_hi: Option<u8>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub revoke_on_partial_handoff: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub delete_at_old_mag: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub notify_shared_moves: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub flow_lifetime_secs: Option<u16>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_lifetime_secs: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub use_timestamps: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min_delay_before_bce_delete_ms: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub initial_retransmit_ms: Option<u64>,
    /// Heartbeats to the MAGs it has bindings with (RFC 5847).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub heartbeat: Option<HeartbeatSettings>,
    /// `hold` or `drop`: what becomes of the bindings of a MAG the
    /// heartbeats find down (RFC 5847 §5 leaves it to local policy).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub on_mag_down: Option<pmip_proto::lma::MagDownAction>,
    /// Whether it grants the flows MAGs ask for in PBUs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub grant_flow_requests: Option<bool>,
}

impl LmaSettings {
    /// `cfg` with these settings applied over its defaults.
    pub fn apply(&self, cfg: &mut LmaConfig) {
        if let Some(hi) = self.partial_handoff_hi {
            cfg.partial_handoff_hi = HandoffIndicator::from(hi);
        }
        cfg.revoke_on_partial_handoff = self.revoke_on_partial_handoff.unwrap_or(cfg.revoke_on_partial_handoff);
        cfg.delete_at_old_mag = self.delete_at_old_mag.unwrap_or(cfg.delete_at_old_mag);
        cfg.notify_shared_moves = self.notify_shared_moves.unwrap_or(cfg.notify_shared_moves);
        cfg.flow_lifetime_secs = self.flow_lifetime_secs.unwrap_or(cfg.flow_lifetime_secs);
        cfg.max_lifetime_secs = self.max_lifetime_secs.unwrap_or(cfg.max_lifetime_secs);
        cfg.use_timestamps = self.use_timestamps.unwrap_or(cfg.use_timestamps);
        if let Some(ms) = self.min_delay_before_bce_delete_ms {
            cfg.min_delay_before_bce_delete = Span::from_millis(ms);
        }
        if let Some(ms) = self.initial_retransmit_ms.filter(|ms| *ms > 0) {
            cfg.backoff.initial = Span::from_millis(ms);
        }
        cfg.heartbeat = self.heartbeat.map(|h| h.config());
        cfg.on_mag_down = self.on_mag_down.unwrap_or(cfg.on_mag_down);
    }
}

/// `02:00:5e:…` as six octets.
pub fn parse_mac(text: &str) -> Result<Vec<u8>, String> {
    let octets: Result<Vec<u8>, _> = text.split(':').map(|h| u8::from_str_radix(h, 16)).collect();
    match octets {
        Ok(o) if o.len() == 6 => Ok(o),
        _ => Err(format!("'{text}' is not a MAC address (six hex octets with colons)")),
    }
}

/// Six octets as `02:00:5e:…`.
pub fn format_mac(octets: &[u8]) -> String {
    octets.iter().map(|o| format!("{o:02x}")).collect::<Vec<_>>().join(":")
}

fn parse_model(text: &str) -> Result<PrefixModel, String> {
    serde_json::from_value(serde_json::Value::String(text.to_string()))
        .map_err(|_| format!("'{text}' is not a prefix model (unique, shared or hybrid)"))
}

impl HandOver {
    /// The LMA configuration and MN policies this hand-over describes, for
    /// pmip-node's LMA.
    pub fn lma_config(&self) -> Result<(LmaConfig, Vec<MnPolicy>), String> {
        if self.role != "lma" {
            return Err(format!("{} is a {}, not an LMA", self.node, self.role));
        }
        let mut cfg = LmaConfig::new(self.address);
        cfg.authorized_mags = self.mags.iter().filter(|m| m.authorized).map(|m| m.address).collect();
        // A UPN has no lifetime field: in the RFC 7864 profile a moved
        // flow lives as long as its binding.
        if self.profile == "rfc7864" {
            cfg.flow_lifetime_secs = 0xffff;
        }
        let settings = self.lma_settings.clone().unwrap_or_default();
        settings.apply(&mut cfg);
        cfg.two_level = self.two_level_lma.clone();
        let mut policies = Vec::new();
        for mn in &self.mns {
            let mut p = MnPolicy::new(mn.mn_id.clone(), parse_model(&mn.model)?);
            p.shared_prefixes = mn.shared_prefixes.clone();
            p.unique_prefixes = mn.prefixes.clone();
            p.per_attachment = mn.per_attachment;
            p.proxy_enabled = mn.proxy_enabled;
            p.served_by = mn.served_by;
            p.grant_flow_requests = settings.grant_flow_requests.unwrap_or(true);
            for f in &mn.flows_on_attach {
                p.flows_on_attach.push((parse_mac(&f.mn_ll_id)?, f.fid));
            }
            policies.push(p);
        }
        Ok((cfg, policies))
    }

    /// The MAG configuration this hand-over describes, for pmip-node's MAG.
    pub fn mag_config(&self) -> Result<MagConfig, String> {
        if self.role != "mag" {
            return Err(format!("{} is a {}, not a MAG", self.node, self.role));
        }
        let lma = self.lma.ok_or_else(|| format!("the hand-over of MAG {} names no LMA", self.node))?;
        let mut c = MagConfig::new(self.address, lma);
        for a in &self.access {
            c.mns.push(MnBinding { ll_id: parse_mac(&a.mn_ll_id)?, mn_id: a.mn_id.clone() });
        }
        c.heartbeat = self.heartbeat.map(|h| h.config());
        c.two_level = self.two_level_mag.clone();
        for f in &self.flow_requests {
            c.flow_requests.push((parse_mac(&f.mn_ll_id)?, f.flow_identification()));
        }
        Ok(c)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn macs_read_back_and_bad_ones_are_refused() {
        let m = [2, 0, 0x5e, 1, 0xab, 0xff];
        assert_eq!(parse_mac(&format_mac(&m)), Ok(m.to_vec()));
        assert!(parse_mac("02:00").is_err());
        assert!(parse_mac("02:00:5e:01:ab:zz").is_err());
    }

    #[test]
    fn settings_left_out_keep_the_defaults() {
        let mut cfg = LmaConfig::new(Ipv6Addr::LOCALHOST);
        let before = cfg.clone();
        LmaSettings::default().apply(&mut cfg);
        assert_eq!(cfg, before);
        LmaSettings { delete_at_old_mag: Some(false), ..Default::default() }.apply(&mut cfg);
        assert!(!cfg.delete_at_old_mag);
    }
}
