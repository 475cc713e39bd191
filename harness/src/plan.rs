//! What every backend derives the same way from a scenario: the address
//! plan, identifiers, interface names, flow keys and FIDs, and the
//! features each backend offers. Neither backend owns these, so a flow key
//! or an MN-ID cannot mean one thing in virtual time and another in
//! namespaces.

use std::collections::BTreeMap;
use std::net::Ipv6Addr;

use pmip_proto::FlowKey;

use crate::scenario::{proto_number, NodeSpec, Profile, Role, Scenario, Step};

/// What the virtual backend can play.
pub const VIRTUAL_FEATURES: [&str; 5] = ["virtual", "draft-fmi", "rfc7864", "binding-revocation", "two-level"];
/// What the namespace backend can play.
pub const NETNS_FEATURES: [&str; 6] =
    ["namespaces", "draft-fmi", "rfc7864", "binding-revocation", "real-time", "two-level"];

/// Addresses of every node: given ones, else from the plan.
pub struct AddressPlan {
    pub of: BTreeMap<String, Ipv6Addr>,
    /// Each MN's interface identifier in its prefixes.
    pub iid: BTreeMap<String, u64>,
}

impl AddressPlan {
    /// The node that has `a`, or the address itself when none has.
    pub fn name_of(&self, a: Ipv6Addr) -> String {
        self.of.iter().find(|(_, v)| **v == a).map(|(k, _)| k.clone()).unwrap_or_else(|| a.to_string())
    }
}

pub fn address_plan(s: &Scenario) -> AddressPlan {
    let mut of = BTreeMap::new();
    let mut iid = BTreeMap::new();
    let (mut lmas, mut mags, mut cns, mut mns) = (0u16, 0u16, 0u16, 0u64);
    for (name, n) in &s.nodes {
        let n = &n.value;
        let planned = match n.role {
            Role::Lma => {
                lmas += 1;
                Some(Ipv6Addr::new(0x2001, 0xdb8, 0xffff, 0, 0, 0, 0, lmas))
            }
            Role::Mag => {
                mags += 1;
                Some(Ipv6Addr::new(0x2001, 0xdb8, 0xffff, 0, 0, 0, 0, 0x10 + mags))
            }
            Role::Cn => {
                cns += 1;
                Some(Ipv6Addr::new(0x2001, 0xdb8, 0xc, 0, 0, 0, 0, cns))
            }
            Role::Mn => {
                mns += 1;
                iid.insert(name.clone(), mns);
                None
            }
        };
        if let Some(a) = n.address.or(planned) {
            of.insert(name.clone(), a);
        }
    }
    AddressPlan { of, iid }
}

/// The gateway a CN routes through: the LMA's end of the CN's link.
pub fn cn_gateway(cn_addr: Ipv6Addr) -> Ipv6Addr {
    let s = cn_addr.segments();
    Ipv6Addr::new(s[0], s[1], s[2], s[3], 0, 0, 0, 0xffff)
}

pub fn mn_id(name: &str, spec: &NodeSpec) -> String {
    spec.mn_id.clone().unwrap_or_else(|| format!("{name}@pmip.lab"))
}

/// The MN-ID of the MN named `mn`, or its name when the scenario has no such node.
pub fn mn_id_of(s: &Scenario, mn: &str) -> String {
    s.nodes.get(mn).map(|n| mn_id(mn, &n.value)).unwrap_or_else(|| mn.to_string())
}

/// The MAG's end of an MN interface's access link.
pub fn access_iface(mn_iface: &str) -> String {
    format!("to-{}", mn_iface.replace('/', "-"))
}

/// The first LMA's name, in name order: the LMA the CNs are behind, that
/// takes the scenario's flow commands, and that serves every MN and MAG
/// whose `lma` names no other.
pub fn lma_name(s: &Scenario) -> Option<&str> {
    s.nodes.iter().find(|(_, n)| n.value.role == Role::Lma).map(|(k, _)| k.as_str())
}

/// The LMA a MAG or an MN names with `lma`, else the first LMA.
pub fn lma_of<'a>(s: &'a Scenario, node: &str) -> Option<&'a str> {
    match s.nodes.get(node).and_then(|n| n.value.lma.as_ref()) {
        Some(l) => s.nodes.get_key_value(&l.value).map(|(k, _)| k.as_str()),
        None => lma_name(s),
    }
}

/// The names of the nodes in `role`, in name order.
pub fn nodes_in(s: &Scenario, role: Role) -> impl Iterator<Item = &str> {
    s.nodes.iter().filter(move |(_, n)| n.value.role == role).map(|(k, _)| k.as_str())
}

/// The downlink 5-tuple of a named flow: CN to the MN's address in the
/// flow's prefix.
pub fn flow_key(s: &Scenario, plan: &AddressPlan, name: &str) -> Option<FlowKey> {
    let f = &s.flows.get(name)?.value;
    Some(FlowKey {
        src: *plan.of.get(&f.cn.value)?,
        dst: f.prefix.with_iid(*plan.iid.get(&f.mn.value)?),
        next_header: proto_number(&f.proto.value)?,
        src_port: f.sport,
        dst_port: f.dport,
    })
}

/// The FID a scenario's `bind` gave a flow.
pub fn fid_of(s: &Scenario, flow: &str) -> Option<u16> {
    s.steps.iter().find_map(|st| match &st.value {
        Step::Bind(b) if b.flow.value == flow => Some(b.fid),
        _ => None,
    })
}

/// What `s` requires that a backend with `features` lacks: its `requires`
/// list, `rfc7864` for a scenario in that profile, and `two-level` for
/// one with an MN of the 2-level prefix model.
pub fn missing_features<'a>(s: &'a Scenario, features: &[&str]) -> Vec<&'a str> {
    let profile = (s.wire.profile == Profile::Rfc7864).then_some("rfc7864");
    let two_level = uses_two_level(s).then_some("two-level");
    let mut missing: Vec<&str> = s
        .requires
        .iter()
        .map(|r| r.value.as_str())
        .chain(profile)
        .chain(two_level)
        .filter(|r| !features.contains(r))
        .collect();
    missing.dedup();
    missing
}

/// Whether an MN of `s` uses the 2-level prefix model.
pub fn uses_two_level(s: &Scenario) -> bool {
    s.nodes.values().any(|n| n.value.role == Role::Mn && n.value.model == Some(pmip_proto::lma::PrefixModel::TwoLevel))
}

/// The MN-IDs of the MNs of `s` that use the 2-level prefix model.
pub fn two_level_mns(s: &Scenario) -> Vec<String> {
    s.nodes
        .iter()
        .filter(|(_, n)| n.value.role == Role::Mn && n.value.model == Some(pmip_proto::lma::PrefixModel::TwoLevel))
        .map(|(name, _)| mn_id_of(s, name))
        .collect()
}

/// The one link a `spoof` step's message crosses, with each end's
/// interface: a CN's `eth0` to the LMA's `to-<cn>`, or an MN interface to
/// its MAG's access port.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SpoofLink {
    pub from: String,
    pub from_iface: String,
    pub to: String,
    pub to_iface: String,
}

/// The link between a `spoof` step's sender and receiver; `Err` says why
/// there is none (the sender spoofs only on its own link to the receiver).
pub fn spoof_link(s: &Scenario, sp: &crate::scenario::SpoofStep) -> Result<SpoofLink, String> {
    let (from, iface) = match sp.from.value.split_once('/') {
        Some((m, i)) => (m, Some(i)),
        None => (sp.from.value.as_str(), None),
    };
    let to = sp.to.value.as_str();
    let role = |n: &str| s.nodes.get(n).map(|x| x.value.role);
    match role(from) {
        Some(Role::Cn) if iface.is_none() => {
            if lma_name(s) != Some(to) {
                return Err(format!(
                    "{from} is a CN: its one link is to the LMA {}, not to {to}",
                    lma_name(s).unwrap_or("(none)")
                ));
            }
            Ok(SpoofLink {
                from: from.into(),
                from_iface: "eth0".into(),
                to: to.into(),
                to_iface: format!("to-{from}"),
            })
        }
        Some(Role::Mn) => {
            let links: Vec<&str> = s
                .links
                .iter()
                .filter(|l| l.value.mag.value == to)
                .map(|l| l.value.mn.value.as_str())
                .filter(|m| m.split_once('/').is_some_and(|(mn, i)| mn == from && iface.is_none_or(|w| w == i)))
                .collect();
            match links.as_slice() {
                [one] => Ok(SpoofLink {
                    from: from.into(),
                    from_iface: one.split_once('/').map(|(_, i)| i.to_string()).unwrap_or_default(),
                    to: to.into(),
                    to_iface: access_iface(one),
                }),
                [] => Err(format!("{} has no link to {to} (an MN spoofs on its access link to a MAG)", sp.from.value)),
                _ => Err(format!("{from} has several links to {to}: name the interface, e.g. {}", links[0])),
            }
        }
        _ => Err(format!("{} is not a CN or an MN: only they spoof, on their own link", sp.from.value)),
    }
}
