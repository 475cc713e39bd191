//! `pmiplab bench datapath` and `pmiplab bench move` at a tiny size, so
//! that they keep working: one short run of each transfer beside plain
//! forwarding, and a few flow moves. Needs root; PMIPLAB_SKIP_NETNS=1
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
    let figures = pmiplab::bench::moves(bin, 4, 1000).unwrap_or_else(|e| panic!("bench move: {e}"));
    let table = pmiplab::bench::table(&figures);
    assert!(
        table.contains("no signalling: command to the LMA → first packet on the new interface, 2 moves"),
        "{table}"
    );
    eprintln!("{table}");
}
