//! A run cut short keeps its evidence: SIGINT in the middle of a
//! namespace run writes the finished scenarios, the captures so far and a
//! report marked partial (JSON and JUnit), then leaves no namespace and no
//! daemon behind.
//!
//! Needs root and the pmiplab binary (built by `cargo test --workspace`).

mod common;

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use common::*;

fn topology(f: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../topologies").join(f)
}

/// A process's parent, from /proc.
fn ppid(pid: u32) -> Option<u32> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    stat.rsplit_once(')')?.1.split_whitespace().nth(1)?.parse().ok()
}

fn alive(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .is_ok_and(|s| !s.rsplit_once(')').is_some_and(|(_, r)| r.trim_start().starts_with('Z')))
}

fn all_pids() -> Vec<u32> {
    std::fs::read_dir("/proc")
        .into_iter()
        .flatten()
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .collect()
}

/// Every process below `root` (its daemons and namespace holders): only
/// this run's, whatever else runs on the machine.
fn descendants(root: u32) -> Vec<u32> {
    let pids = all_pids();
    let mut found = vec![root];
    let mut i = 0;
    while i < found.len() {
        let parent = found[i];
        let children: Vec<u32> =
            pids.iter().copied().filter(|&p| ppid(p) == Some(parent) && !found.contains(&p)).collect();
        found.extend(children);
        i += 1;
    }
    found.remove(0);
    found
}

fn net_ns(pid: u32) -> Option<String> {
    std::fs::read_link(format!("/proc/{pid}/ns/net")).ok().map(|l| l.to_string_lossy().into_owned())
}

fn named_namespaces() -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir("/run/netns")
        .into_iter()
        .flatten()
        .filter_map(|e| e.ok())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    v.sort();
    v
}

fn wait_until(what: &str, limit: Duration, mut ok: impl FnMut() -> bool) {
    let deadline = Instant::now() + limit;
    while !ok() {
        assert!(Instant::now() < deadline, "not within {limit:?}: {what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn sigint_mid_run_leaves_a_partial_report_and_captures_and_nothing_running() {
    if skip() {
        return;
    }
    let node = PathBuf::from(env!("CARGO_BIN_EXE_pmip-node"));
    let bin = node.parent().unwrap().join("pmiplab");
    assert!(bin.exists(), "{} is missing: cargo test --workspace builds it", bin.display());
    let out = std::env::temp_dir().join(format!("pmiplab-interrupt-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&out);
    let before_named = named_namespaces();
    let host_ns = net_ns(std::process::id()).unwrap();

    // The scenario cut short is FM-FMA-LOST, which plays for more than
    // 3 s (a 3 s wait for the FMI's retransmission): on a loaded machine
    // the signal still lands inside it. (With a one-second scenario there
    // it came after that scenario had passed once on a busy CI machine.)
    let files = ["pm-attach.yaml", "fm-fma-lost.yaml", "fm-up-fmi.yaml", "pm-deregistration.yaml"];
    let mut child = Command::new(&bin)
        .args(["run", "--backend", "netns", "-j", "1", "--out"])
        .arg(&out)
        .args(files.map(topology))
        .env("PMIP_NODE", &node)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let (lines, seen) = mpsc::channel();
    let stdout = child.stdout.take().unwrap();
    let reader = std::thread::spawn(move || {
        let mut all = Vec::new();
        for l in BufReader::new(stdout).lines().map_while(Result::ok) {
            let _ = lines.send(l.clone());
            all.push(l);
        }
        all
    });
    // The first scenario's line is out (printed as it finishes): the
    // second one is being played. Interrupt it there.
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let l = seen.recv_timeout(deadline.saturating_duration_since(Instant::now())).expect("no scenario finished");
        if l.contains("PM-ATTACH-01") && !l.starts_with("pmiplab:") {
            break;
        }
    }
    // The second scenario's daemons are up: interrupt it there, and keep
    // what the run holds at that moment.
    let comm = |p: &u32| std::fs::read_to_string(format!("/proc/{p}/comm")).unwrap_or_default().trim() == "pmip-node";
    wait_until("the second scenario's daemons start", Duration::from_secs(60), || {
        descendants(child.id()).iter().any(comm)
    });
    let ours = descendants(child.id());
    let our_ns: Vec<String> = ours.iter().filter_map(|&p| net_ns(p)).filter(|n| *n != host_ns).collect();
    assert!(!our_ns.is_empty(), "the second scenario's lab is up when interrupted");
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(child.id() as i32), nix::sys::signal::Signal::SIGINT).unwrap();
    let mut status = None;
    wait_until("pmiplab ends after SIGINT", Duration::from_secs(60), || {
        status = child.try_wait().unwrap();
        status.is_some()
    });
    let said = reader.join().unwrap().join("\n");
    assert_eq!(status.unwrap().code(), Some(4), "a cut-short run has its own exit code:\n{said}");
    assert!(said.contains("the run was cut short (SIGINT)"), "{said}");

    let report = pmiplab::run_report::RunReport::read(&out).unwrap();
    assert!(report.partial, "{report:?}");
    assert_eq!(report.interrupted.as_deref(), Some("SIGINT"));
    let first = &report.scenarios[0];
    assert_eq!((first.id.as_str(), first.verdict), ("PM-ATTACH-01", pmiplab::report::Verdict::Pass), "{said}");
    let pcaps: Vec<&String> = first.artifacts.iter().filter(|a| a.ends_with(".pcapng")).collect();
    assert!(!pcaps.is_empty(), "the finished scenario's captures are kept: {:?}", first.artifacts);
    assert!(report.not_run.iter().any(|f| f.ends_with("pm-deregistration.yaml")), "{report:?}");
    assert_eq!(report.scenarios.len() + report.not_run.len(), files.len(), "{report:?}");
    // The scenario being played when the signal came ends INTERRUPTED
    // with what it played, its captures included.
    let cut = &report.scenarios[1];
    assert_eq!(cut.verdict, pmiplab::report::Verdict::Interrupted, "{said}");
    assert!(cut.reason.as_deref().unwrap_or("").starts_with("SIGINT before the step at line"), "{cut:?}");
    assert!(cut.artifacts.iter().any(|a| a.ends_with(".pcapng")), "{:?}", cut.artifacts);
    assert!(out.join(&cut.id).join("result.json").is_file());
    let junit = std::fs::read_to_string(out.join("junit.xml")).unwrap();
    assert!(
        junit.contains("pmiplab (partial: SIGINT)") && junit.contains("name=\"partial\" value=\"true\""),
        "{junit}"
    );

    // Nothing of the run is left: no process it had, and no process in
    // one of its namespaces (a namespace goes with its last process).
    wait_until("the run's processes are gone", Duration::from_secs(10), || ours.iter().all(|&p| !alive(p)));
    wait_until("the run's namespaces are gone", Duration::from_secs(10), || {
        all_pids().into_iter().filter_map(net_ns).all(|n| !our_ns.contains(&n))
    });
    assert_eq!(named_namespaces(), before_named);
    std::fs::remove_dir_all(&out).ok();
}

#[test]
fn a_timeout_cuts_the_run_short_the_same_way() {
    if skip() {
        return;
    }
    let node = PathBuf::from(env!("CARGO_BIN_EXE_pmip-node"));
    let bin = node.parent().unwrap().join("pmiplab");
    let out = std::env::temp_dir().join(format!("pmiplab-timeout-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&out);
    // Each of these takes seconds in namespaces: 2 s is mid-catalogue.
    let files = ["fm-up-fmi.yaml", "fm-fma-lost.yaml", "pm-deregistration.yaml", "pm-handover.yaml"];
    let o = Command::new(&bin)
        .args(["run", "--backend", "netns", "-j", "1", "--timeout", "2s", "--out"])
        .arg(&out)
        .args(files.map(topology))
        .env("PMIP_NODE", &node)
        .output()
        .unwrap();
    let said = String::from_utf8_lossy(&o.stdout).into_owned();
    assert_eq!(o.status.code(), Some(4), "{said}");
    let report = pmiplab::run_report::RunReport::read(&out).unwrap();
    assert!(report.partial);
    assert_eq!(report.interrupted.as_deref(), Some("timeout after 2s"));
    assert!(!report.not_run.is_empty(), "{said}");
    assert_eq!(report.scenarios.len() + report.not_run.len(), files.len());
    std::fs::remove_dir_all(&out).ok();
}
