//! A MAG of the 2-level model: its binding update list in the draft's
//! form, the level-2 prefixes it carves out of its temporal prefix per MN
//! service, and the prefixes its Router Advertisement carries.

use std::collections::BTreeMap;
use std::net::Ipv6Addr;

use pmip_wire::{AccessTechnologyType, HandoffIndicator, MobilityOption, Pba, Pbu, PbuFlags};

use super::table::{Flag, Row, Table};
use super::{nth_subprefix, within, TwoLevelConfig};
use crate::output::Output;
use crate::prefix::Prefix;
use crate::signalling::{hnp, hnp_request, nai, pick};
use crate::time::Instant;

#[derive(Debug, Clone)]
struct Sent {
    mn_id: String,
    iface: Vec<u8>,
    hi: HandoffIndicator,
}

#[derive(Debug, Clone)]
pub struct TwoLevelMag {
    pub config: TwoLevelConfig,
    pub address: Ipv6Addr,
    /// Every MAG's level-1 temporal prefix, as the LMA distributed them.
    temporal: BTreeMap<Ipv6Addr, Prefix>,
    /// The service each carved level-2 prefix is for.
    services: BTreeMap<Prefix, String>,
    next_level2: u64,
    sequence: u16,
    sent: BTreeMap<u16, Sent>,
    pub table: Table,
    /// The MNs that use the 2-level model here.
    pub mns: std::collections::BTreeSet<String>,
}

impl TwoLevelMag {
    pub fn new(address: Ipv6Addr, config: TwoLevelConfig) -> Self {
        TwoLevelMag {
            config,
            address,
            temporal: BTreeMap::new(),
            services: BTreeMap::new(),
            next_level2: 1,
            // Apart from the sequence numbers of the MAG's RFC 5213 PBUs
            // (which start at 1), so that a PBA finds its PBU's owner.
            sequence: 0x8000,
            sent: BTreeMap::new(),
            table: Table::default(),
            mns: Default::default(),
        }
    }

    /// Whether a PBU with this sequence number is waiting for its PBA.
    pub fn awaits(&self, sequence: u16) -> bool {
        self.sent.contains_key(&sequence)
    }

    /// The LMA's distribution of temporal prefixes (before any session).
    pub fn learn_temporal(&mut self, all: &BTreeMap<Ipv6Addr, Prefix>) {
        self.temporal = all.clone();
    }

    pub fn own_temporal(&self) -> Option<Prefix> {
        self.temporal.get(&self.address).copied()
    }

    fn pbu(&mut self, mn_id: &str, iface: &[u8], hi: HandoffIndicator, prefixes: &[Prefix]) -> Pbu {
        self.sequence = self.sequence.wrapping_add(1);
        let mut options = vec![nai(mn_id)];
        if prefixes.is_empty() {
            options.push(hnp_request());
        } else {
            options.extend(prefixes.iter().map(|p| hnp(*p)));
        }
        options.push(MobilityOption::HandoffIndicator(hi));
        options.push(MobilityOption::AccessTechnologyType(AccessTechnologyType::Ieee80211));
        options.push(MobilityOption::MnLinkLayerIdentifier(iface.to_vec()));
        self.sent.insert(self.sequence, Sent { mn_id: mn_id.to_string(), iface: iface.to_vec(), hi });
        Pbu {
            sequence: self.sequence,
            flags: PbuFlags { a: true, p: true, ..Default::default() },
            lifetime: (self.config.lifetime_secs / 4).min(u32::from(u16::MAX)) as u16,
            options,
        }
    }

    /// An MN interface attached here: HI 1 (new), 2 (another interface
    /// takes over `prefixes`), or 3 (the same interface from another MAG).
    pub fn attach(&mut self, mn_id: &str, iface: &[u8], hi: HandoffIndicator, prefixes: &[Prefix]) -> Pbu {
        self.pbu(mn_id, iface, hi, prefixes)
    }

    /// Carves the next level-2 prefix of this MAG's temporal prefix for a
    /// service of the MN, and registers it with the LMA (HI 5).
    pub fn carve(&mut self, mn_id: &str, iface: &[u8], service: &str) -> Option<(Prefix, Pbu)> {
        let t = self.own_temporal()?;
        let p = nth_subprefix(t, self.config.level2_len, self.next_level2)?;
        self.next_level2 += 1;
        self.services.insert(p, service.to_string());
        let pbu = self.pbu(mn_id, iface, HandoffIndicator::NotChanged, &[p]);
        Some((p, pbu))
    }

    /// A flow handover to this MAG (PFHO with level-2 prefixes, FFHO with
    /// another MAG's level-1 temporal prefix), or back (reverse): HI 5.
    pub fn take_flows(&mut self, mn_id: &str, iface: &[u8], prefixes: &[Prefix]) -> Pbu {
        self.pbu(mn_id, iface, HandoffIndicator::NotChanged, prefixes)
    }

    /// The service a level-2 prefix was carved for, if this MAG carved it.
    pub fn service_of(&self, p: &Prefix) -> Option<&str> {
        self.services.get(p).map(String::as_str)
    }

    /// The L2 hint that flows left this MAG (the draft's "after receiving
    /// the L2 hints"): the entries within `prefixes` are kept Idle.
    pub fn hint_moved(&mut self, now: Instant, mn_id: &str, prefixes: &[Prefix]) {
        let until = self.config.idle_until(now);
        for p in prefixes {
            let mut i = 0;
            while i < self.table.rows.len() {
                let r = &self.table.rows[i];
                // The MAG's own level-1 temporal prefix is where its
                // level-2 prefixes come from, not a flow: it never goes Idle
                // (it did with an FFHO's aggregate, and stayed Idle after
                // the reverse handover).
                let own_temporal = r.prefixes.iter().any(|q| self.temporal.values().any(|t| t == q));
                let ours = r.mn_id == mn_id && r.flag == Flag::A && !own_temporal;
                if ours && r.prefixes.len() > 1 && r.prefixes.contains(p) {
                    let before = self.table.rows.len();
                    let mut idle = self.table.take_prefix(i, p);
                    idle.flag = Flag::I;
                    idle.idle_until = until;
                    let pos = if self.table.rows.len() == before { i + 1 } else { i };
                    self.table.rows.insert(pos, idle);
                    i = pos;
                } else if ours && r.prefixes.iter().all(|q| within(q, p)) {
                    let r = &mut self.table.rows[i];
                    r.flag = Flag::I;
                    r.idle_until = until;
                }
                i += 1;
            }
        }
    }

    /// The binding update list as the draft's figures print it, each
    /// prefix marked (P) or (T), a level-2 prefix carved here with the
    /// service it is for (`2002:2:1:1::/64(T)=voip`).
    pub fn figure(&self) -> Vec<String> {
        let mut names = self.config.labels.names();
        for p in self.table.rows.iter().flat_map(|r| r.prefixes.iter()) {
            let temporal = self.temporal.values().any(|t| within(p, t));
            let label = match (temporal, self.services.get(p)) {
                (false, _) => format!("{p}(P)"),
                (true, None) => format!("{p}(T)"),
                (true, Some(s)) => format!("{p}(T)={s}"),
            };
            names.prefixes.insert(*p, label);
        }
        self.table.lines(&names)
    }

    /// Deletes Idle entries whose time is up.
    pub fn on_timeout(&mut self, now: Instant, out: &mut Output) {
        let n = self.table.expire(now);
        if n > 0 {
            out.event(format!("2-level MAG {}: {n} Idle entries expired", self.address));
        }
    }

    pub fn next_timeout(&self) -> Option<Instant> {
        self.table.next_expiry()
    }

    /// The PBA for one of this MAG's PBUs: the binding update list follows.
    pub fn on_pba(&mut self, _now: Instant, pba: &Pba, out: &mut Output) {
        let Some(sent) = self.sent.remove(&pba.sequence) else {
            out.event(format!("2-level MAG {}: PBA seq {} answers no PBU of ours", self.address, pba.sequence));
            return;
        };
        if !pba.status.is_accepted() {
            out.event(format!(
                "2-level MAG {}: PBU seq {} rejected with {}",
                self.address,
                pba.sequence,
                pba.status.value()
            ));
            return;
        }
        let granted = pick(&pba.options).hnps;
        let row = |prefixes: Vec<Prefix>| Row {
            mn_id: sent.mn_id.clone(),
            iface: sent.iface.clone(),
            prefixes,
            flows: Vec::new(),
            mag: self.address,
            flag: Flag::A,
            idle_until: None,
        };
        match sent.hi {
            HandoffIndicator::NotChanged => {
                // Prefixes carved here join this interface's level-2 row;
                // those moved here from another MAG (PFHO, FFHO) make one
                // row per PBU, as in Figures 3, 4 and 7.
                let mut moved_in = Vec::new();
                for p in granted {
                    if let Some(at) = self.table.find(&sent.mn_id, &p, Flag::I) {
                        // A reverse handover: the Idle entry is Active again.
                        let r = &mut self.table.rows[at];
                        r.flag = Flag::A;
                        r.idle_until = None;
                        r.iface = sent.iface.clone();
                    } else if self.table.find(&sent.mn_id, &p, Flag::A).is_some() {
                        // A refresh of what is already here.
                    } else if self.services.contains_key(&p) {
                        let at = self.table.rows.iter().position(|r| {
                            r.mn_id == sent.mn_id
                                && r.iface == sent.iface
                                && r.flag == Flag::A
                                && r.prefixes.iter().all(|q| self.services.contains_key(q))
                        });
                        match at {
                            Some(at) => self.table.rows[at].prefixes.push(p),
                            None => self.table.rows.push(row(vec![p])),
                        }
                    } else {
                        moved_in.push(p);
                    }
                }
                if !moved_in.is_empty() {
                    self.table.rows.push(row(moved_in));
                }
            }
            hi => {
                // The permanent prefix, and for a new attachment behind
                // this MAG its level-1 temporal prefix (Figure 6).
                self.table.rows.retain(|r| !(r.mn_id == sent.mn_id && r.iface == sent.iface && r.flag == Flag::A));
                let (temporal, permanent): (Vec<Prefix>, Vec<Prefix>) =
                    granted.into_iter().partition(|p| self.temporal.values().any(|t| within(p, t)));
                self.table.rows.push(row(permanent));
                if hi != HandoffIndicator::BetweenInterfaces {
                    if let Some(t) = self.own_temporal() {
                        self.table.rows.push(row(vec![t]));
                    }
                }
                // Level-2 prefixes that came with the interface (IAHO,
                // IIHO): advertised and routed here now.
                if !temporal.is_empty() {
                    self.table.rows.push(row(temporal));
                }
            }
        }
    }

    /// The prefixes this MAG's RA to an MN interface carries: the
    /// permanent prefix beside the Active level-2 prefixes (§5.1.1 step 4),
    /// never a level-1 temporal prefix, which no host can use as a /64.
    pub fn ra_prefixes(&self, mn_id: &str, iface: &[u8]) -> Vec<Prefix> {
        self.table
            .rows
            .iter()
            .filter(|r| r.mn_id == mn_id && r.iface == iface && r.flag == Flag::A)
            .flat_map(|r| r.prefixes.iter().copied())
            .filter(|p| !self.temporal.values().any(|t| t == p))
            .collect()
    }
}
