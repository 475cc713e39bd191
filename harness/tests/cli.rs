//! The command line as a user runs it.

use std::path::PathBuf;
use std::process::Command;

fn pmiplab() -> Command {
    Command::new(env!("CARGO_BIN_EXE_pmiplab"))
}

fn scratch(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("pmiplab-cli-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    d
}

fn topology(f: &str) -> String {
    format!("{}/../topologies/{f}", env!("CARGO_MANIFEST_DIR"))
}

#[test]
fn run_passes_a_seed_scenario_and_leaves_its_results() {
    let out = scratch("pass");
    let o = pmiplab().args(["run", &topology("fm-up-fmi.yaml"), "--out"]).arg(&out).output().unwrap();
    let stdout = String::from_utf8_lossy(&o.stdout);
    assert!(o.status.success(), "{stdout}{}", String::from_utf8_lossy(&o.stderr));
    assert!(stdout.contains("PASS") && stdout.contains("FM-UP-FMI-01"), "{stdout}");
    let result: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("FM-UP-FMI-01/result.json")).unwrap()).unwrap();
    assert_eq!(result["verdict"], "PASS");
    assert!(result["checks"].as_array().unwrap().iter().all(|c| c["outcome"] == "passed"), "{result}");
    assert!(std::fs::read_to_string(out.join("FM-UP-FMI-01/ladder.txt")).unwrap().contains("FMI seq=1 op=add"));
    let diagram = std::fs::read_to_string(out.join("FM-UP-FMI-01/ladder-diagram.txt")).unwrap();
    // Columns: the LMA, then the MAGs, then the MN.
    assert!(
        diagram.lines().next().is_some_and(|h| h.split_whitespace().eq(["lma", "mag1", "mag2", "mn1"])),
        "{diagram}"
    );
    assert!(diagram.contains("|- FMI ->|        |        |  seq=1 op=add lifetime=300s"), "{diagram}");
    assert!(diagram.contains("|----- FMI ------>|        |  seq=2 op=del lifetime=0s"), "{diagram}");
    assert!(std::fs::read_to_string(out.join("FM-UP-FMI-01/ladder.svg")).unwrap().starts_with("<svg"));
    assert!(out.join("FM-UP-FMI-01/state-after-move.json").exists());
    let junit = std::fs::read_to_string(out.join("junit.xml")).unwrap();
    assert!(junit.contains("tests=\"1\"") && junit.contains("failures=\"0\"") && junit.contains("errors=\"0\""));
    std::fs::remove_dir_all(&out).ok();
}

#[test]
fn run_in_parallel_over_a_glob() {
    let out = scratch("glob");
    let o = pmiplab().args(["run", "-j", "2", &topology("*.yaml"), "--out"]).arg(&out).output().unwrap();
    let stdout = String::from_utf8_lossy(&o.stdout);
    assert!(o.status.success(), "{stdout}");
    assert!(stdout.lines().any(|l| l.ends_with(" failed, 0 skipped") && l.contains(" 0 failed")), "{stdout}");
    std::fs::remove_dir_all(&out).ok();
}

#[test]
fn a_failing_expectation_fails_the_run_and_says_why() {
    let dir = scratch("fail");
    std::fs::create_dir_all(&dir).unwrap();
    let wrong =
        std::fs::read_to_string(topology("pm-attach.yaml")).unwrap().replace("with: [status=0,", "with: [status=155,");
    let f = dir.join("wrong.yaml");
    std::fs::write(&f, wrong).unwrap();
    let o = pmiplab().arg("run").arg(&f).arg("--out").arg(dir.join("out")).output().unwrap();
    let stdout = String::from_utf8_lossy(&o.stdout);
    assert_eq!(o.status.code(), Some(1), "{stdout}");
    assert!(
        stdout.contains("FAIL")
            && stdout.contains("with status=155")
            && stdout.contains("expected at least 1 delivered, saw 0"),
        "{stdout}"
    );
    std::fs::remove_dir_all(&dir).ok();
}

#[test]
fn a_broken_file_is_an_error_entry_and_no_lab_is_built_for_it() {
    let dir = scratch("broken");
    std::fs::create_dir_all(&dir).unwrap();
    let f = dir.join("broken.yaml");
    std::fs::write(
        &f,
        "id: B\ntitle: broken\nnodes:\n  lma: { role: lma }\n  mag1: { role: mag }\nsteps:\n  - wait: later\n",
    )
    .unwrap();
    let out = dir.join("out");
    let o = pmiplab().arg("run").arg(&f).arg("--out").arg(&out).output().unwrap();
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(2));
    assert!(stderr.contains("broken.yaml:7:11: 'later' is not a duration"), "{stderr}");
    // The report says so; no scenario folder is made for it.
    let report = pmiplab::run_report::RunReport::read(&out).unwrap();
    assert_eq!(report.input_errors.len(), 1, "{report:?}");
    assert!(report.scenarios.is_empty() && !out.join("B").exists());
    let v = pmiplab().arg("validate").arg(&f).output().unwrap();
    assert_eq!(v.status.code(), Some(2));
    std::fs::remove_dir_all(&dir).ok();
}

#[test]
fn every_verb_has_help() {
    let verbs: [&[&str]; 13] = [
        &["--help"],
        &["step", "--help"],
        &["graph", "--help"],
        &["merge-reports", "--help"],
        &["run", "--help"],
        &["validate", "--help"],
        &["deploy", "--help"],
        &["destroy", "--help"],
        &["inspect", "--help"],
        &["exec", "--help"],
        &["cleanup", "--help"],
        &["bench", "--help"],
        &["help"],
    ];
    for verb in verbs {
        let o = pmiplab().args(verb).output().unwrap();
        assert!(o.status.success());
        assert!(String::from_utf8_lossy(&o.stdout).contains("Usage"));
    }
}

#[test]
fn a_state_table_that_differs_from_its_snapshot_fails_with_a_diff() {
    let dir = scratch("snapdiff");
    std::fs::create_dir_all(dir.join("snapshots")).unwrap();
    std::fs::copy(topology("fm-up-pbu.yaml"), dir.join("fm-up-pbu.yaml")).unwrap();
    for name in ["before", "after"] {
        let stored = std::fs::read_to_string(topology(&format!("snapshots/fm-up-pbu__{name}.snap"))).unwrap();
        let stored = if name == "after" { stored.replace("2001:db8:ffff::12", "2001:db8:ffff::99") } else { stored };
        std::fs::write(dir.join(format!("snapshots/fm-up-pbu__{name}.snap")), stored).unwrap();
    }
    let o = pmiplab().arg("run").arg(dir.join("fm-up-pbu.yaml")).arg("--out").arg(dir.join("out")).output().unwrap();
    let stdout = String::from_utf8_lossy(&o.stdout);
    assert_eq!(o.status.code(), Some(1), "{stdout}");
    assert!(stdout.contains("snapshot after matches"), "{stdout}");
    assert!(stdout.contains("-         \"proxy_coa\": \"2001:db8:ffff::99\""), "{stdout}");
    assert!(stdout.contains("+         \"proxy_coa\": \"2001:db8:ffff::12\""), "{stdout}");
    std::fs::remove_dir_all(&dir).ok();
}

#[test]
fn bench_core_measures_the_lma_beside_the_codec() {
    let o = pmiplab().args(["bench", "core", "--bindings", "300"]).output().unwrap();
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(o.status.success(), "{out}{}", String::from_utf8_lossy(&o.stderr));
    let row = out.lines().find(|l| l.starts_with("| sans-IO LMA, PBU→PBA")).unwrap_or_else(|| panic!("{out}"));
    let cells: Vec<&str> = row.split('|').map(str::trim).collect();
    let rate: f64 = cells[2].trim_end_matches(" /s").parse().unwrap_or_else(|_| panic!("{row}"));
    assert!(rate > 0.0, "{row}");
    assert!(cells[3].starts_with("codec alone"), "{row}");
}
