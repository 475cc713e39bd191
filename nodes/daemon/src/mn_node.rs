//! The MN daemon: the logical interface of the flow mobility draft (§6).
//! The daemon solicits and takes RAs and answers neighbour solicitations
//! for the MN's addresses through packet sockets on the physical
//! interfaces, and watches every probe arrive or leave there. Each uplink
//! packet leaves by the interface where its flow's downlink last arrived;
//! who moves the packets depends on the datapath:
//!
//! - kernel ([`crate::mn_kernel`]): the addresses are on `lo`, the kernel
//!   delivers downlink from any interface and steers uplink by conntrack
//!   marks and policy rules;
//! - userspace: a TUN device `lif` holds the addresses, the daemon writes
//!   downlink into it and sends what it reads out of the right interface.

use std::collections::BTreeMap;
use std::net::Ipv6Addr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use pmip_proto::mn::{Mn, MnConfig, MnInput};
use pmip_proto::{Instant, Intent, Output, Prefix};
use tokio::net::UnixListener;
use tokio::sync::mpsc;
use tracing::{debug, info, warn};

use crate::control::{Reply, Request};
use crate::data_plane::{Datapath, DATAPATH_ENV};
use crate::kernel::{disable_ipv6, link_local_of, Kernel};
use crate::mn_kernel::KernelLif;
use crate::nd::{self, Nd};
use crate::node::{accept_loop, ControlMsg};
use crate::packet::flow_key;
use crate::packet_socket::PacketSocket;
use crate::probe::{now_us, spawn_sender, udp_packet, FlowSpec, FlowStats, Probe, MAGIC_WORD as PROBE_MAGIC};
use crate::tun::Tun;

const LIF: &str = "lif";

/// A classic BPF program that passes only IPv6 frames carrying ICMPv6
/// (next header 58 at offset 20: RAs, neighbour solicitations) or a probe
/// (the magic "PMIP" right after a UDP header, offset 62, or after a
/// 20-octet TCP header, offset 74), arriving or leaving.
const ND_AND_PROBES: [libc::sock_filter; 12] = [
    libc::sock_filter { code: 0x28, jt: 0, jf: 0, k: 12 }, // ldh [12]
    libc::sock_filter { code: 0x15, jt: 0, jf: 9, k: 0x86dd }, // jeq IPv6, else drop
    libc::sock_filter { code: 0x30, jt: 0, jf: 0, k: 20 }, // ldb [20]
    libc::sock_filter { code: 0x15, jt: 6, jf: 0, k: 58 }, // jeq ICMPv6: accept
    libc::sock_filter { code: 0x15, jt: 0, jf: 2, k: 17 }, // jeq UDP, else try TCP
    libc::sock_filter { code: 0x20, jt: 0, jf: 0, k: 62 }, // ld [62]
    libc::sock_filter { code: 0x15, jt: 3, jf: 4, k: PROBE_MAGIC }, // jeq magic: accept, else drop
    libc::sock_filter { code: 0x15, jt: 0, jf: 3, k: 6 },  // jeq TCP, else drop
    libc::sock_filter { code: 0x20, jt: 0, jf: 0, k: 74 }, // ld [74]
    libc::sock_filter { code: 0x15, jt: 0, jf: 1, k: PROBE_MAGIC }, // jeq magic: accept, else drop
    libc::sock_filter { code: 0x06, jt: 0, jf: 0, k: 0x0004_0000 }, // accept
    libc::sock_filter { code: 0x06, jt: 0, jf: 0, k: 0 },  // drop
];

struct Phys {
    name: String,
    mac: [u8; 6],
    link_local: Ipv6Addr,
    sock: Arc<PacketSocket>,
    router_mac: Option<[u8; 6]>,
    solicitations: u32,
    carrier: bool,
}

pub struct MnNode {
    mn: Mn,
    started: std::time::Instant,
    /// The userspace logical interface; `None` on the kernel datapath.
    lif: Option<Tun>,
    /// The kernel logical interface; `None` on the userspace datapath.
    klif: Option<KernelLif>,
    /// Raw UDP sockets the kernel datapath sends uplink probes from, one
    /// per source address.
    probe_sockets: BTreeMap<Ipv6Addr, socket2::Socket>,
    kernel: Kernel,
    phys: Vec<Phys>,
    counters: BTreeMap<String, u64>,
    events: Vec<String>,
    links: Option<mpsc::Receiver<(String, bool)>>,
    /// Probe flows received, by flow id.
    probes: BTreeMap<u16, FlowStats>,
    sent: BTreeMap<u16, u64>,
    senders: BTreeMap<u16, tokio::task::JoinHandle<()>>,
    uplink_tx: mpsc::Sender<(u16, Vec<u8>)>,
    uplink_rx: Option<mpsc::Receiver<(u16, Vec<u8>)>>,
    /// Per probe flow sent uplink, the interfaces it left on, in the order
    /// it first left on each, with counts.
    left_on: BTreeMap<u16, Vec<(String, u64)>>,
}

impl MnNode {
    /// An MN on `datapath` (the configuration's `data_plane.datapath`;
    /// with `auto`, `PMIPLAB_DATAPATH` may force one).
    pub async fn new(config: MnConfig, datapath: Datapath) -> anyhow::Result<MnNode> {
        let mut kernel = Kernel::new()?;
        let klif = match datapath.resolve()? {
            Datapath::Userspace => {
                info!("userspace logical interface, as configured ({DATAPATH_ENV} or datapath: userspace)");
                None
            }
            forced => match KernelLif::start(&mut kernel, &config.interfaces, &config.uplink_preference).await {
                Ok(k) => {
                    info!("kernel logical interface: addresses on lo, uplink steered by conntrack marks");
                    Some(k)
                }
                Err(why) if forced == Datapath::Kernel => {
                    anyhow::bail!("the kernel logical interface was asked for but cannot run: {why}")
                }
                Err(why) => {
                    warn!("the kernel logical interface cannot run ({why}); falling back to the userspace one");
                    for e in kernel.cleanup().await {
                        warn!("undoing the kernel logical interface: {e}");
                    }
                    None
                }
            },
        };
        let kernel_lif = klif.is_some();
        let mut phys = Vec::new();
        for name in &config.interfaces {
            // The link's state is the harness's to set: up is attachment.
            if !kernel_lif {
                disable_ipv6(name)?;
            }
            let mac = kernel.mac(name).await?;
            let index = kernel.index(name).await?;
            // On the kernel datapath the daemon moves no packet: it needs
            // neighbour discovery and the probes, and every other frame
            // copied to it would cost the MN a wake-up.
            let sock = Arc::new(if kernel_lif {
                PacketSocket::open_filtered(index, libc::ETH_P_ALL as u16, &ND_AND_PROBES)?
            } else {
                PacketSocket::open(index)?
            });
            let link_local = link_local_of(&mac).context("a 6-octet MAC")?;
            phys.push(Phys {
                name: name.clone(),
                mac,
                link_local,
                sock,
                router_mac: None,
                solicitations: 0,
                carrier: false,
            });
        }
        let (carrier, links) = crate::link_watch::watch(config.interfaces.clone()).await?;
        for p in &mut phys {
            p.carrier = carrier.get(&p.name).copied().unwrap_or(false);
        }
        let lif = if kernel_lif {
            None
        } else {
            let lif = Tun::open(LIF)?;
            // Room for the 40-octet outer header the LMA–MAG tunnel adds.
            kernel.up(LIF, Some(1460)).await?;
            kernel.add_route(Prefix::new(Ipv6Addr::UNSPECIFIED, 0), LIF, None, 254).await?;
            Some(lif)
        };
        let (uplink_tx, uplink_rx) = mpsc::channel(1024);
        let mut mn = Mn::new(config);
        let mut events = Vec::new();
        for p in phys.iter().filter(|p| p.carrier) {
            events.extend(
                mn.handle(Instant::ZERO, MnInput::LinkUp { iface: p.name.clone() })
                    .events
                    .iter()
                    .map(|e| e.to_string()),
            );
        }
        Ok(MnNode {
            mn,
            started: std::time::Instant::now(),
            lif,
            klif,
            probe_sockets: BTreeMap::new(),
            kernel,
            phys,
            counters: BTreeMap::new(),
            events,
            links: Some(links),
            probes: BTreeMap::new(),
            sent: BTreeMap::new(),
            senders: BTreeMap::new(),
            uplink_tx,
            uplink_rx: Some(uplink_rx),
            left_on: BTreeMap::new(),
        })
    }

    fn now(&self) -> Instant {
        Instant(self.started.elapsed().as_micros() as u64)
    }

    fn count(&mut self, what: impl Into<String>) {
        *self.counters.entry(what.into()).or_default() += 1;
    }

    /// The device holding the MN's addresses.
    fn holder(&self) -> &'static str {
        if self.klif.is_some() {
            "lo"
        } else {
            LIF
        }
    }

    async fn apply(&mut self, out: Output) {
        self.events.extend(out.events.iter().map(|e| e.to_string()));
        let holder = self.holder();
        for i in out.intents {
            let r = match i {
                Intent::MnAddress { addr, up: true } => self.kernel.add_address(holder, addr, 128).await,
                Intent::MnAddress { addr, up: false } => {
                    self.probe_sockets.remove(&addr);
                    self.kernel.del_address(holder, addr).await
                }
                _ => Ok(()),
            };
            if let Err(e) = r {
                warn!("{e}");
                self.events.push(e.to_string());
            }
        }
    }

    /// The kernel's source rules say what the core's interfaces say now.
    /// Called after RAs and link changes, the only inputs that move a
    /// prefix between interfaces (a prefix can move with the address
    /// staying), not for each downlink packet.
    async fn sync_sources(&mut self) {
        if let Some(k) = self.klif.as_mut() {
            if let Err(e) = k.sync_sources(&mut self.kernel, &self.mn.state()).await {
                warn!("{e}");
                self.events.push(e.to_string());
            }
        }
    }

    async fn solicit(&mut self) {
        for p in self.phys.iter_mut().filter(|p| p.carrier && p.router_mac.is_none() && p.solicitations < 10) {
            p.solicitations += 1;
            let pkt = nd::icmpv6(p.link_local, nd::ALL_ROUTERS, nd::router_solicitation(p.mac));
            let frame = nd::ethernet(nd::multicast_mac(nd::ALL_ROUTERS), p.mac, &pkt);
            if let Err(e) = p.sock.send(&frame).await {
                warn!("sending an RS on {} failed: {e}", p.name);
            }
        }
    }

    /// A physical interface gained or lost its link: solicit a router at
    /// once, or forget the prefixes learnt on it.
    async fn on_link(&mut self, name: String, up: bool) {
        let Some(p) = self.phys.iter_mut().find(|p| p.name == name) else {
            return;
        };
        p.carrier = up;
        p.router_mac = None;
        p.solicitations = 0;
        let now = self.now();
        let input =
            if up { MnInput::LinkUp { iface: name.clone() } } else { MnInput::LinkDown { iface: name.clone() } };
        let out = self.mn.handle(now, input);
        self.apply(out).await;
        self.sync_sources().await;
        if !up {
            if let Some(k) = self.klif.as_mut() {
                if let Err(e) = k.link_down(&mut self.kernel, &name).await {
                    warn!("{e}");
                }
            }
        }
        if up {
            self.solicit().await;
        }
    }

    async fn on_frame(&mut self, i: usize, frame: &[u8], outgoing: bool) {
        if frame.len() < 54 || u16::from_be_bytes([frame[12], frame[13]]) != nd::ETH_P_IPV6 {
            return;
        }
        if outgoing {
            self.on_leaving(i, &frame[14..]);
            return;
        }
        let (dst_mac, src_mac) = (&frame[0..6], <[u8; 6]>::try_from(&frame[6..12]).unwrap_or_default());
        if dst_mac != self.phys[i].mac && dst_mac[0] & 1 == 0 {
            return;
        }
        let pkt = &frame[14..];
        let Some(key) = flow_key(pkt) else { return };
        let name = self.phys[i].name.clone();
        if key.next_header == nd::ICMPV6 {
            match nd::parse(&pkt[40..]) {
                Nd::Ra { prefixes, router_mac } => {
                    if !self.valid_ra(&name, pkt) {
                        return;
                    }
                    let mac = router_mac.unwrap_or(src_mac);
                    self.phys[i].router_mac = Some(mac);
                    let now = self.now();
                    let out = self.mn.handle(now, MnInput::RouterAdvertisement { iface: name.clone(), prefixes });
                    self.apply(out).await;
                    self.sync_sources().await;
                    if let Some(k) = self.klif.as_mut() {
                        // The RA's source is the router's link-local address (RFC 4861 §6.1.2).
                        if let Err(e) = k.router(&mut self.kernel, &name, key.src, mac).await {
                            warn!("{e}");
                            self.events.push(e.to_string());
                        }
                    }
                    // Counted once applied: the harness waits on it to know an RA took effect.
                    self.count(format!("RA taken on {name}"));
                    return;
                }
                Nd::Ns { target } => {
                    // On the kernel datapath the kernel answers for the
                    // link-local address, which it holds; the MN's addresses
                    // on lo it answers for on no interface.
                    let link_local = target == self.phys[i].link_local && self.klif.is_none();
                    let ours = link_local || self.mn.addresses().contains(&target);
                    if ours {
                        let p = &self.phys[i];
                        let dst = if key.src.is_unspecified() { nd::ALL_NODES } else { key.src };
                        let na = nd::icmpv6(
                            target,
                            dst,
                            nd::neighbour_advertisement(target, p.mac, !key.src.is_unspecified()),
                        );
                        let frame = nd::ethernet(src_mac, p.mac, &na);
                        if let Err(e) = p.sock.send(&frame).await {
                            warn!("sending an NA on {} failed: {e}", p.name);
                        }
                    }
                    return;
                }
                Nd::Rs { .. } | Nd::Other => {
                    if key.dst.segments()[0] & 0xff00 == 0xff00 || key.dst == self.phys[i].link_local {
                        return;
                    }
                }
            }
        }
        if !self.mn.addresses().contains(&key.dst) {
            self.count(format!("ignored on {name}: not for this MN"));
            return;
        }
        let now = self.now();
        let out = self.mn.handle(now, MnInput::Downlink { iface: name.clone(), flow: key });
        self.apply(out).await;
        if let Some(p) = Probe::in_packet(pkt) {
            // A probe is test traffic for this daemon: it is taken here, as
            // a listening socket would take it, so the MN's kernel does not
            // answer it with a Port Unreachable or a RST.
            self.probes.entry(p.flow).or_default().record(&p, &name, now_us());
            self.count(format!("probe taken on {name}"));
            return;
        }
        match &self.lif {
            Some(lif) => match lif.write(pkt).await {
                Ok(()) => self.count(format!("downlink on {name}")),
                Err(e) => debug!("writing into lif failed: {e}"),
            },
            // The kernel takes it from the wire itself.
            None => self.count(format!("downlink on {name}")),
        }
    }

    /// A frame that left by physical interface `i`: on the kernel datapath,
    /// where the kernel chose the interface, uplink from the MN's addresses
    /// is counted by the interface it was seen leaving on, and probes by
    /// their flow too.
    fn on_leaving(&mut self, i: usize, pkt: &[u8]) {
        if self.klif.is_none() {
            return;
        }
        let Some(key) = flow_key(pkt) else { return };
        if !self.mn.addresses().contains(&key.src) {
            return;
        }
        let name = self.phys[i].name.clone();
        self.count(format!("uplink via {name}"));
        if let Some(p) = Probe::in_packet(pkt) {
            note_left_on(&mut self.left_on, p.flow, name);
        }
    }

    /// RFC 4861 §6.1.2: an RA counts only with hop limit 255, a valid
    /// ICMPv6 checksum and a link-local source; others are counted by
    /// reason and dropped.
    fn valid_ra(&mut self, iface: &str, pkt: &[u8]) -> bool {
        match nd::invalid_router_packet(pkt) {
            None => true,
            Some(why) => {
                self.count(format!("RA refused on {iface}: {why}"));
                false
            }
        }
    }

    /// Sends an uplink packet out of the interface its flow uses; says
    /// which one it left on.
    async fn on_uplink(&mut self, pkt: &[u8]) -> Option<String> {
        let key = flow_key(pkt)?;
        if key.dst.is_multicast() || key.dst.segments()[0] & 0xffc0 == 0xfe80 {
            return None;
        }
        let Some(name) = self.mn.uplink_interface(&key).map(str::to_string) else {
            self.count("uplink dropped: no interface up");
            return None;
        };
        let p = self.phys.iter().find(|p| p.name == name)?;
        let Some(router) = p.router_mac else {
            self.count(format!("uplink dropped: no router yet on {name}"));
            return None;
        };
        let frame = nd::ethernet(router, p.mac, pkt);
        let sock = p.sock.clone();
        match sock.send(&frame).await {
            Ok(()) => {
                self.count(format!("uplink via {name}"));
                Some(name)
            }
            Err(e) => {
                warn!("sending uplink on {name} failed: {e}");
                None
            }
        }
    }

    /// Uplink probes from one of the MN's addresses, sent the way any
    /// uplink from `lif` goes.
    fn start_flow(&mut self, spec: FlowSpec) -> Reply {
        let FlowSpec { flow, src, dst, sport, dport, rate_pps: rate, .. } = spec;
        if !self.mn.addresses().contains(&src) {
            return Reply::error(format!("flow {flow}: {src} is not an address of this MN's logical interface"));
        }
        if rate == 0 {
            return Reply::error(format!("flow {flow}: rate_pps must be at least 1"));
        }
        if let Some(t) = self.senders.remove(&flow) {
            t.abort();
        }
        let tx = self.uplink_tx.clone();
        let sender = spawn_sender(spec, move |p| {
            let tx = tx.clone();
            async move { tx.send((flow, udp_packet(src, dst, sport, dport, &p.to_bytes()))).await.is_ok() }
        });
        self.senders.insert(flow, sender);
        Reply::ok()
    }

    fn state(&self) -> serde_json::Value {
        let routers: BTreeMap<&str, Option<String>> = self
            .phys
            .iter()
            .map(|p| {
                (
                    p.name.as_str(),
                    p.router_mac.map(|m| m.iter().map(|b| format!("{b:02x}")).collect::<Vec<_>>().join(":")),
                )
            })
            .collect();
        serde_json::json!({
            "datapath": if self.klif.is_some() { "kernel" } else { "userspace" },
            "tables": self.mn.state(),
            "routers": routers,
            "counters": self.counters,
            "probes": self.probes.iter().map(|(f, s)| (f.to_string(), serde_json::json!({ "stats": s, "lost": s.lost() }))).collect::<BTreeMap<_, _>>(),
            "sent": self.sent,
            "left_on": self.left_on,
            "events": self.events,
        })
    }

    pub async fn run(mut self, control: &Path) -> anyhow::Result<()> {
        let _ = std::fs::remove_file(control);
        let listener = UnixListener::bind(control).with_context(|| format!("control socket {}", control.display()))?;
        std::fs::set_permissions(control, std::os::unix::fs::PermissionsExt::from_mode(0o600))?;
        let (ctl_tx, mut ctl_rx) = mpsc::channel::<ControlMsg>(64);
        tokio::spawn(accept_loop(listener, ctl_tx));
        let (frames_tx, mut frames) = mpsc::channel::<(usize, Vec<u8>, bool)>(1024);
        for (i, p) in self.phys.iter().enumerate() {
            let (sock, tx) = (p.sock.clone(), frames_tx.clone());
            tokio::spawn(async move {
                let mut buf = vec![0u8; 65536];
                loop {
                    match sock.recv_either(&mut buf).await {
                        Ok((n, outgoing)) => {
                            if tx.send((i, buf[..n].to_vec(), outgoing)).await.is_err() {
                                break;
                            }
                        }
                        // The ENETDOWN a packet socket keeps when its link
                        // goes down is reported once: keep listening.
                        Err(_) => tokio::time::sleep(Duration::from_millis(5)).await,
                    }
                }
            });
        }
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
        let mut rs_timer = tokio::time::interval(Duration::from_secs(1));
        let mut buf = vec![0u8; 65536];
        let mut links = self.links.take().unwrap_or_else(|| mpsc::channel(1).1);
        let mut uplink_rx = self.uplink_rx.take().unwrap_or_else(|| mpsc::channel(1).1);
        info!("MN up with interfaces {:?}", self.phys.iter().map(|p| &p.name).collect::<Vec<_>>());
        loop {
            tokio::select! {
                _ = rs_timer.tick() => self.solicit().await,
                Some((name, up)) = links.recv() => self.on_link(name, up).await,
                Some((flow, pkt)) = uplink_rx.recv() => {
                    if self.klif.is_some() {
                        if self.send_by_kernel(&pkt) {
                            *self.sent.entry(flow).or_default() += 1;
                        }
                    } else {
                        *self.sent.entry(flow).or_default() += 1;
                        if let Some(iface) = self.on_uplink(&pkt).await {
                            note_left_on(&mut self.left_on, flow, iface);
                        }
                    }
                }
                Some((i, f, outgoing)) = frames.recv() => self.on_frame(i, &f, outgoing).await,
                r = read_lif(self.lif.as_ref(), &mut buf) => if let Ok(n) = r {
                    let pkt = buf[..n].to_vec();
                    self.on_uplink(&pkt).await;
                },
                Some((req, reply)) = ctl_rx.recv() => {
                    let r = match req {
                        Request::Ready => Reply::ok(),
                        Request::State => Reply::state(self.state()),
                        Request::Tables => Reply::state(self.state()["tables"].clone()),
                        Request::FlowStart(spec) => self.start_flow(spec),
                        Request::FlowStop { flow } => {
                            if let Some(t) = self.senders.remove(&flow) { t.abort(); }
                            Reply::ok()
                        }
                        Request::Shutdown => { let _ = reply.send(Reply::ok()); break; }
                        _ => Reply::error("an MN takes only ready, state and shutdown"),
                    };
                    let _ = reply.send(r);
                },
                _ = term.recv() => break,
            }
        }
        if let Some(k) = &self.klif {
            if let Err(e) = k.stop().await {
                warn!("cleanup: {e}");
            }
            for a in self.mn.addresses() {
                if let Err(e) = self.kernel.del_address("lo", a).await {
                    warn!("cleanup: {e}");
                }
            }
        }
        for e in self.kernel.cleanup().await {
            warn!("cleanup: {e}");
        }
        let _ = std::fs::remove_file(control);
        crate::control::shutdown_answered().await;
        Ok(())
    }

    /// Sends an uplink probe packet through the kernel, from a raw socket
    /// bound to its source address, so that the source rules and the
    /// conntrack marks choose its interface as they do for any socket.
    fn send_by_kernel(&mut self, pkt: &[u8]) -> bool {
        let Some(key) = flow_key(pkt) else { return false };
        let sock = match self.probe_sockets.entry(key.src) {
            std::collections::btree_map::Entry::Occupied(o) => o.into_mut(),
            std::collections::btree_map::Entry::Vacant(v) => match probe_socket(key.src) {
                Ok(s) => v.insert(s),
                Err(e) => {
                    warn!("{e}");
                    self.count("uplink dropped: no socket");
                    return false;
                }
            },
        };
        let to = socket2::SockAddr::from(std::net::SocketAddrV6::new(key.dst, 0, 0, 0));
        // The datagram as built, checksum included: the header after the 40-octet IPv6 one.
        match sock.send_to(&pkt[40..], &to) {
            Ok(_) => true,
            Err(e) => {
                debug!("sending an uplink probe failed: {e}");
                self.count("uplink dropped: send failed");
                false
            }
        }
    }
}

/// A raw UDP socket bound to `src`; what it sends carries its own checksum.
fn probe_socket(src: Ipv6Addr) -> anyhow::Result<socket2::Socket> {
    use socket2::{Domain, Protocol, SockAddr, Socket, Type};
    let s = Socket::new(Domain::IPV6, Type::RAW, Some(Protocol::UDP)).context("a raw UDP socket")?;
    s.bind(&SockAddr::from(std::net::SocketAddrV6::new(src, 0, 0, 0)))
        .with_context(|| format!("binding a raw UDP socket to {src}"))?;
    s.set_nonblocking(true)?;
    Ok(s)
}

fn note_left_on(left_on: &mut BTreeMap<u16, Vec<(String, u64)>>, flow: u16, iface: String) {
    let left = left_on.entry(flow).or_default();
    match left.iter_mut().find(|(i, _)| *i == iface) {
        Some((_, n)) => *n += 1,
        None => left.push((iface, 1)),
    }
}

/// Reads the userspace logical interface; never ready without one.
async fn read_lif(lif: Option<&Tun>, buf: &mut [u8]) -> std::io::Result<usize> {
    match lif {
        Some(l) => l.read(buf).await,
        None => std::future::pending().await,
    }
}
