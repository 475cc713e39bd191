//! The data plane, programmed from the core's intents; it runs as its own
//! task and the node sends it intents. Two datapaths implement the same
//! intents:
//!
//! - the kernel datapath ([`seg6`]): seg6 lightweight tunnels, or where
//!   the kernel lacks them two eBPF programs ([`bpf`]), write and read
//!   RFC 5213's IPv6-in-IPv6, policy rules carry the Flow Mobility Cache;
//!   chosen when a probe at start finds either tunnel and `nft`;
//! - the userspace datapath (below): a TUN device and an IPv6-in-IPv6 raw
//!   socket form the LMA–MAG tunnel, the LMA classifies downlink by the
//!   Flow Mobility Cache in userspace.
//!
//! `datapath` in the configuration (`auto`, `kernel`, `userspace`) picks
//! one; with `auto` the environment variable `PMIPLAB_DATAPATH` may force
//! either.

mod bpf;
mod genl;
pub(crate) mod nft;
mod seg6;

pub(crate) use seg6::{rule as rule_message, to_table};

use std::collections::BTreeMap;
use std::io;
use std::net::Ipv6Addr;

use pmip_proto::dataplane::{LmaPlane, MagPlane};
use pmip_proto::{FlowTarget, Intent, Prefix};
use serde::{Deserialize, Serialize};
use tokio::sync::{mpsc, oneshot};
use tracing::{debug, warn};

use crate::faults::{Action, Direction, Faults};
use crate::kernel::{enable_forwarding, link_local_of, Kernel};
use crate::packet::flow_key;
use crate::raw_socket::RawSocket;
use crate::tun::Tun;

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct DataPlaneConfig {
    /// Name of the TUN device.
    #[serde(default = "tun0")]
    pub tun: String,
    /// MTU of the TUN device: the core link's MTU less the 40-octet outer header.
    #[serde(default = "mtu")]
    pub mtu: u32,
    /// MAG: routing table that sends uplink from MN prefixes into the tunnel.
    #[serde(default = "table")]
    pub uplink_table: u32,
    /// Which datapath to run.
    #[serde(default)]
    pub datapath: Datapath,
}

/// The datapath a daemon runs.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Datapath {
    /// The kernel datapath if the probe at start finds what it needs, else
    /// the userspace one; `PMIPLAB_DATAPATH` may force either.
    #[default]
    Auto,
    Kernel,
    Userspace,
}

/// The environment variable that forces a datapath where the
/// configuration says `auto`.
pub const DATAPATH_ENV: &str = "PMIPLAB_DATAPATH";

impl Datapath {
    fn parse(s: &str) -> Option<Datapath> {
        match s {
            "auto" | "" => Some(Datapath::Auto),
            "kernel" => Some(Datapath::Kernel),
            "userspace" => Some(Datapath::Userspace),
            _ => None,
        }
    }

    /// The configured choice, or the environment's when it is `auto`.
    pub fn resolve(self) -> io::Result<Datapath> {
        if self != Datapath::Auto {
            return Ok(self);
        }
        match std::env::var(DATAPATH_ENV) {
            Err(_) => Ok(Datapath::Auto),
            Ok(v) => Datapath::parse(v.trim()).ok_or_else(|| {
                io::Error::new(
                    io::ErrorKind::InvalidInput,
                    format!("{DATAPATH_ENV}={v}: expected auto, kernel or userspace"),
                )
            }),
        }
    }
}

fn tun0() -> String {
    "tun0".into()
}
fn mtu() -> u32 {
    1460
}
fn table() -> u32 {
    100
}

/// How many more packets one wake-up of the TUN reader takes at most.
const TUN_BATCH: usize = 63;

#[derive(Debug, Clone, Copy)]
pub enum Side {
    Lma,
    Mag { lma: Ipv6Addr },
}

pub enum Update {
    /// An intent, with the link-layer identifier of the MN on each access link.
    Intent(Intent, BTreeMap<String, Vec<u8>>),
    State(oneshot::Sender<serde_json::Value>),
    /// Answered once every update before it is applied.
    Barrier(oneshot::Sender<()>),
    Shutdown(oneshot::Sender<Vec<String>>),
}

struct Plane {
    cfg: DataPlaneConfig,
    side: Side,
    tun: Tun,
    tunnel: RawSocket,
    kernel: Kernel,
    lma: LmaPlane,
    mag: MagPlane,
    /// Where each installed MAG route points, to remove it later.
    mag_routes: BTreeMap<Prefix, (String, Option<Ipv6Addr>)>,
    counters: BTreeMap<&'static str, u64>,
    faults: std::sync::Arc<std::sync::Mutex<Faults>>,
}

/// Picks the datapath (probing the kernel unless the userspace one is
/// forced), sets it up and starts its task.
pub async fn start(
    cfg: DataPlaneConfig,
    side: Side,
    local: Ipv6Addr,
    faults: std::sync::Arc<std::sync::Mutex<Faults>>,
) -> io::Result<mpsc::Sender<Update>> {
    let choice = cfg.datapath.resolve()?;
    if choice != Datapath::Userspace {
        let kernel = Kernel::new()?;
        match seg6::probe(&kernel, local).await {
            Ok(kind) => {
                match seg6::KernelPlane::start(kind, side, local, cfg.uplink_table, kernel, faults.clone()).await {
                    Ok(tx) => return Ok(tx),
                    Err(e) if choice == Datapath::Kernel => {
                        return Err(io::Error::new(e.kind(), format!("the kernel datapath could not start: {e}")))
                    }
                    Err(e) => {
                        warn!("the kernel datapath could not start ({e}); falling back to the userspace TUN datapath");
                        return start_userspace(cfg, side, local, faults).await;
                    }
                }
            }
            Err(why) if choice == Datapath::Kernel => {
                return Err(io::Error::other(format!("the kernel datapath was asked for but cannot run: {why}")))
            }
            Err(why) => warn!("the kernel datapath cannot run ({why}); falling back to the userspace TUN datapath"),
        }
    } else {
        tracing::info!("userspace TUN datapath, as configured ({DATAPATH_ENV} or datapath: userspace)");
    }
    start_userspace(cfg, side, local, faults).await
}

/// Sets up the TUN device, the tunnel socket and forwarding, and starts
/// the userspace data plane task.
async fn start_userspace(
    cfg: DataPlaneConfig,
    side: Side,
    local: Ipv6Addr,
    faults: std::sync::Arc<std::sync::Mutex<Faults>>,
) -> io::Result<mpsc::Sender<Update>> {
    enable_forwarding()?;
    let tun = Tun::open(&cfg.tun)?;
    let mut kernel = Kernel::new()?;
    // A kernel datapath that ran here before left its nftables table.
    if let Ok(true) = nft::delete_table(seg6::NFT_TABLE).await {
        tracing::info!("removed the nftables table a previous daemon left");
    }
    // A daemon killed before it could clean up left its routes and rules:
    // a restart starts from a clean kernel, as from a clean state.
    let swept = kernel.sweep_leftovers().await?;
    if swept > 0 {
        tracing::info!("removed {swept} routes and rules a previous daemon left");
    }
    kernel.up(&cfg.tun, Some(cfg.mtu)).await?;
    let tunnel = RawSocket::ip6_in_ip6(local)?;
    if let Side::Mag { .. } = side {
        kernel.add_route(Prefix::new(Ipv6Addr::UNSPECIFIED, 0), &cfg.tun, None, cfg.uplink_table).await?;
    }
    let (tx, rx) = mpsc::channel(256);
    let plane = Plane {
        cfg,
        side,
        tun,
        tunnel,
        kernel,
        lma: LmaPlane::default(),
        mag: MagPlane::default(),
        mag_routes: BTreeMap::new(),
        counters: BTreeMap::new(),
        faults,
    };
    tokio::spawn(plane.run(rx));
    Ok(tx)
}

impl Plane {
    /// How many copies a data-packet fault rule lets through (0, 1 or 2).
    fn copies(&mut self, dir: Direction) -> usize {
        let action = self.faults.lock().ok().and_then(|mut f| f.check(dir, None));
        match action {
            Some(Action::Drop) => {
                self.count("dropped: fault rule");
                0
            }
            Some(Action::Duplicate) => 2,
            _ => 1,
        }
    }

    fn count(&mut self, what: &'static str) {
        *self.counters.entry(what).or_default() += 1;
    }

    async fn run(mut self, mut rx: mpsc::Receiver<Update>) {
        let mut buf = vec![0u8; 65536];
        loop {
            tokio::select! {
                r = self.tun.read(&mut buf) => match r {
                    Ok(n) => {
                        self.on_tun_packet(&buf[..n]).await;
                        // Drain what else is waiting before the next select:
                        // one wake-up per batch, not per packet.
                        for _ in 0..TUN_BATCH {
                            match self.tun.try_read(&mut buf) {
                                Ok(Some(n)) => self.on_tun_packet(&buf[..n]).await,
                                Ok(None) => break,
                                Err(e) => {
                                    warn!("reading the TUN device failed: {e}");
                                    break;
                                }
                            }
                        }
                    }
                    Err(e) => warn!("reading the TUN device failed: {e}"),
                },
                r = self.tunnel.recv() => match r {
                    Ok((inner, src)) => self.on_tunnel_packet(&inner, src).await,
                    Err(e) => warn!("receiving on the tunnel socket failed: {e}"),
                },
                u = rx.recv() => match u {
                    Some(Update::Intent(i, ll)) => self.on_intent(i, &ll).await,
                    Some(Update::Barrier(done)) => {
                        let _ = done.send(());
                    }
                    Some(Update::State(reply)) => {
                        let (routes, rules) = self.kernel.read_back().await.unwrap_or_else(|e| (vec![format!("cannot read routes back: {e}")], vec![]));
                        let _ = reply.send(serde_json::json!({
                            "datapath": "userspace",
                            "counters": self.counters,
                            "installed": self.kernel.installed(),
                            "kernel_routes": routes,
                            "kernel_rules": rules,
                        }));
                    }
                    Some(Update::Shutdown(done)) => {
                        let failed = self.kernel.cleanup().await;
                        let _ = done.send(failed);
                        return;
                    }
                    None => {
                        self.kernel.cleanup().await;
                        return;
                    }
                },
            }
        }
    }

    /// A packet the kernel routed into the tunnel: downlink at the LMA,
    /// uplink at a MAG.
    async fn on_tun_packet(&mut self, pkt: &[u8]) {
        let peer = match self.side {
            Side::Lma => {
                let Some(key) = flow_key(pkt) else {
                    self.count("dropped: not IPv6");
                    return;
                };
                match self.lma.classify(&key) {
                    Some(FlowTarget::Forward(mag)) if self.lma.tunnels.contains(&mag) => mag,
                    Some(FlowTarget::Forward(_)) => return self.count("dropped: no tunnel to the bound MAG"),
                    Some(FlowTarget::Drop) => return self.count("dropped: flow binding says drop"),
                    None => return self.count("dropped: no binding for the destination"),
                }
            }
            Side::Mag { lma } => {
                if !self.mag.tunnel {
                    return self.count("dropped: no tunnel to the LMA");
                }
                lma
            }
        };
        for _ in 0..self.copies(Direction::Out) {
            match self.tunnel.send_to(pkt, peer).await {
                Ok(()) => self.count("encapsulated"),
                Err(e) => {
                    debug!("encapsulating to {peer} failed: {e}");
                    self.count("dropped: tunnel send failed");
                }
            }
        }
    }

    /// A packet out of the tunnel: uplink at the LMA, downlink at a MAG.
    async fn on_tunnel_packet(&mut self, inner: &[u8], src: Ipv6Addr) {
        let ok = match self.side {
            Side::Lma => self.lma.tunnels.contains(&src),
            Side::Mag { lma } => src == lma,
        };
        if !ok {
            return self.count("dropped: tunnel packet from a stranger");
        }
        for _ in 0..self.copies(Direction::In) {
            match self.tun.write(inner).await {
                Ok(()) => self.count("decapsulated"),
                Err(e) => {
                    debug!("writing to the TUN device failed: {e}");
                    self.count("dropped: TUN write failed");
                }
            }
        }
    }

    async fn on_intent(&mut self, i: Intent, ll_ids: &BTreeMap<String, Vec<u8>>) {
        self.lma.apply(&i);
        self.mag.apply(&i);
        let tun = self.cfg.tun.clone();
        let table = self.cfg.uplink_table;
        let r = match &i {
            Intent::LmaPrefixRoute { prefix, up: true, .. } => self.kernel.add_route(*prefix, &tun, None, 254).await,
            Intent::LmaPrefixRoute { prefix, up: false, .. } => {
                if self.lma.routes.contains_key(prefix) {
                    Ok(())
                } else {
                    self.kernel.del_route(*prefix, &tun, None, 254).await
                }
            }
            Intent::MagRoute { prefix, iface, up: true } => {
                // The MN's link-local, from its link-layer identifier: the
                // MAG knows it from attachment (RFC 5213 §6.9.1.1).
                let via = ll_ids.get(iface).and_then(|m| link_local_of(m));
                let r = self.kernel.add_route(*prefix, iface, via, 254).await;
                self.mag_routes.insert(*prefix, (iface.clone(), via));
                r
            }
            Intent::MagRoute { prefix, up: false, .. } => match self.mag_routes.remove(prefix) {
                Some((dev, via)) => self.kernel.del_route(*prefix, &dev, via, 254).await,
                None => Ok(()),
            },
            Intent::MagUplinkRule { prefix, up: true } => self.kernel.add_rule(*prefix, table).await,
            Intent::MagUplinkRule { prefix, up: false } => self.kernel.del_rule(*prefix, table).await,
            _ => Ok(()),
        };
        if let Err(e) = r {
            warn!("applying {i:?} failed: {e}");
            self.count("intents that failed");
        }
    }
}
