//! The `kernel` section of a snapshot: a node's forwarding state in one
//! normal form that both backends produce — read from the namespace's
//! kernel in namespaces, from the model's data plane in virtual time — so
//! that the two can be compared, and each compared with what the node's
//! own tables imply.

use std::collections::{BTreeMap, BTreeSet};
use std::net::Ipv6Addr;

use pmip_proto::dataplane::{LmaPlane, MagPlane};
use pmip_proto::Intent;
use serde::{Deserialize, Serialize};

/// What forwards a node's packets, without the details a datapath adds
/// (table numbers, gateways, whether the tunnel is a device or an encap
/// route).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct KernelSection {
    /// Routes the node's daemon owns: `<prefix> dev <iface>` onto a link,
    /// `<prefix> tunnel` into the LMA–MAG tunnel.
    #[serde(default, skip_serializing_if = "BTreeSet::is_empty")]
    pub routes: BTreeSet<String>,
    /// Source prefixes a policy rule sends into the tunnel (a MAG's uplink).
    #[serde(default, skip_serializing_if = "BTreeSet::is_empty")]
    pub uplink: BTreeSet<String>,
    /// Global addresses on the MN's logical interface.
    #[serde(default, skip_serializing_if = "BTreeSet::is_empty")]
    pub addresses: BTreeSet<String>,
}

impl KernelSection {
    /// What an LMA data plane forwards: each anchored prefix into the tunnel.
    pub fn of_lma(p: &LmaPlane) -> Self {
        let routes = p.routes.keys().map(|prefix| format!("{prefix} tunnel")).collect();
        KernelSection { routes, ..Default::default() }
    }

    /// What a MAG data plane forwards: prefixes onto access links, and the
    /// uplink of its MNs' prefixes into the tunnel.
    pub fn of_mag(p: &MagPlane) -> Self {
        KernelSection {
            routes: p.routes.iter().map(|(prefix, iface)| format!("{prefix} dev {iface}")).collect(),
            uplink: p.uplink.iter().map(|prefix| prefix.to_string()).collect(),
            ..Default::default()
        }
    }

    /// The addresses of an MN's logical interface.
    pub fn of_mn(addresses: &BTreeSet<Ipv6Addr>) -> Self {
        KernelSection { addresses: addresses.iter().map(|a| a.to_string()).collect(), ..Default::default() }
    }

    /// The forwarding a node's intents, applied in order, build.
    pub fn from_intents<'a>(intents: impl IntoIterator<Item = &'a Intent>) -> Self {
        let (mut lma, mut mag, mut addresses) = (LmaPlane::default(), MagPlane::default(), BTreeSet::new());
        for i in intents {
            lma.apply(i);
            mag.apply(i);
            if let Intent::MnAddress { addr, up } = i {
                if *up {
                    addresses.insert(*addr);
                } else {
                    addresses.remove(addr);
                }
            }
        }
        let (l, m, n) = (Self::of_lma(&lma), Self::of_mag(&mag), Self::of_mn(&addresses));
        KernelSection {
            routes: l.routes.into_iter().chain(m.routes).collect(),
            uplink: m.uplink,
            addresses: n.addresses,
        }
    }

    /// What this section has that `other` lacks, and what it lacks that
    /// `other` has, as readable lines; empty when they agree.
    pub fn differences(&self, other: &KernelSection) -> Vec<String> {
        let mut out = Vec::new();
        for (name, a, b) in [
            ("route", &self.routes, &other.routes),
            ("uplink rule from", &self.uplink, &other.uplink),
            ("address", &self.addresses, &other.addresses),
        ] {
            out.extend(a.difference(b).map(|x| format!("- {name} {x}")));
            out.extend(b.difference(a).map(|x| format!("+ {name} {x}")));
        }
        out
    }
}

/// The kernel sections of every node, for a snapshot.
pub type KernelSections = BTreeMap<String, KernelSection>;
