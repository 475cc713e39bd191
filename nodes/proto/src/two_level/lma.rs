//! The LMA of the 2-level model: allocates permanent prefixes per MN
//! interface, distributes temporal prefixes to the MAGs, and keeps the
//! binding table of the draft's figures through IAHO, IIHO, PFHO and FFHO.

use std::collections::BTreeMap;
use std::net::Ipv6Addr;

use pmip_wire::{HandoffIndicator, MobilityOption, Pba, PbaFlags, PbaStatus, Pbu};

use super::table::{Flag, Kind, Row, Table};
use super::{within, TwoLevelConfig};
use crate::output::Output;
use crate::prefix::Prefix;
use crate::signalling::{hnp, nai, pick, Picked};
use crate::time::Instant;

#[derive(Debug, Clone)]
pub struct TwoLevelLma {
    pub config: TwoLevelConfig,
    pub address: Ipv6Addr,
    /// Level-1 temporal prefix of each MAG, by its address.
    temporal: BTreeMap<Ipv6Addr, Prefix>,
    /// Level-1 permanent prefixes each MN may be given, one per interface.
    permanent_pool: BTreeMap<String, Vec<Prefix>>,
    /// Which interface (MN link-layer id) holds which permanent prefix.
    permanent: BTreeMap<(String, Vec<u8>), Prefix>,
    pub table: Table,
}

/// What a PBU asked for, as this model reads it.
enum Request {
    /// HI 1: a new interface; gets a permanent prefix.
    Initial,
    /// HI 3: the same interface behind another MAG; every entry moves.
    Iaho,
    /// HI 2: another interface takes over; every entry of the old one moves.
    Iiho,
    /// HI 5 with temporal prefixes: new level-2 prefixes of the sending
    /// MAG to register, or another MAG's level-2 prefixes (PFHO) or its
    /// aggregated level-1 temporal prefix (FFHO) to move here, or Idle
    /// ones here to take back (a reverse handover).
    Level2(Vec<Prefix>),
    /// HI 5 with the interface's permanent prefix: a refresh.
    Refresh,
}

impl TwoLevelLma {
    pub fn new(address: Ipv6Addr, config: TwoLevelConfig) -> Self {
        TwoLevelLma {
            config,
            address,
            temporal: BTreeMap::new(),
            permanent_pool: BTreeMap::new(),
            permanent: BTreeMap::new(),
            table: Table::default(),
        }
    }

    /// The policy profile: the permanent prefixes an MN's interfaces get,
    /// in order.
    pub fn add_mn(&mut self, mn_id: &str, permanent: Vec<Prefix>) {
        self.permanent_pool.insert(mn_id.to_string(), permanent);
    }

    /// Hands each MAG a level-1 temporal prefix of the pool, before any
    /// session (§3). Gives the whole map, which every MAG is told.
    pub fn distribute(&mut self, mags: &[Ipv6Addr]) -> Result<BTreeMap<Ipv6Addr, Prefix>, String> {
        self.temporal = super::distribution(&self.config, mags)?;
        Ok(self.temporal.clone())
    }

    pub fn temporal_of(&self, mag: &Ipv6Addr) -> Option<Prefix> {
        self.temporal.get(mag).copied()
    }

    /// Which level a prefix is on, by where it lies.
    pub fn kind(&self, p: &Prefix) -> Kind {
        if self.temporal.values().any(|t| t == p) {
            Kind::Temporal
        } else if within(p, &self.config.temporal_pool) {
            Kind::Level2
        } else {
            Kind::Permanent
        }
    }

    /// The MAG whose level-1 temporal prefix holds `p`.
    fn owner(&self, p: &Prefix) -> Option<Ipv6Addr> {
        self.temporal.iter().find(|(_, t)| within(p, t)).map(|(m, _)| *m)
    }

    /// The MAG the downlink to `dst` goes to: the Active entry with the
    /// longest prefix that holds it.
    pub fn route(&self, dst: &Ipv6Addr) -> Option<Ipv6Addr> {
        self.table
            .rows
            .iter()
            .filter(|r| r.flag == Flag::A)
            .flat_map(|r| r.prefixes.iter().map(move |p| (p, r.mag)))
            .filter(|(p, _)| p.contains(dst))
            .max_by_key(|(p, _)| p.prefix_len())
            .map(|(_, m)| m)
    }

    /// The table as the draft's figures print it, each prefix marked
    /// (P) permanent or (T) temporal; interfaces by link-layer id and MAGs
    /// by address.
    pub fn figure(&self) -> Vec<String> {
        let mut names = self.config.labels.names();
        for p in self.table.rows.iter().flat_map(|r| r.prefixes.iter()) {
            let mark = if self.kind(p) == Kind::Permanent { "P" } else { "T" };
            names.prefixes.insert(*p, format!("{p}({mark})"));
        }
        self.table.lines(&names)
    }

    /// Deletes Idle entries whose time is up.
    pub fn on_timeout(&mut self, now: Instant, out: &mut Output) {
        let n = self.table.expire(now);
        if n > 0 {
            out.event(format!("2-level: {n} Idle entries expired"));
        }
    }

    pub fn next_timeout(&self) -> Option<Instant> {
        self.table.next_expiry()
    }

    /// Processes a PBU from `src` and gives the PBA.
    pub fn on_pbu(&mut self, now: Instant, src: Ipv6Addr, pbu: &Pbu, out: &mut Output) -> Pba {
        let o = pick(&pbu.options);
        let result = self.register(now, src, &o);
        match &result {
            Ok(p) => out.event(format!(
                "2-level: PBU seq {} from {src} for {}: accepted, HNPs [{}]",
                pbu.sequence,
                o.mn_id.as_deref().unwrap_or("?"),
                p.iter().map(|p| p.to_string()).collect::<Vec<_>>().join(", ")
            )),
            Err(s) => out.event(format!(
                "2-level: PBU seq {} from {src} for {}: rejected with {} ({s:?})",
                pbu.sequence,
                o.mn_id.as_deref().unwrap_or("?"),
                s.value()
            )),
        }
        let mut options = Vec::new();
        if let Some(id) = &o.mn_id {
            options.push(nai(id));
        }
        let (status, lifetime) = match result {
            Ok(prefixes) => {
                options.extend(prefixes.into_iter().map(hnp));
                (PbaStatus::Accepted, (self.config.lifetime_secs / 4).min(u32::from(u16::MAX)) as u16)
            }
            Err(s) => (s, 0),
        };
        if let Some(hi) = o.hi {
            options.push(MobilityOption::HandoffIndicator(hi));
        }
        if let Some(l) = &o.mn_ll_id {
            options.push(MobilityOption::MnLinkLayerIdentifier(l.clone()));
        }
        Pba { status, flags: PbaFlags { p: true, ..Default::default() }, sequence: pbu.sequence, lifetime, options }
    }

    fn classify(&self, mn_id: &str, iface: &[u8], o: &Picked) -> Result<Request, PbaStatus> {
        let hi = o.hi.ok_or(PbaStatus::MissingHandoffIndicatorOption)?;
        let mine = self.permanent.get(&(mn_id.to_string(), iface.to_vec()));
        match hi {
            HandoffIndicator::NewInterface => Ok(Request::Initial),
            HandoffIndicator::BetweenMags => Ok(Request::Iaho),
            HandoffIndicator::BetweenInterfaces => Ok(Request::Iiho),
            HandoffIndicator::NotChanged => {
                if o.hnps.is_empty() {
                    return Err(PbaStatus::MissingHomeNetworkPrefixOption);
                }
                if o.hnps.iter().all(|p| Some(p) == mine) {
                    return Ok(Request::Refresh);
                }
                let owners: Vec<Option<Ipv6Addr>> = o.hnps.iter().map(|p| self.owner(p)).collect();
                if owners.iter().any(Option::is_none) {
                    return Err(PbaStatus::NotAuthorizedForHomeNetworkPrefix);
                }
                Ok(Request::Level2(o.hnps.clone()))
            }
            _ => Err(PbaStatus::ReasonUnspecified),
        }
    }

    /// Updates the table; the prefixes for the PBA, or its status.
    fn register(&mut self, now: Instant, src: Ipv6Addr, o: &Picked) -> Result<Vec<Prefix>, PbaStatus> {
        let mn_id = o.mn_id.clone().ok_or(PbaStatus::MissingMnIdentifierOption)?;
        let pool = self.permanent_pool.get(&mn_id).cloned().ok_or(PbaStatus::ProxyRegNotEnabled)?;
        let Some(t_src) = self.temporal.get(&src).copied() else {
            return Err(PbaStatus::MagNotAuthorizedForProxyReg);
        };
        let iface = o.mn_ll_id.clone().ok_or(PbaStatus::ReasonUnspecified)?;
        let row = |prefixes: Vec<Prefix>, mag: Ipv6Addr| Row {
            mn_id: mn_id.clone(),
            iface: iface.clone(),
            prefixes,
            flows: Vec::new(),
            mag,
            flag: Flag::A,
            idle_until: None,
        };
        match self.classify(&mn_id, &iface, o)? {
            Request::Initial => {
                let key = (mn_id.clone(), iface.clone());
                let p = match self.permanent.get(&key) {
                    Some(p) => *p,
                    None => {
                        let taken: Vec<Prefix> =
                            self.permanent.iter().filter(|((m, _), _)| *m == mn_id).map(|(_, p)| *p).collect();
                        let p =
                            pool.into_iter().find(|p| !taken.contains(p)).ok_or(PbaStatus::InsufficientResources)?;
                        self.permanent.insert(key, p);
                        p
                    }
                };
                // Figure 7 (Before): the permanent prefix beside the MAG's
                // level-1 temporal prefix, which the MAG's level-2 ones
                // come from.
                self.table.rows.retain(|r| !(r.mn_id == mn_id && r.iface == iface));
                self.table.rows.push(row(vec![p, t_src], src));
                Ok(vec![p])
            }
            Request::Refresh => {
                let p = o.hnps[0];
                if self.table.find(&mn_id, &p, Flag::A).is_none() {
                    return Err(PbaStatus::BcePbuPrefixSetDoNotMatch);
                }
                Ok(vec![p])
            }
            Request::Iaho => {
                // Same interface, new MAG: every Active entry of it moves.
                // The interface is found by its link-layer id, else (an
                // access technology that shows a new one) by the permanent
                // prefix the PBU names, as RFC 5213 §5.4.1 allows.
                let by_ll = self.permanent.get(&(mn_id.clone(), iface.clone())).map(|p| (iface.clone(), *p));
                let by_prefix = || {
                    let p = o.hnps.first()?;
                    self.permanent.iter().find(|((m, _), q)| *m == mn_id && *q == p).map(|((_, i), q)| (i.clone(), *q))
                };
                let (old, p) = by_ll.or_else(by_prefix).ok_or(PbaStatus::BcePbuPrefixSetDoNotMatch)?;
                if !o.hnps.is_empty() && o.hnps != [p] {
                    return Err(PbaStatus::BcePbuPrefixSetDoNotMatch);
                }
                for r in self.table.rows.iter_mut().filter(|r| r.mn_id == mn_id && r.iface == old && r.flag == Flag::A)
                {
                    r.mag = src;
                    r.iface = iface.clone();
                }
                self.permanent.remove(&(mn_id.clone(), old));
                self.permanent.insert((mn_id.clone(), iface.clone()), p);
                Ok(self.with_level2(&mn_id, &iface, p))
            }
            Request::Iiho => {
                // Another interface takes over the permanent prefix named
                // in the PBU, and every entry of the interface that had it.
                let p = *o.hnps.first().ok_or(PbaStatus::MissingHomeNetworkPrefixOption)?;
                let old = self
                    .permanent
                    .iter()
                    .find(|((m, _), q)| *m == mn_id && **q == p)
                    .map(|((_, i), _)| i.clone())
                    .ok_or(PbaStatus::NotAuthorizedForHomeNetworkPrefix)?;
                for r in self.table.rows.iter_mut().filter(|r| r.mn_id == mn_id && r.iface == old && r.flag == Flag::A)
                {
                    r.iface = iface.clone();
                    r.mag = src;
                }
                self.permanent.remove(&(mn_id.clone(), old));
                self.permanent.insert((mn_id.clone(), iface.clone()), p);
                Ok(self.with_level2(&mn_id, &iface, p))
            }
            Request::Level2(prefixes) => {
                let mut fresh = Vec::new();
                let mut moved = Vec::new();
                for p in &prefixes {
                    let known =
                        self.table.rows.iter().any(|r| r.mn_id == mn_id && r.prefixes.iter().any(|q| within(q, p)));
                    if known {
                        moved.extend(self.move_to(now, &mn_id, &iface, src, p)?);
                    } else if self.owner(p) == Some(src) && self.kind(p) == Kind::Level2 {
                        fresh.push(*p);
                    } else {
                        return Err(PbaStatus::BcePbuPrefixSetDoNotMatch);
                    }
                }
                if !fresh.is_empty() {
                    // A MAG's new level-2 prefixes for one interface share a row.
                    let at = self.table.rows.iter().position(|r| {
                        r.mn_id == mn_id
                            && r.iface == iface
                            && r.mag == src
                            && r.flag == Flag::A
                            && r.prefixes.iter().all(|q| self.kind(q) == Kind::Level2 && self.owner(q) == Some(src))
                    });
                    match at {
                        Some(at) => self.table.rows[at].prefixes.extend(fresh.iter().copied()),
                        None => self.table.rows.push(row(fresh.clone(), src)),
                    }
                }
                // The PBA names every level-2 prefix now bound here: an
                // aggregate (FFHO) comes back as the prefixes it stood for.
                fresh.extend(moved);
                Ok(fresh)
            }
        }
    }

    /// The PBA's prefixes after an IAHO or IIHO: the permanent prefix and
    /// the level-2 prefixes whose entries moved with the interface, so the
    /// new MAG advertises and routes them as the old one did (the flows
    /// follow, Figures 1 and 2).
    fn with_level2(&self, mn_id: &str, iface: &[u8], p: Prefix) -> Vec<Prefix> {
        let level2 = self
            .table
            .rows
            .iter()
            .filter(|r| r.mn_id == mn_id && r.iface == iface && r.flag == Flag::A)
            .flat_map(|r| r.prefixes.iter().copied())
            .filter(|q| self.kind(q) == Kind::Level2);
        std::iter::once(p).chain(level2).collect()
    }

    /// Moves the temporal prefixes that lie in `p` to `iface` behind `src`:
    /// a level-2 prefix alone (PFHO), or every row within an aggregated
    /// level-1 temporal prefix (FFHO). What it leaves is kept Idle for a
    /// reverse handover; an Idle entry already behind `src` is made Active
    /// again rather than copied (the reverse handover itself).
    fn move_to(
        &mut self,
        now: Instant,
        mn_id: &str,
        iface: &[u8],
        src: Ipv6Addr,
        p: &Prefix,
    ) -> Result<Vec<Prefix>, PbaStatus> {
        let idle_until = self.config.idle_until(now);
        let aggregate = self.kind(p) == Kind::Temporal;
        let mut moved = Vec::new();
        let mut i = 0;
        while i < self.table.rows.len() {
            let r = &self.table.rows[i];
            let hit = r.mn_id == mn_id && r.flag == Flag::A && r.mag != src;
            if hit && aggregate && !r.prefixes.is_empty() && r.prefixes.iter().all(|q| within(q, p)) {
                let r = &mut self.table.rows[i];
                r.flag = Flag::I;
                r.idle_until = idle_until;
                moved.push(r.prefixes.clone());
            } else if hit && !aggregate && r.prefixes.contains(p) {
                let before = self.table.rows.len();
                let mut idle = self.table.take_prefix(i, p);
                idle.flag = Flag::I;
                idle.idle_until = idle_until;
                // The Idle entry sits under the row it left (Figure 7).
                let pos = if self.table.rows.len() == before { i + 1 } else { i };
                self.table.rows.insert(pos, idle);
                moved.push(vec![*p]);
                i = pos;
            }
            i += 1;
        }
        if moved.is_empty() {
            // Nothing Active elsewhere: already here, or unknown.
            let here = self
                .table
                .rows
                .iter()
                .any(|r| r.mn_id == mn_id && r.mag == src && r.prefixes.iter().any(|q| within(q, p)));
            return if here { Ok(vec![*p]) } else { Err(PbaStatus::BcePbuPrefixSetDoNotMatch) };
        }
        let mut out = Vec::new();
        for group in moved {
            let back = self
                .table
                .rows
                .iter()
                .position(|r| r.mn_id == mn_id && r.mag == src && r.flag == Flag::I && r.prefixes == group);
            match back {
                Some(at) => {
                    let r = &mut self.table.rows[at];
                    r.flag = Flag::A;
                    r.idle_until = None;
                    r.iface = iface.to_vec();
                }
                None => self.table.rows.push(Row {
                    mn_id: mn_id.to_string(),
                    iface: iface.to_vec(),
                    prefixes: group.clone(),
                    flows: Vec::new(),
                    mag: src,
                    flag: Flag::A,
                    idle_until: None,
                }),
            }
            out.extend(group);
        }
        Ok(out)
    }
}
