//! Runs scenarios and gives each a verdict.

use std::path::{Path, PathBuf};

use crate::engine::{self, Judging, Reference};
use crate::report::{Check, ScenarioReport, Verdict};
use crate::scenario::Scenario;
use crate::snapshots::Pins;
use crate::virtual_lab::VirtualLab;

/// Plays one loaded scenario in virtual time, judged against its stored
/// pins.
pub fn run_virtual(file: &Path, s: &Scenario) -> ScenarioReport {
    run_virtual_with(file, s, Pins::default())
}

/// [`run_virtual`] with what to do with the pins.
pub fn run_virtual_with(file: &Path, s: &Scenario, pins: Pins) -> ScenarioReport {
    let mut lab = match VirtualLab::build(s) {
        Ok(l) => l,
        Err(e) => return ScenarioReport::new(file, s, "virtual").lab_failed(e),
    };
    engine::play(file, s, &mut lab, Judging { reference: None, pins, out: None })
}

/// Plays a scenario in namespaces with the daemon binary `node_bin`, and
/// in virtual time alongside: the namespace run's wire and tables are
/// compared with the model's, and the model's with the stored pins.
pub fn run_netns(file: &Path, s: &Scenario, node_bin: &Path, out: Option<&Path>, pins: Pins) -> ScenarioReport {
    run_netns_prepared(file, s, node_bin, out, pins, &mut |_| Ok(()))
}

/// [`run_netns`], with `prepare` given the lab before the first step.
pub fn run_netns_prepared(
    file: &Path,
    s: &Scenario,
    node_bin: &Path,
    out: Option<&Path>,
    pins: Pins,
    prepare: &mut dyn FnMut(&crate::lab::Lab) -> Result<(), String>,
) -> ScenarioReport {
    let model = run_virtual_with(file, s, pins);
    let reference = Reference::of(&model);
    let judging = Judging { reference: Some(&reference), pins, out };
    let mut report = crate::netns_run::run_prepared(file, s, node_bin, judging, prepare);
    // A lab that could not be built stays INIT-FAIL: judging it again
    // from its (empty) checks would turn it into a pass. An interrupted
    // run keeps its verdict too: judging what it did not play would give
    // a PASS or FAIL it never earned.
    let played = !matches!(report.verdict, Verdict::Skip | Verdict::InitFail | Verdict::Interrupted);
    if played && model.verdict != Verdict::Skip {
        report.checks.push(model_check(&model));
        report.judge();
    }
    report
}

/// The model run's own outcome, as one check of a namespace run: a model
/// that failed its expectations or its pins is no reference to pass by.
fn model_check(model: &ScenarioReport) -> Check {
    let what = "the model run alongside passed and matched its stored pins";
    let failed: Vec<String> = model
        .checks
        .iter()
        .filter(|c| !c.ok())
        .map(|c| format!("line {}: {} — {}", c.line, c.what, c.detail))
        .collect();
    match (model.verdict, failed.is_empty()) {
        (Verdict::Pass, _) => {
            let unchecked = model.unchecked();
            if unchecked.is_empty() {
                Check::new(1, what, true, "every check passed")
            } else {
                Check::no_reference(1, what, format!("it passed, {}", unchecked.join(", ")))
            }
        }
        (v, true) => Check::failed(1, what, format!("{v}: {}", model.reason.clone().unwrap_or_default())),
        (v, false) => Check::failed(1, what, format!("{v}:\n{}", failed.join("\n"))),
    }
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
    pins: Pins,
) -> Vec<ScenarioReport> {
    run_streaming(loaded, jobs, node_bin, out, pins, &|_, _| {}).into_iter().flatten().collect()
}

/// [`run_all`], handing each report to `done` (with its index in
/// `loaded`) as soon as its scenario finishes, and starting no new
/// scenario once the run is asked to stop ([`crate::interrupt`]): those
/// are `None`, in the order of `loaded`.
pub fn run_streaming(
    loaded: &[(PathBuf, Scenario)],
    jobs: usize,
    node_bin: Option<&Path>,
    out: &Path,
    pins: Pins,
    done: &(dyn Fn(usize, &ScenarioReport) + Sync),
) -> Vec<Option<ScenarioReport>> {
    let next = std::sync::atomic::AtomicUsize::new(0);
    let results = std::sync::Mutex::new(Vec::new());
    std::thread::scope(|scope| {
        for _ in 0..jobs.max(1).min(loaded.len()) {
            scope.spawn(|| loop {
                if crate::interrupt::requested() {
                    break;
                }
                let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                let Some((f, s)) = loaded.get(i) else { break };
                let r = match node_bin {
                    Some(bin) => run_netns(f, s, bin, Some(out), pins),
                    None => run_virtual_with(f, s, pins),
                };
                done(i, &r);
                if let Ok(mut v) = results.lock() {
                    v.push((i, r));
                }
            });
        }
    });
    let mut all: Vec<Option<ScenarioReport>> = loaded.iter().map(|_| None).collect();
    for (i, r) in results.into_inner().unwrap_or_default() {
        all[i] = Some(r);
    }
    all
}
