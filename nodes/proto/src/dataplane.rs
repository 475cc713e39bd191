//! Forwarding tables built only from the intents the roles emit. The
//! virtual World forwards with them, and so does the daemon's userspace
//! tunnel, so both data planes classify the same way.

use std::collections::{BTreeMap, BTreeSet};
use std::net::Ipv6Addr;

use pmip_wire::TrafficSelector;

use crate::flow::{selector_matches, FlowKey};
use crate::output::{FlowTarget, Intent};
use crate::prefix::Prefix;

/// The LMA's downlink forwarding: flow bindings in FID-PRI order, then
/// prefix routes by longest match.
#[derive(Debug, Clone, Default)]
pub struct LmaPlane {
    pub tunnels: BTreeSet<Ipv6Addr>,
    pub routes: BTreeMap<Prefix, Ipv6Addr>,
    pub flows: BTreeMap<(u16, String, u16), (TrafficSelector, FlowTarget)>,
}

impl LmaPlane {
    /// Applies an LMA intent; others are ignored.
    pub fn apply(&mut self, i: &Intent) {
        match i {
            Intent::LmaTunnel { mag, up: true } => {
                self.tunnels.insert(*mag);
            }
            Intent::LmaTunnel { mag, up: false } => {
                self.tunnels.remove(mag);
            }
            Intent::LmaPrefixRoute { prefix, mag, up: true } => {
                self.routes.insert(*prefix, *mag);
            }
            Intent::LmaPrefixRoute { prefix, mag, up: false } if self.routes.get(prefix) == Some(mag) => {
                self.routes.remove(prefix);
            }
            Intent::LmaFlowBinding { mn_id, fid, fid_pri, selector, target, up } => {
                let k = (*fid_pri, mn_id.clone(), *fid);
                if *up {
                    self.flows.insert(k, (selector.clone(), *target));
                } else if self.flows.get(&k).is_some_and(|v| v.0 == *selector && v.1 == *target) {
                    self.flows.remove(&k);
                }
            }
            _ => {}
        }
    }

    pub fn classify(&self, key: &FlowKey) -> Option<FlowTarget> {
        self.flows.values().find(|(sel, _)| selector_matches(sel, key)).map(|(_, t)| *t).or_else(|| {
            self.routes
                .iter()
                .filter(|(p, _)| p.contains(&key.dst))
                .max_by_key(|(p, _)| p.prefix_len())
                .map(|(_, m)| FlowTarget::Forward(*m))
        })
    }

    /// Whether uplink from `src` is anchored here.
    pub fn anchors(&self, src: &Ipv6Addr) -> bool {
        self.routes.keys().any(|p| p.contains(src))
    }
}

/// A MAG's forwarding: downlink routes onto access links, uplink rules
/// into the tunnel.
#[derive(Debug, Clone, Default)]
pub struct MagPlane {
    pub tunnel: bool,
    pub routes: BTreeMap<Prefix, String>,
    pub uplink: BTreeSet<Prefix>,
}

impl MagPlane {
    pub fn apply(&mut self, i: &Intent) {
        match i {
            Intent::MagTunnel { up, .. } => self.tunnel = *up,
            Intent::MagRoute { prefix, iface, up: true } => {
                self.routes.insert(*prefix, iface.clone());
            }
            Intent::MagRoute { prefix, iface, up: false } if self.routes.get(prefix) == Some(iface) => {
                self.routes.remove(prefix);
            }
            Intent::MagUplinkRule { prefix, up: true } => {
                self.uplink.insert(*prefix);
            }
            Intent::MagUplinkRule { prefix, up: false } => {
                self.uplink.remove(prefix);
            }
            _ => {}
        }
    }

    pub fn route(&self, dst: &Ipv6Addr) -> Option<&str> {
        self.routes.iter().filter(|(p, _)| p.contains(dst)).max_by_key(|(p, _)| p.prefix_len()).map(|(_, i)| i.as_str())
    }

    pub fn tunnels_uplink_from(&self, src: &Ipv6Addr) -> bool {
        self.tunnel && self.uplink.iter().any(|p| p.contains(src))
    }
}
