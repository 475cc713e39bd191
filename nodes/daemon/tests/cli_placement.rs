//! `pmip-node --netns` and `--die-with`, which the harness uses instead of
//! running code between fork and exec: a daemon whose harness is gone
//! before it could ask to die with it stops at once, and a namespace that
//! cannot be joined is a start-up error that says which.

use std::process::Command;

fn node(args: &[&str]) -> (Option<i32>, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_pmip-node"))
        .args(["--config", "/nonexistent/config.json", "--control", "/nonexistent/control.sock"])
        .args(args)
        .output()
        .unwrap();
    (out.status.code(), String::from_utf8_lossy(&out.stderr).into_owned())
}

#[test]
fn a_daemon_whose_harness_is_gone_stops_before_doing_anything() {
    // PID 1 is never this test's process, so "the parent" is not the one named.
    let (code, err) = node(&["--die-with", "1"]);
    assert_eq!(code, Some(1), "{err}");
    assert!(err.contains("the process that started this one (1) is gone"), "{err}");
}

#[test]
fn a_namespace_that_cannot_be_joined_is_named_in_the_error() {
    let (code, err) = node(&["--netns", "/nonexistent/ns"]);
    assert_eq!(code, Some(1), "{err}");
    assert!(err.contains("opening the network namespace /nonexistent/ns"), "{err}");
}

#[test]
fn a_daemon_whose_harness_lives_goes_on_to_its_configuration() {
    let me = std::process::id().to_string();
    let (code, err) = node(&["--die-with", &me]);
    assert_eq!(code, Some(1), "{err}");
    assert!(err.contains("/nonexistent/config.json"), "it got past the placement: {err}");
}
