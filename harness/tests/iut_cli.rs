//! `pmiplab run --iut` refuses what it cannot do before anything is built,
//! with a sentence that says why.

use std::process::Command;

fn run(args: &[&str]) -> (bool, String, bool) {
    let out = std::env::temp_dir().join(format!("pmiplab-iut-cli-{}", std::process::id()));
    let o = Command::new(env!("CARGO_BIN_EXE_pmiplab"))
        .args(["run", &format!("{}/../topologies/pm-attach.yaml", env!("CARGO_MANIFEST_DIR")), "--out"])
        .arg(&out)
        .args(args)
        .output()
        .unwrap();
    let made = out.exists();
    let _ = std::fs::remove_dir_all(&out);
    (o.status.code() == Some(2), String::from_utf8_lossy(&o.stderr).into_owned(), made)
}

#[test]
fn an_iut_needs_the_namespace_backend_and_a_role_it_can_play() {
    let cases: [(&[&str], &str); 4] = [
        (&["--iut", "mag=/bin/true"], "--iut needs --backend netns"),
        (&["--backend", "netns", "--iut", "mn=/bin/true"], "'mn' is not a role an implementation can play"),
        (&["--backend", "netns", "--iut", "mag"], "write ROLE=COMMAND"),
        (&["--backend", "netns", "--iut", "lma='unclosed"], "unclosed single quote"),
    ];
    for (args, want) in cases {
        let (refused, stderr, made) = run(args);
        assert!(refused, "{args:?} was not refused with exit code 2: {stderr}");
        assert!(stderr.contains(want), "{args:?}: {stderr}");
        assert!(!made, "{args:?}: something was created");
    }
}

#[test]
fn an_impl_file_with_an_error_is_refused_with_its_line_and_column() {
    let dir = std::env::temp_dir().join(format!("pmiplab-iut-cli-file-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("mymag.yaml");
    std::fs::write(&file, "command: [mymagd]\nhooks:\n  move: [cli, \"{fid}\"]\n").unwrap();
    let arg = format!("mag={}", file.display());
    let (refused, stderr, _) = run(&["--backend", "netns", "--iut", &arg]);
    std::fs::remove_dir_all(&dir).ok();
    assert!(refused, "{stderr}");
    assert!(stderr.contains("mymag.yaml:3:9: --iut mag: the move hook is for an lma under test"), "{stderr}");
}
