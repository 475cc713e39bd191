//! State-table snapshots stored beside the scenarios as insta `.snap`
//! files (`<dir>/snapshots/<file stem>__<name>.snap`), so that
//! `cargo insta review` works on them, and compared by meaning here.

use std::path::{Path, PathBuf};

use crate::report::Check;

pub fn path_for(scenario: &Path, name: &str) -> PathBuf {
    let dir = scenario.parent().unwrap_or(Path::new("."));
    let stem = scenario.file_stem().and_then(|s| s.to_str()).unwrap_or("scenario");
    dir.join("snapshots").join(format!("{stem}__{name}.snap"))
}

/// The snapshot's content: what follows insta's header.
fn stored(path: &Path) -> Option<Result<serde_json::Value, String>> {
    let text = std::fs::read_to_string(path).ok()?;
    let body = text.strip_prefix("---\n").and_then(|t| t.split_once("\n---\n")).map(|(_, b)| b).unwrap_or(&text);
    Some(
        serde_saphyr::from_str::<serde_json::Value>(body)
            .map_err(|e| format!("{}: {}", path.display(), e.to_string().lines().next().unwrap_or(""))),
    )
}

fn lines(v: &serde_json::Value) -> Vec<String> {
    serde_json::to_string_pretty(v).unwrap_or_default().lines().map(str::to_string).collect()
}

/// A line diff (longest common subsequence), `-` stored, `+` this run.
pub fn diff(stored: &serde_json::Value, now: &serde_json::Value) -> String {
    diff_lines(&lines(stored), &lines(now))
}

/// [`diff`] of two lists of lines: `similar`'s diff, each change shown
/// with three lines of context as in a unified diff, hunks apart by `...`.
pub fn diff_lines(a: &[String], b: &[String]) -> String {
    let a: Vec<&str> = a.iter().map(String::as_str).collect();
    let b: Vec<&str> = b.iter().map(String::as_str).collect();
    let d = similar::TextDiff::from_slices(&a, &b);
    let mut out = Vec::new();
    for (k, group) in d.grouped_ops(3).iter().enumerate() {
        if k > 0 {
            out.push("  ...".to_string());
        }
        for op in group {
            for c in d.iter_changes(op) {
                let mark = match c.tag() {
                    similar::ChangeTag::Equal => ' ',
                    similar::ChangeTag::Delete => '-',
                    similar::ChangeTag::Insert => '+',
                };
                out.push(format!("{mark} {}", c.value()));
            }
        }
    }
    out.join("\n")
}

/// The part of the state tables both backends must agree on: every
/// table of the LMA, the MAGs and the MNs, but not the MNs' packet
/// counters, which count single packets in virtual time and probes (some
/// of which an expectation may allow to be lost) in namespaces.
pub fn across_backends(v: &serde_json::Value) -> serde_json::Value {
    let mut v = serde_json::json!({
        "lma": v.get("lma").cloned().unwrap_or_default(),
        "mags": v.get("mags").cloned().unwrap_or_default(),
        "mns": v.get("mns").cloned().unwrap_or_default(),
    });
    if let Some(mns) = v["mns"].as_object_mut() {
        for mn in mns.values_mut() {
            for flow in mn.get_mut("flows").and_then(|f| f.as_array_mut()).into_iter().flatten() {
                if let Some(row) = flow.as_object_mut() {
                    row.remove("packets");
                }
            }
        }
    }
    v
}

/// What a run does with the snapshots stored beside a scenario (its
/// pins): compare with them, and write what this run saw — as a pending
/// `.snap.new` for review when it differs, or as the pin itself when
/// recording.
#[derive(Debug, Clone, Copy, Default)]
pub struct Pins {
    /// Write this run's tables and ladder as the stored pins.
    pub record: bool,
    /// Write a `.snap.new` beside a pin this run differs from, for
    /// `cargo insta review`.
    pub pending: bool,
}

/// A pin's file as insta writes it: a header, then the value as YAML.
fn pin_text(s: &crate::scenario::Scenario, expression: &str, value: &serde_json::Value) -> String {
    let body = insta::_macro_support::serialize_value(value, insta::_macro_support::SerializationFormat::Yaml);
    let info = serde_json::to_string(&format!("{} — {}", s.id, s.title)).unwrap_or_default();
    let end = if body.ends_with('\n') { "" } else { "\n" };
    format!("---\nsource: harness/tests/scenarios.rs\nexpression: {expression}\ninfo: {info}\n---\n{body}{end}")
}

/// The pending file beside a pin.
pub fn pending_path(pin: &Path) -> PathBuf {
    let mut p = pin.as_os_str().to_owned();
    p.push(".new");
    PathBuf::from(p)
}

impl Pins {
    fn write(&self, path: &Path, text: &str, pending: bool) -> Result<PathBuf, String> {
        let target = if pending { pending_path(path) } else { path.to_path_buf() };
        if let Some(dir) = target.parent() {
            std::fs::create_dir_all(dir).map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
        }
        std::fs::write(&target, text).map_err(|e| format!("cannot write {}: {e}", target.display()))?;
        if !pending {
            let _ = std::fs::remove_file(pending_path(path));
        }
        Ok(target)
    }

    /// Compares `now` with the pin at `path`, which holds what `expression`
    /// named.
    fn compare(
        &self,
        s: &crate::scenario::Scenario,
        path: &Path,
        expression: &str,
        what: String,
        now: &serde_json::Value,
        line: u64,
    ) -> Check {
        let text = pin_text(s, expression, now);
        let stored = stored(path);
        if self.record {
            if let Some(Ok(old)) = &stored {
                if old == now {
                    return Check::new(line, what, true, "identical; kept");
                }
            }
            let detail = match (&stored, self.write(path, &text, false)) {
                (_, Err(e)) => return Check::failed(line, what, e),
                (Some(Ok(old)), Ok(p)) => {
                    format!("recorded {} (it was, - before, + now:\n{})", p.display(), diff(old, now))
                }
                (_, Ok(p)) => format!("recorded {}: review it; later runs compare with it", p.display()),
            };
            return Check::no_reference(line, what, detail);
        }
        match stored {
            None => Check::no_reference(
                line,
                what,
                format!("nothing stored at {}: `pmiplab run --record` records it for review", path.display()),
            ),
            Some(Err(e)) => Check::failed(line, what, format!("the stored pin does not parse: {e}")),
            Some(Ok(old)) if old == *now => Check::new(line, what, true, "identical"),
            Some(Ok(old)) => {
                let pending = match self.pending.then(|| self.write(path, &text, true)) {
                    Some(Ok(p)) => format!("\nthis run's is pending review in {}", p.display()),
                    Some(Err(e)) => format!("\n{e}"),
                    None => String::new(),
                };
                Check::failed(line, what, format!("differs (- stored, + this run):\n{}{pending}", diff(&old, now)))
            }
        }
    }

    /// Compares a snapshot step's tables with the pin `<stem>__<name>`.
    pub fn compare_state(
        &self,
        file: &Path,
        s: &crate::scenario::Scenario,
        name: &str,
        now: &serde_json::Value,
        line: u64,
    ) -> Check {
        let path = path_for(file, name);
        let what = format!("snapshot {name} matches {}", path.display());
        self.compare(s, &path, "state", what, now, line)
    }

    /// Compares the run's ladder, times included, with the pin `<stem>__ladder`.
    pub fn compare_ladder(&self, file: &Path, s: &crate::scenario::Scenario, ladder: &[String], line: u64) -> Check {
        let path = path_for(file, "ladder");
        let what = format!("message sequence matches {}", path.display());
        self.compare(s, &path, "r.ladder", what, &serde_json::json!(ladder), line)
    }
}

/// Compares a run's tables with those the model run alongside recorded at
/// the same step, in the form [`across_backends`] gives both.
pub fn compare_with_model(name: &str, model: Option<&serde_json::Value>, now: &serde_json::Value, line: u64) -> Check {
    let what = format!("snapshot {name} (packet counters left out) matches the model run alongside");
    match model {
        None => Check::failed(line, what, format!("the model run recorded no snapshot {name}")),
        Some(m) if across_backends(m) == across_backends(now) => Check::new(line, what, true, "identical"),
        Some(m) => Check::failed(
            line,
            what,
            format!("differs (- model, + this run):\n{}", diff(&across_backends(m), &across_backends(now))),
        ),
    }
}

/// Compares the messages that crossed the links in a run with those that
/// crossed them in the model run alongside: the same messages between the
/// same nodes in the same order, times left out.
pub fn compare_wire_with_model(model: &[crate::engine::Observed], now: &[crate::engine::Observed], line: u64) -> Check {
    let wire = |v: &[crate::engine::Observed]| -> Vec<String> {
        v.iter().filter(|m| m.on_wire).map(|m| format!("{} -> {} {}", m.from, m.to, m.summary)).collect()
    };
    let (want, got) = (wire(model), wire(now));
    let what = "the messages on the wire match the model run alongside".to_string();
    if want == got {
        Check::new(line, what, true, format!("{} messages, in order", got.len()))
    } else {
        Check::failed(line, what, format!("the wire differs (- model, + this run):\n{}", diff_lines(&want, &got)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn across_backends_leaves_out_only_the_mn_packet_counters() {
        let flow =
            |iface: &str, packets: u64| serde_json::json!({"flow": "f", "downlink_on": iface, "packets": packets});
        let state = |iface: &str, packets: u64| serde_json::json!({"lma": {"binding_cache": [1]}, "mags": {"mag1": {}}, "mns": {"mn1": {"flows": [flow(iface, packets)]}}});
        assert_eq!(across_backends(&state("if1", 10)), across_backends(&state("if1", 9)));
        assert_ne!(
            across_backends(&state("if1", 10)),
            across_backends(&state("if2", 10)),
            "the arrival interface counts"
        );
        let other_lma = serde_json::json!({"lma": {"binding_cache": []}, "mags": {"mag1": {}}, "mns": {"mn1": {"flows": [flow("if1", 10)]}}});
        assert_ne!(across_backends(&state("if1", 10)), across_backends(&other_lma));
        assert_eq!(
            across_backends(&state("if1", 1))["mns"]["mn1"]["flows"][0],
            serde_json::json!({"flow": "f", "downlink_on": "if1"})
        );
    }

    fn seen(from: &str, summary: &str, on_wire: bool) -> crate::engine::Observed {
        crate::engine::Observed {
            at_ms: 0,
            from: from.into(),
            to: "lma".into(),
            summary: summary.into(),
            on_wire,
            delivered: on_wire,
        }
    }

    #[test]
    fn a_diff_shows_each_change_with_three_lines_of_context() {
        let a: Vec<String> = (0..20).map(|i| format!("line {i}")).collect();
        let mut b = a.clone();
        b[2] = "changed 2".into();
        b[17] = "changed 17".into();
        let d = diff_lines(&a, &b);
        let want = "  line 0\n  line 1\n- line 2\n+ changed 2\n  line 3\n  line 4\n  line 5\n  ...\n  line 14\n  line 15\n  line 16\n- line 17\n+ changed 17\n  line 18\n  line 19";
        assert_eq!(d, want);
        assert_eq!(diff_lines(&a, &a), "");
    }

    #[test]
    fn the_wire_is_compared_with_the_model_message_for_message() {
        let model =
            [seen("mag1", "PBU seq=1", true), seen("mag1", "PBU seq=2", false), seen("mag1", "PBU seq=3", true)];
        let same =
            compare_wire_with_model(&model, &[seen("mag1", "PBU seq=1", true), seen("mag1", "PBU seq=3", true)], 1);
        assert!(same.passed(), "{}", same.detail);
        let extra = compare_wire_with_model(
            &model,
            &[seen("mag1", "PBU seq=1", true), seen("mag1", "PBU seq=2", true), seen("mag1", "PBU seq=3", true)],
            1,
        );
        assert!(!extra.ok());
        assert_eq!(extra.detail, "the wire differs (- model, + this run):\n  mag1 -> lma PBU seq=1\n+ mag1 -> lma PBU seq=2\n  mag1 -> lma PBU seq=3");
        let swapped =
            compare_wire_with_model(&model, &[seen("mag1", "PBU seq=3", true), seen("mag1", "PBU seq=1", true)], 1);
        assert!(!swapped.ok());
    }

    #[test]
    fn a_pin_that_is_missing_is_no_reference_and_one_that_differs_is_written_pending() {
        let dir = std::env::temp_dir().join(format!("pmiplab-pins-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("x.yaml");
        let s = crate::scenario::parse(
            &file,
            "id: X-1\ntitle: t\nnodes: { lma: { role: lma }, mag1: { role: mag } }\nsteps: []\n",
        )
        .unwrap();
        let v = serde_json::json!({"lma": {"binding_cache": [1]}});
        let pins = Pins { record: false, pending: true };
        let none = pins.compare_state(&file, &s, "a", &v, 3);
        assert_eq!(none.outcome, crate::report::Outcome::NoReference, "{}", none.detail);
        let rec = Pins { record: true, pending: false }.compare_state(&file, &s, "a", &v, 3);
        assert_eq!(rec.outcome, crate::report::Outcome::NoReference, "{}", rec.detail);
        assert!(pins.compare_state(&file, &s, "a", &v, 3).passed());
        let changed = serde_json::json!({"lma": {"binding_cache": [2]}});
        let bad = pins.compare_state(&file, &s, "a", &changed, 3);
        assert!(!bad.ok());
        let pending = pending_path(&path_for(&file, "a"));
        assert!(pending.exists(), "{}", bad.detail);
        assert_eq!(stored(&pending).unwrap().unwrap(), changed);
        std::fs::remove_dir_all(&dir).ok();
    }
}
