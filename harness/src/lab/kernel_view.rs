//! A node's forwarding state read from its namespace's kernel by the
//! harness itself, not asked of the node: the routes its daemon owns
//! (protocol 154), its source rules, and the addresses on an MN's logical
//! interface, in the normal form of [`KernelSection`].

use std::collections::BTreeMap;
use std::io;
use std::net::{IpAddr, Ipv6Addr};

use futures::TryStreamExt;
use rtnetlink::packet_route::address::{AddressAttribute, AddressScope};
use rtnetlink::packet_route::link::LinkAttribute;
use rtnetlink::packet_route::route::{RouteAddress, RouteAttribute, RouteLwEnCapType};
use rtnetlink::packet_route::rule::RuleAttribute;
use rtnetlink::{Handle, RouteMessageBuilder};

use crate::forwarding::KernelSection;

/// The route protocol the daemons mark their routes with.
pub const DAEMON_ROUTE_PROTOCOL: u8 = 154;
/// The priority of the daemons' uplink source rules (a MAG's uplink from
/// its MNs' prefixes into the tunnel).
pub const DAEMON_RULE_PRIORITY: u32 = 1000;
/// The kernel's main routing table.
const MAIN_TABLE: u32 = 254;
/// The MN daemon's logical interface.
pub const LOGICAL_INTERFACE: &str = "lif";

fn nl(what: &'static str) -> impl FnOnce(rtnetlink::Error) -> io::Error {
    move |e| io::Error::other(format!("{what}: {e}"))
}

async fn link_names(h: &Handle) -> io::Result<BTreeMap<u32, String>> {
    let mut names = BTreeMap::new();
    let mut links = h.link().get().execute();
    while let Some(l) = links.try_next().await.map_err(nl("listing links"))? {
        for a in &l.attributes {
            if let LinkAttribute::IfName(n) = a {
                names.insert(l.header.index, n.clone());
            }
        }
    }
    Ok(names)
}

/// The route protocols the kernel itself sets (`kernel`, `ra`): connected
/// and autoconfigured routes, which no implementation owns.
const KERNEL_ROUTE_PROTOCOLS: [u8; 2] = [2, 9];

/// Whether `dev` is one the lab made (the core link, access and CN ports,
/// loopback): a route onto any other device of an implementation under
/// test goes into its tunnel, whatever it names the tunnel.
fn lab_interface(dev: &str) -> bool {
    matches!(dev, "lo" | "core" | "eth0") || dev.starts_with("to-")
}

/// Reads the kernel section of the namespace `h` talks to.
pub async fn read(h: &Handle) -> io::Result<KernelSection> {
    read_as(h, false).await
}

/// [`read`]; `foreign` for an implementation under test, which marks its
/// routes and rules its own way: every route it (not the kernel) put in
/// the main table and every source rule count, and a route onto a device
/// the lab did not make goes into the tunnel.
pub async fn read_as(h: &Handle, foreign: bool) -> io::Result<KernelSection> {
    let names = link_names(h).await?;
    let mut section = KernelSection::default();
    let mut dump = h.route().get(RouteMessageBuilder::<Ipv6Addr>::new().build()).execute();
    while let Some(r) = dump.try_next().await.map_err(nl("listing routes"))? {
        let protocol = u8::from(r.header.protocol);
        let owned = match foreign {
            true => !KERNEL_ROUTE_PROTOCOLS.contains(&protocol),
            false => protocol == DAEMON_ROUTE_PROTOCOL,
        };
        if !owned || r.header.destination_prefix_length == 0 {
            continue;
        }
        let (mut dst, mut dev, mut encap, mut decap) = (None, None, false, false);
        let mut table = u32::from(r.header.table);
        for a in &r.attributes {
            match a {
                RouteAttribute::Table(t) => table = *t,
                RouteAttribute::Destination(RouteAddress::Inet6(d)) => dst = Some(*d),
                RouteAttribute::Oif(i) => dev = names.get(i).cloned(),
                RouteAttribute::EncapType(RouteLwEnCapType::Seg6Local) => decap = true,
                RouteAttribute::Encap(_) | RouteAttribute::EncapType(_) => encap = true,
                _ => {}
            }
        }
        // The node's own tunnel end point (End.DT6) takes packets in; it
        // forwards no MN's prefix. Tables other than main are a datapath's
        // own (a MAG's uplink table, the LMA's table per MAG): what they
        // hold is reached through the rules and routes read here.
        if decap || table != MAIN_TABLE {
            continue;
        }
        let Some(dst) = dst else { continue };
        let prefix = pmip_proto::Prefix::new(dst, r.header.destination_prefix_length);
        // Into the tunnel, whichever datapath carries it: a TUN device or
        // an encapsulating route.
        let tunnel = encap || dev.as_deref().is_some_and(|d| d.starts_with("tun") || (foreign && !lab_interface(d)));
        section.routes.insert(match (tunnel, dev) {
            (true, _) => format!("{prefix} tunnel"),
            (false, Some(d)) => format!("{prefix} dev {d}"),
            (false, None) => format!("{prefix} unreachable"),
        });
    }
    let mut rules = h.rule().get(rtnetlink::IpVersion::V6).execute();
    while let Some(r) = rules.try_next().await.map_err(nl("listing rules"))? {
        let ours = foreign || r.attributes.iter().any(|a| matches!(a, RuleAttribute::Priority(DAEMON_RULE_PRIORITY)));
        for a in r.attributes.iter().filter(|_| ours) {
            if let RuleAttribute::Source(IpAddr::V6(s)) = a {
                section.uplink.insert(pmip_proto::Prefix::new(*s, r.header.src_len).to_string());
            }
        }
    }
    if let Some((&index, _)) = names.iter().find(|(_, n)| *n == LOGICAL_INTERFACE) {
        let mut addrs = h.address().get().set_link_index_filter(index).execute();
        while let Some(m) = addrs.try_next().await.map_err(nl("listing addresses"))? {
            if m.header.scope != AddressScope::Universe {
                continue;
            }
            for a in &m.attributes {
                if let AddressAttribute::Address(IpAddr::V6(x)) = a {
                    section.addresses.insert(x.to_string());
                }
            }
        }
    }
    Ok(section)
}

impl super::Lab {
    /// The kernel section of `node`, read from its namespace.
    pub fn kernel_section(&self, node: &str) -> io::Result<KernelSection> {
        self.rt.block_on(read_as(self.nl(node)?, self.is_iut(node)))
    }
}
