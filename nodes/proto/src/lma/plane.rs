//! The LMA's data plane as intents, kept per MN: after an input only the
//! MNs it touched are compared with what was installed, so the cost of a
//! PBU does not grow with the number of bindings. Tunnels are shared by
//! the MNs behind one MAG and counted.

use std::collections::{BTreeMap, BTreeSet};
use std::net::Ipv6Addr;

use pmip_wire::TrafficSelector;

use super::fast_hash::FastMap;
use super::Lma;
use crate::output::{FlowTarget, Intent, Output};
use crate::prefix::Prefix;

/// What the data plane holds for one MN. Sorted vectors rather than
/// trees: an MN has a few MAGs and prefixes, and one is built per PBU.
#[derive(Debug, Clone, Default, PartialEq)]
pub(crate) struct MnPlane {
    /// The MAGs its active bindings are behind, sorted, no duplicates.
    mags: Vec<Ipv6Addr>,
    /// Each of its prefixes to the MAG of its default binding, sorted by
    /// prefix, one entry per prefix.
    routes: Vec<(Prefix, Ipv6Addr)>,
    /// Its flow bindings, by (FID-PRI, FID).
    flows: BTreeMap<(u16, u16), (TrafficSelector, FlowTarget)>,
}

impl MnPlane {
    fn add_mag(&mut self, mag: Ipv6Addr) {
        if let Err(i) = self.mags.binary_search(&mag) {
            self.mags.insert(i, mag);
        }
    }
    fn has_mag(&self, mag: &Ipv6Addr) -> bool {
        self.mags.binary_search(mag).is_ok()
    }
    fn set_route(&mut self, p: Prefix, mag: Ipv6Addr) {
        match self.routes.binary_search_by(|r| r.0.cmp(&p)) {
            Ok(i) => self.routes[i].1 = mag,
            Err(i) => self.routes.insert(i, (p, mag)),
        }
    }
    fn route(&self, p: &Prefix) -> Option<&Ipv6Addr> {
        self.routes.binary_search_by(|r| r.0.cmp(p)).ok().map(|i| &self.routes[i].1)
    }
}

/// The installed plane of every MN, and how many MNs use each tunnel.
#[derive(Debug, Clone, Default)]
pub(crate) struct InstalledPlane {
    /// Hashed: looked up once per PBU; never walked in an order that shows.
    by_mn: FastMap<String, MnPlane>,
    tunnel_users: BTreeMap<Ipv6Addr, usize>,
}

impl Lma {
    /// What the tables ask of the data plane for `mn`.
    fn desired_plane(&self, mn: &str) -> MnPlane {
        let mut plane = MnPlane::default();
        // Each prefix goes to its default entry: lowest BID-PRI, then BID.
        // The entries come in BID order, so the rank of the entry holding
        // a prefix is only needed when another one carries it too.
        let mut holder: Vec<(Prefix, (u8, u16))> = Vec::new();
        for b in self.cache.of_mn(mn).filter(|b| b.is_active()) {
            plane.add_mag(b.proxy_coa);
            for p in &b.hnps {
                let rank = (b.bid_pri, b.bid);
                match holder.binary_search_by(|h| h.0.cmp(p)) {
                    Ok(i) if rank < holder[i].1 => {
                        holder[i].1 = rank;
                        plane.set_route(*p, b.proxy_coa);
                    }
                    Ok(_) => {}
                    Err(i) => {
                        holder.insert(i, (*p, rank));
                        plane.set_route(*p, b.proxy_coa);
                    }
                }
            }
        }
        // The 2-level model's Active entries: every prefix to its MAG (the
        // longest match picks a moved level-2 prefix over its level-1 one).
        let two_level = self.two_level.iter().flat_map(|t| t.table.rows.iter());
        for r in two_level.filter(|r| r.mn_id == mn && r.flag == crate::two_level::Flag::A) {
            plane.add_mag(r.mag);
            for p in &r.prefixes {
                plane.set_route(*p, r.mag);
            }
        }
        for e in self.fmc.iter().filter(|e| e.mn_id == mn) {
            if let Some(t) = self.flow_target(e) {
                plane.flows.insert((e.fid_pri, e.fid), (e.selector.clone(), t));
            }
        }
        plane
    }

    /// Every MN the tables or the installed plane know.
    pub(crate) fn all_mns(&self) -> BTreeSet<String> {
        let mut mns: BTreeSet<String> = self.cache.iter().map(|b| b.mn_id.clone()).collect();
        mns.extend(self.two_level.iter().flat_map(|t| t.table.rows.iter().map(|r| r.mn_id.clone())));
        mns.extend(self.fmc.iter().map(|e| e.mn_id.clone()));
        mns.extend(self.installed.by_mn.keys().cloned());
        mns
    }

    /// Brings the installed tunnels, prefix routes and flow bindings of
    /// `mns` in line with the tables: tunnels first, then routes, then
    /// flows, each removals before additions.
    pub(crate) fn reconcile_plane<'a>(&mut self, mns: impl IntoIterator<Item = &'a str>, out: &mut Output) {
        let mut tunnel_delta: BTreeMap<Ipv6Addr, i64> = BTreeMap::new();
        let (mut routes_down, mut routes_up) = (Vec::new(), Vec::new());
        let (mut flows_down, mut flows_up) = (Vec::new(), Vec::new());
        for mn in mns {
            let new = self.desired_plane(mn);
            // Most inputs (a refresh above all) change nothing in an MN's
            // plane: then there is nothing to compare entry by entry, and
            // the installed record stays where it is.
            let old = match self.installed.by_mn.get_mut(mn) {
                Some(old) if *old == new => continue,
                None if new == MnPlane::default() => continue,
                Some(old) => std::mem::take(old),
                None => MnPlane::default(),
            };
            for m in old.mags.iter().filter(|m| !new.has_mag(m)) {
                *tunnel_delta.entry(*m).or_default() -= 1;
            }
            for m in new.mags.iter().filter(|m| !old.has_mag(m)) {
                *tunnel_delta.entry(*m).or_default() += 1;
            }
            for (p, m) in &old.routes {
                if new.route(p) != Some(m) {
                    routes_down.push(Intent::LmaPrefixRoute { prefix: *p, mag: *m, up: false });
                }
            }
            for (p, m) in &new.routes {
                if old.route(p) != Some(m) {
                    routes_up.push(Intent::LmaPrefixRoute { prefix: *p, mag: *m, up: true });
                }
            }
            let flow =
                |(pri, fid): &(u16, u16), (sel, t): &(TrafficSelector, FlowTarget), up: bool| Intent::LmaFlowBinding {
                    mn_id: mn.to_string(),
                    fid: *fid,
                    fid_pri: *pri,
                    selector: sel.clone(),
                    target: *t,
                    up,
                };
            for (k, v) in &old.flows {
                if new.flows.get(k) != Some(v) {
                    flows_down.push(((k.0, mn.to_string(), k.1), flow(k, v, false)));
                }
            }
            for (k, v) in &new.flows {
                if old.flows.get(k) != Some(v) {
                    flows_up.push(((k.0, mn.to_string(), k.1), flow(k, v, true)));
                }
            }
            if new == MnPlane::default() {
                self.installed.by_mn.remove(mn);
            } else if let Some(slot) = self.installed.by_mn.get_mut(mn) {
                *slot = new;
            } else {
                self.installed.by_mn.insert(mn.to_string(), new);
            }
        }
        let (mut tunnels_down, mut tunnels_up) = (Vec::new(), Vec::new());
        for (mag, delta) in tunnel_delta {
            let users = self.installed.tunnel_users.entry(mag).or_default();
            let before = *users;
            *users = (before as i64 + delta).max(0) as usize;
            match (before, *users) {
                (0, n) if n > 0 => tunnels_up.push(Intent::LmaTunnel { mag, up: true }),
                (b, 0) if b > 0 => tunnels_down.push(Intent::LmaTunnel { mag, up: false }),
                _ => {}
            }
            if *users == 0 {
                self.installed.tunnel_users.remove(&mag);
            }
        }
        // The order a whole-table comparison gives: by address, by prefix,
        // by (FID-PRI, MN, FID).
        let prefix_of = |i: &Intent| match i {
            Intent::LmaPrefixRoute { prefix, .. } => Some(*prefix),
            _ => None,
        };
        routes_down.sort_by_key(prefix_of);
        routes_up.sort_by_key(prefix_of);
        flows_down.sort_by(|a, b| a.0.cmp(&b.0));
        flows_up.sort_by(|a, b| a.0.cmp(&b.0));
        out.intents.extend(tunnels_down);
        out.intents.extend(tunnels_up);
        out.intents.extend(routes_down);
        out.intents.extend(routes_up);
        out.intents.extend(flows_down.into_iter().map(|(_, i)| i));
        out.intents.extend(flows_up.into_iter().map(|(_, i)| i));
    }
}
