//! The MN's logical interface on the kernel datapath: the MN's addresses
//! on `lo`, no TUN device; an ordinary application socket's answers leave
//! by the interface the request last arrived on (conntrack marks), before
//! and after an FMI moves the flow; a flow the MN starts leaves by the
//! interface holding its source prefix; probes draw no Port Unreachable
//! while other datagrams to a closed port still do; a clean stop leaves
//! nothing. Read from captures of the MN's links, not from the daemon.
//! Needs root; PMIPLAB_SKIP_NETNS=1 skips it where that is impossible.

mod common;

use common::*;

use std::net::{Ipv6Addr, SocketAddrV6, UdpSocket};
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use common::data_plane::*;
use pmip_captures::pcapng::Packet;
use pmip_wire::AccessTechnologyType;
use serde_json::json;

const IID: u64 = 6;

fn run_in(lab: &pmiplab::lab::Lab, node: &str, args: &'static [&'static str]) -> String {
    lab.run_in(node, move || {
        let out = Command::new(args[0]).args(&args[1..]).output()?;
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    })
    .unwrap()
}

/// UDP datagrams in `frames` from `src` port `sport`.
fn udp_from(frames: &[Packet], src: Ipv6Addr, sport: u16) -> usize {
    frames
        .iter()
        .filter(|f| {
            let d = &f.data;
            d.len() >= 14 + 48
                && d[12..14] == [0x86, 0xdd]
                && d[14 + 6] == 17
                && d[14 + 8..14 + 24] == src.octets()
                && d[14 + 40..14 + 42] == sport.to_be_bytes()
        })
        .count()
}

/// ICMPv6 Destination Unreachables in `frames` from `src`.
fn unreachables_from(frames: &[Packet], src: Ipv6Addr) -> usize {
    frames
        .iter()
        .filter(|f| {
            let d = &f.data;
            d.len() >= 14 + 41 && d[14 + 6] == 58 && d[14 + 8..14 + 24] == src.octets() && d[14 + 40] == 1
        })
        .count()
}

/// An application's socket in MN1's namespace on `addr`:`port`, told the
/// interface each datagram arrived on.
fn echo(lab: &pmiplab::lab::Lab, addr: Ipv6Addr, port: u16) -> UdpSocket {
    lab.run_in("mn1", move || {
        let s = UdpSocket::bind(SocketAddrV6::new(addr, port, 0, 0))?;
        nix::sys::socket::setsockopt(&s, nix::sys::socket::sockopt::Ipv6RecvPacketInfo, &true)?;
        Ok(s)
    })
    .unwrap()
}

/// The CN asks, the application answers the CN; returns the index of the
/// interface the request arrived on.
fn ask(echo: &UdpSocket, cn: &UdpSocket, to: Ipv6Addr) -> u32 {
    cn.send_to(b"request", SocketAddrV6::new(to, 5002, 0, 0)).unwrap();
    let index = arrival(echo, Duration::from_secs(5)).expect("a request reaches the MN's application");
    echo.send_to(b"answer", SocketAddrV6::new(a(CN), 7000, 0, 0)).unwrap();
    cn.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    cn.recv_from(&mut [0u8; 64]).expect("the answer reaches the CN");
    index
}

#[test]
fn the_kernel_logical_interface_steers_each_flow_by_its_arrival() {
    if skip() {
        return;
    }
    let mut lab = seed_network();
    lab.veth("mag1", "to-if1", "mn1", "if1").unwrap();
    lab.veth("mag2", "to-if2", "mn1", "if2").unwrap();
    let bin = Path::new(env!("CARGO_BIN_EXE_pmip-node"));
    let kernel = json!({"datapath": "kernel"});
    let (c, policies) = lma_config();
    lab.spawn("lma", bin, &json!({"role": "lma", "config": c, "policies": policies, "data_plane": kernel}), &[])
        .unwrap();
    // The MAGs attach the MN by its Router Solicitations, as in a run.
    for (n, addr, port, att) in [
        ("mag1", MAG1, "to-if1", AccessTechnologyType::Ieee80211),
        ("mag2", MAG2, "to-if2", AccessTechnologyType::EUtran),
    ] {
        let access = json!({ port: att.value() });
        let config = json!({"role": "mag", "config": mag_config(addr), "data_plane": kernel, "access": access});
        lab.spawn(n, bin, &config, &[]).unwrap();
    }
    let mn = pmip_proto::mn::MnConfig {
        name: "mn1".into(),
        iid: IID,
        interfaces: vec!["if1".into(), "if2".into()],
        uplink_preference: vec!["if1".into(), "if2".into()],
    };
    // if1 first, then if2, so that the LMA hands pref1 to if1 and pref2 to if2.
    lab.set_link("mn1", "if2", false).unwrap();
    lab.spawn("mn1", bin, &json!({"role": "mn", "config": mn, "data_plane": kernel}), &[]).unwrap();
    lab.wait_for("lma", Duration::from_secs(5), |s| {
        s["tables"]["binding_cache"].as_array().is_some_and(|b| b.len() == 1)
    })
    .unwrap();
    lab.set_link("mn1", "if2", true).unwrap();
    lma_with_two_bindings(&lab);
    let limit = Duration::from_secs(5);
    let (a1, a2) = (pref(1).with_iid(IID), pref(2).with_iid(IID));
    let st = lab
        .wait_for("mn1", limit, |s| s["tables"]["lif_addresses"].as_array().is_some_and(|a| a.len() == 2))
        .unwrap_or_else(|e| {
            panic!("{e}\n--- mn1 ---\n{}\n--- mag1 ---\n{}", lab.daemon_log("mn1"), lab.daemon_log("mag1"))
        });
    assert_eq!(st["datapath"], "kernel", "{st}");
    let links = run_in(&lab, "mn1", &["ip", "-o", "link"]);
    assert!(!links.contains(" lif:"), "no TUN device on the kernel datapath: {links}");
    let lo = run_in(&lab, "mn1", &["ip", "-6", "-o", "addr", "show", "dev", "lo"]);
    assert!(lo.contains(&format!("{a1}/128")) && lo.contains(&format!("{a2}/128")), "{lo}");
    // Both routers' default routes are in before anything is sent.
    let deadline = Instant::now() + limit;
    while run_in(&lab, "mn1", &["ip", "-6", "route", "show", "table", "all", "proto", "154"]).lines().count() < 2
        && Instant::now() < deadline
    {
        std::thread::sleep(Duration::from_millis(20));
    }

    let cap1 = lab.capture("mn1", "if1").unwrap();
    let cap2 = lab.capture("mn1", "if2").unwrap();
    let cn = cn_socket(&lab);
    let y = echo(&lab, a2, 5002);

    let mut buf = [0u8; 64];
    let (if1, if2) = (mn1_if_index(&lab, "if1"), mn1_if_index(&lab, "if2"));
    let mut arrived: Vec<u32> = Vec::new();
    // Flow Y (to pref2) arrives on if2 through MAG2: its answers leave on if2.
    for _ in 0..5 {
        arrived.push(ask(&y, &cn, a2));
    }
    assert_eq!(arrived, [if2; 5], "before the move Y arrives on if2");
    // Flows the MN starts leave by the interface holding their source prefix.
    for (src, port) in [(a1, 6001), (a2, 6002)] {
        let s = lab.run_in("mn1", move || UdpSocket::bind(SocketAddrV6::new(src, port, 0, 0))).unwrap();
        for _ in 0..3 {
            s.send_to(b"first", SocketAddrV6::new(a(CN), 7000, 0, 0)).unwrap();
        }
    }
    for _ in 0..6 {
        cn.recv_from(&mut buf).expect("the MN-started flows reach the CN");
    }

    // Moved to MAG1 by FMI, it arrives on if1: the same socket's answers follow.
    move_flow_y_to_mag1(&lab, limit);
    for _ in 0..7 {
        arrived.push(ask(&y, &cn, a2));
    }
    assert_eq!(arrived.last(), Some(&if1), "after the move Y arrives on if1");

    // To a closed port: a probe is taken quietly, anything else is refused.
    let mut probe = b"PMIP".to_vec();
    probe.extend_from_slice(&[0, 9, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 1]);
    cn.send_to(&probe, SocketAddrV6::new(a1, 9, 0, 0)).unwrap();
    cn.send_to(b"not a probe", SocketAddrV6::new(a1, 10, 0, 0)).unwrap();
    // One more answer of Y on if1 leaves after whatever those two drew.
    arrived.push(ask(&y, &cn, a2));

    let stopped = lab.stop_captures().unwrap();
    let frames = |p: &Path| {
        let (_, path, _) = stopped.iter().find(|(_, q, _)| q == p).unwrap();
        pmip_captures::pcapng::read(&std::fs::read(path).unwrap())
    };
    let (on1, on2) = (frames(&cap1), frames(&cap2));
    // Each answer leaves where its request arrived (a request or two may
    // still come through MAG2 as the LMA's kernel takes the move in).
    let on = |i: u32| arrived.iter().filter(|&&x| x == i).count();
    assert_eq!(udp_from(&on2, a2, 5002), on(if2), "Y's answers on if2, where {} of its requests arrived", on(if2));
    assert_eq!(udp_from(&on1, a2, 5002), on(if1), "Y's answers on if1, where {} of its requests arrived", on(if1));
    assert_eq!((udp_from(&on1, a1, 6001), udp_from(&on2, a1, 6001)), (3, 0), "pref1 is if1's");
    assert_eq!((udp_from(&on2, a2, 6002), udp_from(&on1, a2, 6002)), (3, 0), "pref2 is if2's");
    assert_eq!(unreachables_from(&on1, a1), 1, "only the datagram that is no probe is refused");

    // A killed MN leaves its table, rules and addresses; its successor
    // sweeps them and builds its own, and the flows go on.
    lab.kill("mn1").unwrap();
    let tables = run_in(&lab, "mn1", &["nft", "list", "tables"]);
    assert!(tables.contains("pmiplab_mn"), "the killed MN left its table: {tables}");
    lab.restart("mn1").unwrap();
    lab.wait_for("mn1", limit, |s| s["tables"]["lif_addresses"].as_array().is_some_and(|a| a.len() == 2)).unwrap();
    let rules = run_in(&lab, "mn1", &["ip", "-6", "rule"]);
    let ours: Vec<&str> = rules.lines().filter(|l| l.contains("lookup 20")).collect();
    let mut unique = ours.clone();
    unique.sort();
    unique.dedup();
    assert_eq!(unique.len(), ours.len(), "one set of rules, not two: {rules}");
    assert_eq!(rules.matches("fwmark 0x1/0xff lookup 201").count(), 1, "{rules}");
    let deadline = Instant::now() + limit;
    while run_in(&lab, "mn1", &["ip", "-6", "route", "show", "table", "201"]).is_empty() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    ask(&y, &cn, a2);

    // A clean stop leaves no nftables table, rule, route or address.
    ok(lab.request("mn1", &json!({"cmd": "shutdown"})).unwrap());
    let deadline = Instant::now() + limit;
    let left = || {
        let mut v = Vec::new();
        let tables = run_in(&lab, "mn1", &["nft", "list", "tables"]);
        if tables.contains("pmiplab_mn") {
            v.push(tables);
        }
        // This iproute2 lists every rule whatever `proto` says: the MN's own
        // are all those but the kernel's.
        let rules = run_in(&lab, "mn1", &["ip", "-6", "rule"]);
        v.extend(
            rules.lines().filter(|l| !["0:", "32766:", "32767:"].iter().any(|k| l.starts_with(k))).map(String::from),
        );
        v.push(run_in(&lab, "mn1", &["ip", "-6", "route", "show", "table", "all", "proto", "154"]));
        v.push(run_in(&lab, "mn1", &["ip", "-6", "-o", "addr", "show", "dev", "lo", "scope", "global"]));
        v.retain(|s| !s.is_empty());
        v
    };
    while !left().is_empty() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    assert_eq!(left(), Vec::<String>::new(), "what the stopped MN left");
}
