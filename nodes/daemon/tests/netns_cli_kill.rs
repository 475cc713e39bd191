//! The `pmiplab` command line with the namespace backend: the whole
//! catalogue in parallel, captures Wireshark reads cleanly, and SIGKILL in
//! the middle of a run leaves no namespace, interface or daemon behind.
//!
//! Needs root and the pmiplab binary (built by `cargo test --workspace`).

mod common;

use common::*;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

fn children_of(pid: u32) -> Vec<u32> {
    let mut out = Vec::new();
    for e in std::fs::read_dir("/proc").unwrap().filter_map(|e| e.ok()) {
        let Ok(p) = e.file_name().to_string_lossy().parse::<u32>() else { continue };
        let Ok(stat) = std::fs::read_to_string(format!("/proc/{p}/stat")) else { continue };
        // The parent pid is the second field after the command in parentheses.
        let after = stat.rsplit_once(')').map(|(_, r)| r).unwrap_or("");
        if after.split_whitespace().nth(1).and_then(|x| x.parse::<u32>().ok()) == Some(pid) {
            out.push(p);
        }
    }
    out
}

#[test]
fn sigkill_of_pmiplab_mid_run_leaves_nothing_behind() {
    if skip() {
        return;
    }
    let (pmiplab, node) = pmiplab_binary();
    let scenario = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../topologies/fm-fma-lost.yaml");
    let out = std::env::temp_dir().join(format!("pmiplab-kill-out-{}", std::process::id()));
    let before = host_interfaces();
    let mut child = Command::new(&pmiplab)
        .args(["run", "--backend", "netns", "--out"])
        .arg(&out)
        .arg(&scenario)
        .env("PMIP_NODE", &node)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    // Wait until the lab is up: namespace holders and daemons are its children.
    let pid = child.id();
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut owned = Vec::new();
    while Instant::now() < deadline {
        owned = children_of(pid);
        let daemons = owned
            .iter()
            .filter(|p| std::fs::read_to_string(format!("/proc/{p}/comm")).is_ok_and(|c| c.trim() == "pmip-node"))
            .count();
        if daemons >= 5 {
            break;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    assert!(owned.len() >= 10, "the lab never came up: children {owned:?}");
    child.kill().unwrap();
    child.wait().unwrap();
    let deadline = Instant::now() + Duration::from_secs(5);
    for p in &owned {
        while Path::new(&format!("/proc/{p}")).exists() {
            assert!(Instant::now() < deadline, "process {p} of the killed run is still alive");
            std::thread::sleep(Duration::from_millis(10));
        }
    }
    assert_eq!(host_interfaces(), before, "no interface of the killed run is left in this namespace");
    let _ = std::fs::remove_dir_all(&out);
}

/// tshark, with the project's Lua dissector, reads `p` with no malformed
/// frame and no expert warning (a TCP RST, a bad UDP/TCP checksum or a bad
/// Mobility Header checksum among them), and the MN never answered a probe with a Port Unreachable.
/// Returns the flow mobility messages the dissector decoded, in order.
/// Signalling in ESP is read with the `esp_sa` table beside the capture.
fn tshark_finds_nothing_wrong(p: &Path) -> Vec<String> {
    let lua = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../captures/wireshark/pmiplab.lua");
    let esp_sa = p.parent().map(|d| d.join("esp_sa")).and_then(|t| std::fs::read_to_string(t).ok());
    let esp: Vec<String> = esp_sa
        .iter()
        .flat_map(|t| {
            t.lines().filter(|l| !l.starts_with('#') && !l.is_empty()).map(str::to_string).collect::<Vec<_>>()
        })
        .flat_map(|r| ["-o".to_string(), format!("uat:esp_sa:{r}")])
        .chain(["-o".to_string(), "esp.enable_encryption_decode:TRUE".to_string()])
        // A daemon killed and restarted resumes above the sequence numbers
        // it had reserved (docs/security.md): a gap, legitimate in ESP,
        // that Wireshark's sequence analysis reports as a warning.
        .chain(["-o".to_string(), "esp.do_esp_sequence_analysis:FALSE".to_string()])
        .collect();
    let t = match Command::new("tshark")
        .args(&esp)
        .arg("-X")
        .arg(format!("lua_script:{}", lua.display()))
        .arg("-n")
        // With offloads off on every veth, the probes' UDP/TCP checksums
        // are filled in on the wire: a bad one is expert info of severity
        // error.
        .args(["-o", "udp.check_checksum:TRUE", "-o", "tcp.check_checksum:TRUE"])
        .arg("-r")
        .arg(p)
        .args(["-T", "fields", "-E", "separator=/t"])
        .args(["-e", "_ws.malformed", "-e", "_ws.expert.severity", "-e", "icmpv6.code", "-e", "icmpv6.type"])
        .args(["-e", "pmip.msg", "-e", "pmip.checksum.status"])
        .output()
    {
        Ok(t) => t,
        Err(_) if std::env::var_os("PMIPLAB_SKIP_TSHARK").is_some() => return Vec::new(),
        Err(e) => panic!("tshark is needed (ci/test.sh installs it): {e}"),
    };
    assert!(t.status.success(), "tshark cannot read {}: {}", p.display(), String::from_utf8_lossy(&t.stderr));
    let mut decoded = Vec::new();
    for line in String::from_utf8_lossy(&t.stdout).lines() {
        let f: Vec<&str> = line.split('\t').collect();
        assert!(f.first().is_none_or(|m| m.is_empty()), "{}: malformed: {line}", p.display());
        let worst = f.get(1).unwrap_or(&"").split(',').filter_map(|v| v.parse::<u32>().ok()).max().unwrap_or(0);
        assert!(worst < 0x0060_0000, "{}: expert warning: {line}", p.display());
        let first = |k: usize| f.get(k).and_then(|v| v.split(',').next());
        let port_unreachable = first(3) == Some("1") && first(2) == Some("4");
        assert!(!port_unreachable, "{}: a Port Unreachable: {line}", p.display());
        if let Some(msg) = first(4).filter(|m| !m.is_empty()) {
            assert_eq!(first(5), Some("1"), "{}: the MH checksum of a {msg} is not good: {line}", p.display());
            decoded.push(msg.to_string());
        }
    }
    decoded
}

fn pmiplab_binary() -> (PathBuf, PathBuf) {
    let node = PathBuf::from(env!("CARGO_BIN_EXE_pmip-node"));
    let pmiplab = node.parent().unwrap().join("pmiplab");
    assert!(
        pmiplab.exists(),
        "{} is missing: build it with cargo build -p pmiplab (cargo test --workspace does)",
        pmiplab.display()
    );
    (pmiplab, node)
}

#[test]
fn the_cli_runs_the_catalogue_in_namespaces_in_parallel_with_clean_captures() {
    if skip() {
        return;
    }
    let (pmiplab, node) = pmiplab_binary();
    let topologies = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../topologies");
    let out = std::env::temp_dir().join(format!("pmiplab-cli-netns-{}", std::process::id()));
    let o = Command::new(&pmiplab)
        .args(["run", "--backend", "netns", "-j", "2", "--out"])
        .arg(&out)
        .arg(topologies.join("*.yaml"))
        .env("PMIP_NODE", &node)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&o.stdout);
    assert!(o.status.success(), "{stdout}\n{}", String::from_utf8_lossy(&o.stderr));
    let summary = stdout.lines().last().unwrap_or("");
    let scenarios = std::fs::read_dir(&topologies)
        .unwrap()
        .filter(|e| e.as_ref().is_ok_and(|e| e.path().extension().is_some_and(|x| x == "yaml")))
        .count();
    assert!(summary.starts_with(&format!("{scenarios} passed, 0 failed, 0 skipped")), "{stdout}");
    // Every capture of every scenario, each link's and the merged one,
    // reads clean through the dissector, which checks every MH checksum.
    let mut folders: Vec<PathBuf> =
        std::fs::read_dir(&out).unwrap().filter_map(|e| e.ok()).map(|e| e.path()).filter(|p| p.is_dir()).collect();
    folders.sort();
    assert_eq!(folders.len(), scenarios, "one folder per scenario: {folders:?}");
    for folder in &folders {
        let pcaps: Vec<PathBuf> = std::fs::read_dir(folder)
            .unwrap()
            .filter_map(|e| e.ok())
            .map(|e| e.path())
            .filter(|p| p.extension().is_some_and(|x| x == "pcapng"))
            .collect();
        assert!(pcaps.iter().any(|p| p.ends_with("all-links.pcapng")), "no merged capture in {}", folder.display());
        for p in &pcaps {
            let decoded = tshark_finds_nothing_wrong(p);
            // The LMA's port to MAG1 carries FMI[add] and its FMA in FM-UP-FMI.
            let to_mag1 = p.file_name().is_some_and(|n| n == "lma-to-mag1.pcapng");
            if folder.ends_with("FM-UP-FMI-01") && to_mag1 && std::env::var_os("PMIPLAB_SKIP_TSHARK").is_none() {
                assert_eq!(decoded, ["FMI", "FMA"], "{}", p.display());
            }
        }
    }
    // FM-UP-FMI: one capture per link (two access, two core, one CN) and
    // the merged one, with one interface per link and each step noted.
    let pcaps = std::fs::read_dir(out.join("FM-UP-FMI-01"))
        .unwrap()
        .filter(|e| e.as_ref().is_ok_and(|e| e.path().extension().is_some_and(|x| x == "pcapng")))
        .count();
    assert_eq!(pcaps, 6, "five links and the merged capture");
    let merged = std::fs::read(out.join("FM-UP-FMI-01/all-links.pcapng")).unwrap();
    let links: std::collections::BTreeSet<u32> =
        pmip_captures::pcapng::read(&merged).iter().map(|p| p.interface).collect();
    assert_eq!(links.len(), 5, "packets of each of the five links: {links:?}");
    let notes: Vec<String> = pmip_captures::pcapng::comments(&merged).into_iter().flatten().collect();
    let scenario_steps = std::fs::read_to_string(topologies.join("fm-up-fmi.yaml"))
        .unwrap()
        .lines()
        .skip_while(|l| !l.starts_with("steps:"))
        .filter(|l| l.trim_start().starts_with("- "))
        .count();
    assert_eq!(notes.len(), scenario_steps, "a comment per step: {notes:#?}");
    assert!(notes.iter().any(|n| n.contains(": move (lma: decides to move flow")), "{notes:#?}");
    let dir = out.join("FM-UP-FMI-01");
    let sequence = std::fs::read_to_string(dir.join("sequence.txt")).unwrap();
    let kinds: Vec<&str> = sequence.lines().map(|l| l.split(' ').nth(3).unwrap_or("")).collect();
    assert_eq!(kinds, ["PBU", "PBA", "PBU", "PBA", "FMI", "FMA", "FMI", "FMA"], "{sequence}");
    // The namespace run checked the wire against the model run alongside.
    let result: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("result.json")).unwrap()).unwrap();
    let wire_check = result["checks"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|c| c["what"].as_str().is_some_and(|w| w.contains("on the wire match the model run alongside")));
    assert!(wire_check.is_some_and(|c| c["outcome"] == "passed"), "{result:#}");
    // The state tables of each snapshot step are kept, the MN's among them.
    let state: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("state-after-move.json")).unwrap()).unwrap();
    let arrivals: Vec<&str> = state["mns"]["mn1"]["flows"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|f| f["downlink_on"].as_str())
        .collect();
    assert_eq!(arrivals, ["if1", "if1"], "both flows arrive on if1 after the move: {state:#}");
    // Each daemon's log is kept, plain, with nothing gone wrong in it: an
    // MN whose first Router Solicitation failed logged a warning here.
    for node in ["lma", "mag1", "mag2", "mn1", "cn"] {
        let log = std::fs::read_to_string(dir.join(format!("{node}.log"))).unwrap();
        assert!(log.contains(" up "), "{node}.log: {log}");
        assert!(!log.contains("WARN") && !log.contains("ERROR") && !log.contains('\u{1b}'), "{node}.log: {log}");
    }
    // The report's ladder holds the wire's messages, timed, among the
    // engine's rows, and is drawn as a diagram and as SVG.
    let ladder = std::fs::read_to_string(dir.join("ladder.txt")).unwrap();
    let head = |l: &str| l.split(' ').take(4).collect::<Vec<_>>().join(" ");
    let untimed: Vec<String> = ladder
        .lines()
        .filter(|l| l.contains(" -> "))
        .filter_map(|l| l.split_once("ms ").map(|(_, m)| head(m)))
        .collect();
    assert_eq!(untimed, sequence.lines().map(head).collect::<Vec<_>>(), "{ladder}");
    let diagram = std::fs::read_to_string(dir.join("ladder-diagram.txt")).unwrap();
    assert!(diagram.contains("|- FMI ->|") && diagram.contains("seq=1 op=add lifetime=300s"), "{diagram}");
    assert!(std::fs::read_to_string(dir.join("ladder.svg")).unwrap().starts_with("<svg"));
    // Both backends draw the same rows for a scenario: the namespace
    // ladder, times aside, is the model's, including a message its sender's
    // fault rule dropped before any link saw it (FM-FMA-LOST) and flow Y
    // switching to MAG1 with no signalling (FM-SP).
    let virtual_out = out.join("virtual");
    let o = Command::new(&pmiplab)
        .args(["run", "--out"])
        .arg(&virtual_out)
        .arg(topologies.join("fm-fma-lost.yaml"))
        .arg(topologies.join("fm-sp.yaml"))
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stdout));
    let untimed = |p: PathBuf| -> Vec<String> {
        std::fs::read_to_string(&p)
            .unwrap()
            .lines()
            .map(|l| l.split_once("ms ").map_or(l, |(_, r)| r).to_string())
            .collect()
    };
    for id in ["FM-FMA-LOST", "FM-SP-01"] {
        let (ns, model) = (untimed(out.join(id).join("ladder.txt")), untimed(virtual_out.join(id).join("ladder.txt")));
        assert_eq!(ns, model, "{id}: the namespace ladder differs from the virtual one");
    }
    let lost = untimed(out.join("FM-FMA-LOST/ladder.txt"));
    assert!(lost.iter().any(|l| l.starts_with("mag1 -> lma FMA seq=1") && l.ends_with("(dropped)")), "{lost:#?}");
    std::fs::remove_dir_all(&out).ok();
}
