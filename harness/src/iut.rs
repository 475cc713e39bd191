//! An implementation under test (IUT): a `mag` or `lma` node played by any
//! command, not by `pmip-node` (`impl:` in a topology, `pmiplab run --iut`).
//! What is handed to it, how it is judged ready, and which steps it can
//! play: docs/implementation-under-test.md is the contract this module
//! keeps.

use std::collections::BTreeMap;

use pmip_control::handover::{self, HandOver};
use serde::Deserialize;
use serde_saphyr::{Location, Spanned};

use crate::plan::{self, access_iface, AddressPlan};
use crate::scenario::{parse_att, Role, Scenario, Step};

/// How long an IUT may take to become ready, unless `ready_within_ms` says.
pub const READY_WITHIN_MS: u64 = 10_000;
/// How long an IUT has between SIGTERM and SIGKILL, unless `stop_within_ms` says.
pub const STOP_WITHIN_MS: u64 = 2_000;

/// `impl:` of a node.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ImplSpec {
    /// The program and its arguments, started in the node's namespace.
    pub command: Vec<String>,
    /// More environment variables (after pmiplab's own `PMIPLAB_*`).
    #[serde(default)]
    pub env: BTreeMap<String, String>,
    /// When it is ready; `socket: mh` (a raw IPv6 socket for the Mobility
    /// Header) when left out.
    #[serde(default)]
    pub ready: Option<Spanned<Ready>>,
    #[serde(default)]
    pub ready_within_ms: Option<u64>,
    #[serde(default)]
    pub stop_within_ms: Option<u64>,
    /// Commands for the decisions no standard message triggers, by step
    /// keyword: `attach` (MAG), `bind`, `move`, `move_prefix`, `unbind` (LMA).
    #[serde(default)]
    pub hooks: BTreeMap<String, Spanned<Vec<String>>>,
}

/// A readiness condition that needs no cooperation from the IUT.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
pub enum Ready {
    /// A file appears (placeholders allowed, e.g. `{work}/up`).
    File(String),
    /// A probe command, run in the node's namespace, exits 0.
    Command(Vec<String>),
    /// A socket is open in the node's namespace: `mh` (raw, protocol
    /// 135), `tcp:PORT` (listening), `udp:PORT` or `raw:PROTO`.
    Socket(String),
}

/// The hooks a role may have, with the placeholders each may use.
pub const HOOKS: [(&str, Role, &[&str]); 5] = [
    ("attach", Role::Mag, &["mn", "iface", "port", "ll_id", "att", "hi", "prefixes", "json"]),
    ("bind", Role::Lma, &["mn", "fid", "fid_pri", "bids", "action", "json"]),
    ("move", Role::Lma, &["mn", "fid", "bid", "json"]),
    ("move_prefix", Role::Lma, &["mn", "prefix", "bid", "json"]),
    ("unbind", Role::Lma, &["mn", "fid", "json"]),
];

/// Placeholders any command (and hook) may use.
pub const COMMON_PLACEHOLDERS: [&str; 3] = ["node", "config", "work"];

/// A socket condition as (kind, number): `("raw", 135)`, `("tcp", 8080)`.
pub fn parse_socket(text: &str) -> Result<(&'static str, u32), String> {
    let bad = || format!("'{text}' is not a socket condition: write mh, tcp:PORT, udp:PORT or raw:PROTO");
    if text == "mh" {
        return Ok(("raw", 135));
    }
    let (kind, n) = text.split_once(':').ok_or_else(bad)?;
    let n: u32 = n.parse().map_err(|_| bad())?;
    match kind {
        "tcp" if n <= 65535 => Ok(("tcp", n)),
        "udp" if n <= 65535 => Ok(("udp", n)),
        "raw" if n <= 255 => Ok(("raw", n)),
        _ => Err(bad()),
    }
}

/// The `{name}` placeholders of `word`, or why one is not closed.
fn placeholders(word: &str) -> Result<Vec<&str>, String> {
    let mut out = Vec::new();
    let mut rest = word;
    while let Some(i) = rest.find('{') {
        let after = &rest[i + 1..];
        let j = after.find('}').ok_or_else(|| format!("'{word}' opens a {{placeholder}} it never closes"))?;
        out.push(&after[..j]);
        rest = &after[j + 1..];
    }
    Ok(out)
}

/// Checks a node's `impl:`; the error is for the location given.
pub fn check(name: &str, role: Role, spec: &Spanned<ImplSpec>) -> Result<(), (Location, String)> {
    let at = spec.referenced;
    let s = &spec.value;
    if !matches!(role, Role::Mag | Role::Lma) {
        return Err((at, format!("{name}: only mag and lma nodes take 'impl'")));
    }
    let allowed = |extra: &[&str], word: &str, what: &str| -> Result<(), String> {
        for p in placeholders(word)? {
            if !COMMON_PLACEHOLDERS.contains(&p) && !extra.contains(&p) {
                let mut all: Vec<&str> = COMMON_PLACEHOLDERS.to_vec();
                all.extend_from_slice(extra);
                return Err(format!(
                    "{name}: {what} has an unknown placeholder {{{p}}} (it may use {})",
                    all.join(", ")
                ));
            }
        }
        Ok(())
    };
    match s.command.first() {
        None => return Err((at, format!("{name}: impl needs a command to run (command: [program, args…])"))),
        Some(p) if p.trim().is_empty() => return Err((at, format!("{name}: impl's command names no program"))),
        Some(_) => {}
    }
    for w in &s.command {
        allowed(&[], w, "the command").map_err(|e| (at, e))?;
    }
    if let Some(r) = &s.ready {
        let e = |m: String| (r.referenced, m);
        match &r.value {
            Ready::File(f) if f.is_empty() => return Err(e(format!("{name}: ready: file needs a path"))),
            Ready::File(f) => allowed(&[], f, "ready: file").map_err(e)?,
            Ready::Command(c) if c.is_empty() => {
                return Err(e(format!("{name}: ready: command needs a program to run")))
            }
            Ready::Command(c) => {
                for w in c {
                    allowed(&[], w, "ready: command").map_err(e)?;
                }
            }
            Ready::Socket(t) => {
                parse_socket(t).map_err(|m| e(format!("{name}: {m}")))?;
            }
        }
    }
    for (ms, what) in [(s.ready_within_ms, "ready_within_ms"), (s.stop_within_ms, "stop_within_ms")] {
        if ms.is_some_and(|ms| ms == 0 || ms > 60_000) {
            return Err((at, format!("{name}: {what} must be between 1 and 60000")));
        }
    }
    for (hook, argv) in &s.hooks {
        let e = |m: String| (argv.referenced, m);
        let Some((_, for_role, extra)) = HOOKS.iter().find(|(h, _, _)| h == hook) else {
            let known: Vec<&str> = HOOKS.iter().map(|(h, _, _)| *h).collect();
            return Err(e(format!("{name}: '{hook}' is not a hook (hooks: {})", known.join(", "))));
        };
        if *for_role != role {
            return Err(e(format!("{name}: the {hook} hook is for an {} under test", role_name(*for_role))));
        }
        if argv.value.is_empty() {
            return Err(e(format!("{name}: the {hook} hook needs a command")));
        }
        for w in &argv.value {
            allowed(extra, w, &format!("the {hook} hook")).map_err(e)?;
        }
    }
    Ok(())
}

fn role_name(r: Role) -> &'static str {
    match r {
        Role::Lma => "lma",
        Role::Mag => "mag",
        Role::Mn => "mn",
        Role::Cn => "cn",
    }
}

/// Splits a command line into words as a POSIX shell would for plain
/// words, single and double quotes and backslashes (no expansions).
pub fn split_words(line: &str) -> Result<Vec<String>, String> {
    let mut words = Vec::new();
    let mut cur: Option<String> = None;
    let mut chars = line.chars();
    while let Some(c) = chars.next() {
        match c {
            c if c.is_whitespace() => {
                if let Some(w) = cur.take() {
                    words.push(w);
                }
            }
            '\'' => {
                let w = cur.get_or_insert_with(String::new);
                loop {
                    match chars.next() {
                        Some('\'') => break,
                        Some(x) => w.push(x),
                        None => return Err(format!("'{line}' has an unclosed single quote")),
                    }
                }
            }
            '"' => {
                let w = cur.get_or_insert_with(String::new);
                loop {
                    match chars.next() {
                        Some('"') => break,
                        Some('\\') => match chars.next() {
                            Some(x) => w.push(x),
                            None => return Err(format!("'{line}' ends inside a double quote")),
                        },
                        Some(x) => w.push(x),
                        None => return Err(format!("'{line}' has an unclosed double quote")),
                    }
                }
            }
            '\\' => match chars.next() {
                Some(x) => cur.get_or_insert_with(String::new).push(x),
                None => return Err(format!("'{line}' ends with a lone backslash")),
            },
            c => cur.get_or_insert_with(String::new).push(c),
        }
    }
    words.extend(cur);
    Ok(words)
}

/// `--iut ROLE=FILE.yaml`: FILE holds an `impl:` (command, env, ready,
/// hooks), checked with its line and column. `--iut ROLE=CMD`: CMD is
/// split into words, with the default readiness and no hooks.
pub fn load_cli(arg: &str) -> Result<(Role, ImplSpec), String> {
    let (role, spec) = parse_cli(arg)?;
    let [file] = spec.command.as_slice() else { return Ok((role, spec)) };
    let path = std::path::Path::new(file);
    let is_yaml = path.extension().is_some_and(|e| e == "yaml" || e == "yml");
    if !is_yaml || !path.is_file() {
        return Ok((role, spec));
    }
    let text = std::fs::read_to_string(path).map_err(|e| format!("{file}: {e}"))?;
    let spec: Spanned<ImplSpec> = serde_saphyr::from_str(&text).map_err(|e| {
        let (line, column) = e.location().map(|l| (l.line(), l.column())).unwrap_or((0, 0));
        let first = e.to_string().lines().next().unwrap_or_default().to_string();
        format!("{file}:{line}:{column}: {first}")
    })?;
    let name = format!("--iut {}", role_name(role));
    check(&name, role, &spec).map_err(|(at, why)| format!("{file}:{}:{}: {why}", at.line(), at.column()))?;
    Ok((role, spec.value))
}

/// `--iut ROLE=CMD`: the role and the `impl` every node of it gets. CMD
/// is split into words; its readiness is the default (`socket: mh`).
pub fn parse_cli(arg: &str) -> Result<(Role, ImplSpec), String> {
    let (role, cmd) =
        arg.split_once('=').ok_or_else(|| format!("--iut {arg}: write ROLE=COMMAND, e.g. mag=ci/iut/pmip-node-iut"))?;
    let role = match role {
        "mag" => Role::Mag,
        "lma" => Role::Lma,
        other => return Err(format!("--iut {arg}: '{other}' is not a role an implementation can play (mag or lma)")),
    };
    let command = split_words(cmd)?;
    if command.is_empty() {
        return Err(format!("--iut {arg}: no command given"));
    }
    Ok((
        role,
        ImplSpec {
            command,
            env: BTreeMap::new(),
            ready: None,
            ready_within_ms: None,
            stop_within_ms: None,
            hooks: BTreeMap::new(),
        },
    ))
}

/// Gives every node of `role` in `s` the implementation `spec`.
pub fn apply(s: &mut Scenario, role: Role, spec: &ImplSpec) {
    for n in s.nodes.values_mut().filter(|n| n.value.role == role) {
        n.value.implementation = Some(Spanned::new(spec.clone(), Location::UNKNOWN, Location::UNKNOWN));
    }
}

/// The nodes of `s` played by an implementation under test.
pub fn nodes(s: &Scenario) -> BTreeMap<&str, &ImplSpec> {
    s.nodes.iter().filter_map(|(n, spec)| Some((n.as_str(), &spec.value.implementation.as_ref()?.value))).collect()
}

/// The hook `hook` of node `node`, if it is an IUT that has it.
pub fn hook<'a>(s: &'a Scenario, node: &str, hook: &str) -> Option<&'a [String]> {
    let spec = &s.nodes.get(node)?.value.implementation.as_ref()?.value;
    spec.hooks.get(hook).map(|h| h.value.as_slice())
}

/// `words` with every `{name}` replaced from `values` (unknown ones are
/// kept as written: the validator refuses them beforehand).
pub fn expand(words: &[String], values: &BTreeMap<&str, String>) -> Vec<String> {
    words
        .iter()
        .map(|w| {
            let mut out = w.clone();
            for (k, v) in values {
                out = out.replace(&format!("{{{k}}}"), v);
            }
            out
        })
        .collect()
}

/// What pmiplab hands to the IUT playing `node` of `s`.
pub fn handover(s: &Scenario, plan: &AddressPlan, node: &str) -> Result<HandOver, String> {
    let spec = &s.nodes.get(node).ok_or_else(|| format!("the scenario has no node {node}"))?.value;
    let first_lma = plan::lma_name(s).ok_or("the scenario has no LMA")?;
    let address = *plan.of.get(node).ok_or_else(|| format!("{node} has no address"))?;
    let mut h = HandOver {
        version: handover::HANDOVER_VERSION,
        node: node.to_string(),
        role: role_name(spec.role).to_string(),
        address,
        core_interface: "core".into(),
        core_prefix_len: 64,
        fmi_mh_type: s.wire.fmi_mh_type,
        profile: match s.wire.profile {
            crate::scenario::Profile::DraftFmi => "draft-fmi",
            crate::scenario::Profile::Rfc7864 => "rfc7864",
        }
        .into(),
        lma: None,
        heartbeat: None,
        flow_requests: Vec::new(),
        access: Vec::new(),
        mags: Vec::new(),
        mns: Vec::new(),
        lma_settings: None,
        cn_links: Vec::new(),
        two_level_lma: None,
        two_level_mag: None,
    };
    match spec.role {
        Role::Mag => {
            let lma = plan::lma_of(s, node).ok_or("the scenario has no LMA")?;
            h.lma = plan.of.get(lma).copied();
            let lma_addr = h.lma.ok_or_else(|| format!("{lma} has no address"))?;
            let c = crate::node_config::mag(s, plan, node, address, lma_addr);
            h.heartbeat = c.heartbeat.as_ref().map(handover::HeartbeatSettings::of);
            h.two_level_mag = c.two_level.clone();
            for (ll, fi) in &c.flow_requests {
                let r = handover::FlowRequest::of(ll, fi).ok_or_else(|| {
                    format!("{node} asks for flow {} with a selector the hand-over cannot carry", fi.fid)
                })?;
                h.flow_requests.push(r);
            }
            for l in s.links.iter().filter(|l| l.value.mag.value == node) {
                let (mn, iface) = l.value.mn.value.split_once('/').ok_or("a link names mn/iface")?;
                let mn_spec = &s.nodes.get(mn).ok_or_else(|| format!("no MN named {mn}"))?.value;
                let att = parse_att(&l.value.att.value).ok_or("bad access technology")?;
                h.access.push(handover::AccessLink {
                    interface: access_iface(&l.value.mn.value),
                    att: att.value(),
                    mn: mn.into(),
                    mn_interface: iface.into(),
                    mn_ll_id: handover::format_mac(&pmip_proto::world::mac_for(mn, iface)),
                    mn_id: plan::mn_id(mn, mn_spec),
                });
            }
        }
        Role::Lma => {
            for (name, n) in s.nodes.iter().filter(|(_, n)| n.value.role == Role::Mag) {
                let address = *plan.of.get(name).ok_or_else(|| format!("{name} has no address"))?;
                h.mags.push(handover::MagPeer {
                    name: name.clone(),
                    address,
                    authorized: n.value.authorized != Some(false),
                });
            }
            for p in crate::node_config::mn_policies(s, plan, node) {
                let name = s
                    .nodes
                    .iter()
                    .find(|(n, spec)| spec.value.role == Role::Mn && plan::mn_id(n, &spec.value) == p.mn_id)
                    .map(|(n, _)| n.clone())
                    .unwrap_or_default();
                let model = serde_json::to_value(p.model).ok().and_then(|v| v.as_str().map(str::to_string));
                h.mns.push(handover::MnProfile {
                    name,
                    mn_id: p.mn_id,
                    model: model.unwrap_or_default(),
                    prefixes: p.unique_prefixes,
                    shared_prefixes: p.shared_prefixes,
                    per_attachment: p.per_attachment,
                    proxy_enabled: p.proxy_enabled,
                    served_by: p.served_by,
                    flows_on_attach: p
                        .flows_on_attach
                        .iter()
                        .map(|(ll, fid)| handover::FlowOnAttach { mn_ll_id: handover::format_mac(ll), fid: *fid })
                        .collect(),
                });
            }
            h.two_level_lma = crate::node_config::lma(s, plan, address).two_level;
            let l = &s.lma;
            h.lma_settings = Some(handover::LmaSettings {
                partial_handoff_hi: l.partial_handoff_hi,
                revoke_on_partial_handoff: l.revoke_on_partial_handoff,
                delete_at_old_mag: l.delete_at_old_mag,
                notify_shared_moves: l.notify_shared_moves,
                flow_lifetime_secs: l.flow_lifetime_secs,
                max_lifetime_secs: l.max_lifetime_secs,
                use_timestamps: l.use_timestamps,
                min_delay_before_bce_delete_ms: l.min_delay_before_bce_delete_ms,
                initial_retransmit_ms: l.initial_retransmit_ms.map(|n| n.get()),
                heartbeat: l.heartbeat.map(|h| handover::HeartbeatSettings::of(&h.config())),
                on_mag_down: l.on_mag_down,
                grant_flow_requests: l.grant_flow_requests,
            });
            // The CNs are behind the first LMA only.
            for cn in plan::nodes_in(s, Role::Cn).filter(|_| node == first_lma) {
                let cn_address = *plan.of.get(cn).ok_or_else(|| format!("{cn} has no address"))?;
                h.cn_links.push(handover::CnLink {
                    interface: format!("to-{cn}"),
                    address: plan::cn_gateway(cn_address),
                    cn: cn.into(),
                    cn_address,
                });
            }
        }
        Role::Mn | Role::Cn => return Err(format!("{node} is not a mag or an lma: it cannot be under test")),
    }
    Ok(h)
}

/// The environment variables an IUT (and its hooks and probes) gets, from
/// its hand-over: the common case needs no JSON parser.
pub fn environment(h: &HandOver, config: &std::path::Path, work: &std::path::Path) -> BTreeMap<String, String> {
    let mut env = BTreeMap::new();
    let mut put = |k: &str, v: String| {
        env.insert(format!("PMIPLAB_{k}"), v);
    };
    put("CONFIG", config.display().to_string());
    put("WORK_DIR", work.display().to_string());
    put("NODE", h.node.clone());
    put("ROLE", h.role.clone());
    put("ADDRESS", h.address.to_string());
    put("CORE_IFACE", h.core_interface.clone());
    put("FMI_MH_TYPE", h.fmi_mh_type.to_string());
    put("PROFILE", h.profile.clone());
    if let Some(lma) = h.lma {
        put("LMA_ADDRESS", lma.to_string());
    }
    if !h.access.is_empty() {
        put("ACCESS_IFACES", h.access.iter().map(|a| a.interface.clone()).collect::<Vec<_>>().join(" "));
    }
    if !h.mags.is_empty() {
        put("MAG_ADDRESSES", h.mags.iter().map(|m| m.address.to_string()).collect::<Vec<_>>().join(" "));
    }
    if !h.mns.is_empty() {
        put("MN_IDS", h.mns.iter().map(|m| m.mn_id.clone()).collect::<Vec<_>>().join(" "));
    }
    env
}

/// Why a scenario with implementations under test cannot play `step`: the
/// step needs the IUT's cooperation and no outside means or hook stands
/// in for it. The same answer before and after the lab is built.
pub fn cannot_play(s: &Scenario, step: &Step, line: u64) -> Option<String> {
    let iuts = nodes(s);
    if iuts.is_empty() {
        return None;
    }
    let lma = plan::lma_name(s)?;
    let lma_hook = |name: &str| {
        (iuts.contains_key(lma) && hook(s, lma, name).is_none()).then(|| {
            format!("the {name} step (line {line}) has no standard trigger and the LMA under test has no '{name}' hook")
        })
    };
    match step {
        Step::Attach(a) if a.hi.is_some() || !a.prefixes.is_empty() => {
            let mag = &s.links.iter().find(|l| l.value.mn.value == a.iface.value)?.value.mag.value;
            (iuts.contains_key(mag.as_str()) && hook(s, mag, "attach").is_none()).then(|| {
                format!(
                    "the attach (line {line}) chooses the Handoff Indicator or prefixes, which only a hook can tell {mag} under test, and it has no 'attach' hook"
                )
            })
        }
        Step::Carve(_) | Step::FlowHandover(_) => {
            // Both reach every MAG over pmip-node's control socket (the
            // carving or taking MAG, and the L2 hint to the others).
            let mag = s.nodes.iter().find(|(n, spec)| spec.value.role == Role::Mag && iuts.contains_key(n.as_str()));
            mag.map(|(mag, _)| {
                format!("the 2-level step (line {line}) has no standard trigger, and {mag} is under test")
            })
        }
        Step::Bind(_) => lma_hook("bind"),
        Step::Move(_) => lma_hook("move"),
        Step::MovePrefix(_) => lma_hook("move_prefix"),
        Step::Unbind(_) => lma_hook("unbind"),
        Step::Drop(_) | Step::Fault(_) => {
            let rule = match step {
                Step::Drop(d) => d.rule()?,
                Step::Fault(f) => f.rule()?,
                _ => return None,
            };
            fault_place(s, &rule).err().map(|why| format!("the fault (line {line}) {why}"))
        }
        _ => None,
    }
}

/// Where a fault rule is installed (node, at its receiving side?), as
/// [`crate::netns_run`] places it, moved off a node under test. A drop at
/// an IUT's sending side goes to the receiver's receiving side (the
/// message is then on the wire but not taken in); a drop at an IUT's
/// receiving side goes to the sender's sending side. Message checks read
/// both the same way: not delivered. The other end is the rule's `from` /
/// `to`, else the LMA for what a MAG sends, else the only MAG. `Err` when
/// no node of ours can hold the rule.
pub fn fault_place(s: &Scenario, rule: &pmip_proto::fault::FaultRule) -> Result<(String, bool), String> {
    const FROM_LMA: [&str; 4] = ["PBA", "BRI", "FMI", "UPN"];
    let lma = plan::lma_name(s).ok_or("the scenario has no LMA")?.to_string();
    let iuts = nodes(s);
    let (node, incoming) = match (&rule.from, &rule.to) {
        (Some(f), _) => (f.clone(), false),
        (None, Some(t)) => (t.clone(), true),
        (None, None) if FROM_LMA.contains(&rule.message.as_str()) => (lma.clone(), false),
        (None, None) => (lma.clone(), true),
    };
    if !iuts.contains_key(node.as_str()) {
        return Ok((node, incoming));
    }
    // The node at the other end of the message from `at`.
    let other_end = |at: &str, named: &Option<String>| -> Option<String> {
        if let Some(n) = named {
            return Some(n.clone());
        }
        if at != lma {
            return Some(lma.clone());
        }
        let mags: Vec<&str> = plan::nodes_in(s, Role::Mag).collect();
        match mags.as_slice() {
            [only] => Some(only.to_string()),
            _ => None,
        }
    };
    let ours = |n: &Option<String>| n.clone().filter(|n| !iuts.contains_key(n.as_str()));
    // Only a drop means the same at either end: a delay, duplicate or
    // reorder at the other end puts the message on the wire at another
    // time or another number of times than the model does.
    let drop = rule.action == pmip_proto::fault::FaultAction::Drop;
    let moved = match incoming {
        true => ours(&other_end(&node, &rule.from)).map(|n| (n, false)),
        false => ours(&other_end(&node, &rule.to)).map(|n| (n, true)),
    }
    .filter(|_| drop);
    moved.ok_or_else(|| match drop {
        true => format!(
            "would act inside {node}, which is under test, and no peer of ours on the message's way can stand in for it"
        ),
        false => format!(
            "would act inside {node}, which is under test; at the other end it would not put the same messages on the wire"
        ),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::{Path, PathBuf};

    fn topologies() -> Vec<PathBuf> {
        let pattern = Path::new(env!("CARGO_MANIFEST_DIR")).join("../topologies/*.yaml");
        glob::glob(&pattern.to_string_lossy()).unwrap().filter_map(Result::ok).collect()
    }

    /// The hand-over carries everything pmip-node's own configuration
    /// holds: translated back, it gives the very configuration the harness
    /// gives the daemon, for every node of every scenario.
    #[test]
    fn the_handover_translates_back_to_the_daemons_configuration() {
        let files = topologies();
        assert!(files.len() >= 10);
        for f in files {
            let s = crate::scenario::load(&f).unwrap_or_else(|e| panic!("{e}"));
            let plan = crate::plan::address_plan(&s);
            for lma in plan::nodes_in(&s, Role::Lma) {
                let h = handover(&s, &plan, lma).unwrap();
                let (cfg, policies) = h.lma_config().unwrap();
                assert_eq!(cfg, crate::node_config::lma(&s, &plan, plan.of[lma]), "{} {lma}", f.display());
                assert_eq!(policies, crate::node_config::mn_policies(&s, &plan, lma), "{} {lma}", f.display());
                let text = serde_json::to_string(&h).unwrap();
                assert_eq!(serde_json::from_str::<HandOver>(&text).unwrap(), h);
            }
            for mag in plan::nodes_in(&s, Role::Mag) {
                let h = handover(&s, &plan, mag).unwrap();
                let lma = plan::lma_of(&s, mag).unwrap();
                let want = crate::node_config::mag(&s, &plan, mag, plan.of[mag], plan.of[lma]);
                assert_eq!(h.mag_config().unwrap(), want, "{} {mag}", f.display());
                let links = s.links.iter().filter(|l| l.value.mag.value == mag).count();
                assert_eq!(h.access.len(), links, "{} {mag}", f.display());
                // And it reads back from its JSON form.
                let text = serde_json::to_string(&h).unwrap();
                assert_eq!(serde_json::from_str::<HandOver>(&text).unwrap(), h);
            }
        }
    }

    fn scenario_with(mag1: &str) -> String {
        format!(
            "id: T\ntitle: t\nnodes:\n  lma: {{ role: lma }}\n  mag1:\n{mag1}\n  mn1: {{ role: mn, interfaces: [if1], prefixes: [\"2001:db8:1::/64\"] }}\n  cn: {{ role: cn }}\nlinks:\n  - {{ mn: mn1/if1, mag: mag1, att: wifi }}\nsteps:\n  - attach: {{ iface: mn1/if1 }}\n"
        )
    }

    fn error_of(mag1: &str) -> String {
        match crate::scenario::parse(Path::new("t.yaml"), &scenario_with(mag1)) {
            Ok(_) => panic!("accepted:\n{mag1}"),
            Err(e) => e.to_string(),
        }
    }

    #[test]
    fn a_wrong_impl_is_refused_with_its_line_and_column() {
        let ok = "    role: mag\n    impl: { command: [x], ready: { socket: \"tcp:80\" }, hooks: { attach: [cli, \"{port}\", \"{hi}\"] } }";
        crate::scenario::parse(Path::new("t.yaml"), &scenario_with(ok)).unwrap_or_else(|e| panic!("{e}"));
        let cases = [
            ("    role: mag\n    impl: { command: [] }", "t.yaml:7:11: mag1: impl needs a command"),
            (
                "    role: mag\n    impl: { command: [x], hooks: { move: [m] } }",
                "the move hook is for an lma under test",
            ),
            ("    role: mag\n    impl: { command: [x], hooks: { jump: [m] } }", "'jump' is not a hook"),
            (
                "    role: mag\n    impl: { command: [x], hooks: { attach: [m, \"{fid}\"] } }",
                "the attach hook has an unknown placeholder {fid}",
            ),
            (
                "    role: mag\n    impl: { command: [x], ready: { socket: \"tcp:x\" } }",
                "t.yaml:7:34: mag1: 'tcp:x' is not a socket",
            ),
            ("    role: mag\n    impl: { command: [x], ready: { smoke: y } }", "t.yaml:7:"),
            ("    role: mag\n    impl: { command: [\"{nope}\"] }", "unknown placeholder {nope}"),
            ("    role: mag\n    impl: { command: [x], ready_within_ms: 0 }", "ready_within_ms must be between"),
        ];
        for (mag1, want) in cases {
            let e = error_of(mag1);
            assert!(e.contains(want), "{mag1}\n gave {e}\n wanted {want}");
        }
        let e = crate::scenario::parse(
            Path::new("t.yaml"),
            &scenario_with("    role: mag").replace("mn1: { role: mn,", "mn1: { impl: { command: [x] }, role: mn,"),
        )
        .map(|_| ())
        .unwrap_err()
        .to_string();
        assert!(e.contains("mn1: only mag and lma nodes take 'impl'"), "{e}");
    }

    #[test]
    fn command_lines_split_like_a_shell_does() {
        assert_eq!(split_words("a 'b c' \"d \\\" e\" f\\ g").unwrap(), ["a", "b c", "d \" e", "f g"]);
        assert_eq!(split_words("  x  ").unwrap(), ["x"]);
        assert!(split_words("'open").is_err());
        assert!(split_words("\"open").is_err());
        let (role, spec) = parse_cli("lma=ci/iut/x --flag").unwrap();
        assert_eq!((role, spec.command), (Role::Lma, vec!["ci/iut/x".to_string(), "--flag".into()]));
        assert!(parse_cli("mn=x").unwrap_err().contains("not a role"));
        assert!(parse_cli("mag=").unwrap_err().contains("no command"));
    }

    fn s_with_step(text: &str, step: &str) -> Scenario {
        let t = text.replace("  - send: { pbu: mn1/if1 }\n", step);
        crate::scenario::parse(Path::new("t.yaml"), &t).unwrap_or_else(|e| panic!("{e}"))
    }

    #[test]
    fn steps_without_an_outside_means_skip_and_faults_move_to_our_receiver() {
        let text = scenario_with("    role: mag\n    impl: { command: [x] }").replace(
            "  - attach: { iface: mn1/if1 }\n",
            "  - attach: { iface: mn1/if1, hi: 4 }\n  - drop: { message: PBU, from: mag1, to: lma }\n  - drop: { message: PBA, to: mag1 }\n  - send: { pbu: mn1/if1 }\n",
        );
        let s = crate::scenario::parse(Path::new("t.yaml"), &text).unwrap_or_else(|e| panic!("{e}"));
        let why: Vec<Option<String>> = s.steps.iter().map(|st| cannot_play(&s, &st.value, 1)).collect();
        assert!(why[0].as_deref().is_some_and(|w| w.contains("no 'attach' hook")), "{why:?}");
        assert_eq!(why[1], None, "a drop at the IUT's sending side moves to the LMA's receiving side");
        assert_eq!(why[2], None, "a drop at the IUT's receiving side moves to the LMA's sending side");
        assert_eq!(why[3], None, "a crafted PBU goes out of the IUT's namespace on the harness's socket");
        let Step::Drop(d) = &s.steps[1].value else { panic!() };
        assert_eq!(fault_place(&s, &d.rule().unwrap()), Ok(("lma".to_string(), true)));
        let Step::Drop(d) = &s.steps[2].value else { panic!() };
        assert_eq!(fault_place(&s, &d.rule().unwrap()), Ok(("lma".to_string(), false)));
        // A duplicate made at the sender is not the one made at the receiver.
        let dup = s_with_step(&text, "  - fault: { message: PBA, to: mag1, action: duplicate }\n");
        assert!(cannot_play(&dup, &dup.steps[3].value, 9).is_some_and(|w| w.contains("inside mag1")));
    }
}
