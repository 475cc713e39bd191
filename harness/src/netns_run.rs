//! The namespace backend: one `pmip-node` daemon per node in network
//! namespaces, real packets on veth links, every link captured. It carries
//! out what the engine asks and reports what an outside observer sees: the
//! signalling decoded live from the captures, and each node's forwarding
//! read from its kernel. The daemons' own logs and tables are diagnosis
//! and what `expect_state` reads; no message check reads them.

use std::collections::BTreeMap;
use std::net::Ipv6Addr;
use std::path::{Path, PathBuf};
use std::sync::mpsc;
use std::time::{Duration, Instant as WallClock, SystemTime, UNIX_EPOCH};

use pmip_captures::capture::Sighting;
use pmip_captures::sequence::SequenceEntry;
use pmip_control::{CnState, Direction as FaultDirection, FlowSpec, MnState, NodeState, Reply, Request};
use pmip_proto::fault::FaultRule;
use pmip_proto::lma::LmaCommand;
use pmip_proto::world::mac_for;
use pmip_proto::Span;
use pmip_wire::{lax, Endpoints, Message, WireConfig};
use serde_json::{json, Value};

use crate::engine::{self, Attachment, Backend, DownlinkProbe, FlowRun, Judging, Observe, Observed, UplinkProbe};
use crate::forwarding::KernelSection;
use crate::lab::Lab;
use crate::plan::{self, access_iface, AddressPlan};
use crate::report::{Check, ScenarioReport};
use crate::running_flows::FlowAccount;
use crate::scenario::*;

pub use crate::plan::NETNS_FEATURES as FEATURES;

/// How long a daemon may take to come up, or a probe's packets to arrive.
const LIMIT: Duration = Duration::from_secs(10);
/// Signalling is on its way while a frame was seen within this window:
/// round trips between namespaces take well under a millisecond, and this
/// leaves room for two labs sharing two cores.
const QUIET: Duration = Duration::from_millis(100);
/// After an attach or a detach, with the model run alongside, the wire is
/// taken as settled once it carries exactly what the model's did when
/// the same step settled, nothing is due (see `engine::answers`), every
/// attached MN has been sent its Router Advertisement and applied it, and
/// no signalling frame has come for this long: only a message the model
/// never sent could still be on its way, and the run's wire is compared
/// with the model's anyway.
const BRIEFLY: Duration = Duration::from_millis(10);
/// How long `attach` waits for the MN's Router Solicitation, the sign
/// that its link is up.
const LINK_UP_LIMIT: Duration = Duration::from_secs(3);
/// Longest `wait` played in real time.
const MAX_WAIT: Duration = Duration::from_secs(8);
/// How often a wait looks again.
const POLL: Duration = Duration::from_millis(5);

/// Why the namespace backend cannot play `step`: it needs virtual time.
pub fn cannot_play(step: &Step, line: u64) -> Option<String> {
    let too_long = |d: &str| parse_duration(d).is_some_and(|d| d.0 > MAX_WAIT.as_micros() as u64);
    match step {
        Step::Wait(w) if too_long(&w.value) => Some(format!("a wait of {} (line {line}) needs virtual time", w.value)),
        Step::WaitFor(w) if too_long(&w.timeout.value) => {
            Some(format!("a wait_for bound of {} (line {line}) needs virtual time", w.timeout.value))
        }
        Step::Link(_) => Some(format!("link latency and loss (line {line}) need virtual time")),
        _ => None,
    }
}

/// Plays `s` in namespaces with the daemon binary `node_bin`.
pub fn run(file: &Path, s: &Scenario, node_bin: &Path, judging: Judging<'_>) -> ScenarioReport {
    run_prepared(file, s, node_bin, judging, &mut |_| Ok(()))
}

/// [`run`], with `prepare` given the lab once it is built and before the
/// first step: for tests that change a lab behind the engine's back.
pub fn run_prepared(
    file: &Path,
    s: &Scenario,
    node_bin: &Path,
    judging: Judging<'_>,
    prepare: &mut dyn FnMut(&Lab) -> Result<(), String>,
) -> ScenarioReport {
    // A scenario that will SKIP builds no lab.
    if let Some(why) = engine::skip_reason(s, &SkipProbe(s)) {
        let mut report = ScenarioReport::new(file, s, "namespaces");
        report.verdict = crate::report::Verdict::Skip;
        report.reason = Some(why);
        return report;
    }
    let built = Lab::new().map_err(|e| e.to_string()).and_then(|lab| build(lab, s, node_bin, true));
    match built.and_then(|r| prepare(&r.lab).map(|()| r)) {
        Ok(mut r) => engine::play(file, s, &mut r, judging),
        Err(e) => ScenarioReport::new(file, s, "namespaces").lab_failed(e),
    }
}

/// The namespace backend's features and limits, before any lab exists.
struct SkipProbe<'a>(&'a Scenario);

impl engine::Capabilities for SkipProbe<'_> {
    fn features(&self) -> &'static [&'static str] {
        &FEATURES
    }
    fn cannot_play(&self, step: &Step, line: u64) -> Option<String> {
        cannot_play(step, line).or_else(|| crate::iut::cannot_play(self.0, step, line))
    }
}

/// Builds the scenario's namespaces and links in `lab`, with no daemon:
/// the core segment, each CN behind the LMA, and each MN interface's link
/// to its MAG, down until attached.
pub(crate) fn build_links(mut lab: Lab, s: &Scenario) -> Result<(Lab, AddressPlan), String> {
    let e = |x: std::io::Error| x.to_string();
    let plan = plan::address_plan(s);
    for name in s.nodes.keys() {
        lab.add_node(name).map_err(e)?;
    }
    let lma = plan::lma_name(s).ok_or("the scenario has no LMA")?.to_string();
    let lma_addr = plan.of[&lma];
    // Further LMAs join the core segment as the MAGs do, each on a port of
    // the first LMA's bridge. The MAG ports see all MAG–LMA signalling, so
    // only they are captured.
    let members: Vec<(&str, Ipv6Addr)> = plan::nodes_in(s, Role::Mag)
        .chain(plan::nodes_in(s, Role::Lma).filter(|l| *l != lma))
        .map(|m| (m, plan.of[m]))
        .collect();
    lab.core((&lma, lma_addr), &members).map_err(e)?;
    for cn in plan::nodes_in(s, Role::Cn) {
        let addr = plan.of[cn];
        let port = format!("to-{cn}");
        lab.veth(&lma, &port, cn, "eth0").map_err(e)?;
        lab.address(&lma, &port, plan::cn_gateway(addr), 64).map_err(e)?;
        lab.address(cn, "eth0", addr, 64).map_err(e)?;
        lab.default_route(cn, plan::cn_gateway(addr)).map_err(e)?;
    }
    for l in &s.links {
        let (mn, iface) = l.value.mn.value.split_once('/').ok_or("bad link")?;
        lab.veth(&l.value.mag.value, &access_iface(&l.value.mn.value), mn, iface).map_err(e)?;
        lab.set_link(mn, iface, false).map_err(e)?;
    }
    Ok((lab, plan))
}

/// Builds the scenario's topology in `lab` and starts its daemons;
/// `capture` records every link — MAG access links, and the LMA's ports
/// to the MAGs and the CNs — and observes its signalling live.
pub(crate) fn build<'a>(lab: Lab, s: &'a Scenario, bin: &Path, capture: bool) -> Result<Run<'a>, String> {
    let e = |x: std::io::Error| x.to_string();
    // How long each part of the build takes, for RUST_LOG=pmiplab=debug:
    // a lab of hundreds of nodes spends seconds here.
    let t = WallClock::now();
    let (mut lab, plan) = build_links(lab, s)?;
    tracing::debug!("{}: namespaces and links in {:?}", s.id, t.elapsed());
    let dp = json!({"tun": "tun0", "mtu": 1460});
    let mut args = vec!["--fmi-mh-type".to_string(), s.wire.fmi_mh_type.to_string()];
    if s.wire.profile == crate::scenario::Profile::Rfc7864 {
        args.push("--rfc7864".into());
    }
    let iuts = crate::iut::nodes(s);
    // The daemons start side by side; each is waited for below.
    // The Restart Counter of each LMA and MAG lives in a file of the run
    // directory, so a restarted daemon counts one more (RFC 5847 §3.2).
    // An implementation under test keeps its own.
    let dir = lab.dir.clone();
    let restarts = |node: &str| dir.join(format!("{node}.restart-counter"));
    // ESP keys made for this lab, handed to every LMA and MAG (each takes
    // the SAs that name its address) and kept in the lab's folder, where
    // the observer (also of a deployed lab) reads them.
    // An implementation under test is handed no keys (its IPsec set-up is
    // its own), so a lab with one runs its signalling in the clear.
    let esp = if s.security.esp.value && iuts.is_empty() {
        let keys = crate::node_config::EspKeys::for_scenario(s, &plan).map_err(|e| format!("making ESP keys: {e}"))?;
        let path = dir.join(ESP_KEYS);
        let text = serde_json::to_vec(&keys.config()).map_err(|e| e.to_string())?;
        crate::lab::rundir::create_new_file(&path)
            .and_then(|mut f| std::io::Write::write_all(&mut f, &text))
            .map_err(|e| format!("writing {}: {e}", path.display()))?;
        keys.config()
    } else {
        Value::Null
    };
    // Each daemon records its outbound ESP sequence numbers ahead of use,
    // so a restarted one (same keys) never sends a number again.
    let esp_of = |node: &str| {
        let mut v = esp.clone();
        if let Some(o) = v.as_object_mut() {
            o.insert("sequence_file".into(), json!(dir.join(format!("{node}.esp-sequence"))));
        }
        v
    };
    for l in plan::nodes_in(s, Role::Lma) {
        if let Some(spec) = iuts.get(l) {
            start_iut(&mut lab, s, &plan, l, spec)?;
            continue;
        }
        let cfg = crate::node_config::lma(s, &plan, plan.of[l]);
        let policies = crate::node_config::mn_policies(s, &plan, l);
        let config = json!({"role": "lma", "config": cfg, "policies": policies, "data_plane": dp,
            "restart_counter_file": restarts(l), "esp": esp_of(l)});
        lab.start_unready(l, bin, &config, &args).map_err(e)?;
    }
    for mag in plan::nodes_in(s, Role::Mag) {
        if let Some(spec) = iuts.get(mag) {
            start_iut(&mut lab, s, &plan, mag, spec)?;
            continue;
        }
        let lma_addr = plan::lma_of(s, mag).map(|l| plan.of[l]).ok_or("the scenario has no LMA")?;
        let c = crate::node_config::mag(s, &plan, mag, plan.of[mag], lma_addr);
        let mut access = BTreeMap::new();
        for l in s.links.iter().filter(|l| l.value.mag.value == mag) {
            let att = parse_att(&l.value.att.value).ok_or("bad att")?;
            access.insert(access_iface(&l.value.mn.value), att.value());
        }
        let config = json!({"role": "mag", "config": c, "data_plane": dp, "access": access,
            "restart_counter_file": restarts(mag), "esp": esp_of(mag)});
        lab.start_unready(mag, bin, &config, &args).map_err(e)?;
    }
    for mn in plan::nodes_in(s, Role::Mn) {
        let cfg = crate::node_config::mn(s, &plan, mn).ok_or("no such MN")?;
        lab.start_unready(mn, bin, &json!({"role": "mn", "config": cfg}), &[]).map_err(e)?;
    }
    for cn in plan::nodes_in(s, Role::Cn) {
        lab.start_unready(cn, bin, &json!({"role": "cn", "address": plan.of[cn]}), &[]).map_err(e)?;
    }
    tracing::debug!("{}: daemons started after {:?}", s.id, t.elapsed());
    for node in s.nodes.keys() {
        lab.wait_ready(node).map_err(e)?;
    }
    tracing::debug!("{}: daemons ready after {:?}", s.id, t.elapsed());
    let run = observing(lab, s, plan, capture);
    tracing::debug!("{}: links captured after {:?}", s.id, t.elapsed());
    run
}

/// A deployed lab (`Lab::attach`) as a backend the engine can play steps
/// on (`pmiplab step`), its links captured for this visit.
pub(crate) fn over_deployed<'a>(lab: Lab, s: &'a Scenario) -> Result<Run<'a>, String> {
    observing(lab, s, plan::address_plan(s), true)
}

/// The backend over a lab whose daemons are up: captures started (with
/// `capture`) and the signalling observed from them.
fn observing<'a>(mut lab: Lab, s: &'a Scenario, plan: AddressPlan, capture: bool) -> Result<Run<'a>, String> {
    let e = |x: std::io::Error| x.to_string();
    let lma = plan::lma_name(s).ok_or("the scenario has no LMA")?.to_string();
    let (tap, sightings) = mpsc::channel();
    if capture {
        let mut links = Vec::new();
        for mag in plan::nodes_in(s, Role::Mag) {
            for l in s.links.iter().filter(|l| l.value.mag.value == mag) {
                links.push((mag.to_string(), access_iface(&l.value.mn.value)));
            }
            links.push((lma.clone(), format!("to-{mag}")));
        }
        // The CNs' links carry no signalling but what a CN spoofs; the
        // observer reads them too, so that a spoofed message is seen.
        for cn in plan::nodes_in(s, Role::Cn) {
            links.push((lma.clone(), format!("to-{cn}")));
        }
        lab.capture_all(&links, Some(tap.clone())).map_err(e)?;
    }
    // The two ends of each captured link whose far end is a CN or an MN,
    // as captures name the link: signalling seen there with another
    // node's source was spoofed. (The core's ports carry what other LMAs
    // and MAGs send each other, whose sources are no end of the port.)
    let mut link_ends = BTreeMap::new();
    for cn in plan::nodes_in(s, Role::Cn) {
        link_ends.insert(format!("{lma}:to-{cn}"), (lma.clone(), cn.to_string()));
    }
    for l in &s.links {
        let mn = l.value.mn.value.split_once('/').map_or("", |(m, _)| m);
        link_ends.insert(
            format!("{}:{}", l.value.mag.value, access_iface(&l.value.mn.value)),
            (l.value.mag.value.clone(), mn.to_string()),
        );
    }
    let esp_keys = match std::fs::read(lab.home().join(ESP_KEYS)) {
        Ok(text) => {
            let v: Value = serde_json::from_slice(&text).map_err(|e| format!("the lab's ESP keys: {e}"))?;
            Some(crate::node_config::EspKeys::from_config(&v)?)
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
        Err(e) => return Err(format!("reading the lab's ESP keys: {e}")),
    };
    let esp = match &esp_keys {
        Some(k) => k.reader()?,
        None => Default::default(),
    };
    let mut names = BTreeMap::new();
    for (node, addr) in &plan.of {
        names.entry(*addr).or_insert_with(|| node.clone());
    }
    let epoch_us = SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_micros() as u64).unwrap_or(0);
    Ok(Run {
        s,
        lab,
        plan,
        wire: s.wire.config(),
        started: WallClock::now(),
        epoch_us,
        sightings,
        seen: Vec::new(),
        observed: Vec::new(),
        stale: false,
        names,
        awaiting_ra: Default::default(),
        unsent: Vec::new(),
        last_activity: WallClock::now(),
        receiver_faults: Vec::new(),
        ra_links: s
            .links
            .iter()
            .filter_map(|l| {
                let mn = l.value.mn.value.split_once('/')?.0.to_string();
                Some((format!("{}:{}", l.value.mag.value, access_iface(&l.value.mn.value)), mn))
            })
            .collect(),
        ras_seen: BTreeMap::new(),
        ras_taken: BTreeMap::new(),
        probe_flow: 100,
        running: BTreeMap::new(),
        link_ends,
        esp,
        esp_keys,
    })
}

/// Starts the implementation under test `spec` as `node`: its hand-over
/// written as `<node>.impl.json`, a private work folder `<node>.impl/`,
/// placeholders filled in.
fn start_iut(
    lab: &mut Lab,
    s: &Scenario,
    plan: &AddressPlan,
    node: &str,
    spec: &crate::iut::ImplSpec,
) -> Result<(), String> {
    use std::io::Write;
    let h = crate::iut::handover(s, plan, node)?;
    let config = lab.dir.join(format!("{node}.impl.json"));
    let work = lab.dir.join(format!("{node}.impl"));
    let text = serde_json::to_vec_pretty(&h).map_err(|e| e.to_string())?;
    crate::lab::rundir::create_new_file(&config)
        .and_then(|mut f| f.write_all(&text))
        .map_err(|e| format!("writing {}: {e}", config.display()))?;
    crate::lab::rundir::create_private_dir(&work).map_err(|e| format!("making {}: {e}", work.display()))?;
    let values = iut_values(node, &config, &work);
    let mut env = crate::iut::environment(&h, &config, &work);
    for (k, v) in &spec.env {
        env.insert(k.clone(), crate::iut::expand(std::slice::from_ref(v), &values).concat());
    }
    let ready = match spec.ready.as_ref().map(|r| &r.value) {
        None => crate::iut::Ready::Socket("mh".into()),
        Some(crate::iut::Ready::File(f)) => {
            crate::iut::Ready::File(crate::iut::expand(std::slice::from_ref(f), &values).concat())
        }
        Some(crate::iut::Ready::Command(c)) => crate::iut::Ready::Command(crate::iut::expand(c, &values)),
        Some(r) => r.clone(),
    };
    let launch = crate::lab::iut::IutLaunch {
        command: crate::iut::expand(&spec.command, &values),
        env,
        work,
        ready,
        ready_within: Duration::from_millis(spec.ready_within_ms.unwrap_or(crate::iut::READY_WITHIN_MS)),
        stop_within: Duration::from_millis(spec.stop_within_ms.unwrap_or(crate::iut::STOP_WITHIN_MS)),
    };
    lab.start_iut(node, launch).map_err(|e| e.to_string())
}

/// The placeholders every IUT command, probe and hook may use.
fn iut_values<'a>(node: &str, config: &Path, work: &Path) -> BTreeMap<&'a str, String> {
    BTreeMap::from([
        ("node", node.to_string()),
        ("config", config.display().to_string()),
        ("work", work.display().to_string()),
    ])
}

pub(crate) struct Run<'a> {
    s: &'a Scenario,
    pub(crate) lab: Lab,
    plan: AddressPlan,
    wire: WireConfig,
    started: WallClock,
    /// The wall clock at `started`, microseconds since the epoch: the
    /// captures' kernel stamps are on that scale.
    epoch_us: u64,
    sightings: mpsc::Receiver<Sighting>,
    /// Every Mobility Header message seen on a link, as seen.
    seen: Vec<SequenceEntry>,
    /// `seen` merged across links and judged delivered or not.
    observed: Vec<Observed>,
    /// Frames came since `observed` was made: it is made again when read,
    /// not on every poll (a lab of hundreds of MNs sees thousands).
    stale: bool,
    /// Each address of the plan → the node that holds it, the first by
    /// name as `AddressPlan::name_of` finds it, without a scan per message.
    names: BTreeMap<Ipv6Addr, String>,
    /// Access links (as captures name them) attached and not yet sent a
    /// Router Advertisement: a settle does not end early while any is.
    awaiting_ra: std::collections::BTreeSet<String>,
    /// Messages the senders' own fault rules dropped before any link saw
    /// them (see [`crate::sender_drops`]), read at the end.
    unsent: Vec<Observed>,
    /// When a frame was last seen, or the engine last acted.
    last_activity: WallClock,
    /// Fault rules installed at receivers, with when: what they drop was on
    /// the wire but never taken in, which no capture can show.
    receiver_faults: Vec<(u64, FaultRule)>,
    /// Access link (as captures name it) → the MN on its other end.
    ra_links: BTreeMap<String, String>,
    /// Router Advertisements seen on the wire to each MN, and how many of
    /// them the MN says it has applied: the MN is the tester's own
    /// instrument, and a settled attachment is one whose RA took effect.
    ras_seen: BTreeMap<String, u64>,
    ras_taken: BTreeMap<String, u64>,
    probe_flow: u16,
    /// Started flows: the probe flow id each is sent under.
    running: BTreeMap<(String, Direction), u16>,
    /// Each captured CN or access link (`node:iface`) → its two ends: the
    /// capturing node and the CN or MN across the link.
    link_ends: BTreeMap<String, (String, String)>,
    /// The lab's ESP keys, when its signalling is protected: the observer
    /// reads the Mobility Headers inside ESP with them, and they are
    /// written beside the captures for Wireshark.
    esp: pmip_captures::esp::EspReader,
    esp_keys: Option<crate::node_config::EspKeys>,
}

/// The probe flow that sends a flow's packets, `count` of them or until
/// stopped: downlink from the CN (with the flow's protocol), uplink from
/// the MN back to the CN.
fn probe_spec(
    flow: u16,
    key: pmip_proto::FlowKey,
    direction: Direction,
    rate_pps: u32,
    count: Option<u32>,
) -> FlowSpec {
    match direction {
        Direction::Downlink => FlowSpec {
            flow,
            src: key.src,
            dst: key.dst,
            sport: key.src_port,
            dport: key.dst_port,
            rate_pps,
            count,
            proto: Some(key.next_header),
        },
        Direction::Uplink => FlowSpec {
            flow,
            src: key.dst,
            dst: key.src,
            sport: key.dst_port,
            dport: key.src_port,
            rate_pps,
            count,
            proto: None,
        },
    }
}

impl Run<'_> {
    fn now_us(&self) -> u64 {
        self.epoch_us + self.started.elapsed().as_micros() as u64
    }

    /// Takes in what the captures saw since the last look.
    fn poll(&mut self) {
        while let Ok(sight) = self.sightings.try_recv() {
            self.last_activity = WallClock::now();
            let f = &sight.frame;
            if f.len() > 54 && f[20] == 58 && f[54] == 134 {
                if let Some(mn) = self.ra_links.get(&sight.link) {
                    *self.ras_seen.entry(mn.clone()).or_default() += 1;
                }
                self.awaiting_ra.remove(&sight.link);
            }
            let Some((src, dst, mh)) = pmip_captures::esp::mobility_header(&sight.frame, &self.esp) else { continue };
            let d = lax::decode(&mh, Some(&Endpoints { src, dst }), &self.wire);
            let mut summary = match &d.message {
                Some(m) => m.summary(),
                None => format!("MH type {:?} (undecodable)", d.mh_type),
            };
            for p in &d.problems {
                summary.push_str(&format!(" [{p}]"));
            }
            self.seen.push(SequenceEntry { ts_us: sight.ts_us, link: sight.link, src, dst, summary });
            self.stale = true;
        }
    }

    /// `observed`, made again from `seen` if frames came since.
    fn observed(&mut self) -> &[Observed] {
        self.poll();
        if self.stale {
            self.observed = crate::sender_drops::merge(self.judge_seen(), &self.unsent);
            self.stale = false;
        }
        &self.observed
    }

    /// The messages seen, each once however many links carried it, with
    /// what a fault at its receiver did to it.
    fn judge_seen(&self) -> Vec<Observed> {
        let mut faults = self.receiver_faults.clone();
        let name_of = |a: Ipv6Addr| self.names.get(&a).cloned().unwrap_or_else(|| a.to_string());
        pmip_captures::sequence::merge(&self.seen)
            .into_iter()
            .map(|e| {
                let (mut from, to) = (name_of(e.src), name_of(e.dst));
                let kind = e.summary.split(' ').next().unwrap_or("").to_string();
                let mut summary = e.summary;
                // A message whose source is neither end of the link it was
                // seen on came from the end that is not its receiver, with a
                // forged source: the observer names the real sender and
                // what the source said.
                if let Some((near, far)) = self.link_ends.get(&e.link) {
                    if from != *near && from != *far && (to == *near || to == *far) {
                        let sender = if to == *near { far } else { near };
                        summary = format!("{summary} src={from}");
                        from = sender.clone();
                    }
                }
                let taken = faults.iter_mut().find(|(at, r)| *at <= e.ts_us && r.matches(&kind, &from, &to));
                let dropped = taken.is_some_and(|(_, r)| {
                    r.count -= 1;
                    r.action == pmip_proto::fault::FaultAction::Drop
                });
                Observed {
                    at_ms: e.ts_us.saturating_sub(self.epoch_us) / 1000,
                    from,
                    to,
                    summary,
                    on_wire: true,
                    delivered: !dropped,
                }
            })
            .collect()
    }

    fn acted(&mut self) {
        self.last_activity = WallClock::now();
    }

    /// Sends `req` to `node`; `Err` is the node's refusal, or why it could not be asked.
    fn call(&self, node: &str, req: &Request) -> Result<Reply, String> {
        let r = self.lab.call(node, req).map_err(|e| format!("asking {node}: {e}"))?;
        if r.ok {
            Ok(r)
        } else {
            Err(r.error.unwrap_or_else(|| format!("{node} refused it with no reason given")))
        }
    }

    /// The state `node` reports, read as `T`.
    fn state<T: serde::de::DeserializeOwned>(&self, node: &str) -> Result<T, String> {
        self.call(node, &Request::State)?.into_state().map_err(|e| format!("{node}'s state: {e}"))
    }

    fn lma(&self) -> Result<String, String> {
        plan::lma_name(self.s).map(str::to_string).ok_or_else(|| "the scenario has no LMA".into())
    }

    /// Runs `node`'s hook `hook` (its IUT's stand-in for a decision no
    /// standard message triggers) with `values` for its placeholders.
    fn run_hook(&self, node: &str, hook: &str, mut values: BTreeMap<&str, String>) -> Result<(), String> {
        let argv = crate::iut::hook(self.s, node, hook)
            .ok_or_else(|| format!("{node} is under test and has no '{hook}' hook"))?;
        let launch = self.lab.iut_launch(node).ok_or_else(|| format!("{node} is not under test"))?;
        let config = self.lab.dir.join(format!("{node}.impl.json"));
        values.extend(iut_values(node, &config, &launch.work));
        let argv = crate::iut::expand(argv, &values);
        let (status, out) = self
            .lab
            .run_in_node(node, &argv, &launch.env, &launch.work)
            .map_err(|e| format!("the {hook} hook: {e}"))?;
        if status.success() {
            Ok(())
        } else {
            Err(format!("the {hook} hook ({}) failed ({status}): {}", argv.join(" "), out.trim_end()))
        }
    }

    /// An LMA decision handed to the LMA under test through its hook.
    fn lma_hook(&self, lma: &str, c: &LmaCommand) -> Result<(), String> {
        let json = serde_json::to_string(&Request::Lma { command: c.clone() }).map_err(|e| e.to_string())?;
        let mut v: BTreeMap<&str, String> = BTreeMap::from([("json", json)]);
        let hook = match c {
            LmaCommand::BindFlow { mn_id, fid, fid_pri, bids, action, .. } => {
                v.insert("mn", mn_id.clone());
                v.insert("fid", fid.to_string());
                v.insert("fid_pri", fid_pri.to_string());
                v.insert("bids", bids.iter().map(u16::to_string).collect::<Vec<_>>().join(","));
                let action = serde_json::to_value(action).ok().and_then(|a| a.as_str().map(str::to_lowercase));
                v.insert("action", action.unwrap_or_default());
                "bind"
            }
            LmaCommand::MoveFlow { mn_id, fid, to_bid } => {
                v.insert("mn", mn_id.clone());
                v.insert("fid", fid.to_string());
                v.insert("bid", to_bid.to_string());
                "move"
            }
            LmaCommand::MovePrefix { mn_id, prefix, to_bid } => {
                v.insert("mn", mn_id.clone());
                v.insert("prefix", prefix.to_string());
                v.insert("bid", to_bid.to_string());
                "move_prefix"
            }
            LmaCommand::UnbindFlow { mn_id, fid } => {
                v.insert("mn", mn_id.clone());
                v.insert("fid", fid.to_string());
                "unbind"
            }
        };
        self.run_hook(lma, hook, v)
    }

    /// Polls a daemon's report until `done` holds, at most `limit`; the
    /// last report either way. For the tester's own instruments (the CN's
    /// and the MN's probe counts), never for a verdict on a node under test.
    fn wait_report<T: serde::de::DeserializeOwned>(
        &self,
        node: &str,
        limit: Duration,
        done: impl Fn(&T) -> bool,
    ) -> Result<T, String> {
        let deadline = WallClock::now() + limit;
        loop {
            let st: T = self.state(node)?;
            if done(&st) || WallClock::now() > deadline {
                return Ok(st);
            }
            std::thread::sleep(POLL);
        }
    }

    /// Waits until the MN's Router Solicitation on `port` has been seen:
    /// its link is up and it asked for an attachment.
    fn wait_link_up(&mut self, mag: &str, port: &str) -> Result<(), String> {
        let link = format!("{mag}:{port}");
        let deadline = WallClock::now() + LINK_UP_LIMIT;
        let rs = |f: &[u8]| f.len() > 54 && f[20] == 58 && f[54] == 133;
        let mut seen_rs = false;
        let mut kept = Vec::new();
        while !seen_rs && WallClock::now() < deadline {
            while let Ok(sight) = self.sightings.try_recv() {
                seen_rs |= sight.link == link && rs(&sight.frame);
                kept.push(sight);
            }
            if !seen_rs {
                std::thread::sleep(POLL);
            }
        }
        // What was read here is observed like anything else.
        let (tap, rx) = mpsc::channel();
        for s in kept {
            let _ = tap.send(s);
        }
        let live = std::mem::replace(&mut self.sightings, rx);
        self.poll();
        self.sightings = live;
        if seen_rs {
            Ok(())
        } else {
            Err(format!("no Router Solicitation came on {link} within {LINK_UP_LIMIT:?} of the link going up"))
        }
    }

    fn next_probe(&mut self) -> u16 {
        self.probe_flow += 1;
        self.probe_flow
    }

    /// Where to install a fault rule so that it acts where virtual time
    /// applies it (see [`FaultRule`]): at the sender named by `from`, else
    /// at the receiver named by `to`, else at the LMA, on the way out for
    /// what the LMA sends and on the way in for the rest.
    /// A node under test holds no rule: [`crate::iut::fault_place`] moves
    /// it to the receiver, where it can.
    fn fault_place(&self, rule: &FaultRule) -> Result<(String, FaultDirection), String> {
        let (node, incoming) = crate::iut::fault_place(self.s, rule)?;
        Ok((node, if incoming { FaultDirection::In } else { FaultDirection::Out }))
    }
}

impl Observe for Run<'_> {
    fn messages(&mut self) -> Vec<Observed> {
        self.observed().to_vec()
    }

    fn tables(&mut self, node: &str) -> Result<Value, String> {
        if self.lab.is_iut(node) {
            return Err(format!("{node} is an implementation under test: its tables are not observable"));
        }
        match self.s.nodes.get(node).map(|n| n.value.role) {
            Some(Role::Cn) => Err(format!("{node} is a CN, which keeps no tables")),
            Some(_) => self.call(node, &Request::Tables)?.into_state(),
            None => Err(format!("the scenario has no node {node}")),
        }
    }

    fn under_test(&self, node: &str) -> bool {
        self.lab.is_iut(node)
    }

    fn quiet(&mut self) -> bool {
        self.poll();
        self.last_activity.elapsed() >= QUIET && self.ras_applied()
    }

    fn quiet_briefly(&mut self) -> bool {
        self.poll();
        self.last_activity.elapsed() >= BRIEFLY && self.awaiting_ra.is_empty() && self.ras_applied()
    }
}

impl Run<'_> {
    /// Whether every MN has applied every Router Advertisement seen on its
    /// links: the MN is the tester's own instrument, so it may be asked.
    fn ras_applied(&mut self) -> bool {
        let behind: Vec<String> = self
            .ras_seen
            .iter()
            .filter(|(mn, n)| self.ras_taken.get(*mn).copied().unwrap_or(0) < **n)
            .map(|(mn, _)| mn.clone())
            .collect();
        for mn in behind {
            let Ok(st) = self.state::<MnState>(&mn) else { continue };
            let taken = st.counters.iter().filter(|(k, _)| k.starts_with("RA taken on ")).map(|(_, n)| n).sum();
            self.ras_taken.insert(mn.clone(), taken);
        }
        self.ras_seen.iter().all(|(mn, n)| self.ras_taken.get(mn).copied().unwrap_or(0) >= *n)
    }
}

impl engine::Capabilities for Run<'_> {
    fn features(&self) -> &'static [&'static str] {
        &FEATURES
    }
    fn cannot_play(&self, step: &Step, line: u64) -> Option<String> {
        cannot_play(step, line).or_else(|| crate::iut::cannot_play(self.s, step, line))
    }
}

impl Backend for Run<'_> {
    fn name(&self) -> &'static str {
        "namespaces"
    }
    fn elapsed_ms(&mut self) -> u64 {
        self.started.elapsed().as_millis() as u64
    }

    fn attach(&mut self, a: &Attachment) -> Result<(), String> {
        let chosen = a.hi.is_some() || !a.prefixes.is_empty();
        if chosen && self.lab.is_iut(&a.mag) {
            let mac = mac_for(&a.mn, &a.iface);
            let req = Request::Attach {
                iface: a.port.clone(),
                ll_id: mac.to_vec(),
                att: a.att.value(),
                hi: a.hi.map(|h| h.value()),
                prefixes: a.prefixes.clone(),
            };
            let values = BTreeMap::from([
                ("mn", plan::mn_id_of(self.s, &a.mn)),
                ("iface", a.iface.clone()),
                ("port", a.port.clone()),
                ("ll_id", pmip_control::handover::format_mac(&mac)),
                ("att", a.att.value().to_string()),
                ("hi", a.hi.map(|h| h.value().to_string()).unwrap_or_default()),
                ("prefixes", a.prefixes.iter().map(|p| p.to_string()).collect::<Vec<_>>().join(" ")),
                ("json", serde_json::to_string(&req).map_err(|e| e.to_string())?),
            ]);
            self.run_hook(&a.mag, "attach", values)?;
        } else if chosen {
            // A chosen HI or prefixes: the MAG is told before the link
            // comes up, as a MAG with that context would act; the MN's RS
            // then finds the attachment known.
            let req = Request::Attach {
                iface: a.port.clone(),
                ll_id: mac_for(&a.mn, &a.iface),
                att: a.att.value(),
                hi: a.hi.map(|h| h.value()),
                prefixes: a.prefixes.clone(),
            };
            self.call(&a.mag, &req)?;
        }
        self.poll();
        self.awaiting_ra.insert(format!("{}:{}", a.mag, a.port));
        self.lab.set_link(&a.mn, &a.iface, true).map_err(|e| e.to_string())?;
        self.acted();
        self.wait_link_up(&a.mag, &a.port)
    }

    fn carve(&mut self, mn: &str, iface: &str, service: &str) -> Result<(), String> {
        let mag = mag_of_link(self.s, mn, iface)?;
        let req = Request::TwoLevelCarve { ll_id: mac_for(mn, iface), service: service.into() };
        self.call(&mag, &req)?;
        self.acted();
        Ok(())
    }

    fn flow_handover(&mut self, mn: &str, iface: &str, prefixes: &[pmip_proto::Prefix]) -> Result<(), String> {
        let mag = mag_of_link(self.s, mn, iface)?;
        self.call(&mag, &Request::TwoLevelTake { ll_id: mac_for(mn, iface), prefixes: prefixes.to_vec() })?;
        // The L2 hint to every other MAG (what World::two_level_move does).
        let mn_id = plan::mn_id_of(self.s, mn);
        let others: Vec<String> = self
            .s
            .nodes
            .iter()
            .filter(|(name, n)| n.value.role == Role::Mag && **name != mag)
            .map(|(name, _)| name.clone())
            .collect();
        for other in others {
            self.call(&other, &Request::TwoLevelHint { mn_id: mn_id.clone(), prefixes: prefixes.to_vec() })?;
        }
        self.acted();
        Ok(())
    }

    fn detach(&mut self, mn: &str, iface: &str) -> Result<(), String> {
        if let Ok(mag) = mag_of_link(self.s, mn, iface) {
            self.awaiting_ra.remove(&format!("{mag}:{}", access_iface(&format!("{mn}/{iface}"))));
        }
        self.lab.set_link(mn, iface, false).map_err(|e| e.to_string())?;
        self.acted();
        Ok(())
    }

    fn lma_command(&mut self, c: LmaCommand) -> Result<(), String> {
        let lma = self.lma()?;
        if self.lab.is_iut(&lma) {
            let r = self.lma_hook(&lma, &c);
            self.acted();
            return r;
        }
        let r = self.call(&lma, &Request::Lma { command: c });
        self.acted();
        r.map(|_| ())
    }

    fn timestamp_now(&mut self) -> u64 {
        // The daemons stamp their PBUs from the wall clock.
        SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_micros() as u64).unwrap_or(0)
    }

    fn inject(&mut self, from: &str, to: Ipv6Addr, message: Message) -> Result<(), String> {
        if self.lab.is_iut(from) {
            // From its namespace and address, on the harness's own socket,
            // framed by the profile as pmip-node frames what it sends
            // (RFC 7864: an FMI goes out as a UPN).
            let src = *self.plan.of.get(from).ok_or_else(|| format!("{from} has no address"))?;
            let message = self.wire.profile.outgoing(message);
            let bytes = message.to_bytes(&Endpoints { src, dst: to }, &self.wire).map_err(|e| e.to_string())?;
            self.lab.send_mh_from(from, src, to, bytes).map_err(|e| format!("sending as {from}: {e}"))?;
            self.acted();
            return Ok(());
        }
        self.call(from, &Request::Send { to, message })?;
        self.acted();
        Ok(())
    }

    fn spoof(&mut self, link: &plan::SpoofLink, src: Ipv6Addr, dst: Ipv6Addr, message: Message) -> Result<(), String> {
        let message = self.wire.profile.outgoing(message);
        let mh = message
            .to_bytes(&Endpoints { src, dst }, &self.wire)
            .map_err(|e| format!("could not encode the {}: {e}", message.name()))?;
        let frame = crate::frames::mh_frame(
            crate::lab::mac(&link.to, &link.to_iface),
            crate::lab::mac(&link.from, &link.from_iface),
            src,
            dst,
            &mh,
        )?;
        let iface = link.from_iface.clone();
        self.lab.run_in(&link.from, move || crate::frames::send_frame(&iface, &frame)).map_err(|e| {
            format!("sending the spoofed {} from {}/{}: {e}", message.name(), link.from, link.from_iface)
        })?;
        self.acted();
        Ok(())
    }

    fn add_fault(&mut self, rule: FaultRule) -> Result<(), String> {
        let (node, direction) = self.fault_place(&rule)?;
        // At the sender, a rule with a receiver touches only what goes there.
        // At the receiver, a rule with a sender (moved there off a node
        // under test) touches only what comes from it.
        let peer = match direction {
            FaultDirection::Out => rule.to.as_ref().and_then(|t| self.plan.of.get(t)).copied(),
            FaultDirection::In => rule.from.as_ref().and_then(|f| self.plan.of.get(f)).copied(),
        };
        let spec = pmip_control::FaultRule {
            id: 0,
            direction,
            message: Some(rule.message.clone()),
            peer,
            data: false,
            action: rule.action,
            count: Some(rule.count),
            per_mille: None,
            hits: 0,
        };
        self.call(&node, &Request::FaultAdd { rule: spec })?.into_state::<pmip_control::FaultAdded>()?;
        if direction == FaultDirection::In {
            let at = self.now_us();
            self.receiver_faults.push((at, rule));
            self.stale = true;
        }
        Ok(())
    }

    fn set_link(&mut self, _: &str, _: &str, _: u64, _: u16) -> Result<(), String> {
        Err("link latency and loss need virtual time".into())
    }

    fn kill(&mut self, node: &str) -> Result<(), String> {
        self.lab.kill(node).map_err(|e| e.to_string())
    }

    fn restart(&mut self, node: &str) -> Result<(), String> {
        self.lab.restart(node).map_err(|e| e.to_string())?;
        self.acted();
        Ok(())
    }

    fn start_flow(&mut self, run: &FlowRun) -> Result<(), String> {
        let key = run.key;
        if key.next_header != 17 && key.next_header != 6 {
            return Err("namespace runs send UDP or TCP-shaped probes only".into());
        }
        let flow = self.next_probe();
        let sender = match run.direction {
            Direction::Downlink => run.cn.clone(),
            Direction::Uplink => run.mn.clone(),
        };
        let spec = probe_spec(flow, key, run.direction, run.rate_pps, None);
        self.call(&sender, &Request::FlowStart(spec))?;
        self.running.insert((run.flow.clone(), run.direction), flow);
        Ok(())
    }

    fn stop_flow(&mut self, run: &FlowRun) -> Result<FlowAccount, String> {
        let flow = self
            .running
            .remove(&(run.flow.clone(), run.direction))
            .ok_or_else(|| format!("flow {} is not running", run.flow))?;
        let mn_iface = |i: &str| format!("{}/{i}", run.mn);
        match run.direction {
            Direction::Downlink => {
                self.call(&run.cn, &Request::FlowStop { flow })?;
                let sent = self.state::<CnState>(&run.cn)?.sent.get(&flow).copied().unwrap_or(0);
                let taken = |s: &MnState| s.probes.get(&flow).map_or(0, |p| p.stats.received);
                let st: MnState = self.wait_report(&run.mn, Duration::from_secs(1), |s| taken(s) >= sent)?;
                let stats = st.probes.get(&flow).map(|p| p.stats.clone()).unwrap_or_default();
                let by_interface = stats
                    .arrival_order
                    .iter()
                    .map(|i| (mn_iface(i), stats.by_interface.get(i).copied().unwrap_or(0)))
                    .collect();
                Ok(FlowAccount { sent, received: stats.received, by_interface })
            }
            Direction::Uplink => {
                self.call(&run.mn, &Request::FlowStop { flow })?;
                let mn: MnState = self.state(&run.mn)?;
                let sent = mn.sent.get(&flow).copied().unwrap_or(0);
                let taken = |s: &CnState| s.received.get(&flow).map_or(0, |p| p.stats.received);
                let cn: CnState = self.wait_report(&run.cn, Duration::from_secs(1), |s| taken(s) >= sent)?;
                // On the kernel datapath the MN counts a probe by the
                // interface it saw it leave on, a moment after it left.
                let seen = |s: &MnState| s.left_on.get(&flow).map_or(0, |l| l.iter().map(|(_, n)| n).sum::<u64>());
                let mn: MnState = self.wait_report(&run.mn, Duration::from_secs(1), |s| seen(s) >= sent)?;
                let by_interface =
                    mn.left_on.get(&flow).into_iter().flatten().map(|(i, n)| (mn_iface(i), *n)).collect();
                Ok(FlowAccount { sent, received: taken(&cn), by_interface })
            }
        }
    }

    fn probe_downlink(&mut self, run: &FlowRun, packets: u32, expect_none: bool) -> Result<DownlinkProbe, String> {
        let key = run.key;
        if key.next_header != 17 && key.next_header != 6 {
            return Err("namespace runs send UDP or TCP-shaped probes only".into());
        }
        let flow = self.next_probe();
        let spec = probe_spec(flow, key, Direction::Downlink, 1000, Some(packets));
        self.call(&run.cn, &Request::FlowStart(spec))?;
        self.wait_report::<CnState>(&run.cn, LIMIT, |s| s.sent.get(&flow) == Some(&u64::from(packets)))?;
        // Packets that should not come are given a little time to show up anyway.
        let limit = Duration::from_millis(if expect_none { 300 } else { 3000 });
        let taken = |s: &MnState| s.probes.get(&flow).map_or(0, |p| p.stats.received);
        let st: MnState = self.wait_report(&run.mn, limit, |s| taken(s) >= u64::from(packets))?;
        let stats = st.probes.get(&flow).map(|p| p.stats.clone()).unwrap_or_default();
        let mut probe = DownlinkProbe { sent: packets, ..Default::default() };
        probe.by_interface = stats.by_interface.iter().map(|(i, n)| (format!("{}/{i}", run.mn), *n)).collect();
        probe.trace = format!("by interface {:?}", stats.by_interface);
        if stats.received < u64::from(packets) && !expect_none {
            // Say where the packets went missing: each data plane's counters.
            for (name, n) in &self.s.nodes {
                if self.lab.is_iut(name) {
                    probe.trace.push_str(&format!("; {name} under test (its counters are not observable)"));
                } else if matches!(n.value.role, Role::Lma | Role::Mag) {
                    let dp = self.state::<NodeState>(name).map(|s| s.data_plane.counters).unwrap_or_default();
                    probe.trace.push_str(&format!("; {name} {dp:?}"));
                }
            }
        }
        Ok(probe)
    }

    fn probe_uplink(&mut self, run: &FlowRun) -> Result<UplinkProbe, String> {
        let key = run.key;
        let before = self.state::<MnState>(&run.mn)?.counters;
        let flow = self.next_probe();
        let spec = probe_spec(flow, key, Direction::Uplink, 1000, Some(1));
        self.call(&run.mn, &Request::FlowStart(spec))?;
        let taken = |s: &CnState| s.received.get(&flow).map_or(0, |p| p.stats.received);
        let cn: CnState = self.wait_report(&run.cn, Duration::from_secs(3), |s| taken(s) == 1)?;
        let interfaces = self.s.nodes[&run.mn].value.interfaces.clone();
        let left = |after: &BTreeMap<String, u64>| -> Vec<String> {
            interfaces
                .iter()
                .filter(|i| {
                    let k = format!("uplink via {i}");
                    after.get(&k).copied().unwrap_or(0) > before.get(&k).copied().unwrap_or(0)
                })
                .map(|i| format!("{}/{i}", run.mn))
                .collect()
        };
        // On the kernel datapath the MN counts the probe by the interface
        // it saw it leave on, a moment after it left.
        let limit = Duration::from_secs(if taken(&cn) == 1 { 1 } else { 0 });
        let after = self.wait_report::<MnState>(&run.mn, limit, |s| !left(&s.counters).is_empty())?.counters;
        let left_on = left(&after);
        Ok(UplinkProbe { left_on, reached_cn: taken(&cn) == 1, trace: String::new() })
    }

    fn wait(&mut self, limit: Span, until: &mut dyn FnMut(&mut dyn Observe) -> bool) -> bool {
        let deadline = WallClock::now() + Duration::from_micros(limit.0);
        loop {
            if until(self) {
                return true;
            }
            if WallClock::now() >= deadline {
                return false;
            }
            std::thread::sleep(POLL);
        }
    }

    fn kernel(&mut self, node: &str) -> Result<KernelSection, String> {
        self.lab.kernel_section(node).map_err(|e| format!("reading {node}'s kernel: {e}"))
    }

    fn implied_kernel(&mut self, node: &str) -> Option<KernelSection> {
        if self.lab.is_iut(node) {
            return None;
        }
        if !matches!(self.s.nodes.get(node)?.value.role, Role::Lma | Role::Mag) {
            return None;
        }
        let st: NodeState = self.state(node).ok()?;
        Some(KernelSection::from_intents(&st.intents))
    }

    fn finish(&mut self, out: Option<&Path>, report: &mut ScenarioReport) {
        // An implementation under test stops as it would in service: its
        // log then holds what it said on the way out.
        for (node, r) in self.lab.stop_iuts() {
            let what = format!("{node}'s implementation stopped on SIGTERM");
            let tail = || last_lines(&self.lab.daemon_log(&node), 20);
            report.checks.push(match r {
                Ok(crate::lab::iut::Stopped::Killed { after }) => Check::failed(
                    1,
                    what,
                    format!("it was still running {after:?} after SIGTERM and was killed; its log ends:\n{}", tail()),
                ),
                Ok(stopped) => Check::new(1, what, true, format!("{stopped:?}")),
                Err(e) => Check::failed(1, what, format!("{e}; its log ends:\n{}", tail())),
            });
        }
        report.logs = self.s.nodes.keys().map(|n| (n.clone(), self.lab.daemon_log(n))).collect();
        report.events = crate::report::merge_logs(&report.logs);
        let caps = match self.lab.stop_captures() {
            Ok(c) => c,
            Err(e) => {
                report.checks.push(Check::failed(
                    1,
                    "every link was captured",
                    format!("the captures could not be stopped: {e}"),
                ));
                return;
            }
        };
        // Frames seen in the last moments before the captures stopped, and
        // what the senders dropped before any link could see it.
        self.poll();
        self.stale = false;
        self.unsent = self
            .s
            .nodes
            .iter()
            .filter(|(_, n)| matches!(n.value.role, Role::Lma | Role::Mag))
            .filter_map(|(name, _)| Some((name, self.state::<Value>(name).ok()?)))
            .flat_map(|(name, st)| crate::sender_drops::from_state(name, &st, &self.plan, self.epoch_us))
            .collect();
        self.unsent.sort_by_key(|o| o.at_ms);
        self.observed = crate::sender_drops::merge(self.judge_seen(), &self.unsent);
        let Some(dir) = out.map(|o| o.join(&self.s.id)) else { return };
        if let Err(e) = std::fs::create_dir_all(&dir) {
            report.checks.push(Check::failed(1, "the run's folder was written", format!("{}: {e}", dir.display())));
            return;
        }
        for (_, path, _) in &caps {
            if let Some(name) = path.file_name() {
                let _ = std::fs::copy(path, dir.join(name));
            }
        }
        if let Some(keys) = &self.esp_keys {
            if let Err(e) = std::fs::write(dir.join(ESP_SA), keys.wireshark_esp_sa()) {
                report.checks.push(Check::failed(1, "the lab's ESP keys were written", e.to_string()));
            }
        }
        // What each implementation under test was handed, beside its log.
        for node in crate::iut::nodes(self.s).keys() {
            let name = format!("{node}.impl.json");
            let _ = std::fs::copy(self.lab.dir.join(&name), dir.join(&name));
        }
        if let Err(e) = self.write_merged_capture(&caps, &report.step_marks, &dir.join(MERGED_CAPTURE)) {
            report.checks.push(Check::failed(1, "every link was captured into one file", e));
        }
        let lines: Vec<String> = self
            .observed
            .iter()
            .filter(|m| m.on_wire)
            .map(|m| format!("{} -> {} {}", m.from, m.to, m.summary))
            .collect();
        let _ = std::fs::write(dir.join("sequence.txt"), lines.join("\n") + "\n");
    }
}

/// The lab's ESP keys in its own folder, as the daemons' `esp` setting.
const ESP_KEYS: &str = "esp.json";
/// The lab's ESP keys beside the captures, as Wireshark's ESP SA table
/// (the `esp_sa` file of a profile).
pub const ESP_SA: &str = "esp_sa";

/// The last `n` lines of `text`.
fn last_lines(text: &str, n: usize) -> String {
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

/// The file in a scenario's folder that holds every link's capture, one
/// interface per link, with a packet comment at each step.
pub const MERGED_CAPTURE: &str = "all-links.pcapng";

impl Run<'_> {
    /// Merges the links' captures into `to`, each step a packet comment.
    fn write_merged_capture(
        &self,
        caps: &[(String, PathBuf, u64)],
        marks: &[(u64, String)],
        to: &Path,
    ) -> Result<(), String> {
        let mut links = Vec::new();
        for (name, path, _) in caps {
            let bytes = std::fs::read(path).map_err(|e| format!("reading {}: {e}", path.display()))?;
            links.push((name.clone(), pmip_captures::pcapng::read(&bytes)));
        }
        let marks: Vec<(u64, String)> = marks.iter().map(|(ms, m)| (self.epoch_us + ms * 1000, m.clone())).collect();
        let file = std::fs::File::create(to).map_err(|e| format!("creating {}: {e}", to.display()))?;
        pmip_captures::pcapng::merge(std::io::BufWriter::new(file), &links, &marks)
            .map(|_| ())
            .map_err(|e| format!("writing {}: {e}", to.display()))
    }
}

/// The daemon binary: `PMIP_NODE`, else `pmip-node` beside this program.
pub fn node_binary() -> Result<PathBuf, String> {
    if let Some(p) = std::env::var_os("PMIP_NODE") {
        return Ok(PathBuf::from(p));
    }
    let me = std::env::current_exe().map_err(|e| e.to_string())?;
    let dir = me.parent().ok_or("no folder")?;
    for cand in [dir.join("pmip-node"), dir.join("../pmip-node")] {
        if cand.exists() {
            return Ok(cand);
        }
    }
    Err(format!("cannot find pmip-node beside {}: build it (cargo build -p pmip-node) or set PMIP_NODE", me.display()))
}

/// The MAG the link of `mn/iface` attaches to.
fn mag_of_link(s: &Scenario, mn: &str, iface: &str) -> Result<String, String> {
    let name = format!("{mn}/{iface}");
    s.links
        .iter()
        .find(|l| l.value.mn.value == name)
        .map(|l| l.value.mag.value.clone())
        .ok_or_else(|| format!("no link names {name}"))
}
