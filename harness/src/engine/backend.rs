//! What a backend does for the engine: carry out events and report what
//! it observed. A backend holds no step semantics and writes no check; it
//! answers in plain values that the engine judges.

use std::net::Ipv6Addr;
use std::path::Path;

use pmip_proto::fault::FaultRule;
use pmip_proto::lma::LmaCommand;
use pmip_proto::{FlowKey, Prefix, Span};
use pmip_wire::{AccessTechnologyType, HandoffIndicator, Message};
use serde::Serialize;

use crate::report::ScenarioReport;
use crate::running_flows::FlowAccount;
use crate::scenario::{Direction, Step};

/// One Mobility Header message as an outside observer saw it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Observed {
    /// Milliseconds since the backend started.
    pub at_ms: u64,
    pub from: String,
    pub to: String,
    /// The decoded message, as `pmip_wire::Message::summary` writes it.
    pub summary: String,
    /// It crossed the link between sender and receiver.
    pub on_wire: bool,
    /// Its receiver took it in: on the wire, not lost, and not dropped by
    /// a fault at the receiver.
    pub delivered: bool,
}

impl Observed {
    /// The message kind: the summary's first word (PBU, FMA, …).
    pub fn kind(&self) -> &str {
        self.summary.split(' ').next().unwrap_or("")
    }

    /// The ladder line, `12ms mag1 -> lma PBU seq=1 lifetime=400s …`, with
    /// `(dropped)` for a message its receiver never took in (see
    /// [`super::ladder::message_line`]).
    pub fn ladder_line(&self) -> String {
        super::ladder::message_line(self)
    }
}

/// What the engine reads while it waits or checks.
pub trait Observe {
    /// Every signalling message observed so far, in the order seen.
    fn messages(&mut self) -> Vec<Observed>;
    /// A node's protocol tables as the node reports them: diagnosis, and
    /// what `expect_state` reads.
    fn tables(&mut self, node: &str) -> Result<serde_json::Value, String>;
    /// Whether no signalling is on its way: nothing crossing a link, so a
    /// node has nothing more to answer to what happened.
    fn quiet(&mut self) -> bool;
    /// Whether the wire has been still for a short while, far shorter than
    /// `quiet` waits, with nothing else pending that the backend knows of:
    /// the engine ends a settle on it only when the messages seen are
    /// exactly what the model run alongside had seen by the same step's
    /// settle. A backend with no such notion says no.
    fn quiet_briefly(&mut self) -> bool {
        false
    }
    /// Whether `node` is an implementation under test, whose own tables
    /// cannot be read: checks of them are not observable.
    fn under_test(&self, _node: &str) -> bool {
        false
    }
}

/// An MN interface coming up on the MAG its link names.
#[derive(Debug, Clone)]
pub struct Attachment {
    pub mn: String,
    pub iface: String,
    pub mag: String,
    /// The MAG's end of the access link.
    pub port: String,
    pub att: AccessTechnologyType,
    /// A Handoff Indicator the MAG is told to use instead of its own.
    pub hi: Option<HandoffIndicator>,
    /// Prefixes the MAG is told to request instead of letting the LMA assign.
    pub prefixes: Vec<Prefix>,
}

/// A flow the engine runs at a rate (`start_flow` … `stop_flow`).
#[derive(Debug, Clone)]
pub struct FlowRun {
    pub flow: String,
    pub direction: Direction,
    pub cn: String,
    pub mn: String,
    /// The downlink 5-tuple (CN → MN); uplink sends its reverse.
    pub key: FlowKey,
    pub rate_pps: u32,
}

/// What became of probe packets sent down a flow.
#[derive(Debug, Clone, Default)]
pub struct DownlinkProbe {
    pub sent: u32,
    /// Packets per MN interface (`mn/iface`) they arrived on.
    pub by_interface: Vec<(String, u64)>,
    /// Where the packets went, for the check's detail.
    pub trace: String,
}

/// What became of one uplink packet.
#[derive(Debug, Clone, Default)]
pub struct UplinkProbe {
    /// The MN interfaces (`mn/iface`) it left on.
    pub left_on: Vec<String>,
    /// Whether the CN received it.
    pub reached_cn: bool,
    pub trace: String,
}

/// What a backend can play, known before it builds anything.
pub trait Capabilities {
    /// The features a scenario may require of this backend.
    fn features(&self) -> &'static [&'static str];
    /// Why this backend cannot play `step` (at `line`) at all: the
    /// scenario SKIPs.
    fn cannot_play(&self, step: &Step, line: u64) -> Option<String>;
}

/// A lab the engine plays a scenario on: the virtual World, or namespaces
/// with real daemons.
pub trait Backend: Observe + Capabilities {
    /// `virtual` or `namespaces`, as reports name it.
    fn name(&self) -> &'static str;
    /// Milliseconds since the backend started: virtual or real time.
    fn elapsed_ms(&mut self) -> u64;

    /// Brings the MN interface up; returns once the link is up.
    fn attach(&mut self, a: &Attachment) -> Result<(), String>;
    /// Takes the MN interface down; returns once the link is down.
    fn detach(&mut self, mn: &str, iface: &str) -> Result<(), String>;
    /// 2-level model: the MAG of `mn/iface` carves a level-2 prefix for
    /// `service` and registers it (PBU with HI 5).
    fn carve(&mut self, mn: &str, iface: &str, service: &str) -> Result<(), String>;
    /// 2-level model: the MAG of `mn/iface` takes the flows within
    /// `prefixes` (PBU with HI 5); the other MAGs get the L2 hint that
    /// they left.
    fn flow_handover(&mut self, mn: &str, iface: &str, prefixes: &[Prefix]) -> Result<(), String>;
    /// Hands the LMA a command; `Err` when the LMA refused it.
    fn lma_command(&mut self, c: LmaCommand) -> Result<(), String>;
    /// The Timestamp option's clock (RFC 5213 §5.5) now, in microseconds.
    fn timestamp_now(&mut self) -> u64;
    /// Sends a message built by the test from `from`'s address to `to`,
    /// through `from`'s own transport and fault rules.
    fn inject(&mut self, from: &str, to: Ipv6Addr, message: Message) -> Result<(), String>;
    /// Puts `message`, with the forged source `src`, on `link` from its
    /// sender (a CN or an MN) to `dst` at its receiver, as an attacker on
    /// that link would: no fault rule and no node's transport touches it,
    /// and it arrives on that link, not on the receiver's signalling side.
    fn spoof(
        &mut self,
        link: &crate::plan::SpoofLink,
        src: Ipv6Addr,
        dst: Ipv6Addr,
        message: Message,
    ) -> Result<(), String>;
    /// Installs a fault rule with the meaning [`FaultRule`] gives it.
    fn add_fault(&mut self, rule: FaultRule) -> Result<(), String>;
    /// Sets latency and loss between two nodes.
    fn set_link(&mut self, a: &str, b: &str, latency_ms: u64, loss_per_mille: u16) -> Result<(), String>;
    /// The LMA or a MAG dies as in a crash.
    fn kill(&mut self, node: &str) -> Result<(), String>;
    /// A killed node starts again with its configuration and no state.
    fn restart(&mut self, node: &str) -> Result<(), String>;
    fn start_flow(&mut self, run: &FlowRun) -> Result<(), String>;
    /// Stops a started flow, lets what is in flight arrive (at most a
    /// second) and says what arrived where.
    fn stop_flow(&mut self, run: &FlowRun) -> Result<FlowAccount, String>;
    /// Sends `packets` downlink probes and reports where they arrived;
    /// `expect_none` shortens the wait for packets that should not come.
    fn probe_downlink(&mut self, run: &FlowRun, packets: u32, expect_none: bool) -> Result<DownlinkProbe, String>;
    /// Sends one uplink packet of the flow and reports which way it left.
    fn probe_uplink(&mut self, run: &FlowRun) -> Result<UplinkProbe, String>;
    /// Lets time pass until `until` holds, checked after every change, or
    /// until `limit` has passed; true when it held.
    fn wait(&mut self, limit: Span, until: &mut dyn FnMut(&mut dyn Observe) -> bool) -> bool;
    /// The node's forwarding state as the kernel holds it (namespaces) or
    /// as the model's data plane holds it (virtual), in one normal form.
    fn kernel(&mut self, node: &str) -> Result<crate::forwarding::KernelSection, String>;
    /// The forwarding the node's own protocol tables imply, in the same
    /// form, where the backend can tell; `None` where it cannot.
    fn implied_kernel(&mut self, node: &str) -> Option<crate::forwarding::KernelSection>;
    /// Ends the run: logs, events and captures go into the report and
    /// under `out`.
    fn finish(&mut self, out: Option<&Path>, report: &mut ScenarioReport);
}
