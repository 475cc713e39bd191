//! Heartbeats between a MAG and its LMA (RFC 5847 §5): periodic Heartbeat
//! Requests with sequence numbers, answered by Heartbeat Responses that
//! carry the responder's Restart Counter (§3.2). A peer that leaves
//! `missing_allowed` requests in a row unanswered is down; a peer whose
//! Restart Counter changed has restarted. What a role does about either
//! is the role's business: this module only keeps the exchange.
//!
//! Choices where RFC 5847 leaves room, kept so that a run is repeatable:
//! the peer is declared down when the next request falls due and
//! `missing_allowed` requests are still unanswered; a peer that is down is
//! no longer probed (any message from it makes it live again), so a dead
//! peer does not cost a request every interval forever; a response answers
//! only the latest request sent to that peer.

use std::collections::BTreeMap;
use std::net::Ipv6Addr;

use pmip_wire::{Heartbeat, Message, MobilityOption};
use serde::{Deserialize, Serialize};

use crate::output::Output;
use crate::time::{Instant, Span};

/// The settings of one side (RFC 5847 §6: HEARTBEAT_INTERVAL and
/// MISSING_HEARTBEATS_ALLOWED; the RFC's defaults are 60 s and 3).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct HeartbeatConfig {
    pub interval: Span,
    pub missing_allowed: u32,
}

/// What the exchange found out about a peer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PeerNews {
    Down(Ipv6Addr),
    /// The peer answered with another Restart Counter than before.
    Restarted(Ipv6Addr),
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct Peer {
    next_at: Instant,
    /// Requests sent since the last answer.
    unanswered: u32,
    last_sequence: Option<u32>,
    restart_counter: Option<u32>,
    down: bool,
}

/// One row of a role's heartbeat table, as a snapshot shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PeerRow {
    pub peer: Ipv6Addr,
    pub state: &'static str,
    pub restart_counter: Option<u32>,
}

/// The heartbeat side of one LMA or MAG.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Heartbeats {
    config: Option<HeartbeatConfig>,
    /// This node's own Restart Counter, sent in every response.
    restart_counter: u32,
    next_sequence: u32,
    peers: BTreeMap<Ipv6Addr, Peer>,
}

impl Heartbeats {
    /// `config` None: this side sends no requests (it still answers).
    pub fn new(config: Option<HeartbeatConfig>, restart_counter: u32) -> Self {
        Heartbeats { config, restart_counter, next_sequence: 1, peers: BTreeMap::new() }
    }

    /// Sets the peers to probe: those the role has bindings with. A new
    /// peer gets its first request an interval from now; a peer no longer
    /// listed is forgotten.
    pub fn track(&mut self, now: Instant, peers: impl IntoIterator<Item = Ipv6Addr>) {
        let Some(cfg) = self.config else {
            return;
        };
        let wanted: Vec<Ipv6Addr> = peers.into_iter().collect();
        self.peers.retain(|p, _| wanted.contains(p));
        for p in wanted {
            self.peers.entry(p).or_insert(Peer {
                next_at: now + cfg.interval,
                unanswered: 0,
                last_sequence: None,
                restart_counter: None,
                down: false,
            });
        }
    }

    pub fn is_down(&self, peer: Ipv6Addr) -> bool {
        self.peers.get(&peer).is_some_and(|p| p.down)
    }

    /// Sends the requests that are due, in peer address order, and says
    /// which peers are now down.
    pub fn on_timeout(&mut self, now: Instant, own: Ipv6Addr, out: &mut Output) -> Vec<PeerNews> {
        let Some(cfg) = self.config else {
            return Vec::new();
        };
        let mut news = Vec::new();
        for (addr, p) in self.peers.iter_mut().filter(|(_, p)| !p.down && p.next_at <= now) {
            if p.unanswered >= cfg.missing_allowed {
                p.down = true;
                out.event(format!("heartbeat: {addr} is down: {} requests in a row unanswered", p.unanswered));
                news.push(PeerNews::Down(*addr));
                continue;
            }
            let sequence = self.next_sequence;
            self.next_sequence = self.next_sequence.wrapping_add(1);
            p.last_sequence = Some(sequence);
            p.unanswered += 1;
            p.next_at = now + cfg.interval;
            let hb = Heartbeat { unsolicited: false, response: false, sequence, options: Vec::new() };
            out.send(own, *addr, Message::Heartbeat(hb));
        }
        news
    }

    /// Any message from a peer shows it is alive: one that was down is
    /// probed again from now on.
    pub fn heard_from(&mut self, now: Instant, peer: Ipv6Addr, out: &mut Output) {
        let Some(cfg) = self.config else {
            return;
        };
        if let Some(p) = self.peers.get_mut(&peer).filter(|p| p.down) {
            out.event(format!("heartbeat: {peer} is up again"));
            p.down = false;
            p.unanswered = 0;
            p.next_at = now + cfg.interval;
        }
    }

    /// A Heartbeat from `src`: a request is answered with this node's
    /// Restart Counter; a response to the latest request clears the count
    /// of unanswered ones and may show that the peer restarted.
    pub fn on_heartbeat(&mut self, own: Ipv6Addr, src: Ipv6Addr, hb: Heartbeat, out: &mut Output) -> Option<PeerNews> {
        if !hb.response {
            let options = vec![MobilityOption::RestartCounter(self.restart_counter)];
            let resp = Heartbeat { unsolicited: false, response: true, sequence: hb.sequence, options };
            out.send(own, src, Message::Heartbeat(resp));
            return None;
        }
        let Some(p) = self.peers.get_mut(&src) else {
            out.event(format!("heartbeat: response from {src}, which is not probed; ignored"));
            return None;
        };
        if p.last_sequence != Some(hb.sequence) {
            out.event(format!(
                "heartbeat: response seq {} from {src} answers no request in flight; ignored",
                hb.sequence
            ));
            return None;
        }
        p.unanswered = 0;
        let counter = hb.options.iter().find_map(|o| match o {
            MobilityOption::RestartCounter(c) => Some(*c),
            _ => None,
        });
        // A response without the option says nothing about a restart.
        let counter = counter?;
        let before = p.restart_counter.replace(counter);
        match before {
            Some(b) if b != counter => {
                out.event(format!("heartbeat: {src} restarted (Restart Counter {b} -> {counter})"));
                Some(PeerNews::Restarted(src))
            }
            _ => None,
        }
    }

    pub fn next_timeout(&self) -> Option<Instant> {
        self.peers.values().filter(|p| !p.down).map(|p| p.next_at).min()
    }

    pub fn rows(&self) -> Vec<PeerRow> {
        self.peers
            .iter()
            .map(|(a, p)| PeerRow {
                peer: *a,
                state: if p.down { "down" } else { "up" },
                restart_counter: p.restart_counter,
            })
            .collect()
    }
}
