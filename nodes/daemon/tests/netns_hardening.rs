//! The daemons as an attacker finds them: spoofed signalling from a node
//! that is not a peer or from the wrong link, a flood of malformed
//! Mobility Headers, an endless control line and a pile of held control
//! connections. Each is refused or absorbed, the bindings stay, memory and
//! logs stay flat, and the daemon keeps answering.
//!
//! Needs root; every packet goes to addresses inside the test's own
//! namespaces.

mod common;

use common::*;

use std::io::{Read, Write};
use std::net::Ipv6Addr;
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::time::{Duration, Instant};

use pmip_proto::world::mac_for;
use pmip_wire::{
    AccessTechnologyType, Bri, Endpoints, HandoffIndicator, Message, MnIdSubtype, MobilityOption, Pbu, PbuFlags,
    RevocationFlags, RevocationTrigger, Timestamp, WireConfig,
};
use pmiplab::frames;
use pmiplab::lab::Lab;
use serde_json::{json, Value};

fn bin() -> &'static Path {
    Path::new(env!("CARGO_BIN_EXE_pmip-node"))
}

/// The seed network with the LMA, MAG1 and MAG2 daemons, MN1's if2 cabled
/// to MAG2, and MN1 registered through if1 at MAG1 and if2 at MAG2.
fn registered_lab() -> Lab {
    let mut lab = seed_network();
    lab.veth("mag2", "to-if2", "mn1", "if2").unwrap();
    spawn_seed_daemons(&mut lab, &json!({}));
    attach_mn1(&lab);
    lma_with_two_bindings(&lab);
    lab
}

/// An IPv6 packet with the Mobility Header `mh` in an Ethernet frame.
fn frame(dst_mac: [u8; 6], src_mac: [u8; 6], src: Ipv6Addr, dst: Ipv6Addr, mh: &[u8]) -> Vec<u8> {
    frames::mh_frame(dst_mac, src_mac, src, dst, mh).unwrap()
}

/// Sends `frame` out of `iface` of `node` through a packet socket: any
/// source address the test likes, as an attacker on that link would.
fn inject(lab: &Lab, node: &str, iface: &'static str, frame: Vec<u8>) {
    lab.run_in(node, move || frames::send_frame(iface, &frame)).unwrap();
}

fn mh(message: &Message, src: &str, dst: &str) -> Vec<u8> {
    message.to_bytes(&Endpoints { src: a(src), dst: a(dst) }, &WireConfig::default()).unwrap()
}

fn now_stamp() -> Timestamp {
    let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos();
    Timestamp::from_unix_nanos(nanos)
}

/// How many packets `node` has refused, by reason (0 if it keeps no count).
fn refused(state: &Value) -> u64 {
    state["refused"]["total"].as_u64().unwrap_or(0)
}

#[test]
fn a_de_registration_pbu_spoofed_by_the_cn_with_mag1s_source_is_refused() {
    if skip() {
        return;
    }
    let lab = registered_lab();
    let before = lab.request("lma", &json!({"cmd": "state"})).unwrap()["state"]["tables"].clone();
    // What MAG1 would send to de-register MN1's if1, sent by the CN on its
    // link to the LMA with MAG1's source address.
    let mut pbu = if1_deregistration(100);
    pbu.options.push(MobilityOption::Timestamp(now_stamp()));
    let pbu = Message::Pbu(pbu);
    let f = frame(
        pmiplab::lab::mac("lma", "to-cn"),
        pmiplab::lab::mac("cn", "eth0"),
        a(MAG1),
        a(LMA),
        &mh(&pbu, MAG1, LMA),
    );
    inject(&lab, "cn", "eth0", f);
    // Either the LMA counts the refusal, or (the hole) the binding goes.
    let s = lab
        .wait_for("lma", Duration::from_secs(3), |s| {
            refused(s) >= 1 || s["tables"]["binding_cache"] != before["binding_cache"]
        })
        .unwrap_or_else(|e| panic!("{e}\n--- lma log ---\n{}", lab.daemon_log("lma")));
    assert_eq!(s["tables"]["binding_cache"], before["binding_cache"], "the spoofed PBU changed the binding cache");
    assert!(s["refused"]["by_reason"].to_string().contains("interface"), "{}", s["refused"]);
    let m1 = lab.request("mag1", &json!({"cmd": "state"})).unwrap();
    assert_eq!(m1["state"]["tables"]["binding_update_list"][0]["state"], "registered");
}

#[test]
fn a_bri_spoofed_by_the_mn_with_the_lmas_source_on_its_access_link_is_refused() {
    if skip() {
        return;
    }
    let lab = registered_lab();
    let before = lab.request("mag2", &json!({"cmd": "state"})).unwrap()["state"]["tables"].clone();
    let bri = Message::Bri(Bri {
        trigger: RevocationTrigger::from(1),
        sequence: 77,
        flags: RevocationFlags { p: true, ..Default::default() },
        options: vec![MobilityOption::MnIdentifier { subtype: MnIdSubtype::Nai, id: MN.as_bytes().to_vec() }],
    });
    let f = frame(
        pmiplab::lab::mac("mag2", "to-if2"),
        pmiplab::lab::mac("mn1", "if2"),
        a(LMA),
        a(MAG2),
        &mh(&bri, LMA, MAG2),
    );
    inject(&lab, "mn1", "if2", f);
    let s = lab
        .wait_for("mag2", Duration::from_secs(3), |s| {
            refused(s) >= 1 || s["tables"]["binding_update_list"] != before["binding_update_list"]
        })
        .unwrap_or_else(|e| panic!("{e}\n--- mag2 log ---\n{}", lab.daemon_log("mag2")));
    assert_eq!(
        s["tables"]["binding_update_list"], before["binding_update_list"],
        "the spoofed BRI revoked the binding"
    );
    assert_eq!(s["tables"]["binding_update_list"][0]["state"], "registered");
    let lma = lab.request("lma", &json!({"cmd": "state"})).unwrap();
    assert_eq!(lma["state"]["tables"]["binding_cache"].as_array().map(Vec::len), Some(2));
}

/// VmRSS of `pid` in kB.
fn rss_kb(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap()
}

#[test]
fn a_flood_of_malformed_mobility_headers_leaves_memory_and_log_flat() {
    if skip() {
        return;
    }
    let lab = registered_lab();
    let pid = lab.daemon_pids()["lma"];
    let log = lab.dir.join("lma.log");
    let tables = lab.request("lma", &json!({"cmd": "state"})).unwrap()["state"]["tables"].clone();
    // From MAG1's namespace, with the kernel computing a valid checksum:
    // Header Len says more than there is, so only the daemon's parser can
    // refuse them. A few thousand first, so the allocator has settled.
    let flood = |count: u64, limit: Duration| -> u64 {
        lab.run_in("mag1", move || {
            let s =
                socket2::Socket::new(socket2::Domain::IPV6, socket2::Type::RAW, Some(socket2::Protocol::from(135)))?;
            let offset: libc::c_int = 4;
            // SAFETY: a plain setsockopt with a valid int.
            unsafe {
                libc::setsockopt(
                    std::os::fd::AsRawFd::as_raw_fd(&s),
                    libc::IPPROTO_IPV6,
                    libc::IPV6_CHECKSUM,
                    (&offset as *const libc::c_int).cast(),
                    4,
                );
            }
            let to = socket2::SockAddr::from(std::net::SocketAddrV6::new(a(LMA), 0, 0, 0));
            let end = Instant::now() + limit;
            let mut sent = 0u64;
            while sent < count && Instant::now() < end {
                let seq = (sent as u16).to_be_bytes();
                let garbage = [59, 3, 5, 0, 0, 0, seq[0], seq[1], 0xc2, 0, 0, 100, 1, 0, 0, 0];
                if s.send_to(&garbage, &to).is_ok() {
                    sent += 1;
                }
            }
            Ok(sent)
        })
        .unwrap()
    };
    flood(5_000, Duration::from_secs(5));
    lab.wait_for("lma", Duration::from_secs(5), |_| true).unwrap();
    let (rss0, log0) = (rss_kb(pid), std::fs::metadata(&log).unwrap().len());
    let started = Instant::now();
    let sent = flood(400_000, Duration::from_secs(8));
    let took = started.elapsed();
    // The LMA still answers, its tables unchanged.
    let after = lab.wait_for("lma", Duration::from_secs(10), |_| true).unwrap();
    let (rss1, log1) = (rss_kb(pid), std::fs::metadata(&log).unwrap().len());
    eprintln!(
        "flood: {sent} packets in {took:?}; the LMA refused {} in all; RSS {rss0} kB -> {rss1} kB; log {log0} -> {log1} bytes",
        refused(&after)
    );
    assert_eq!(after["tables"], tables, "the flood changed the LMA's tables");
    assert!(rss1 < rss0 + 8 * 1024, "RSS grew from {rss0} kB to {rss1} kB");
    assert!(log1 < log0 + 64 * 1024, "the log grew from {log0} to {log1} bytes");
    assert!(after["events"].as_array().is_some_and(|e| e.len() <= 1000), "the event history is bounded");
}

#[test]
fn the_control_socket_survives_an_endless_line_and_a_pile_of_connections() {
    if skip() {
        return;
    }
    let mut lab = Lab::new().unwrap();
    lab.add_node("lma").unwrap();
    lab.core(("lma", a(LMA)), &[]).unwrap();
    let (c, policies) = lma_config();
    lab.spawn("lma", bin(), &json!({"role": "lma", "config": c, "policies": policies}), &[]).unwrap();
    let pid = lab.daemon_pids()["lma"];
    let sock = lab.dir.join("lma.sock");
    let rss0 = rss_kb(pid);

    // 8 MiB with no newline: the daemon answers with an error and hangs up
    // long before that.
    let mut s = UnixStream::connect(&sock).unwrap();
    s.set_write_timeout(Some(Duration::from_secs(10))).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let chunk = vec![b'x'; 64 * 1024];
    let mut written = 0usize;
    while written < 8 << 20 {
        match s.write(&chunk) {
            Ok(n) => written += n,
            Err(_) => break,
        }
    }
    let mut reply = String::new();
    let _ = s.read_to_string(&mut reply);
    assert!(written < 8 << 20, "the daemon took 8 MiB of one line");
    assert!(reply.contains("too long"), "{reply:?}");
    ok(lab.request("lma", &json!({"cmd": "ready"})).unwrap());

    // The daemon may open few files: held connections exhaust them.
    let limit = libc::rlimit { rlim_cur: 64, rlim_max: 64 };
    // SAFETY: prlimit on a child of ours with a valid struct.
    assert_eq!(unsafe { libc::prlimit(pid as i32, libc::RLIMIT_NOFILE, &limit, std::ptr::null_mut()) }, 0);
    let held: Vec<UnixStream> = (0..600).filter_map(|_| UnixStream::connect(&sock).ok()).collect();
    assert!(held.len() >= 100, "only {} connections could be made", held.len());
    // While they are held, and after, the daemon answers.
    let answered = |limit: Duration| {
        let end = Instant::now() + limit;
        loop {
            if lab.request("lma", &json!({"cmd": "ready"})).is_ok_and(|r| r["ok"] == true) {
                return true;
            }
            if Instant::now() > end {
                return false;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    };
    assert!(answered(Duration::from_secs(10)), "no answer while {} connections are held", held.len());
    drop(held);
    assert!(answered(Duration::from_secs(10)), "no answer after the held connections closed");
    let rss1 = rss_kb(pid);
    assert!(rss1 < rss0 + 16 * 1024, "RSS grew from {rss0} kB to {rss1} kB");
}

/// Sends `pbu` from MAG1's namespace (its own address) and returns the
/// PBA the LMA answers with, if one comes within 3 s.
fn pbu_answer(lab: &Lab, pbu: Message) -> Option<pmip_wire::Pba> {
    let bytes = mh(&pbu, MAG1, LMA);
    lab.run_in("mag1", move || {
        let s = socket2::Socket::new(socket2::Domain::IPV6, socket2::Type::RAW, Some(socket2::Protocol::from(135)))?;
        s.set_read_timeout(Some(Duration::from_millis(200)))?;
        s.send_to(&bytes, &socket2::SockAddr::from(std::net::SocketAddrV6::new(a(LMA), 0, 0, 0)))?;
        let end = Instant::now() + Duration::from_secs(3);
        let mut buf = [std::mem::MaybeUninit::<u8>::uninit(); 4096];
        while Instant::now() < end {
            let Ok((n, from)) = s.recv_from(&mut buf) else { continue };
            // SAFETY: recv_from initialised the first n octets.
            let got: Vec<u8> = buf[..n].iter().map(|b| unsafe { b.assume_init() }).collect();
            let from = from.as_socket_ipv6().map(|x| *x.ip());
            let ends = Endpoints { src: a(LMA), dst: a(MAG1) };
            if let (Some(f), Ok(Message::Pba(p))) = (from, Message::parse(&got, &ends, &WireConfig::default())) {
                if f == a(LMA) {
                    return Ok(Some(p));
                }
            }
        }
        Ok(None)
    })
    .unwrap()
}

fn pbu_with(mn_id: &[u8], hnps: usize, seq: u16) -> Message {
    let mut options = vec![MobilityOption::MnIdentifier { subtype: MnIdSubtype::Nai, id: mn_id.to_vec() }];
    for i in 0..hnps.max(1) {
        let p: Ipv6Addr = format!("2001:db8:{}::", 100 + i).parse().unwrap();
        options.push(MobilityOption::HomeNetworkPrefix {
            prefix_len: if hnps == 0 { 0 } else { 64 },
            prefix: if hnps == 0 { Ipv6Addr::UNSPECIFIED } else { p },
        });
    }
    options.push(MobilityOption::HandoffIndicator(HandoffIndicator::NewInterface));
    options.push(MobilityOption::AccessTechnologyType(AccessTechnologyType::Ieee80211));
    options.push(MobilityOption::MnLinkLayerIdentifier(mac_for("mn9", "if1")));
    options.push(MobilityOption::Timestamp(now_stamp()));
    Message::Pbu(Pbu { sequence: seq, flags: PbuFlags::proxy(), lifetime: 100, options })
}

#[test]
fn a_pbu_whose_answer_cannot_be_encoded_gets_a_well_formed_reject() {
    if skip() {
        return;
    }
    let lab = registered_lab();
    let tables = lab.request("lma", &json!({"cmd": "state"})).unwrap()["state"]["tables"].clone();
    // 254 octets that are not UTF-8: read lossily, each becomes three, and
    // no PBA option could hold the MN-ID any more.
    let cases: Vec<(Vec<u8>, usize)> =
        vec![(vec![0xff; 254], 0), (b"mn1\nforged line".to_vec(), 0), (MN.as_bytes().to_vec(), 40)];
    for (i, (id, hnps)) in cases.into_iter().enumerate() {
        let seq = 500 + i as u16;
        let pba = pbu_answer(&lab, pbu_with(&id, hnps, seq))
            .unwrap_or_else(|| panic!("case {i}: no PBA at all\n--- lma log ---\n{}", lab.daemon_log("lma")));
        assert_eq!(pba.sequence, seq, "case {i}");
        assert!(!pba.status.is_accepted(), "case {i}: {:?}", pba.status);
        assert_eq!(pba.lifetime, 0, "case {i}");
    }
    let after = lab.request("lma", &json!({"cmd": "state"})).unwrap()["state"]["tables"].clone();
    assert_eq!(after, tables, "refused PBUs changed the LMA's tables");
    let log = lab.daemon_log("lma");
    assert!(!log.lines().any(|l| l.starts_with("forged")), "a newline from the wire reached the log raw:\n{log}");
}

/// An IPv6 packet holding the ICMPv6 message `icmp`, with hop limit
/// `hops`, in an Ethernet frame.
fn ip6_frame(dst_mac: [u8; 6], src_mac: [u8; 6], hops: u8, src: Ipv6Addr, dst: Ipv6Addr, icmp: &[u8]) -> Vec<u8> {
    frames::ipv6_frame(dst_mac, src_mac, src, dst, 58, hops, icmp).unwrap()
}

/// An ICMPv6 body with its checksum filled for `src` → `dst`.
fn with_checksum(src: Ipv6Addr, dst: Ipv6Addr, mut body: Vec<u8>) -> Vec<u8> {
    body[2] = 0;
    body[3] = 0;
    let c = pmip_wire::checksum::upper_layer_checksum(&src, &dst, 58, &body);
    body[2..4].copy_from_slice(&c.to_be_bytes());
    body
}

const ALL_NODES: Ipv6Addr = Ipv6Addr::new(0xff02, 0, 0, 0, 0, 0, 0, 1);
const ALL_ROUTERS: Ipv6Addr = Ipv6Addr::new(0xff02, 0, 0, 0, 0, 0, 0, 2);

fn ra_body(mac: [u8; 6], prefix: pmip_proto::Prefix) -> Vec<u8> {
    let mut b = vec![134, 0, 0, 0, 64, 0, 0x07, 0x08, 0, 0, 0, 0, 0, 0, 0, 0, 1, 1];
    b.extend_from_slice(&mac);
    b.extend_from_slice(&[3, 4, 64, 0xc0, 0, 1, 0x51, 0x80, 0, 0, 0x38, 0x40, 0, 0, 0, 0]);
    b.extend_from_slice(&prefix.addr().octets());
    b
}

fn rs_body(mac: [u8; 6]) -> Vec<u8> {
    let mut b = vec![133, 0, 0, 0, 0, 0, 0, 0, 1, 1];
    b.extend_from_slice(&mac);
    b
}

#[test]
fn the_mn_takes_only_valid_router_advertisements() {
    if skip() {
        return;
    }
    let mut lab = Lab::new().unwrap();
    for n in ["mag1", "mn1"] {
        lab.add_node(n).unwrap();
    }
    lab.veth("mag1", "to-if1", "mn1", "if1").unwrap();
    let mn = mn1_on_if1();
    lab.spawn("mn1", bin(), &json!({"role": "mn", "config": mn}), &[]).unwrap();
    let router = pmiplab::lab::mac("mag1", "to-if1");
    let ll = frames::link_local(router);
    let dst_mac = [0x33, 0x33, 0, 0, 0, 1];
    // Hop limit 64 (routed from afar), a global source, a wrong checksum:
    // each offers its own prefix, none of which the MN may take.
    let bad_hops =
        ip6_frame(dst_mac, router, 64, ll, ALL_NODES, &with_checksum(ll, ALL_NODES, ra_body(router, pref(7))));
    let global = a("2001:db8:ffff::11");
    let bad_src =
        ip6_frame(dst_mac, router, 255, global, ALL_NODES, &with_checksum(global, ALL_NODES, ra_body(router, pref(8))));
    let mut body = with_checksum(ll, ALL_NODES, ra_body(router, pref(9)));
    body[2] ^= 0x55;
    let bad_sum = ip6_frame(dst_mac, router, 255, ll, ALL_NODES, &body);
    let good = ip6_frame(dst_mac, router, 255, ll, ALL_NODES, &with_checksum(ll, ALL_NODES, ra_body(router, pref(1))));
    for f in [bad_hops, bad_src, bad_sum, good] {
        inject(&lab, "mag1", "to-if1", f);
    }
    let s = lab
        .wait_for("mn1", Duration::from_secs(5), |s| {
            s["tables"]["interfaces"][0]["prefixes"].as_array().is_some_and(|p| !p.is_empty())
        })
        .unwrap();
    assert_eq!(s["tables"]["interfaces"][0]["prefixes"], json!([pref(1).to_string()]), "{s}");
    let refused: Vec<String> =
        s["counters"].as_object().unwrap().keys().filter(|k| k.starts_with("RA refused")).cloned().collect();
    let events = s["events"].to_string();
    for bad in [7, 8, 9] {
        assert!(!events.contains(&format!("2001:db8:{bad}::")), "an invalid RA's prefix was taken: {events}");
    }
    assert_eq!(refused.len(), 3, "{refused:?}");
}

#[test]
fn a_mag_takes_only_valid_router_solicitations() {
    if skip() {
        return;
    }
    let mut lab = Lab::new().unwrap();
    for n in ["lma", "mag1", "mn1"] {
        lab.add_node(n).unwrap();
    }
    lab.core(("lma", a(LMA)), &[("mag1", a(MAG1))]).unwrap();
    lab.veth("mag1", "to-if1", "mn1", "if1").unwrap();
    // A router: its links are in the all-routers group an RS goes to.
    lab.run_in("mag1", || std::fs::write("/proc/sys/net/ipv6/conf/all/forwarding", "1")).unwrap();
    lab.spawn("mag1", bin(), &json!({"role": "mag", "config": mag_config(MAG1), "access": {"to-if1": 4}}), &[])
        .unwrap();
    let (if1, if2) = (mac_for("mn1", "if1"), mac_for("mn1", "if2"));
    let (m1, m2): ([u8; 6], [u8; 6]) = (if1.clone().try_into().unwrap(), if2.clone().try_into().unwrap());
    let dst_mac = [0x33, 0x33, 0, 0, 0, 2];
    let ll1 = frames::link_local(m1);
    // MN1's if1 solicits with hop limit 64, then from a global address:
    // neither may attach it. Then if2's MAC, validly: that one attaches.
    let bad_hops = ip6_frame(dst_mac, m1, 64, ll1, ALL_ROUTERS, &with_checksum(ll1, ALL_ROUTERS, rs_body(m1)));
    let global = a("2001:db8:1::1");
    let bad_src = ip6_frame(dst_mac, m1, 255, global, ALL_ROUTERS, &with_checksum(global, ALL_ROUTERS, rs_body(m1)));
    let mut body = with_checksum(ll1, ALL_ROUTERS, rs_body(m1));
    body[2] ^= 0x55;
    let bad_sum = ip6_frame(dst_mac, m1, 255, ll1, ALL_ROUTERS, &body);
    let ll2 = frames::link_local(m2);
    let good = ip6_frame(dst_mac, m2, 255, ll2, ALL_ROUTERS, &with_checksum(ll2, ALL_ROUTERS, rs_body(m2)));
    for f in [bad_hops, bad_src, bad_sum, good] {
        inject(&lab, "mn1", "if1", f);
    }
    let s = lab
        .wait_for("mag1", Duration::from_secs(5), |s| {
            s["tables"]["binding_update_list"].as_array().is_some_and(|b| !b.is_empty())
        })
        .unwrap();
    let bul = s["tables"]["binding_update_list"].as_array().unwrap();
    let hex = |m: [u8; 6]| m.iter().map(|b| format!("{b:02x}")).collect::<Vec<_>>().join(":");
    assert_eq!(bul.len(), 1, "{bul:?}");
    assert_eq!(bul[0]["mn_ll_id"], hex(m2), "an invalid RS attached an MN: {bul:?}");
    let pbus = s["messages"].as_array().unwrap().iter().filter(|m| m["dir"] == "sent").count();
    assert_eq!(pbus, 1, "an invalid RS made the MAG register an MN: {}", s["messages"]);
    assert!(s["refused"]["total"].as_u64().unwrap_or(0) >= 2, "{}", s["refused"]);
}
