//! Runs scenarios and gives each a verdict.

use std::path::{Path, PathBuf};
use std::time::Instant as WallClock;

use crate::report::{Check, ScenarioReport, Verdict};
use crate::scenario::{Scenario, Step};
use crate::snapshots;
use crate::virtual_lab::{missing_features, VirtualLab, FEATURES};

/// Runs one loaded scenario in virtual time.
pub fn run_virtual(file: &Path, s: &Scenario) -> ScenarioReport {
    let started = WallClock::now();
    let mut report = ScenarioReport::new(file, s, "virtual");
    let missing = missing_features(s, &FEATURES);
    if !missing.is_empty() {
        report.verdict = Verdict::Skip;
        report.reason = Some(format!("needs {} (the virtual backend has {})", missing.join(", "), FEATURES.join(", ")));
        return report;
    }
    let mut lab = match VirtualLab::build(s) {
        Ok(l) => l,
        Err(e) => return report.lab_failed(e),
    };
    for step in &s.steps {
        let line = step.referenced.line();
        if let Step::Snapshot(name) = &step.value {
            let state = serde_json::to_value(lab.world.state()).unwrap_or_default();
            report.checks.push(snapshots::compare(file, name, &state, line));
            report.snapshots.insert(name.clone(), state);
            continue;
        }
        if let Some(c) = lab.step(&step.value, line) {
            report.checks.push(c);
        }
    }
    report.ladder = lab.world.ladder();
    report.events = lab.world.events.iter().map(|e| format!("{}ms {}: {}", e.at_ms, e.node, e.text)).collect();
    report.verdict = VirtualLab::verdict_for(&report.checks);
    report.wall_ms = started.elapsed().as_secs_f64() * 1000.0;
    report
}

/// Files named by paths or glob patterns, in order, each once.
pub fn expand(patterns: &[String]) -> Result<Vec<PathBuf>, String> {
    let mut out = Vec::new();
    for p in patterns {
        if Path::new(p).is_file() {
            out.push(PathBuf::from(p));
            continue;
        }
        let matches: Vec<PathBuf> = glob::glob(p)
            .map_err(|e| format!("'{p}' is not a valid glob pattern: {e}"))?
            .filter_map(Result::ok)
            .filter(|f| f.is_file())
            .collect();
        if matches.is_empty() {
            return Err(format!("'{p}' names no scenario file"));
        }
        out.extend(matches);
    }
    out.dedup();
    Ok(out)
}

/// A failed check that explains itself, for the terminal.
pub fn explain(c: &Check) -> String {
    format!("    line {}: {} — {}", c.line, c.what, c.detail)
}

/// Runs `loaded` with `jobs` at once, in virtual time or, given the
/// daemon binary, in namespaces with results under `out`; reports in the
/// order of `loaded`.
pub fn run_all(
    loaded: &[(PathBuf, Scenario)],
    jobs: usize,
    node_bin: Option<&Path>,
    out: &Path,
) -> Vec<ScenarioReport> {
    let next = std::sync::atomic::AtomicUsize::new(0);
    let results = std::sync::Mutex::new(Vec::new());
    std::thread::scope(|scope| {
        for _ in 0..jobs.min(loaded.len()) {
            scope.spawn(|| loop {
                let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                let Some((f, s)) = loaded.get(i) else { break };
                let r = match node_bin {
                    Some(bin) => crate::netns_run::run(f, s, bin, Some(out)),
                    None => run_virtual(f, s),
                };
                if let Ok(mut v) = results.lock() {
                    v.push((i, r));
                }
            });
        }
    });
    let mut v = results.into_inner().unwrap_or_default();
    v.sort_by_key(|(i, _)| *i);
    v.into_iter().map(|(_, r)| r).collect()
}
