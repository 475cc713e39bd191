//! `pmiplab run` and `pmiplab merge-reports`: the scenario files in, the
//! run's report out, whatever happens in between. A file that cannot be
//! read is an error entry of the report and the others still run; each
//! scenario's line is printed as it finishes and its folder written then,
//! so an interrupted run keeps them; the report (JSON and JUnit) is
//! written last, marked partial when the run was cut short.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use crate::report::{ScenarioReport, Verdict};
use crate::run::{expand, explain};
use crate::run_report::{exit, in_shard, InputError, RunReport};
use crate::scenario::Scenario;

pub struct RunOptions<'a> {
    pub patterns: &'a [String],
    pub jobs: usize,
    pub out: &'a Path,
    /// `virtual` or `netns`.
    pub backend: &'a str,
    pub record: bool,
    /// This runner's shard of the catalogue, (K, N).
    pub shard: Option<(usize, usize)>,
    /// Stop the run (as SIGINT would) after this long.
    pub timeout: Option<Duration>,
    /// `--iut ROLE=CMD|FILE.yaml`: every node of the role is played by
    /// that implementation under test (namespaces only).
    pub iut: &'a [String],
}

/// Runs the scenarios and gives the exit code (see `run_report::exit`).
pub fn run(o: &RunOptions<'_>) -> u8 {
    let started = Instant::now();
    let files = match expand(o.patterns) {
        Ok(f) => f,
        Err(e) => {
            eprintln!("pmiplab: {e}");
            return exit::BAD_INPUT;
        }
    };
    let files: Vec<PathBuf> = match o.shard {
        Some((k, n)) => files.into_iter().enumerate().filter(|(i, _)| in_shard(*i, k, n)).map(|(_, f)| f).collect(),
        None => files,
    };
    let mut report = RunReport::new(o.backend);
    if let Some((k, n)) = o.shard {
        report.shards.push(format!("{k}/{n}"));
    }
    let mut loaded = load_all(&files, &mut report.input_errors);
    if !o.iut.is_empty() && o.backend != "netns" {
        eprintln!("pmiplab: --iut needs --backend netns: an implementation under test runs in namespaces");
        return exit::BAD_INPUT;
    }
    for arg in o.iut {
        match crate::iut::load_cli(arg) {
            Ok((role, spec)) => loaded.iter_mut().for_each(|(_, s)| crate::iut::apply(s, role, &spec)),
            Err(e) => {
                eprintln!("pmiplab: {e}");
                return exit::BAD_INPUT;
            }
        }
    }
    let node_bin = if o.backend == "netns" {
        match crate::netns_run::node_binary() {
            Ok(b) => Some(b),
            Err(e) => {
                eprintln!("pmiplab: {e}");
                return exit::BAD_INPUT;
            }
        }
    } else {
        None
    };
    if let Err(e) = crate::interrupt::catch_signals() {
        eprintln!("pmiplab: {e}; an interrupt will end the run without a report");
    }
    if let Some(t) = o.timeout {
        crate::interrupt::stop_after(t);
    }
    let how = if node_bin.is_some() { "network namespaces" } else { "virtual time" };
    let shard = o.shard.map(|(k, n)| format!(", shard {k}/{n}")).unwrap_or_default();
    println!(
        "pmiplab: {} scenario(s){shard}, {how}, {} at once, output in {}",
        loaded.len(),
        o.jobs.max(1),
        o.out.display()
    );
    let pins = crate::snapshots::Pins { record: o.record, pending: !o.record };
    // Each scenario's line and folder as soon as it is done: a run cut
    // short keeps what finished.
    let print = std::sync::Mutex::new(());
    let done = |_: usize, r: &ScenarioReport| {
        let _guard = print.lock();
        println!("{}", r.line());
        for c in r.checks.iter().filter(|c| !c.passed()) {
            println!("{}", explain(c));
        }
        if let Err(e) = r.write(o.out) {
            eprintln!("pmiplab: could not write the results of {} under {}: {e}", r.id, o.out.display());
        }
    };
    let results = crate::run::run_streaming(&loaded, o.jobs.max(1), node_bin.as_deref(), o.out, pins, &done);
    for ((f, _), r) in loaded.iter().zip(results) {
        match r {
            Some(mut r) => {
                r.artifacts = crate::report::artifacts_in(&o.out.join(&r.id)).unwrap_or_default();
                report.scenarios.push(r)
            }
            None => report.not_run.push(f.clone()),
        }
    }
    // Cut short only if something was left undone: a stop asked for after
    // the last step of the last scenario changes nothing.
    let cut = !report.not_run.is_empty() || report.scenarios.iter().any(|r| r.verdict == Verdict::Interrupted);
    if cut {
        report.partial = true;
        report.interrupted = crate::interrupt::reason().map(|r| match (r, o.timeout) {
            ("timeout", Some(t)) => format!("timeout after {}", humantime::format_duration(t)),
            (r, _) => r.to_string(),
        });
    }
    report.wall_ms = started.elapsed().as_secs_f64() * 1000.0;
    finish(&report, o.out, node_bin.is_some())
}

/// Loads every file; those that fail become input errors, printed now.
/// A second file with an id already taken is one too: ids name folders.
fn load_all(files: &[PathBuf], errors: &mut Vec<InputError>) -> Vec<(PathBuf, Scenario)> {
    let mut loaded: Vec<(PathBuf, Scenario)> = Vec::new();
    for f in files {
        match crate::validate::check_file(f) {
            Ok(s) => {
                if let Some((prev, _)) = loaded.iter().find(|(_, o)| o.id == s.id) {
                    let e = InputError {
                        file: f.clone(),
                        line: 1,
                        column: 1,
                        message: format!(
                            "{} has the same id {}; ids name the output folders, so they must differ (this file was not run)",
                            prev.display(),
                            s.id
                        ),
                    };
                    eprintln!("{e}");
                    errors.push(e);
                } else {
                    loaded.push((f.clone(), s));
                }
            }
            Err(all) => {
                for e in &all {
                    eprintln!("{e}");
                }
                // One entry per file, led by its first problem.
                let mut first = InputError::from(&all[0]);
                if all.len() > 1 {
                    first.message += &format!(" (and {} more problem(s): see `pmiplab validate`)", all.len() - 1);
                }
                errors.push(first);
            }
        }
    }
    loaded
}

/// Writes the run's report, prints the summary in input order, and gives
/// the exit code.
fn finish(report: &RunReport, out: &Path, netns: bool) -> u8 {
    if let Err(e) = report.write(out) {
        eprintln!("pmiplab: could not write the run's report under {}: {e}", out.display());
    }
    if netns {
        let lua = out.join("pmiplab.lua");
        match std::fs::write(&lua, pmip_captures::LUA_DISSECTOR) {
            Ok(()) => println!(
                "pmiplab: read the captures with `tshark -X lua_script:{}` (FMI/FMA on MH type N: add -o pmip.fmi_mh_type:N; \
                 signalling in ESP: add -o esp.enable_encryption_decode:TRUE and each record of the scenario's esp_sa \
                 as -o 'uat:esp_sa:<record>')",
                lua.display()
            ),
            Err(e) => eprintln!("pmiplab: could not write {}: {e}", lua.display()),
        }
    }
    if report.scenarios.len() + report.input_errors.len() > 1 {
        println!("pmiplab: summary, in input order:");
        for r in &report.scenarios {
            println!("{}", r.line());
        }
        for e in &report.input_errors {
            println!("{:<9} {}", "BAD-INPUT", e);
        }
    }
    let unchecked: usize =
        report.scenarios.iter().map(|r| r.checks.iter().filter(|c| c.ok() && !c.passed()).count()).sum();
    if unchecked > 0 {
        println!("pmiplab: {unchecked} check(s) had nothing to compare with and were not passed (see above)");
    }
    if let Some(why) = &report.interrupted {
        println!(
            "pmiplab: the run was cut short ({why}): {} finished, {} not run; the partial report is in {}",
            report.scenarios.len(),
            report.not_run.len(),
            out.join("report.json").display()
        );
    }
    println!("{}", report.summary());
    report.exit_code()
}

/// `pmiplab merge-reports`: joins the reports of shards into one under
/// `out` and gives the exit code the merged run would have had.
pub fn merge_reports(inputs: &[PathBuf], out: &Path) -> u8 {
    let mut reports = Vec::new();
    for i in inputs {
        match RunReport::read(i) {
            Ok(r) => reports.push(r),
            Err(e) => {
                eprintln!("pmiplab: {e}");
                return exit::BAD_INPUT;
            }
        }
    }
    let merged = match crate::run_report::merge(reports) {
        Ok(m) => m,
        Err(e) => {
            eprintln!("pmiplab: {e}");
            return exit::BAD_INPUT;
        }
    };
    if let Err(e) = merged.write(out) {
        eprintln!("pmiplab: could not write the merged report under {}: {e}", out.display());
        return exit::BAD_INPUT;
    }
    println!(
        "pmiplab: merged {} report(s) into {} and {}",
        inputs.len(),
        out.join("report.json").display(),
        out.join("junit.xml").display()
    );
    println!("{}", merged.summary());
    merged.exit_code()
}
