//! The real stack in namespaces: an LMA and two MAGs as `pmip-node`
//! daemons, each in its own network namespace, exchanging Mobility Header
//! messages over raw sockets. The state tables they report equal those the
//! same events give in the virtual-time `World`.
//!
//! Needs root (network namespaces, raw sockets); CI runs as root. Set
//! PMIPLAB_SKIP_NETNS=1 to skip on a machine where that is impossible.

mod common;

use common::*;

use std::path::Path;
use std::time::Duration;

use pmip_proto::lma::{Lma, LmaCommand};
use pmip_proto::mag::Mag;
use pmip_proto::world::World;
use pmip_proto::Span;
use pmip_wire::AccessTechnologyType;
use pmiplab::lab::Lab;
use serde_json::{json, Value};

/// The same events in virtual time, for comparison.
fn virtual_world() -> World {
    let (c, policies) = lma_config();
    let mut lma = Lma::new(c);
    for p in policies {
        lma.add_policy(p);
    }
    let mut w = World::new();
    w.add_lma("lma", lma);
    w.add_mag("mag1", Mag::new(mag_config(MAG1)));
    w.add_mag("mag2", Mag::new(mag_config(MAG2)));
    w
}

fn seed_lab() -> Lab {
    let mut lab = Lab::new().expect("lab");
    for n in ["lma", "mag1", "mag2"] {
        lab.add_node(n).expect("namespace");
    }
    lab.core(("lma", a(LMA)), &[("mag1", a(MAG1)), ("mag2", a(MAG2))]).expect("core links");
    spawn_seed_daemons(&mut lab, &json!({}));
    lab
}

#[test]
fn pbu_pba_and_fmi_fma_over_real_sockets_match_the_virtual_world() {
    if skip() {
        return;
    }
    let lab = seed_lab();
    let limit = Duration::from_secs(5);

    attach_mn1(&lab);

    let bind = bind_flow_y();
    let mv = LmaCommand::MoveFlow { mn_id: MN.into(), fid: 2, to_bid: 1 };
    ok(lab.request("lma", &json!({"cmd": "lma", "command": bind})).unwrap());
    ok(lab.request("lma", &json!({"cmd": "lma", "command": mv})).unwrap());
    lab.wait_for("mag1", limit, |s| s["tables"]["flows"].as_array().is_some_and(|f| f.len() == 1)).unwrap();
    let lma = lab
        .wait_for("lma", limit, |s| {
            s["tables"]["pending"].as_array().is_some_and(|p| p.is_empty())
                && s["tables"]["flow_mobility_cache"][0]["bids"][0] == 1
        })
        .unwrap();

    // The same events in virtual time.
    let mut w = virtual_world();
    w.attach("mn1", "if1", "mag1", "to-if1", AccessTechnologyType::Ieee80211, None, vec![]);
    w.run_for(Span::from_millis(50));
    w.attach("mn1", "if2", "mag2", "to-if2", AccessTechnologyType::EUtran, None, vec![]);
    w.run_for(Span::from_millis(50));
    w.command(bind_again()).expect("the model binds flow Y");
    w.command(LmaCommand::MoveFlow { mn_id: MN.into(), fid: 2, to_bid: 1 }).expect("the model moves flow Y");
    w.run_for(Span::from_millis(50));
    let want = w.state();

    assert_eq!(lma["tables"], serde_json::to_value(&want.lma).unwrap(), "LMA tables differ from the virtual world");
    for mag in ["mag1", "mag2"] {
        let got = lab.request(mag, &json!({"cmd": "state"})).unwrap()["state"]["tables"].clone();
        assert_eq!(got, serde_json::to_value(&want.mags[mag]).unwrap(), "{mag} tables differ from the virtual world");
    }
    let sent: Vec<String> = lma["messages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| {
            format!("{} {}", m["dir"].as_str().unwrap(), m["summary"].as_str().unwrap().split(' ').next().unwrap())
        })
        .collect();
    assert_eq!(
        sent,
        [
            "received PBU",
            "sent PBA",
            "received PBU",
            "sent PBA",
            "sent FMI",
            "received FMA",
            "sent FMI",
            "received FMA"
        ],
        "the LMA's message log"
    );
}

fn bind_again() -> LmaCommand {
    bind_flow_y()
}

#[test]
fn a_pbu_from_an_unknown_mag_is_refused_over_the_wire() {
    if skip() {
        return;
    }
    let mut lab = Lab::new().unwrap();
    for n in ["lma", "mag1"] {
        lab.add_node(n).unwrap();
    }
    let rogue = "2001:db8:ffff::66";
    lab.core(("lma", a(LMA)), &[("mag1", a(rogue))]).unwrap();
    let bin = Path::new(env!("CARGO_BIN_EXE_pmip-node"));
    let (c, policies) = lma_config();
    lab.spawn("lma", bin, &json!({"role": "lma", "config": c, "policies": policies}), &[]).unwrap();
    lab.spawn("mag1", bin, &json!({"role": "mag", "config": mag_config(rogue)}), &[]).unwrap();
    ok(lab.request("mag1", &attach("if1", AccessTechnologyType::Ieee80211)).unwrap());
    let s = lab
        .wait_for("mag1", Duration::from_secs(5), |s| s["tables"]["binding_update_list"][0]["state"] != "registering")
        .unwrap();
    assert_eq!(s["tables"]["binding_update_list"][0]["state"], json!({"rejected": 154}));
    let lma = lab.request("lma", &json!({"cmd": "state"})).unwrap();
    assert_eq!(lma["state"]["tables"]["binding_cache"], json!([]));
}

#[test]
fn the_lab_leaves_nothing_behind_when_dropped() {
    if skip() {
        return;
    }
    let before = host_interfaces();
    let lab = seed_lab();
    let pids = lab.pids();
    let dir = lab.dir.clone();
    assert_eq!(pids.len(), 6);
    assert!(lab.links("lma").unwrap().contains(&"to-mag1".to_string()));
    drop(lab);
    for pid in pids {
        assert!(!Path::new(&format!("/proc/{pid}")).exists(), "process {pid} outlived the lab");
    }
    assert!(!dir.exists(), "the lab's folder outlived it");
    let after = host_interfaces();
    assert_eq!(before, after, "no interface appears in the harness's namespace");
}

/// Not a test on its own: the process the SIGKILL test kills. It builds a
/// lab, writes what it owns to the file named by PMIPLAB_KILL_TEST_PIDS,
/// and waits (at most a minute) to be killed.
#[test]
#[ignore = "run by sigkill_of_the_harness_leaves_no_namespace_interface_or_process"]
fn lab_holder_for_the_kill_test() {
    let out = std::env::var_os("PMIPLAB_KILL_TEST_PIDS").expect("run by the SIGKILL test, which names the file");
    let lab = seed_lab();
    ok(lab.request("mag1", &attach("if1", AccessTechnologyType::Ieee80211)).unwrap());
    let owned = json!({"pids": lab.pids(), "dir": lab.dir});
    let tmp = format!("{}.tmp", out.to_string_lossy());
    std::fs::write(&tmp, owned.to_string()).unwrap();
    std::fs::rename(&tmp, &out).unwrap();
    for _ in 0..600 {
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn sigkill_of_the_harness_leaves_no_namespace_interface_or_process() {
    if skip() {
        return;
    }
    let before = host_interfaces();
    let out = std::env::temp_dir().join(format!("pmiplab-kill-test-{}.json", std::process::id()));
    let _ = std::fs::remove_file(&out);
    let mut child = std::process::Command::new(std::env::current_exe().unwrap())
        .args(["--exact", "lab_holder_for_the_kill_test", "--ignored", "--nocapture", "--test-threads=1"])
        .env("PMIPLAB_KILL_TEST_PIDS", &out)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while !out.exists() {
        assert!(std::time::Instant::now() < deadline, "the lab holder did not build its lab within 30 s");
        if let Ok(Some(s)) = child.try_wait() {
            panic!("the lab holder exited early: {s}");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let owned: Value = serde_json::from_str(&std::fs::read_to_string(&out).unwrap()).unwrap();
    std::fs::remove_file(&out).ok();
    child.kill().unwrap(); // SIGKILL: no destructor runs
    child.wait().unwrap();
    let pids: Vec<u64> = owned["pids"].as_array().unwrap().iter().map(|p| p.as_u64().unwrap()).collect();
    assert_eq!(pids.len(), 6, "three namespace holders and three daemons");
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    for pid in &pids {
        while Path::new(&format!("/proc/{pid}")).exists() {
            assert!(std::time::Instant::now() < deadline, "process {pid} of the killed lab is still alive");
            std::thread::sleep(Duration::from_millis(10));
        }
    }
    assert_eq!(host_interfaces(), before, "no interface of the killed lab is left in this namespace");
    // The next lab sweeps the dead lab's folder.
    let dir = owned["dir"].as_str().unwrap().to_string();
    let next = Lab::new().unwrap();
    assert!(!Path::new(&dir).exists(), "the killed lab's folder {dir} was not swept");
    drop(next);
}

#[test]
fn malformed_mobility_headers_leave_the_daemon_and_its_tables_intact() {
    if skip() {
        return;
    }
    let lab = seed_lab();
    ok(lab.request("mag1", &attach("if1", AccessTechnologyType::Ieee80211)).unwrap());
    let before = lab
        .wait_for("lma", Duration::from_secs(5), |s| {
            s["tables"]["binding_cache"].as_array().is_some_and(|b| b.len() == 1)
        })
        .unwrap();
    // From MAG1's namespace, a raw socket without kernel checksums sends
    // garbage: shorter than its Header Len, a wrong checksum, an option overrunning the header.
    let garbage: Vec<Vec<u8>> = vec![
        vec![59, 3, 5, 0, 0, 0, 0, 1],
        vec![59, 1, 5, 0, 0xde, 0xad, 0, 1, 0xc2, 0, 0, 100, 1, 2, 0, 0],
        vec![59, 9, 5, 0, 0, 0, 0, 1, 0xc2, 0, 0, 100, 22, 200, 0, 0],
    ];
    lab.run_in("mag1", move || {
        let s = socket2::Socket::new(socket2::Domain::IPV6, socket2::Type::RAW, Some(socket2::Protocol::from(135)))?;
        let to = socket2::SockAddr::from(std::net::SocketAddrV6::new(a(LMA), 0, 0, 0));
        for g in &garbage {
            s.send_to(g, &to)?;
        }
        Ok(())
    })
    .unwrap();
    let after = lab
        .wait_for("lma", Duration::from_secs(5), |s| {
            s["events"]
                .as_array()
                .is_some_and(|e| e.iter().filter(|x| x.as_str().unwrap_or("").starts_with("malformed")).count() >= 2)
        })
        .unwrap();
    assert_eq!(after["tables"], before["tables"], "the binding cache is untouched");
    ok(lab.request("lma", &json!({"cmd": "ready"})).unwrap());
}

#[test]
fn userspace_faults_drop_a_pba_and_retransmission_recovers() {
    if skip() {
        return;
    }
    let lab = seed_lab();
    let rule = json!({"direction": "out", "message": "PBA", "action": {"kind": "drop"}, "count": 1});
    let r = lab.request("lma", &json!({"cmd": "fault_add", "rule": rule})).unwrap();
    assert_eq!(r["state"]["id"], 1, "{r}");
    let dup = json!({"direction": "in", "message": "PBA", "action": {"kind": "duplicate"}, "count": 1});
    ok(lab.request("mag1", &json!({"cmd": "fault_add", "rule": dup})).unwrap());
    ok(lab.request("mag1", &attach("if1", AccessTechnologyType::Ieee80211)).unwrap());
    // The first PBA is lost; the MAG retransmits after INITIAL_BINDACK_TIMEOUT (1 s).
    let mag = lab
        .wait_for("mag1", Duration::from_secs(5), |s| s["tables"]["binding_update_list"][0]["state"] == "registered")
        .unwrap();
    let kinds: Vec<String> = mag["messages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| format!("{} {}", m["dir"].as_str().unwrap(), &m["summary"].as_str().unwrap()[..3]))
        .collect();
    assert_eq!(
        kinds,
        ["sent PBU", "sent PBU", "received PBA", "received PBA"],
        "the duplicated PBA is taken once: {kinds:?}"
    );
    assert!(
        mag["events"].as_array().unwrap().iter().any(|e| e.as_str().unwrap().contains("duplicate")),
        "{}",
        mag["events"]
    );
    let lma = lab.request("lma", &json!({"cmd": "state"})).unwrap()["state"].clone();
    assert_eq!(lma["faults"][0]["hits"], 1);
    assert!(lma["messages"].as_array().unwrap().iter().any(|m| m["dir"] == "dropped"));
    ok(lab.request("lma", &json!({"cmd": "fault_remove", "id": 1})).unwrap());
    assert_eq!(lab.request("lma", &json!({"cmd": "fault_remove", "id": 1})).unwrap()["ok"], false);
}
