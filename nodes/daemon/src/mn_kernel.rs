//! The MN's logical interface on the kernel datapath (flow mobility draft
//! §6): the MN's addresses live on `lo`, the physical interfaces run the
//! kernel's IPv6 with every automatic behaviour off, and each flow's
//! uplink leaves by the interface its downlink last arrived on through
//! conntrack marks:
//!
//! - nftables' prerouting sets a flow's conntrack mark from the arrival
//!   interface (interface i gives mark i+1);
//! - the output route hook copies that mark to the packet, and a policy
//!   rule per interface (`fwmark i+1 lookup 201+i`) sends it out of that
//!   interface, to the router learnt from its RA;
//! - a flow with no downlink yet goes by its source: rules `from <prefix>`
//!   in the order of the uplink preference, then any interface with a
//!   router, in the configured order.
//!
//! A table whose interface is down or has no router is empty, so the
//! lookup falls through to the next rule, as the userspace logical
//! interface falls back ([`pmip_proto::mn::Mn::uplink_interface`]).
//!
//! The daemon takes probes off the wire as before; the kernel, which gets
//! them too, would answer each with a Port Unreachable or a RST that no
//! listening socket would have let out: prerouting marks a probe's
//! connection and the output hook drops those answers. MLD reports, which
//! the userspace logical interface never sent, are dropped too.

use std::collections::BTreeSet;
use std::io;
use std::net::Ipv6Addr;

use pmip_proto::mn::MnState;
use pmip_proto::Prefix;
use rtnetlink::packet_route::route::RouteProtocol;
use rtnetlink::packet_route::rule::RuleAttribute;
use rtnetlink::RouteMessageBuilder;

use crate::data_plane::{nft, rule_message, to_table};
use crate::kernel::{Kernel, ROUTE_PROTOCOL};
use crate::probe::MAGIC_WORD as PROBE_MAGIC;

pub const NFT_TABLE: &str = "pmiplab_mn";
const FIRST_TABLE: u32 = 201;
/// Rule priorities: a flow's mark, then its source, then any interface.
const MARK_PRIORITY: u32 = 1100;
const SOURCE_PRIORITY: u32 = 1200;
const ANY_PRIORITY: u32 = 1300;
/// The conntrack mark's bit for a probe's connection; the low byte is the
/// arrival interface.
const PROBE_BIT: u32 = 0x100;

pub struct KernelLif {
    ifaces: Vec<String>,
    /// Interfaces in the order a flow with no downlink yet tries them.
    preference: Vec<String>,
    /// Installed `from <prefix>` rules: (rank, prefix).
    sources: BTreeSet<(usize, Prefix)>,
    /// Per interface, the router its default route goes to.
    routers: Vec<Option<Ipv6Addr>>,
}

fn sysctl(path: &str, value: &str) -> io::Result<()> {
    std::fs::write(format!("/proc/sys/{path}"), value)
        .map_err(|e| io::Error::new(e.kind(), format!("cannot set {path} to {value}: {e}")))
}

/// The nftables table that sets and uses the conntrack marks.
fn script(ifaces: &[String]) -> String {
    let arrivals: String = ifaces
        .iter()
        .enumerate()
        .map(|(i, n)| format!("    iifname \"{n}\" ct mark set ct mark and 0xffffff00 or {:#x}\n", i + 1))
        .collect();
    format!(
        "table ip6 {NFT_TABLE} {{\n\
         \x20 chain arrival {{\n\
         \x20   type filter hook prerouting priority -150; policy accept;\n\
         \x20   meta l4proto udp @th,64,32 {PROBE_MAGIC:#x} ct mark set ct mark or {PROBE_BIT:#x}\n\
         \x20   meta l4proto tcp @th,160,32 {PROBE_MAGIC:#x} ct mark set ct mark or {PROBE_BIT:#x}\n\
         {arrivals}\
         \x20 }}\n\
         \x20 chain steer {{\n\
         \x20   type route hook output priority -150; policy accept;\n\
         \x20   ct mark and 0xff != 0 meta mark set ct mark and 0xff\n\
         \x20 }}\n\
         \x20 chain quiet {{\n\
         \x20   type filter hook output priority 0; policy accept;\n\
         \x20   icmpv6 type {{ mld-listener-report, mld2-listener-report, mld-listener-done }} counter drop\n\
         \x20   ct mark and {PROBE_BIT:#x} != 0 icmpv6 type destination-unreachable counter drop\n\
         \x20   ct mark and {PROBE_BIT:#x} != 0 tcp flags rst counter drop\n\
         \x20 }}\n\
         }}\n"
    )
}

/// The interfaces in the order a flow with no downlink yet tries them:
/// the uplink preference, then the rest in the configured order (as
/// [`pmip_proto::mn::Mn::uplink_interface`] goes through them).
fn preference_order(ifaces: &[String], preference: &[String]) -> Vec<String> {
    let mut order: Vec<String> = Vec::new();
    for n in preference.iter().chain(ifaces) {
        if ifaces.contains(n) && !order.contains(n) {
            order.push(n.clone());
        }
    }
    order
}

/// The `from <prefix>` rules the core's interfaces call for, as (rank in
/// `order`, prefix): each prefix of each interface that is up.
fn source_rules(order: &[String], mn: &MnState) -> BTreeSet<(usize, Prefix)> {
    let mut rules = BTreeSet::new();
    for (rank, name) in order.iter().enumerate() {
        if let Some(row) = mn.interfaces.iter().find(|r| &r.name == name && r.up) {
            rules.extend(row.prefixes.iter().map(|p| (rank, *p)));
        }
    }
    rules
}

impl KernelLif {
    /// Takes the physical interfaces over for the kernel and installs the
    /// marks and the rules that do not change; what a predecessor left is
    /// swept first. The nftables table goes first, in one `nft` run that
    /// also replaces a predecessor's: it fails, changing nothing, where
    /// `nft` or nf_tables is missing.
    pub async fn start(kernel: &mut Kernel, ifaces: &[String], preference: &[String]) -> io::Result<KernelLif> {
        nft::load(&format!("table ip6 {NFT_TABLE} {{}}\ndelete table ip6 {NFT_TABLE}\n{}", script(ifaces))).await?;
        let swept = kernel.sweep_leftovers().await?;
        if swept > 0 {
            tracing::info!("removed {swept} routes and rules a previous MN daemon left");
        }
        for n in ifaces {
            // Before IPv6 comes on: no RS, DAD, autoconfiguration or RA of
            // the kernel's own on the wire; the daemon does those.
            for (key, value) in [
                ("accept_ra", "0"),
                ("autoconf", "0"),
                ("accept_dad", "0"),
                ("dad_transmits", "0"),
                ("router_solicitations", "0"),
            ] {
                sysctl(&format!("net/ipv6/conf/{n}/{key}"), value)?;
            }
            sysctl(&format!("net/ipv6/conf/{n}/disable_ipv6"), "0")?;
        }
        kernel.up("lo", None).await?;
        // Addresses a killed predecessor left on lo: this namespace's lo
        // holds nothing else but ::1.
        for a in kernel.addresses("lo").await? {
            if !a.is_loopback() {
                kernel.del_address("lo", a).await?;
            }
        }
        // Probes are TCP-shaped segments with no handshake before them:
        // conntrack follows them without checking their windows.
        if let Err(e) = sysctl("net/netfilter/nf_conntrack_tcp_be_liberal", "1") {
            tracing::warn!("{e}: TCP-shaped probes may not carry their arrival mark");
        }
        for i in 0..ifaces.len() {
            let table = FIRST_TABLE + i as u32;
            let mut m = rule_message(MARK_PRIORITY + i as u32);
            m.attributes.push(RuleAttribute::FwMark(i as u32 + 1));
            m.attributes.push(RuleAttribute::FwMask(0xff));
            to_table(&mut m, table);
            kernel.put_rule(format!("mn rule fwmark {:#x}/0xff lookup {table}", i + 1), m).await?;
            let mut m = rule_message(ANY_PRIORITY + i as u32);
            to_table(&mut m, table);
            kernel.put_rule(format!("mn rule lookup {table}"), m).await?;
        }
        Ok(KernelLif {
            ifaces: ifaces.to_vec(),
            preference: preference_order(ifaces, preference),
            sources: BTreeSet::new(),
            routers: vec![None; ifaces.len()],
        })
    }

    fn index(&self, iface: &str) -> Option<usize> {
        self.ifaces.iter().position(|n| n == iface)
    }

    /// The router of `iface` is `ll` at `mac` (from its RA): its table's
    /// default route goes there, and a permanent neighbour entry spares
    /// the kernel asking for it.
    pub async fn router(&mut self, kernel: &mut Kernel, iface: &str, ll: Ipv6Addr, mac: [u8; 6]) -> io::Result<()> {
        let Some(i) = self.index(iface) else { return Ok(()) };
        kernel.put_neighbour(iface, ll, mac).await?;
        if self.routers[i] == Some(ll) {
            return Ok(());
        }
        let table = FIRST_TABLE + i as u32;
        let msg = RouteMessageBuilder::<Ipv6Addr>::new()
            .destination_prefix(Ipv6Addr::UNSPECIFIED, 0)
            .gateway(ll)
            .output_interface(kernel.index(iface).await?)
            .protocol(RouteProtocol::Other(ROUTE_PROTOCOL))
            .table_id(table)
            .build();
        kernel.put_route(format!("mn default table {table}"), msg).await?;
        self.routers[i] = Some(ll);
        Ok(())
    }

    /// `iface` lost its link: its table empties, so its flows fall back.
    pub async fn link_down(&mut self, kernel: &mut Kernel, iface: &str) -> io::Result<()> {
        let Some(i) = self.index(iface) else { return Ok(()) };
        self.routers[i] = None;
        kernel.remove(&format!("mn default table {}", FIRST_TABLE + i as u32)).await
    }

    /// Makes the `from <prefix>` rules say what the core's interfaces say:
    /// each prefix of an interface that is up sends to that interface, in
    /// the order of the uplink preference.
    pub async fn sync_sources(&mut self, kernel: &mut Kernel, mn: &MnState) -> io::Result<()> {
        let desired = source_rules(&self.preference, mn);
        let gone: Vec<(usize, Prefix)> = self.sources.difference(&desired).copied().collect();
        for (rank, p) in gone {
            kernel.remove(&self.source_what(rank, p)).await?;
            self.sources.remove(&(rank, p));
        }
        let new: Vec<(usize, Prefix)> = desired.difference(&self.sources).copied().collect();
        for (rank, p) in new {
            let Some(i) = self.index(&self.preference[rank]) else { continue };
            let mut m = rule_message(SOURCE_PRIORITY + rank as u32);
            m.header.src_len = p.prefix_len();
            m.attributes.push(RuleAttribute::Source(p.addr().into()));
            to_table(&mut m, FIRST_TABLE + i as u32);
            kernel.put_rule(self.source_what(rank, p), m).await?;
            self.sources.insert((rank, p));
        }
        Ok(())
    }

    fn source_what(&self, rank: usize, p: Prefix) -> String {
        let i = self.index(&self.preference[rank]).unwrap_or(0);
        format!("mn rule from {p} lookup {}", FIRST_TABLE + i as u32)
    }

    /// Removes the nftables table (the kernel's cleanup removes the rest).
    pub async fn stop(&self) -> io::Result<()> {
        nft::delete_table(NFT_TABLE).await.map(|_| ())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use pmip_proto::flow::FlowKey;
    use pmip_proto::mn::{Mn, MnConfig, MnInput};
    use pmip_proto::Instant;

    /// The interface Linux sends an uplink packet out of, walking the rules
    /// this module installs in priority order: the flow's mark (1100+i),
    /// the source rules by rank (1200+rank), any interface (1300+i); a
    /// rule whose table is empty (no router) lets the walk go on.
    fn kernel_choice(
        order: &[String],
        ifaces: &[String],
        sources: &BTreeSet<(usize, Prefix)>,
        routed: &[bool],
        mark: Option<usize>,
        src: Ipv6Addr,
    ) -> Option<usize> {
        if let Some(i) = mark.filter(|&i| routed[i]) {
            return Some(i);
        }
        for (rank, p) in sources {
            let i = ifaces.iter().position(|n| *n == order[*rank])?;
            if p.contains(&src) && routed[i] {
                return Some(i);
            }
        }
        (0..ifaces.len()).find(|&i| routed[i])
    }

    fn splitmix(state: &mut u64) -> u64 {
        *state = state.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = *state;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// Random link changes, RAs and downlink arrivals: wherever the
    /// userspace logical interface (the core's `uplink_interface`, sent
    /// only when that interface has a router) sends a flow's uplink, the
    /// kernel's marks and rules send it out of the same interface.
    #[test]
    fn the_kernel_rules_send_uplink_where_the_core_does() {
        let cases: u64 = std::env::var("PMIP_CASES").ok().and_then(|v| v.parse().ok()).unwrap_or(2000);
        let prefixes: Vec<Prefix> =
            (1..=3u16).map(|n| Prefix::new(Ipv6Addr::new(0x2001, 0xdb8, n, 0, 0, 0, 0, 0), 64)).collect();
        let cn = Ipv6Addr::new(0x2001, 0xdb8, 0xc, 0, 0, 0, 0, 1);
        for case in 0..cases {
            let mut rng = case;
            let n = 2 + (splitmix(&mut rng) % 2) as usize;
            let ifaces: Vec<String> = (1..=n).map(|i| format!("if{i}")).collect();
            let mut preference = ifaces.clone();
            preference.rotate_left((splitmix(&mut rng) % n as u64) as usize);
            preference.truncate(1 + (splitmix(&mut rng) % n as u64) as usize);
            let order = preference_order(&ifaces, &preference);
            let config =
                MnConfig { name: "mn1".into(), iid: 6, interfaces: ifaces.clone(), uplink_preference: preference };
            let mut mn = Mn::new(config);
            let mut routed = vec![false; n];
            let flows: Vec<FlowKey> = (0..4u16)
                .map(|f| FlowKey {
                    src: cn,
                    dst: prefixes[usize::from(f % 3)].with_iid(6),
                    next_header: 17,
                    src_port: 7000,
                    dst_port: 5000 + f,
                })
                .collect();
            let mut marks: Vec<Option<usize>> = vec![None; flows.len()];
            for step in 0..30 {
                let i = (splitmix(&mut rng) % n as u64) as usize;
                let iface = ifaces[i].clone();
                let input = match splitmix(&mut rng) % 4 {
                    0 => MnInput::LinkUp { iface },
                    1 => {
                        routed[i] = false;
                        MnInput::LinkDown { iface }
                    }
                    2 => {
                        routed[i] = true;
                        let bits = splitmix(&mut rng);
                        let offered = prefixes.iter().enumerate().filter(|(k, _)| bits >> k & 1 == 1);
                        MnInput::RouterAdvertisement { iface, prefixes: offered.map(|(_, p)| *p).collect() }
                    }
                    _ => {
                        let f = (splitmix(&mut rng) % flows.len() as u64) as usize;
                        marks[f] = Some(i);
                        MnInput::Downlink { iface, flow: flows[f] }
                    }
                };
                mn.handle(Instant::ZERO, input);
                let sources = source_rules(&order, &mn.state());
                for (f, key) in flows.iter().enumerate() {
                    let uplink = key.reversed();
                    let core = mn.uplink_interface(&uplink).and_then(|n| ifaces.iter().position(|x| x == n));
                    let Some(sent) = core.filter(|&c| routed[c]) else { continue };
                    let kernel = kernel_choice(&order, &ifaces, &sources, &routed, marks[f], uplink.src);
                    assert_eq!(
                        kernel,
                        Some(sent),
                        "case {case}, step {step}, flow {f}: the core sends it out of {}, the kernel's rules {:?}\n{:?}",
                        ifaces[sent],
                        kernel.map(|k| &ifaces[k]),
                        mn.state()
                    );
                }
            }
        }
    }

    #[test]
    fn the_script_marks_each_arrival_interface_and_quiets_probe_answers() {
        let s = script(&["if1".into(), "if2".into()]);
        assert!(s.contains("iifname \"if1\" ct mark set ct mark and 0xffffff00 or 0x1"), "{s}");
        assert!(s.contains("iifname \"if2\" ct mark set ct mark and 0xffffff00 or 0x2"), "{s}");
        assert!(s.contains("@th,64,32 0x504d4950"), "the probe magic after a UDP header: {s}");
        assert!(s.contains("type route hook output"), "{s}");
    }
}
