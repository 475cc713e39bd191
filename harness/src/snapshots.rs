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
    let (a, b) = (lines(stored), lines(now));
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
        } else if j < m && (i == n || lcs[i][j + 1] >= lcs[i + 1][j]) {
            script.push(('+', b[j].as_str()));
            j += 1;
        } else {
            script.push(('-', a[i].as_str()));
            i += 1;
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

/// Compares only the named top-level parts of the stored snapshot.
pub fn compare_parts(scenario: &Path, name: &str, now: &serde_json::Value, parts: &[&str], line: u64) -> Check {
    let path = path_for(scenario, name);
    let what = format!("snapshot {name} ({}) matches {}", parts.join(", "), path.display());
    let pick = |v: &serde_json::Value| {
        serde_json::Value::Object(
            parts.iter().map(|p| (p.to_string(), v.get(*p).cloned().unwrap_or_default())).collect(),
        )
    };
    match stored(&path) {
        None => Check { line, what, ok: true, detail: "no stored snapshot yet".into() },
        Some(Err(e)) => Check { line, what, ok: false, detail: format!("the stored snapshot does not parse: {e}") },
        Some(Ok(s)) if pick(&s) == pick(now) => Check { line, what, ok: true, detail: "identical".into() },
        Some(Ok(s)) => {
            Check { line, what, ok: false, detail: format!("state tables differ:\n{}", diff(&pick(&s), &pick(now))) }
        }
    }
}
