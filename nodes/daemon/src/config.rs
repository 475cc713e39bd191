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
    /// LMA and MAG: the file that keeps the Restart Counter across
    /// restarts (RFC 5847 §3.2 asks for non-volatile storage). Each start
    /// adds one; without it the counter is the configuration's.
    #[serde(default)]
    pub restart_counter_file: Option<std::path::PathBuf>,
}

impl DaemonConfig {
    /// Counts this start in the Restart Counter file, if there is one, and
    /// gives the role its new value.
    pub fn count_start(&mut self) -> anyhow::Result<()> {
        use anyhow::Context;
        let Some(path) = &self.restart_counter_file else {
            return Ok(());
        };
        let before = match std::fs::read_to_string(path) {
            Ok(t) => t.trim().parse::<u32>().with_context(|| format!("{} holds no Restart Counter", path.display()))?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => 0,
            Err(e) => return Err(e).with_context(|| format!("reading {}", path.display())),
        };
        let now = before.wrapping_add(1);
        std::fs::write(path, format!("{now}\n")).with_context(|| format!("writing {}", path.display()))?;
        match &mut self.node {
            NodeConfig::Lma { config, .. } => config.restart_counter = now,
            NodeConfig::Mag { config } => config.restart_counter = now,
            NodeConfig::Mn { .. } | NodeConfig::Cn { .. } => {}
        }
        tracing::info!("Restart Counter {now}");
        Ok(())
    }
}
