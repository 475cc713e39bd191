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
    Note(Note),
    /// A command the role could not carry out, and why: the caller reports
    /// it as a failed step, not as something that happened.
    CommandRefused(String),
}

impl Event {
    pub fn text(&self) -> &str {
        match self {
            Event::Note(n) => n.text(),
            Event::CommandRefused(t) => t,
        }
    }
}

impl std::fmt::Display for Event {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.text())
    }
}

/// The text of a note. The notes made on every message (a PBU accepted)
/// keep the values they are made of and are rendered on the first read,
/// so that a caller that drops them, as a busy daemon past its log budget
/// or a benchmark does, pays no formatting. Compared, printed and
/// serialized as its text.
#[derive(Clone)]
pub struct Note {
    what: NoteKind,
    rendered: std::sync::OnceLock<String>,
}

#[derive(Clone)]
enum NoteKind {
    Text(String),
    PbuAccepted(Box<PbuAccepted>),
}

/// "PBU seq {sequence} from {src} for {mn_id}: accepted, BID {bid}, HNPs
/// [{hnps}], lifetime {lifetime_secs} s".
#[derive(Clone)]
pub(crate) struct PbuAccepted {
    pub sequence: u16,
    pub src: Ipv6Addr,
    pub mn_id: Option<String>,
    pub bid: u16,
    pub hnps: Vec<Prefix>,
    pub lifetime_secs: u32,
}

impl Note {
    pub fn text(&self) -> &str {
        match &self.what {
            NoteKind::Text(t) => t,
            NoteKind::PbuAccepted(p) => self.rendered.get_or_init(|| {
                format!(
                    "PBU seq {} from {} for {}: accepted, BID {}, HNPs [{}], lifetime {} s",
                    p.sequence,
                    p.src,
                    p.mn_id.as_deref().unwrap_or("?"),
                    p.bid,
                    p.hnps.iter().map(|p| p.to_string()).collect::<Vec<_>>().join(", "),
                    p.lifetime_secs
                )
            }),
        }
    }
}

impl From<String> for Note {
    fn from(text: String) -> Self {
        Note { what: NoteKind::Text(text), rendered: std::sync::OnceLock::new() }
    }
}

impl From<PbuAccepted> for Note {
    fn from(p: PbuAccepted) -> Self {
        Note { what: NoteKind::PbuAccepted(Box::new(p)), rendered: std::sync::OnceLock::new() }
    }
}

impl PartialEq for Note {
    fn eq(&self, other: &Self) -> bool {
        self.text() == other.text()
    }
}

impl Eq for Note {}

impl std::fmt::Debug for Note {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        std::fmt::Debug::fmt(self.text(), f)
    }
}

impl std::fmt::Display for Note {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.text())
    }
}

impl Serialize for Note {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.text())
    }
}

impl<'de> Deserialize<'de> for Note {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        String::deserialize(d).map(Note::from)
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
        self.events.push(Event::Note(Note::from(text.into())));
    }
    /// A note rendered only when read (see [`Note`]).
    pub(crate) fn note(&mut self, note: impl Into<Note>) {
        self.events.push(Event::Note(note.into()));
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

#[cfg(test)]
mod tests {
    use super::*;

    fn accepted() -> PbuAccepted {
        PbuAccepted {
            sequence: 7,
            src: "2001:db8:ffff::11".parse().expect("an address"),
            mn_id: Some("mn1@pmip.lab".into()),
            bid: 1,
            hnps: vec!["2001:db8:1::/64".parse().expect("a prefix"), "2001:db8:2::/64".parse().expect("a prefix")],
            lifetime_secs: 400,
        }
    }

    /// A note rendered on read says, compares and serializes exactly as
    /// the eagerly formatted text it replaces.
    #[test]
    fn a_lazy_note_reads_as_its_text() {
        let text = "PBU seq 7 from 2001:db8:ffff::11 for mn1@pmip.lab: accepted, BID 1, \
                    HNPs [2001:db8:1::/64, 2001:db8:2::/64], lifetime 400 s";
        let mut out = Output::default();
        out.note(accepted());
        out.event(text);
        let [lazy, eager] = &out.events[..] else { panic!("two events expected") };
        assert_eq!(lazy.text(), text);
        assert_eq!(lazy.to_string(), text);
        assert_eq!(lazy, eager);
        assert_eq!(format!("{lazy:?}"), format!("{eager:?}"));
        let json = serde_json::to_string(lazy).expect("serializable");
        assert_eq!(json, serde_json::to_string(eager).expect("serializable"));
        assert_eq!(json, format!("{{\"kind\":\"note\",\"text\":\"{text}\"}}"));
        let back: Event = serde_json::from_str(&json).expect("deserializable");
        assert_eq!(&back, lazy);
        let mut unknown = accepted();
        unknown.mn_id = None;
        unknown.hnps.clear();
        assert_eq!(
            Note::from(unknown).text(),
            "PBU seq 7 from 2001:db8:ffff::11 for ?: accepted, BID 1, HNPs [], lifetime 400 s"
        );
    }
}
