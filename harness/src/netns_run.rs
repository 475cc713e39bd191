//! Runs a scenario in network namespaces with one `pmip-node` daemon per
//! node: the real stack, real packets, captures of every link.

use std::collections::BTreeMap;
use std::net::Ipv6Addr;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant as WallClock};

use pmip_proto::lma::{FlowAction, LmaCommand};
use pmip_proto::world::mac_for;
use serde_json::{json, Value};

use crate::lab::Lab;
use crate::report::{Check, ScenarioReport, Verdict};
use crate::running_flows::FlowAccount;
use crate::scenario::*;
use crate::virtual_lab::{access_iface, address_plan, missing_features, mn_id, AddressPlan};

/// What this backend can run.
pub const FEATURES: [&str; 4] = ["namespaces", "draft-fmi", "binding-revocation", "real-time"];
const LIMIT: Duration = Duration::from_secs(10);
/// How long signalling in flight may take in namespaces (round trips are
/// well under a millisecond).
const SETTLE: Duration = Duration::from_millis(200);
/// The longest an event's signalling is let finish, as virtual time lets
/// messages in flight arrive for at most a second.
const SETTLE_LIMIT: Duration = Duration::from_secs(1);
/// Longest `wait` played in real time.
const MAX_WAIT: Duration = Duration::from_secs(8);

fn cn_gateway(cn_addr: Ipv6Addr) -> Ipv6Addr {
    let s = cn_addr.segments();
    Ipv6Addr::new(s[0], s[1], s[2], s[3], 0, 0, 0, 0xffff)
}

pub(crate) struct Run<'a> {
    s: &'a Scenario,
    file: PathBuf,
    pub(crate) lab: Lab,
    plan: AddressPlan,
    probe_flow: u16,
    snapshots: BTreeMap<String, Value>,
    /// Started flows, each way: the probe flow id they are sent under.
    running: BTreeMap<(String, Direction), u16>,
    /// The message logs of daemons before they were killed.
    earlier_logs: BTreeMap<String, Vec<Value>>,
}

/// Runs `s` in namespaces with the daemon binary `node_bin`; `out` gets
/// the captures. The verdict says SKIP for steps only virtual time can play.
pub fn run(file: &Path, s: &Scenario, node_bin: &Path, out: Option<&Path>) -> ScenarioReport {
    let started = WallClock::now();
    let mut report = ScenarioReport::new(file, s, "namespaces");
    let missing = missing_features(s, &FEATURES);
    let virtual_only = s.steps.iter().find_map(|st| match &st.value {
        Step::Wait(w) if parse_duration(&w.value).is_some_and(|d| d.0 > MAX_WAIT.as_micros() as u64) => {
            Some(format!("a wait of {} (line {}) needs virtual time", w.value, st.referenced.line()))
        }
        Step::WaitFor(w) if parse_duration(&w.timeout.value).is_some_and(|d| d.0 > MAX_WAIT.as_micros() as u64) => {
            Some(format!("a wait_for bound of {} (line {}) needs virtual time", w.timeout.value, st.referenced.line()))
        }
        Step::Link(_) => Some(format!("link latency and loss (line {}) need virtual time", st.referenced.line())),
        _ => None,
    });
    if let Some(why) = (!missing.is_empty()).then(|| format!("needs {}", missing.join(", "))).or(virtual_only) {
        report.verdict = Verdict::Skip;
        report.reason = Some(why);
        return report;
    }
    let built = Lab::new().map_err(|e| e.to_string()).and_then(|lab| build(lab, s, file, node_bin, true));
    let mut r = match built {
        Ok(r) => r,
        Err(e) => return report.lab_failed(e),
    };
    for step in &s.steps {
        let line = step.referenced.line();
        match r.step(&step.value, line) {
            Ok(Some(c)) => report.checks.push(c),
            Ok(None) => {}
            Err(e) => report.checks.push(Check { line, what: "step".into(), ok: false, detail: e }),
        }
    }
    report.ladder = r.ladder();
    report.snapshots = std::mem::take(&mut r.snapshots);
    report.logs = s.nodes.keys().map(|n| (n.clone(), r.lab.daemon_log(n))).collect();
    report.events = crate::report::merge_logs(&report.logs);
    match r.lab.stop_captures() {
        Ok(caps) => {
            let dir = out.map(|o| o.join(&s.id));
            if let Some(d) = &dir {
                let _ = std::fs::create_dir_all(d);
            }
            let wire = pmip_wire::WireConfig { flow_mobility_mh_type: s.wire.fmi_mh_type };
            let mut all = Vec::new();
            for (link, path, _) in caps {
                if let Ok(bytes) = std::fs::read(&path) {
                    all.extend(pmip_captures::sequence::messages(&link, &pmip_captures::pcapng::read(&bytes), &wire));
                }
                if let (Some(d), Some(name)) = (&dir, path.file_name()) {
                    let _ = std::fs::copy(&path, d.join(name));
                }
            }
            // The captured signalling of every link, in time order, named by node.
            let merged = pmip_captures::sequence::merge(all);
            let lines: Vec<String> =
                merged.iter().map(|e| format!("{} -> {} {}", r.name_of(e.src), r.name_of(e.dst), e.summary)).collect();
            // The report's ladder is the wire's, timed from the first message.
            if let Some(first) = merged.first().map(|e| e.ts_us) {
                report.ladder =
                    merged.iter().zip(&lines).map(|(e, l)| format!("{}ms {l}", (e.ts_us - first) / 1000)).collect();
            }
            if let Some(d) = &dir {
                let _ = std::fs::write(d.join("sequence.txt"), lines.join("\n") + "\n");
            }
            report.checks.push(crate::snapshots::compare_sequence(file, &lines, 1));
        }
        Err(e) => report.checks.push(Check {
            line: 1,
            what: "every link was captured".into(),
            ok: false,
            detail: format!("the captures could not be stopped: {e}"),
        }),
    }
    report.verdict = if report.checks.iter().all(|c| c.ok) { Verdict::Pass } else { Verdict::Fail };
    report.wall_ms = started.elapsed().as_secs_f64() * 1000.0;
    report
}

/// Builds the scenario's namespaces and links in `lab`, with no daemon:
/// the core segment, each CN behind the LMA, and each MN interface's link
/// to its MAG, down until attached.
pub(crate) fn build_links(mut lab: Lab, s: &Scenario) -> Result<(Lab, AddressPlan), String> {
    let e = |x: std::io::Error| x.to_string();
    let plan = address_plan(s);
    for name in s.nodes.keys() {
        lab.add_node(name).map_err(e)?;
    }
    let role = |r: Role| s.nodes.iter().filter(move |(_, n)| n.value.role == r).map(|(k, _)| k.clone());
    let lma = role(Role::Lma).next().ok_or("no lma")?;
    let lma_addr = plan.of[&lma];
    let mags: Vec<(String, Ipv6Addr)> = role(Role::Mag).map(|m| (m.clone(), plan.of[&m])).collect();
    let mag_refs: Vec<(&str, Ipv6Addr)> = mags.iter().map(|(m, a)| (m.as_str(), *a)).collect();
    lab.core((&lma, lma_addr), &mag_refs).map_err(e)?;
    for cn in role(Role::Cn) {
        let addr = plan.of[&cn];
        let port = format!("to-{cn}");
        lab.veth(&lma, &port, &cn, "eth0").map_err(e)?;
        lab.address(&lma, &port, cn_gateway(addr), 64).map_err(e)?;
        lab.address(&cn, "eth0", addr, 64).map_err(e)?;
        lab.default_route(&cn, cn_gateway(addr)).map_err(e)?;
    }
    for l in &s.links {
        let (mn, iface) = l.value.mn.value.split_once('/').ok_or("bad link")?;
        lab.veth(&l.value.mag.value, &access_iface(&l.value.mn.value), mn, iface).map_err(e)?;
        lab.set_link(mn, iface, false).map_err(e)?;
    }
    Ok((lab, plan))
}

/// Builds the scenario's topology in `lab` and starts its daemons;
/// `capture` records every link: MAG access links, and the LMA's ports to
/// the MAGs and the CNs.
pub(crate) fn build<'a>(lab: Lab, s: &'a Scenario, file: &Path, bin: &Path, capture: bool) -> Result<Run<'a>, String> {
    let e = |x: std::io::Error| x.to_string();
    let (mut lab, plan) = build_links(lab, s)?;
    let role = |r: Role| s.nodes.iter().filter(move |(_, n)| n.value.role == r).map(|(k, _)| k.clone());
    let lma = role(Role::Lma).next().ok_or("no lma")?;
    let lma_addr = plan.of[&lma];
    let mags: Vec<(String, Ipv6Addr)> = role(Role::Mag).map(|m| (m.clone(), plan.of[&m])).collect();
    let cfg = crate::node_config::lma(s, &plan, lma_addr);
    let policies = crate::node_config::mn_policies(s);
    let dp = json!({"tun": "tun0", "mtu": 1460});
    let args = vec!["--fmi-mh-type".to_string(), s.wire.fmi_mh_type.to_string()];
    // The daemons start side by side; each is waited for below.
    lab.start_unready(&lma, bin, &json!({"role": "lma", "config": cfg, "policies": policies, "data_plane": dp}), &args)
        .map_err(e)?;
    for (mag, addr) in &mags {
        let c = crate::node_config::mag(s, mag, *addr, lma_addr);
        let mut access = BTreeMap::new();
        for l in s.links.iter().filter(|l| l.value.mag.value == *mag) {
            let att = parse_att(&l.value.att.value).ok_or("bad att")?;
            access.insert(access_iface(&l.value.mn.value), att.value());
        }
        lab.start_unready(mag, bin, &json!({"role": "mag", "config": c, "data_plane": dp, "access": access}), &args)
            .map_err(e)?;
    }
    for mn in role(Role::Mn) {
        let cfg = crate::node_config::mn(s, &plan, &mn).ok_or("no such MN")?;
        lab.start_unready(&mn, bin, &json!({"role": "mn", "config": cfg}), &[]).map_err(e)?;
    }
    for cn in role(Role::Cn) {
        lab.start_unready(&cn, bin, &json!({"role": "cn", "address": plan.of[&cn]}), &[]).map_err(e)?;
    }
    for node in s.nodes.keys() {
        lab.wait_ready(node).map_err(e)?;
    }
    for (mag, _) in mags.iter().filter(|_| capture) {
        for l in s.links.iter().filter(|l| l.value.mag.value == *mag) {
            lab.capture(mag, &access_iface(&l.value.mn.value)).map_err(e)?;
        }
        lab.capture(&lma, &format!("to-{mag}")).map_err(e)?;
    }
    for cn in role(Role::Cn).filter(|_| capture) {
        lab.capture(&lma, &format!("to-{cn}")).map_err(e)?;
    }
    Ok(Run {
        s,
        file: file.to_path_buf(),
        lab,
        plan,
        probe_flow: 100,
        snapshots: BTreeMap::new(),
        running: BTreeMap::new(),
        earlier_logs: BTreeMap::new(),
    })
}

impl Run<'_> {
    fn state(&self, node: &str) -> Result<Value, String> {
        let r = self.lab.request(node, &json!({"cmd": "state"})).map_err(|e| e.to_string())?;
        Ok(r["state"].clone())
    }

    fn request(&self, node: &str, req: Value) -> Result<(), String> {
        let r = self.lab.request(node, &req).map_err(|e| e.to_string())?;
        if r["ok"] == true {
            Ok(())
        } else {
            Err(format!("{node} refused {req}: {}", r["error"]))
        }
    }

    fn lma(&self) -> String {
        self.s.nodes.iter().find(|(_, n)| n.value.role == Role::Lma).map(|(k, _)| k.clone()).unwrap_or_default()
    }

    fn lma_command(&self, c: LmaCommand) -> Result<(), String> {
        self.request(&self.lma(), json!({"cmd": "lma", "command": c}))?;
        // Like the virtual runner's settle: let answers in flight arrive, but
        // do not wait for a retransmission (a scenario waits for that itself).
        let _ =
            self.lab.wait_for(&self.lma(), SETTLE, |s| s["tables"]["pending"].as_array().is_some_and(|p| p.is_empty()));
        Ok(())
    }

    fn name_of(&self, a: Ipv6Addr) -> String {
        self.plan.of.iter().find(|(_, v)| **v == a).map(|(k, _)| k.clone()).unwrap_or_else(|| a.to_string())
    }

    /// Messages every signalling daemon sent, as (from, to, summary).
    fn sent(&self) -> Vec<(u64, String, String, String)> {
        let mut out = Vec::new();
        for (name, n) in &self.s.nodes {
            if !matches!(n.value.role, Role::Lma | Role::Mag) {
                continue;
            }
            let now = self.state(name).map(|st| st["messages"].as_array().cloned().unwrap_or_default());
            let earlier = self.earlier_logs.get(name).into_iter().flatten().cloned();
            for m in earlier.chain(now.unwrap_or_default()).filter(|m| m["dir"] == "sent") {
                let to = m["peer"].as_str().and_then(|p| p.parse().ok()).map(|a| self.name_of(a)).unwrap_or_default();
                let at = m["at_ms"].as_u64().unwrap_or(0);
                out.push((at, name.clone(), to, m["summary"].as_str().unwrap_or("").to_string()));
            }
        }
        out
    }

    fn ladder(&self) -> Vec<String> {
        let mut v: Vec<String> = self.sent().into_iter().map(|(_, f, t, s)| format!("{f} -> {t} {s}")).collect();
        v.sort();
        v
    }

    fn fid_of(&self, flow: &str) -> Option<u16> {
        self.s.steps.iter().find_map(|st| match &st.value {
            Step::Bind(b) if b.flow.value == flow => Some(b.fid),
            _ => None,
        })
    }

    fn step(&mut self, step: &Step, line: u64) -> Result<Option<Check>, String> {
        match step {
            Step::Attach(a) => {
                let (mn, iface) = a.iface.value.split_once('/').ok_or("bad iface")?;
                let link = self.s.links.iter().find(|l| l.value.mn.value == a.iface.value).ok_or("no link")?;
                let port = access_iface(&a.iface.value);
                if a.hi.is_some() || !a.prefixes.is_empty() {
                    // A chosen HI or prefixes: the MAG is told before the link
                    // comes up, as a MAG with that context would act; the
                    // MN's RS then finds the attachment known and gets an RA.
                    let att = parse_att(&link.value.att.value).ok_or("bad att")?.value();
                    let hi = a.hi.as_ref().and_then(|h| parse_hi(&h.value)).map(|h| h.value());
                    let req = json!({"cmd": "attach", "iface": port, "ll_id": mac_for(mn, iface), "att": att, "hi": hi, "prefixes": a.prefixes});
                    self.request(&link.value.mag.value, req)?;
                }
                self.lab.set_link(mn, iface, true).map_err(|e| e.to_string())?;
                // The MAG decides first (registered or rejected); then, if
                // registered, the MN gets its prefixes by RA.
                let decided = self.lab.wait_for(&link.value.mag.value, LIMIT, |s| {
                    s["tables"]["binding_update_list"]
                        .as_array()
                        .is_some_and(|b| b.iter().any(|e| e["iface"] == port && e["state"] != "registering"))
                });
                let registered = decided.is_ok_and(|s| {
                    s["tables"]["binding_update_list"]
                        .as_array()
                        .is_some_and(|b| b.iter().any(|e| e["iface"] == port && e["state"] == "registered"))
                });
                if registered {
                    let _ = self.lab.wait_for(mn, LIMIT, |s| {
                        s["tables"]["interfaces"].as_array().is_some_and(|l| {
                            l.iter()
                                .any(|i| i["name"] == iface && i["prefixes"].as_array().is_some_and(|p| !p.is_empty()))
                        })
                    });
                }
                Ok(None)
            }
            Step::Detach(i) => {
                let (mn, iface) = i.value.split_once('/').ok_or("bad iface")?;
                self.lab.set_link(mn, iface, false).map_err(|e| e.to_string())?;
                let link = self.s.links.iter().find(|l| l.value.mn.value == i.value).ok_or("no link")?;
                let port = access_iface(&i.value);
                let mag = &link.value.mag.value;
                let entry_in = |s: &Value, states: &[&str]| {
                    s["tables"]["binding_update_list"].as_array().is_some_and(|b| {
                        b.iter().any(|e| e["iface"] == port && states.iter().any(|st| e["state"] == *st))
                    })
                };
                self.lab.wait_for(mag, LIMIT, |s| !entry_in(s, &["registered"])).map_err(|e| e.to_string())?;
                // As in virtual time, the de-registration in flight is let
                // finish (its PBA removes the entry) for at most a second; a
                // lost PBA is the scenario's to check, not an error here.
                let _ = self.lab.wait_for(mag, SETTLE_LIMIT, |s| !entry_in(s, &["deregistering"]));
                Ok(None)
            }
            Step::Bind(b) => {
                let f = &self.s.flows.get(&b.flow.value).ok_or("no flow")?.value;
                let selector = match (&b.selector, b.granularity) {
                    (Some(sel), _) => sel.to_selector(),
                    (None, Granularity::Flow) => self.flow_key(&b.flow.value).ok_or("flow key")?.selector(),
                    (None, Granularity::Prefix) => pmip_proto::flow::prefix_selector(f.prefix),
                };
                let action = if b.action.value == "drop" { FlowAction::Drop } else { FlowAction::Forward };
                let mn = mn_id(&f.mn.value, &self.s.nodes[&f.mn.value].value);
                self.lma_command(LmaCommand::BindFlow {
                    mn_id: mn,
                    fid: b.fid,
                    fid_pri: b.fid_pri,
                    selector,
                    bids: b.bids.clone(),
                    action,
                })?;
                Ok(None)
            }
            Step::Move(m) => {
                let f = &self.s.flows[&m.flow.value].value;
                let mn = mn_id(&f.mn.value, &self.s.nodes[&f.mn.value].value);
                let fid = self.fid_of(&m.flow.value).ok_or("unbound flow")?;
                self.lma_command(LmaCommand::MoveFlow { mn_id: mn, fid, to_bid: m.to_bid })?;
                Ok(None)
            }
            Step::MovePrefix(m) => {
                let mn = mn_id(&m.mn.value, &self.s.nodes[&m.mn.value].value);
                self.lma_command(LmaCommand::MovePrefix { mn_id: mn, prefix: m.prefix, to_bid: m.to_bid })?;
                Ok(None)
            }
            Step::Unbind(f) => {
                let flow = &self.s.flows[&f.value].value;
                let mn = mn_id(&flow.mn.value, &self.s.nodes[&flow.mn.value].value);
                self.lma_command(LmaCommand::UnbindFlow { mn_id: mn, fid: self.fid_of(&f.value).ok_or("unbound")? })?;
                Ok(None)
            }
            Step::Drop(d) => self.add_fault(d.rule().ok_or("bad fault")?).map(|_| None),
            Step::Fault(f) => self.add_fault(f.rule().ok_or("bad fault")?).map(|_| None),
            Step::Send(p) => {
                let now = std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .map(|d| d.as_micros() as u64)
                    .unwrap_or(0);
                let message = crate::crafted::pbu(self.s, p, now).ok_or("the PBU could not be built")?;
                let from = crate::crafted::sender(self.s, p).ok_or("no MAG to send from")?;
                let to = self.plan.of[&self.lma()];
                self.request(&from, json!({"cmd": "send", "to": to, "message": message}))?;
                // Let the LMA's answer arrive, as virtual time does.
                self.wait_answer(&self.lma(), "PBA", p.seq);
                Ok(None)
            }
            Step::SendFmi(f) => {
                let message = crate::crafted::fmi(self.s, f).ok_or("the FMI could not be built")?;
                let to = self.plan.of[&f.to.value];
                self.request(&self.lma(), json!({"cmd": "send", "to": to, "message": message}))?;
                // Let the MAG's answer arrive, as virtual time does.
                self.wait_answer(&f.to.value, "FMA", f.seq);
                Ok(None)
            }
            Step::Kill(n) => {
                // The daemon's message log dies with it; keep it, as virtual
                // time keeps every message.
                let log = self.state(&n.value)?["messages"].as_array().cloned().unwrap_or_default();
                self.earlier_logs.entry(n.value.clone()).or_default().extend(log);
                self.lab.kill(&n.value).map(|_| None).map_err(|e| e.to_string())
            }
            Step::Restart(n) => self.lab.restart(&n.value).map(|_| None).map_err(|e| e.to_string()),
            Step::StartFlow(f) => {
                let key = self.flow_key(&f.flow.value).ok_or("flow")?;
                if key.next_header != 17 && key.next_header != 6 {
                    return Err("namespace runs send UDP or TCP-shaped probes only".into());
                }
                self.probe_flow += 1;
                let id = self.probe_flow;
                let flow = &self.s.flows[&f.flow.value].value;
                let rate = f.rate_pps.value;
                let (sender, spec) = match f.direction {
                    Direction::Downlink => (
                        flow.cn.value.clone(),
                        json!({"cmd": "flow_start", "flow": id, "src": key.src, "dst": key.dst, "sport": key.src_port, "dport": key.dst_port, "rate_pps": rate, "proto": key.next_header}),
                    ),
                    Direction::Uplink => (
                        flow.mn.value.clone(),
                        json!({"cmd": "flow_start", "flow": id, "src": key.dst, "dst": key.src, "sport": key.dst_port, "dport": key.src_port, "rate_pps": rate}),
                    ),
                };
                self.request(&sender, spec)?;
                self.running.insert((f.flow.value.clone(), f.direction), id);
                Ok(None)
            }
            Step::StopFlow(f) => self.stop_flow(f, line).map(Some),
            Step::Link(_) => Err("link properties need virtual time".into()),
            Step::Wait(w) => {
                let d = parse_duration(&w.value).ok_or("bad duration")?;
                std::thread::sleep(Duration::from_micros(d.0));
                Ok(None)
            }
            Step::ExpectMessage(e) => Ok(Some(self.message_check(e, line))),
            Step::WaitFor(w) => {
                let limit = parse_duration(&w.timeout.value).ok_or("bad duration")?;
                let limit = Duration::from_micros(limit.0);
                let started = WallClock::now();
                loop {
                    let last = match (&w.seen, &w.holds) {
                        (Some(e), _) => self.message_check(e, line),
                        (_, Some(e)) => self.state_check(e, line)?,
                        _ => return Err("wait_for needs 'seen' or 'holds'".into()),
                    };
                    let waited = started.elapsed();
                    if last.ok || waited >= limit {
                        let detail = if last.ok {
                            format!("held after {} ms: {}", waited.as_millis(), last.detail)
                        } else {
                            format!("not within {}: {}", w.timeout.value, last.detail)
                        };
                        return Ok(Some(Check { line, what: format!("wait for {}", last.what), ok: last.ok, detail }));
                    }
                    std::thread::sleep(Duration::from_millis(5));
                }
            }
            Step::ExpectFlow(e) => self.expect_flow(e).map(Some).map_err(|x| x.to_string()),
            Step::ExpectUplink(e) => self.expect_uplink(e).map(Some),
            Step::ExpectState(e) => self.state_check(e, line).map(Some),
            Step::Snapshot(name) => {
                let mut now = json!({"lma": Value::Null, "mags": {}, "mns": {}});
                for (n, spec) in &self.s.nodes {
                    let slot = match spec.value.role {
                        Role::Lma => &mut now["lma"],
                        Role::Mag => &mut now["mags"][n],
                        Role::Mn => &mut now["mns"][n],
                        _ => continue,
                    };
                    *slot = self.state(n)?["tables"].clone();
                }
                let check = crate::snapshots::compare_across_backends(&self.file, name, &now, line);
                self.snapshots.insert(name.clone(), now);
                Ok(Some(check))
            }
        }
    }

    /// Waits, at most a second, until `node` has sent a `kind` message
    /// with sequence number `seq`: the answer to a crafted message. Its
    /// absence is the scenario's to check.
    fn wait_answer(&self, node: &str, kind: &str, seq: u16) {
        let seq = format!("seq={seq}");
        let answered = |s: &Value| {
            s["messages"].as_array().is_some_and(|m| {
                m.iter().any(|x| {
                    x["dir"] == "sent"
                        && x["summary"].as_str().is_some_and(|t| t.starts_with(kind) && t.split(' ').any(|w| w == seq))
                })
            })
        };
        let _ = self.lab.wait_for(node, SETTLE_LIMIT, answered);
    }

    /// Installs `rule` as a userspace fault rule where virtual time applies
    /// it (see [`FaultRule`](pmip_proto::fault::FaultRule)): at the sender
    /// named by `from`, else at the receiver named by `to`, else at the LMA,
    /// on the way out for what the LMA sends and on the way in for the rest.
    fn add_fault(&self, rule: pmip_proto::fault::FaultRule) -> Result<(), String> {
        const FROM_LMA: [&str; 4] = ["PBA", "BRI", "FMI", "UPN"];
        let (node, direction) = match (&rule.from, &rule.to) {
            (Some(f), _) => (f.clone(), "out"),
            (None, Some(t)) => (t.clone(), "in"),
            (None, None) if FROM_LMA.contains(&rule.message.as_str()) => (self.lma(), "out"),
            (None, None) => (self.lma(), "in"),
        };
        let spec = json!({"direction": direction, "message": rule.message, "action": rule.action, "count": rule.count});
        self.request(&node, json!({"cmd": "fault_add", "rule": spec}))?;
        Ok(())
    }

    /// Whether the messages `e` names were sent so far.
    fn message_check(&self, e: &ExpectMessage, line: u64) -> Check {
        let name = e.message.value.to_ascii_uppercase();
        let seen = self
            .sent()
            .into_iter()
            .filter(|(_, f, t, s)| {
                s.split(' ').next() == Some(name.as_str())
                    && e.from.as_ref().is_none_or(|x| x.value == *f)
                    && e.to.as_ref().is_none_or(|x| x.value == *t)
                    && e.with.iter().all(|w| s.split(' ').any(|tok| tok == w))
            })
            .count();
        let ok = e.count.map_or(seen > 0, |n| n == seen);
        let want = e.count.map(|n| n.to_string()).unwrap_or_else(|| "at least 1".into());
        Check {
            line,
            what: format!("message {name} {}", e.with.join(" ")),
            ok,
            detail: format!("expected {want}, saw {seen}"),
        }
    }

    /// Whether a node's state tables hold what `e` says.
    fn state_check(&self, e: &ExpectState, line: u64) -> Result<Check, String> {
        let st = self.state(&e.node.value)?;
        let found = st["tables"].pointer(&e.path).cloned();
        let (ok, detail) = match (&e.equals, e.len, &found) {
            (_, _, None) => (false, format!("nothing at {}", e.path)),
            (Some(want), _, Some(v)) => (v == want, format!("found {v}")),
            (None, Some(n), Some(v)) => (v.as_array().map(|a| a.len()) == Some(n), format!("found {v}")),
            _ => (false, "nothing to compare".into()),
        };
        Ok(Check { line, what: format!("{} {}", e.node.value, e.path), ok, detail })
    }

    fn flow_key(&self, name: &str) -> Option<pmip_proto::FlowKey> {
        let f = &self.s.flows.get(name)?.value;
        Some(pmip_proto::FlowKey {
            src: *self.plan.of.get(&f.cn.value)?,
            dst: f.prefix.with_iid(*self.plan.iid.get(&f.mn.value)?),
            next_header: proto_number(&f.proto.value)?,
            src_port: f.sport,
            dst_port: f.dport,
        })
    }

    /// Probe datagrams from the CN; the MN counts where they arrive.
    fn expect_flow(&mut self, e: &ExpectFlow) -> Result<Check, String> {
        let key = self.flow_key(&e.flow.value).ok_or("flow")?;
        let f = &self.s.flows[&e.flow.value].value;
        if key.next_header != 17 && key.next_header != 6 {
            return Err("namespace runs send UDP or TCP-shaped probes only".into());
        }
        self.probe_flow += 1;
        let id = self.probe_flow;
        let packets = e.packets.max(1);
        let spec = json!({"cmd": "flow_start", "flow": id, "src": key.src, "dst": key.dst, "sport": key.src_port, "dport": key.dst_port, "rate_pps": 1000, "count": packets, "proto": key.next_header});
        self.request(&f.cn.value, spec)?;
        self.lab.wait_for(&f.cn.value, LIMIT, |s| s["sent"][id.to_string()] == packets).map_err(|x| x.to_string())?;
        let mn = f.mn.value.clone();
        let key_id = id.to_string();
        let st = match self.lab.wait_for(&mn, Duration::from_millis(if e.dropped { 300 } else { 3000 }), |s| {
            s["probes"][&key_id]["stats"]["received"].as_u64().unwrap_or(0) >= u64::from(packets)
        }) {
            Ok(s) => s,
            Err(_) => self.state(&mn)?,
        };
        let stats = &st["probes"][&key_id]["stats"];
        let got = |iface: &str| stats["by_interface"][iface].as_u64().unwrap_or(0);
        let total = stats["received"].as_u64().unwrap_or(0);
        Ok(match (&e.arrives_on, e.dropped) {
            (_, true) => Check {
                line: e.flow.referenced.line(),
                what: format!("flow {} is dropped", e.flow.value),
                ok: total == 0,
                detail: format!("{total} of {packets} arrived"),
            },
            (Some(want), false) => {
                let iface = want.value.split_once('/').map(|(_, i)| i).unwrap_or("");
                let good = got(iface);
                let mut detail = format!("{good} of {packets} on {iface}; by interface {}", stats["by_interface"]);
                if u64::from(packets).saturating_sub(good) > u64::from(e.max_lost) {
                    // Say where the packets went missing.
                    for (name, n) in &self.s.nodes {
                        if matches!(n.value.role, Role::Lma | Role::Mag) {
                            let dp = self.state(name).map(|s| s["data_plane"]["counters"].clone()).unwrap_or_default();
                            detail.push_str(&format!("; {name} {dp}"));
                        }
                    }
                }
                Check {
                    line: e.flow.referenced.line(),
                    what: format!("flow {} arrives on {}", e.flow.value, want.value),
                    ok: u64::from(packets).saturating_sub(good) <= u64::from(e.max_lost),
                    detail,
                }
            }
            (None, false) => return Err("expect_flow without arrives_on".into()),
        })
    }

    /// Stops a started flow at the CN, lets what is in flight arrive (at
    /// most a second), and accounts for it as virtual time does.
    fn stop_flow(&mut self, f: &StopFlow, line: u64) -> Result<Check, String> {
        let direction = f.direction;
        let id = self.running.remove(&(f.flow.value.clone(), direction)).ok_or("flow not started")?;
        let spec = &self.s.flows[&f.flow.value].value;
        let (cn, mn) = (spec.cn.value.clone(), spec.mn.value.clone());
        let (sender, receiver) = match direction {
            Direction::Downlink => (cn, mn.clone()),
            Direction::Uplink => (mn.clone(), cn),
        };
        self.request(&sender, json!({"cmd": "flow_stop", "flow": id}))?;
        let sent_by = self.state(&sender)?;
        let sent = sent_by["sent"][id.to_string()].as_u64().unwrap_or(0);
        let key = id.to_string();
        // The MN keeps probes under "probes", the CN under "received".
        let stats_of = |s: &Value| match &s["probes"][&key]["stats"] {
            Value::Null => s["received"][&key]["stats"].clone(),
            v => v.clone(),
        };
        let received = |s: &Value| stats_of(s)["received"].as_u64().unwrap_or(0);
        let st = match self.lab.wait_for(&receiver, SETTLE_LIMIT, |s| received(s) >= sent) {
            Ok(s) => s,
            Err(_) => self.state(&receiver)?,
        };
        let mut account = FlowAccount { sent, received: received(&st), by_interface: Vec::new() };
        match direction {
            Direction::Downlink => {
                let stats = stats_of(&st);
                for iface in stats["arrival_order"].as_array().into_iter().flatten().filter_map(|i| i.as_str()) {
                    let n = stats["by_interface"][iface].as_u64().unwrap_or(0);
                    account.by_interface.push((format!("{mn}/{iface}"), n));
                }
            }
            Direction::Uplink => {
                for pair in sent_by["left_on"][&key].as_array().into_iter().flatten() {
                    let iface = pair[0].as_str().unwrap_or("?");
                    account.by_interface.push((format!("{mn}/{iface}"), pair[1].as_u64().unwrap_or(0)));
                }
            }
        }
        Ok(account.check(f, line))
    }

    /// One uplink probe from the MN's address; the MN says which way it left.
    fn expect_uplink(&mut self, e: &ExpectUplink) -> Result<Check, String> {
        let key = self.flow_key(&e.flow.value).ok_or("flow")?;
        let f = &self.s.flows[&e.flow.value].value;
        let mn = f.mn.value.clone();
        let before = self.state(&mn)?["counters"].clone();
        self.probe_flow += 1;
        let id = self.probe_flow;
        let spec = json!({"cmd": "flow_start", "flow": id, "src": key.dst, "dst": key.src, "sport": key.dst_port, "dport": key.src_port, "rate_pps": 1000, "count": 1});
        self.request(&mn, spec)?;
        let received = self
            .lab
            .wait_for(&f.cn.value, Duration::from_secs(3), |s| s["received"][id.to_string()]["stats"]["received"] == 1)
            .is_ok();
        let after = self.state(&mn)?["counters"].clone();
        let left: Vec<String> = self.s.nodes[&mn]
            .value
            .interfaces
            .iter()
            .filter(|i| {
                let k = format!("uplink via {i}");
                after[&k].as_u64().unwrap_or(0) > before[&k].as_u64().unwrap_or(0)
            })
            .cloned()
            .collect();
        let want = e.leaves_on.value.split_once('/').map(|(_, i)| i.to_string()).unwrap_or_default();
        Ok(Check {
            line: e.flow.referenced.line(),
            what: format!("uplink of {} leaves on {}", e.flow.value, e.leaves_on.value),
            ok: received && left.contains(&want),
            detail: format!("left on {left:?}; the CN {} it", if received { "got" } else { "did not get" }),
        })
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
