//! What a role gives back from `handle`: messages to transmit, data-plane
//! intents to install or remove, and events for the logs. Plain values.

use std::net::Ipv6Addr;

use pmip_wire::{Message, TrafficSelector};
use serde::{Deserialize, Serialize};

use crate::prefix::Prefix;

/// A Mobility Header message to send.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Transmit {
    pub src: Ipv6Addr,
    pub dst: Ipv6Addr,
    pub message: Message,
}

/// Where the LMA sends packets matching a flow binding.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum FlowTarget {
    /// Into the tunnel to this Proxy-CoA.
    Forward(Ipv6Addr),
    Drop,
}

/// A change to the data plane. `up` true installs, false removes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Intent {
    /// LMA: the bidirectional tunnel to a MAG (RFC 5213 §5.6.1).
    LmaTunnel { mag: Ipv6Addr, up: bool },
    /// LMA: default downlink path of a home network prefix.
    LmaPrefixRoute { prefix: Prefix, mag: Ipv6Addr, up: bool },
    /// LMA: a flow binding of the Flow Mobility Cache, checked before the
    /// prefix routes in FID-PRI order (lower first).
    LmaFlowBinding { mn_id: String, fid: u16, fid_pri: u16, selector: TrafficSelector, target: FlowTarget, up: bool },
    /// MAG: the tunnel to its LMA.
    MagTunnel { lma: Ipv6Addr, up: bool },
    /// MAG: downlink route for a prefix onto the point-to-point access link.
    MagRoute { prefix: Prefix, iface: String, up: bool },
    /// MAG: uplink from this source prefix goes into the tunnel.
    MagUplinkRule { prefix: Prefix, up: bool },
    /// MAG: send a Router Advertisement on an access link carrying exactly
    /// these prefixes (RFC 5213 §6.7).
    RouterAdvertisement { iface: String, prefixes: Vec<Prefix> },
    /// MN: an address on the logical interface.
    MnAddress { addr: Ipv6Addr, up: bool },
}

/// Something a role reports about what it did. The engine and the
/// daemons match on the kinds they act on; the rest is for the logs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", content = "text", rename_all = "snake_case")]
pub enum Event {
    /// What happened, for the logs.
    Note(String),
    /// A command the role could not carry out, and why: the caller reports
    /// it as a failed step, not as something that happened.
    CommandRefused(String),
}

impl Event {
    pub fn text(&self) -> &str {
        match self {
            Event::Note(t) | Event::CommandRefused(t) => t,
        }
    }
}

impl std::fmt::Display for Event {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.text())
    }
}

/// Everything one call to `handle` produced.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Output {
    pub transmits: Vec<Transmit>,
    pub intents: Vec<Intent>,
    pub events: Vec<Event>,
}

impl Output {
    /// Refuses the command being handled, saying why.
    pub fn refuse(&mut self, why: String) {
        self.events.push(Event::CommandRefused(why));
    }

    /// Why the command handled was refused, if it was.
    pub fn refused(&self) -> Option<&str> {
        self.events.iter().find_map(|e| match e {
            Event::CommandRefused(why) => Some(why.as_str()),
            Event::Note(_) => None,
        })
    }
    pub fn send(&mut self, src: Ipv6Addr, dst: Ipv6Addr, message: Message) {
        self.transmits.push(Transmit { src, dst, message });
    }
    pub fn event(&mut self, text: impl Into<String>) {
        self.events.push(Event::Note(text.into()));
    }
    pub fn extend(&mut self, other: Output) {
        self.transmits.extend(other.transmits);
        self.intents.extend(other.intents);
        self.events.extend(other.events);
    }
}

/// Emits the intents that turn `installed` into `desired`, then records
/// `desired` as installed. Removals come before additions.
pub(crate) fn reconcile<K: Ord + Clone, V: PartialEq + Clone>(
    installed: &mut std::collections::BTreeMap<K, V>,
    desired: std::collections::BTreeMap<K, V>,
    mut intent: impl FnMut(&K, &V, bool) -> Intent,
    out: &mut Output,
) {
    for (k, v) in installed.iter() {
        if desired.get(k) != Some(v) {
            out.intents.push(intent(k, v, false));
        }
    }
    for (k, v) in desired.iter() {
        if installed.get(k) != Some(v) {
            out.intents.push(intent(k, v, true));
        }
    }
    *installed = desired;
}
