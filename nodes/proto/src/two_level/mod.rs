//! The 2-level prefix model of draft-park-multihoming-ext-pmipv6-2level-prefix-01
//! (seeds): level-1 permanent (P) prefixes the LMA allocates per MN
//! interface, level-1 temporal (T) prefixes the LMA hands each MAG before
//! any session, and level-2 temporal prefixes a MAG carves out of its own
//! temporal prefix per MN service; with the four handover types of the
//! draft's §2 (IAHO, IIHO, PFHO, FFHO) and the Active/Idle (A/I) flags of
//! its tables.
//!
//! Sans-IO like the rest of the core: [`TwoLevelLma`] takes a PBU (the
//! wire type) and returns the PBA; [`TwoLevelMag`] builds the PBUs and
//! takes the PBAs; time is an argument.
//!
//! Where the draft is vague this module chooses, and each choice is a
//! field of [`TwoLevelConfig`] or said where it is made:
//! - how temporal prefixes reach the MAGs ("allocated by LMA to MAGs before
//!   initiation of mobility session", §3): [`TwoLevelLma::distribute`]
//!   carves one level-1 temporal prefix per MAG out of a pool, once, before
//!   any PBU; every MAG is told every other MAG's (§3 "Each MAG already
//!   knows the other's temporal prefixes");
//! - how the LMA learns the level-2 prefixes a MAG carved (Figure 7 shows
//!   them in the LMA's table): the owning MAG registers them with a PBU
//!   carrying Handoff Indicator 5 and their HNP options;
//! - how the old MAG learns a flow handover (the draft: "L2 hints"): the
//!   caller gives it [`TwoLevelMag::hint_moved`];
//! - how Idle entries expire (the draft: "kept for some time"):
//!   [`TwoLevelConfig::idle_lifetime`] after they became Idle.

mod lma;
mod mag;
mod table;
#[cfg(test)]
mod tests;

pub use lma::TwoLevelLma;
pub use mag::TwoLevelMag;
pub use table::{Flag, Kind, Names, Row, Table};

use crate::prefix::Prefix;
use crate::time::Span;

/// An `idle_lifetime` that keeps Idle entries until the binding goes.
pub const NEVER: Span = Span(u64::MAX / 4);

/// The settings of the model where the draft leaves the choice open.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct TwoLevelConfig {
    /// The LMA's pool of level-1 temporal prefixes: one of
    /// `temporal_len` bits goes to each MAG (§3 Figure 5, pref_B1).
    pub temporal_pool: Prefix,
    /// Length of a MAG's level-1 temporal prefix. The draft writes both
    /// HNP_1(T) and HNP_1_1(T) as /64s (2002:2:1:0::/64, 2002:2:1:1::/64),
    /// which cannot nest; the level-1 prefix is taken shorter here (/48 by
    /// default) so that its level-2 /64s lie inside it and the aggregate
    /// of §5.1.2 (FFHO) covers them.
    pub temporal_len: u8,
    /// Length of a level-2 prefix (a /64, so the MN can form addresses).
    pub level2_len: u8,
    /// How long an entry left Idle by a flow handover is kept for a
    /// reverse handover before it is deleted.
    pub idle_lifetime: Span,
    /// Lifetime (seconds) the LMA grants a binding.
    pub lifetime_secs: u32,
    /// Names the tables print MAGs and MN interfaces by, as the draft's
    /// figures do (`MAG1`, `if1`); unnamed ones are printed as addresses
    /// and link-layer ids. Display only.
    #[serde(default)]
    pub labels: Labels,
}

/// Display names for the tables: MAGs by address, MN interfaces by
/// link-layer id.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Labels {
    pub mags: Vec<(std::net::Ipv6Addr, String)>,
    pub ifaces: Vec<(Vec<u8>, String)>,
}

impl Labels {
    /// A [`Names`] with these labels and no prefix names.
    pub fn names(&self) -> Names {
        Names {
            ifaces: self.ifaces.iter().cloned().collect(),
            mags: self.mags.iter().cloned().collect(),
            prefixes: Default::default(),
        }
    }
}

impl Default for TwoLevelConfig {
    fn default() -> Self {
        TwoLevelConfig {
            temporal_pool: Prefix::new(std::net::Ipv6Addr::new(0x2002, 2, 0, 0, 0, 0, 0, 0), 32),
            temporal_len: 48,
            level2_len: 64,
            idle_lifetime: Span::from_secs(30),
            lifetime_secs: 400,
            labels: Labels::default(),
        }
    }
}

/// What an LMA is told at start to play the model: the settings and the
/// MAGs it hands a level-1 temporal prefix each, in this order.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct LmaSetup {
    pub config: TwoLevelConfig,
    pub mags: Vec<std::net::Ipv6Addr>,
}

/// What a MAG is told at start: the settings, every MAG's level-1
/// temporal prefix as the LMA distributes them, and the MNs (by MN-ID)
/// that use the model.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct MagSetup {
    pub config: TwoLevelConfig,
    pub temporal: std::collections::BTreeMap<std::net::Ipv6Addr, Prefix>,
    pub mns: Vec<String>,
}

/// The LMA's distribution of level-1 temporal prefixes (§3): the
/// `i`-th MAG gets the `i`+1-th prefix of `temporal_len` bits of the pool.
pub fn distribution(
    config: &TwoLevelConfig,
    mags: &[std::net::Ipv6Addr],
) -> Result<std::collections::BTreeMap<std::net::Ipv6Addr, Prefix>, String> {
    mags.iter()
        .enumerate()
        .map(|(i, mag)| {
            let p = nth_subprefix(config.temporal_pool, config.temporal_len, i as u64 + 1).ok_or_else(|| {
                format!(
                    "the temporal pool {} holds no {}th /{} for MAG {mag}",
                    config.temporal_pool,
                    i + 1,
                    config.temporal_len
                )
            })?;
            Ok((*mag, p))
        })
        .collect()
}

impl TwoLevelConfig {
    /// When an entry made Idle at `now` goes: never with [`NEVER`].
    pub fn idle_until(&self, now: crate::time::Instant) -> Option<crate::time::Instant> {
        (self.idle_lifetime != NEVER).then(|| now + self.idle_lifetime)
    }
}

/// The `index`-th prefix of length `len` inside `outer` (`None` past the
/// end or when `len` is not longer than `outer`).
pub(crate) fn nth_subprefix(outer: Prefix, len: u8, index: u64) -> Option<Prefix> {
    let extra = u32::from(len).checked_sub(u32::from(outer.prefix_len())).filter(|b| *b > 0 && len <= 128)?;
    if extra < 64 && index >= (1u64 << extra) {
        return None;
    }
    let shifted = u128::from(index).checked_shl(128 - u32::from(len))?;
    Some(Prefix::new(std::net::Ipv6Addr::from(u128::from(outer.addr()) | shifted), len))
}

/// Whether `inner` lies inside `outer`.
pub(crate) fn within(inner: &Prefix, outer: &Prefix) -> bool {
    inner.prefix_len() >= outer.prefix_len() && outer.contains(&inner.addr())
}
