//! The extended binding cache (flow mobility draft §5.1, Figure 7): several
//! entries per MN, one per attached interface, each with a BID.

use std::collections::BTreeMap;
use std::net::Ipv6Addr;

use pmip_wire::{AccessTechnologyType, Timestamp};
use serde::Serialize;

use crate::prefix::Prefix;
use crate::time::Instant;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum BceState {
    Active,
    /// De-registered, kept for MinDelayBeforeBCEDelete (RFC 5213 §5.3.5).
    Deregistered,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Bce {
    pub bid: u16,
    pub bid_pri: u8,
    pub mn_id: String,
    pub att: AccessTechnologyType,
    pub mn_ll_id: Option<Vec<u8>>,
    pub hnps: Vec<Prefix>,
    pub proxy_coa: Ipv6Addr,
    pub link_local: Option<Ipv6Addr>,
    pub lifetime_secs: u32,
    pub registered_at: Instant,
    pub expires_at: Instant,
    pub last_sequence: u16,
    pub last_timestamp: Option<Timestamp>,
    pub state: BceState,
}

impl Bce {
    pub fn is_active(&self) -> bool {
        self.state == BceState::Active
    }
}

/// One binding cache row as a table shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct BceRow {
    pub bid_pri: u8,
    pub bid: u16,
    pub mn_id: String,
    pub att: String,
    pub mn_ll_id: Option<String>,
    pub hnps: Vec<Prefix>,
    pub proxy_coa: Ipv6Addr,
    pub lifetime_secs: u32,
    pub state: BceState,
}

pub fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect::<Vec<_>>().join(":")
}

impl From<&Bce> for BceRow {
    fn from(b: &Bce) -> Self {
        BceRow {
            bid_pri: b.bid_pri,
            bid: b.bid,
            mn_id: b.mn_id.clone(),
            att: format!("{:?}", b.att),
            mn_ll_id: b.mn_ll_id.as_deref().map(hex),
            hnps: b.hnps.clone(),
            proxy_coa: b.proxy_coa,
            lifetime_secs: b.lifetime_secs,
            state: b.state,
        }
    }
}

/// The binding cache, ordered by (MN-ID, BID), indexed by that pair so
/// that a lookup costs the same with ten bindings or a hundred thousand.
#[derive(Debug, Clone, Default)]
pub struct BindingCache {
    entries: BTreeMap<(String, u16), Bce>,
}

impl BindingCache {
    pub fn iter(&self) -> impl Iterator<Item = &Bce> {
        self.entries.values()
    }
    pub fn len(&self) -> usize {
        self.entries.len()
    }
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
    pub fn of_mn<'a>(&'a self, mn_id: &'a str) -> impl Iterator<Item = &'a Bce> + 'a {
        let from = (mn_id.to_string(), 0);
        self.entries.range(from..).map(|(_, b)| b).take_while(move |b| b.mn_id == mn_id)
    }
    pub fn get(&self, mn_id: &str, bid: u16) -> Option<&Bce> {
        self.entries.get(&(mn_id.to_string(), bid))
    }
    pub fn get_mut(&mut self, mn_id: &str, bid: u16) -> Option<&mut Bce> {
        self.entries.get_mut(&(mn_id.to_string(), bid))
    }
    /// The next BID for an MN: one more than the highest in use or still
    /// named by `referenced` (the BIDs of its Flow Mobility Cache entries).
    /// A BID is the name of one binding (RFC 5648): were a number handed
    /// out again after its binding went, a flow entry left bound to the
    /// old binding would silently become active on an unrelated new one.
    pub fn next_bid(&self, mn_id: &str, referenced: impl IntoIterator<Item = u16>) -> u16 {
        let cached = self.of_mn(mn_id).map(|b| b.bid).max().unwrap_or(0);
        let named = referenced.into_iter().max().unwrap_or(0);
        cached.max(named).saturating_add(1)
    }
    pub fn insert(&mut self, bce: Bce) {
        self.entries.insert((bce.mn_id.clone(), bce.bid), bce);
    }
    pub fn remove(&mut self, mn_id: &str, bid: u16) -> Option<Bce> {
        self.entries.remove(&(mn_id.to_string(), bid))
    }
    pub fn rows(&self) -> Vec<BceRow> {
        self.entries.values().map(BceRow::from).collect()
    }
    /// The active entry that carries `prefix` by default: lowest BID-PRI,
    /// then lowest BID.
    pub fn default_for_prefix(&self, prefix: &Prefix) -> Option<&Bce> {
        self.iter().filter(|b| b.is_active() && b.hnps.contains(prefix)).min_by_key(|b| (b.bid_pri, b.bid))
    }
}
