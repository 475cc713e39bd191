//! The scenario format: one YAML file per conformance test, shaped like a
//! test plan (id, title, references, requires), with its topology, policy,
//! flows and steps. `load` parses and validates it; every error names the
//! file, line and column.

use std::collections::BTreeMap;
use std::fmt;
use std::net::Ipv6Addr;
use std::path::{Path, PathBuf};

use pmip_proto::lma::PrefixModel;
use pmip_proto::Prefix;
use pmip_wire::{AccessTechnologyType, HandoffIndicator};
use serde::Deserialize;
use serde_saphyr::{Location, Spanned};

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Scenario {
    pub id: String,
    pub title: String,
    #[serde(default)]
    pub references: Vec<String>,
    /// Features the scenario needs; a backend without one gives SKIP.
    #[serde(default)]
    pub requires: Vec<Spanned<String>>,
    #[serde(default)]
    pub wire: WireSettings,
    #[serde(default)]
    pub lma: LmaSettings,
    /// How the MAG–LMA signalling is protected.
    #[serde(default)]
    pub security: SecuritySettings,
    pub nodes: BTreeMap<String, Spanned<NodeSpec>>,
    #[serde(default)]
    pub links: Vec<Spanned<LinkSpec>>,
    #[serde(default)]
    pub flows: BTreeMap<String, Spanned<FlowSpec>>,
    pub steps: Vec<Spanned<Step>>,
    /// How the ladder diagram is drawn (`ladder.txt` is the same whatever
    /// this says).
    #[serde(default)]
    pub ladder: LadderSettings,
}

/// How a scenario's ladder diagram is drawn.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LadderSettings {
    /// Nodes in the order their columns go; by default CNs, the LMA,
    /// the MAGs, then the MNs.
    #[serde(default)]
    pub columns: Vec<Spanned<String>>,
    /// The widest a line of `ladder-diagram.txt` may be (default 72).
    pub width: Option<Spanned<usize>>,
    /// Shortens NAIs to their user part (`mn=mn1`).
    #[serde(default)]
    pub abbreviate: bool,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WireSettings {
    /// Which flow mobility signalling the LMA and MAGs speak.
    #[serde(default)]
    pub profile: Profile,
    /// MH type carrying the draft's FMI/FMA.
    #[serde(default = "experimental")]
    pub fmi_mh_type: u8,
}

/// The flow mobility signalling of a scenario.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
pub enum Profile {
    /// The flow mobility draft's FMI/FMA, on `fmi_mh_type`.
    #[default]
    #[serde(rename = "draft-fmi")]
    DraftFmi,
    /// RFC 7864: flow moves by UPN (Notification Reason FLOW-MOBILITY) and
    /// UPA; both backends play it (`pmip_wire::profile`).
    #[serde(rename = "rfc7864")]
    Rfc7864,
}

fn experimental() -> u8 {
    11
}

impl WireSettings {
    /// The codec settings the nodes of both backends use.
    pub fn config(&self) -> pmip_wire::WireConfig {
        let profile = match self.profile {
            Profile::DraftFmi => pmip_wire::Profile::DraftFmi,
            Profile::Rfc7864 => pmip_wire::Profile::Rfc7864,
        };
        pmip_wire::WireConfig { flow_mobility_mh_type: self.fmi_mh_type, profile }
    }
}

impl Default for WireSettings {
    fn default() -> Self {
        WireSettings { profile: Profile::default(), fmi_mh_type: experimental() }
    }
}

/// How a lab protects the signalling between its MAGs and LMAs.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SecuritySettings {
    /// ESP in transport mode (RFC 5213 §4, AES-GCM as in RFC 4106) with
    /// keys made for this lab, on unless turned off; namespaces only: in
    /// virtual time ESP is a property of the transport and the messages
    /// are the same.
    #[serde(default = "esp_on")]
    pub esp: Spanned<bool>,
}

fn esp_on() -> Spanned<bool> {
    Spanned::new(true, Location::UNKNOWN, Location::UNKNOWN)
}

impl Default for SecuritySettings {
    fn default() -> Self {
        SecuritySettings { esp: esp_on() }
    }
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LmaSettings {
    pub partial_handoff_hi: Option<u8>,
    pub revoke_on_partial_handoff: Option<bool>,
    pub delete_at_old_mag: Option<bool>,
    pub notify_shared_moves: Option<bool>,
    pub flow_lifetime_secs: Option<u16>,
    pub max_lifetime_secs: Option<u32>,
    pub use_timestamps: Option<bool>,
    /// RFC 5213 MinDelayBeforeBCEDelete, in milliseconds (default 10000).
    pub min_delay_before_bce_delete_ms: Option<u64>,
    /// First wait before the LMA sends an FMI or BRI again, in
    /// milliseconds, doubled for each repeat (RFC 6275 INITIAL_BINDACK_TIMEOUT;
    /// default 1000).
    pub initial_retransmit_ms: Option<std::num::NonZeroU64>,
    /// Heartbeats to the MAGs it has bindings with (RFC 5847).
    pub heartbeat: Option<HeartbeatSettings>,
    /// What happens to the bindings of a MAG the heartbeats find down.
    pub on_mag_down: Option<pmip_proto::lma::MagDownAction>,
    /// Whether the LMA grants the flows MAGs ask for in PBUs (default true).
    pub grant_flow_requests: Option<bool>,
    /// The 2-level prefix model's settings, for the MNs with
    /// `model: two-level` (draft-park-multihoming-ext-pmipv6-2level-prefix-01).
    pub two_level: Option<Spanned<TwoLevelSettings>>,
}

/// What the 2-level draft leaves open, chosen per scenario.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TwoLevelSettings {
    /// The LMA's pool of level-1 temporal prefixes. Before any session the
    /// LMA hands the MAGs, in name order, the 1st, 2nd, … prefix of
    /// `temporal_len` bits in it, and every MAG is told every MAG's (§3:
    /// "allocated by LMA to MAGs before initiation of mobility session").
    pub temporal_pool: Spanned<Prefix>,
    /// Length of a MAG's level-1 temporal prefix (default 48), shorter than
    /// the level-2 /64s the MAG carves out of it.
    #[serde(default = "forty_eight")]
    pub temporal_len: Spanned<u8>,
    /// How long an entry a flow handover left Idle is kept for a reverse
    /// handover (the draft: "for some time"), e.g. 30s; `never` keeps it
    /// until the MN's binding goes. Default 30s.
    #[serde(default = "thirty_seconds")]
    pub idle_lifetime: Spanned<String>,
}

fn forty_eight() -> Spanned<u8> {
    Spanned::new(48, Location::UNKNOWN, Location::UNKNOWN)
}
fn thirty_seconds() -> Spanned<String> {
    Spanned::new("30s".into(), Location::UNKNOWN, Location::UNKNOWN)
}

impl TwoLevelSettings {
    /// The core's configuration; `None` when a field is out of range (the
    /// validator says which).
    pub fn config(&self) -> Option<pmip_proto::two_level::TwoLevelConfig> {
        let idle_lifetime = match self.idle_lifetime.value.trim() {
            "never" => pmip_proto::two_level::NEVER,
            d => parse_duration(d)?,
        };
        let pool = self.temporal_pool.value;
        let len = self.temporal_len.value;
        (len > pool.prefix_len() && len < 64).then(|| pmip_proto::two_level::TwoLevelConfig {
            temporal_pool: pool,
            temporal_len: len,
            idle_lifetime,
            ..Default::default()
        })
    }
}

/// RFC 5847 HEARTBEAT_INTERVAL and MISSING_HEARTBEATS_ALLOWED, in units
/// that fit a run in real time.
#[derive(Debug, Clone, Copy, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HeartbeatSettings {
    pub interval_ms: std::num::NonZeroU64,
    #[serde(default = "three")]
    pub missing_allowed: u32,
}

fn three() -> u32 {
    3
}

impl HeartbeatSettings {
    pub fn config(&self) -> pmip_proto::heartbeat::HeartbeatConfig {
        pmip_proto::heartbeat::HeartbeatConfig {
            interval: pmip_proto::Span::from_millis(self.interval_ms.get()),
            missing_allowed: self.missing_allowed,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    Lma,
    Mag,
    Mn,
    Cn,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NodeSpec {
    pub role: Role,
    /// Assigned from the address plan when left out.
    pub address: Option<Ipv6Addr>,
    /// MN: its identifier (a NAI); defaults to `<name>@pmip.lab`.
    pub mn_id: Option<String>,
    #[serde(default)]
    pub interfaces: Vec<String>,
    pub model: Option<PrefixModel>,
    #[serde(default)]
    pub prefixes: Vec<Prefix>,
    #[serde(default)]
    pub shared_prefixes: Vec<Prefix>,
    pub per_attachment: Option<usize>,
    /// MAG: whether the LMA accepts its PBUs (false provokes 154).
    pub authorized: Option<bool>,
    /// MAG or LMA: played by an implementation under test, not by
    /// pmip-node (docs/implementation-under-test.md).
    #[serde(default, rename = "impl")]
    pub implementation: Option<Spanned<crate::iut::ImplSpec>>,
    /// MN: whether its policy profile enables proxy registration (false
    /// provokes 152).
    pub proxy_enabled: Option<bool>,
    /// MN: the LMA that serves it (the others answer 153); MAG: the LMA it
    /// sends its PBUs to. Both default to the first LMA in name order.
    pub lma: Option<Spanned<String>>,
    /// MAG: heartbeats to its LMA (RFC 5847).
    pub heartbeat: Option<HeartbeatSettings>,
}

/// Which MAG an MN interface attaches to, over which access technology.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LinkSpec {
    pub mn: Spanned<String>,
    pub mag: Spanned<String>,
    pub att: Spanned<String>,
    /// Flows the LMA's policy moves to this interface when it first
    /// registers, told to the MAG in the PBA (flow mobility draft §3.2).
    #[serde(default)]
    pub moved_on_attach: Vec<Spanned<String>>,
    /// Flows this interface's MAG asks the LMA for in its first PBU.
    #[serde(default)]
    pub requested_on_attach: Vec<Spanned<String>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FlowSpec {
    pub mn: Spanned<String>,
    #[serde(default = "default_cn")]
    pub cn: Spanned<String>,
    /// The MN prefix the flow is sent to (the MN's address in it).
    pub prefix: Prefix,
    #[serde(default = "udp")]
    pub proto: Spanned<String>,
    #[serde(default = "sport")]
    pub sport: u16,
    pub dport: u16,
}

fn default_cn() -> Spanned<String> {
    Spanned::new("cn".into(), Location::UNKNOWN, Location::UNKNOWN)
}
fn udp() -> Spanned<String> {
    Spanned::new("udp".into(), Location::UNKNOWN, Location::UNKNOWN)
}
fn sport() -> u16 {
    7000
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
pub enum Step {
    /// An MN interface comes up on the MAG its link names.
    Attach(AttachStep),
    /// An MN interface goes down (`mn/iface`).
    Detach(Spanned<String>),
    /// Puts a flow in the LMA's Flow Mobility Cache with no signalling.
    Bind(BindStep),
    /// The LMA moves a flow to another BID.
    Move(MoveStep),
    /// The LMA moves a prefix to another BID (FMI with an HNP option).
    MovePrefix(MovePrefixStep),
    /// The LMA removes a flow binding.
    Unbind(Spanned<String>),
    /// Drops the next messages of a kind.
    Drop(DropStep),
    /// Drops, delays, duplicates or reorders the next messages of a kind.
    Fault(FaultStep),
    /// Sets latency and loss between two nodes.
    Link(LinkStep),
    /// A MAG sends a PBU built by the test, not by its protocol core, to
    /// provoke the LMA's checks.
    Send(Box<SendPbu>),
    /// The LMA sends an FMI the test builds to a MAG, to provoke its
    /// FMA statuses.
    SendFmi(Box<SendFmi>),
    /// A CN or an MN puts a message on its own link with another node's
    /// source address, as an attacker would: the receiver must refuse it.
    Spoof(Box<SpoofStep>),
    /// The LMA or a MAG dies as in a crash (SIGKILL): its state is lost.
    Kill(Spanned<String>),
    /// A killed node starts again with its configuration and no state.
    Restart(Spanned<String>),
    /// The CN starts sending a flow's downlink at a rate, until stopped.
    StartFlow(StartFlow),
    /// Stops a started flow and checks what arrived where.
    StopFlow(StopFlow),
    /// Lets virtual time pass: "50ms", "2s", "5m".
    Wait(Spanned<String>),
    /// Waits until a message is seen or a state holds, at most `timeout`;
    /// a check that fails if the timeout passes first.
    WaitFor(Box<WaitFor>),
    ExpectMessage(ExpectMessage),
    ExpectFlow(ExpectFlow),
    ExpectUplink(ExpectUplink),
    ExpectState(ExpectState),
    /// Records the state tables under a name and checks them against the
    /// stored snapshot.
    Snapshot(String),
    /// 2-level model: the MAG of an MN interface carves a level-2 prefix
    /// out of its temporal prefix for a service of the MN and registers it
    /// with the LMA (PBU with HI 5).
    Carve(CarveStep),
    /// 2-level model: a flow handover to the MAG of `to`, which sends a PBU
    /// with HI 5 naming the level-2 prefixes (PFHO), another MAG's level-1
    /// temporal prefix (FFHO), or Idle ones of its own (reverse handover).
    FlowHandover(FlowHandoverStep),
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CarveStep {
    pub iface: Spanned<String>,
    pub service: Spanned<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FlowHandoverStep {
    pub to: Spanned<String>,
    pub prefixes: Vec<Spanned<Prefix>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AttachStep {
    pub iface: Spanned<String>,
    /// Handoff Indicator: a number, or new-interface, between-interfaces,
    /// between-mags, unknown, not-changed, partial.
    pub hi: Option<Spanned<String>>,
    #[serde(default)]
    pub prefixes: Vec<Prefix>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Granularity {
    /// Exactly this flow's 5-tuple.
    Flow,
    /// Every packet to the flow's prefix.
    Prefix,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BindStep {
    pub flow: Spanned<String>,
    pub fid: u16,
    pub fid_pri: u16,
    pub bids: Vec<u16>,
    #[serde(default = "forward")]
    pub action: Spanned<String>,
    #[serde(rename = "match", default = "flow_granularity")]
    pub granularity: Granularity,
    /// An explicit traffic selector instead of `match`.
    pub selector: Option<SelectorSpec>,
}

/// Fields of an RFC 6088 IPv6 selector; absent fields match anything.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SelectorSpec {
    pub dst: Option<Prefix>,
    pub src: Option<Prefix>,
    pub proto: Option<Spanned<String>>,
    pub sport: Option<u16>,
    pub dport: Option<u16>,
}

pub fn proto_number(s: &str) -> Option<u8> {
    match s {
        "udp" => Some(17),
        "tcp" => Some(6),
        n => n.parse().ok(),
    }
}

impl SelectorSpec {
    pub fn to_selector(&self) -> pmip_wire::TrafficSelector {
        let range = |p: &Option<Prefix>| match p {
            Some(p) if p.prefix_len() == 128 => (Some(p.addr()), None),
            Some(p) => (Some(p.addr()), Some(p.last())),
            None => (None, None),
        };
        let (start_dst, end_dst) = range(&self.dst);
        let (start_src, end_src) = range(&self.src);
        pmip_wire::TrafficSelector::Ipv6(pmip_wire::Ipv6Selector {
            start_src,
            end_src,
            start_dst,
            end_dst,
            start_next_header: self.proto.as_ref().and_then(|p| proto_number(&p.value)),
            start_src_port: self.sport,
            start_dst_port: self.dport,
            ..Default::default()
        })
    }
}

fn forward() -> Spanned<String> {
    Spanned::new("forward".into(), Location::UNKNOWN, Location::UNKNOWN)
}
fn flow_granularity() -> Granularity {
    Granularity::Flow
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MoveStep {
    pub flow: Spanned<String>,
    pub to_bid: u16,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MovePrefixStep {
    pub mn: Spanned<String>,
    pub prefix: Prefix,
    pub to_bid: u16,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DropStep {
    pub message: Spanned<String>,
    pub from: Option<Spanned<String>>,
    pub to: Option<Spanned<String>>,
    #[serde(default = "one")]
    pub count: u32,
}

fn one() -> u32 {
    1
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FaultStep {
    pub message: Spanned<String>,
    pub from: Option<Spanned<String>>,
    pub to: Option<Spanned<String>>,
    #[serde(default = "one")]
    pub count: u32,
    /// drop, delay, duplicate or reorder.
    pub action: Spanned<String>,
    /// How long a `delay` holds each message.
    pub delay_ms: Option<u64>,
}

/// The fault rule a `drop` or `fault` step installs; `None` for an action
/// the validator refuses.
pub fn fault_rule(
    message: &Spanned<String>,
    from: &Option<Spanned<String>>,
    to: &Option<Spanned<String>>,
    count: u32,
    action: &str,
    delay_ms: Option<u64>,
) -> Option<pmip_proto::fault::FaultRule> {
    use pmip_proto::fault::FaultAction;
    let action = match (action, delay_ms) {
        ("drop", None) => FaultAction::Drop,
        ("duplicate", None) => FaultAction::Duplicate,
        ("reorder", None) => FaultAction::Reorder,
        ("delay", Some(ms)) => FaultAction::Delay { ms },
        _ => return None,
    };
    Some(pmip_proto::fault::FaultRule {
        message: message.value.to_ascii_uppercase(),
        from: from.as_ref().map(|f| f.value.clone()),
        to: to.as_ref().map(|t| t.value.clone()),
        count,
        action,
    })
}

impl DropStep {
    pub fn rule(&self) -> Option<pmip_proto::fault::FaultRule> {
        fault_rule(&self.message, &self.from, &self.to, self.count, "drop", None)
    }
}

impl FaultStep {
    pub fn rule(&self) -> Option<pmip_proto::fault::FaultRule> {
        fault_rule(&self.message, &self.from, &self.to, self.count, &self.action.value, self.delay_ms)
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LinkStep {
    pub between: Spanned<Vec<String>>,
    #[serde(default)]
    pub latency_ms: u64,
    #[serde(default)]
    pub loss_per_mille: u16,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ExpectMessage {
    pub message: Spanned<String>,
    pub from: Option<Spanned<String>>,
    pub to: Option<Spanned<String>>,
    /// Fields as they read in the message summary, e.g. "status=0", "hi=6".
    #[serde(default)]
    pub with: Vec<String>,
    /// Exactly this many (delivered, not dropped); at least one if absent.
    pub count: Option<usize>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ExpectFlow {
    pub flow: Spanned<String>,
    /// `mn/iface` where the downlink must arrive; absent when `dropped`.
    pub arrives_on: Option<Spanned<String>>,
    #[serde(default)]
    pub dropped: bool,
    #[serde(default = "one")]
    pub packets: u32,
    #[serde(default)]
    pub max_lost: u32,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ExpectUplink {
    pub flow: Spanned<String>,
    pub leaves_on: Spanned<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ExpectState {
    pub node: Spanned<String>,
    /// A JSON pointer into the node's state tables, e.g. `/binding_cache/0/proxy_coa`.
    pub path: String,
    pub equals: Option<serde_json::Value>,
    pub len: Option<usize>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SendPbu {
    /// The MN interface (`mn/iface`) the PBU is about: its MN-ID, link-layer
    /// identifier and access technology; sent by that link's MAG unless
    /// `from` names another.
    pub pbu: Spanned<String>,
    pub from: Option<Spanned<String>>,
    #[serde(default = "crafted_seq")]
    pub seq: u16,
    /// In units of 4 s (default 100); 0 de-registers.
    #[serde(default = "crafted_lifetime")]
    pub lifetime: u16,
    /// The Home Network Prefix option's value (default ::/0, "assign one").
    pub hnp: Option<Prefix>,
    /// The Handoff Indicator (default new-interface).
    pub hi: Option<Spanned<String>>,
    /// Options to leave out: mn-id, hnp, hi, att, ll-id, timestamp.
    #[serde(default)]
    pub omit: Vec<Spanned<String>>,
    /// Moves the Timestamp away from now, e.g. -10000 for 10 s old.
    #[serde(default)]
    pub timestamp_shift_ms: i64,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SendFmi {
    /// The MAG it goes to.
    pub to: Spanned<String>,
    /// The MN whose MN-ID it carries, unless `mn_id` gives another.
    pub mn: Spanned<String>,
    pub mn_id: Option<String>,
    #[serde(default = "crafted_seq")]
    pub seq: u16,
    /// add, del (the C flag) or refresh (the R flag).
    #[serde(default = "op_add")]
    pub op: Spanned<String>,
    /// Seconds (default 300).
    #[serde(default = "fmi_lifetime")]
    pub lifetime: u16,
    pub fid: u16,
    #[serde(default = "fid_pri")]
    pub fid_pri: u16,
    /// The flow: packets to this prefix.
    pub dst: Prefix,
    /// An RFC 6088 IPv4 selector instead, which a MAG of IPv6 MNs cannot
    /// take (FMA status 131).
    #[serde(default)]
    pub ipv4_selector: bool,
    /// No MN Identifier option at all.
    #[serde(default)]
    pub omit_mn_id: bool,
}

/// A message a CN or an MN sends with a forged source address.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SpoofStep {
    /// The CN or MN that sends it, over its one link to `to`: a CN's link
    /// to the LMA, an MN's access link to that MAG (`mn` or `mn/iface`).
    pub from: Spanned<String>,
    /// The node whose address it carries as its source.
    #[serde(rename = "as")]
    pub as_node: Spanned<String>,
    /// The node it is addressed to.
    pub to: Spanned<String>,
    /// The message, written as the step that builds it would be.
    pub message: SpoofMessage,
}

impl SpoofStep {
    /// The sending node's name, without an interface (`mn1/if2` → `mn1`),
    /// where `from` stands in the file.
    pub fn from_node(&self) -> Spanned<String> {
        let name = self.from.value.split_once('/').map_or(self.from.value.as_str(), |(n, _)| n);
        Spanned::new(name.to_string(), self.from.referenced, self.from.defined)
    }
}

/// The message of a `spoof` step: `send`'s PBU, `send_fmi`'s FMI, or a
/// BRI.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
pub enum SpoofMessage {
    /// A PBU as a `send` step builds it (`from` is the spoof's).
    Send(Box<SendPbu>),
    /// An FMI as a `send_fmi` step builds it (its `to` is the spoof's).
    SendFmi(Box<SendFmi>),
    /// A Binding Revocation Indication.
    Bri(SendBri),
}

/// A BRI the test builds: the MN's MN-ID, a revocation trigger, and the
/// P (proxy) flag set, as an LMA sends one to revoke a whole binding.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SendBri {
    /// The MN whose MN-ID it carries.
    pub mn: Spanned<String>,
    #[serde(default = "crafted_seq")]
    pub seq: u16,
    /// The revocation trigger (RFC 5846 §8; default 1, administrative reason).
    #[serde(default = "one_u8")]
    pub trigger: u8,
}

fn one_u8() -> u8 {
    1
}

fn op_add() -> Spanned<String> {
    Spanned::new("add".into(), Location::UNKNOWN, Location::UNKNOWN)
}
fn fmi_lifetime() -> u16 {
    300
}
fn fid_pri() -> u16 {
    10
}

fn crafted_seq() -> u16 {
    900
}
fn crafted_lifetime() -> u16 {
    100
}

/// The options `send` may leave out.
pub const OMITTABLE: [&str; 6] = ["mn-id", "hnp", "hi", "att", "ll-id", "timestamp"];

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StartFlow {
    pub flow: Spanned<String>,
    /// Packets per second (default 1000).
    #[serde(default = "thousand")]
    pub rate_pps: Spanned<u32>,
    /// `downlink` (CN to MN, the default) or `uplink` (MN to CN).
    #[serde(default)]
    pub direction: Direction,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Direction {
    #[default]
    Downlink,
    Uplink,
}

impl Direction {
    pub fn name(self) -> &'static str {
        match self {
            Direction::Downlink => "downlink",
            Direction::Uplink => "uplink",
        }
    }
}

fn thousand() -> Spanned<u32> {
    Spanned::new(1000, Location::UNKNOWN, Location::UNKNOWN)
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StopFlow {
    pub flow: Spanned<String>,
    /// Which of the flow's runs to stop (default downlink).
    #[serde(default)]
    pub direction: Direction,
    /// Packets sent but never received that the check allows.
    #[serde(default)]
    pub max_lost: u64,
    /// Downlink: the MN interfaces (`mn/iface`) the flow must have arrived
    /// on, in the order it first arrived on each; any when absent.
    #[serde(default)]
    pub arrived_on: Vec<Spanned<String>>,
    /// Uplink: the MN interfaces the flow must have left on, in order.
    #[serde(default)]
    pub left_on: Vec<Spanned<String>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WaitFor {
    /// A message predicate, as `expect_message` reads it.
    pub seen: Option<ExpectMessage>,
    /// A state predicate, as `expect_state` reads it.
    pub holds: Option<ExpectState>,
    /// The bound: "500ms", "5s" (default 5s).
    #[serde(default = "five_seconds")]
    pub timeout: Spanned<String>,
}

fn five_seconds() -> Spanned<String> {
    Spanned::new("5s".into(), Location::UNKNOWN, Location::UNKNOWN)
}

/// A scenario error a user can fix, with where it is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScenarioError {
    pub file: PathBuf,
    pub line: u64,
    pub column: u64,
    pub message: String,
}

impl fmt::Display for ScenarioError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}:{}: {}", self.file.display(), self.line, self.column, self.message)
    }
}

impl std::error::Error for ScenarioError {}

/// Parses a wait or a bound: a number and a unit (`50ms`, `2s`, `5m`,
/// `5min`, also `1m 30s`), read by `humantime`; microseconds at most.
pub fn parse_duration(s: &str) -> Option<pmip_proto::Span> {
    let d = humantime::parse_duration(s.trim()).ok()?;
    Some(pmip_proto::Span(u64::try_from(d.as_micros()).ok()?))
}

pub fn parse_att(s: &str) -> Option<AccessTechnologyType> {
    use AccessTechnologyType::*;
    Some(match s.to_ascii_lowercase().as_str() {
        "virtual" => Virtual,
        "ppp" => Ppp,
        "ethernet" | "802.3" => Ieee8023,
        "wifi" | "802.11" => Ieee80211,
        "wimax" | "802.16e" => Ieee80216e,
        "geran" => Geran,
        "utran" => Utran,
        "e-utran" | "lte" | "3gpp" => EUtran,
        "ehrpd" => EHrpd,
        "hrpd" => Hrpd,
        "1xrtt" => OneXRtt,
        "umb" => Umb,
        other => return other.parse::<u8>().ok().map(AccessTechnologyType::from),
    })
}

pub fn parse_hi(s: &str) -> Option<HandoffIndicator> {
    use HandoffIndicator::*;
    Some(match s {
        "new-interface" => NewInterface,
        "between-interfaces" => BetweenInterfaces,
        "between-mags" => BetweenMags,
        "unknown" => HandoffStateUnknown,
        "not-changed" => NotChanged,
        "partial" | "new-interface-sharing-prefixes" => NewInterfaceSharingPrefixes,
        other => return other.parse::<u8>().ok().map(HandoffIndicator::from),
    })
}

pub const MESSAGE_NAMES: [&str; 11] =
    ["PBU", "PBA", "BRI", "BRA", "FMI", "FMA", "UPN", "UPA", "HB-REQ", "HB-RESP", "MH-UNKNOWN"];

/// Reads, parses and validates a scenario file.
pub fn load(path: &Path) -> Result<Scenario, ScenarioError> {
    let text = std::fs::read_to_string(path).map_err(|e| ScenarioError {
        file: path.into(),
        line: 1,
        column: 1,
        message: format!("cannot read the scenario: {e}"),
    })?;
    parse(path, &text)
}

/// Parses and validates scenario text; `path` is only for messages. The
/// first problem is the error; `validate::check_text` gives them all.
pub fn parse(path: &Path, text: &str) -> Result<Scenario, ScenarioError> {
    crate::validate::check_text(path, text).map_err(|mut all| all.swap_remove(0))
}

/// Parses scenario text into the format's types, with no further check.
pub fn parse_only(path: &Path, text: &str) -> Result<Scenario, ScenarioError> {
    let s: Scenario = serde_saphyr::from_str(text).map_err(|e| {
        let (line, column) = e.location().map(|l| (l.line(), l.column())).unwrap_or((0, 0));
        let first = e.to_string().lines().next().unwrap_or_default().to_string();
        // "error: line L column C: what" -> "what"
        let message =
            first.split_once(": ").and_then(|(_, r)| r.split_once(": ").map(|(_, m)| m.to_string())).unwrap_or(first);
        ScenarioError { file: path.into(), line: line.max(1), column: column.max(1), message }
    })?;
    Ok(s)
}
