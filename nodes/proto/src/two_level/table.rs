//! The rows of the 2-level model's tables (the LMA's binding cache and a
//! MAG's binding update list), shown as the draft's figures show them:
//! `MH:if1 [HNP_1(P),flow1] --> MAG1[A]`.

use std::collections::BTreeMap;
use std::net::Ipv6Addr;

use serde::Serialize;

use crate::prefix::Prefix;
use crate::time::Instant;

/// Active, or Idle: kept after a flow handover for a reverse one (§2).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
pub enum Flag {
    A,
    I,
}

/// Which level of Figure 5 a prefix is on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Kind {
    /// Level 1, permanent (P): allocated by the LMA per interface.
    Permanent,
    /// Level 1, temporal (T): a MAG's, from the LMA before any session.
    Temporal,
    /// Level 2, temporal (T): carved by a MAG per MN service.
    Level2,
}

/// One row: an MN interface's prefixes (and the services that use them)
/// bound to a MAG, Active or Idle.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Row {
    pub mn_id: String,
    /// The interface, by its MN link-layer identifier.
    pub iface: Vec<u8>,
    pub prefixes: Vec<Prefix>,
    pub flows: Vec<String>,
    pub mag: Ipv6Addr,
    pub flag: Flag,
    /// When an Idle row is deleted.
    pub idle_until: Option<Instant>,
}

/// An ordered list of rows; the order is the order rows were made, as in
/// the draft's figures.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Table {
    pub rows: Vec<Row>,
}

impl Table {
    /// The row (index) that holds `p` with the given flag.
    pub fn find(&self, mn_id: &str, p: &Prefix, flag: Flag) -> Option<usize> {
        self.rows.iter().position(|r| r.mn_id == mn_id && r.flag == flag && r.prefixes.contains(p))
    }

    /// Removes `p` from a row, and the row if it is left with no prefix;
    /// gives back the flows the row named if it went.
    pub fn take_prefix(&mut self, at: usize, p: &Prefix) -> Row {
        let row = &mut self.rows[at];
        let mut taken = Row { prefixes: vec![*p], flows: Vec::new(), ..row.clone() };
        row.prefixes.retain(|x| x != p);
        if row.prefixes.is_empty() {
            taken.flows = std::mem::take(&mut row.flows);
            self.rows.remove(at);
        }
        taken
    }

    /// Drops the Idle rows whose time is up; gives how many went.
    pub fn expire(&mut self, now: Instant) -> usize {
        let before = self.rows.len();
        self.rows.retain(|r| !(r.flag == Flag::I && r.idle_until.is_some_and(|t| t <= now)));
        before - self.rows.len()
    }

    /// The earliest time an Idle row is due to go.
    pub fn next_expiry(&self) -> Option<Instant> {
        self.rows.iter().filter_map(|r| r.idle_until).min()
    }

    /// The rows as the draft prints them, with `names` for the labels.
    pub fn lines(&self, names: &Names) -> Vec<String> {
        self.rows.iter().map(|r| names.row(r)).collect()
    }
}

/// Labels for a table as the draft prints it: interfaces (if1), MAGs
/// (MAG1) and prefixes (HNP_1(P), HNP_1_2(T)); anything unnamed is shown
/// as it is.
#[derive(Debug, Clone, Default)]
pub struct Names {
    pub ifaces: BTreeMap<Vec<u8>, String>,
    pub mags: BTreeMap<Ipv6Addr, String>,
    pub prefixes: BTreeMap<Prefix, String>,
}

impl Names {
    pub fn row(&self, r: &Row) -> String {
        let iface = self
            .ifaces
            .get(&r.iface)
            .cloned()
            .unwrap_or_else(|| r.iface.iter().map(|b| format!("{b:02x}")).collect::<Vec<_>>().join(":"));
        let mag = self.mags.get(&r.mag).cloned().unwrap_or_else(|| r.mag.to_string());
        let items: Vec<String> = r
            .prefixes
            .iter()
            .map(|p| self.prefixes.get(p).cloned().unwrap_or_else(|| p.to_string()))
            .chain(r.flows.iter().cloned())
            .collect();
        let flag = match r.flag {
            Flag::A => "A",
            Flag::I => "I",
        };
        format!("MH:{iface} [{}] --> {mag}[{flag}]", items.join(","))
    }
}
