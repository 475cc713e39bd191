//! The kernel datapath: the RFC 5213 LMA–MAG tunnel without ip6_tunnel.
//!
//! The tunnel's two ends are made of seg6 lightweight tunnels where the
//! kernel has them ([`TunnelKind::Seg6`], below), else of two small eBPF
//! programs ([`TunnelKind::Bpf`], see [`super::bpf`]); the rules, tables
//! and nftables marks around them are the same.
//!
//! - Encapsulation: routes `encap seg6 mode encap.red segs <peer> tunsrc
//!   <own>`; with one segment the reduced mode writes no routing header, so
//!   the packet on the wire is plain IPv6-in-IPv6 (next header 41).
//! - Decapsulation: a rule before the local table, `from <peer> to <own>
//!   ipproto 41 lookup DECAP_TABLE` (one per tunnel peer, so a stranger's
//!   tunnel packets are not taken), and in that table `<own>/128 encap
//!   seg6local action End.DT6 table main`; the local rule moves from
//!   priority 0 to [`LOCAL_PRIO`], so signalling to the same address is
//!   still delivered.
//! - LMA: each MAG gets a table whose default route encapsulates to it
//!   (a blackhole while its tunnel is down); prefix routes encapsulate from
//!   the main table; the Flow Mobility Cache becomes policy rules in FID-PRI
//!   order (prefix, protocol and port selectors) into the MAG's table, or a
//!   blackhole rule for a drop binding; a selector `ip rule` cannot express
//!   (an address range that is no prefix, a protocol range) gets an
//!   nftables mark and a fwmark rule.
//! - MAG: the uplink table's default route encapsulates to the LMA (a
//!   blackhole while the tunnel is down); source rules and access routes
//!   as in the userspace datapath.
//!
//! The same intents as the userspace datapath, read through the same
//! [`LmaPlane`]/[`MagPlane`], so both classify alike.

use std::collections::{BTreeMap, BTreeSet};
use std::io;
use std::net::Ipv6Addr;
use std::sync::{Arc, Mutex};

use pmip_proto::dataplane::{LmaPlane, MagPlane};
use pmip_proto::{FlowTarget, Intent, Prefix};
use pmip_wire::TrafficSelector;
use rtnetlink::packet_route::route::{
    RouteMessage, RouteProtocol, RouteSeg6IpTunnel, RouteSeg6LocalTunnel, RouteType, Seg6Header, Seg6LocalAction,
    Seg6Mode,
};
use rtnetlink::packet_route::rule::{RuleAction, RuleAttribute, RuleMessage, RulePortRange};
use rtnetlink::packet_route::IpProtocol;
use rtnetlink::RouteMessageBuilder;
use tokio::sync::mpsc;
use tracing::{info, warn};

use super::{bpf, genl, nft, Side, Update};
use crate::faults::Faults;
use crate::kernel::{enable_forwarding, link_local_of, Kernel, ROUTE_PROTOCOL};

/// `SEG6_IPTUN_MODE_ENCAP_RED` of `include/uapi/linux/seg6_iptunnel.h`.
const SEG6_IPTUN_MODE_ENCAP_RED: u32 = 3;
/// The priority of the decapsulation rules, before the local table.
pub const DECAP_PRIO: u32 = 50;
/// Where the local table's rule moves to.
pub const LOCAL_PRIO: u32 = 100;
/// Flow bindings: this plus the FID-PRI (capped so that every binding
/// stays before the main table's rule at 32766).
pub const FLOW_PRIO_BASE: u32 = 2000;
const FLOW_PRIO_MAX: u32 = 32000;
/// The table holding the End.DT6 route.
pub const DECAP_TABLE: u32 = 1540;
/// The LMA's per-MAG tables start here.
pub const MAG_TABLE_BASE: u32 = 1541;
/// The nftables table of the kernel datapath (counters, flow marks).
pub const NFT_TABLE: &str = "pmiplab";
const MARK_BASE: u32 = 0x1540_0000;
/// The MTU the links carrying the tunnel get at least: a 1500-octet
/// inner packet and the 40-octet outer header.
pub const TUNNEL_LINK_MTU: u32 = 1540;
/// A table nothing else uses, for the start-up probe.
const SCRATCH_TABLE: u32 = 1539;

fn err(what: String) -> impl FnOnce(rtnetlink::Error) -> String {
    move |e| format!("{what}: {e}")
}

/// What carries the tunnel's two ends in the kernel.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TunnelKind {
    /// seg6 encap.red routes and a seg6local End.DT6 route.
    Seg6,
    /// An `encap bpf xmit` route per peer and a `cls_bpf` ingress filter.
    Bpf,
}

impl TunnelKind {
    fn describe(self) -> &'static str {
        match self {
            TunnelKind::Seg6 => "seg6 encap.red IPv6-in-IPv6, End.DT6 decapsulation",
            TunnelKind::Bpf => "eBPF IPv6-in-IPv6 (lwt xmit encapsulation, tc ingress decapsulation)",
        }
    }
}

/// Whether this kernel and this namespace can run the kernel datapath,
/// and with which tunnel: seg6 (an encap route and an End.DT6 route in a
/// scratch table) or else eBPF (both programs load); then a working
/// `nft`. The error says what is missing.
pub async fn probe(kernel: &Kernel, own: Ipv6Addr) -> Result<TunnelKind, String> {
    let kind = match probe_seg6(kernel, own).await {
        Ok(()) => TunnelKind::Seg6,
        Err(seg6) => match bpf::probe(own) {
            Ok(()) => {
                info!("seg6 lightweight tunnels are missing ({seg6}); the tunnel is made of eBPF programs");
                TunnelKind::Bpf
            }
            Err(ebpf) => return Err(format!("no kernel tunnel: {seg6}; and eBPF: {ebpf}")),
        },
    };
    nft::probe().await?;
    Ok(kind)
}

async fn probe_seg6(kernel: &Kernel, own: Ipv6Addr) -> Result<(), String> {
    let (dev, name) = kernel.holder_of(own).await.map_err(|e| format!("the node's own address: {e}"))?;
    let scratch = Prefix::new(Ipv6Addr::new(0x100, 0, 0, 0, 0, 0, 0, 0), 64);
    let encap = encap_route(scratch, own, dev, SCRATCH_TABLE);
    kernel.add_route_once(encap.clone()).await.map_err(err(format!("a seg6 encap route on {name}")))?;
    let _ = kernel.del_route_once(encap).await;
    let decap = decap_route(own, dev, SCRATCH_TABLE);
    kernel.add_route_once(decap.clone()).await.map_err(err(format!("a seg6local End.DT6 route on {name}")))?;
    let _ = kernel.del_route_once(decap).await;
    genl::tunsrc().map(|_| ()).map_err(|e| format!("the seg6 tunnel source (ip sr tunsrc): {e}"))
}

/// `<prefix> encap seg6 mode encap.red segs <peer> dev <dev> table <table>`;
/// the outer source is the namespace's tunnel source (`ip sr tunsrc`).
fn encap_route(prefix: Prefix, peer: Ipv6Addr, dev: u32, table: u32) -> RouteMessage {
    let mut h = Seg6Header::default();
    h.mode = Seg6Mode::from(SEG6_IPTUN_MODE_ENCAP_RED);
    h.segments = vec![peer];
    RouteMessageBuilder::<Ipv6Addr>::new()
        .destination_prefix(prefix.addr(), prefix.prefix_len())
        .output_interface(dev)
        .protocol(RouteProtocol::Other(ROUTE_PROTOCOL))
        .table_id(table)
        .encap_seg6(vec![RouteSeg6IpTunnel::Seg6(h)])
        .build()
}

/// `blackhole ::/0 table <table>`.
fn blackhole_default(table: u32) -> RouteMessage {
    RouteMessageBuilder::<Ipv6Addr>::new()
        .destination_prefix(Ipv6Addr::UNSPECIFIED, 0)
        .protocol(RouteProtocol::Other(ROUTE_PROTOCOL))
        .table_id(table)
        .kind(RouteType::BlackHole)
        .build()
}

/// `<own>/128 encap seg6local action End.DT6 table main dev <dev> table <table>`.
fn decap_route(own: Ipv6Addr, dev: u32, table: u32) -> RouteMessage {
    RouteMessageBuilder::<Ipv6Addr>::new()
        .destination_prefix(own, 128)
        .output_interface(dev)
        .protocol(RouteProtocol::Other(ROUTE_PROTOCOL))
        .table_id(table)
        .encap_seg6local(vec![RouteSeg6LocalTunnel::Action(Seg6LocalAction::EndDt6), RouteSeg6LocalTunnel::Table(254)])
        .build()
}

pub(crate) fn rule(priority: u32) -> RuleMessage {
    let mut m = RuleMessage::default();
    m.header.family = rtnetlink::packet_route::AddressFamily::Inet6;
    m.attributes.push(RuleAttribute::Priority(priority));
    m.attributes.push(RuleAttribute::Protocol(RouteProtocol::Other(ROUTE_PROTOCOL)));
    m
}

pub(crate) fn to_table(m: &mut RuleMessage, table: u32) {
    m.header.action = RuleAction::ToTable;
    if table > 255 {
        m.attributes.push(RuleAttribute::Table(table));
    } else {
        m.header.table = table as u8;
    }
}

/// What a traffic selector asks of the kernel.
#[derive(Debug, Clone, PartialEq)]
enum Match {
    /// Nothing matches it (fields a flow key never carries: SPI, flow
    /// label, traffic class), as in the userspace classifier.
    Never,
    /// One `ip rule`'s selectors.
    Rule {
        src: Option<Prefix>,
        dst: Option<Prefix>,
        proto: Option<u8>,
        sport: Option<(u16, u16)>,
        dport: Option<(u16, u16)>,
    },
    /// An nftables expression that marks the packet.
    Nft(String),
}

/// RFC 6088 ranges: a start alone is a value, an end alone too, both an
/// inclusive range.
fn range<T: Copy + PartialOrd>(start: Option<T>, end: Option<T>) -> Option<(T, T)> {
    match (start, end) {
        (None, None) => None,
        (Some(s), None) => Some((s, s)),
        (None, Some(e)) => Some((e, e)),
        (Some(s), Some(e)) => Some((s, e)),
    }
}

fn selector_match(ts: &TrafficSelector) -> Match {
    let TrafficSelector::Ipv6(s) = ts else {
        return Match::Never;
    };
    if s.start_spi.is_some()
        || s.end_spi.is_some()
        || s.start_flow_label.is_some()
        || s.end_flow_label.is_some()
        || s.start_traffic_class.is_some()
        || s.end_traffic_class.is_some()
    {
        return Match::Never;
    }
    let src = range(s.start_src, s.end_src);
    let dst = range(s.start_dst, s.end_dst);
    let proto = range(s.start_next_header, s.end_next_header);
    let sport = range(s.start_src_port, s.end_src_port);
    let dport = range(s.start_dst_port, s.end_dst_port);
    let as_prefix = |r: Option<(Ipv6Addr, Ipv6Addr)>| match r {
        None => Some(None),
        Some((a, b)) if a == b => Some(Some(Prefix::new(a, 128))),
        Some((a, b)) => Prefix::from_range(a, b).map(Some),
    };
    let single_proto = match proto {
        None => Some(None),
        Some((a, b)) if a == b => Some(Some(a)),
        Some(_) => None,
    };
    if let (Some(src), Some(dst), Some(proto)) = (as_prefix(src), as_prefix(dst), single_proto) {
        return Match::Rule { src, dst, proto, sport, dport };
    }
    let mut e = String::new();
    if let Some((a, b)) = src {
        e.push_str(&format!("ip6 saddr {a}-{b} "));
    }
    if let Some((a, b)) = dst {
        e.push_str(&format!("ip6 daddr {a}-{b} "));
    }
    if let Some((a, b)) = proto {
        e.push_str(&format!("meta l4proto {a}-{b} "));
    }
    if let Some((a, b)) = sport {
        e.push_str(&format!("th sport {a}-{b} "));
    }
    if let Some((a, b)) = dport {
        e.push_str(&format!("th dport {a}-{b} "));
    }
    Match::Nft(e)
}

type FlowKey = (u16, String, u16);

/// An installed flow binding: what it was for, and the names of its rules.
struct FlowRules {
    value: (TrafficSelector, FlowTarget),
    rules: Vec<String>,
    nft: Option<(u32, String)>,
}

pub(super) struct KernelPlane {
    kind: TunnelKind,
    /// The eBPF tunnel's encapsulating programs, one per peer.
    programs: bpf::Programs,
    side: Side,
    own: Ipv6Addr,
    dev: u32,
    dev_name: String,
    uplink_table: u32,
    kernel: Kernel,
    lma: LmaPlane,
    mag: MagPlane,
    mag_routes: BTreeMap<Prefix, (String, Option<Ipv6Addr>)>,
    /// LMA: the table of each MAG.
    mag_tables: BTreeMap<Ipv6Addr, u32>,
    flows: BTreeMap<FlowKey, FlowRules>,
    flows_dirty: bool,
    peers: BTreeSet<Ipv6Addr>,
    next_mark: u32,
    counters: BTreeMap<&'static str, u64>,
    moved_local: bool,
    /// Read only to say that data-packet rules are not applied here.
    faults: Arc<Mutex<Faults>>,
    /// The task applying [`KernelPlane::counters_update`]s, and its queue.
    nft_tx: Option<mpsc::UnboundedSender<String>>,
    nft_task: Option<tokio::task::JoinHandle<()>>,
}

impl KernelPlane {
    /// Sweeps what a predecessor left, moves the local rule, and builds the
    /// nftables table. `kernel` already passed [`probe`].
    pub(super) async fn start(
        kind: TunnelKind,
        side: Side,
        own: Ipv6Addr,
        uplink_table: u32,
        mut kernel: Kernel,
        faults: Arc<Mutex<Faults>>,
    ) -> io::Result<mpsc::Sender<Update>> {
        enable_forwarding()?;
        let swept = kernel.sweep_leftovers().await?;
        if nft::delete_table(NFT_TABLE).await? {
            info!("removed the nftables table {NFT_TABLE} a previous daemon left");
        }
        if swept > 0 {
            info!("removed {swept} routes and rules a previous daemon left");
        }
        let (dev, dev_name) = kernel.holder_of(own).await?;
        if bpf::detach(kernel.handle(), dev).await {
            info!("removed the ingress hook a previous daemon left on {dev_name}");
        }
        let mut plane = KernelPlane {
            kind,
            programs: bpf::Programs::default(),
            side,
            own,
            dev,
            dev_name,
            uplink_table,
            kernel,
            lma: LmaPlane::default(),
            mag: MagPlane::default(),
            mag_routes: BTreeMap::new(),
            mag_tables: BTreeMap::new(),
            flows: BTreeMap::new(),
            flows_dirty: false,
            peers: BTreeSet::new(),
            next_mark: MARK_BASE,
            counters: BTreeMap::new(),
            moved_local: false,
            faults,
            nft_tx: None,
            nft_task: None,
        };
        let (nft_tx, mut nft_rx) = mpsc::unbounded_channel::<String>();
        plane.nft_tx = Some(nft_tx);
        plane.nft_task = Some(tokio::spawn(async move {
            while let Some(script) = nft_rx.recv().await {
                if let Err(e) = nft::load(&script).await {
                    warn!("updating the tunnel peers of the counters: {e}");
                }
            }
        }));
        if let Err(e) = plane.set_up().await {
            plane.cleanup().await;
            return Err(e);
        }
        let (tx, rx) = mpsc::channel(256);
        tokio::spawn(plane.run(rx));
        Ok(tx)
    }

    async fn set_up(&mut self) -> io::Result<()> {
        // The eBPF tunnel decapsulates before nftables sees the packet:
        // the program marks what it decapsulated, and the count takes the
        // mark off.
        let decapsulated = match self.kind {
            TunnelKind::Seg6 => {
                format!("ip6 daddr {own} ip6 saddr @peers meta l4proto 41 counter name decapsulated", own = self.own)
            }
            TunnelKind::Bpf => {
                format!("meta mark {m:#x} counter name decapsulated meta mark set 0", m = bpf::DECAP_MARK)
            }
        };
        nft::load(&format!(
            "table ip6 {t} {{\n\
             counter encapsulated {{ }}\n\
             counter decapsulated {{ }}\n\
             set peers {{ type ipv6_addr; }}\n\
             chain marks {{ }}\n\
             chain pre {{ type filter hook prerouting priority -150; policy accept;\n\
               {decapsulated}\n\
               meta mark 0 jump marks\n\
             }}\n\
             chain post {{ type filter hook postrouting priority 150; policy accept;\n\
               ip6 saddr {own} meta l4proto 41 counter name encapsulated\n\
             }}\n\
             }}\n",
            t = NFT_TABLE,
            own = self.own
        ))
        .await?;
        if self.kind == TunnelKind::Seg6 {
            genl::set_tunsrc(self.own)?;
        }
        // The kernel encapsulates before it checks any MTU, and an outer
        // packet too big for the link is dropped: the link that carries
        // the tunnel takes a full-size inner packet plus the outer header.
        let raised = self.kernel.raise_mtu(self.dev, TUNNEL_LINK_MTU).await?;
        if !raised.is_empty() {
            info!("MTU of {} raised to {TUNNEL_LINK_MTU} for the 40-octet outer header", raised.join(", "));
        }
        if self.kind == TunnelKind::Bpf {
            self.attach_decap().await?;
        } else {
            self.move_local_rule().await?;
        }
        if let Side::Mag { .. } = self.side {
            let t = self.uplink_table;
            self.kernel.put_route(format!("route ::/0 table {t}"), blackhole_default(t)).await?;
        }
        info!(
            "kernel datapath: {} from {} on {}, nftables table {NFT_TABLE}",
            self.kind.describe(),
            self.own,
            self.dev_name
        );
        Ok(())
    }

    /// The eBPF tunnel's decapsulating filter, for the current peers.
    async fn attach_decap(&mut self) -> io::Result<()> {
        let prog = bpf::load(bpf::ProgType::SchedCls, &bpf::decap_program(self.own, &self.peers), "pmip6_decap")?;
        bpf::attach_decap(self.kernel.handle(), self.dev, &prog).await
    }

    /// seg6: tunnelled packets to the own address meet the decapsulation
    /// rules before the local table, and End.DT6 takes them in.
    async fn move_local_rule(&mut self) -> io::Result<()> {
        let mut local = rule(LOCAL_PRIO);
        to_table(&mut local, 255);
        self.kernel.add_rule_once(local).await?;
        self.moved_local = true;
        for r in self.kernel.rules().await? {
            let prio = r.attributes.iter().find_map(|a| match a {
                RuleAttribute::Priority(p) => Some(*p),
                _ => None,
            });
            if r.header.table == 255 && prio.unwrap_or(0) == 0 {
                self.kernel.del_rule_once(r).await?;
            }
        }
        self.kernel
            .put_route(
                format!("route {own}/128 End.DT6 table {DECAP_TABLE}", own = self.own),
                decap_route(self.own, self.dev, DECAP_TABLE),
            )
            .await
    }

    /// The route `<prefix> → tunnel to peer` in `table`, for this kernel's
    /// kind of tunnel.
    fn tunnel_route(&mut self, prefix: Prefix, peer: Ipv6Addr, table: u32) -> io::Result<RouteMessage> {
        match self.kind {
            TunnelKind::Seg6 => Ok(encap_route(prefix, peer, self.dev, table)),
            TunnelKind::Bpf => {
                let mut r = RouteMessageBuilder::<Ipv6Addr>::new()
                    .destination_prefix(prefix.addr(), prefix.prefix_len())
                    .output_interface(self.dev)
                    .protocol(RouteProtocol::Other(ROUTE_PROTOCOL))
                    .table_id(table)
                    .build();
                let prog = self.programs.encap(self.own, peer)?;
                bpf::set_encap(&mut r, prog, &bpf::encap_name(peer));
                Ok(r)
            }
        }
    }

    fn count(&mut self, what: &'static str) {
        *self.counters.entry(what).or_default() += 1;
    }

    async fn run(mut self, mut rx: mpsc::Receiver<Update>) {
        while let Some(u) = rx.recv().await {
            match u {
                Update::Intent(i, ll) => self.on_intent(i, &ll).await,
                Update::Barrier(done) => {
                    self.sync_flows().await;
                    let _ = done.send(());
                }
                Update::State(reply) => {
                    self.sync_flows().await;
                    let _ = reply.send(self.state().await);
                }
                Update::Shutdown(done) => {
                    let failed = self.cleanup().await;
                    let _ = done.send(failed);
                    return;
                }
            }
        }
        self.cleanup().await;
    }

    async fn state(&self) -> serde_json::Value {
        let (routes, rules) =
            self.kernel.read_back().await.unwrap_or_else(|e| (vec![format!("cannot read routes back: {e}")], vec![]));
        let mut counters: BTreeMap<String, u64> = self.counters.iter().map(|(k, v)| (k.to_string(), *v)).collect();
        match nft::counters(NFT_TABLE).await {
            Ok(c) => counters.extend(c),
            Err(e) => warn!("{e}"),
        }
        // The kernel forwards every data packet itself: a data-packet
        // fault rule (drop, delay, duplicate, reorder) needs the userspace
        // datapath, and the state says so rather than pretending.
        let data_faults = self.faults.lock().map(|f| f.rules().iter().filter(|r| r.data).count()).unwrap_or(0);
        if data_faults > 0 {
            counters.insert("data fault rules not applied: kernel datapath".into(), data_faults as u64);
        }
        serde_json::json!({
            "datapath": "kernel",
            "tunnel": match self.kind { TunnelKind::Seg6 => "seg6", TunnelKind::Bpf => "ebpf" },
            "tunsrc": match self.kind {
                TunnelKind::Seg6 => genl::tunsrc().map(|a| a.to_string()).unwrap_or_else(|e| e.to_string()),
                TunnelKind::Bpf => self.own.to_string(),
            },
            "counters": counters,
            "installed": self.kernel.installed(),
            "kernel_routes": routes,
            "kernel_rules": rules,
        })
    }

    /// Queues an nftables change that only the counters depend on: it is
    /// applied in order by a task of its own, so that running `nft` never
    /// delays the node's answer (a PBA waits for its data plane).
    fn counters_update(&mut self, script: String) {
        if let Some(tx) = &self.nft_tx {
            if tx.send(script).is_err() {
                self.count("counter updates lost");
            }
        }
    }

    /// The table of a MAG's tunnel, made (with a blackhole default until
    /// the tunnel is up) the first time a MAG is named.
    async fn table_of(&mut self, mag: Ipv6Addr) -> io::Result<u32> {
        if let Some(t) = self.mag_tables.get(&mag) {
            return Ok(*t);
        }
        let t = MAG_TABLE_BASE + self.mag_tables.len() as u32;
        self.mag_tables.insert(mag, t);
        self.kernel.put_route(format!("route ::/0 table {t}"), blackhole_default(t)).await?;
        // The encapsulated packet is looked up again, still carrying a
        // flow's mark: the MAG itself is reached plainly, not encapsulated
        // once more.
        let direct = RouteMessageBuilder::<Ipv6Addr>::new()
            .destination_prefix(mag, 128)
            .output_interface(self.dev)
            .protocol(RouteProtocol::Other(ROUTE_PROTOCOL))
            .table_id(t)
            .build();
        self.kernel.put_route(format!("route {mag}/128 table {t}"), direct).await?;
        Ok(t)
    }

    /// The tunnel to (LMA: a MAG; MAG: the LMA) `peer`: its decapsulation
    /// rule and the peer in the nftables set.
    async fn tunnel(&mut self, peer: Ipv6Addr, up: bool) -> io::Result<()> {
        if self.kind == TunnelKind::Bpf {
            let changed = if up { self.peers.insert(peer) } else { self.peers.remove(&peer) };
            if changed {
                self.attach_decap().await?;
                let verb = if up { "add" } else { "delete" };
                self.counters_update(format!("{verb} element ip6 {NFT_TABLE} peers {{ {peer} }}\n"));
            }
            return Ok(());
        }
        let what = format!("rule from {peer} to {} ipproto 41 lookup {DECAP_TABLE}", self.own);
        if up {
            let mut m = rule(DECAP_PRIO);
            m.header.src_len = 128;
            m.header.dst_len = 128;
            m.attributes.push(RuleAttribute::Source(peer.into()));
            m.attributes.push(RuleAttribute::Destination(self.own.into()));
            m.attributes.push(RuleAttribute::IpProtocol(IpProtocol::from(41)));
            to_table(&mut m, DECAP_TABLE);
            self.kernel.put_rule(what, m).await?;
            if self.peers.insert(peer) {
                self.counters_update(format!("add element ip6 {NFT_TABLE} peers {{ {peer} }}\n"));
            }
        } else {
            self.kernel.remove(&what).await?;
            if self.peers.remove(&peer) {
                self.counters_update(format!("delete element ip6 {NFT_TABLE} peers {{ {peer} }}\n"));
            }
        }
        Ok(())
    }

    async fn on_intent(&mut self, i: Intent, ll_ids: &BTreeMap<String, Vec<u8>>) {
        self.lma.apply(&i);
        self.mag.apply(&i);
        let r = self.apply(&i, ll_ids).await;
        if let Err(e) = r {
            warn!("applying {i:?} failed: {e}");
            self.count("intents that failed");
        }
    }

    async fn apply(&mut self, i: &Intent, ll_ids: &BTreeMap<String, Vec<u8>>) -> io::Result<()> {
        match i {
            Intent::LmaTunnel { mag, up } => {
                let t = self.table_of(*mag).await?;
                let route = if *up {
                    self.tunnel_route(Prefix::new(Ipv6Addr::UNSPECIFIED, 0), *mag, t)?
                } else {
                    blackhole_default(t)
                };
                self.kernel.put_route(format!("route ::/0 table {t}"), route).await?;
                self.tunnel(*mag, *up).await
            }
            Intent::LmaPrefixRoute { prefix, mag, up: true } => {
                let route = self.tunnel_route(*prefix, *mag, 254)?;
                self.kernel.put_route(format!("route {prefix} table 254"), route).await
            }
            Intent::LmaPrefixRoute { prefix, up: false, .. } => {
                if self.lma.routes.contains_key(prefix) {
                    Ok(())
                } else {
                    self.kernel.remove(&format!("route {prefix} table 254")).await
                }
            }
            Intent::LmaFlowBinding { .. } => {
                self.flows_dirty = true;
                Ok(())
            }
            Intent::MagTunnel { lma, up } => {
                let t = self.uplink_table;
                let route = if *up {
                    self.tunnel_route(Prefix::new(Ipv6Addr::UNSPECIFIED, 0), *lma, t)?
                } else {
                    blackhole_default(t)
                };
                self.kernel.put_route(format!("route ::/0 table {t}"), route).await?;
                self.tunnel(*lma, *up).await
            }
            Intent::MagRoute { prefix, iface, up: true } => {
                let via = ll_ids.get(iface).and_then(|m| link_local_of(m));
                let r = self.kernel.add_route(*prefix, iface, via, 254).await;
                self.mag_routes.insert(*prefix, (iface.clone(), via));
                r
            }
            Intent::MagRoute { prefix, up: false, .. } => match self.mag_routes.remove(prefix) {
                Some((d, via)) => self.kernel.del_route(*prefix, &d, via, 254).await,
                None => Ok(()),
            },
            Intent::MagUplinkRule { prefix, up: true } => self.kernel.add_rule(*prefix, self.uplink_table).await,
            Intent::MagUplinkRule { prefix, up: false } => self.kernel.del_rule(*prefix, self.uplink_table).await,
            _ => Ok(()),
        }
    }

    /// Brings the flow-binding rules in line with the plane's Flow
    /// Mobility Cache: new rules first, then the old ones go, so a moved
    /// flow never falls back to its prefix route in between.
    async fn sync_flows(&mut self) {
        if !self.flows_dirty {
            return;
        }
        self.flows_dirty = false;
        let desired = self.lma.flows.clone();
        let mut stale = Vec::new();
        for (k, f) in &self.flows {
            if desired.get(k) != Some(&f.value) {
                stale.push(k.clone());
            }
        }
        let mut old = Vec::new();
        for k in &stale {
            if let Some(f) = self.flows.remove(k) {
                old.push(f);
            }
        }
        let mut nft_changed = old.iter().any(|f| f.nft.is_some());
        for (k, v) in &desired {
            if self.flows.contains_key(k) {
                continue;
            }
            match self.install_flow(k, v).await {
                Ok(f) => {
                    nft_changed |= f.nft.is_some();
                    self.flows.insert(k.clone(), f);
                }
                Err(e) => {
                    warn!("installing flow binding {} of {} failed: {e}", k.2, k.1);
                    self.count("intents that failed");
                }
            }
        }
        if nft_changed {
            if let Err(e) = self.load_marks().await {
                warn!("{e}");
                self.count("intents that failed");
            }
        }
        for f in old {
            for w in f.rules {
                if let Err(e) = self.kernel.remove(&w).await {
                    warn!("{e}");
                }
            }
        }
    }

    async fn install_flow(&mut self, k: &FlowKey, v: &(TrafficSelector, FlowTarget)) -> io::Result<FlowRules> {
        let (pri, mn, fid) = k;
        let prio = FLOW_PRIO_BASE + u32::from(*pri).min(FLOW_PRIO_MAX - FLOW_PRIO_BASE);
        let mut f = FlowRules { value: v.clone(), rules: Vec::new(), nft: None };
        let mut m = rule(prio);
        let mut what = format!("rule {prio} flow {fid} of {mn}");
        match selector_match(&v.0) {
            Match::Never => return Ok(f),
            Match::Rule { src, dst, proto, sport, dport } => {
                if let Some(p) = src {
                    m.header.src_len = p.prefix_len();
                    m.attributes.push(RuleAttribute::Source(p.addr().into()));
                    what.push_str(&format!(" from {p}"));
                }
                if let Some(p) = dst {
                    m.header.dst_len = p.prefix_len();
                    m.attributes.push(RuleAttribute::Destination(p.addr().into()));
                    what.push_str(&format!(" to {p}"));
                }
                if let Some(p) = proto {
                    m.attributes.push(RuleAttribute::IpProtocol(IpProtocol::from(i32::from(p))));
                    what.push_str(&format!(" ipproto {p}"));
                }
                if let Some((a, b)) = sport {
                    m.attributes.push(RuleAttribute::SourcePortRange(RulePortRange { start: a, end: b }));
                    what.push_str(&format!(" sport {a}-{b}"));
                }
                if let Some((a, b)) = dport {
                    m.attributes.push(RuleAttribute::DestinationPortRange(RulePortRange { start: a, end: b }));
                    what.push_str(&format!(" dport {a}-{b}"));
                }
            }
            Match::Nft(expr) => {
                let mark = self.next_mark;
                self.next_mark += 1;
                m.attributes.push(RuleAttribute::FwMark(mark));
                m.attributes.push(RuleAttribute::FwMask(u32::MAX));
                what.push_str(&format!(" fwmark {mark:#x}"));
                f.nft = Some((mark, expr));
            }
        }
        match v.1 {
            FlowTarget::Forward(mag) => {
                let t = self.table_of(mag).await?;
                to_table(&mut m, t);
                what.push_str(&format!(" lookup {t}"));
            }
            FlowTarget::Drop => {
                m.header.action = RuleAction::Blackhole;
                what.push_str(" blackhole");
            }
        }
        self.kernel.put_rule(what.clone(), m).await?;
        f.rules.push(what);
        Ok(f)
    }

    /// Rewrites the nftables chain that marks flows the rules cannot
    /// select, in FID-PRI order: the first match marks a packet.
    async fn load_marks(&self) -> io::Result<()> {
        let mut script = format!("flush chain ip6 {NFT_TABLE} marks\n");
        for f in self.flows.values() {
            if let Some((mark, expr)) = &f.nft {
                script.push_str(&format!("add rule ip6 {NFT_TABLE} marks {expr}meta mark set {mark:#x} return\n"));
            }
        }
        nft::load(&script).await
    }

    /// Removes every route, rule and nftables table this plane made, and
    /// puts the local rule back at priority 0.
    async fn cleanup(&mut self) -> Vec<String> {
        let mut failed = self.kernel.cleanup().await;
        // Let queued counter updates finish before their table goes.
        self.nft_tx = None;
        if let Some(task) = self.nft_task.take() {
            if tokio::time::timeout(std::time::Duration::from_secs(2), task).await.is_err() {
                failed.push("nftables counter updates still running at shutdown".into());
            }
        }
        if let Err(e) = nft::delete_table(NFT_TABLE).await {
            failed.push(e.to_string());
        }
        match self.kind {
            TunnelKind::Seg6 => {
                if let Err(e) = genl::set_tunsrc(Ipv6Addr::UNSPECIFIED) {
                    failed.push(e.to_string());
                }
            }
            TunnelKind::Bpf => {
                if !bpf::detach(self.kernel.handle(), self.dev).await {
                    failed.push(format!("the ingress hook of {} could not be removed", self.dev_name));
                }
            }
        }
        if self.moved_local {
            let mut local = rule(0);
            local.attributes.retain(|a| !matches!(a, RuleAttribute::Protocol(_)));
            to_table(&mut local, 255);
            if let Err(e) = self.kernel.add_rule_once(local).await {
                failed.push(e.to_string());
            }
            if let Ok(rules) = self.kernel.rules().await {
                for r in rules {
                    let prio = r.attributes.iter().find_map(|a| match a {
                        RuleAttribute::Priority(p) => Some(*p),
                        _ => None,
                    });
                    if r.header.table == 255 && prio == Some(LOCAL_PRIO) {
                        if let Err(e) = self.kernel.del_rule_once(r).await {
                            failed.push(e.to_string());
                        }
                    }
                }
            }
            self.moved_local = false;
        }
        failed
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use pmip_wire::Ipv6Selector;

    fn a(s: &str) -> Ipv6Addr {
        s.parse().unwrap()
    }

    #[test]
    fn selectors_become_rules_where_ip_rule_can_say_them() {
        let exact = TrafficSelector::Ipv6(Ipv6Selector {
            start_src: Some(a("2001:db8:ff::1")),
            start_dst: Some(a("2001:db8:2::1")),
            start_dst_port: Some(5002),
            start_next_header: Some(17),
            ..Default::default()
        });
        assert_eq!(
            selector_match(&exact),
            Match::Rule {
                src: Some(Prefix::new(a("2001:db8:ff::1"), 128)),
                dst: Some(Prefix::new(a("2001:db8:2::1"), 128)),
                proto: Some(17),
                sport: None,
                dport: Some((5002, 5002)),
            }
        );
        let prefix = TrafficSelector::Ipv6(Ipv6Selector {
            start_dst: Some(a("2001:db8:1::")),
            end_dst: Some(a("2001:db8:1::ffff:ffff:ffff:ffff")),
            ..Default::default()
        });
        assert!(matches!(selector_match(&prefix), Match::Rule { dst: Some(p), .. } if p.prefix_len() == 64));
        let odd = TrafficSelector::Ipv6(Ipv6Selector {
            start_dst: Some(a("2001:db8:1::1")),
            end_dst: Some(a("2001:db8:1::5")),
            start_next_header: Some(6),
            end_next_header: Some(17),
            ..Default::default()
        });
        assert_eq!(selector_match(&odd), Match::Nft("ip6 daddr 2001:db8:1::1-2001:db8:1::5 meta l4proto 6-17 ".into()));
        let label = TrafficSelector::Ipv6(Ipv6Selector { start_flow_label: Some(7), ..Default::default() });
        assert_eq!(selector_match(&label), Match::Never);
    }
}
