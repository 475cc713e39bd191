//! MAG–LMA signalling protected with ESP (RFC 5213 §4, RFC 4303, AES-GCM
//! per RFC 4106), done by the daemons around their Mobility Header
//! sockets: registration works through it, a replayed ESP packet and a
//! Mobility Header in the clear from a protected peer are refused, and
//! the capture reads in the clear with the lab's keys in Wireshark's ESP
//! table.
//!
//! Needs root; every packet stays inside the test's own namespaces.

mod common;

use common::*;

use std::path::Path;
use std::time::{Duration, Instant};

use pmip_wire::{Endpoints, Message, WireConfig};
use pmiplab::lab::Lab;
use pmiplab::node_config::EspKeys;
use serde_json::json;

fn raw(proto: i32) -> std::io::Result<socket2::Socket> {
    socket2::Socket::new(socket2::Domain::IPV6, socket2::Type::RAW, Some(socket2::Protocol::from(proto)))
}

fn to(addr: &str) -> socket2::SockAddr {
    socket2::SockAddr::from(std::net::SocketAddrV6::new(a(addr), 0, 0, 0))
}

fn refused(lab: &Lab, node: &str, reason: &str) -> u64 {
    let s = lab.request(node, &json!({"cmd": "state"})).unwrap();
    s["state"]["refused"]["by_reason"][reason].as_u64().unwrap_or(0)
}

#[test]
fn signalling_goes_in_esp_replays_and_cleartext_are_refused_and_captures_decrypt() {
    if skip() {
        return;
    }
    let mut lab = seed_network();
    let keys = EspKeys::generate(a(LMA), &[a(MAG1), a(MAG2)]).unwrap();
    let esp = keys.config();
    spawn_seed_daemons(&mut lab, &json!({ "esp": esp }));
    let capture = lab.capture("lma", "to-mag1").unwrap();
    // A listener in the LMA's namespace keeps a copy of what MAG1 sends.
    let tap = lab
        .run_in("lma", || {
            let s = raw(50)?;
            s.set_read_timeout(Some(Duration::from_millis(100)))?;
            Ok(s)
        })
        .unwrap();

    attach_mn1(&lab);
    let before = lma_with_two_bindings(&lab)["tables"].clone();

    // MAG1's PBU as it went on the wire, sent again from MAG1's namespace.
    let end = Instant::now() + Duration::from_secs(3);
    let mut first = None;
    let mut buf = [std::mem::MaybeUninit::<u8>::uninit(); 4096];
    while first.is_none() && Instant::now() < end {
        if let Ok((n, from)) = tap.recv_from(&mut buf) {
            if from.as_socket_ipv6().map(|x| *x.ip()) == Some(a(MAG1)) {
                // SAFETY: recv_from initialised the first n octets; a raw
                // IPv6 socket gives the payload after the IPv6 header.
                first = Some(buf[..n].iter().map(|b| unsafe { b.assume_init() }).collect::<Vec<u8>>());
            }
        }
    }
    let first = first.expect("MAG1's ESP packet was not seen in the LMA's namespace");
    lab.run_in("mag1", move || raw(50)?.send_to(&first, &to(LMA)).map(|_| ())).unwrap();

    // A de-registration in the clear from MAG1's own address and link.
    let pbu = Message::Pbu(if1_deregistration(900));
    let clear = pbu.to_bytes(&Endpoints { src: a(MAG1), dst: a(LMA) }, &WireConfig::default()).unwrap();
    lab.run_in("mag1", move || raw(135)?.send_to(&clear, &to(LMA)).map(|_| ())).unwrap();

    let s = lab
        .wait_for("lma", Duration::from_secs(5), |s| {
            s["refused"]["by_reason"]["ESP replay"].as_u64().unwrap_or(0) >= 1
                && s["refused"]["by_reason"]["unprotected"].as_u64().unwrap_or(0) >= 1
        })
        .unwrap_or_else(|e| panic!("{e}\n--- lma log ---\n{}", lab.daemon_log("lma")));
    assert_eq!(s["tables"], before, "a replay or a cleartext PBU changed the LMA's tables");
    assert_eq!(refused(&lab, "lma", "ESP integrity"), 0);

    // The capture: ESP only; Wireshark reads the Mobility Headers in it
    // with the lab's keys, and not without them.
    let frames = lab.stop_captures().unwrap();
    assert!(frames.iter().any(|(_, p, n)| *p == capture && *n > 0), "{frames:?}");
    if which_tshark().is_none() {
        eprintln!("tshark is not installed: the decryption check is skipped (ci/test.sh installs it)");
        return;
    }
    let tshark = |extra: &[String]| mh_types(&capture, extra);
    // Without the keys only the test's own cleartext PBU reads.
    let opaque = tshark(&[]);
    assert_eq!(opaque.lines().collect::<Vec<_>>(), ["5"], "without the keys only the cleartext PBU decodes");
    let uat: Vec<String> =
        keys.uat_lines().into_iter().flat_map(|l| ["-o".to_string(), format!("uat:esp_sa:{l}")]).collect();
    let clear = tshark(&uat);
    let types: Vec<&str> = clear.lines().collect();
    assert!(types.len() >= 3 && types.contains(&"6"), "PBU (5) and PBA (6) decrypted: {clear:?}");
    assert!(keys.wireshark_esp_sa().contains("AES-GCM with 16 octet ICV [RFC4106]"));
}

/// The Mobility Header types tshark reads in `capture`, one a line, with
/// ESP decryption on and the options `extra` (the SAs, or none).
fn mh_types(capture: &Path, extra: &[String]) -> String {
    let mut cmd = std::process::Command::new("tshark");
    cmd.arg("-r").arg(capture).args(["-o", "esp.enable_encryption_decode:TRUE"]).args(extra);
    cmd.args(["-Y", "mipv6", "-T", "fields", "-e", "mip6.mhtype"]);
    let out = cmd.output().expect("tshark runs");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn which_tshark() -> Option<()> {
    std::process::Command::new("tshark").arg("-v").output().ok().filter(|o| o.status.success()).map(|_| ())
}

/// Removes a test's output folder however the test ends.
struct Folder(std::path::PathBuf);

impl Drop for Folder {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// The catalogue's SEC-ESP-01 in namespaces: `security: { esp: true }`
/// makes the harness key the lab, the daemons protect every MAG–LMA
/// message, the run passes with every message check read from the wire,
/// the captures hold ESP and no Mobility Header in the clear, and tshark
/// reads the signalling with the `esp_sa` file written beside them, and
/// none without it.
#[test]
fn a_lab_with_esp_passes_its_scenario_on_protected_signalling_that_its_written_keys_decrypt() {
    if skip() {
        return;
    }
    let file = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../topologies/sec-esp.yaml");
    let s = pmiplab::scenario::load(&file).unwrap_or_else(|e| panic!("{e}"));
    assert!(s.security.esp.value, "SEC-ESP-01 asks for ESP");
    let out = Folder(std::env::temp_dir().join(format!("pmiplab-esp-lab-test-{}", std::process::id())));
    let _ = std::fs::remove_dir_all(&out.0);
    let bin = Path::new(env!("CARGO_BIN_EXE_pmip-node"));
    let r = pmiplab::run::run_netns(&file, &s, bin, Some(&out.0), Default::default());
    let failed: Vec<String> =
        r.checks.iter().filter(|c| !c.passed()).map(|c| format!("line {}: {}: {}", c.line, c.what, c.detail)).collect();
    assert!(r.verdict == pmiplab::report::Verdict::Pass && failed.is_empty(), "{}", failed.join("\n"));
    // The message checks read the wire: FMI and FMA were among them.
    assert!(r.checks.iter().any(|c| c.what.starts_with("message FMA from mag2") && c.passed()));

    let dir = out.0.join(&s.id);
    let capture = dir.join("lma-to-mag1.pcapng");
    let packets = pmip_captures::pcapng::read(&std::fs::read(&capture).unwrap());
    let next_header =
        |p: &pmip_captures::pcapng::Packet| (p.data.len() > 20 && p.data[12..14] == [0x86, 0xdd]).then(|| p.data[20]);
    let esp = packets.iter().filter(|p| next_header(p) == Some(50)).count();
    let clear = packets.iter().filter(|p| next_header(p) == Some(135)).count();
    assert!(esp >= 4, "PBU, PBA, FMI and FMA of MAG1 in ESP: {esp} ESP frames");
    assert_eq!(clear, 0, "a Mobility Header crossed the core in the clear");

    let table = std::fs::read_to_string(dir.join(pmiplab::netns_run::ESP_SA)).unwrap();
    let records: Vec<&str> = table.lines().filter(|l| !l.starts_with('#') && !l.is_empty()).collect();
    assert_eq!(records.len(), 4, "two SAs per MAG: {table}");
    if which_tshark().is_none() {
        eprintln!("tshark is not installed: the decryption check is skipped (ci/test.sh installs it)");
        return;
    }
    let tshark = |extra: &[String]| mh_types(&capture, extra);
    assert_eq!(tshark(&[]).trim(), "", "without the keys no Mobility Header reads");
    let uat: Vec<String> = records.iter().flat_map(|l| ["-o".to_string(), format!("uat:esp_sa:{l}")]).collect();
    let read = tshark(&uat);
    let types: Vec<&str> = read.lines().collect();
    assert!(types.contains(&"5") && types.contains(&"6"), "the PBU (5) and PBA (6) decrypt with esp_sa: {read:?}");
    assert!(types.contains(&"11"), "the FMI and FMA (type 11) decrypt with esp_sa: {read:?}");
}
