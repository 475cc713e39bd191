//! Every scenario of topologies/ played in namespaces by real daemons,
//! through the runner the CLI uses (`pmiplab run --backend netns`): each
//! passes, its wire equals the model run alongside, and at each snapshot
//! step the LMA, MAG and MN tables and every node's kernel section equal
//! the model's (the MNs' packet counters left out).
//!
//! Needs root; PMIPLAB_SKIP_NETNS=1 skips it where that is impossible.

mod common;

use common::*;

use std::path::{Path, PathBuf};

use pmiplab::report::Verdict;
use pmiplab::{run::run_netns, scenario};

fn run(file: &Path) -> pmiplab::report::ScenarioReport {
    let s = scenario::load(file).unwrap_or_else(|e| panic!("{e}"));
    run_netns(file, &s, Path::new(env!("CARGO_BIN_EXE_pmip-node")), None, Default::default())
}

#[test]
fn every_scenario_passes_in_namespaces_and_matches_the_virtual_snapshots() {
    if skip() {
        return;
    }
    let pattern = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../topologies/*.yaml");
    let files: Vec<PathBuf> = glob::glob(&pattern.to_string_lossy()).unwrap().filter_map(Result::ok).collect();
    assert!(files.len() >= 13);
    for f in files {
        let r = run(&f);
        // The catalogue's pins exist: every check must pass, not merely not fail.
        let failed: Vec<String> = r
            .checks
            .iter()
            .filter(|c| !c.passed())
            .map(|c| format!("line {}: {} — {:?}: {}", c.line, c.what, c.outcome, c.detail))
            .collect();
        assert!(
            failed.is_empty() && r.verdict == Verdict::Pass,
            "{}: {:?}\n{}\n{}",
            f.display(),
            r.reason,
            failed.join("\n"),
            r.events.join("\n")
        );
        for c in r.checks.iter().filter(|c| c.what.starts_with("snapshot")) {
            assert_eq!(c.detail, "identical", "{}: {}", f.display(), c.what);
        }
        assert!(
            r.checks.iter().any(|c| c.what.contains("match the model run alongside") && c.passed()),
            "{}: the wire was not compared with the model",
            f.display()
        );
        // What was compared holds every role's tables, the MNs' included.
        for (name, state) in &r.snapshots {
            for part in ["lma", "mags", "mns", "kernel"] {
                let filled = state[part].as_object().is_some_and(|o| !o.is_empty() && o.values().all(|v| !v.is_null()));
                assert!(filled, "{}: snapshot {name} has no {part} tables: {state:#}", f.display());
            }
        }
    }
}

#[test]
fn a_wait_too_long_for_real_time_is_skipped_with_the_reason() {
    if skip() {
        return;
    }
    let dir = std::env::temp_dir().join(format!("pmiplab-longwait-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let f = dir.join("long.yaml");
    std::fs::write(
        &f,
        "id: LONG\ntitle: t\nnodes:\n  lma: { role: lma }\n  mag1: { role: mag }\nsteps:\n  - wait: 5m\n",
    )
    .unwrap();
    let r = run(&f);
    assert_eq!(r.verdict, Verdict::Skip);
    assert!(r.reason.as_deref().unwrap_or("").contains("a wait of 5m (line 7) needs virtual time"), "{:?}", r.reason);
    std::fs::remove_dir_all(&dir).ok();
}
