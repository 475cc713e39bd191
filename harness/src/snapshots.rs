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

/// [`diff`] of two lists of lines.
pub fn diff_lines(a: &[String], b: &[String]) -> String {
    let (n, m) = (a.len(), b.len());
    let mut lcs = vec![vec![0u32; m + 1]; n + 1];
    for i in (0..n).rev() {
        for j in (0..m).rev() {
            lcs[i][j] = if a[i] == b[j] { lcs[i + 1][j + 1] + 1 } else { lcs[i + 1][j].max(lcs[i][j + 1]) };
        }
    }
    // Walk the table into a script of kept, removed and added lines.
    let (mut i, mut j, mut script) = (0, 0, Vec::new());
    while i < n || j < m {
        if i < n && j < m && a[i] == b[j] {
            script.push(('=', a[i].as_str()));
            i += 1;
            j += 1;
        } else if i < n && (j == m || lcs[i + 1][j] >= lcs[i][j + 1]) {
            // On a tie the stored line goes first, as in a unified diff.
            script.push(('-', a[i].as_str()));
            i += 1;
        } else {
            script.push(('+', b[j].as_str()));
            j += 1;
        }
    }
    // Show each change with three lines of context, like a unified diff.
    const CONTEXT: usize = 3;
    let changed: Vec<usize> = script.iter().enumerate().filter(|(_, (op, _))| *op != '=').map(|(k, _)| k).collect();
    let near = |k: usize| changed.iter().any(|c| c.abs_diff(k) <= CONTEXT);
    let mut out = Vec::new();
    let mut gap = false;
    for (k, (op, line)) in script.iter().enumerate() {
        if near(k) {
            if gap && !out.is_empty() {
                out.push("  ...".to_string());
            }
            gap = false;
            out.push(format!("{} {line}", if *op == '=' { ' ' } else { *op }));
        } else {
            gap = true;
        }
    }
    out.join("\n")
}

/// Compares this run's state with the stored snapshot, if there is one.
pub fn compare(scenario: &Path, name: &str, now: &serde_json::Value, line: u64) -> Check {
    let path = path_for(scenario, name);
    let what = format!("snapshot {name} matches {}", path.display());
    match stored(&path) {
        None => Check {
            line,
            what,
            ok: true,
            detail: "no stored snapshot yet: this run's tables are in the output folder; `cargo test -p pmiplab` records them for review".into(),
        },
        Some(Err(e)) => Check { line, what, ok: false, detail: format!("the stored snapshot does not parse: {e}") },
        Some(Ok(stored)) if stored == *now => Check { line, what, ok: true, detail: "identical".into() },
        Some(Ok(stored)) => Check { line, what, ok: false, detail: format!("state tables differ:\n{}", diff(&stored, now)) },
    }
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

/// Compares a namespace run's state with the snapshot the virtual run
/// stored, in the form [`across_backends`] gives both.
pub fn compare_across_backends(scenario: &Path, name: &str, now: &serde_json::Value, line: u64) -> Check {
    let path = path_for(scenario, name);
    let what = format!("snapshot {name} (packet counters left out) matches {}", path.display());
    match stored(&path) {
        None => Check { line, what, ok: true, detail: "no stored snapshot yet".into() },
        Some(Err(e)) => Check { line, what, ok: false, detail: format!("the stored snapshot does not parse: {e}") },
        Some(Ok(s)) if across_backends(&s) == across_backends(now) => {
            Check { line, what, ok: true, detail: "identical".into() }
        }
        Some(Ok(s)) => Check {
            line,
            what,
            ok: false,
            detail: format!("state tables differ:\n{}", diff(&across_backends(&s), &across_backends(now))),
        },
    }
}

/// One message of a stored ladder: its text without the virtual time, and
/// whether the virtual run dropped it.
fn ladder_entry(line: &str) -> (String, bool) {
    let (_, message, dropped) = pmip_captures::ladder::split_line(line);
    (message.to_string(), dropped)
}

/// Whether `captured` is the ladder's messages in order, where a message
/// the virtual run dropped may be there or not: a fault that drops at the
/// receiver does so after the capture saw it, one at the sender before.
fn follows_ladder(ladder: &[(String, bool)], captured: &[String]) -> bool {
    let (n, m) = (ladder.len(), captured.len());
    // fits[i][j]: ladder[i..] accounts for exactly captured[j..].
    let mut fits = vec![vec![false; m + 1]; n + 1];
    fits[n][m] = true;
    for i in (0..n).rev() {
        for j in (0..=m).rev() {
            let (text, dropped) = &ladder[i];
            let taken = j < m && captured[j] == *text && fits[i + 1][j + 1];
            fits[i][j] = taken || (*dropped && fits[i + 1][j]);
        }
    }
    fits[0][0]
}

/// Compares the signalling captured on the wire in namespaces with the
/// ladder the virtual run of the same scenario stored (`<stem>__ladder`),
/// leaving out the virtual times.
pub fn compare_sequence(scenario: &Path, captured: &[String], line: u64) -> Check {
    let path = path_for(scenario, "ladder");
    let what = format!("captured message sequence matches {}", path.display());
    let ladder: Vec<(String, bool)> = match stored(&path) {
        None => return Check { line, what, ok: true, detail: "no stored ladder yet".into() },
        Some(Err(e)) => {
            return Check { line, what, ok: false, detail: format!("the stored ladder does not parse: {e}") }
        }
        Some(Ok(v)) => match v.as_array() {
            Some(a) => a.iter().map(|l| ladder_entry(l.as_str().unwrap_or_default())).collect(),
            None => return Check { line, what, ok: false, detail: "the stored ladder is not a list".into() },
        },
    };
    if follows_ladder(&ladder, captured) {
        return Check { line, what, ok: true, detail: format!("{} messages, in order", captured.len()) };
    }
    let expected: Vec<String> = ladder
        .iter()
        .map(|(t, dropped)| if *dropped { format!("{t} (dropped: optional)") } else { t.clone() })
        .collect();
    Check { line, what, ok: false, detail: format!("the wire differs:\n{}", diff_lines(&expected, captured)) }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ladder(lines: &[&str]) -> Vec<(String, bool)> {
        lines.iter().map(|l| ladder_entry(l)).collect()
    }

    fn wire(lines: &[&str]) -> Vec<String> {
        lines.iter().map(|l| l.to_string()).collect()
    }

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

    #[test]
    fn virtual_times_are_left_out_and_drops_marked() {
        assert_eq!(ladder_entry("1006ms lma -> mag1 FMI seq=1"), ("lma -> mag1 FMI seq=1".into(), false));
        assert_eq!(ladder_entry("7ms mag1 -> lma FMA seq=1 (dropped)"), ("mag1 -> lma FMA seq=1".into(), true));
        assert_eq!(ladder_entry("lma -> mag1 PBA"), ("lma -> mag1 PBA".into(), false));
    }

    #[test]
    fn a_dropped_message_may_be_on_the_wire_or_not_but_nothing_else_may_differ() {
        // FM-FMA-LOST: the repeated FMA has the text of the lost one.
        let l = ladder(&["0ms FMI 1", "1ms FMA 1 (dropped)", "1000ms FMI 1", "1001ms FMA 1"]);
        assert!(follows_ladder(&l, &wire(&["FMI 1", "FMI 1", "FMA 1"])), "dropped at the sender");
        assert!(follows_ladder(&l, &wire(&["FMI 1", "FMA 1", "FMI 1", "FMA 1"])), "dropped at the receiver");
        assert!(!follows_ladder(&l, &wire(&["FMI 1", "FMI 1"])), "the repeated FMA is missing");
        assert!(!follows_ladder(&l, &wire(&["FMI 1", "FMA 1", "FMI 1"])), "the repeated FMA is missing");
        assert!(!follows_ladder(&l, &wire(&["FMI 1", "FMI 1", "FMA 1", "FMA 1"])), "an extra FMA");
        assert!(!follows_ladder(&l, &wire(&["FMI 1", "FMA 1", "FMA 1", "FMI 1"])), "out of order");
    }

    #[test]
    fn a_stored_ladder_is_read_and_a_different_wire_is_a_readable_failure() {
        let dir = std::env::temp_dir().join(format!("pmiplab-ladder-{}", std::process::id()));
        std::fs::create_dir_all(dir.join("snapshots")).unwrap();
        let snap = "---\nsource: harness/tests/scenarios.rs\nexpression: r.ladder\n---\n\
                    - \"0ms mag1 -> lma PBU seq=1\"\n- \"1ms lma -> mag1 PBA seq=1 status=0\"\n";
        std::fs::write(dir.join("snapshots/x__ladder.snap"), snap).unwrap();
        let scenario = dir.join("x.yaml");
        let good = compare_sequence(&scenario, &wire(&["mag1 -> lma PBU seq=1", "lma -> mag1 PBA seq=1 status=0"]), 1);
        assert!(good.ok, "{}", good.detail);
        let bad = compare_sequence(&scenario, &wire(&["mag1 -> lma PBU seq=1", "lma -> mag1 PBA seq=1 status=157"]), 1);
        std::fs::remove_dir_all(&dir).ok();
        assert!(!bad.ok);
        assert_eq!(
            bad.detail,
            "the wire differs:\n  mag1 -> lma PBU seq=1\n- lma -> mag1 PBA seq=1 status=0\n+ lma -> mag1 PBA seq=1 status=157"
        );
    }
}
