//! The Flow Mobility Cache (flow mobility draft §5.2, Figure 8).

use pmip_wire::TrafficSelector;
use serde::{Deserialize, Serialize};

use crate::flow::describe_selector;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum FlowAction {
    Forward,
    Drop,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FmcEntry {
    pub mn_id: String,
    pub fid_pri: u16,
    pub fid: u16,
    pub selector: TrafficSelector,
    pub bids: Vec<u16>,
    pub action: FlowAction,
}

/// One Figure 8 row.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct FmcRow {
    pub mn_id: String,
    pub fid_pri: u16,
    pub fid: u16,
    pub ts: String,
    pub bids: Vec<u16>,
    pub action: FlowAction,
    /// "active" or "inactive": inactive only when every BID deregistered.
    pub state: &'static str,
}

#[derive(Debug, Clone, Default)]
pub struct FlowMobilityCache {
    entries: Vec<FmcEntry>,
}

impl FlowMobilityCache {
    pub fn iter(&self) -> impl Iterator<Item = &FmcEntry> {
        self.entries.iter()
    }
    pub fn get(&self, mn_id: &str, fid: u16) -> Option<&FmcEntry> {
        self.entries.iter().find(|e| e.mn_id == mn_id && e.fid == fid)
    }
    pub fn get_mut(&mut self, mn_id: &str, fid: u16) -> Option<&mut FmcEntry> {
        self.entries.iter_mut().find(|e| e.mn_id == mn_id && e.fid == fid)
    }
    /// Every BID the entries of an MN name.
    pub fn bids_of<'a>(&'a self, mn_id: &'a str) -> impl Iterator<Item = u16> + 'a {
        self.entries.iter().filter(move |e| e.mn_id == mn_id).flat_map(|e| e.bids.iter().copied())
    }
    pub fn next_fid(&self, mn_id: &str) -> u16 {
        self.entries.iter().filter(|e| e.mn_id == mn_id).map(|e| e.fid).max().unwrap_or(0).saturating_add(1)
    }
    /// Inserts or replaces, keeping FID-PRI order within each MN.
    pub fn upsert(&mut self, e: FmcEntry) {
        self.entries.retain(|x| !(x.mn_id == e.mn_id && x.fid == e.fid));
        self.entries.push(e);
        self.entries.sort_by(|a, b| (&a.mn_id, a.fid_pri, a.fid).cmp(&(&b.mn_id, b.fid_pri, b.fid)));
    }
    pub fn remove(&mut self, mn_id: &str, fid: u16) -> Option<FmcEntry> {
        let i = self.entries.iter().position(|e| e.mn_id == mn_id && e.fid == fid)?;
        Some(self.entries.remove(i))
    }
    pub fn rows(&self, is_active_bid: impl Fn(&str, u16) -> bool) -> Vec<FmcRow> {
        self.entries
            .iter()
            .map(|e| FmcRow {
                mn_id: e.mn_id.clone(),
                fid_pri: e.fid_pri,
                fid: e.fid,
                ts: describe_selector(&e.selector),
                bids: e.bids.clone(),
                action: e.action,
                state: if e.bids.iter().any(|b| is_active_bid(&e.mn_id, *b)) { "active" } else { "inactive" },
            })
            .collect()
    }
}
