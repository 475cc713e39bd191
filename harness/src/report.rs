//! Verdicts and the files a run leaves: result.json per scenario, the
//! ladder, events, state tables; the run's own report (JSON and JUnit)
//! is in `run_report`.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING-KEBAB-CASE")]
pub enum Verdict {
    Pass,
    Fail,
    InitFail,
    Skip,
    /// A signal or `--timeout` stopped the run before the scenario's last
    /// step: what it played is kept, but it is no verdict on the rest.
    Interrupted,
}

impl std::fmt::Display for Verdict {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Verdict::Pass => "PASS",
            Verdict::Fail => "FAIL",
            Verdict::InitFail => "INIT-FAIL",
            Verdict::Skip => "SKIP",
            Verdict::Interrupted => "INTERRUPTED",
        })
    }
}

/// What became of one check. Only `Failed` fails a scenario; the other
/// two are not passes either, and the summary counts them apart.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Outcome {
    Passed,
    Failed,
    /// There was nothing to compare with: no stored snapshot or ladder and
    /// no model run alongside.
    NoReference,
    /// What the check reads cannot be observed on this backend.
    NotObservable,
}

/// One expectation and what was seen.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Check {
    /// Line of the step in the scenario file.
    pub line: u64,
    pub what: String,
    pub outcome: Outcome,
    pub detail: String,
}

impl Check {
    /// A check that passed when `ok`, else failed.
    pub fn new(line: u64, what: impl Into<String>, ok: bool, detail: impl Into<String>) -> Self {
        let outcome = if ok { Outcome::Passed } else { Outcome::Failed };
        Check { line, what: what.into(), outcome, detail: detail.into() }
    }

    pub fn failed(line: u64, what: impl Into<String>, detail: impl Into<String>) -> Self {
        Check::new(line, what, false, detail)
    }

    pub fn no_reference(line: u64, what: impl Into<String>, detail: impl Into<String>) -> Self {
        Check { line, what: what.into(), outcome: Outcome::NoReference, detail: detail.into() }
    }

    /// Whether the check did not fail.
    pub fn ok(&self) -> bool {
        self.outcome != Outcome::Failed
    }

    pub fn passed(&self) -> bool {
        self.outcome == Outcome::Passed
    }
}

/// How many of a scenario's checks had each outcome: what a scenario run
/// with an implementation under test could not observe is counted apart
/// from what passed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Counts {
    pub passed: usize,
    pub failed: usize,
    pub not_observable: usize,
    pub no_reference: usize,
}

impl Counts {
    pub fn of(checks: &[Check]) -> Self {
        let count = |o: Outcome| checks.iter().filter(|c| c.outcome == o).count();
        Counts {
            passed: count(Outcome::Passed),
            failed: count(Outcome::Failed),
            not_observable: count(Outcome::NotObservable),
            no_reference: count(Outcome::NoReference),
        }
    }
}

impl Serialize for ScenarioReport {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        #[derive(Serialize)]
        struct Written<'a> {
            id: &'a str,
            title: &'a str,
            file: &'a Path,
            backend: &'a str,
            verdict: Verdict,
            reason: &'a Option<String>,
            checks: &'a [Check],
            counts: Counts,
            ladder: &'a [String],
            wall_ms: f64,
            artifacts: &'a [String],
        }
        Written {
            id: &self.id,
            title: &self.title,
            file: &self.file,
            backend: &self.backend,
            verdict: self.verdict,
            reason: &self.reason,
            checks: &self.checks,
            counts: self.counts(),
            ladder: &self.ladder,
            wall_ms: self.wall_ms,
            artifacts: &self.artifacts,
        }
        .serialize(s)
    }
}

/// Serialized (result.json, report.json) with `counts` beside `checks`;
/// read back, `counts` is recomputed from the checks.
#[derive(Debug, Clone, Deserialize)]
pub struct ScenarioReport {
    pub id: String,
    pub title: String,
    pub file: PathBuf,
    pub backend: String,
    pub verdict: Verdict,
    pub reason: Option<String>,
    pub checks: Vec<Check>,
    pub ladder: Vec<String>,
    /// How the ladder is drawn (columns, width).
    #[serde(skip)]
    pub ladder_options: pmip_captures::ladder::Options,
    /// Every step as played: its time (ms since the backend started) and
    /// what it was, for the captures' packet comments.
    #[serde(skip)]
    pub step_marks: Vec<(u64, String)>,
    /// The messages seen, as the ladder draws them.
    #[serde(skip)]
    pub observed: Vec<crate::engine::Observed>,
    /// What had crossed the links when each step settled, by step index.
    #[serde(skip)]
    pub settled: BTreeMap<usize, crate::engine::answers::Tally>,
    #[serde(skip)]
    pub events: Vec<String>,
    #[serde(skip)]
    pub snapshots: BTreeMap<String, serde_json::Value>,
    /// Each daemon's own log, by node.
    #[serde(skip)]
    pub logs: BTreeMap<String, String>,
    pub wall_ms: f64,
    /// The files of the scenario's folder beside result.json (ladders,
    /// logs, state tables, captures), as `write` left them.
    #[serde(default)]
    pub artifacts: Vec<String>,
}

impl ScenarioReport {
    /// A passing report with no checks yet, for `s` on `backend`.
    pub fn new(file: &Path, s: &crate::scenario::Scenario, backend: &str) -> Self {
        ScenarioReport {
            id: s.id.clone(),
            title: s.title.clone(),
            file: file.into(),
            backend: backend.into(),
            verdict: Verdict::Pass,
            reason: None,
            checks: Vec::new(),
            ladder: Vec::new(),
            ladder_options: Default::default(),
            step_marks: Vec::new(),
            observed: Vec::new(),
            settled: BTreeMap::new(),
            events: Vec::new(),
            snapshots: Default::default(),
            logs: Default::default(),
            wall_ms: 0.0,
            artifacts: Vec::new(),
        }
    }

    /// This report as INIT-FAIL: the lab could not be built.
    pub fn lab_failed(mut self, why: impl std::fmt::Display) -> Self {
        self.verdict = Verdict::InitFail;
        self.reason = Some(format!("the lab could not be built: {why}"));
        self
    }

    /// The verdict the checks give: FAIL when one failed, else PASS.
    pub fn judge(&mut self) {
        self.verdict = if self.checks.iter().all(Check::ok) { Verdict::Pass } else { Verdict::Fail };
    }

    /// How many checks had each outcome that is not a pass or a failure,
    /// as words for the summary ("2 with no reference").
    pub fn unchecked(&self) -> Vec<String> {
        let count = |o: Outcome| self.checks.iter().filter(|c| c.outcome == o).count();
        let mut v = Vec::new();
        if count(Outcome::NoReference) > 0 {
            v.push(format!("{} with no reference", count(Outcome::NoReference)));
        }
        if count(Outcome::NotObservable) > 0 {
            v.push(format!("{} not observable", count(Outcome::NotObservable)));
        }
        v
    }

    /// How many checks had each outcome.
    pub fn counts(&self) -> Counts {
        Counts::of(&self.checks)
    }

    /// What became of the checks, counted by outcome: "checks: 12 passed,
    /// 0 failed, 2 not observable, 0 with no reference".
    pub fn tally(&self) -> String {
        let c = self.counts();
        format!(
            "checks: {} passed, {} failed, {} not observable, {} with no reference",
            c.passed, c.failed, c.not_observable, c.no_reference
        )
    }

    /// The one-line summary for the terminal.
    pub fn line(&self) -> String {
        let failed = self.checks.iter().filter(|c| !c.ok()).count();
        let unchecked = self.unchecked();
        let unchecked = if unchecked.is_empty() { String::new() } else { format!(" ({})", unchecked.join(", ")) };
        let tail = match (&self.reason, self.verdict) {
            (Some(r), _) => format!(" — {r}"),
            (None, Verdict::Fail) => format!(" — {failed} of {} checks failed{unchecked}", self.checks.len()),
            (None, _) => format!(" — {} checks{unchecked}", self.checks.len()),
        };
        format!(
            "{:<9} {:<14} {} ({:.0} ms){tail}",
            self.verdict.to_string(),
            self.id,
            self.file.display(),
            self.wall_ms
        )
    }

    /// Writes the scenario's folder under `out`, result.json last so that
    /// it lists every file beside it (captures the run already left there
    /// included).
    pub fn write(&self, out: &Path) -> std::io::Result<PathBuf> {
        let dir = out.join(&self.id);
        std::fs::create_dir_all(&dir)?;
        std::fs::write(dir.join("ladder.txt"), self.ladder.join("\n") + "\n")?;
        std::fs::write(
            dir.join("ladder-diagram.txt"),
            pmip_captures::ladder::render_with(&self.ladder, &self.ladder_options),
        )?;
        std::fs::write(
            dir.join("ladder.svg"),
            pmip_captures::ladder_svg::render_svg(&self.ladder, &self.ladder_options),
        )?;
        std::fs::write(dir.join("events.log"), self.events.join("\n") + "\n")?;
        for (node, log) in &self.logs {
            std::fs::write(dir.join(format!("{node}.log")), log)?;
        }
        for (name, state) in &self.snapshots {
            let json = serde_json::to_string_pretty(state).map_err(std::io::Error::other)?;
            std::fs::write(dir.join(format!("state-{name}.json")), json)?;
        }
        let mut listed = self.clone();
        listed.artifacts = artifacts_in(&dir)?;
        let json = serde_json::to_string_pretty(&listed).map_err(std::io::Error::other)?;
        std::fs::write(dir.join("result.json"), json)?;
        Ok(dir)
    }
}

/// The files of a scenario's folder beside its result.json, by name.
pub fn artifacts_in(dir: &Path) -> std::io::Result<Vec<String>> {
    let mut v: Vec<String> = std::fs::read_dir(dir)?
        .filter_map(Result::ok)
        .filter(|e| e.file_type().is_ok_and(|t| t.is_file()))
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n != "result.json")
        .collect();
    v.sort();
    Ok(v)
}

/// The log lines of every node in one timeline, each led by its node's
/// name: the daemons stamp their lines with RFC 3339 UTC times of one
/// format, so the text order of the stamps is their time order. A line
/// with no stamp of its own stays with the line before it.
pub fn merge_logs(logs: &BTreeMap<String, String>) -> Vec<String> {
    let mut entries: Vec<(&str, &str, String)> = Vec::new();
    for (node, log) in logs {
        let mut stamp = "";
        for line in log.lines().filter(|l| !l.trim().is_empty()) {
            let first = line.split(' ').next().unwrap_or("");
            if first.len() >= 20 && first.as_bytes()[4] == b'-' && first.ends_with('Z') {
                stamp = first;
            }
            entries.push((stamp, node, format!("{node:<6} {line}")));
        }
    }
    // A stable sort keeps each node's own order for equal stamps.
    entries.sort_by(|a, b| a.0.cmp(b.0));
    entries.into_iter().map(|(_, _, l)| l).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn logs_merge_into_one_timeline_led_by_node_names() {
        let logs = BTreeMap::from([
            ("lma".to_string(), "2026-11-24T06:54:35.100Z  INFO up\n2026-11-24T06:54:37.300Z  INFO PBU\n".to_string()),
            (
                "mag1".to_string(),
                "2026-11-24T06:54:35.200Z  INFO up\n  a continuation\n2026-11-24T06:54:37.200Z  INFO attached\n"
                    .to_string(),
            ),
        ]);
        let merged = merge_logs(&logs);
        assert_eq!(
            merged,
            [
                "lma    2026-11-24T06:54:35.100Z  INFO up",
                "mag1   2026-11-24T06:54:35.200Z  INFO up",
                "mag1     a continuation",
                "mag1   2026-11-24T06:54:37.200Z  INFO attached",
                "lma    2026-11-24T06:54:37.300Z  INFO PBU",
            ]
        );
    }
}
