//! Every scenario in topologies/ passes in virtual time, and its state
//! tables and message sequence match the snapshots stored beside it
//! (review changes with `cargo insta review`).

use std::path::PathBuf;

use pmiplab::report::Verdict;
use pmiplab::run::run_virtual;
use pmiplab::scenario;

fn topologies() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../topologies")
}

#[test]
fn every_scenario_passes_and_matches_its_snapshots() {
    let pattern = topologies().join("**/*.yaml");
    let files: Vec<PathBuf> = glob::glob(&pattern.to_string_lossy()).unwrap().filter_map(Result::ok).collect();
    assert!(files.len() >= 10, "the seed catalogue is missing: {} files", files.len());
    for file in files {
        let s = scenario::load(&file).unwrap_or_else(|e| panic!("{e}"));
        let r = run_virtual(&file, &s);
        // Every scenario of the catalogue has its pins: a check with no
        // reference is not a pass here.
        let failed: Vec<String> = r
            .checks
            .iter()
            .filter(|c| !c.passed())
            .map(|c| format!("line {}: {} — {:?}: {}", c.line, c.what, c.outcome, c.detail))
            .collect();
        assert_eq!(r.verdict, Verdict::Pass, "{}: {:?}\n{}", file.display(), r.reason, failed.join("\n"));
        assert!(failed.is_empty(), "{}: checks not passed:\n{}", file.display(), failed.join("\n"));
        let stem = file.file_stem().unwrap().to_string_lossy().to_string();
        let mut settings = insta::Settings::clone_current();
        settings.set_snapshot_path(file.parent().unwrap().join("snapshots"));
        settings.set_prepend_module_to_snapshot(false);
        settings.set_info(&format!("{} — {}", s.id, s.title));
        settings.bind(|| {
            for (name, state) in &r.snapshots {
                insta::assert_yaml_snapshot!(format!("{stem}__{name}"), state);
            }
            insta::assert_yaml_snapshot!(format!("{stem}__ladder"), r.ladder);
        });
    }
}
