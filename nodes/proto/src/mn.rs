//! The mobile node's logical interface (flow mobility draft §6): physical
//! interfaces under one IP interface, addresses from RAs, and uplink that
//! follows each flow's downlink.

use std::collections::BTreeMap;
use std::net::Ipv6Addr;

use serde::{Deserialize, Serialize};

use crate::flow::FlowKey;
use crate::output::{reconcile, Intent, Output};
use crate::prefix::Prefix;
use crate::time::Instant;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MnConfig {
    pub name: String,
    /// Interface identifier of the logical interface's addresses.
    pub iid: u64,
    pub interfaces: Vec<String>,
    /// Where a flow with no downlink yet goes out: the first interface of
    /// this list that is up and has a prefix.
    pub uplink_preference: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MnInput {
    LinkUp {
        iface: String,
    },
    LinkDown {
        iface: String,
    },
    /// An RA on a physical interface: its prefix list replaces the last.
    RouterAdvertisement {
        iface: String,
        prefixes: Vec<Prefix>,
    },
    /// A downlink packet of `flow` (CN → MN orientation) arrived on `iface`.
    Downlink {
        iface: String,
        flow: FlowKey,
    },
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct InterfaceRow {
    pub name: String,
    pub up: bool,
    pub prefixes: Vec<Prefix>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct FlowRow {
    pub flow: String,
    pub downlink_on: String,
    pub packets: u64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct MnState {
    pub interfaces: Vec<InterfaceRow>,
    pub lif_addresses: Vec<Ipv6Addr>,
    pub flows: Vec<FlowRow>,
}

struct Iface {
    up: bool,
    prefixes: Vec<Prefix>,
}

struct FlowSeen {
    iface: String,
    packets: u64,
}

pub struct Mn {
    pub config: MnConfig,
    ifaces: BTreeMap<String, Iface>,
    flows: BTreeMap<FlowKey, FlowSeen>,
    installed: BTreeMap<Ipv6Addr, ()>,
}

impl Mn {
    pub fn new(config: MnConfig) -> Self {
        let ifaces = config.interfaces.iter().map(|n| (n.clone(), Iface { up: false, prefixes: Vec::new() })).collect();
        Mn { config, ifaces, flows: BTreeMap::new(), installed: BTreeMap::new() }
    }

    pub fn handle(&mut self, _now: Instant, input: MnInput) -> Output {
        let mut out = Output::default();
        let name = self.config.name.clone();
        let known = |i: &str, out: &mut Output| out.event(format!("{name} has no interface named {i}"));
        match input {
            MnInput::LinkUp { iface } => match self.ifaces.get_mut(&iface) {
                Some(i) => i.up = true,
                None => known(&iface, &mut out),
            },
            MnInput::LinkDown { iface } => match self.ifaces.get_mut(&iface) {
                Some(i) => {
                    i.up = false;
                    i.prefixes.clear();
                    out.event(format!("{iface} down"));
                }
                None => known(&iface, &mut out),
            },
            MnInput::RouterAdvertisement { iface, prefixes } => match self.ifaces.get_mut(&iface) {
                Some(i) => {
                    if i.prefixes != prefixes {
                        out.event(format!(
                            "RA on {iface}: [{}]",
                            prefixes.iter().map(|p| p.to_string()).collect::<Vec<_>>().join(", ")
                        ));
                    }
                    i.up = true;
                    i.prefixes = prefixes;
                }
                None => known(&iface, &mut out),
            },
            MnInput::Downlink { iface, flow } => {
                let seen = self.flows.entry(flow).or_insert(FlowSeen { iface: iface.clone(), packets: 0 });
                if seen.iface != iface {
                    out.event(format!("flow {flow} now arrives on {iface} (was {}): its uplink follows", seen.iface));
                    seen.iface = iface;
                }
                seen.packets += 1;
            }
        }
        let desired: BTreeMap<Ipv6Addr, ()> = self.addresses().into_iter().map(|a| (a, ())).collect();
        reconcile(&mut self.installed, desired, |a, _, up| Intent::MnAddress { addr: *a, up }, &mut out);
        out
    }

    /// Addresses of the logical interface: one per prefix on any interface.
    pub fn addresses(&self) -> Vec<Ipv6Addr> {
        let mut v: Vec<Ipv6Addr> = self
            .ifaces
            .values()
            .filter(|i| i.up)
            .flat_map(|i| i.prefixes.iter().map(|p| p.with_iid(self.config.iid)))
            .collect();
        v.sort();
        v.dedup();
        v
    }

    /// The physical interface an uplink packet of `uplink` (MN → CN)
    /// leaves on: where that flow's downlink last arrived, else the
    /// preferred interface that is up and holds the source prefix.
    pub fn uplink_interface(&self, uplink: &FlowKey) -> Option<&str> {
        if let Some(seen) = self.flows.get(&uplink.reversed()) {
            if self.ifaces.get(&seen.iface).is_some_and(|i| i.up) {
                return Some(seen.iface.as_str());
            }
        }
        let holds = |name: &str| {
            self.ifaces.get(name).is_some_and(|i| i.up && i.prefixes.iter().any(|p| p.contains(&uplink.src)))
        };
        self.config
            .uplink_preference
            .iter()
            .chain(self.config.interfaces.iter())
            .find(|n| holds(n))
            .map(|n| n.as_str())
            .or_else(|| {
                self.config.interfaces.iter().find(|n| self.ifaces.get(*n).is_some_and(|i| i.up)).map(|n| n.as_str())
            })
    }

    pub fn next_timeout(&self) -> Option<Instant> {
        None
    }

    pub fn state(&self) -> MnState {
        MnState {
            interfaces: self
                .ifaces
                .iter()
                .map(|(n, i)| InterfaceRow { name: n.clone(), up: i.up, prefixes: i.prefixes.clone() })
                .collect(),
            lif_addresses: self.addresses(),
            flows: self
                .flows
                .iter()
                .map(|(k, f)| FlowRow { flow: k.to_string(), downlink_on: f.iface.clone(), packets: f.packets })
                .collect(),
        }
    }
}
