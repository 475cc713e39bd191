//! Verdicts and the files a run leaves: result.json per scenario, the
//! ladder, events, state tables, and one JUnit XML for the run.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::Serialize;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "SCREAMING-KEBAB-CASE")]
pub enum Verdict {
    Pass,
    Fail,
    InitFail,
    Skip,
}

impl std::fmt::Display for Verdict {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Verdict::Pass => "PASS",
            Verdict::Fail => "FAIL",
            Verdict::InitFail => "INIT-FAIL",
            Verdict::Skip => "SKIP",
        })
    }
}

/// What became of one check. Only `Failed` fails a scenario; the other
/// two are not passes either, and the summary counts them apart.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
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
#[derive(Debug, Clone, Serialize)]
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

#[derive(Debug, Clone, Serialize)]
pub struct ScenarioReport {
    pub id: String,
    pub title: String,
    pub file: PathBuf,
    pub backend: String,
    pub verdict: Verdict,
    pub reason: Option<String>,
    pub checks: Vec<Check>,
    pub ladder: Vec<String>,
    /// The messages seen, as the ladder draws them.
    #[serde(skip)]
    pub observed: Vec<crate::engine::Observed>,
    #[serde(skip)]
    pub events: Vec<String>,
    #[serde(skip)]
    pub snapshots: BTreeMap<String, serde_json::Value>,
    /// Each daemon's own log, by node.
    #[serde(skip)]
    pub logs: BTreeMap<String, String>,
    pub wall_ms: f64,
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
            observed: Vec::new(),
            events: Vec::new(),
            snapshots: Default::default(),
            logs: Default::default(),
            wall_ms: 0.0,
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

    /// What became of the checks, counted by outcome: "checks: 12 passed,
    /// 0 failed, 2 not observable, 0 with no reference".
    pub fn tally(&self) -> String {
        let count = |o: Outcome| self.checks.iter().filter(|c| c.outcome == o).count();
        format!(
            "checks: {} passed, {} failed, {} not observable, {} with no reference",
            count(Outcome::Passed),
            count(Outcome::Failed),
            count(Outcome::NotObservable),
            count(Outcome::NoReference)
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

    /// Writes the scenario's folder under `out`.
    pub fn write(&self, out: &Path) -> std::io::Result<PathBuf> {
        let dir = out.join(&self.id);
        std::fs::create_dir_all(&dir)?;
        let json = serde_json::to_string_pretty(self).map_err(std::io::Error::other)?;
        std::fs::write(dir.join("result.json"), json)?;
        std::fs::write(dir.join("ladder.txt"), self.ladder.join("\n") + "\n")?;
        std::fs::write(dir.join("ladder-diagram.txt"), pmip_captures::ladder::render(&self.ladder))?;
        std::fs::write(dir.join("events.log"), self.events.join("\n") + "\n")?;
        for (node, log) in &self.logs {
            std::fs::write(dir.join(format!("{node}.log")), log)?;
        }
        for (name, state) in &self.snapshots {
            let json = serde_json::to_string_pretty(state).map_err(std::io::Error::other)?;
            std::fs::write(dir.join(format!("state-{name}.json")), json)?;
        }
        Ok(dir)
    }
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

fn xml_escape(s: &str) -> String {
    s.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;").replace('"', "&quot;")
}

/// JUnit XML for CI systems: one test case per scenario.
pub fn junit(reports: &[ScenarioReport]) -> String {
    let failures = reports.iter().filter(|r| matches!(r.verdict, Verdict::Fail | Verdict::InitFail)).count();
    let skipped = reports.iter().filter(|r| r.verdict == Verdict::Skip).count();
    let mut x = format!(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<testsuite name=\"pmiplab\" tests=\"{}\" failures=\"{failures}\" skipped=\"{skipped}\">\n",
        reports.len()
    );
    for r in reports {
        x += &format!(
            "  <testcase classname=\"{}\" name=\"{}\" time=\"{:.3}\">\n",
            xml_escape(&r.file.display().to_string()),
            xml_escape(&format!("{} {}", r.id, r.title)),
            r.wall_ms / 1000.0
        );
        match r.verdict {
            Verdict::Pass => {}
            Verdict::Skip => {
                x += &format!("    <skipped message=\"{}\"/>\n", xml_escape(r.reason.as_deref().unwrap_or("")))
            }
            Verdict::Fail | Verdict::InitFail => {
                let msg: Vec<String> = r
                    .checks
                    .iter()
                    .filter(|c| !c.ok())
                    .map(|c| format!("line {}: {}: {}", c.line, c.what, c.detail))
                    .collect();
                let msg = r.reason.clone().unwrap_or_else(|| msg.join("; "));
                x += &format!(
                    "    <failure message=\"{}\">{}</failure>\n",
                    xml_escape(&r.verdict.to_string()),
                    xml_escape(&msg)
                );
            }
        }
        if !r.checks.is_empty() {
            x += &format!("    <system-out>{}</system-out>\n", xml_escape(&r.tally()));
        }
        x += "  </testcase>\n";
    }
    x + "</testsuite>\n"
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn junit_counts_each_scenarios_checks_by_outcome() {
        let check = |outcome| Check { line: 1, what: "w".into(), outcome, detail: String::new() };
        let r = ScenarioReport {
            id: "X".into(),
            title: "t".into(),
            file: "x.yaml".into(),
            backend: "namespaces".into(),
            verdict: Verdict::Pass,
            reason: None,
            checks: vec![check(Outcome::Passed), check(Outcome::NotObservable), check(Outcome::NotObservable)],
            ladder: Vec::new(),
            observed: Vec::new(),
            events: Vec::new(),
            snapshots: Default::default(),
            logs: Default::default(),
            wall_ms: 0.0,
        };
        let x = junit(&[r]);
        assert!(
            x.contains("<system-out>checks: 1 passed, 0 failed, 2 not observable, 0 with no reference</system-out>"),
            "{x}"
        );
    }

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
