//! What the harness tells a daemon at start: its role and that role's
//! configuration, as one JSON file.

use serde::{Deserialize, Serialize};

use pmip_proto::lma::{LmaConfig, MnPolicy};
use pmip_proto::mag::MagConfig;

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "role", rename_all = "lowercase")]
pub enum NodeConfig {
    Lma { config: LmaConfig, policies: Vec<MnPolicy> },
    Mag { config: MagConfig },
    Mn { config: pmip_proto::mn::MnConfig },
    Cn { address: std::net::Ipv6Addr },
}

impl NodeConfig {
    /// The signalling address of an LMA or a MAG.
    pub fn address(&self) -> Option<std::net::Ipv6Addr> {
        match self {
            NodeConfig::Lma { config, .. } => Some(config.address),
            NodeConfig::Mag { config } => Some(config.address),
            NodeConfig::Mn { .. } | NodeConfig::Cn { .. } => None,
        }
    }
}

/// The whole file: the role, and the data plane if the node forwards.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct DaemonConfig {
    #[serde(flatten)]
    pub node: NodeConfig,
    #[serde(default)]
    pub data_plane: Option<crate::data_plane::DataPlaneConfig>,
    /// MAG: its access links and their access technology types; RSs on
    /// them attach MNs, RAs go out on them.
    #[serde(default)]
    pub access: std::collections::BTreeMap<String, u8>,
    /// LMA and MAG: ESP security associations for the signalling between
    /// them (RFC 5213 §4); none means the signalling goes in the clear.
    #[serde(default)]
    pub esp: Option<crate::esp::EspConfig>,
}

/// The configuration of `pmip-node --impl`: pmiplab's hand-over to any
/// implementation under test, translated as a wrapper would translate it
/// for a foreign daemon; also its FMI/FMA MH type.
pub fn from_handover(path: &std::path::Path) -> anyhow::Result<(DaemonConfig, u8)> {
    use anyhow::Context;
    use pmip_control::handover::HandOver;
    let text = std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    let h: HandOver =
        serde_json::from_str(&text).with_context(|| format!("{} is not a pmiplab hand-over", path.display()))?;
    let node = match h.role.as_str() {
        "lma" => {
            let (config, policies) = h.lma_config().map_err(anyhow::Error::msg)?;
            NodeConfig::Lma { config, policies }
        }
        "mag" => NodeConfig::Mag { config: h.mag_config().map_err(anyhow::Error::msg)? },
        other => anyhow::bail!("pmip-node --impl plays an lma or a mag, not a {other}"),
    };
    let access = h.access.iter().map(|a| (a.interface.clone(), a.att)).collect();
    // The data plane's defaults; PMIPLAB_DATAPATH still chooses it.
    let data_plane = Some(serde_json::from_value(serde_json::json!({}))?);
    Ok((DaemonConfig { node, data_plane, access, esp: None }, h.fmi_mh_type))
}
