//! The control socket: a Unix stream socket (mode 0600) speaking JSON
//! lines. One request per line, one reply per line.

use serde::{Deserialize, Serialize};

use pmip_proto::lma::LmaCommand;
use pmip_proto::Prefix;

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "cmd", rename_all = "snake_case")]
pub enum Request {
    /// Is the daemon up and listening?
    Ready,
    /// MAG: an MN interface came up on access link `iface`.
    Attach {
        iface: String,
        ll_id: Vec<u8>,
        att: u8,
        #[serde(default)]
        hi: Option<u8>,
        #[serde(default)]
        prefixes: Vec<Prefix>,
    },
    /// MAG: an MN interface went down.
    Detach {
        iface: String,
    },
    /// LMA: bind, move or unbind flows.
    Lma {
        command: LmaCommand,
    },
    /// Adds a userspace fault rule; the reply's state holds its id.
    FaultAdd {
        rule: crate::faults::FaultRule,
    },
    FaultRemove {
        id: u32,
    },
    /// CN or MN: sends probe datagrams of flow `flow` at `rate_pps`,
    /// `count` of them or until stopped.
    FlowStart(crate::probe::FlowSpec),
    FlowStop {
        flow: u16,
    },
    /// Sends `message` to `to` as this node sends its own (through its
    /// fault rules and message log): a conformance test's crafted message.
    Send {
        to: std::net::Ipv6Addr,
        message: pmip_wire::Message,
    },
    /// The state tables, the intents applied so far and the events.
    State,
    /// The protocol tables alone, with no kernel read: what a poll asks.
    Tables,
    Shutdown,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Reply {
    pub ok: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub state: Option<serde_json::Value>,
}

impl Reply {
    pub fn ok() -> Self {
        Reply { ok: true, error: None, state: None }
    }
    pub fn error(e: impl Into<String>) -> Self {
        Reply { ok: false, error: Some(e.into()), state: None }
    }
    pub fn state(v: serde_json::Value) -> Self {
        Reply { ok: true, error: None, state: Some(v) }
    }
}
