//! The reports CI reads: JUnit that a standard consumer (Python's
//! junitparser, over the strict XML 1.0 parser expat) accepts even with
//! control characters in a title, result.json and report.json valid
//! against their JSON Schemas, an unreadable file as an error entry while
//! the others run, shards that split a catalogue and merge back whole,
//! and `validate` listing every problem of a file.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use pmiplab::report::{Check, Outcome, ScenarioReport, Verdict};
use pmiplab::run_report::RunReport;

fn pmiplab() -> Command {
    Command::new(env!("CARGO_BIN_EXE_pmiplab"))
}

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// A scratch folder, removed when dropped (also when a test fails).
struct Scratch(PathBuf);

impl Scratch {
    fn new(name: &str) -> Scratch {
        let d = std::env::temp_dir().join(format!("pmiplab-reports-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(&d).unwrap();
        Scratch(d)
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn text(o: &Output) -> String {
    format!("{}{}", String::from_utf8_lossy(&o.stdout), String::from_utf8_lossy(&o.stderr))
}

/// The common JUnit XSD (Jenkins' junit-10.xsd, as pytest ships it for
/// its own tests): ci/test.sh fetches it from PyPI into
/// `target/ci-cache`, or `PMIPLAB_JUNIT_XSD` names it.
fn junit_xsd() -> PathBuf {
    let xsd = std::env::var_os("PMIPLAB_JUNIT_XSD")
        .map(PathBuf::from)
        .unwrap_or_else(|| root().join("target/ci-cache/junit-10.xsd"));
    assert!(xsd.is_file(), "the JUnit XSD is not at {} (ci/test.sh fetches it)", xsd.display());
    xsd
}

/// What a standard JUnit consumer reads from `xml`: per test case its
/// name and result kinds ("failure", "error", "skipped"), or the parse
/// error. The file must also validate against the common JUnit XSD.
/// Python with junitparser and xmlschema is installed by ci/test.sh.
fn consume_junit(xml: &Path) -> Vec<(String, Vec<String>)> {
    let script = r#"
import sys, json, xml.parsers.expat
data = open(sys.argv[1], 'rb').read()
p = xml.parsers.expat.ParserCreate()
p.Parse(data, True)   # raises on anything that is not well-formed XML 1.0
import xmlschema
errors = [f'{e.path}: {e.reason}' for e in xmlschema.XMLSchema(sys.argv[2]).iter_errors(sys.argv[1])]
assert not errors, 'not valid against the JUnit XSD: ' + '; '.join(errors)
from junitparser import JUnitXml, TestSuite
x = JUnitXml.fromfile(sys.argv[1])
suites = [x] if isinstance(x, TestSuite) else list(x)
out = []
for s in suites:
    assert s.hostname, 'no hostname'
    assert s.timestamp, 'no timestamp'
    assert s.time is not None, 'no time'
    for c in s:
        out.append([c.name, [type(r).__name__.lower() for r in c.result]])
print(json.dumps(out))
"#;
    let o = Command::new("python3")
        .arg("-c")
        .arg(script)
        .arg(xml)
        .arg(junit_xsd())
        .output()
        .unwrap_or_else(|e| panic!("python3 is needed to read JUnit as CI does (ci/test.sh installs it): {e}"));
    assert!(
        o.status.success(),
        "the JUnit consumer refused {} (ci/test.sh installs junitparser):\n{}",
        xml.display(),
        text(&o)
    );
    serde_json::from_slice(&o.stdout).unwrap()
}

fn scenario_report(id: &str, title: &str, verdict: Verdict) -> ScenarioReport {
    let s = pmiplab::scenario::parse(
        Path::new("x.yaml"),
        &format!("id: {id}\ntitle: t\nnodes:\n  lma: {{ role: lma }}\n  mag1: {{ role: mag }}\nsteps: []\n"),
    )
    .unwrap();
    let mut r = ScenarioReport::new(Path::new("topologies/x.yaml"), &s, "virtual");
    r.title = title.to_string();
    r.verdict = verdict;
    r.checks.push(Check::new(7, "message PBA with status=0", verdict != Verdict::Fail, "expected 1, saw 0 <&>"));
    if verdict == Verdict::InitFail {
        r.reason = Some("the lab could not be built: no veth".into());
    }
    r
}

#[test]
fn junit_has_each_verdict_as_ci_reads_it_and_control_characters_stay_out() {
    let dir = Scratch::new("junit");
    let mut run = RunReport::new("virtual");
    // Every C0 control character but tab, newline and carriage return is
    // forbidden in XML 1.0, even escaped.
    let nasty: String = (0u8..0x20).map(char::from).collect::<String>() + " \u{7f} <b>&\"'";
    run.scenarios.push(scenario_report("A-PASS", &nasty, Verdict::Pass));
    run.scenarios.push(scenario_report("B-FAIL", "fails", Verdict::Fail));
    run.scenarios.push(scenario_report("C-INIT", "no lab", Verdict::InitFail));
    run.scenarios.push(scenario_report("D-SKIP", "skipped", Verdict::Skip));
    run.write(&dir.0).unwrap();
    let got = consume_junit(&dir.0.join("junit.xml"));
    let kinds: Vec<(&str, Vec<&str>)> =
        got.iter().map(|(n, k)| (n.split(' ').next().unwrap_or(""), k.iter().map(String::as_str).collect())).collect();
    assert_eq!(
        kinds,
        [("A-PASS", vec![]), ("B-FAIL", vec!["failure"]), ("C-INIT", vec!["error"]), ("D-SKIP", vec!["skipped"])]
    );
    // Each forbidden character is written out, and nothing after it lost.
    assert!(got[0].0.contains("\\x00\\x01") && got[0].0.contains("\\x1b\\x1c"), "{:?}", got[0].0);
    assert!(got[0].0.ends_with("\\x7f <b>&\"'"), "{:?}", got[0].0);
    let xml = std::fs::read_to_string(dir.0.join("junit.xml")).unwrap();
    assert!(xml.contains("errors=\"1\"") && xml.contains("failures=\"1\"") && xml.contains("skipped=\"1\""), "{xml}");
    assert!(xml.contains(
        "<system-out>checks: 0 passed, 1 failed, 0 not observable, 0 with no reference\n[FAILED] line 7: message PBA with status=0 — expected 1, saw 0 &lt;&amp;&gt;"
    ));
    // No `assertions` attribute: the JUnit schema CI validates against has
    // none on a test case, and one count would lump outcomes together.
    assert!(!xml.contains("assertions="), "{xml}");
}

/// A scenario whose tables belong to an implementation under test: its
/// checks are counted by outcome in result.json (and report.json) and in
/// the JUnit test case, the not-observable ones apart from the passes.
#[test]
fn each_scenarios_checks_are_counted_by_outcome_in_json_and_junit() {
    let dir = Scratch::new("counts");
    let mut run = RunReport::new("netns");
    let mut r = scenario_report("A-IUT", "iut", Verdict::Pass);
    r.checks.push(Check { line: 8, what: "state of mag1".into(), outcome: Outcome::NotObservable, detail: "".into() });
    r.checks.push(Check { line: 9, what: "state of mag1".into(), outcome: Outcome::NotObservable, detail: "".into() });
    r.checks.push(Check::no_reference(10, "snapshot after", "no pin"));
    run.scenarios.push(r);
    run.write(&dir.0).unwrap();
    let report: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.0.join("report.json")).unwrap()).unwrap();
    assert_eq!(
        report["scenarios"][0]["counts"],
        serde_json::json!({"passed": 1, "failed": 0, "not_observable": 2, "no_reference": 1})
    );
    assert_valid(&schema("report.schema.json"), &dir.0.join("report.json"));
    let errors: Vec<String> =
        schema("result.schema.json").iter_errors(&report["scenarios"][0]).map(|e| e.to_string()).collect();
    assert!(errors.is_empty(), "{}", errors.join("; "));
    // Read back (merge-reports does), the counts are the checks' again.
    let back = RunReport::read(&dir.0).unwrap();
    assert_eq!(back.scenarios[0].counts().not_observable, 2);
    let xml = std::fs::read_to_string(dir.0.join("junit.xml")).unwrap();
    assert!(xml.contains("<system-out>checks: 1 passed, 0 failed, 2 not observable, 1 with no reference\n"), "{xml}");
    assert!(!xml.contains("assertions="), "{xml}");
    consume_junit(&dir.0.join("junit.xml"));
}

#[test]
fn a_title_with_control_characters_gives_valid_junit_from_a_real_run() {
    let dir = Scratch::new("ctrl");
    let yaml = std::fs::read_to_string(root().join("topologies/pm-attach.yaml")).unwrap().replacen(
        "title: ",
        "title: \"bell \\a escape \\e[31m nul \\0 \" # ",
        1,
    );
    let f = dir.0.join("ctrl.yaml");
    std::fs::write(&f, yaml).unwrap();
    let out = dir.0.join("out");
    let o = pmiplab().arg("run").arg(&f).arg("--out").arg(&out).output().unwrap();
    assert!(o.status.success(), "{}", text(&o));
    let result: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("PM-ATTACH-01/result.json")).unwrap()).unwrap();
    assert!(result["title"].as_str().unwrap().contains('\u{7}'), "the title really has a control character");
    let got = consume_junit(&out.join("junit.xml"));
    assert_eq!(got.len(), 1);
    assert!(got[0].0.starts_with("PM-ATTACH-01 bell"), "{got:?}");
}

fn schema(name: &str) -> jsonschema::Validator {
    let text = std::fs::read_to_string(root().join("docs").join(name)).unwrap();
    jsonschema::validator_for(&serde_json::from_str(&text).unwrap()).unwrap()
}

fn assert_valid(v: &jsonschema::Validator, file: &Path) {
    let doc: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(file).unwrap()).unwrap();
    let errors: Vec<String> = v.iter_errors(&doc).map(|e| format!("{e} at {}", e.instance_path())).collect();
    assert!(errors.is_empty(), "{}: {}", file.display(), errors.join("; "));
}

#[test]
fn unreadable_files_are_error_entries_and_the_rest_runs_and_every_file_fits_its_schema() {
    let dir = Scratch::new("schema");
    let broken = dir.0.join("broken.yaml");
    std::fs::write(
        &broken,
        "id: B\ntitle: broken\nnodes:\n  lma: { role: lma }\n  mag1: { role: mag }\nsteps:\n  - wait: later\n",
    )
    .unwrap();
    let out = dir.0.join("out");
    let o = pmiplab()
        .arg("run")
        .arg(&broken)
        .arg(root().join("topologies/fm-up-fmi.yaml"))
        .arg(root().join("topologies/fm-fma-lost.yaml"))
        .arg("--out")
        .arg(&out)
        .output()
        .unwrap();
    let said = text(&o);
    assert_eq!(o.status.code(), Some(2), "bad input has its own exit code: {said}");
    assert!(said.contains("broken.yaml:7:11: 'later' is not a duration"), "{said}");
    let report = RunReport::read(&out).unwrap();
    assert_eq!(report.input_errors.len(), 1);
    assert_eq!((report.input_errors[0].line, report.input_errors[0].column), (7, 11));
    let ran: Vec<(&str, Verdict)> = report.scenarios.iter().map(|r| (r.id.as_str(), r.verdict)).collect();
    assert_eq!(ran, [("FM-UP-FMI-01", Verdict::Pass), ("FM-FMA-LOST", Verdict::Pass)]);
    let got = consume_junit(&out.join("junit.xml"));
    assert!(got.iter().any(|(n, k)| n.ends_with("broken.yaml") && k == &["error"]), "{got:?}");

    let result = schema("result.schema.json");
    for id in ["FM-UP-FMI-01", "FM-FMA-LOST"] {
        let file = out.join(id).join("result.json");
        assert_valid(&result, &file);
        let r: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&file).unwrap()).unwrap();
        let listed: Vec<&str> = r["artifacts"].as_array().unwrap().iter().filter_map(|a| a.as_str()).collect();
        assert!(listed.contains(&"ladder.txt") && listed.contains(&"events.log"), "{listed:?}");
        for a in listed {
            assert!(out.join(id).join(a).is_file(), "{id} lists {a}, which is not there");
        }
    }
    assert_valid(&schema("report.schema.json"), &out.join("report.json"));
    let report: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("report.json")).unwrap()).unwrap();
    for entry in report["scenarios"].as_array().unwrap() {
        let errors: Vec<String> = result.iter_errors(entry).map(|e| e.to_string()).collect();
        assert!(errors.is_empty(), "a report.json entry is no result.json: {}", errors.join("; "));
    }
    // The schema is no rubber stamp: a verdict it does not know is refused.
    let mut doc: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("FM-UP-FMI-01/result.json")).unwrap()).unwrap();
    doc["verdict"] = "MAYBE".into();
    assert!(!result.is_valid(&doc));
}

fn ids(out: &Path) -> Vec<String> {
    RunReport::read(out).unwrap().scenarios.into_iter().map(|r| r.id).collect()
}

#[test]
fn shards_split_the_catalogue_and_merge_back_into_the_whole_run() {
    let dir = Scratch::new("shards");
    let pattern = root().join("topologies/*.yaml").to_string_lossy().into_owned();
    let run = |args: &[&str], out: &str| {
        let o = pmiplab().arg("run").arg(&pattern).args(args).arg("--out").arg(dir.0.join(out)).output().unwrap();
        assert!(o.status.success(), "{}", text(&o));
    };
    run(&[], "whole");
    run(&["--shard", "1/3"], "s1");
    run(&["--shard", "2/3"], "s2");
    run(&["--shard", "3/3"], "s3");
    let whole = ids(&dir.0.join("whole"));
    let shards: Vec<Vec<String>> = ["s1", "s2", "s3"].iter().map(|s| ids(&dir.0.join(s))).collect();
    assert!(shards.iter().all(|s| !s.is_empty()), "{shards:?}");
    let mut union: Vec<String> = shards.concat();
    assert_eq!(union.len(), whole.len(), "every scenario in exactly one shard: {shards:?}");
    union.sort();
    let mut sorted = whole.clone();
    sorted.sort();
    assert_eq!(union, sorted);
    // The same shard twice is the same split.
    run(&["--shard", "2/3"], "s2again");
    assert_eq!(ids(&dir.0.join("s2again")), shards[1]);

    let o = pmiplab()
        .arg("merge-reports")
        .args(["s1", "s2", "s3"].map(|s| dir.0.join(s)))
        .arg("--out")
        .arg(dir.0.join("merged"))
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", text(&o));
    let merged = RunReport::read(&dir.0.join("merged")).unwrap();
    assert_eq!(merged.shards, ["1/3", "2/3", "3/3"]);
    assert_eq!(merged.scenarios.len(), whole.len());
    assert_eq!(consume_junit(&dir.0.join("merged/junit.xml")).len(), whole.len());
    // Merging a shard with itself is refused: a scenario would count twice.
    let o = pmiplab()
        .arg("merge-reports")
        .args([dir.0.join("s1"), dir.0.join("s1")])
        .arg("--out")
        .arg(dir.0.join("twice"))
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
}

#[test]
fn validate_prints_every_problem_of_a_file_each_at_a_real_place() {
    let dir = Scratch::new("validate");
    let yaml = std::fs::read_to_string(root().join("topologies/pm-attach.yaml"))
        .unwrap()
        .replace("with: [status=0,", "with: [stauts=0,")
        .replace("references:", "requires: [draft-fmj]\nreferences:")
        .replace("dport: 5001", "dport: 5001, proto: sctp");
    let f = dir.0.join("three.yaml");
    std::fs::write(&f, &yaml).unwrap();
    let o = pmiplab().arg("validate").arg(&f).output().unwrap();
    let said = String::from_utf8_lossy(&o.stderr).into_owned();
    assert_eq!(o.status.code(), Some(2), "{said}");
    let lines: Vec<&str> = said.lines().collect();
    assert_eq!(lines.len(), 3, "{said}");
    let at = |needle: &str| {
        let (i, l) = yaml.lines().enumerate().find(|(_, l)| l.contains(needle)).unwrap();
        format!("three.yaml:{}:{}: ", i + 1, l.find(needle).unwrap() + 1)
    };
    assert!(lines[0].contains(&at("draft-fmj")) && lines[0].contains("not a feature"), "{said}");
    assert!(lines[1].contains(&at("sctp")) && lines[1].contains("proto 'sctp'"), "{said}");
    assert!(lines[2].contains(&at("stauts=0")) && lines[2].contains("a PBA has no field 'stauts'"), "{said}");
    // The run refuses the file too, before any lab is built.
    let o = pmiplab().arg("run").arg(&f).arg("--out").arg(dir.0.join("out")).output().unwrap();
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    assert!(RunReport::read(&dir.0.join("out")).unwrap().scenarios.is_empty());
}

#[test]
fn with_values_and_implied_nodes_are_checked_where_they_are_written() {
    let base = std::fs::read_to_string(root().join("topologies/pm-attach.yaml")).unwrap();
    let check = |yaml: &str| pmiplab::validate::check_text(Path::new("t.yaml"), yaml).err().unwrap_or_default();
    let e = check(&base.replace("with: [status=0,", "with: [status=ok,"));
    assert_eq!(e.len(), 1, "{e:?}");
    assert!(e[0].message.contains("'ok' is not a PBA status"), "{e:?}");
    assert!(check(&base).is_empty());
    // A flow's CN defaults to the node named cn: with none, the error is
    // at the flow that implied it, never at 0:0.
    let no_cn = base.replace("  cn: { role: cn }\n", "");
    let e = check(&no_cn);
    assert!(!e.is_empty() && e.iter().all(|e| e.line > 0 && e.column > 0), "{e:?}");
    let flow_line = no_cn.lines().position(|l| l.contains("X: { mn: mn1")).unwrap() as u64 + 1;
    assert!(e.iter().any(|e| e.line == flow_line && e.message.contains("no node named 'cn'")), "{e:?}");
}

#[test]
fn durations_read_as_the_format_writes_them() {
    use pmip_proto::Span;
    use pmiplab::scenario::parse_duration;
    assert_eq!(parse_duration("50ms"), Some(Span::from_millis(50)));
    assert_eq!(parse_duration(" 2s "), Some(Span::from_secs(2)));
    assert_eq!(parse_duration("5m"), Some(Span::from_secs(300)));
    assert_eq!(parse_duration("5min"), Some(Span::from_secs(300)));
    assert_eq!(parse_duration("1m 30s"), Some(Span::from_secs(90)));
    for bad in ["soon", "5", "", "-1s", "s"] {
        assert_eq!(parse_duration(bad), None, "{bad}");
    }
}
