//! A sample of the random model test's cases, played by the real daemons:
//! each was written by `write_namespace_sample` (nodes/proto/tests/
//! random_model.rs) with the message counts and table sizes the model saw
//! as its expectations, and each namespace run is also compared, message
//! for message and table for table, with the model played alongside.
//! Regenerate with the command in docs/random-testing.md.
//!
//! Needs root; PMIPLAB_SKIP_NETNS=1 skips it where that is impossible.

mod common;

use std::path::{Path, PathBuf};

use pmiplab::report::{Outcome, Verdict};
use pmiplab::run::run_netns;
use pmiplab::scenario;

#[test]
fn generated_cases_agree_with_the_model_in_namespaces() {
    if common::skip() {
        return;
    }
    let pattern = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/random_sample/*.yaml");
    let files: Vec<PathBuf> = glob::glob(&pattern.to_string_lossy()).unwrap().filter_map(Result::ok).collect();
    assert!(files.len() >= 4, "the sample is missing: {files:?}");
    for f in files {
        let s = scenario::load(&f).unwrap_or_else(|e| panic!("{e}"));
        let r = run_netns(&f, &s, Path::new(env!("CARGO_BIN_EXE_pmip-node")), None, Default::default());
        let failed: Vec<String> = r
            .checks
            .iter()
            .filter(|c| !c.ok())
            .map(|c| format!("line {}: {} — {}", c.line, c.what, c.detail))
            .collect();
        assert_eq!(r.verdict, Verdict::Pass, "{}:\n{}", f.display(), failed.join("\n"));
        let wire = r.checks.iter().find(|c| c.what.contains("on the wire match the model")).expect("compared");
        assert_eq!(wire.outcome, Outcome::Passed, "{}: {}", f.display(), wire.detail);
    }
}
