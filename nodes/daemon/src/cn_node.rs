//! The CN: a traffic source and sink. It sends probe flows to the MN and
//! counts the uplink it gets back, per flow.

use std::collections::BTreeMap;
use std::net::{Ipv6Addr, SocketAddr, SocketAddrV6};
use std::path::Path;
use std::sync::{Arc, Mutex};

use anyhow::Context;
use tokio::net::{UdpSocket, UnixListener};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tracing::{info, warn};

use crate::control::{Reply, Request};
use crate::node::{accept_loop, ControlMsg};
use crate::probe::{now_us, spawn_sender, FlowSpec, FlowStats, Probe};

#[derive(Default)]
struct Counters {
    sent: BTreeMap<u16, u64>,
    received: BTreeMap<u16, FlowStats>,
}

pub struct CnNode {
    address: Ipv6Addr,
    counters: Arc<Mutex<Counters>>,
    senders: BTreeMap<u16, JoinHandle<()>>,
    /// One socket per local port, shared by the flows that use it; its
    /// task counts what arrives.
    sockets: BTreeMap<(Ipv6Addr, u16), (Arc<UdpSocket>, JoinHandle<()>)>,
    /// Probes are counted from a raw UDP socket, whatever their port:
    /// an uplink-only flow has no socket the CN sent from.
    raw_counting: bool,
}

impl CnNode {
    pub fn new(address: Ipv6Addr) -> CnNode {
        CnNode {
            address,
            counters: Arc::default(),
            senders: BTreeMap::new(),
            sockets: BTreeMap::new(),
            raw_counting: false,
        }
    }

    /// A socket on the flow's source port: it sends the flow and receives
    /// the MN's answers to it.
    async fn start(&mut self, spec: FlowSpec) -> anyhow::Result<()> {
        let FlowSpec { flow, src, dst, sport, dport, rate_pps: rate, .. } = spec;
        if src != self.address {
            anyhow::bail!("flow {flow}: the CN sends from {}, not {src}", self.address);
        }
        if rate == 0 {
            anyhow::bail!("flow {flow}: rate_pps must be at least 1");
        }
        self.stop(flow);
        if spec.proto.unwrap_or(17) == 6 {
            return self.start_tcp(spec);
        }
        let sock = self.socket(src, sport).await?;
        let counters = self.counters.clone();
        let to = SocketAddr::V6(SocketAddrV6::new(dst, dport, 0, 0));
        let sender = spawn_sender(spec, move |p| {
            let (sock, counters) = (sock.clone(), counters.clone());
            async move {
                if sock.send_to(&p.to_bytes(), to).await.is_ok() {
                    count_sent(&counters, p.flow);
                }
                true
            }
        });
        self.senders.insert(flow, sender);
        Ok(())
    }

    fn start_tcp(&mut self, spec: FlowSpec) -> anyhow::Result<()> {
        use socket2::{Domain, Protocol, SockAddr, Socket, Type};
        let s = Socket::new(Domain::IPV6, Type::RAW, Some(Protocol::TCP)).context("a raw TCP socket")?;
        crate::raw_socket::kernel_checksum_at(&s, 16).context("the raw TCP socket")?;
        s.bind(&SockAddr::from(SocketAddrV6::new(spec.src, 0, 0, 0))).context("binding the raw TCP socket")?;
        let to = SockAddr::from(SocketAddrV6::new(spec.dst, 0, 0, 0));
        let counters = self.counters.clone();
        let (sport, dport) = (spec.sport, spec.dport);
        // A raw socket's send does not wait for anything: it can go from
        // the runtime's thread.
        let sender = spawn_sender(spec, move |p| {
            let mut seg = crate::probe::tcp_header(sport, dport, p.seq).to_vec();
            seg.extend_from_slice(&p.to_bytes());
            if s.send_to(&seg, &to).is_ok() {
                count_sent(&counters, p.flow);
            }
            std::future::ready(true)
        });
        self.senders.insert(spec.flow, sender);
        Ok(())
    }

    /// The socket of a local port, opened (with its counting task) on first use.
    async fn socket(&mut self, src: Ipv6Addr, sport: u16) -> anyhow::Result<Arc<UdpSocket>> {
        if let Some((s, _)) = self.sockets.get(&(src, sport)) {
            return Ok(s.clone());
        }
        let sock = Arc::new(
            UdpSocket::bind(SocketAddrV6::new(src, sport, 0, 0))
                .await
                .with_context(|| format!("binding [{src}]:{sport}"))?,
        );
        let (rx_sock, counters) = (sock.clone(), self.counters.clone());
        // With the raw socket counting, this one only keeps the port open
        // (so the kernel does not answer Port Unreachable) and is drained.
        let count = !self.raw_counting;
        let task = tokio::spawn(async move {
            let mut buf = [0u8; 2048];
            while let Ok((n, _)) = rx_sock.recv_from(&mut buf).await {
                if !count {
                    continue;
                }
                if let Some(p) = Probe::parse(&buf[..n]) {
                    if let Ok(mut c) = counters.lock() {
                        c.received.entry(p.flow).or_default().record(&p, "cn", now_us());
                    }
                }
            }
        });
        self.sockets.insert((src, sport), (sock.clone(), task));
        Ok(sock)
    }

    /// Counts every UDP probe to the CN's address from a raw socket, on a
    /// thread of its own, and asks for a socket on each new port seen.
    fn count_all_ports(&mut self, ports: mpsc::Sender<u16>) -> anyhow::Result<()> {
        use socket2::{Domain, Protocol, SockAddr, Socket, Type};
        use std::io::Read;
        let s = Socket::new(Domain::IPV6, Type::RAW, Some(Protocol::UDP)).context("a raw UDP socket")?;
        s.bind(&SockAddr::from(SocketAddrV6::new(self.address, 0, 0, 0))).context("binding the raw UDP socket")?;
        let counters = self.counters.clone();
        std::thread::Builder::new()
            .name("cn-probes".into())
            .spawn(move || {
                let mut buf = [0u8; 2048];
                let mut asked = std::collections::BTreeSet::new();
                let mut s = s;
                while let Ok(n) = s.read(&mut buf) {
                    let Some((dport, p)) = crate::probe::udp_probe(&buf[..n]) else {
                        continue;
                    };
                    if let Ok(mut c) = counters.lock() {
                        c.received.entry(p.flow).or_default().record(&p, "cn", now_us());
                    }
                    if asked.insert(dport) && ports.blocking_send(dport).is_err() {
                        break;
                    }
                }
            })
            .context("the probe counting thread")?;
        self.raw_counting = true;
        Ok(())
    }

    fn stop(&mut self, flow: u16) {
        if let Some(t) = self.senders.remove(&flow) {
            t.abort();
        }
    }

    fn state(&self) -> serde_json::Value {
        let c = self.counters.lock();
        match c {
            Ok(c) => {
                let received: BTreeMap<u16, serde_json::Value> =
                    c.received.iter().map(|(f, s)| (*f, serde_json::json!({ "stats": s, "lost": s.lost() }))).collect();
                serde_json::json!({ "sent": c.sent, "received": received })
            }
            Err(_) => serde_json::Value::Null,
        }
    }

    pub async fn run(mut self, control: &Path) -> anyhow::Result<()> {
        let _ = std::fs::remove_file(control);
        let listener = UnixListener::bind(control).with_context(|| format!("control socket {}", control.display()))?;
        std::fs::set_permissions(control, std::os::unix::fs::PermissionsExt::from_mode(0o600))?;
        let (tx, mut rx) = mpsc::channel::<ControlMsg>(64);
        tokio::spawn(accept_loop(listener, tx));
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
        let (port_tx, mut port_rx) = mpsc::channel::<u16>(64);
        if let Err(e) = self.count_all_ports(port_tx) {
            warn!("{e:#}; the CN counts only what arrives on the ports it sends from");
        }
        quiet_port_unreachable();
        info!("CN up on {}", self.address);
        loop {
            tokio::select! {
                // A probe to a port with no socket: open one, so that the
                // kernel stops answering the flow with Port Unreachable.
                Some(port) = port_rx.recv() => {
                    if let Err(e) = self.socket(self.address, port).await {
                        warn!("{e:#}");
                    }
                }
                Some((req, reply)) = rx.recv() => {
                    let r = match req {
                        Request::Ready => Reply::ok(),
                        Request::State => Reply::state(self.state()),
                        Request::Tables => Reply::state(serde_json::Value::Null),
                        Request::FlowStart(spec) => {
                            match self.start(spec).await {
                                Ok(()) => Reply::ok(),
                                Err(e) => { warn!("{e:#}"); Reply::error(format!("{e:#}")) }
                            }
                        }
                        Request::FlowStop { flow } => { self.stop(flow); Reply::ok() }
                        Request::Shutdown => { let _ = reply.send(Reply::ok()); break; }
                        _ => Reply::error("a CN takes ready, state, flow_start, flow_stop and shutdown"),
                    };
                    let _ = reply.send(r);
                }
                _ = term.recv() => break,
            }
        }
        let _ = std::fs::remove_file(control);
        crate::control::shutdown_answered().await;
        Ok(())
    }
}

fn count_sent(counters: &Mutex<Counters>, flow: u16) {
    if let Ok(mut c) = counters.lock() {
        *c.sent.entry(flow).or_default() += 1;
    }
}

/// The CN is the sink of every probe flow: it answers none of them with
/// ICMPv6 Port Unreachable, not even the first packet to a port it opens
/// only on seeing it. The rule lives in the CN's namespace and goes with it.
fn quiet_port_unreachable() {
    use std::io::Write;
    const RULES: &str = "table ip6 pmiplab_cn {\n\tchain out {\n\t\ttype filter hook output priority 0; policy accept;\n\t\ticmpv6 type destination-unreachable icmpv6 code port-unreachable drop\n\t}\n}\n";
    let run = std::process::Command::new("nft")
        .args(["-f", "-"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .and_then(|mut child| {
            if let Some(mut stdin) = child.stdin.take() {
                stdin.write_all(RULES.as_bytes())?;
            }
            child.wait_with_output()
        });
    match run {
        Ok(o) if o.status.success() => {}
        Ok(o) => warn!("nft refused the CN's rule: {}", String::from_utf8_lossy(&o.stderr).trim()),
        Err(e) => warn!("no nft to keep the CN from answering Port Unreachable: {e}"),
    }
}
