//! The LMA's policy store (RFC 5213 §2.2 "policy profile"): who may
//! register, with which prefixes, under which prefix model (draft §3.1).

use std::net::Ipv6Addr;

use serde::{Deserialize, Serialize};

use crate::prefix::Prefix;

/// How the LMA hands prefixes to a new attachment (flow mobility draft §3.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum PrefixModel {
    /// Scenario 1: each attachment gets prefixes of its own.
    Unique,
    /// Scenario 2: every attachment gets the same prefixes.
    Shared,
    /// Scenario 3: the shared prefixes plus prefixes of its own.
    Hybrid,
    /// The 2-level prefix model (draft-park-multihoming-ext-pmipv6-2level-
    /// prefix-01): `unique_prefixes` are the level-1 permanent prefixes,
    /// one per interface; the temporal ones come from the LMA's pool
    /// (see [`crate::two_level`]).
    TwoLevel,
}

/// The policy profile of one mobile node.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MnPolicy {
    pub mn_id: String,
    pub model: PrefixModel,
    /// Given to every attachment (shared and hybrid models).
    #[serde(default)]
    pub shared_prefixes: Vec<Prefix>,
    /// Handed out, `per_attachment` at a time, to new attachments (unique
    /// and hybrid models).
    #[serde(default)]
    pub unique_prefixes: Vec<Prefix>,
    #[serde(default = "one")]
    pub per_attachment: usize,
    /// False gives PROXY_REG_NOT_ENABLED (152).
    #[serde(default = "yes")]
    pub proxy_enabled: bool,
    /// Set when another LMA serves this MN: NOT_LMA_FOR_THIS_MOBILE_NODE (153).
    #[serde(default)]
    pub served_by: Option<Ipv6Addr>,
    /// Set to refuse the MN by administrative decision (129).
    #[serde(default)]
    pub prohibited: bool,
    /// Flows (by FID) the LMA moves to an interface of the MN, by its
    /// link-layer identifier, when that interface gets a new binding: the
    /// PBA carries a Flow Identification option for each (flow mobility
    /// draft §3.2, after Figure 4).
    #[serde(default)]
    pub flows_on_attach: Vec<(Vec<u8>, u16)>,
    /// Whether the LMA grants the flows a MAG asks for with Flow
    /// Identification options in its PBU (draft §3.2): its policy on
    /// such requests.
    #[serde(default = "yes")]
    pub grant_flow_requests: bool,
}

fn one() -> usize {
    1
}
fn yes() -> bool {
    true
}

impl MnPolicy {
    pub fn new(mn_id: impl Into<String>, model: PrefixModel) -> Self {
        MnPolicy {
            mn_id: mn_id.into(),
            model,
            shared_prefixes: Vec::new(),
            unique_prefixes: Vec::new(),
            per_attachment: 1,
            proxy_enabled: true,
            served_by: None,
            prohibited: false,
            flows_on_attach: Vec::new(),
            grant_flow_requests: true,
        }
    }

    /// Whether the MN may use this prefix at all.
    pub fn owns(&self, p: &Prefix) -> bool {
        self.shared_prefixes.contains(p) || self.unique_prefixes.contains(p)
    }

    pub fn is_shared(&self, p: &Prefix) -> bool {
        matches!(self.model, PrefixModel::Shared | PrefixModel::Hybrid) && self.shared_prefixes.contains(p)
    }
}
