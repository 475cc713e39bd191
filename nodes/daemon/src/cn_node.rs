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
}

impl CnNode {
    pub fn new(address: Ipv6Addr) -> CnNode {
        CnNode { address, counters: Arc::default(), senders: BTreeMap::new(), sockets: BTreeMap::new() }
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
        let task = tokio::spawn(async move {
            let mut buf = [0u8; 2048];
            while let Ok((n, _)) = rx_sock.recv_from(&mut buf).await {
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
        info!("CN up on {}", self.address);
        loop {
            tokio::select! {
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
        Ok(())
    }
}

fn count_sent(counters: &Mutex<Counters>, flow: u16) {
    if let Ok(mut c) = counters.lock() {
        *c.sent.entry(flow).or_default() += 1;
    }
}
