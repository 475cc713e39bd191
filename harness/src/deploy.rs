//! Persistent demo labs: `deploy` builds a topology in named namespaces
//! (`ip netns exec pmiplab-<lab>-<node> …` works) with its daemons
//! detached, and marks everything it made in `/run/pmiplab/<lab>/lab.json`;
//! `destroy`, `inspect`, `exec` and `cleanup` read that mark, and touch
//! nothing that is not marked.

use std::collections::BTreeMap;
use std::io;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::lab::{netns, Lab, DEPLOY_DIR};
use crate::scenario::Scenario;

#[derive(Debug, Serialize, Deserialize)]
pub struct Marker {
    pub lab: String,
    pub scenario: PathBuf,
    /// Node → `ip netns` name.
    pub namespaces: BTreeMap<String, String>,
    /// Node → daemon pid.
    pub daemons: BTreeMap<String, u32>,
    pub folder: PathBuf,
    /// Who deployed the lab: `cleanup` removes only the caller's labs
    /// unless told `--all`. A marker from before owners were recorded has
    /// none, and only `--all` removes it.
    #[serde(default)]
    pub owner: Option<Owner>,
}

/// The user a lab belongs to. Under sudo that is the user who ran sudo
/// (`SUDO_UID`), not root: root is everyone's deploy.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Owner {
    pub uid: u32,
    pub user: String,
}

impl Owner {
    /// The user calling pmiplab now.
    pub fn caller() -> Owner {
        let uid = nix::unistd::getuid().as_raw();
        let sudo = |k: &str| std::env::var(k).ok().filter(|_| uid == 0);
        let uid = sudo("SUDO_UID").and_then(|u| u.parse().ok()).unwrap_or(uid);
        let user = sudo("SUDO_USER")
            .or_else(|| nix::unistd::User::from_uid(nix::unistd::Uid::from_raw(uid)).ok().flatten().map(|u| u.name))
            .unwrap_or_else(|| uid.to_string());
        Owner { uid, user }
    }
}

fn marker_path(lab: &str) -> PathBuf {
    Path::new(DEPLOY_DIR).join(lab).join("lab.json")
}

pub fn read_marker(lab: &str) -> io::Result<Marker> {
    let text = std::fs::read_to_string(marker_path(lab)).map_err(|e| {
        io::Error::new(e.kind(), format!("no deployed lab named {lab} ({}: {e})", marker_path(lab).display()))
    })?;
    serde_json::from_str(&text)
        .map_err(|e| io::Error::other(format!("{} is not a pmiplab marker: {e}", marker_path(lab).display())))
}

/// Builds the scenario's topology as lab `name`, attaches every MN
/// interface, and leaves it running.
pub fn deploy(file: &Path, s: &Scenario, name: &str, bin: &Path) -> Result<Marker, String> {
    // An implementation under test lives as long as the run that judges
    // it (it is stopped and its namespace swept at the end): a demo lab
    // that outlives this command cannot hold one.
    if let Some(node) = crate::iut::nodes(s).keys().next() {
        return Err(format!("{node} is an implementation under test (impl:); deploy runs pmip-node only"));
    }
    let lab = Lab::new_persistent(name).map_err(|e| e.to_string())?;
    // On any error below the lab is dropped uncommitted, which removes
    // all it made: nothing half-built stays.
    let lab = crate::netns_run::build(lab, s, bin, false)?.lab;
    // One interface at a time, each registered before the next comes up:
    // the LMA gives BIDs in the order PBUs arrive, so links brought up at
    // once got BIDs by race, and `to_bid: 1` named a different MAG from
    // one deploy to the next. In the order of `links`, as a run's attach
    // steps would.
    let lma = crate::plan::lma_name(s).ok_or("the scenario has no LMA")?.to_string();
    for (k, l) in s.links.iter().enumerate() {
        if let Some((mn, iface)) = l.value.mn.value.split_once('/') {
            lab.set_link(mn, iface, true).map_err(|e| e.to_string())?;
            wait_bindings(&lab, &lma, k + 1)?;
        }
    }
    let marker = Marker {
        lab: name.into(),
        scenario: file.canonicalize().unwrap_or_else(|_| file.into()),
        namespaces: lab.namespace_names(),
        daemons: lab.daemon_pids(),
        folder: lab.dir.clone(),
        owner: Some(Owner::caller()),
    };
    let text = serde_json::to_string_pretty(&marker).map_err(|e| e.to_string())?;
    std::fs::write(marker_path(name), text).map_err(|e| format!("cannot write the lab's marker: {e}"))?;
    lab.commit();
    Ok(marker)
}

/// Waits, at most 10 s, until the LMA's binding cache holds `n` entries.
fn wait_bindings(lab: &Lab, lma: &str, n: usize) -> Result<(), String> {
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    let mut have = 0;
    while std::time::Instant::now() < deadline {
        let tables = lab
            .call(lma, &pmip_control::Request::Tables)
            .ok()
            .and_then(|r| r.into_state::<serde_json::Value>().ok())
            .unwrap_or_default();
        have = tables["binding_cache"].as_array().map_or(0, Vec::len);
        if have >= n {
            return Ok(());
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    Err(format!("the LMA registered {have} of {n} attached interfaces within 10 s"))
}

/// Still running: exists and is not a zombie waiting for its reaper.
fn alive(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .is_ok_and(|s| !s.rsplit_once(')').is_some_and(|(_, r)| r.trim_start().starts_with('Z')))
}

/// Stops the lab's daemons and removes its namespaces and folder.
pub fn destroy(lab: &str) -> io::Result<Vec<String>> {
    let m = read_marker(lab)?;
    let mut done = Vec::new();
    for (node, pid) in &m.daemons {
        // Only a pid that is still our daemon: it may have been reused.
        let ours = std::fs::read_to_string(format!("/proc/{pid}/comm")).is_ok_and(|c| c.trim() == "pmip-node");
        if ours {
            let p = nix::unistd::Pid::from_raw(*pid as i32);
            let _ = nix::sys::signal::kill(p, nix::sys::signal::Signal::SIGTERM);
            for _ in 0..200 {
                if !alive(*pid) {
                    break;
                }
                std::thread::sleep(Duration::from_millis(5));
            }
            if alive(*pid) {
                let _ = nix::sys::signal::kill(p, nix::sys::signal::Signal::SIGKILL);
            }
            done.push(format!("stopped the {node} daemon ({pid})"));
        }
    }
    for ns in m.namespaces.values() {
        netns::unpin(ns)?;
        done.push(format!("removed namespace {ns}"));
    }
    std::fs::remove_dir_all(&m.folder)?;
    Ok(done)
}

/// Deployed labs, by name.
pub fn labs() -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(DEPLOY_DIR)
        .into_iter()
        .flatten()
        .filter_map(|e| e.ok())
        .filter(|e| e.path().join("lab.json").exists())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    v.sort();
    v
}

/// Each node, its namespace, whether its daemon runs, and a summary of
/// its tables.
pub fn inspect(lab: &str, s: Option<&Scenario>) -> io::Result<serde_json::Value> {
    let m = read_marker(lab)?;
    let mut nodes = serde_json::Map::new();
    for (node, ns) in &m.namespaces {
        let pid = m.daemons.get(node).copied();
        let sock = m.folder.join(format!("{node}.sock"));
        let state = request(&sock, &pmip_control::Request::Tables)
            .ok()
            .and_then(|r| r.into_state::<serde_json::Value>().ok())
            .unwrap_or_default();
        let role = s.and_then(|s| s.nodes.get(node)).map(|n| format!("{:?}", n.value.role).to_lowercase());
        nodes.insert(
            node.clone(),
            serde_json::json!({"namespace": ns, "role": role, "daemon": pid, "running": pid.is_some_and(alive), "tables": state}),
        );
    }
    Ok(serde_json::json!({"lab": m.lab, "scenario": m.scenario, "nodes": nodes}))
}

fn request(sock: &Path, req: &pmip_control::Request) -> io::Result<pmip_control::Reply> {
    use std::io::{BufRead, Write};
    let mut s = std::os::unix::net::UnixStream::connect(sock)?;
    s.set_read_timeout(Some(Duration::from_secs(2)))?;
    let req = serde_json::to_string(req).map_err(io::Error::other)?;
    s.write_all(format!("{req}\n").as_bytes())?;
    let mut line = String::new();
    io::BufReader::new(s).read_line(&mut line)?;
    serde_json::from_str(&line).map_err(io::Error::other)
}

/// Runs a command inside a node's namespace; returns its exit status.
pub fn exec(lab: &str, node: &str, argv: &[String]) -> io::Result<std::process::ExitStatus> {
    let m = read_marker(lab)?;
    let ns = m.namespaces.get(node).ok_or_else(|| {
        io::Error::new(
            io::ErrorKind::NotFound,
            format!(
                "lab {lab} has no node {node} (it has {})",
                m.namespaces.keys().cloned().collect::<Vec<_>>().join(", ")
            ),
        )
    })?;
    let (prog, args) =
        argv.split_first().ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "no command to run"))?;
    let fd = std::fs::File::open(Path::new(netns::NETNS_DIR).join(ns))?;
    let raw = std::os::fd::AsRawFd::as_raw_fd(&fd);
    let mut cmd = std::process::Command::new(prog);
    cmd.args(args);
    // SAFETY: only setns, async-signal-safe, between fork and exec.
    unsafe {
        cmd.pre_exec(move || {
            if libc::setns(raw, libc::CLONE_NEWNET) != 0 {
                return Err(io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let status = cmd.status();
    drop(fd);
    status
}

/// Destroys the caller's deployed labs, or with `all` every one (only
/// what the markers name).
pub fn cleanup(all: bool) -> Vec<String> {
    let me = Owner::caller();
    let mut out = Vec::new();
    for lab in labs() {
        let owner = read_marker(&lab).ok().and_then(|m| m.owner);
        if !all && owner.as_ref().map(|o| o.uid) != Some(me.uid) {
            let whose =
                owner.map_or("no recorded owner".to_string(), |o| format!("owned by {} (uid {})", o.user, o.uid));
            out.push(format!("left lab {lab}: {whose}; `pmiplab cleanup --all` removes it"));
            continue;
        }
        match destroy(&lab) {
            Ok(done) => out.push(format!("destroyed lab {lab} ({} items)", done.len())),
            Err(e) => out.push(format!("could not destroy lab {lab}: {e}")),
        }
    }
    out
}

/// Where a deployed lab keeps the steps `pmiplab step` played on it.
fn history_path(lab: &str) -> PathBuf {
    Path::new(DEPLOY_DIR).join(lab).join("steps.yaml")
}

/// Reads steps: a YAML list of steps, or one step alone.
fn parse_steps(origin: &Path, text: &str) -> Result<Vec<serde_saphyr::Spanned<crate::scenario::Step>>, String> {
    let list = text.trim_start().starts_with('-');
    let parsed = if list {
        serde_saphyr::from_str(text)
    } else {
        serde_saphyr::from_str::<serde_saphyr::Spanned<crate::scenario::Step>>(text).map(|s| vec![s])
    };
    parsed.map_err(|e| format!("{}: {}", origin.display(), e.to_string().lines().next().unwrap_or_default()))
}

/// Plays steps on deployed lab `lab` through the scenario engine, as a
/// run would play them: `steps` is one step or a list of them in the
/// scenario format. The steps played before on this lab (kept in its
/// folder) come first, read for what they set up (a bind's FID) but not
/// played again; running flows and faults do not outlive one call. The
/// steps are checked against the lab's scenario (its nodes and flows)
/// before anything is done. Returns the report, whose checks are the
/// steps' expectations; its captures stay in the lab's `steps-N` folder.
pub fn step(lab: &str, steps: &str, origin: &Path) -> Result<crate::report::ScenarioReport, String> {
    let m = read_marker(lab).map_err(|e| e.to_string())?;
    let mut s = crate::scenario::load(&m.scenario).map_err(|e| e.to_string())?;
    let history_file = history_path(lab);
    let history_text = std::fs::read_to_string(&history_file).unwrap_or_default();
    let mut all = if history_text.trim().is_empty() { Vec::new() } else { parse_steps(&history_file, &history_text)? };
    let first = all.len();
    all.extend(parse_steps(origin, steps)?);
    s.steps = all;
    // Errors point into the steps given (line 1 is the first step's line).
    let problems = crate::validate::validate_all(origin, steps, &s);
    if !problems.is_empty() {
        return Err(problems.iter().map(ToString::to_string).collect::<Vec<_>>().join("\n"));
    }
    let attached = Lab::attach(lab, &m.namespaces, &m.daemons).map_err(|e| format!("cannot reach lab {lab}: {e}"))?;
    let mut run = crate::netns_run::over_deployed(attached, &s)?;
    // No pins: the lab's own folder has none, so the ladder of these
    // steps alone is compared with nothing rather than with a whole run's.
    let judging = crate::engine::Judging { reference: None, pins: Default::default(), out: None };
    let report = crate::engine::play_from(&history_file, &s, &mut run, judging, first);
    if report.verdict == crate::report::Verdict::Pass {
        let mut text = history_text;
        if !text.is_empty() && !text.ends_with('\n') {
            text.push('\n');
        }
        // Kept as a list: a single step becomes one item.
        let single = !steps.trim_start().starts_with('-');
        for (i, line) in steps.trim().lines().enumerate() {
            text += match (single, i) {
                (true, 0) => "- ",
                (true, _) => "  ",
                _ => "",
            };
            text += line;
            text.push('\n');
        }
        std::fs::write(&history_file, text).map_err(|e| format!("{}: {e}", history_file.display()))?;
    }
    Ok(report)
}

/// A short account of a node's tables: each table and how many entries
/// it has ("bce:1 fmc:2"), for `inspect`'s table.
fn tables_summary(tables: &serde_json::Value) -> String {
    let Some(obj) = tables.as_object() else { return "-".into() };
    let parts: Vec<String> = obj
        .iter()
        .filter_map(|(k, v)| match v {
            serde_json::Value::Array(a) => Some(format!("{k}:{}", a.len())),
            serde_json::Value::Object(o) => Some(format!("{k}:{}", o.len())),
            _ => None,
        })
        .collect();
    if parts.is_empty() {
        "-".into()
    } else {
        parts.join(" ")
    }
}

/// `inspect`'s JSON (see [`inspect`]) as an aligned table, one node a row.
pub fn inspect_table(v: &serde_json::Value) -> String {
    let mut rows = vec![["NODE", "ROLE", "NAMESPACE", "DAEMON", "STATE", "TABLES"].map(String::from).to_vec()];
    if let Some(nodes) = v["nodes"].as_object() {
        for (node, n) in nodes {
            rows.push(vec![
                node.clone(),
                n["role"].as_str().unwrap_or("-").to_string(),
                n["namespace"].as_str().unwrap_or("-").to_string(),
                n["daemon"].as_u64().map_or("-".to_string(), |p| p.to_string()),
                if n["running"].as_bool() == Some(true) { "running" } else { "stopped" }.to_string(),
                tables_summary(&n["tables"]),
            ]);
        }
    }
    let title = format!("lab {} ({})\n", v["lab"].as_str().unwrap_or("?"), v["scenario"].as_str().unwrap_or("?"));
    title + &table(&rows)
}

/// The deployed labs as a table: name, owner, nodes, scenario.
pub fn labs_table() -> String {
    let mut rows = vec![["LAB", "OWNER", "NODES", "SCENARIO"].map(String::from).to_vec()];
    for lab in labs() {
        let m = read_marker(&lab);
        let (owner, nodes, scenario) = match &m {
            Ok(m) => (
                m.owner.as_ref().map_or("-".to_string(), |o| o.user.clone()),
                m.namespaces.len().to_string(),
                m.scenario.display().to_string(),
            ),
            Err(e) => ("?".into(), "?".into(), e.to_string()),
        };
        rows.push(vec![lab, owner, nodes, scenario]);
    }
    table(&rows)
}

/// Rows of cells as left-aligned columns two blanks apart.
fn table(rows: &[Vec<String>]) -> String {
    let cols = rows.iter().map(Vec::len).max().unwrap_or(0);
    let width: Vec<usize> =
        (0..cols).map(|c| rows.iter().map(|r| r.get(c).map_or(0, |x| x.chars().count())).max().unwrap_or(0)).collect();
    let mut out = String::new();
    for r in rows {
        let cells: Vec<String> = r.iter().enumerate().map(|(c, x)| format!("{x:<w$}", w = width[c])).collect();
        out += cells.join("  ").trim_end();
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn inspect_table_has_a_row_per_node_with_its_tables_counted() {
        let v = serde_json::json!({"lab": "demo", "scenario": "/x/fm.yaml", "nodes": {
            "lma": {"namespace": "pmiplab-demo-lma", "role": "lma", "daemon": 42, "running": true,
                    "tables": {"bce": [1, 2], "fmc": {"a": 1}, "ok": true}},
            "mag1": {"namespace": "pmiplab-demo-mag1", "role": "mag", "daemon": null, "running": false, "tables": null}}});
        let t = inspect_table(&v);
        let lines: Vec<&str> = t.lines().collect();
        assert_eq!(lines[0], "lab demo (/x/fm.yaml)");
        assert!(lines[1].starts_with("NODE  ROLE  NAMESPACE"), "{t}");
        assert_eq!(
            lines[2].split_whitespace().collect::<Vec<_>>(),
            ["lma", "lma", "pmiplab-demo-lma", "42", "running", "bce:2", "fmc:1"]
        );
        assert_eq!(
            lines[3].split_whitespace().collect::<Vec<_>>(),
            ["mag1", "mag", "pmiplab-demo-mag1", "-", "stopped", "-"]
        );
    }
}
