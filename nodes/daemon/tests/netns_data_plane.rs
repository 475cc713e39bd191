//! Real packets through the userspace tunnel: a CN sends UDP flows X (to
//! pref1) and Y (to pref2) to an MN host with if1 on MAG1 and if2 on MAG2;
//! the LMA's daemon classifies, encapsulates IPv6-in-IPv6 to the MAG, the
//! MAG decapsulates and routes onto the access link. Then the LMA moves
//! flow Y to MAG1 by FMI and Y arrives on if1.
//!
//! The MN here is a plain host with static addresses: the MN daemon (its
//! logical interface, RS/RA and uplink that follows downlink) is not built
//! yet. Needs root; PMIPLAB_SKIP_NETNS=1 skips it where that is impossible.

mod common;

use common::*;

use std::io::IoSliceMut;
use std::net::{Ipv6Addr, SocketAddrV6, UdpSocket};
use std::os::fd::AsRawFd;
use std::path::Path;
use std::time::{Duration, Instant};

use nix::sys::socket::{recvmsg, setsockopt, sockopt, ControlMessageOwned, MsgFlags, SockaddrIn6};
use pmip_proto::lma::{LmaCommand, LmaConfig, MnPolicy, PrefixModel};
use pmip_proto::mag::{MagConfig, MnBinding};
use pmip_proto::world::mac_for;

use serde_json::json;

/// Waits for one datagram and says on which interface index it arrived.
fn arrival(sock: &UdpSocket, limit: Duration) -> Option<u32> {
    let deadline = Instant::now() + limit;
    sock.set_nonblocking(true).ok()?;
    let mut buf = [0u8; 2048];
    let mut cmsg = nix::cmsg_space!(nix::libc::in6_pktinfo);
    loop {
        let mut iov = [IoSliceMut::new(&mut buf)];
        match recvmsg::<SockaddrIn6>(sock.as_raw_fd(), &mut iov, Some(&mut cmsg), MsgFlags::empty()) {
            Ok(msg) => {
                for c in msg.cmsgs().ok()? {
                    if let ControlMessageOwned::Ipv6PacketInfo(info) = c {
                        return Some(info.ipi6_ifindex);
                    }
                }
                return Some(0);
            }
            Err(nix::errno::Errno::EAGAIN) if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(2)),
            Err(_) => return None,
        }
    }
}

#[test]
fn flows_cross_the_userspace_tunnel_and_follow_an_fmi_move() {
    if skip() {
        return;
    }
    let mut lab = seed_network();
    lab.veth("mag1", "to-if1", "mn1", "if1").unwrap();
    lab.veth("mag2", "to-if2", "mn1", "if2").unwrap();
    lab.address("mn1", "if1", pref(1).with_iid(1), 64).unwrap();
    lab.address("mn1", "if2", pref(2).with_iid(1), 64).unwrap();

    let bin = Path::new(env!("CARGO_BIN_EXE_pmip-node"));
    let mut lma = LmaConfig::new(a(LMA));
    lma.authorized_mags = vec![a(MAG1), a(MAG2)];
    let mut policy = MnPolicy::new(MN, PrefixModel::Unique);
    policy.unique_prefixes = vec![pref(1), pref(2)];
    // The data fault below acts on the userspace datapath.
    let dp = json!({"tun": "tun0", "mtu": 1460, "datapath": "userspace"});
    lab.spawn("lma", bin, &json!({"role": "lma", "config": lma, "policies": [policy], "data_plane": dp}), &[]).unwrap();
    for (n, addr) in [("mag1", MAG1), ("mag2", MAG2)] {
        let mut c = MagConfig::new(a(addr), a(LMA));
        c.mns = ["if1", "if2"].iter().map(|i| MnBinding { ll_id: mac_for("mn1", i), mn_id: MN.into() }).collect();
        lab.spawn(n, bin, &json!({"role": "mag", "config": c, "data_plane": dp}), &[]).unwrap();
    }
    let limit = Duration::from_secs(5);
    for (mag, iface, att) in [("mag1", "if1", 4), ("mag2", "if2", 8)] {
        ok(lab
            .request(
                mag,
                &json!({"cmd": "attach", "iface": format!("to-{iface}"), "ll_id": mac_for("mn1", iface), "att": att}),
            )
            .unwrap());
        lab.wait_for(mag, limit, |s| s["tables"]["binding_update_list"][0]["state"] == "registered").unwrap();
    }

    // Sockets opened inside their namespaces, used from here.
    let sink = |port: u16| {
        lab.run_in("mn1", move || {
            let s = UdpSocket::bind(SocketAddrV6::new(Ipv6Addr::UNSPECIFIED, port, 0, 0))?;
            setsockopt(&s, sockopt::Ipv6RecvPacketInfo, &true).map_err(std::io::Error::from)?;
            Ok(s)
        })
        .unwrap()
    };
    let (x_sink, y_sink) = (sink(5001), sink(5002));
    let if_index = |name: &'static str| {
        lab.run_in("mn1", move || nix::net::if_::if_nametoindex(name).map_err(std::io::Error::from)).unwrap()
    };
    let (if1, if2) = (if_index("if1"), if_index("if2"));
    let cn = lab.run_in("cn", || UdpSocket::bind(SocketAddrV6::new(a(CN), 7000, 0, 0))).unwrap();
    let send = |port: u16, n: u8| {
        cn.send_to(b"pmiplab probe", SocketAddrV6::new(pref(n).with_iid(1), port, 0, 0)).unwrap();
    };

    send(5001, 1);
    assert_eq!(arrival(&x_sink, limit), Some(if1), "flow X (to pref1) arrives on if1 through MAG1");
    send(5002, 2);
    assert_eq!(arrival(&y_sink, limit), Some(if2), "flow Y (to pref2) arrives on if2 through MAG2");

    let bind = bind_flow_y();
    ok(lab.request("lma", &json!({"cmd": "lma", "command": bind})).unwrap());
    ok(lab
        .request("lma", &json!({"cmd": "lma", "command": LmaCommand::MoveFlow { mn_id: MN.into(), fid: 2, to_bid: 1 }}))
        .unwrap());
    lab.wait_for("mag1", limit, |s| {
        s["data_plane"]["installed"]
            .as_array()
            .is_some_and(|i| i.iter().any(|r| r.as_str().unwrap_or("").starts_with("route 2001:db8:2::/64 dev to-if1")))
    })
    .unwrap();
    lab.wait_for("lma", limit, |s| s["tables"]["flow_mobility_cache"][0]["bids"][0] == 1).unwrap();

    send(5002, 2);
    assert_eq!(arrival(&y_sink, limit), Some(if1), "after the FMI, flow Y arrives on if1 through MAG1");
    send(5001, 1);
    assert_eq!(arrival(&x_sink, limit), Some(if1), "flow X is untouched");

    let lma_state = lab.request("lma", &json!({"cmd": "state"})).unwrap();
    let counters = &lma_state["state"]["data_plane"]["counters"];
    assert_eq!(counters["encapsulated"], 4, "{counters}");
    for mag in ["mag1", "mag2"] {
        let s = lab.request(mag, &json!({"cmd": "state"})).unwrap();
        assert!(
            s["state"]["data_plane"]["counters"]["decapsulated"].as_u64().unwrap_or(0) >= 1,
            "{mag}: {}",
            s["state"]["data_plane"]
        );
    }

    // A data fault: the LMA drops the next two downlink packets it tunnels.
    let rule = json!({"direction": "out", "data": true, "action": {"kind": "drop"}, "count": 2});
    ok(lab.request("lma", &json!({"cmd": "fault_add", "rule": rule})).unwrap());
    for _ in 0..3 {
        send(5001, 1);
    }
    assert_eq!(arrival(&x_sink, limit), Some(if1), "the third packet arrives");
    assert_eq!(arrival(&x_sink, Duration::from_millis(200)), None, "and only the third");
    let s = lab.request("lma", &json!({"cmd": "state"})).unwrap();
    assert_eq!(s["state"]["data_plane"]["counters"]["dropped: fault rule"], 2, "{}", s["state"]["data_plane"]);
}
