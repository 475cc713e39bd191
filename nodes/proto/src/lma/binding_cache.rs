//! The extended binding cache (flow mobility draft §5.1, Figure 7): several
//! entries per MN, one per attached interface, each with a BID.

use std::collections::{BTreeMap, BTreeSet};
use std::net::Ipv6Addr;
use std::ops::{Deref, DerefMut};

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
/// that a lookup costs the same with ten bindings or a hundred thousand;
/// and by expiry, so that the next timeout is the first of an ordered set
/// rather than a scan of every entry on every turn of a daemon's loop;
/// and by the MAGs that hold active bindings (the peers heartbeats
/// probe), counted as entries change rather than gathered per message.
#[derive(Debug, Clone, Default)]
pub struct BindingCache {
    entries: BTreeMap<(String, u16), Bce>,
    deadlines: BTreeSet<(Instant, String, u16)>,
    active_mags: BTreeMap<Ipv6Addr, usize>,
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
    was: Instant,
    was_mag: Option<Ipv6Addr>,
    deadlines: &'a mut BTreeSet<(Instant, String, u16)>,
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
            let key = (self.bce.mn_id.clone(), self.bce.bid);
            self.deadlines.remove(&(self.was, key.0.clone(), key.1));
            self.deadlines.insert((self.bce.expires_at, key.0, key.1));
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
    pub fn get_mut(&mut self, mn_id: &str, bid: u16) -> Option<BceMut<'_>> {
        let bce = self.entries.get_mut(&(mn_id.to_string(), bid))?;
        let was_mag = mag_of(bce);
        Some(BceMut {
            was: bce.expires_at,
            was_mag,
            bce,
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
    /// The entries whose expiry is at or before `now`, earliest first.
    pub fn expired(&self, now: Instant) -> Vec<(String, u16)> {
        self.deadlines.iter().take_while(|d| d.0 <= now).map(|d| (d.1.clone(), d.2)).collect()
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
        let key = (bce.mn_id.clone(), bce.bid);
        if let Some(old) = self.entries.get(&key) {
            self.deadlines.remove(&(old.expires_at, key.0.clone(), key.1));
            count_mag(&mut self.active_mags, mag_of(old), false);
        }
        self.deadlines.insert((bce.expires_at, key.0.clone(), key.1));
        count_mag(&mut self.active_mags, mag_of(&bce), true);
        self.entries.insert(key, bce);
    }
    pub fn remove(&mut self, mn_id: &str, bid: u16) -> Option<Bce> {
        let old = self.entries.remove(&(mn_id.to_string(), bid))?;
        self.deadlines.remove(&(old.expires_at, old.mn_id.clone(), old.bid));
        count_mag(&mut self.active_mags, mag_of(&old), false);
        Some(old)
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
            assert_eq!(c.deadlines, want);
            assert_eq!(c.next_expiry(), c.iter().map(|b| b.expires_at).min());
            let mags: BTreeSet<Ipv6Addr> = c.iter().filter(|b| b.is_active()).map(|b| b.proxy_coa).collect();
            assert_eq!(c.active_mags().collect::<BTreeSet<_>>(), mags);
        }
    }
}
