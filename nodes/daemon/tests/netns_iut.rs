//! An implementation under test (`impl:`) that misbehaves is reported,
//! never waited on forever, and leaves nothing behind: one that exits at
//! once and one that never becomes ready are INIT-FAIL with their log,
//! one that ignores SIGTERM fails the stop check and is killed with all it
//! started; and a check that relies on a message the implementation never
//! sends fails with what was expected and what was on the wire.
//!
//! Needs root; PMIPLAB_SKIP_NETNS=1 skips it where that is impossible.

mod common;

use std::path::{Path, PathBuf};

use pmiplab::report::{Outcome, ScenarioReport, Verdict};
use pmiplab::run::run_netns;
use pmiplab::scenario;

/// A one-MAG topology whose MAG is `impl`, with `steps`.
fn scenario_text(id: &str, implementation: &str, steps: &str) -> String {
    format!(
        r#"id: {id}
title: an implementation under test
nodes:
  lma: {{ role: lma }}
  mag1:
    role: mag
    impl: {implementation}
  mn1: {{ role: mn, interfaces: [if1], prefixes: ["2001:db8:1::/64"] }}
  cn: {{ role: cn }}
links:
  - {{ mn: mn1/if1, mag: mag1, att: wifi }}
steps:
{steps}"#
    )
}

/// A marker no other process has: what the implementation's command
/// carries, so that a leftover can be found.
fn marker(tag: &str) -> String {
    format!("pmiplab-iut-test-{tag}-{}", std::process::id())
}

/// Processes whose command line holds `marker`.
fn leftovers(marker: &str) -> Vec<String> {
    std::fs::read_dir("/proc")
        .unwrap()
        .filter_map(|e| e.ok())
        .filter(|e| e.file_name().to_string_lossy().parse::<u32>().is_ok())
        .filter_map(|e| {
            let cmd = std::fs::read(e.path().join("cmdline")).ok()?;
            let cmd = String::from_utf8_lossy(&cmd).replace('\0', " ");
            cmd.contains(marker).then(|| format!("{}: {cmd}", e.file_name().to_string_lossy()))
        })
        .collect()
}

/// This process's lab folders still on disk.
fn lab_folders() -> Vec<PathBuf> {
    let prefix = format!("pmiplab-{}-", std::process::id());
    std::fs::read_dir(std::env::temp_dir())
        .unwrap()
        .filter_map(|e| e.ok())
        .filter(|e| e.file_name().to_string_lossy().starts_with(&prefix))
        .map(|e| e.path())
        .collect()
}

fn play(id: &str, implementation: &str, steps: &str) -> ScenarioReport {
    play_text(id, &scenario_text(id, implementation, steps))
}

/// Plays the whole scenario `text` in namespaces.
fn play_text(id: &str, text: &str) -> ScenarioReport {
    let dir = std::env::temp_dir().join(format!("pmiplab-iut-{id}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join(format!("{id}.yaml"));
    std::fs::write(&file, text).unwrap();
    let s = scenario::load(&file).unwrap_or_else(|e| panic!("{e}"));
    let r = run_netns(&file, &s, Path::new(env!("CARGO_BIN_EXE_pmip-node")), None, Default::default());
    let _ = std::fs::remove_dir_all(&dir);
    r
}

fn nothing_left(marker: &str) {
    assert_eq!(leftovers(marker), Vec::<String>::new(), "processes of the implementation outlived the run");
    assert_eq!(lab_folders(), Vec::<PathBuf>::new(), "the lab was not torn down");
}

fn failed(r: &ScenarioReport) -> String {
    r.checks
        .iter()
        .filter(|c| !c.ok())
        .map(|c| format!("line {}: {} — {}", c.line, c.what, c.detail))
        .collect::<Vec<_>>()
        .join("\n")
}

#[test]
fn an_implementation_that_exits_at_once_is_init_fail_with_its_log() {
    if common::skip() {
        return;
    }
    let m = marker("exits");
    let r = play(
        "IUT-EXITS",
        &format!(r#"{{ command: [sh, -c, "echo no configuration for $PMIPLAB_NODE >&2; exit 3", {m}] }}"#),
        "  - attach: { iface: mn1/if1 }\n",
    );
    assert_eq!(r.verdict, Verdict::InitFail, "{r:?}");
    let reason = r.reason.clone().unwrap_or_default();
    assert!(reason.contains("exited (exit status: 3) before it was ready"), "{reason}");
    assert!(reason.contains("no configuration for mag1"), "the node's log is not in the reason: {reason}");
    nothing_left(&m);
}

#[test]
fn an_implementation_that_never_becomes_ready_is_init_fail_in_its_bound() {
    if common::skip() {
        return;
    }
    let m = marker("never-ready");
    let started = std::time::Instant::now();
    let r = play(
        "IUT-NEVER-READY",
        &format!(
            r#"{{ command: [sh, -c, "echo waiting for nothing; sleep 30", {m}], ready: {{ file: up }}, ready_within_ms: 500 }}"#
        ),
        "  - attach: { iface: mn1/if1 }\n",
    );
    assert_eq!(r.verdict, Verdict::InitFail, "{r:?}");
    let reason = r.reason.clone().unwrap_or_default();
    assert!(reason.contains("was not ready within 500ms: the file up did not appear"), "{reason}");
    assert!(reason.contains("waiting for nothing"), "the node's log is not in the reason: {reason}");
    assert!(started.elapsed() < std::time::Duration::from_secs(20), "the bound was not kept: {:?}", started.elapsed());
    nothing_left(&m);
}

#[test]
fn an_implementation_that_ignores_sigterm_is_killed_and_the_run_says_so() {
    if common::skip() {
        return;
    }
    let m = marker("no-term");
    let r = play(
        "IUT-NO-TERM",
        &format!(
            r#"{{ command: [sh, -c, "trap '' TERM; echo up and deaf; while :; do sleep 0.05; done", {m}], ready: {{ command: ["true"] }}, stop_within_ms: 300 }}"#
        ),
        "  - wait: 100ms\n",
    );
    assert_eq!(r.verdict, Verdict::Fail, "{r:?}");
    let stop = r.checks.iter().find(|c| c.what == "mag1's implementation stopped on SIGTERM").expect("no stop check");
    assert_eq!(stop.outcome, Outcome::Failed, "{stop:?}");
    assert!(stop.detail.contains("after SIGTERM and was killed"), "{}", stop.detail);
    assert!(stop.detail.contains("up and deaf"), "the node's log is not in the detail: {}", stop.detail);
    nothing_left(&m);
}

#[test]
fn a_message_the_implementation_never_sends_fails_with_what_was_on_the_wire() {
    if common::skip() {
        return;
    }
    // A "MAG" that starts, is ready and never speaks PMIPv6.
    let m = marker("silent");
    let r = play(
        "IUT-SILENT",
        &format!(r#"{{ command: [sh, -c, "exec sleep 30", {m}], ready: {{ command: ["true"] }} }}"#),
        "  - attach: { iface: mn1/if1 }\n  - expect_message: { message: PBU, from: mag1, to: lma }\n  - expect_state: { node: mag1, path: /binding_update_list, len: 1 }\n",
    );
    assert_eq!(r.verdict, Verdict::Fail, "{r:?}");
    let pbu = r.checks.iter().find(|c| c.what == "message PBU from mag1 to lma").expect("no PBU check");
    assert_eq!(pbu.outcome, Outcome::Failed);
    assert!(pbu.detail.contains("expected at least 1 delivered, saw 0; no PBU was seen at all"), "{}", pbu.detail);
    // The model's wire is beside it: the PBU and PBA a MAG sends and gets.
    let wire = r.checks.iter().find(|c| c.what.starts_with("the messages on the wire")).expect("no wire check");
    assert!(wire.detail.contains("- mag1 -> lma PBU"), "{}", wire.detail);
    // Its tables are not observable: neither passed nor failed.
    let state = r.checks.iter().find(|c| c.what.starts_with("mag1 /binding_update_list")).expect("no state check");
    assert_eq!(state.outcome, Outcome::NotObservable, "{state:?}");
    let stop = r.checks.iter().find(|c| c.what == "mag1's implementation stopped on SIGTERM").expect("no stop check");
    assert_eq!(stop.outcome, Outcome::Passed, "{}", failed(&r));
    nothing_left(&m);
}

#[test]
fn a_hook_runs_in_the_node_and_its_lines_and_the_implementations_share_the_log() {
    if common::skip() {
        return;
    }
    // The harness's lines (probe, hook) and the implementation's go to one
    // log: appended, all stay (opened without O_APPEND, the
    // implementation's second line wrote over the probe's).
    let m = marker("hook");
    let r = play(
        "IUT-HOOK",
        &format!(
            r#"{{ command: [sh, -c, "echo first; sleep 1; echo after the hook; exec sleep 30", {m}], ready: {{ command: ["true"] }}, hooks: {{ attach: [sh, -c, "echo hooked hi={{hi}} on {{port}} in $PMIPLAB_NODE"] }} }}"#
        ),
        "  - attach: { iface: mn1/if1, hi: partial }\n  - wait: 1500ms\n",
    );
    let log = r.logs.get("mag1").cloned().unwrap_or_default();
    assert!(log.contains("first"), "{log}");
    let hooked = log.lines().find(|l| l.contains("hooked hi=6 on to-mn1-if1 in mag1")).unwrap_or_default();
    assert!(hooked.starts_with("[pmiplab] ran sh -c echo hooked"), "the hook's line was written over: {log}");
    assert!(log.contains("after the hook"), "{log}");
    // The readiness probe's line, written while the implementation was
    // still to write its second line.
    assert!(log.contains("[pmiplab] ran true"), "the probe's line was written over: {log}");
    nothing_left(&m);
}

#[test]
fn a_command_that_leaves_its_daemon_running_is_ready_and_that_daemon_gets_sigterm() {
    if common::skip() {
        return;
    }
    // The command starts its "daemon" in the background and exits 0, as
    // an init script does; the daemon says goodbye on SIGTERM.
    let m = marker("daemonizes");
    let r = play(
        "IUT-DAEMONIZES",
        &format!(
            r#"{{ command: [sh, -c, "(trap 'echo daemon got TERM; exit 0' TERM; while :; do sleep 0.05; done) & exit 0", {m}], ready: {{ command: ["true"] }} }}"#
        ),
        "  - wait: 100ms\n",
    );
    let stop = r.checks.iter().find(|c| c.what == "mag1's implementation stopped on SIGTERM").expect("no stop check");
    assert_eq!(stop.outcome, Outcome::Passed, "{stop:?}");
    assert_eq!(stop.detail, "OnTerm", "{stop:?}");
    let log = r.logs.get("mag1").cloned().unwrap_or_default();
    assert!(log.contains("daemon got TERM"), "the background daemon was not asked to stop: {log}");
    nothing_left(&m);
}

#[test]
fn the_kernel_section_of_an_implementation_is_read_whatever_it_marks_its_routes_with() {
    if common::skip() {
        return;
    }
    // A "MAG" that routes the way a foreign one might: protocol static, a
    // tunnel device of its own name, a source rule at its own priority.
    let m = marker("kernel");
    let setup = "ip link add mytnl0 type veth peer name mytnl1 && ip link set mytnl0 up \
        && ip -6 route add 2001:db8:1::/64 dev to-mn1-if1 proto static \
        && ip -6 route add 2001:db8:9::/64 dev mytnl0 proto static \
        && ip -6 rule add from 2001:db8:1::/64 lookup 100 pref 500 && touch ready && exec sleep 30";
    let r = play(
        "IUT-KERNEL",
        &format!(r#"{{ command: [sh, -c, "{setup}", {m}], ready: {{ file: ready }} }}"#),
        "  - snapshot: routed\n",
    );
    assert!(r.snapshots.contains_key("routed"), "{:?} {:?} {:?}", r.verdict, r.reason, r.checks);
    let kernel = &r.snapshots["routed"]["kernel"]["mag1"];
    assert_eq!(
        kernel["routes"],
        serde_json::json!(["2001:db8:1::/64 dev to-mn1-if1", "2001:db8:9::/64 tunnel"]),
        "{kernel}"
    );
    assert_eq!(kernel["uplink"], serde_json::json!(["2001:db8:1::/64"]), "{kernel}");
    assert_eq!(r.snapshots["routed"]["mags"]["mag1"], "not observable: implementation under test");
    nothing_left(&m);
}

/// pmip-node itself as the implementation under test, run from the
/// hand-over alone (`--impl {config}`), with `extra` arguments.
fn pmip_node_impl(extra: &str) -> String {
    format!(r#"{{ command: ["{}", --impl, "{{config}}"{extra}] }}"#, env!("CARGO_BIN_EXE_pmip-node"))
}

#[test]
fn a_restarted_implementation_counts_the_restart_in_the_work_folder_and_its_peer_sees_it() {
    if common::skip() {
        return;
    }
    // The restart of an IUT starts its command again with the same work
    // folder: a Restart Counter kept there counts the restart (RFC 5847
    // §3.2), and the LMA's heartbeats read 1, then 2.
    let imp = pmip_node_impl(r#", --restart-counter-file, "{work}/restart-counter""#);
    let text = scenario_text(
        "IUT-RESTART",
        &imp,
        "  - attach: { iface: mn1/if1 }\n  - wait_for: { seen: { message: HB-RESP, from: mag1, to: lma, with: [restart=1] }, timeout: 3s }\n  - kill: mag1\n  - restart: mag1\n  - wait_for: { seen: { message: HB-RESP, from: mag1, to: lma, with: [restart=2] }, timeout: 3s }\n",
    )
    .replace("nodes:\n", "lma:\n  heartbeat: { interval_ms: 500, missing_allowed: 3 }\nnodes:\n");
    let r = play_text("IUT-RESTART", &text);
    assert_eq!(r.verdict, Verdict::Pass, "{:?}\n{}\n{:?}", r.reason, failed(&r), r.logs.get("mag1"));
    let seen = |n: &str| r.checks.iter().any(|c| c.what.contains(&format!("restart={n}")) && c.passed());
    assert!(seen("1") && seen("2"), "{:?}", r.checks);
    assert_eq!(lab_folders(), Vec::<PathBuf>::new(), "the lab was not torn down");
}

#[test]
fn a_message_sent_as_the_lma_under_test_is_framed_by_the_scenarios_profile() {
    if common::skip() {
        return;
    }
    // In the RFC 7864 profile pmip-node sends its FMIs as UPNs; a send_fmi
    // made as an LMA under test (on the harness's own socket) must go out
    // the same way, or the step would mean another thing with an IUT.
    let text = format!(
        r#"id: IUT-UPN
title: a UPN sent as the LMA under test
wire: {{ profile: rfc7864 }}
nodes:
  lma:
    role: lma
    impl: {}
  mag1: {{ role: mag }}
  mn1: {{ role: mn, interfaces: [if1], prefixes: ["2001:db8:1::/64"] }}
  cn: {{ role: cn }}
links:
  - {{ mn: mn1/if1, mag: mag1, att: wifi }}
steps:
  - attach: {{ iface: mn1/if1 }}
  - send_fmi: {{ to: mag1, mn: mn1, seq: 904, fid: 2, dst: "2001:db8:2::/64" }}
  - expect_message: {{ message: UPN, to: mag1, with: [seq=904, reason=8, a=1, d=0] }}
  - expect_message: {{ message: UPA, from: mag1, with: [seq=904, status=0] }}
  - expect_message: {{ message: FMI, count: 0 }}
"#,
        pmip_node_impl("")
    );
    let r = play_text("IUT-UPN", &text);
    assert_eq!(r.verdict, Verdict::Pass, "{:?}\n{}", r.reason, failed(&r));
    assert_eq!(lab_folders(), Vec::<PathBuf>::new(), "the lab was not torn down");
}

#[test]
fn the_cli_counts_what_an_implementation_under_test_hides_apart_from_what_had_no_reference() {
    if common::skip() {
        return;
    }
    let node = PathBuf::from(env!("CARGO_BIN_EXE_pmip-node"));
    let pmiplab = node.parent().unwrap().join("pmiplab");
    assert!(pmiplab.exists(), "{} is missing: cargo build -p pmiplab", pmiplab.display());
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    // PMIP_NODE as a user writes it, relative to where pmiplab starts; the
    // wrapper under test runs elsewhere and must still find the daemon.
    let canonical_root = root.canonicalize().unwrap();
    let relative = node.canonicalize().unwrap().strip_prefix(&canonical_root).map(Path::to_path_buf);
    let out = std::env::temp_dir().join(format!("pmiplab-iut-cli-{}", std::process::id()));
    let o = std::process::Command::new(&pmiplab)
        .current_dir(&root)
        .args(["run", "--backend", "netns", "--iut", "mag=ci/iut/pmip-node-mag.yaml", "--out"])
        .arg(&out)
        .arg("topologies/fm-up-fmi.yaml")
        .env("PMIP_NODE", relative.unwrap_or(node))
        .output()
        .unwrap();
    let _ = std::fs::remove_dir_all(&out);
    let stdout = String::from_utf8_lossy(&o.stdout);
    assert!(o.status.success(), "{stdout}\n{}", String::from_utf8_lossy(&o.stderr));
    // Its pins are all there: every check not passed reads MAG tables.
    assert!(stdout.contains("were not passed") && stdout.contains("not observable"), "{stdout}");
    assert!(!stdout.contains("had nothing to compare with"), "{stdout}");
    assert_eq!(lab_folders(), Vec::<PathBuf>::new(), "the lab was not torn down");
}
