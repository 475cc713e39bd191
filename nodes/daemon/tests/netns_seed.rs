//! The seed topology with every node a real daemon: the MN's logical
//! interface solicits routers on if1 and if2, the MAGs attach it from the
//! RS, register it with PBU/PBA and advertise its prefixes; CN flows X and
//! Y arrive through the userspace tunnel on the interfaces their prefixes
//! belong to; the LMA moves Y to X's MAG by FMI; Y then arrives on X's
//! interface and the MN's uplink of Y follows it there.
//!
//! Needs root; PMIPLAB_SKIP_NETNS=1 skips it where that is impossible.

use std::net::{Ipv6Addr, SocketAddrV6, UdpSocket};
use std::path::Path;
use std::time::{Duration, Instant};

use pmip_proto::flow::prefix_selector;
use pmip_proto::lma::{FlowAction, LmaCommand, LmaConfig, MnPolicy, PrefixModel};
use pmip_proto::mag::{MagConfig, MnBinding};
use pmip_proto::mn::MnConfig;
use pmip_proto::world::mac_for;
use pmip_proto::Prefix;
use pmiplab::lab::Lab;
use serde_json::{json, Value};

const LMA: &str = "2001:db8:ffff::1";
const MAG1: &str = "2001:db8:ffff::11";
const MAG2: &str = "2001:db8:ffff::12";
const CN: &str = "2001:db8:c::1";
const CN_GW: &str = "2001:db8:c::ffff";
const MN: &str = "mn1@pmip.lab";

fn a(s: &str) -> Ipv6Addr {
    s.parse().unwrap()
}

fn pref(n: u8) -> Prefix {
    format!("2001:db8:{n}::/64").parse().unwrap()
}

fn skip() -> bool {
    if nix::unistd::geteuid().is_root() {
        return false;
    }
    if std::env::var_os("PMIPLAB_SKIP_NETNS").is_some() {
        return true;
    }
    panic!("this test builds network namespaces and needs root; run it as root (CI does) or set PMIPLAB_SKIP_NETNS=1");
}

fn ok(v: Value) {
    assert_eq!(v["ok"], true, "{v}");
}

/// Waits for a datagram; returns its source.
fn receive(sock: &UdpSocket, limit: Duration) -> Option<Ipv6Addr> {
    sock.set_read_timeout(Some(limit)).ok()?;
    let mut buf = [0u8; 2048];
    match sock.recv_from(&mut buf) {
        Ok((_, std::net::SocketAddr::V6(from))) => Some(*from.ip()),
        _ => None,
    }
}

fn downlink_on(lab: &Lab, dport: u16) -> Option<String> {
    let s = lab.request("mn1", &json!({"cmd": "state"})).ok()?;
    s["state"]["tables"]["flows"]
        .as_array()?
        .iter()
        .find(|f| {
            f["flow"]
                .as_str()
                .is_some_and(|x| x.contains(&format!("]:{dport} ")))
        })
        .and_then(|f| f["downlink_on"].as_str().map(String::from))
}

fn counter(lab: &Lab, node: &str, name: &str) -> u64 {
    lab.request(node, &json!({"cmd": "state"})).unwrap()["state"]["counters"][name]
        .as_u64()
        .unwrap_or(0)
}

#[test]
fn the_seed_topology_end_to_end_with_real_daemons() {
    if skip() {
        return;
    }
    let mut lab = Lab::new().unwrap();
    for n in ["lma", "mag1", "mag2", "mn1", "cn"] {
        lab.add_node(n).unwrap();
    }
    lab.core(("lma", a(LMA)), &[("mag1", a(MAG1)), ("mag2", a(MAG2))])
        .unwrap();
    lab.veth("lma", "to-cn", "cn", "eth0").unwrap();
    lab.address("lma", "to-cn", a(CN_GW), 64).unwrap();
    lab.address("cn", "eth0", a(CN), 64).unwrap();
    lab.default_route("cn", a(CN_GW)).unwrap();
    lab.veth("mag1", "to-if1", "mn1", "if1").unwrap();
    lab.veth("mag2", "to-if2", "mn1", "if2").unwrap();

    let bin = Path::new(env!("CARGO_BIN_EXE_pmip-node"));
    let mut lma = LmaConfig::new(a(LMA));
    lma.authorized_mags = vec![a(MAG1), a(MAG2)];
    let mut policy = MnPolicy::new(MN, PrefixModel::Unique);
    policy.unique_prefixes = vec![pref(1), pref(2)];
    let dp = json!({"tun": "tun0", "mtu": 1460});
    lab.spawn(
        "lma",
        bin,
        &json!({"role": "lma", "config": lma, "policies": [policy], "data_plane": dp}),
        &[],
    )
    .unwrap();
    for (n, addr, link, att) in [("mag1", MAG1, "to-if1", 4), ("mag2", MAG2, "to-if2", 8)] {
        let mut c = MagConfig::new(a(addr), a(LMA));
        c.mns = ["if1", "if2"]
            .iter()
            .map(|i| MnBinding {
                ll_id: mac_for("mn1", i),
                mn_id: MN.into(),
            })
            .collect();
        lab.spawn(
            n,
            bin,
            &json!({"role": "mag", "config": c, "data_plane": dp, "access": {link: att}}),
            &[],
        )
        .unwrap();
    }
    let mn = MnConfig {
        name: "mn1".into(),
        iid: 1,
        interfaces: vec!["if1".into(), "if2".into()],
        uplink_preference: vec!["if1".into()],
    };
    lab.spawn("mn1", bin, &json!({"role": "mn", "config": mn}), &[])
        .unwrap();

    // RS → attach → PBU/PBA → RA → addresses on lif, with no help from the harness.
    let limit = Duration::from_secs(10);
    let mn_state = lab
        .wait_for("mn1", limit, |s| {
            s["tables"]["lif_addresses"]
                .as_array()
                .is_some_and(|a| a.len() == 2)
        })
        .unwrap_or_else(|e| {
            panic!(
                "{e}\n--- mag1 ---\n{}\n--- mn1 ---\n{}",
                lab.daemon_log("mag1"),
                lab.daemon_log("mn1")
            )
        });
    assert_eq!(
        mn_state["tables"]["lif_addresses"],
        json!(["2001:db8:1::1", "2001:db8:2::1"])
    );
    let lma_state = lab.request("lma", &json!({"cmd": "state"})).unwrap();
    assert_eq!(
        lma_state["state"]["tables"]["binding_cache"]
            .as_array()
            .unwrap()
            .len(),
        2
    );

    // Each sink answers from the address its flow is sent to.
    let sink = |port: u16, n: u8| {
        lab.run_in("mn1", move || {
            UdpSocket::bind(SocketAddrV6::new(pref(n).with_iid(1), port, 0, 0))
        })
        .unwrap()
    };
    let (x_sink, y_sink) = (sink(5001, 1), sink(5002, 2));
    let cn = lab
        .run_in("cn", || {
            UdpSocket::bind(SocketAddrV6::new(a(CN), 7000, 0, 0))
        })
        .unwrap();
    let to_mn = |port: u16, n: u8| {
        cn.send_to(
            b"downlink",
            SocketAddrV6::new(pref(n).with_iid(1), port, 0, 0),
        )
        .unwrap()
    };

    // Neighbour discovery on the access links may take a first packet.
    let deliver = |port: u16, n: u8, sink: &UdpSocket| {
        let deadline = Instant::now() + limit;
        loop {
            to_mn(port, n);
            if receive(sink, Duration::from_millis(200)).is_some() {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "flow to pref{n} port {port} never arrived"
            );
        }
    };
    // Both interfaces solicit at once, so which registers first, and gets
    // pref1, is a race: read the outcome from the tables.
    let mn_tables =
        lab.request("mn1", &json!({"cmd": "state"})).unwrap()["state"]["tables"].clone();
    let iface_of = |p: Prefix| -> String {
        mn_tables["interfaces"]
            .as_array()
            .unwrap()
            .iter()
            .find(|i| {
                i["prefixes"]
                    .as_array()
                    .unwrap()
                    .contains(&json!(p.to_string()))
            })
            .map(|i| i["name"].as_str().unwrap().to_string())
            .unwrap()
    };
    let (x_if, y_if) = (iface_of(pref(1)), iface_of(pref(2)));
    assert_ne!(x_if, y_if, "unique prefixes: one per interface");
    let bid_of = |p: Prefix| -> u64 {
        lma_state["state"]["tables"]["binding_cache"]
            .as_array()
            .unwrap()
            .iter()
            .find(|b| {
                b["hnps"]
                    .as_array()
                    .unwrap()
                    .contains(&json!(p.to_string()))
            })
            .map(|b| b["bid"].as_u64().unwrap())
            .unwrap()
    };
    let (x_bid, y_bid) = (bid_of(pref(1)) as u16, bid_of(pref(2)) as u16);

    deliver(5001, 1, &x_sink);
    deliver(5002, 2, &y_sink);
    assert_eq!(
        downlink_on(&lab, 5001),
        Some(x_if.clone()),
        "flow X arrives on the interface of pref1"
    );
    assert_eq!(
        downlink_on(&lab, 5002),
        Some(y_if.clone()),
        "flow Y arrives on the interface of pref2"
    );

    // The MN answers flow Y: its uplink leaves on if2, where Y arrives.
    y_sink
        .send_to(b"uplink", SocketAddrV6::new(a(CN), 7000, 0, 0))
        .unwrap();
    assert_eq!(
        receive(&cn, limit),
        Some(pref(2).with_iid(1)),
        "the CN gets Y's uplink"
    );
    assert_eq!(counter(&lab, "mn1", &format!("uplink via {y_if}")), 1);

    let bind = LmaCommand::BindFlow {
        mn_id: MN.into(),
        fid: 2,
        fid_pri: 20,
        selector: prefix_selector(pref(2)),
        bids: vec![y_bid],
        action: FlowAction::Forward,
    };
    ok(lab
        .request("lma", &json!({"cmd": "lma", "command": bind}))
        .unwrap());
    ok(lab.request("lma", &json!({"cmd": "lma", "command": LmaCommand::MoveFlow { mn_id: MN.into(), fid: 2, to_bid: x_bid }})).unwrap());
    lab.wait_for("lma", limit, |s| {
        s["tables"]["flow_mobility_cache"][0]["bids"][0] == x_bid
            && s["tables"]["pending"]
                .as_array()
                .is_some_and(|p| p.is_empty())
    })
    .unwrap();

    deliver(5002, 2, &y_sink);
    assert_eq!(
        downlink_on(&lab, 5002),
        Some(x_if.clone()),
        "after the FMI, flow Y arrives on X's interface"
    );
    deliver(5001, 1, &x_sink);
    assert_eq!(
        downlink_on(&lab, 5001),
        Some(x_if.clone()),
        "flow X is untouched"
    );
    y_sink
        .send_to(b"uplink", SocketAddrV6::new(a(CN), 7000, 0, 0))
        .unwrap();
    assert_eq!(
        receive(&cn, limit),
        Some(pref(2).with_iid(1)),
        "the CN gets Y's uplink through MAG1"
    );
    assert_eq!(
        counter(&lab, "mn1", &format!("uplink via {x_if}")),
        1,
        "Y's uplink followed its downlink"
    );
}
