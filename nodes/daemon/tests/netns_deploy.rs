//! Persistent demo labs: `pmiplab deploy` builds named namespaces one can
//! `ip netns exec` into, `inspect` and `exec` reach them, `destroy` and
//! `cleanup` remove exactly what was deployed, and a failed deploy leaves
//! nothing.
//!
//! Needs root and the pmiplab binary (built by `cargo test --workspace`).

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use common::*;

fn pmiplab(args: &[&str]) -> Output {
    let node = PathBuf::from(env!("CARGO_BIN_EXE_pmip-node"));
    let bin = node.parent().unwrap().join("pmiplab");
    assert!(bin.exists(), "{} is missing: cargo test --workspace builds it", bin.display());
    Command::new(bin).args(args).env("PMIP_NODE", &node).output().unwrap()
}

fn netns_list() -> Vec<String> {
    std::fs::read_dir("/run/netns")
        .into_iter()
        .flatten()
        .filter_map(|e| e.ok())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect()
}

/// Destroys the lab even when an assertion fails.
struct Guard(&'static str);

impl Drop for Guard {
    fn drop(&mut self) {
        let _ = pmiplab(&["destroy", self.0]);
    }
}

fn topology(f: &str) -> String {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../topologies").join(f).to_string_lossy().into_owned()
}

/// One test, so that `cleanup` never meets a lab another test is using.
#[test]
fn deployed_labs_from_deploy_to_cleanup() {
    if skip() {
        return;
    }
    deploy_inspect_exec_destroy();
    steps_play_on_a_deployed_lab_through_the_engine();
    cleanup_removes_what_is_marked_and_nothing_else();
    a_failed_deploy_leaves_nothing();
}

/// A process that has exited (gone, or a zombie waiting for its reaper).
fn gone(pid: u64) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .map_or(true, |s| s.rsplit_once(')').is_some_and(|(_, r)| r.trim_start().starts_with('Z')))
}

fn deploy_inspect_exec_destroy() {
    let _g = Guard("citest");
    let o = pmiplab(&["deploy", &topology("fm-up-fmi.yaml"), "--name", "citest"]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let names = netns_list();
    for node in ["lma", "mag1", "mag2", "mn1", "cn"] {
        assert!(names.contains(&format!("pmiplab-citest-{node}")), "{names:?}");
    }
    assert_eq!(
        pmiplab(&["deploy", &topology("fm-up-fmi.yaml"), "--name", "citest"]).status.code(),
        Some(1),
        "a second lab of the same name is refused"
    );

    // ip netns exec works on them, and so does pmiplab exec.
    let ip = Command::new("ip").args(["netns", "exec", "pmiplab-citest-mag1", "ip", "-6", "route"]).output();
    if let Ok(ip) = ip {
        assert!(
            String::from_utf8_lossy(&ip.stdout).contains("dev to-mn1-if1"),
            "{}",
            String::from_utf8_lossy(&ip.stdout)
        );
    }
    let o = pmiplab(&["exec", "citest", "mn1", "--", "ip", "-o", "link"]);
    assert!(o.status.success());
    assert!(String::from_utf8_lossy(&o.stdout).contains(" if2@"), "the MN's interfaces are there");

    // The MN attaches by RS/RA after `deploy` returns: wait for it, bounded.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    let v = loop {
        let o = pmiplab(&["inspect", "citest", "--format", "json"]);
        let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
        let bces = v["nodes"]["lma"]["tables"]["binding_cache"].as_array().map(|b| b.len()).unwrap_or(0);
        if bces >= 1 || std::time::Instant::now() > deadline {
            break v;
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    };
    assert_eq!(v["nodes"]["lma"]["running"], true);
    let bces = v["nodes"]["lma"]["tables"]["binding_cache"].as_array().map(|b| b.len()).unwrap_or(0);
    assert!(bces >= 1, "the deployed MN attached: {v}");
    // BIDs follow the order of the links, as a run's attach steps give
    // them, not the race of interfaces coming up at once: BID 1 is MAG1.
    let by_bid: Vec<(u64, String)> = v["nodes"]["lma"]["tables"]["binding_cache"]
        .as_array()
        .unwrap()
        .iter()
        .map(|b| (b["bid"].as_u64().unwrap_or(0), b["proxy_coa"].as_str().unwrap_or("").to_string()))
        .collect();
    assert!(by_bid.contains(&(1, MAG1.to_string())) && by_bid.contains(&(2, MAG2.to_string())), "{by_bid:?}");
    let labs = String::from_utf8_lossy(&pmiplab(&["inspect"]).stdout).into_owned();
    assert!(labs.lines().next().is_some_and(|l| l.starts_with("LAB  ")), "{labs}");
    assert!(labs.lines().any(|l| l.split_whitespace().next() == Some("citest")), "{labs}");

    // inspect as a table: a row per node, the LMA's binding cache counted.
    let o = pmiplab(&["inspect", "citest"]);
    let table = String::from_utf8_lossy(&o.stdout).into_owned();
    assert!(o.status.success(), "{table}");
    let row = |node: &str| {
        table
            .lines()
            .find(|l| l.split_whitespace().next() == Some(node))
            .unwrap_or_else(|| panic!("{table}"))
            .to_string()
    };
    assert!(row("lma").contains("pmiplab-citest-lma") && row("lma").contains("running"), "{table}");
    assert!(row("lma").contains(&format!("binding_cache:{bces}")), "{table}");
    for node in ["mag1", "mag2", "mn1", "cn"] {
        assert!(row(node).contains(&format!("pmiplab-citest-{node}")), "{table}");
    }

    // graph draws the deployed lab's topology in each format.
    let ascii = String::from_utf8_lossy(&pmiplab(&["graph", "citest"]).stdout).into_owned();
    assert!(ascii.contains("mag1 ─── mn1/if1") && ascii.contains("lma ─── mag2"), "{ascii}");
    let dot = String::from_utf8_lossy(&pmiplab(&["graph", "citest", "--format", "dot"]).stdout).into_owned();
    assert!(dot.contains("\"lma\" -- \"mag1\"") && dot.trim_end().ends_with('}'), "{dot}");
    let svg = String::from_utf8_lossy(&pmiplab(&["graph", "citest", "--format", "svg"]).stdout).into_owned();
    assert_eq!(svg.matches("<g class=\"node\"").count(), 6, "{svg}");

    let pids: Vec<u64> = v["nodes"].as_object().unwrap().values().filter_map(|n| n["daemon"].as_u64()).collect();
    assert!(pmiplab(&["destroy", "citest"]).status.success());
    assert!(!netns_list().iter().any(|n| n.starts_with("pmiplab-citest-")), "{:?}", netns_list());
    for p in pids {
        assert!(gone(p), "daemon {p} survived destroy");
    }
    assert_eq!(pmiplab(&["destroy", "citest"]).status.code(), Some(2), "destroying twice says there is no such lab");
}

fn steps_play_on_a_deployed_lab_through_the_engine() {
    let _g = Guard("citest5");
    assert!(pmiplab(&["deploy", &topology("fm-up-fmi.yaml"), "--name", "citest5"]).status.success());
    let out = |o: &Output| format!("{}{}", String::from_utf8_lossy(&o.stdout), String::from_utf8_lossy(&o.stderr));
    // Steps are checked against the lab's scenario before anything is done.
    let o = pmiplab(&["step", "citest5", "move: { flow: Z, to_bid: 1 }"]);
    assert_eq!(o.status.code(), Some(2), "{}", out(&o));
    assert!(out(&o).contains("<step>:1:15: there is no flow named 'Z' under flows"), "{}", out(&o));
    let o = pmiplab(&["step", "citest5", "move: { flow: \"Y\", to_bid: 1 }"]);
    assert_eq!(o.status.code(), Some(2), "a move before any bind: {}", out(&o));

    // The draft's move, played and judged from the wire as a run does.
    let o = pmiplab(&[
        "step",
        "citest5",
        "- bind: { flow: \"Y\", fid: 2, fid_pri: 20, bids: [2], match: prefix }\n\
         - expect_flow: { flow: \"Y\", arrives_on: mn1/if2, packets: 5 }\n\
         - move: { flow: \"Y\", to_bid: 1 }\n\
         - expect_message: { message: FMI, from: lma, to: mag1, with: [op=add], count: 1 }\n\
         - expect_flow: { flow: \"Y\", arrives_on: mn1/if1, packets: 5 }",
    ]);
    assert!(o.status.success(), "{}", out(&o));
    assert!(out(&o).contains("flow Y arrives on mn1/if1 — 5 of 5 as expected"), "{}", out(&o));
    // A later call builds on the earlier ones: the bind gave Y its FID.
    let o = pmiplab(&[
        "step",
        "citest5",
        "- unbind: \"Y\"\n- expect_state: { node: lma, path: /flow_mobility_cache, len: 0 }",
    ]);
    assert!(o.status.success(), "{}", out(&o));
    // A failed expectation is exit code 1, as in a run.
    let o = pmiplab(&["step", "citest5", "expect_state: { node: lma, path: /flow_mobility_cache, len: 3 }"]);
    assert_eq!(o.status.code(), Some(1), "{}", out(&o));
    assert!(pmiplab(&["destroy", "citest5"]).status.success());
}

fn cleanup_removes_what_is_marked_and_nothing_else() {
    let _g = Guard("citest2");
    // A namespace pmiplab did not make must survive cleanup.
    let foreign = "pmiplab-not-ours";
    let made = Command::new("ip").args(["netns", "add", foreign]).status().map(|s| s.success()).unwrap_or(false);
    assert!(pmiplab(&["deploy", &topology("pm-attach.yaml"), "--name", "citest2"]).status.success());
    // A lab someone else deployed (through sudo, as uid 54321): cleanup
    // leaves it unless told --all.
    let _g4 = Guard("citest4");
    let node = PathBuf::from(env!("CARGO_BIN_EXE_pmip-node"));
    let other = Command::new(node.parent().unwrap().join("pmiplab"))
        .args(["deploy", &topology("pm-attach.yaml"), "--name", "citest4"])
        .env("PMIP_NODE", &node)
        .env("SUDO_UID", "54321")
        .env("SUDO_USER", "someone")
        .output()
        .unwrap();
    assert!(other.status.success(), "{}", String::from_utf8_lossy(&other.stderr));
    let o = pmiplab(&["cleanup"]);
    let said = String::from_utf8_lossy(&o.stdout).into_owned();
    assert!(said.contains("destroyed lab citest2"), "{said}");
    assert!(said.contains("left lab citest4: owned by someone (uid 54321)"), "{said}");
    assert!(netns_list().iter().any(|n| n.starts_with("pmiplab-citest4-")), "{:?}", netns_list());
    let o = pmiplab(&["cleanup", "--all"]);
    assert!(String::from_utf8_lossy(&o.stdout).contains("destroyed lab citest4"));
    assert!(!netns_list().iter().any(|n| n.starts_with("pmiplab-citest4-")), "{:?}", netns_list());
    let left = netns_list();
    assert!(!left.iter().any(|n| n.starts_with("pmiplab-citest2-")), "{left:?}");
    if made {
        assert!(left.contains(&foreign.to_string()), "cleanup touched a namespace it did not make");
        let _ = Command::new("ip").args(["netns", "delete", foreign]).status();
    }
}

fn a_failed_deploy_leaves_nothing() {
    let node = PathBuf::from(env!("CARGO_BIN_EXE_pmip-node"));
    let bin = node.parent().unwrap().join("pmiplab");
    // A daemon binary that exits at once: the lab cannot come up.
    let o = Command::new(bin)
        .args(["deploy", &topology("pm-attach.yaml"), "--name", "citest3"])
        .env("PMIP_NODE", "/bin/false")
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(1), "{}", String::from_utf8_lossy(&o.stderr));
    assert!(String::from_utf8_lossy(&o.stderr).contains("nothing was left behind"));
    assert!(!netns_list().iter().any(|n| n.starts_with("pmiplab-citest3-")), "{:?}", netns_list());
    assert!(!Path::new("/run/pmiplab/citest3").exists());
}
