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
    for l in &s.links {
        if let Some((mn, iface)) = l.value.mn.value.split_once('/') {
            lab.set_link(mn, iface, true).map_err(|e| e.to_string())?;
        }
    }
    let marker = Marker {
        lab: name.into(),
        scenario: file.canonicalize().unwrap_or_else(|_| file.into()),
        namespaces: lab.namespace_names(),
        daemons: lab.daemon_pids(),
        folder: lab.dir.clone(),
    };
    let text = serde_json::to_string_pretty(&marker).map_err(|e| e.to_string())?;
    std::fs::write(marker_path(name), text).map_err(|e| format!("cannot write the lab's marker: {e}"))?;
    lab.commit();
    Ok(marker)
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

/// Destroys every deployed lab (only what the markers name).
pub fn cleanup() -> Vec<String> {
    let mut out = Vec::new();
    for lab in labs() {
        match destroy(&lab) {
            Ok(done) => out.push(format!("destroyed lab {lab} ({} items)", done.len())),
            Err(e) => out.push(format!("could not destroy lab {lab}: {e}")),
        }
    }
    out
}
