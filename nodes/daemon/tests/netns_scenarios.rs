//! The seed scenarios of topologies/ played in namespaces by real daemons,
//! through the same scenario runner the CLI uses (`--backend netns`).
//! Scenarios that need virtual time (long waits, chosen HIs, link
//! latency) are SKIP here and run in virtual time elsewhere.
//!
//! Needs root; PMIPLAB_SKIP_NETNS=1 skips it where that is impossible.

use std::path::{Path, PathBuf};

use pmiplab::report::Verdict;
use pmiplab::{netns_run, scenario};

fn skip() -> bool {
    if nix::unistd::geteuid().is_root() {
        return false;
    }
    if std::env::var_os("PMIPLAB_SKIP_NETNS").is_some() {
        return true;
    }
    panic!("this test builds network namespaces and needs root; run it as root (CI does) or set PMIPLAB_SKIP_NETNS=1");
}

fn topology(f: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../topologies").join(f)
}

fn run(f: &str) -> pmiplab::report::ScenarioReport {
    let file = topology(f);
    let s = scenario::load(&file).unwrap();
    netns_run::run(&file, &s, Path::new(env!("CARGO_BIN_EXE_pmip-node")), None)
}

#[test]
fn seed_scenarios_pass_in_namespaces() {
    if skip() {
        return;
    }
    for f in ["fm-up-fmi.yaml", "fm-sp.yaml", "pm-attach.yaml", "pm-reject-154.yaml", "fm-hyb.yaml", "fm-fma-lost.yaml"]
    {
        let r = run(f);
        let failed: Vec<String> =
            r.checks.iter().filter(|c| !c.ok).map(|c| format!("line {}: {} — {}", c.line, c.what, c.detail)).collect();
        assert_eq!(r.verdict, Verdict::Pass, "{f}: {:?}\n{}\n{}", r.reason, failed.join("\n"), r.events.join("\n"));
        // Snapshot steps compared the LMA and MAG tables with the stored
        // virtual-time snapshots.
        for c in r.checks.iter().filter(|c| c.what.starts_with("snapshot")) {
            assert_eq!(c.detail, "identical", "{f}: {}", c.what);
        }
    }
}

#[test]
fn scenarios_that_need_virtual_time_are_skipped_with_the_reason() {
    if skip() {
        return;
    }
    for f in ["pm-reregistration.yaml", "pm-deregistration.yaml", "fm-ts.yaml", "fm-up-pbu.yaml", "pm-handover.yaml"] {
        let r = run(f);
        assert_eq!(r.verdict, Verdict::Skip, "{f}");
        assert!(r.reason.as_deref().unwrap_or("").contains("needs virtual time"), "{f}: {:?}", r.reason);
    }
}
