//! `pmiplab bench datapath`, `bench move`, `bench signalling`, `bench scale`, `bench lab` and
//! `bench catalogue` at a tiny size, so that they keep working: one short run of each transfer
//! beside plain forwarding, a few flow moves, two lab builds, two scenarios. (`bench core` runs
//! in harness/tests/cli.rs.) Needs root; PMIPLAB_SKIP_NETNS=1
//! skips it where that is impossible.

mod common;

use std::path::Path;

#[test]
fn the_datapath_and_move_benchmarks_run_at_a_tiny_size() {
    if common::skip() {
        return;
    }
    let bin = Path::new(env!("CARGO_BIN_EXE_pmip-node"));
    let figures = pmiplab::bench::datapath(bin, 1, 0.2).unwrap_or_else(|e| panic!("bench datapath: {e}"));
    let table = pmiplab::bench::table(&figures);
    assert!(table.contains("TCP CN→MN") && table.contains("UDP MN→CN"), "{table}");
    assert!(table.contains("plain kernel forwarding"), "{table}");
    assert!(table.contains("TCP CN→MN, lab and the MN daemon (logical interface) on the"), "{table}");
    let figures = pmiplab::bench::moves(bin, 4, 1000).unwrap_or_else(|e| panic!("bench move: {e}"));
    let table = pmiplab::bench::table(&figures);
    assert!(
        table.contains("no signalling: command to the LMA → first packet on the new interface, 2 moves"),
        "{table}"
    );
    eprintln!("{table}");
}

#[test]
fn the_signalling_benchmark_runs_at_a_tiny_size() {
    if common::skip() {
        return;
    }
    let bin = Path::new(env!("CARGO_BIN_EXE_pmip-node"));
    let figures = pmiplab::bench::signalling(bin, 500).unwrap_or_else(|e| panic!("bench signalling: {e}"));
    let table = pmiplab::bench::table(&figures);
    // Every PBU of both phases answered, by the responder and by the LMA.
    assert!(table.contains("500 of 500 answered (100.0%), 500 accepted | canned-PBA responder: "), "{table}");
    assert!(table.contains("re-registration with 500 bindings"), "{table}");
    assert_eq!(table.matches("500 of 500 answered").count(), 3, "{table}");
    // The state read during the third phase showed every binding (the
    // bench checks the rows) and says how long the answers paused.
    assert!(table.contains("a state read of the LMA daemon with 500 bindings"), "{table}");
    assert!(table.contains("longest silence"), "{table}");
    eprintln!("{table}");
}

#[test]
fn the_scale_benchmark_runs_at_a_tiny_size() {
    if common::skip() {
        return;
    }
    let bin = Path::new(env!("CARGO_BIN_EXE_pmip-node"));
    // One MAG with its 8 MNs, then two with 16: each registered, checked
    // and detached in namespaces, beside virtual time.
    let figures = pmiplab::bench::scale(bin, &[1, 2]).unwrap_or_else(|e| panic!("bench scale: {e}"));
    let table = pmiplab::bench::table(&figures);
    assert!(table.contains("1 LMA + 1 MAGs + 8 MNs"), "{table}");
    assert!(table.contains("1 LMA + 2 MAGs + 16 MNs"), "{table}");
    assert_eq!(table.matches("the same scenario in virtual time: ").count(), 2, "{table}");
    eprintln!("{table}");
}

#[test]
fn an_attach_settles_without_waiting_out_the_quiet_window_when_the_wire_matches_the_model() {
    if common::skip() {
        return;
    }
    let bin = Path::new(env!("CARGO_BIN_EXE_pmip-node"));
    // Each of the 8 attaches waited at least 100 ms of quiet wire before
    // (0.87 s in all on the reference machine); settled on the model's
    // wire, the attaches and their checks take about 0.1 s.
    let (p, _) = pmiplab::bench::scale::run_netns(bin, 1).unwrap_or_else(|e| panic!("bench scale: {e}"));
    assert!(
        p.registered < std::time::Duration::from_millis(8 * 100),
        "8 attaches took {:?}: each waited out the 100 ms quiet window",
        p.registered
    );
}

#[test]
fn a_lab_stops_its_captures_side_by_side() {
    if common::skip() {
        return;
    }
    // 64 idle links: each capture reads on for up to one 20 ms read
    // timeout after its stop, so one after the other they took about
    // 0.6 s; side by side, one timeout.
    let mut lab = pmiplab::lab::Lab::new().unwrap();
    lab.add_node("a").unwrap();
    lab.add_node("b").unwrap();
    let mut links = Vec::new();
    for i in 0..64 {
        let iface = format!("x{i}");
        lab.veth("a", &iface, "b", &iface).unwrap();
        links.push(("a".to_string(), iface));
    }
    lab.capture_all(&links, None).unwrap();
    let started = std::time::Instant::now();
    let stopped = lab.stop_captures().unwrap();
    let took = started.elapsed();
    assert_eq!(stopped.len(), 64);
    assert_eq!(stopped[5].0, "a:x5", "the captures keep the order they were asked for in");
    assert!(took < std::time::Duration::from_millis(250), "stopping 64 captures took {took:?}");
}

#[test]
fn the_lab_and_catalogue_benchmarks_run_at_a_tiny_size() {
    if common::skip() {
        return;
    }
    let bin = Path::new(env!("CARGO_BIN_EXE_pmip-node"));
    let topologies = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../topologies");
    let figures =
        pmiplab::bench::lab(bin, &topologies.join("fm-up-fmi.yaml"), 2).unwrap_or_else(|e| panic!("bench lab: {e}"));
    let table = pmiplab::bench::table(&figures);
    assert!(table.contains("seed lab up (daemons ready) and down, 2 runs | median "), "{table}");
    assert!(table.contains("namespaces and links alone: median "), "{table}");
    let files = [topologies.join("pm-attach.yaml"), topologies.join("fm-up-fmi.yaml")];
    let figures = pmiplab::bench::catalogue(bin, &files).unwrap_or_else(|e| panic!("bench catalogue: {e}"));
    let table = pmiplab::bench::table(&figures);
    assert!(table.contains("the catalogue (2 scenarios) in namespaces, 2 at once"), "{table}");
    assert!(table.contains("in virtual time: "), "{table}");
    eprintln!("{table}");
}
