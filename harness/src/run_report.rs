//! The report of a whole run, as CI reads it: `report.json` (every
//! scenario's result, the files that could not be read, whether the run
//! was cut short) and `junit.xml` drawn from the same data. Shards of one
//! catalogue each write their own, and [`merge`] joins them into one.

use std::path::{Path, PathBuf};
use std::time::Duration;

use quick_junit::{NonSuccessKind, Property, Report, TestCase, TestCaseStatus, TestSuite};
use serde::{Deserialize, Serialize};

use crate::report::{Outcome, ScenarioReport, Verdict};
use crate::scenario::ScenarioError;

/// A scenario file that could not be read, parsed or validated: it is an
/// error entry of the report, and the other files still run.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct InputError {
    pub file: PathBuf,
    pub line: u64,
    pub column: u64,
    pub message: String,
}

impl From<&ScenarioError> for InputError {
    fn from(e: &ScenarioError) -> Self {
        InputError { file: e.file.clone(), line: e.line, column: e.column, message: e.message.clone() }
    }
}

impl std::fmt::Display for InputError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}:{}:{}: {}", self.file.display(), self.line, self.column, self.message)
    }
}

/// One run (or a merge of shards), in input order.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RunReport {
    /// True when the run was cut short (a signal or `--timeout`): what it
    /// holds is what had finished, and `not_run` what never started.
    pub partial: bool,
    /// What cut the run short: "SIGINT", "SIGTERM" or "timeout after 30s".
    #[serde(default)]
    pub interrupted: Option<String>,
    /// When the run started, RFC 3339 UTC.
    pub started: String,
    pub hostname: String,
    pub backend: String,
    /// The shards this report covers, e.g. ["1/3"]; empty for a whole run.
    #[serde(default)]
    pub shards: Vec<String>,
    pub wall_ms: f64,
    pub scenarios: Vec<ScenarioReport>,
    #[serde(default)]
    pub input_errors: Vec<InputError>,
    /// Scenario files that were never started because the run was cut short.
    #[serde(default)]
    pub not_run: Vec<PathBuf>,
}

/// What the process exit code says, most urgent first: a run cut short,
/// a scenario file that could not be read, a failed check, a lab that
/// could not be built. README.md and `pmiplab run --help` list them.
pub mod exit {
    pub const PASS: u8 = 0;
    pub const FAIL: u8 = 1;
    pub const BAD_INPUT: u8 = 2;
    pub const INIT_FAIL: u8 = 3;
    pub const INTERRUPTED: u8 = 4;
}

impl RunReport {
    pub fn new(backend: &str) -> Self {
        RunReport {
            partial: false,
            interrupted: None,
            started: now_rfc3339(),
            hostname: hostname(),
            backend: backend.into(),
            shards: Vec::new(),
            wall_ms: 0.0,
            scenarios: Vec::new(),
            input_errors: Vec::new(),
            not_run: Vec::new(),
        }
    }

    fn count(&self, v: Verdict) -> usize {
        self.scenarios.iter().filter(|r| r.verdict == v).count()
    }

    /// "3 passed, 1 failed, 0 skipped" and the rest that is not zero.
    pub fn summary(&self) -> String {
        let mut s = format!(
            "{} passed, {} failed, {} skipped",
            self.count(Verdict::Pass),
            self.count(Verdict::Fail),
            self.count(Verdict::Skip)
        );
        let extra = [
            (self.count(Verdict::InitFail), "init-failed"),
            (self.input_errors.len(), "unreadable"),
            (self.count(Verdict::Interrupted), "interrupted"),
            (self.not_run.len(), "not run"),
        ];
        for (n, what) in extra.into_iter().filter(|(n, _)| *n > 0) {
            s += &format!(", {n} {what}");
        }
        s
    }

    /// The exit code this run ends with (see [`exit`]).
    pub fn exit_code(&self) -> u8 {
        if self.partial {
            exit::INTERRUPTED
        } else if !self.input_errors.is_empty() {
            exit::BAD_INPUT
        } else if self.count(Verdict::Fail) > 0 {
            exit::FAIL
        } else if self.count(Verdict::InitFail) > 0 {
            exit::INIT_FAIL
        } else {
            exit::PASS
        }
    }

    /// Writes `report.json` and `junit.xml` under `out`.
    pub fn write(&self, out: &Path) -> std::io::Result<()> {
        std::fs::create_dir_all(out)?;
        let json = serde_json::to_string_pretty(self).map_err(std::io::Error::other)?;
        std::fs::write(out.join("report.json"), json + "\n")?;
        std::fs::write(out.join("junit.xml"), self.junit()?)
    }

    /// Reads a `report.json`, or the one in a run's `--out` folder.
    pub fn read(path: &Path) -> Result<Self, String> {
        let file = if path.is_dir() { path.join("report.json") } else { path.to_path_buf() };
        let text = std::fs::read_to_string(&file).map_err(|e| format!("cannot read {}: {e}", file.display()))?;
        serde_json::from_str(&text).map_err(|e| format!("{} is not a pmiplab report: {e}", file.display()))
    }

    /// JUnit XML: one suite, one test case per scenario with its checks
    /// counted by outcome and then every check in its `<system-out>`; FAIL is a `<failure>`, INIT-FAIL and an
    /// interrupted scenario an `<error>`, SKIP `<skipped>`; a file that
    /// could not be read is a test case with an `<error>`.
    pub fn junit(&self) -> std::io::Result<String> {
        let name = if self.partial {
            format!("pmiplab (partial: {})", self.interrupted.as_deref().unwrap_or("cut short"))
        } else {
            "pmiplab".to_string()
        };
        let mut suite = TestSuite::new(name.clone());
        if let Some(t) = parse_rfc3339(&self.started) {
            suite.set_timestamp(t);
        }
        suite.set_time(Duration::from_secs_f64(self.wall_ms.max(0.0) / 1000.0));
        suite.extra.insert("hostname".into(), self.hostname.clone().into());
        suite.add_property(Property::new("backend", &self.backend));
        suite.add_property(Property::new("partial", self.partial.to_string()));
        if !self.shards.is_empty() {
            suite.add_property(Property::new("shards", self.shards.join(",")));
        }
        for r in &self.scenarios {
            suite.add_test_case(test_case(r));
        }
        for e in &self.input_errors {
            let mut status = TestCaseStatus::non_success(NonSuccessKind::Error);
            status.set_type("bad-input").set_message(printable(&e.message)).set_description(printable(&e.to_string()));
            let file = printable(&e.file.display().to_string());
            let mut tc = TestCase::new(file.clone(), status);
            tc.set_classname(file);
            suite.add_test_case(tc);
        }
        for f in &self.not_run {
            let mut status = TestCaseStatus::skipped();
            status.set_message("not run: the run was cut short before it started");
            let file = printable(&f.display().to_string());
            let mut tc = TestCase::new(file.clone(), status);
            tc.set_classname(file);
            suite.add_test_case(tc);
        }
        let mut report = Report::new(name);
        report.add_test_suite(suite);
        report.to_string().map(without_suites_skipped).map_err(std::io::Error::other)
    }
}

/// `xml` without the `skipped` count on its `<testsuites>` element: the
/// writer always puts one there, but the common JUnit XSD (Jenkins',
/// which CI tools validate against) has no such attribute on the root, and
/// the suite below still carries the count.
fn without_suites_skipped(xml: String) -> String {
    let Some(start) = xml.find("<testsuites") else { return xml };
    let Some(len) = xml[start..].find('>') else { return xml };
    let tag = &xml[start..start + len];
    let Some(at) = tag.find(" skipped=\"") else { return xml };
    let Some(close) = tag[at + 10..].find('"') else { return xml };
    let (from, to) = (start + at, start + at + 10 + close + 1);
    format!("{}{}", &xml[..from], &xml[to..])
}

/// `s` with every character XML 1.0 forbids (C0 controls but tab, line
/// feed and carriage return) written out as `\xNN`: the reader sees that
/// one was there, and nothing after it is lost (the writer crate on its
/// own drops them, and reads an ESC as the start of a colour code).
pub fn printable(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '\t' | '\n' | '\r' => out.push(c),
            c if (c as u32) < 0x20 || c == '\u{7f}' => out += &format!("\\x{:02x}", c as u32),
            '\u{fffe}' | '\u{ffff}' => out += &format!("\\u{{{:x}}}", c as u32),
            c => out.push(c),
        }
    }
    out
}

fn test_case(r: &ScenarioReport) -> TestCase {
    let failed: Vec<String> = r
        .checks
        .iter()
        .filter(|c| !c.ok())
        .map(|c| printable(&format!("line {}: {}: {}", c.line, c.what, c.detail)))
        .collect();
    let status = match r.verdict {
        Verdict::Pass => TestCaseStatus::success(),
        Verdict::Skip => {
            let mut s = TestCaseStatus::skipped();
            s.set_message(printable(r.reason.as_deref().unwrap_or_default()));
            s
        }
        Verdict::Fail => {
            let mut s = TestCaseStatus::non_success(NonSuccessKind::Failure);
            let msg =
                r.reason.clone().unwrap_or_else(|| format!("{} of {} checks failed", failed.len(), r.checks.len()));
            s.set_type("FAIL").set_message(msg).set_description(failed.join("\n"));
            s
        }
        Verdict::InitFail | Verdict::Interrupted => {
            let mut s = TestCaseStatus::non_success(NonSuccessKind::Error);
            s.set_type(r.verdict.to_string())
                .set_message(printable(r.reason.as_deref().unwrap_or_default()))
                .set_description(failed.join("\n"));
            s
        }
    };
    let mut tc = TestCase::new(printable(&format!("{} {}", r.id, r.title)), status);
    tc.set_classname(printable(&r.file.display().to_string()));
    tc.set_time(Duration::from_secs_f64(r.wall_ms.max(0.0) / 1000.0));
    // The counts by outcome lead the system-out: JUnit's schema has no
    // attribute for them (an `assertions` count would lump the checks
    // nothing could be observed for with those that passed).
    let tally = std::iter::once(r.tally()).filter(|_| !r.checks.is_empty());
    let out: Vec<String> = tally
        .chain(r.checks.iter().map(|c| {
            let mark = match c.outcome {
                Outcome::Passed => "passed",
                Outcome::Failed => "FAILED",
                Outcome::NoReference => "no reference",
                Outcome::NotObservable => "not observable",
            };
            printable(&format!("[{mark}] line {}: {} — {}", c.line, c.what, c.detail))
        }))
        .collect();
    if !out.is_empty() {
        tc.set_system_out(out.join("\n"));
    }
    tc
}

/// Joins reports (shards of one catalogue) into one, in the order given.
/// A scenario id that shows up in two reports is refused: shards of one
/// catalogue never share a scenario.
pub fn merge(reports: Vec<RunReport>) -> Result<RunReport, String> {
    let mut it = reports.into_iter();
    let mut all = it.next().ok_or("no report to merge")?;
    let mut ids: std::collections::BTreeSet<String> = all.scenarios.iter().map(|r| r.id.clone()).collect();
    for r in it {
        for s in &r.scenarios {
            if !ids.insert(s.id.clone()) {
                return Err(format!("scenario {} is in more than one report: are these shards of one run?", s.id));
            }
        }
        if r.backend != all.backend {
            all.backend = format!("{},{}", all.backend, r.backend);
        }
        all.partial |= r.partial;
        if all.interrupted.is_none() {
            all.interrupted = r.interrupted;
        }
        // The earliest start; RFC 3339 UTC stamps of one format sort as text.
        if r.started < all.started {
            all.started = r.started;
        }
        all.wall_ms += r.wall_ms;
        all.shards.extend(r.shards);
        all.scenarios.extend(r.scenarios);
        all.input_errors.extend(r.input_errors);
        all.not_run.extend(r.not_run);
    }
    Ok(all)
}

/// Which of `n` shards (1-based `k`) runs the file at `index` of the
/// catalogue: round robin over the files in input order, as nextest's
/// `--partition count:K/N` does, so every shard gets its share of a
/// catalogue sorted by name and the split depends on nothing but it.
pub fn in_shard(index: usize, k: usize, n: usize) -> bool {
    n > 0 && index % n == k - 1
}

/// Reads "K/N" with 1 ≤ K ≤ N.
pub fn parse_shard(s: &str) -> Result<(usize, usize), String> {
    let bad = || format!("'{s}' is not a shard: write K/N with 1 <= K <= N, e.g. 2/4");
    let (k, n) = s.split_once('/').ok_or_else(bad)?;
    let (k, n): (usize, usize) = (k.trim().parse().map_err(|_| bad())?, n.trim().parse().map_err(|_| bad())?);
    if k == 0 || k > n {
        return Err(bad());
    }
    Ok((k, n))
}

fn now_rfc3339() -> String {
    chrono::DateTime::<chrono::Utc>::from(std::time::SystemTime::now())
        .to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}

fn parse_rfc3339(s: &str) -> Option<chrono::DateTime<chrono::FixedOffset>> {
    chrono::DateTime::parse_from_rfc3339(s).ok()
}

fn hostname() -> String {
    nix::unistd::gethostname().ok().and_then(|h| h.into_string().ok()).unwrap_or_else(|| "localhost".into())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shards_split_the_catalogue_once_and_evenly() {
        for n in 1..6 {
            let mut seen = vec![0; 13];
            for k in 1..=n {
                for (i, s) in seen.iter_mut().enumerate() {
                    if in_shard(i, k, n) {
                        *s += 1;
                    }
                }
            }
            assert!(seen.iter().all(|&c| c == 1), "n={n}: {seen:?}");
        }
        assert_eq!(parse_shard("2/3"), Ok((2, 3)));
        for bad in ["0/3", "4/3", "x", "1/0", "1-2"] {
            assert!(parse_shard(bad).is_err(), "{bad}");
        }
    }
}
