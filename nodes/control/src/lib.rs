//! The control protocol of `pmip-node`: one JSON object per line on a Unix
//! stream socket (mode 0600), a request in, a reply out. The daemon and
//! the harness share these types, so neither writes or reads the protocol
//! by hand.

use std::collections::BTreeMap;
use std::net::Ipv6Addr;

use pmip_proto::lma::LmaCommand;
use pmip_proto::{Intent, Prefix};
use serde::{Deserialize, Serialize};

pub mod handover;

/// What a fault rule does to a message it takes: the same actions as in
/// virtual time, so a scenario's fault means one thing in both backends.
pub use pmip_proto::fault::FaultAction;

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
    /// MAG, 2-level prefix model: carve a level-2 prefix for a service of
    /// the MN interface `ll_id` and register it (PBU with HI 5).
    TwoLevelCarve {
        ll_id: Vec<u8>,
        service: String,
    },
    /// MAG, 2-level prefix model: take the flows within `prefixes` for the
    /// MN interface `ll_id` (PBU with HI 5: PFHO, FFHO or a reverse one).
    TwoLevelTake {
        ll_id: Vec<u8>,
        prefixes: Vec<Prefix>,
    },
    /// MAG, 2-level prefix model: the L2 hint that the MN's flows within
    /// `prefixes` left this MAG; its entries are kept Idle.
    TwoLevelHint {
        mn_id: String,
        prefixes: Vec<Prefix>,
    },
    /// LMA: bind, move or unbind flows; an error reply when the LMA refuses.
    Lma {
        command: LmaCommand,
    },
    /// Adds a userspace fault rule; the reply's state is a [`FaultAdded`].
    FaultAdd {
        rule: FaultRule,
    },
    FaultRemove {
        id: u32,
    },
    /// CN or MN: sends probe datagrams of flow `flow` at `rate_pps`,
    /// `count` of them or until stopped.
    FlowStart(FlowSpec),
    FlowStop {
        flow: u16,
    },
    /// Sends `message` to `to` as this node sends its own (through its
    /// fault rules and message log): a conformance test's crafted message.
    Send {
        to: Ipv6Addr,
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

    /// The state as `T`, or why not: a refusal, or a state of another shape.
    pub fn into_state<T: serde::de::DeserializeOwned>(self) -> Result<T, String> {
        if !self.ok {
            return Err(self.error.unwrap_or_else(|| "refused with no reason given".into()));
        }
        serde_json::from_value(self.state.unwrap_or_default()).map_err(|e| format!("a reply of another shape: {e}"))
    }

    /// Success, or the refusal's reason.
    pub fn into_result(self) -> Result<(), String> {
        if self.ok {
            Ok(())
        } else {
            Err(self.error.unwrap_or_else(|| "refused with no reason given".into()))
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Direction {
    In,
    Out,
}

/// A userspace fault rule: drop, delay, duplicate or reorder signalling
/// of a kind in one direction, or drop or duplicate a share of tunnelled
/// data packets.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FaultRule {
    #[serde(default)]
    pub id: u32,
    pub direction: Direction,
    /// A signalling message kind (PBU, PBA, FMI, …); absent for any.
    #[serde(default)]
    pub message: Option<String>,
    /// Only messages to (direction out) or from (direction in) this
    /// address; any peer when absent. A rule `{from: lma, to: mag1}` thus
    /// never touches what the LMA sends to mag2.
    #[serde(default)]
    pub peer: Option<Ipv6Addr>,
    /// Applies to tunnelled data packets instead of signalling (drop and
    /// duplicate only).
    #[serde(default)]
    pub data: bool,
    pub action: FaultAction,
    /// Applies to this many matches, then stops; absent for no limit.
    #[serde(default)]
    pub count: Option<u32>,
    /// Applies to this share of matches, in parts per thousand; absent for all.
    #[serde(default)]
    pub per_mille: Option<u16>,
    #[serde(default)]
    pub hits: u64,
}

/// The reply to [`Request::FaultAdd`].
#[derive(Debug, Clone, Copy, Serialize, Deserialize)]
pub struct FaultAdded {
    pub id: u32,
}

/// A probe flow to send: `count` datagrams (or until stopped) at `rate_pps`.
#[derive(Debug, Clone, Copy, Serialize, Deserialize)]
pub struct FlowSpec {
    pub flow: u16,
    pub src: Ipv6Addr,
    pub dst: Ipv6Addr,
    pub sport: u16,
    pub dport: u16,
    pub rate_pps: u32,
    #[serde(default)]
    pub count: Option<u32>,
    /// 17 (UDP, the default) or 6: TCP-shaped segments for selectors that
    /// match on the protocol (no connection is made).
    #[serde(default)]
    pub proto: Option<u8>,
}

impl FlowSpec {
    pub fn interval(&self) -> std::time::Duration {
        std::time::Duration::from_micros(1_000_000 / u64::from(self.rate_pps.max(1)))
    }
}

/// What a receiver counted of one probe flow: the part a check reads.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct ProbeCounts {
    pub received: u64,
    /// Packets per arrival interface.
    #[serde(default)]
    pub by_interface: BTreeMap<String, u64>,
    /// The interfaces in the order the flow first arrived on each.
    #[serde(default)]
    pub arrival_order: Vec<String>,
}

/// A receiver's report on one probe flow.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct ProbeReport {
    pub stats: ProbeCounts,
}

/// The state an LMA or a MAG daemon reports: its tables and what it has
/// done, as diagnosis.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct NodeState {
    #[serde(default)]
    pub tables: serde_json::Value,
    /// Every data-plane intent applied, in order (a ring past its cap).
    #[serde(default)]
    pub intents: Vec<Intent>,
    #[serde(default)]
    pub data_plane: DataPlaneState,
}

#[derive(Debug, Clone, Default, Deserialize)]
pub struct DataPlaneState {
    /// What the data plane did with packets, by what happened.
    #[serde(default)]
    pub counters: BTreeMap<String, u64>,
}

/// The state an MN daemon reports: its tables, counters and the probes it
/// took and sent.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct MnState {
    #[serde(default)]
    pub tables: serde_json::Value,
    /// What happened to frames and packets, by what happened ("RA taken on
    /// if1", "uplink via if2", …).
    #[serde(default)]
    pub counters: BTreeMap<String, u64>,
    /// Downlink probes taken, by probe flow.
    #[serde(default)]
    pub probes: BTreeMap<u16, ProbeReport>,
    /// Uplink probes sent, by probe flow.
    #[serde(default)]
    pub sent: BTreeMap<u16, u64>,
    /// Per uplink probe flow, the interfaces it left on and how often, in order.
    #[serde(default)]
    pub left_on: BTreeMap<u16, Vec<(String, u64)>>,
}

/// The state a CN daemon reports.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct CnState {
    /// Downlink probes sent, by probe flow.
    #[serde(default)]
    pub sent: BTreeMap<u16, u64>,
    /// Uplink probes taken, by probe flow.
    #[serde(default)]
    pub received: BTreeMap<u16, ProbeReport>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_are_json_lines_tagged_by_cmd() {
        let r = Request::FlowStop { flow: 7 };
        assert_eq!(serde_json::to_string(&r).unwrap(), r#"{"cmd":"flow_stop","flow":7}"#);
        let back: Request = serde_json::from_str(r#"{"cmd":"tables"}"#).unwrap();
        assert!(matches!(back, Request::Tables));
    }

    #[test]
    fn a_refusal_reads_as_its_reason() {
        assert_eq!(Reply::error("no such flow").into_result(), Err("no such flow".to_string()));
        let added: FaultAdded = Reply::state(serde_json::json!({"id": 3})).into_state().unwrap();
        assert_eq!(added.id, 3);
        assert!(Reply::state(serde_json::json!({"id": "x"})).into_state::<FaultAdded>().is_err());
    }

    #[test]
    fn a_probe_report_reads_keys_as_flow_numbers() {
        let st: MnState = serde_json::from_value(serde_json::json!({
            "probes": {"101": {"stats": {"received": 2, "by_interface": {"if1": 2}, "arrival_order": ["if1"], "reordered": 0}, "lost": 0}},
            "left_on": {"102": [["if2", 1]]},
            "counters": {"RA taken on if1": 1}
        }))
        .unwrap();
        assert_eq!(st.probes[&101].stats.by_interface["if1"], 2);
        assert_eq!(st.left_on[&102], [("if2".to_string(), 1)]);
    }
}
