//! Stored snapshots (pins) as a reviewer meets them: a run that differs
//! from a pin fails and leaves its own tables beside it as a pending
//! snapshot that `cargo insta` lists and accepts; `--record` writes pins
//! for a scenario anywhere on disk; a scenario with no pins has nothing to
//! compare with, which the run says instead of passing.

use std::path::{Path, PathBuf};
use std::process::Command;

fn pmiplab() -> Command {
    Command::new(env!("CARGO_BIN_EXE_pmiplab"))
}

fn topologies() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../topologies")
}

/// A folder with a copy of pm-attach.yaml (and, if `with_pins`, its pins),
/// made a tiny cargo package so that `cargo insta` can work in it.
fn folder(name: &str, with_pins: bool) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("pmiplab-pins-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(dir.join("snapshots")).unwrap();
    std::fs::create_dir_all(dir.join("src")).unwrap();
    std::fs::write(dir.join("src/lib.rs"), "").unwrap();
    std::fs::write(
        dir.join("Cargo.toml"),
        "[package]\nname = \"pins\"\nversion = \"0.0.0\"\nedition = \"2021\"\n\n[workspace]\n",
    )
    .unwrap();
    std::fs::copy(topologies().join("pm-attach.yaml"), dir.join("pm-attach.yaml")).unwrap();
    if with_pins {
        for pin in ["pm-attach__attached.snap", "pm-attach__ladder.snap"] {
            std::fs::copy(topologies().join("snapshots").join(pin), dir.join("snapshots").join(pin)).unwrap();
        }
    }
    dir
}

fn run(dir: &Path, extra: &[&str]) -> (Option<i32>, String) {
    let o = pmiplab()
        .arg("run")
        .args(extra)
        .arg(dir.join("pm-attach.yaml"))
        .arg("--out")
        .arg(dir.join("out"))
        .output()
        .unwrap();
    (o.status.code(), String::from_utf8_lossy(&o.stdout).to_string() + &String::from_utf8_lossy(&o.stderr))
}

fn cargo_insta(dir: &Path, verb: &[&str]) -> String {
    let o = Command::new(env!("CARGO"))
        .arg("insta")
        .args(verb)
        .arg("--manifest-path")
        .arg(dir.join("Cargo.toml"))
        .output()
        .unwrap_or_else(|e| panic!("cannot run cargo insta ({e}); ci/test.sh installs it: cargo install cargo-insta"));
    let text = String::from_utf8_lossy(&o.stdout).to_string() + &String::from_utf8_lossy(&o.stderr);
    assert!(o.status.success(), "cargo insta {verb:?} failed (ci/test.sh installs cargo-insta):\n{text}");
    text
}

#[test]
fn a_changed_pin_fails_the_run_and_its_replacement_is_pending_for_cargo_insta() {
    let dir = folder("changed", true);
    let pin = dir.join("snapshots/pm-attach__attached.snap");
    let text = std::fs::read_to_string(&pin).unwrap();
    assert!(text.contains("bid_pri: 20"));
    std::fs::write(&pin, text.replace("bid_pri: 20", "bid_pri: 21")).unwrap();

    let (code, out) = run(&dir, &[]);
    assert_eq!(code, Some(1), "{out}");
    assert!(out.contains("snapshot attached matches") && out.contains("-         \"bid_pri\": 21,"), "{out}");
    assert!(dir.join("snapshots/pm-attach__attached.snap.new").exists(), "{out}");

    let pending = cargo_insta(&dir, &["pending-snapshots", "--as-json"]);
    assert!(pending.contains("pm-attach__attached.snap"), "{pending}");
    cargo_insta(&dir, &["accept"]);
    let (code, out) = run(&dir, &[]);
    assert_eq!(code, Some(0), "after accepting, the pin is this run's again: {out}");
    std::fs::remove_dir_all(&dir).ok();
}

#[test]
fn record_writes_pins_for_a_scenario_anywhere_and_a_run_without_them_says_so() {
    let dir = folder("record", false);
    let (code, out) = run(&dir, &[]);
    assert_eq!(code, Some(0), "{out}");
    assert!(out.contains("2 with no reference") && out.contains("nothing stored at"), "{out}");
    assert!(out.contains("had nothing to compare with and were not passed"), "{out}");
    assert!(!dir.join("snapshots/pm-attach__attached.snap").exists());

    let (code, out) = run(&dir, &["--record"]);
    assert_eq!(code, Some(0), "{out}");
    assert!(out.contains("recorded"), "{out}");
    let pin = std::fs::read_to_string(dir.join("snapshots/pm-attach__attached.snap")).unwrap();
    assert!(pin.starts_with("---\n") && pin.contains("kernel:"), "{pin}");

    let (code, out) = run(&dir, &[]);
    assert_eq!(code, Some(0), "{out}");
    assert!(!out.contains("no reference"), "every check now has its pin: {out}");
    std::fs::remove_dir_all(&dir).ok();
}
