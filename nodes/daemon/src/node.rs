//! The event loop: Mobility Header messages from the raw socket, requests
//! from the control socket and the core's timers go into the sans-IO role;
//! what it gives back goes onto the wire and into the logs.

use std::net::Ipv6Addr;
use std::path::Path;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::Context;
use pmip_proto::ingress::{self, Refusal, Side as Arrival};
use pmip_proto::lma::{Lma, LmaInput};
use pmip_proto::mag::{Mag, MagInput};
use pmip_proto::{Instant, Intent, Output};
use pmip_wire::{Endpoints, Message, WireConfig};
use serde::Serialize;
use tokio::net::UnixListener;
use tokio::sync::{mpsc, oneshot};
use tracing::{debug, info, warn};

use crate::access::{Access, Solicitation};
use crate::config::{DaemonConfig, NodeConfig};
pub(crate) use crate::control::{accept_loop, ControlMsg};
use crate::control::{Reply, Request};
use crate::data_plane::{self, Side, Update};
use crate::esp::Esp;
use crate::faults::{Action, Direction, Faults};
use crate::ratelimit::{printable, printable_bytes, LineBudget, Refusals, Ring};
use crate::raw_socket::RawSocket;
use std::sync::{Arc, Mutex};

enum Role {
    Lma(Box<Lma>),
    Mag(Box<Mag>),
}

/// A line of the daemon's message log, for state dumps.
#[derive(Debug, Clone, Serialize)]
struct Logged {
    at_ms: u64,
    /// Microseconds since the Unix epoch: the clock the lab's captures
    /// stamp frames with, so a message that never reached a link (dropped
    /// by an outgoing fault rule) can be put in its place among them.
    wall_us: u64,
    dir: &'static str,
    /// Whether this node sent it (or was about to) rather than received it.
    out: bool,
    peer: Ipv6Addr,
    /// The message itself, its one-line summary rendered only when the
    /// state is read: formatting it for every message cost the signalling
    /// loop more than the protocol core's work. Shared with `last_pbu`.
    #[serde(rename = "summary", serialize_with = "summary_line")]
    message: Arc<Message>,
}

/// A protocol event as the state keeps it: the core's event, whose text
/// (a PBU's note, say) is rendered only when the state is read or the log
/// asks for it, never on the signalling loop for an event nobody reads.
#[derive(Clone)]
pub(crate) struct EventLine(pmip_proto::Event);

impl From<pmip_proto::Event> for EventLine {
    fn from(e: pmip_proto::Event) -> Self {
        EventLine(e)
    }
}

impl From<String> for EventLine {
    fn from(text: String) -> Self {
        EventLine(pmip_proto::Event::Note(text.into()))
    }
}

impl From<&str> for EventLine {
    fn from(text: &str) -> Self {
        EventLine::from(text.to_string())
    }
}

impl serde::Serialize for EventLine {
    // Events can quote the wire (an MN-ID): one line each, escaped.
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&printable(self.0.text(), EVENT_MAX))
    }
}

/// A logged message's summary as the state gives it: one line, escaped, cut.
fn summary_line<S: serde::Serializer>(message: &Arc<Message>, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&printable(&message.summary(), EVENT_MAX))
}

pub struct Node {
    role: Role,
    address: Ipv6Addr,
    wire: WireConfig,
    started: std::time::Instant,
    socket: RawSocket,
    plane: Option<mpsc::Sender<Update>>,
    access: Option<Access>,
    links: Option<mpsc::Receiver<(String, bool)>>,
    intents: Ring<Intent>,
    events: Ring<EventLine>,
    log: Ring<Logged>,
    /// How many protocol events reach the log at info level.
    event_lines: LineBudget,
    /// Packets refused before the protocol core saw them, counted.
    refused: Refusals,
    /// The interface that holds the node's signalling address: the only
    /// one signalling is taken from (the LMA's core side, the MAG's
    /// LMA-facing side).
    signalling_ifindex: u32,
    /// The ESP security associations and their socket, when signalling
    /// is protected.
    esp: Option<(Esp, RawSocket)>,
    /// A MAG's LMA: the only source it takes signalling from.
    lma_peer: Option<Ipv6Addr>,
    /// The PBU last handed to the core, to answer it with a reject if the
    /// core's answer cannot be encoded.
    last_pbu: Option<(Arc<Message>, Ipv6Addr)>,
    faults: Arc<Mutex<Faults>>,
    delayed: Vec<Delayed>,
    held_out: Option<(Vec<u8>, Ipv6Addr, Arc<Message>)>,
    held_in: Option<(Message, Ipv6Addr)>,
    /// Messages to send in the clear, queued by `send_now` until the loop
    /// turn ends so that a drained batch of requests is answered in one
    /// system call.
    outbox: Vec<(Vec<u8>, Ipv6Addr, Arc<Message>)>,
}

/// A message a fault rule holds back until `at`.
enum Delayed {
    Out { at: tokio::time::Instant, bytes: Vec<u8>, dst: Ipv6Addr, message: Arc<Message> },
    In { at: tokio::time::Instant, message: Message, src: Ipv6Addr },
}

impl Delayed {
    fn at(&self) -> tokio::time::Instant {
        match self {
            Delayed::Out { at, .. } | Delayed::In { at, .. } => *at,
        }
    }
}

/// How much history a daemon keeps: the last events, messages and intents.
const EVENTS_KEPT: usize = 1000;
const MESSAGES_KEPT: usize = 10_000;
const INTENTS_KEPT: usize = 10_000;
/// Datagrams a daemon takes off its signalling socket in one turn of its loop.
const DRAIN_AT_ONCE: usize = 64;
/// Protocol events logged at info level per window; past them, one line
/// says how many were left out (they stay in the state's `events`, and
/// at debug level in the log). A scenario logs far fewer; a load test
/// would spend most of the daemon's time on the log.
const EVENT_LINES: u32 = 1000;
const EVENT_LINES_WINDOW: Duration = Duration::from_secs(10);
/// Longest event line logged.
const EVENT_MAX: usize = 400;
/// Most HNP options a PBU may carry: its PBA echoes them.
const MAX_HNPS: usize = 16;

/// The index of the interface holding `address`.
fn interface_of(address: Ipv6Addr) -> anyhow::Result<u32> {
    let addrs = nix::ifaddrs::getifaddrs().context("listing the node's addresses")?;
    for a in addrs {
        let ours = a.address.as_ref().and_then(|s| s.as_sockaddr_in6()).is_some_and(|s| s.ip() == address);
        if ours {
            return nix::net::if_::if_nametoindex(a.interface_name.as_str())
                .with_context(|| format!("the index of {}", a.interface_name));
        }
    }
    anyhow::bail!("no interface of this namespace holds {address}")
}

impl Node {
    pub async fn new(config: DaemonConfig, wire: WireConfig) -> anyhow::Result<Node> {
        let DaemonConfig { node: config, data_plane, access, esp, .. } = config;
        // The node's clock is `started` plus the wall clock read at the same
        // moment, so every node's Timestamp option agrees with every other's
        // whatever its setup below costs: the LMA compares one MAG's Timestamp
        // with another's at a handover.
        let started = std::time::Instant::now();
        let unix_micros = SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_micros() as u64).unwrap_or(0);
        let address = config.address().context("an LMA or MAG configuration")?;
        let lma_peer = match &config {
            NodeConfig::Mag { config } => Some(config.lma),
            _ => None,
        };
        let side = match &config {
            NodeConfig::Lma { .. } => Side::Lma,
            NodeConfig::Mag { config } => Side::Mag { lma: config.lma },
            NodeConfig::Mn { .. } | NodeConfig::Cn { .. } => {
                anyhow::bail!("an MN or a CN runs as its own node")
            }
        };
        let role = match config {
            NodeConfig::Lma { mut config, policies } => {
                config.epoch_offset_micros = unix_micros;
                let mut lma = Lma::new(config);
                for p in policies {
                    lma.add_policy(p);
                }
                Role::Lma(Box::new(lma))
            }
            NodeConfig::Mag { mut config } => {
                config.epoch_offset_micros = unix_micros;
                Role::Mag(Box::new(Mag::new(config)))
            }
            NodeConfig::Mn { .. } | NodeConfig::Cn { .. } => {
                anyhow::bail!("an MN or a CN runs as its own node")
            }
        };
        let (access, links) = match (&role, access.is_empty()) {
            (Role::Mag(_), false) => {
                let names = access.keys().cloned().collect();
                let (_, links) = crate::link_watch::watch(names).await.context("watching the access links")?;
                (Some(Access::open(&access).await.context("opening the access links")?), Some(links))
            }
            _ => (None, None),
        };
        let socket = RawSocket::mobility_header(address).with_context(|| format!("signalling socket on {address}"))?;
        let signalling_ifindex = interface_of(address)?;
        let esp = match esp {
            Some(cfg) if !cfg.sas.is_empty() => {
                let sas = Esp::new(address, &cfg).context("the ESP security associations")?;
                let sock = RawSocket::esp(address).with_context(|| format!("ESP socket on {address}"))?;
                Some((sas, sock))
            }
            _ => None,
        };
        let faults = Arc::new(Mutex::new(Faults::default()));
        let plane = match data_plane {
            Some(cfg) => {
                Some(data_plane::start(cfg, side, address, faults.clone()).await.context("starting the data plane")?)
            }
            None => None,
        };
        Ok(Node {
            role,
            address,
            wire,
            started,
            socket,
            plane,
            access,
            links,
            intents: Ring::new(INTENTS_KEPT),
            events: Ring::new(EVENTS_KEPT),
            log: Ring::new(MESSAGES_KEPT),
            refused: Refusals::default(),
            event_lines: LineBudget::new(EVENT_LINES, EVENT_LINES_WINDOW),
            signalling_ifindex,
            esp,
            lma_peer,
            last_pbu: None,
            faults,
            delayed: Vec::new(),
            held_out: None,
            held_in: None,
            outbox: Vec::new(),
        })
    }

    fn now(&self) -> Instant {
        Instant(self.started.elapsed().as_micros() as u64)
    }

    fn next_timeout(&self) -> Option<Instant> {
        match &self.role {
            Role::Lma(l) => l.next_timeout(),
            Role::Mag(m) => m.next_timeout(),
        }
    }

    async fn apply(&mut self, out: Output) {
        for e in out.events {
            // Events can quote the wire (an MN-ID): one line each, escaped.
            // Past the log's budget the text is made only if debug is on.
            if self.event_lines.allow() {
                info!(target: "pmip_node::event", "{}", printable(e.text(), EVENT_MAX));
            } else {
                debug!(target: "pmip_node::event", "{}", printable(e.text(), EVENT_MAX));
            }
            self.events.push(e);
        }
        let mut advertisements = Vec::new();
        for i in out.intents {
            debug!(?i, "data-plane intent");
            if let Intent::RouterAdvertisement { iface, prefixes } = &i {
                advertisements.push((iface.clone(), prefixes.clone()));
            }
            if let Some(plane) = &self.plane {
                let ll_ids = match &self.role {
                    Role::Mag(m) => m.access_ll_ids(),
                    Role::Lma(_) => Default::default(),
                };
                if plane.send(Update::Intent(i.clone(), ll_ids)).await.is_err() {
                    self.events.push("the data plane stopped; intent not applied");
                }
            }
            self.intents.push(i);
        }
        // The kernel and the tunnel reflect this output before the node
        // answers anything else, so a move is in force when it is acknowledged.
        if let Some(plane) = &self.plane {
            let (tx, rx) = oneshot::channel();
            if plane.send(Update::Barrier(tx)).await.is_ok() {
                let _ = rx.await;
            }
        }
        // An RA offers the MN its prefixes: it leaves once the routes and
        // the tunnel that carry them are in, or the first downlink after
        // it finds none.
        if let Some(access) = &self.access {
            for (iface, prefixes) in advertisements {
                if let Err(e) = access.advertise(&iface, &prefixes).await {
                    warn!("{e}");
                    self.events.push(format!("RA on {iface} failed: {e}"));
                }
            }
        }
        for mut t in out.transmits {
            // The profile frames the core's FMI/FMA (RFC 7864: UPN/UPA).
            t.message = self.wire.profile.outgoing(t.message);
            let ends = Endpoints { src: t.src, dst: t.dst };
            match t.message.to_bytes(&ends, &self.wire) {
                Ok(bytes) => self.transmit(bytes, t.dst, Arc::new(t.message)).await,
                Err(e) => {
                    let line = format!("could not encode {}: {e}", t.message.name());
                    warn!("{line}");
                    self.events.push(line);
                    if let Some((reject, bytes)) = self.reject_instead(&t.message, t.dst) {
                        self.transmit(bytes, t.dst, Arc::new(reject)).await;
                    }
                }
            }
        }
    }

    /// Logs a message this node received (`dir` "received") or sent.
    fn record(&mut self, dir: &'static str, peer: Ipv6Addr, message: Arc<Message>) {
        self.record_way(dir, dir != "received", peer, message);
    }

    fn record_way(&mut self, dir: &'static str, out: bool, peer: Ipv6Addr, message: Arc<Message>) {
        let wall_us = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| u64::try_from(d.as_micros()).unwrap_or(u64::MAX));
        self.log.push(Logged { at_ms: self.now().as_millis(), wall_us, dir, out, peer, message });
    }

    /// A PBA the core built that cannot be encoded answers the PBU that
    /// asked for it: a well-formed reject (128, reason unspecified) with
    /// the PBU's sequence number and MN-ID, rather than silence.
    fn reject_instead(&self, failed: &Message, dst: Ipv6Addr) -> Option<(Message, Vec<u8>)> {
        let Message::Pba(pba) = failed else { return None };
        let (last, from) = self.last_pbu.as_ref()?;
        let Message::Pbu(pbu) = &**last else { return None };
        if *from != dst || pbu.sequence != pba.sequence {
            return None;
        }
        let ends = Endpoints { src: self.address, dst };
        let mn_id = pbu.options.iter().find(|o| matches!(o, pmip_wire::MobilityOption::MnIdentifier { .. }));
        let reject = |options: Vec<pmip_wire::MobilityOption>| {
            Message::Pba(pmip_wire::Pba {
                status: pmip_wire::PbaStatus::from(128),
                flags: pmip_wire::PbaFlags { p: true, ..Default::default() },
                sequence: pbu.sequence,
                lifetime: 0,
                options,
            })
        };
        // With the MN-ID if that can be encoded, else with nothing.
        [reject(mn_id.cloned().into_iter().collect()), reject(Vec::new())]
            .into_iter()
            .find_map(|m| m.to_bytes(&ends, &self.wire).ok().map(|b| (m, b)))
    }

    /// Counts a refused packet; logs it while the budget allows.
    fn refuse(&mut self, reason: &'static str, detail: impl FnOnce() -> String) {
        if let Some(line) = self.refused.refuse(reason, detail) {
            warn!("{line}");
            self.events.push(line);
        }
    }

    /// What the protocol core must never see from this PBU: an MN-ID that
    /// is not UTF-8 text (it would be read lossily, and two MNs could
    /// collide), or more HNPs than a PBA can echo.
    fn pbu_problem(pbu: &pmip_wire::Pbu) -> Option<String> {
        use pmip_wire::MobilityOption as O;
        for o in &pbu.options {
            if let O::MnIdentifier { id, .. } = o {
                match std::str::from_utf8(id) {
                    Err(_) => return Some(format!("MN-ID {} is not UTF-8", printable_bytes(id, 64))),
                    Ok(t) if t.chars().any(char::is_control) => {
                        return Some(format!("MN-ID {} holds control characters", printable_bytes(id, 64)))
                    }
                    Ok(_) => {}
                }
            }
        }
        let hnps = pbu.options.iter().filter(|o| matches!(o, O::HomeNetworkPrefix { .. })).count();
        (hnps > MAX_HNPS).then(|| format!("{hnps} HNP options (at most {MAX_HNPS})"))
    }

    /// Sends through ESP when an SA goes to `dst`, at once; in the clear,
    /// queued for `flush`, which the loop calls before it waits again.
    async fn send_now(&mut self, bytes: Vec<u8>, dst: Ipv6Addr, message: Arc<Message>) {
        let sealed = match self.esp.as_mut().and_then(|(sas, _)| sas.seal(dst, 135, &bytes)) {
            None => {
                self.outbox.push((bytes, dst, message));
                return;
            }
            Some(sealed) => sealed,
        };
        // What was queued before goes first, as it was sent first.
        self.flush().await;
        let sent = match (sealed, &self.esp) {
            (Ok(sealed), Some((_, sock))) => sock.send_to(&sealed, dst).await,
            (Ok(_), None) => Err(std::io::Error::other("no ESP socket")),
            (Err(e), _) => Err(std::io::Error::other(e.to_string())),
        };
        self.sent(dst, message, sent);
    }

    /// Sends what `send_now` queued in the clear, in order, in one
    /// `sendmmsg` where the kernel takes them all.
    async fn flush(&mut self) {
        if self.outbox.is_empty() {
            return;
        }
        let queued = std::mem::take(&mut self.outbox);
        let datagrams: Vec<(&[u8], Ipv6Addr)> = queued.iter().map(|(b, d, _)| (b.as_slice(), *d)).collect();
        let results = self.socket.send_many(&datagrams).await;
        drop(datagrams);
        for ((_, dst, message), sent) in queued.into_iter().zip(results) {
            self.sent(dst, message, sent);
        }
    }

    /// Logs what became of a message handed to the kernel.
    fn sent(&mut self, dst: Ipv6Addr, message: Arc<Message>, sent: std::io::Result<()>) {
        let name = message.name();
        // The log is diagnosis: it says "sent" only of what the kernel took.
        match sent {
            Ok(_) => self.record("sent", dst, message),
            Err(e) => {
                warn!("sending {name} to {dst} failed: {e}");
                self.events.push(format!("sending {name} to {dst} failed: {e}"));
                self.record("send failed", dst, message);
            }
        }
    }

    /// Sends a message through the outgoing fault rules.
    async fn transmit(&mut self, bytes: Vec<u8>, dst: Ipv6Addr, message: Arc<Message>) {
        let name = message.name();
        let action = self.faults.lock().ok().and_then(|mut f| f.check_peer(Direction::Out, Some(name), Some(dst)));
        match action {
            None => self.send_now(bytes, dst, message).await,
            Some(Action::Drop) => {
                self.events.push(format!("fault rule: dropped outgoing {name} to {dst}"));
                self.record("dropped", dst, message);
                return;
            }
            Some(Action::Duplicate) => {
                self.send_now(bytes.clone(), dst, message.clone()).await;
                self.send_now(bytes, dst, message).await;
            }
            Some(Action::Delay { ms }) => {
                let at = tokio::time::Instant::now() + Duration::from_millis(ms);
                self.delayed.push(Delayed::Out { at, bytes, dst, message });
                return;
            }
            Some(Action::Reorder) => {
                if let Some((b, d, s)) = self.held_out.replace((bytes, dst, message)) {
                    self.send_now(b, d, s).await;
                }
                return;
            }
        }
        if let Some((b, d, s)) = self.held_out.take() {
            self.send_now(b, d, s).await;
        }
    }

    /// Sends or delivers what a delay rule held and is now due.
    async fn release_delayed(&mut self) {
        let now = tokio::time::Instant::now();
        let (due, keep): (Vec<Delayed>, Vec<Delayed>) =
            std::mem::take(&mut self.delayed).into_iter().partition(|d| d.at() <= now);
        self.delayed = keep;
        for d in due {
            match d {
                Delayed::Out { bytes, dst, message, .. } => self.send_now(bytes, dst, message).await,
                Delayed::In { message, src, .. } => self.deliver(message, src).await,
            }
        }
    }

    /// Handles what else is queued on the signalling socket, up to a
    /// bound so that timers and control requests still get their turn.
    async fn drain_signalling(&mut self) {
        match self.socket.try_recv_many(DRAIN_AT_ONCE) {
            Ok(got) => {
                for (bytes, src, ifindex) in got {
                    self.on_datagram(bytes, src, ifindex).await;
                }
            }
            Err(e) => warn!("receiving on the MH socket failed: {e}"),
        }
    }

    /// A Mobility Header in the clear: refused from a peer whose
    /// signalling must come through ESP.
    async fn on_datagram(&mut self, bytes: Vec<u8>, src: Ipv6Addr, ifindex: u32) {
        if self.esp.as_ref().is_some_and(|(sas, _)| sas.protects(src)) {
            self.refuse("unprotected", || format!("Mobility Header from {src} in the clear; it must come in ESP"));
            return;
        }
        self.on_signalling(bytes, src, ifindex).await
    }

    /// An ESP packet: opened, checked (SA, anti-replay, ICV) and its
    /// Mobility Header handled as signalling.
    async fn on_esp(&mut self, bytes: Vec<u8>, src: Ipv6Addr, ifindex: u32) {
        let Some((sas, _)) = self.esp.as_mut() else { return };
        match sas.open(src, &bytes) {
            Ok((135, mh)) => self.on_signalling(mh, src, ifindex).await,
            Ok((nh, _)) => self.refuse("ESP not MH", || format!("ESP from {src} carries next header {nh}, not 135")),
            Err(e) => {
                let kind = e.kind();
                self.refuse(kind, || format!("ESP from {src}: {e}"))
            }
        }
    }

    async fn on_signalling(&mut self, bytes: Vec<u8>, src: Ipv6Addr, ifindex: u32) {
        // Signalling comes in on the side facing the peers, from a peer:
        // anything else is spoofed, whatever its source address says.
        // The rule is the proto core's, the one the virtual World applies.
        let side = if ifindex == self.signalling_ifindex { Arrival::Signalling } else { Arrival::Other };
        match ingress::check(side, src, self.lma_peer) {
            Ok(()) => {}
            Err(r @ Refusal::WrongInterface) => {
                let want = self.signalling_ifindex;
                self.refuse(r.reason(), || {
                    format!("Mobility Header from {src} arrived on interface {ifindex}, not on {want}")
                });
                return;
            }
            Err(r @ Refusal::NotFromPeer) => {
                let lma = self.lma_peer.map(|a| a.to_string()).unwrap_or_default();
                self.refuse(r.reason(), || format!("Mobility Header from {src}: this MAG's LMA is {lma}"));
                return;
            }
        }
        let ends = Endpoints { src, dst: self.address };
        let message = match Message::parse(&bytes, &ends, &self.wire) {
            Ok(m) => self.wire.profile.incoming(m),
            Err(e) => {
                // A malformed packet changes nothing but a counter and,
                // within the budget, the log.
                self.refuse("malformed", || format!("malformed Mobility Header from {src}: {e}"));
                return;
            }
        };
        let unanswerable = match (&message, &self.role) {
            (Message::Pbu(pbu), Role::Lma(_)) => Self::pbu_problem(pbu).map(|p| (p, pbu.sequence)),
            _ => None,
        };
        if let Some((problem, sequence)) = unanswerable {
            self.refuse("unanswerable PBU", || format!("PBU seq {sequence} from {src}: {problem}"));
            let message = Arc::new(message);
            self.last_pbu = Some((message.clone(), src));
            let failed = Message::Pba(pmip_wire::Pba {
                status: pmip_wire::PbaStatus::from(128),
                flags: Default::default(),
                sequence,
                lifetime: 0,
                options: vec![],
            });
            self.record("received", src, message);
            if let Some((reject, bytes)) = self.reject_instead(&failed, src) {
                self.transmit(bytes, src, Arc::new(reject)).await;
            }
            return;
        }
        let name = message.name();
        let action = self.faults.lock().ok().and_then(|mut f| f.check_peer(Direction::In, Some(name), Some(src)));
        match action {
            None => self.deliver(message, src).await,
            Some(Action::Drop) => {
                self.events.push(format!("fault rule: dropped incoming {name} from {src}"));
                self.record_way("dropped", false, src, Arc::new(message));
                return;
            }
            Some(Action::Duplicate) => {
                self.deliver(message.clone(), src).await;
                self.deliver(message, src).await;
            }
            Some(Action::Delay { ms }) => {
                let at = tokio::time::Instant::now() + Duration::from_millis(ms);
                self.delayed.push(Delayed::In { at, message, src });
                return;
            }
            Some(Action::Reorder) => {
                if let Some((m, s)) = self.held_in.replace((message, src)) {
                    self.deliver(m, s).await;
                }
                return;
            }
        }
        if let Some((m, s)) = self.held_in.take() {
            self.deliver(m, s).await;
        }
    }

    /// Hands a received message to the protocol core.
    async fn deliver(&mut self, message: Message, src: Ipv6Addr) {
        // One copy for the log, shared with `last_pbu`: the core takes
        // the message itself.
        let logged = Arc::new(message.clone());
        if matches!(message, Message::Pbu(_)) {
            self.last_pbu = Some((logged.clone(), src));
        }
        self.record("received", src, logged);
        let now = self.now();
        let out = match &mut self.role {
            Role::Lma(l) => l.handle(now, LmaInput::Message { src, dst: self.address, message }),
            Role::Mag(m) => m.handle(now, MagInput::Message { src, dst: self.address, message }),
        };
        self.apply(out).await;
    }

    /// An RS names an MN interface: attach it if it is new on that link,
    /// else answer with an RA.
    async fn on_solicitation(&mut self, rs: Solicitation) {
        let now = self.now();
        let Role::Mag(m) = &mut self.role else { return };
        let Some(mac) = rs.mac else {
            self.events.push(format!("RS on {} without a link-layer address; ignored", rs.iface));
            return;
        };
        let known = m.access_ll_ids().get(&rs.iface).is_some_and(|ll| *ll == mac);
        let input = if known {
            MagInput::RouterSolicitation { iface: rs.iface }
        } else {
            MagInput::Attach {
                iface: rs.iface,
                ll_id: mac.to_vec(),
                att: rs.att.into(),
                handoff: None,
                prefixes: vec![],
            }
        };
        let out = m.handle(now, input);
        self.apply(out).await;
    }

    /// An access link lost its carrier: the MN interface on it is gone.
    async fn on_link(&mut self, iface: String, up: bool) {
        let now = self.now();
        let Role::Mag(m) = &mut self.role else { return };
        if up || !m.access_ll_ids().contains_key(&iface) {
            return;
        }
        let out = m.handle(now, MagInput::Detach { iface });
        self.apply(out).await;
    }

    async fn on_timeout(&mut self) {
        let now = self.now();
        let out = match &mut self.role {
            Role::Lma(l) => l.handle(now, LmaInput::Timeout),
            Role::Mag(m) => m.handle(now, MagInput::Timeout),
        };
        self.apply(out).await;
    }

    /// The protocol tables alone: cheap enough to poll.
    fn tables(&self) -> serde_json::Value {
        let tables = match &self.role {
            Role::Lma(l) => serde_json::to_value(l.state()),
            Role::Mag(m) => serde_json::to_value(m.state()),
        };
        tables.unwrap_or_default()
    }

    /// What a state read reports, as of now: taken on the signalling loop
    /// (the tables built, the histories copied, the data plane asked in
    /// order after every intent sent to it), turned into JSON off it.
    async fn snapshot(&self) -> Snapshot {
        let mut plane = None;
        if let Some(p) = &self.plane {
            let (tx, rx) = oneshot::channel();
            if p.send(Update::State(tx)).await.is_ok() {
                plane = Some(rx);
            }
        }
        Snapshot {
            tables: match &self.role {
                Role::Lma(l) => Tables::Lma(Box::new(l.state())),
                Role::Mag(m) => Tables::Mag(Box::new(m.state())),
            },
            intents: self.intents.clone(),
            log: self.log.clone(),
            events: self.events.clone(),
            refused: self.refused.state(),
            faults: self.faults.lock().map(|f| f.rules().to_vec()).unwrap_or_default(),
            plane,
        }
    }

    /// Removes the routes and rules the data plane installed.
    async fn stop_data_plane(&mut self) {
        if let Some(plane) = self.plane.take() {
            let (tx, rx) = oneshot::channel();
            if plane.send(Update::Shutdown(tx)).await.is_ok() {
                for e in rx.await.unwrap_or_default() {
                    warn!("cleanup: {e}");
                }
            }
        }
    }

    /// Handles one control request; `None` asks the loop to stop.
    async fn on_request(&mut self, req: Request) -> Option<Reply> {
        let now = self.now();
        let out = match (req, &mut self.role) {
            (Request::Ready, _) => return Some(Reply::ok()),
            (Request::FaultAdd { rule }, _) => {
                return Some(
                    match self
                        .faults
                        .lock()
                        .map_err(|_| "the fault table is poisoned".to_string())
                        .and_then(|mut f| f.add(rule))
                    {
                        Ok(id) => Reply::state(serde_json::json!({ "id": id })),
                        Err(e) => Reply::error(e),
                    },
                )
            }
            (Request::FaultRemove { id }, _) => {
                let removed = self.faults.lock().map(|mut f| f.remove(id)).unwrap_or(false);
                return Some(if removed { Reply::ok() } else { Reply::error(format!("no fault rule {id}")) });
            }
            // The loop answers state reads itself, off a snapshot, and never
            // hands one here.
            (Request::State, _) => return Some(Reply::error("a state read reached the request handler")),
            (Request::Tables, _) => return Some(Reply::state(self.tables())),
            (Request::Send { to, message }, _) => {
                let mut out = Output::default();
                out.transmits.push(pmip_proto::Transmit { src: self.address, dst: to, message });
                out
            }
            (Request::Shutdown, _) => return None,
            (Request::Attach { iface, ll_id, att, hi, prefixes }, Role::Mag(m)) => {
                m.handle(now, MagInput::Attach { iface, ll_id, att: att.into(), handoff: hi.map(Into::into), prefixes })
            }
            (Request::Detach { iface }, Role::Mag(m)) => m.handle(now, MagInput::Detach { iface }),
            (Request::TwoLevelCarve { ll_id, service }, Role::Mag(m)) => m.two_level_carve(now, &ll_id, &service),
            (Request::TwoLevelTake { ll_id, prefixes }, Role::Mag(m)) => m.two_level_take(&ll_id, &prefixes),
            (Request::TwoLevelHint { mn_id, prefixes }, Role::Mag(m)) => m.two_level_hint(now, &mn_id, &prefixes),
            (Request::Lma { command }, Role::Lma(l)) => l.handle(now, LmaInput::Command(command)),
            (r, _) => {
                return Some(Reply::error(format!(
                    "this node cannot take {:?}: wrong role",
                    std::mem::discriminant(&r)
                )))
            }
        };
        // A refused command is an error to its sender, as the World says it.
        let refused = out.refused().map(str::to_string);
        self.apply(out).await;
        Some(refused.map_or_else(Reply::ok, Reply::error))
    }

    /// Runs until SIGTERM or a `shutdown` request. Without a control
    /// socket (`pmip-node --impl` with no `--control`) nothing but the
    /// wire and SIGTERM reaches the node.
    pub async fn run(mut self, control: Option<&Path>) -> anyhow::Result<()> {
        let (tx, mut rx) = mpsc::channel::<ControlMsg>(64);
        // Kept alive so that `rx` stays open when no socket feeds it.
        let _idle = match control {
            Some(control) => {
                let _ = std::fs::remove_file(control);
                let listener =
                    UnixListener::bind(control).with_context(|| format!("control socket {}", control.display()))?;
                std::fs::set_permissions(control, std::os::unix::fs::PermissionsExt::from_mode(0o600))
                    .with_context(|| format!("making {} private", control.display()))?;
                tokio::spawn(accept_loop(listener, tx));
                None
            }
            None => Some(tx),
        };
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
        let mut links = self.links.take().unwrap_or_else(|| mpsc::channel(1).1);
        let mut summaries = tokio::time::interval(Duration::from_secs(10));
        info!(
            "{} up on {}",
            match self.role {
                Role::Lma(_) => "LMA",
                Role::Mag(_) => "MAG",
            },
            self.address
        );
        loop {
            // Whatever the last turn queued goes out before the node waits
            // or answers anything else (a control request included).
            self.flush().await;
            let wait = self
                .next_timeout()
                .map(|t| Duration::from_micros(t.0.saturating_sub(self.now().0)))
                .unwrap_or(Duration::from_secs(3600));
            tokio::select! {
                r = self.socket.recv_on() => match r {
                    Ok((bytes, src, ifindex)) => {
                        self.on_datagram(bytes, src, ifindex).await;
                        self.drain_signalling().await;
                    }
                    Err(e) => warn!("receiving on the MH socket failed: {e}"),
                },
                Some(r) = recv_esp(&self.esp) => match r {
                    Ok((bytes, src, ifindex)) => self.on_esp(bytes, src, ifindex).await,
                    Err(e) => warn!("receiving on the ESP socket failed: {e}"),
                },
                _ = summaries.tick() => {
                    if let Some(line) = self.refused.summary() {
                        warn!("{line}");
                        self.events.push(line);
                    }
                    if let Some((n, _)) = self.event_lines.summary() {
                        info!(
                            target: "pmip_node::event",
                            "{n} more protocol events not logged in {EVENT_LINES_WINDOW:?} (the state keeps the last {EVENTS_KEPT})"
                        );
                    }
                },
                _ = tokio::time::sleep(wait) => self.on_timeout().await,
                _ = next_delayed(&self.delayed) => self.release_delayed().await,
                Some(rs) = solicitation(&self.access) => match rs {
                    Ok(rs) => self.on_solicitation(rs).await,
                    Err(why) => self.refuse("invalid RS", || why),
                },
                Some((iface, up)) = links.recv() => self.on_link(iface, up).await,
                Some((req, reply)) = rx.recv() => {
                    if let Request::State = req {
                        // A state read of 100,000 bindings takes long to
                        // write out: the loop takes the snapshot and goes on
                        // answering while a task of its own renders it. The
                        // reply still says what was sent before it.
                        self.flush().await;
                        let snapshot = self.snapshot().await;
                        tokio::spawn(async move {
                            let _ = reply.send(Reply::state(snapshot.render().await));
                        });
                        continue;
                    }
                    let r = self.on_request(req).await;
                    // A request's reply says its messages were handed to the kernel.
                    self.flush().await;
                    match r {
                        Some(r) => { let _ = reply.send(r); }
                        None => { let _ = reply.send(Reply::ok()); break; }
                    }
                },
                _ = term.recv() => break,
            }
        }
        self.flush().await;
        self.stop_data_plane().await;
        if let Some(control) = control {
            let _ = std::fs::remove_file(control);
            crate::control::shutdown_answered().await;
        }
        info!("stopped");
        Ok(())
    }
}

async fn solicitation(access: &Option<Access>) -> Option<Result<Solicitation, String>> {
    match access {
        Some(a) => match a.solicitation().await {
            Ok(rs) => Some(rs),
            Err(e) => {
                warn!("receiving on the access links failed: {e}");
                None
            }
        },
        None => std::future::pending().await,
    }
}

async fn recv_esp(esp: &Option<(Esp, RawSocket)>) -> Option<std::io::Result<(Vec<u8>, Ipv6Addr, u32)>> {
    match esp {
        Some((_, sock)) => Some(sock.recv_on().await),
        None => std::future::pending().await,
    }
}

async fn next_delayed(delayed: &[Delayed]) {
    match delayed.iter().map(Delayed::at).min() {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

/// The protocol tables of a state read.
enum Tables {
    Lma(Box<pmip_proto::lma::LmaState>),
    Mag(Box<pmip_proto::mag::MagState>),
}

/// A node's state as of one moment, owned, so that it can be written out
/// away from the signalling loop; the data plane's part is awaited there.
struct Snapshot {
    tables: Tables,
    intents: Ring<Intent>,
    log: Ring<Logged>,
    events: Ring<EventLine>,
    refused: serde_json::Value,
    faults: Vec<crate::faults::FaultRule>,
    plane: Option<oneshot::Receiver<serde_json::Value>>,
}

impl Snapshot {
    /// The state as JSON. Writing out 100,000 bindings takes the best part
    /// of a second: it runs on a thread of its own, not on the runtime's
    /// one thread, which the signalling loop needs.
    async fn render(mut self) -> serde_json::Value {
        let data_plane = match self.plane.take() {
            Some(rx) => rx.await.unwrap_or_default(),
            None => serde_json::Value::Null,
        };
        tokio::task::spawn_blocking(move || self.into_json(data_plane))
            .await
            .unwrap_or_else(|e| serde_json::json!({ "error": format!("rendering the state failed: {e}") }))
    }

    fn into_json(self, data_plane: serde_json::Value) -> serde_json::Value {
        let tables = match &self.tables {
            Tables::Lma(t) => serde_json::to_value(t),
            Tables::Mag(t) => serde_json::to_value(t),
        };
        serde_json::json!({
            "tables": tables.unwrap_or_default(),
            "intents": self.intents,
            "messages": self.log,
            "events": self.events,
            "events_dropped": self.events.dropped(),
            "refused": self.refused,
            "data_plane": data_plane,
            "faults": self.faults,
        })
    }
}
