//! The scenario engine judges a namespace run from what an outside
//! observer sees, and a step means the same in both backends: each test
//! plays a scenario in virtual time and in namespaces (the model played
//! alongside) and checks that they tell the same story, or that a run
//! that departs from the model fails.
//!
//! Needs root; PMIPLAB_SKIP_NETNS=1 skips it where that is impossible.

mod common;

use common::*;

use std::path::{Path, PathBuf};

use pmiplab::report::{Outcome, ScenarioReport, Verdict};
use pmiplab::run::{run_netns_prepared, run_virtual};
use pmiplab::scenario;

const TOPOLOGY: &str = r#"nodes:
  lma: { role: lma }
  mag1: { role: mag }
  mag2: { role: mag }
  mn1: { role: mn, interfaces: [if1, if2], model: unique, prefixes: ["2001:db8:1::/64", "2001:db8:2::/64"] }
  cn: { role: cn }
links:
  - { mn: mn1/if1, mag: mag1, att: wifi }
  - { mn: mn1/if2, mag: mag2, att: e-utran }
flows:
  "Y": { mn: mn1, prefix: "2001:db8:2::/64", dport: 5002 }
"#;

/// A scenario written to a fresh folder, with no stored pins beside it.
struct Written {
    dir: PathBuf,
    file: PathBuf,
}

impl Written {
    fn new(name: &str, head: &str, steps: &str) -> Self {
        let dir = std::env::temp_dir().join(format!("pmiplab-engine-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join(format!("{name}.yaml"));
        std::fs::write(&file, format!("{head}\n{TOPOLOGY}steps:\n{steps}")).unwrap();
        Written { dir, file }
    }

    fn scenario(&self) -> scenario::Scenario {
        scenario::load(&self.file).unwrap_or_else(|e| panic!("{e}"))
    }

    fn netns(&self, prepare: &mut dyn FnMut(&pmiplab::lab::Lab) -> Result<(), String>) -> ScenarioReport {
        let s = self.scenario();
        run_netns_prepared(
            &self.file,
            &s,
            Path::new(env!("CARGO_BIN_EXE_pmip-node")),
            None,
            Default::default(),
            prepare,
        )
    }

    fn virtual_time(&self) -> ScenarioReport {
        run_virtual(&self.file, &self.scenario())
    }
}

impl Drop for Written {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn check(r: &ScenarioReport, line: u64) -> &pmiplab::report::Check {
    r.checks.iter().find(|c| c.line == line).unwrap_or_else(|| panic!("no check at line {line}: {:#?}", r.checks))
}

/// Installs a fault rule in `node`'s daemon before the first step: a
/// fault only the namespace run has, which the model does not know.
fn fault_in(lab: &pmiplab::lab::Lab, node: &str, rule: serde_json::Value) -> Result<(), String> {
    let v = lab.request(node, &serde_json::json!({"cmd": "fault_add", "rule": rule})).map_err(|e| e.to_string())?;
    if v["ok"] == true {
        Ok(())
    } else {
        Err(v.to_string())
    }
}

fn failures(r: &ScenarioReport) -> String {
    r.checks.iter().filter(|c| !c.ok()).map(|c| format!("line {}: {} — {}\n", c.line, c.what, c.detail)).collect()
}

#[test]
fn a_message_a_daemon_logs_but_never_puts_on_the_wire_fails_expect_message() {
    if skip() {
        return;
    }
    let w = Written::new(
        "not-on-wire",
        "id: ENGINE-NOT-ON-WIRE\ntitle: a PBA the LMA could not send",
        "  - attach: { iface: mn1/if1 }\n  - expect_message: { message: PBA, from: lma, to: mag1 }\n",
    );
    // The LMA's kernel refuses to route to MAG1: its PBA never leaves,
    // although the daemon built it and tried to send it.
    let r = w.netns(&mut |lab| {
        lab.run_in("lma", || {
            let out = std::process::Command::new("ip")
                .args(["-6", "route", "replace", "prohibit", &format!("{MAG1}/128")])
                .output()?;
            if out.status.success() {
                Ok(())
            } else {
                Err(std::io::Error::other(String::from_utf8_lossy(&out.stderr).to_string()))
            }
        })
        .map_err(|e| e.to_string())
    });
    assert_eq!(r.verdict, Verdict::Fail, "{}", failures(&r));
    let c = check(&r, 16);
    assert!(!c.ok() && c.detail.starts_with("expected at least 1 delivered, saw 0"), "{c:?}");
    assert!(r.logs["lma"].contains("sending PBA to 2001:db8:ffff::11 failed"), "{}", r.logs["lma"]);
}

#[test]
fn a_new_scenario_is_compared_with_the_model_and_fails_when_only_one_backend_has_a_fault() {
    if skip() {
        return;
    }
    let w = Written::new(
        "model",
        "id: ENGINE-MODEL\ntitle: a move of flow Y, with no stored pins",
        "  - attach: { iface: mn1/if1 }\n  - attach: { iface: mn1/if2 }\n  - bind: { flow: \"Y\", fid: 2, fid_pri: 20, bids: [2], match: prefix }\n  - move: { flow: \"Y\", to_bid: 1 }\n  - snapshot: after-move\n",
    );
    let r = w.netns(&mut |_| Ok(()));
    assert_eq!(r.verdict, Verdict::Pass, "{}", failures(&r));
    let wire = r.checks.iter().find(|c| c.what.contains("on the wire match the model")).expect("the wire was compared");
    assert_eq!(wire.outcome, Outcome::Passed, "{wire:?}");
    let tables = r.checks.iter().find(|c| c.what.contains("matches the model run alongside")).expect("tables compared");
    assert_eq!(tables.outcome, Outcome::Passed, "{tables:?}");
    assert!(r.snapshots["after-move"]["kernel"]["mag1"]["routes"].as_array().is_some_and(|a| a.len() == 2));
    // With no pins, the model's own pin checks had nothing to compare with:
    // said, not passed.
    let model = r.checks.iter().find(|c| c.what.starts_with("the model run alongside")).expect("model outcome");
    assert_eq!(model.outcome, Outcome::NoReference, "{model:?}");
    assert!(!w.dir.join("snapshots").exists(), "a run without --record stores nothing");

    // The same file, with a fault only the namespace run has: MAG1 drops
    // the FMI, so the flow never moves there.
    let r = w.netns(&mut |lab| {
        fault_in(
            lab,
            "mag1",
            serde_json::json!({"direction": "in", "message": "FMI", "action": {"kind": "drop"}, "count": 5}),
        )
    });
    assert_eq!(r.verdict, Verdict::Fail);
    let failed = failures(&r);
    assert!(failed.contains("matches the model run alongside — differs"), "{failed}");
}

#[test]
fn a_drop_at_the_receiver_is_sent_but_not_delivered_in_both_backends() {
    if skip() {
        return;
    }
    let w = Written::new(
        "receiver-drop",
        "id: ENGINE-RECEIVER-DROP\ntitle: the first PBA is dropped as it arrives at MAG1",
        "  - drop: { message: PBA, to: mag1 }\n  - attach: { iface: mn1/if1 }\n  - expect_message: { message: PBA, to: mag1, count: 0 }\n",
    );
    let (v, n) = (w.virtual_time(), w.netns(&mut |_| Ok(())));
    for r in [&v, &n] {
        let c = check(r, 17);
        assert!(c.passed(), "{}: {c:?}", r.backend);
        assert_eq!(c.detail, "expected 0 delivered, saw 0 (and 1 sent but not delivered)", "{}", r.backend);
        let pba = r.observed.iter().find(|m| m.kind() == "PBA").expect("the PBA was seen");
        assert!(pba.on_wire && !pba.delivered, "{}: {pba:?}", r.backend);
        assert!(r.ladder.iter().any(|l| l.contains("PBA seq=1") && l.ends_with("(dropped)")), "{:?}", r.ladder);
    }
    assert_eq!(n.verdict, Verdict::Pass, "{}", failures(&n));
}

#[test]
fn attach_lets_the_registration_finish_in_both_backends() {
    if skip() {
        return;
    }
    let w = Written::new(
        "attach",
        "id: ENGINE-ATTACH\ntitle: right after attach the registration is done and the MN has its prefix",
        "  - attach: { iface: mn1/if2 }\n  - expect_message: { message: PBA, from: lma, to: mag2, count: 1, with: [status=0] }\n  - expect_state: { node: mn1, path: /lif_addresses, equals: [\"2001:db8:1::1\"] }\n  - expect_state: { node: mag2, path: /binding_update_list/0/state, equals: registered }\n",
    );
    let (v, n) = (w.virtual_time(), w.netns(&mut |_| Ok(())));
    for r in [&v, &n] {
        for line in [16, 17, 18] {
            assert!(check(r, line).passed(), "{}: {:?}", r.backend, check(r, line));
        }
    }
    assert_eq!(n.verdict, Verdict::Pass, "{}", failures(&n));
}

#[test]
fn after_a_move_the_exchange_settles_without_waiting_for_a_retransmission_in_both_backends() {
    if skip() {
        return;
    }
    let w = Written::new(
        "settle",
        "id: ENGINE-SETTLE\ntitle: \"a lost FMA, the move settles at once, the FMI is repeated later\"\nlma: { initial_retransmit_ms: 1500 }",
        "  - attach: { iface: mn1/if1 }\n  - attach: { iface: mn1/if2 }\n  - bind: { flow: \"Y\", fid: 2, fid_pri: 20, bids: [2], match: prefix }\n  - fault: { message: FMA, from: mag1, action: drop }\n  - move: { flow: \"Y\", to_bid: 1 }\n  - expect_message: { message: FMI, to: mag1, count: 1 }\n  - wait_for: { seen: { message: FMI, to: mag1, count: 2 }, timeout: 3s }\n",
    );
    let (v, n) = (w.virtual_time(), w.netns(&mut |_| Ok(())));
    for r in [&v, &n] {
        assert!(check(r, 21).passed(), "{}: {:?}", r.backend, check(r, 21));
        let waited = check(r, 22);
        assert!(waited.passed(), "{}: {waited:?}", r.backend);
        // The repeat comes 1.5 s after the FMI: the move settled well before.
        let ms: u64 = waited.detail.split(' ').nth(2).and_then(|x| x.parse().ok()).unwrap_or(0);
        assert!((1000..=1700).contains(&ms), "{}: {}", r.backend, waited.detail);
    }
    assert_eq!(n.verdict, Verdict::Pass, "{}", failures(&n));
}

#[test]
fn a_step_that_cannot_be_carried_out_fails_with_the_reason_in_both_backends() {
    if skip() {
        return;
    }
    let w = Written::new(
        "refused",
        "id: ENGINE-REFUSED\ntitle: moves the LMA cannot make",
        "  - attach: { iface: mn1/if1 }\n  - bind: { flow: \"Y\", fid: 2, fid_pri: 20, bids: [1], match: prefix }\n  - move: { flow: \"Y\", to_bid: 7 }\n  - move: { flow: \"Y\", to_bid: 1 }\n",
    );
    let (v, n) = (w.virtual_time(), w.netns(&mut |_| Ok(())));
    for r in [&v, &n] {
        assert_eq!(r.verdict, Verdict::Fail, "{}", r.backend);
        let (no_bid, there) = (check(r, 17), check(r, 18));
        assert_eq!(
            no_bid.detail,
            "the LMA refused to move flow Y: cannot move mn1@pmip.lab FID 2 to BID 7: no active binding has that BID",
            "{}",
            r.backend
        );
        assert_eq!(
            there.detail, "the LMA refused to move flow Y: mn1@pmip.lab FID 2 is already bound to BID 1",
            "{}",
            r.backend
        );
        assert!(!no_bid.ok() && !there.ok());
    }
}

#[test]
fn an_answer_the_model_gave_at_once_is_waited_for_when_it_comes_late_past_a_quiet_wire() {
    if skip() {
        return;
    }
    let w = Written::new(
        "late-answer",
        "id: ENGINE-LATE-ANSWER\ntitle: the LMA answers late, as a loaded machine makes it",
        "  - attach: { iface: mn1/if1 }\n  - expect_message: { message: PBA, from: lma, to: mag1, count: 1, with: [status=0] }\n",
    );
    // Only the namespace run's LMA holds its first PBA back, 600 ms: the
    // wire is quiet meanwhile, far longer than a settle's quiet spell,
    // while the model answered at once.
    let r = w.netns(&mut |lab| fault_in(lab, "lma", serde_json::json!({"direction": "out", "message": "PBA", "action": {"kind": "delay", "ms": 600}, "count": 1})));
    assert!(check(&r, 16).passed(), "{:?}", check(&r, 16));
    let pbu = r.observed.iter().find(|m| m.kind() == "PBU").expect("the PBU was seen");
    let pba = r.observed.iter().find(|m| m.kind() == "PBA").expect("the PBA was seen");
    assert!(pba.at_ms >= pbu.at_ms + 550, "the PBA was held back: {pbu:?} {pba:?}");
    assert_eq!(r.verdict, Verdict::Pass, "{}", failures(&r));
}

#[test]
fn what_a_step_sets_off_in_the_model_is_waited_for_when_a_node_is_slow_to_send_it() {
    if skip() {
        return;
    }
    let w = Written::new(
        "late-request",
        "id: ENGINE-LATE-REQUEST\ntitle: MAG1 sends its PBU late, as a loaded machine makes it",
        "  - attach: { iface: mn1/if1 }\n  - expect_message: { message: PBU, from: mag1, to: lma, count: 1 }\n  - expect_message: { message: PBA, from: lma, to: mag1, count: 1, with: [status=0] }\n",
    );
    // Only the namespace run's MAG1 holds its first PBU back, 250 ms:
    // after the MN's Router Solicitation the wire is quiet for longer than
    // a settle's quiet spell, while the model's MAG sent its PBU at once.
    // (Longer, and the PBU's timestamp would fall outside the LMA's
    // 300 ms validity window.)
    let r = w.netns(&mut |lab| fault_in(lab, "mag1", serde_json::json!({"direction": "out", "message": "PBU", "action": {"kind": "delay", "ms": 250}, "count": 1})));
    for line in [16, 17] {
        assert!(check(&r, line).passed(), "{:?}", check(&r, line));
    }
    assert_eq!(r.verdict, Verdict::Pass, "{}", failures(&r));
}
