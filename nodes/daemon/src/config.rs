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

/// The configuration of `pmip-node --impl`: pmiplab's hand-over to any
/// implementation under test, translated as a wrapper would translate it
/// for a foreign daemon; also its FMI/FMA MH type and its profile.
pub fn from_handover(path: &std::path::Path) -> anyhow::Result<(DaemonConfig, u8, pmip_wire::Profile)> {
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
    let profile = match h.profile.as_str() {
        "draft-fmi" => pmip_wire::Profile::DraftFmi,
        "rfc7864" => pmip_wire::Profile::Rfc7864,
        other => anyhow::bail!("{}: '{other}' is not a profile (draft-fmi or rfc7864)", path.display()),
    };
    let config = DaemonConfig { node, data_plane, access, esp: None, restart_counter_file: None };
    Ok((config, h.fmi_mh_type, profile))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mag_config(file: &std::path::Path) -> DaemonConfig {
        let text = serde_json::json!({
            "role": "mag",
            "config": pmip_proto::mag::MagConfig::new("2001:db8:ffff::11".parse().unwrap(), "2001:db8:ffff::1".parse().unwrap()),
            "restart_counter_file": file,
        });
        serde_json::from_value(text).unwrap()
    }

    fn counter(c: &DaemonConfig) -> u32 {
        match &c.node {
            NodeConfig::Mag { config } => config.restart_counter,
            _ => unreachable!("a MAG configuration"),
        }
    }

    #[test]
    fn each_start_counts_one_more_in_the_restart_counter_file() {
        let dir = std::env::temp_dir().join(format!("pmip-node-restarts-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("mag1.restart-counter");
        let _ = std::fs::remove_file(&file);
        for expected in 1..=3 {
            let mut c = mag_config(&file);
            c.count_start().unwrap();
            assert_eq!(counter(&c), expected);
        }
        std::fs::write(&file, "not a number\n").unwrap();
        let err = mag_config(&file).count_start().unwrap_err();
        assert!(format!("{err:#}").contains("holds no Restart Counter"), "{err:#}");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
