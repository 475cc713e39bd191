//! The kernel datapath (seg6 lightweight tunnels or eBPF, policy rules, nftables)
//! end to end: a CN sends UDP to a plain MN host with if1 on MAG1 and if2
//! on MAG2; the packets on the LMA–MAG link are RFC 5213's IPv6-in-IPv6;
//! an FMI move, a drop binding by port and a binding whose selector only
//! nftables can express all steer packets as the userspace classifier
//! would; a killed LMA's successor sweeps what it left; a daemon that
//! stops cleanly leaves nothing in its namespace. Needs root;
//! PMIPLAB_SKIP_NETNS=1 skips it where that is impossible.

mod common;

use common::*;

use std::net::Ipv6Addr;
use std::process::Command;
use std::time::{Duration, Instant};

use common::data_plane::*;
use pmip_proto::lma::{FlowAction, LmaCommand};
use pmip_wire::{Ipv6Selector, TrafficSelector};
use serde_json::json;

/// A command's output, run inside `node`'s namespace.
fn run_in(lab: &pmiplab::lab::Lab, node: &str, args: &'static [&'static str]) -> String {
    lab.run_in(node, move || {
        let out = Command::new(args[0]).args(&args[1..]).output()?;
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    })
    .unwrap()
}

/// Waits until `pred` holds of a command's output in `node`, at most 5 s.
fn wait_output(
    lab: &pmiplab::lab::Lab,
    node: &str,
    args: &'static [&'static str],
    pred: impl Fn(&str) -> bool,
) -> String {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let out = run_in(lab, node, args);
        if pred(&out) || Instant::now() > deadline {
            return out;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn the_kernel_datapath_tunnels_classifies_sweeps_and_cleans_up() {
    if skip() {
        return;
    }
    let mut lab = mn1_host_lab();
    lab.address("mn1", "if2", pref(2).with_iid(6), 64).unwrap();
    spawn_seed_daemons(&mut lab, &json!({"data_plane": {"datapath": "kernel"}}));
    attach_mn1(&lab);
    let limit = Duration::from_secs(5);
    let st = lab.request("lma", &json!({"cmd": "state"})).unwrap();
    assert_eq!(st["state"]["data_plane"]["datapath"], "kernel", "{}", st["state"]["data_plane"]);
    // seg6 where the kernel has it, else the eBPF programs: the same
    // packets on the wire either way, which is what this test reads.
    let ebpf = st["state"]["data_plane"]["tunnel"] == "ebpf";
    let capture = lab.capture("lma", "to-mag1").unwrap();

    let (x_sink, y_sink, z_sink) = (sink(&lab, 5001), sink(&lab, 5002), sink(&lab, 6666));
    let (if1, if2) = (mn1_if_index(&lab, "if1"), mn1_if_index(&lab, "if2"));
    let cn = cn_socket(&lab);
    let send_to = |dst: Ipv6Addr, port: u16| probe(&cn, dst, port);
    let send = |port: u16, n: u8| send_to(pref(n).with_iid(1), port);

    send(5001, 1);
    assert_eq!(arrival(&x_sink, limit), Some(if1), "flow X (to pref1) arrives on if1 through MAG1");
    send(5002, 2);
    assert_eq!(arrival(&y_sink, limit), Some(if2), "flow Y (to pref2) arrives on if2 through MAG2");

    // nftables counts what the kernel encapsulated and decapsulated.
    lab.wait_for("lma", limit, |s| s["data_plane"]["counters"]["encapsulated"].as_u64().unwrap_or(0) >= 2).unwrap();
    send(5001, 1);
    assert_eq!(arrival(&x_sink, limit), Some(if1));
    lab.wait_for("mag1", limit, |s| s["data_plane"]["counters"]["decapsulated"].as_u64().unwrap_or(0) >= 1).unwrap();

    // Flow Y moved to MAG1 by FMI.
    move_flow_y_to_mag1(&lab, limit);
    send(5002, 2);
    assert_eq!(arrival(&y_sink, limit), Some(if1), "after the FMI, flow Y arrives on if1 through MAG1");
    send(5001, 1);
    assert_eq!(arrival(&x_sink, limit), Some(if1), "flow X is untouched");

    // On the wire between the LMA and MAG1 (flow X, captured long enough
    // ago to have been read): IPv6-in-IPv6, no routing header.
    let captured = lab.stop_captures().unwrap();
    let (_, path, _) = captured.iter().find(|(_, p, _)| *p == capture).unwrap();
    let frames = pmip_captures::pcapng::read(&std::fs::read(path).unwrap());
    let tunnelled = frames.iter().find(|f| {
        let d = &f.data;
        d.len() >= 14 + 80 && d[12..14] == [0x86, 0xdd] && d[14 + 6] == 41 && d[14 + 40 + 6] == 17
    });
    let d = &tunnelled.expect("a tunnelled frame on the LMA–MAG1 link").data;
    let addr = |at: usize| Ipv6Addr::from(<[u8; 16]>::try_from(&d[at..at + 16]).unwrap());
    assert_eq!((addr(14 + 8), addr(14 + 24)), (a(LMA), a(MAG1)), "outer source and destination");
    assert_eq!(addr(14 + 40 + 24), pref(1).with_iid(1), "inner destination");

    // A drop binding by protocol and port: an ip rule with ipproto and dport.
    let drop = LmaCommand::BindFlow {
        mn_id: MN.into(),
        fid: 6,
        fid_pri: 5,
        selector: TrafficSelector::Ipv6(Ipv6Selector {
            start_next_header: Some(17),
            start_dst_port: Some(6666),
            ..Default::default()
        }),
        bids: vec![1],
        action: FlowAction::Drop,
    };
    ok(lab.request("lma", &json!({"cmd": "lma", "command": drop})).unwrap());
    lab.wait_for("lma", limit, |s| {
        s["data_plane"]["kernel_rules"].as_array().is_some_and(|r| {
            r.iter().any(|r| r.as_str().unwrap_or("").contains("ipproto 17 dport 6666-6666 blackhole"))
        })
    })
    .unwrap();
    send(6666, 1);
    send(5001, 1);
    assert_eq!(arrival(&x_sink, limit), Some(if1), "port 5001 still arrives");
    assert_eq!(arrival(&z_sink, Duration::from_millis(200)), None, "port 6666 is dropped at the LMA");

    // A selector ip rule cannot say (an address range that is no prefix):
    // an nftables mark, then a fwmark rule into MAG2's table, ahead of flow
    // Y's binding (FID-PRI 8 before 20). MAG2 still routes pref2, its own.
    let range = LmaCommand::BindFlow {
        mn_id: MN.into(),
        fid: 8,
        fid_pri: 8,
        selector: TrafficSelector::Ipv6(Ipv6Selector {
            start_dst: Some(pref(2).with_iid(1)),
            end_dst: Some(pref(2).with_iid(5)),
            ..Default::default()
        }),
        bids: vec![2],
        action: FlowAction::Forward,
    };
    ok(lab.request("lma", &json!({"cmd": "lma", "command": range})).unwrap());
    lab.wait_for("lma", limit, |s| {
        s["data_plane"]["kernel_rules"]
            .as_array()
            .is_some_and(|r| r.iter().any(|r| r.as_str().unwrap_or("").starts_with("2008: from all fwmark")))
    })
    .unwrap();
    send(5002, 2);
    assert_eq!(arrival(&y_sink, limit), Some(if2), "pref2::1 is in the range bound to MAG2");
    send_to(pref(2).with_iid(6), 5002);
    assert_eq!(arrival(&y_sink, limit), Some(if1), "pref2::6 is outside the range: flow Y's binding, MAG1");
    send(5001, 1);
    assert_eq!(arrival(&x_sink, limit), Some(if1), "flow X is untouched");
    let nft = run_in(&lab, "lma", &["nft", "list", "chain", "ip6", "pmiplab", "marks"]);
    assert!(nft.contains("ip6 daddr 2001:db8:2::1-2001:db8:2::5"), "{nft}");

    // A killed LMA leaves its rules and nftables table; its successor
    // sweeps them before building its own.
    lab.kill("lma").unwrap();
    let left = run_in(&lab, "lma", &["ip", "-6", "rule", "show", "proto", "154"]);
    assert!(!left.is_empty(), "the killed LMA left rules");
    lab.restart("lma").unwrap();
    let rules = run_in(&lab, "lma", &["ip", "-6", "rule", "show", "proto", "154"]);
    assert!(!rules.contains("2005:"), "the flow rules of the dead LMA are gone: {rules}");
    assert!(!rules.contains("from 2001:db8:ffff::11"), "no decapsulation rule before a tunnel is up: {rules}");
    let nft = run_in(&lab, "lma", &["nft", "list", "chain", "ip6", "pmiplab", "marks"]);
    assert!(!nft.contains("daddr"), "the marks of the dead LMA are gone: {nft}");
    if ebpf {
        // The dead LMA's decapsulating filter was replaced, not doubled.
        let filters = run_in(&lab, "lma", &["tc", "filter", "show", "dev", "core", "ingress"]);
        assert_eq!(filters.matches("pmip6-decap").count(), 1, "{filters}");
    }

    // Stopped cleanly, each daemon leaves nothing: no rule or route of
    // protocol 154, no nftables table, the local rule back at 0.
    for node in ["lma", "mag1", "mag2"] {
        ok(lab.request(node, &json!({"cmd": "shutdown"})).unwrap());
        // The daemon puts the local rule back at 0 before it removes its
        // own rules: wait for the whole of its cleanup, not its first step.
        let rules = wait_output(&lab, node, &["ip", "-6", "rule"], |r| {
            r.starts_with("0:\tfrom all lookup local") && !r.contains("proto 154") && !r.contains("1540")
        });
        assert!(rules.starts_with("0:\tfrom all lookup local"), "{node}: {rules}");
        assert!(!rules.contains("proto 154") && !rules.contains("1540"), "{node}: {rules}");
        let routes =
            wait_output(&lab, node, &["ip", "-6", "route", "show", "table", "all", "proto", "154"], str::is_empty);
        assert_eq!(routes, "", "{node}");
        let tables = wait_output(&lab, node, &["nft", "list", "tables"], |t| !t.contains("pmiplab"));
        assert!(!tables.contains("pmiplab"), "{node}: {tables}");
        let hooks = wait_output(&lab, node, &["tc", "qdisc", "show", "dev", "core"], |q| !q.contains("ingress"));
        assert!(!hooks.contains("ingress"), "{node}: the eBPF tunnel's ingress hook is gone: {hooks}");
    }
}
