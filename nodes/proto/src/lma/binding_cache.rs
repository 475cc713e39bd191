//! The extended binding cache (flow mobility draft §5.1, Figure 7): several
//! entries per MN, one per attached interface, each with a BID.

use std::collections::{BTreeMap, BTreeSet};
use std::net::Ipv6Addr;
use std::ops::{Deref, DerefMut};
use std::sync::Arc;

use pmip_wire::{AccessTechnologyType, Timestamp};
use serde::Serialize;

use super::fast_hash::FastMap;
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

/// The binding cache, ordered by (MN-ID, BID). Lookups go through a hash
/// index that borrows the MN-ID it is given (no owned key, no string
/// comparison per tree level), so that a lookup costs the same with ten
/// bindings or a hundred thousand; the order is kept by a set of MN-IDs
/// touched only when an MN gets its first entry or loses its last. Expiry
/// is indexed by (deadline, entry number), so that the next timeout is the
/// first of an ordered set rather than a scan of every entry on every turn
/// of a daemon's loop, and moving a deadline compares integers only. The
/// MAGs that hold active bindings (the peers heartbeats probe) are counted
/// as entries change rather than gathered per message.
#[derive(Debug, Clone, Default)]
pub struct BindingCache {
    entries: FastMap<Arc<str>, Bids>,
    order: BTreeSet<Arc<str>>,
    len: usize,
    deadlines: BTreeSet<(Instant, u64)>,
    /// The entry each number of `deadlines` stands for.
    numbered: FastMap<u64, (Arc<str>, u16)>,
    next_number: u64,
    active_mags: BTreeMap<Ipv6Addr, usize>,
}

/// An MN's entries by BID, in BID order. An MN has one or two: a sorted
/// vector holds them in a few dozen octets, where a `BTreeMap` allocates a
/// node for eleven (it doubled the LMA's memory per binding).
#[derive(Debug, Clone, Default)]
struct Bids(Vec<(u16, Slot)>);

impl Bids {
    fn at(&self, bid: u16) -> Result<usize, usize> {
        self.0.binary_search_by_key(&bid, |(b, _)| *b)
    }
    fn get(&self, bid: &u16) -> Option<&Slot> {
        self.at(*bid).ok().map(|i| &self.0[i].1)
    }
    fn get_mut(&mut self, bid: &u16) -> Option<&mut Slot> {
        self.at(*bid).ok().map(|i| &mut self.0[i].1)
    }
    fn insert(&mut self, bid: u16, slot: Slot) {
        match self.at(bid) {
            Ok(i) => self.0[i].1 = slot,
            Err(i) => self.0.insert(i, (bid, slot)),
        }
    }
    fn remove(&mut self, bid: &u16) -> Option<Slot> {
        self.at(*bid).ok().map(|i| self.0.remove(i).1)
    }
    fn values(&self) -> impl Iterator<Item = &Slot> {
        self.0.iter().map(|(_, s)| s)
    }
    fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

/// An entry and the number its deadline is indexed under.
#[derive(Debug, Clone)]
struct Slot {
    number: u64,
    bce: Bce,
}

/// The MAG an entry counts for: its Proxy-CoA while it is active.
fn mag_of(bce: &Bce) -> Option<Ipv6Addr> {
    bce.is_active().then_some(bce.proxy_coa)
}

fn count_mag(mags: &mut BTreeMap<Ipv6Addr, usize>, mag: Option<Ipv6Addr>, up: bool) {
    let Some(mag) = mag else { return };
    if up {
        *mags.entry(mag).or_default() += 1;
    } else if let Some(n) = mags.get_mut(&mag) {
        *n -= 1;
        if *n == 0 {
            mags.remove(&mag);
        }
    }
}

/// An entry borrowed for change: its expiry is indexed again when the
/// borrow ends, so no caller can move a deadline without the index.
pub struct BceMut<'a> {
    bce: &'a mut Bce,
    number: u64,
    was: Instant,
    was_mag: Option<Ipv6Addr>,
    deadlines: &'a mut BTreeSet<(Instant, u64)>,
    active_mags: &'a mut BTreeMap<Ipv6Addr, usize>,
}

impl Deref for BceMut<'_> {
    type Target = Bce;
    fn deref(&self) -> &Bce {
        self.bce
    }
}

impl DerefMut for BceMut<'_> {
    fn deref_mut(&mut self) -> &mut Bce {
        self.bce
    }
}

impl Drop for BceMut<'_> {
    fn drop(&mut self) {
        if self.bce.expires_at != self.was {
            self.deadlines.remove(&(self.was, self.number));
            self.deadlines.insert((self.bce.expires_at, self.number));
        }
        let now_mag = mag_of(self.bce);
        if now_mag != self.was_mag {
            count_mag(self.active_mags, self.was_mag, false);
            count_mag(self.active_mags, now_mag, true);
        }
    }
}

impl BindingCache {
    pub fn iter(&self) -> impl Iterator<Item = &Bce> {
        self.order.iter().flat_map(|mn| self.of_mn(mn))
    }
    pub fn len(&self) -> usize {
        self.len
    }
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }
    pub fn of_mn<'a>(&'a self, mn_id: &'a str) -> impl Iterator<Item = &'a Bce> + 'a {
        self.entries.get(mn_id).into_iter().flat_map(|m| m.values().map(|s| &s.bce))
    }
    pub fn get(&self, mn_id: &str, bid: u16) -> Option<&Bce> {
        self.entries.get(mn_id)?.get(&bid).map(|s| &s.bce)
    }
    pub fn get_mut(&mut self, mn_id: &str, bid: u16) -> Option<BceMut<'_>> {
        let slot = self.entries.get_mut(mn_id)?.get_mut(&bid)?;
        let was_mag = mag_of(&slot.bce);
        Some(BceMut {
            was: slot.bce.expires_at,
            was_mag,
            number: slot.number,
            bce: &mut slot.bce,
            deadlines: &mut self.deadlines,
            active_mags: &mut self.active_mags,
        })
    }
    /// The MAGs (Proxy-CoAs) of the active entries.
    pub fn active_mags(&self) -> impl Iterator<Item = Ipv6Addr> + '_ {
        self.active_mags.keys().copied()
    }
    /// The earliest expiry of any entry.
    pub fn next_expiry(&self) -> Option<Instant> {
        self.deadlines.first().map(|d| d.0)
    }
    /// The entries whose expiry is at or before `now`, earliest first, then
    /// by MN-ID and BID.
    pub fn expired(&self, now: Instant) -> Vec<(String, u16)> {
        let mut due: Vec<(Instant, &str, u16)> = self
            .deadlines
            .iter()
            .take_while(|d| d.0 <= now)
            .filter_map(|(at, n)| self.numbered.get(n).map(|(mn, bid)| (*at, &**mn, *bid)))
            .collect();
        due.sort_unstable();
        due.into_iter().map(|(_, mn, bid)| (mn.to_string(), bid)).collect()
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
        let bid = bce.bid;
        if let Some(slot) = self.entries.get_mut(bce.mn_id.as_str()).and_then(|m| m.get_mut(&bid)) {
            self.deadlines.remove(&(slot.bce.expires_at, slot.number));
            self.deadlines.insert((bce.expires_at, slot.number));
            count_mag(&mut self.active_mags, mag_of(&slot.bce), false);
            count_mag(&mut self.active_mags, mag_of(&bce), true);
            slot.bce = bce;
            return;
        }
        let key = match self.entries.get_key_value(bce.mn_id.as_str()) {
            Some((k, _)) => k.clone(),
            None => {
                let k: Arc<str> = Arc::from(bce.mn_id.as_str());
                self.order.insert(k.clone());
                k
            }
        };
        let number = self.next_number;
        self.next_number += 1;
        self.len += 1;
        self.deadlines.insert((bce.expires_at, number));
        self.numbered.insert(number, (key.clone(), bid));
        count_mag(&mut self.active_mags, mag_of(&bce), true);
        self.entries.entry(key).or_default().insert(bid, Slot { number, bce });
    }
    pub fn remove(&mut self, mn_id: &str, bid: u16) -> Option<Bce> {
        let of_mn = self.entries.get_mut(mn_id)?;
        let old = of_mn.remove(&bid)?;
        if of_mn.is_empty() {
            self.entries.remove(mn_id);
            self.order.remove(mn_id);
        }
        self.len -= 1;
        self.deadlines.remove(&(old.bce.expires_at, old.number));
        self.numbered.remove(&old.number);
        count_mag(&mut self.active_mags, mag_of(&old.bce), false);
        Some(old.bce)
    }
    pub fn rows(&self) -> Vec<BceRow> {
        self.iter().map(BceRow::from).collect()
    }
    /// The active entry that carries `prefix` by default: lowest BID-PRI,
    /// then lowest BID.
    pub fn default_for_prefix(&self, prefix: &Prefix) -> Option<&Bce> {
        self.iter().filter(|b| b.is_active() && b.hnps.contains(prefix)).min_by_key(|b| (b.bid_pri, b.bid))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::time::Span;

    fn bce(mn: &str, bid: u16, expires: u64) -> Bce {
        Bce {
            bid,
            bid_pri: 10,
            mn_id: mn.into(),
            att: AccessTechnologyType::Ieee80211,
            mn_ll_id: None,
            hnps: Vec::new(),
            proxy_coa: Ipv6Addr::LOCALHOST,
            link_local: None,
            lifetime_secs: 0,
            registered_at: Instant::ZERO,
            expires_at: Instant::ZERO + Span::from_secs(expires),
            last_sequence: 0,
            last_timestamp: None,
            state: BceState::Active,
        }
    }

    /// The expiry index always holds exactly one deadline per entry, the
    /// entry's own, and the MAG index exactly the MAGs of the active
    /// entries, whatever sequence of inserts, changes and removals.
    #[test]
    fn the_expiry_index_follows_every_change() {
        let mut c = BindingCache::default();
        let mut seed = 7u64;
        let mut next = || {
            seed = seed.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
            seed >> 33
        };
        for _ in 0..5000 {
            let mn = format!("mn{}", next() % 20);
            let bid = (next() % 3) as u16 + 1;
            match next() % 5 {
                0 => c.insert(bce(&mn, bid, next() % 100)),
                1 => {
                    c.remove(&mn, bid);
                }
                2 => {
                    if let Some(mut e) = c.get_mut(&mn, bid) {
                        e.expires_at = Instant::ZERO + Span::from_secs(next() % 100);
                    }
                }
                3 => {
                    if let Some(mut e) = c.get_mut(&mn, bid) {
                        e.state = if next() % 2 == 0 { BceState::Deregistered } else { BceState::Active };
                    }
                }
                _ => {
                    if let Some(mut e) = c.get_mut(&mn, bid) {
                        e.proxy_coa = Ipv6Addr::from(next() as u128 % 4);
                    }
                }
            }
            let want: BTreeSet<(Instant, String, u16)> =
                c.iter().map(|b| (b.expires_at, b.mn_id.clone(), b.bid)).collect();
            let have: BTreeSet<(Instant, String, u16)> =
                c.deadlines.iter().map(|(at, n)| (*at, c.numbered[n].0.to_string(), c.numbered[n].1)).collect();
            assert_eq!(have, want);
            assert_eq!(c.numbered.len(), c.len());
            let due = Instant::ZERO + Span::from_secs(next() % 100);
            let expired: Vec<(String, u16)> = want.iter().filter(|d| d.0 <= due).map(|d| (d.1.clone(), d.2)).collect();
            assert_eq!(c.expired(due), expired, "expired entries come by deadline, then MN-ID and BID");
            assert_eq!(c.deadlines.len(), c.len());
            assert_eq!(c.len(), c.iter().count());
            assert_eq!(c.next_expiry(), c.iter().map(|b| b.expires_at).min());
            let mags: BTreeSet<Ipv6Addr> = c.iter().filter(|b| b.is_active()).map(|b| b.proxy_coa).collect();
            assert_eq!(c.active_mags().collect::<BTreeSet<_>>(), mags);
        }
    }
}
