//! An independent decoder agrees: Wireshark's MIPv6 dissector reads the
//! fields the codec wrote, and raises no malformed or length expert info.
//!
//! Needs `tshark` (ci/test.sh installs it). Set PMIPLAB_SKIP_TSHARK=1 to
//! skip on a machine without it; otherwise its absence fails the test.

use std::net::Ipv6Addr;
use std::path::Path;
use std::process::Command;

use pmip_wire::*;

const MAG: &str = "2001:db8:ffff::2";
const LMA: &str = "2001:db8:ffff::1";

/// A classic pcap with LINKTYPE_RAW: each record is a bare IPv6 packet.
fn write_pcap(path: &Path, packets: &[Vec<u8>]) {
    let mut out = Vec::new();
    out.extend_from_slice(&0xa1b2_c3d4u32.to_le_bytes());
    out.extend_from_slice(&2u16.to_le_bytes());
    out.extend_from_slice(&4u16.to_le_bytes());
    out.extend_from_slice(&0i32.to_le_bytes());
    out.extend_from_slice(&0u32.to_le_bytes());
    out.extend_from_slice(&65535u32.to_le_bytes());
    out.extend_from_slice(&101u32.to_le_bytes());
    for (i, p) in packets.iter().enumerate() {
        out.extend_from_slice(&(1_700_000_000u32 + i as u32).to_le_bytes());
        out.extend_from_slice(&0u32.to_le_bytes());
        out.extend_from_slice(&(p.len() as u32).to_le_bytes());
        out.extend_from_slice(&(p.len() as u32).to_le_bytes());
        out.extend_from_slice(p);
    }
    std::fs::write(path, out).unwrap();
}

fn nai() -> MobilityOption {
    MobilityOption::MnIdentifier { subtype: MnIdSubtype::Nai, id: b"mn1@pmip.lab".to_vec() }
}

fn hnp(p: &str) -> MobilityOption {
    MobilityOption::HomeNetworkPrefix { prefix_len: 64, prefix: p.parse().unwrap() }
}

struct Case {
    message: Message,
    from_mag: bool,
    /// (tshark field, expected value) pairs.
    expect: Vec<(&'static str, String)>,
}

fn cases() -> Vec<Case> {
    let mut v = vec![
        Case {
            message: Message::Pbu(Pbu {
                sequence: 4242,
                flags: PbuFlags::proxy(),
                lifetime: 75,
                options: vec![
                    hnp("2001:db8:1::"),
                    nai(),
                    MobilityOption::HandoffIndicator(HandoffIndicator::BetweenInterfaces),
                    MobilityOption::AccessTechnologyType(AccessTechnologyType::EUtran),
                    MobilityOption::Timestamp(Timestamp::from_parts(1_700_000_000, 0x8000)),
                    MobilityOption::LinkLocalAddress("fe80::1".parse().unwrap()),
                ],
            }),
            from_mag: true,
            expect: vec![
                ("mip6.mhtype", "5".into()),
                ("mip6.bu.seqnr", "4242".into()),
                ("mip6.bu.a_flag", "1".into()),
                ("mip6.bu.h_flag", "1".into()),
                ("mip6.bu.l_flag", "0".into()),
                ("mip6.bu.k_flag", "0".into()),
                ("mip6.bu.p_flag", "1".into()),
                ("mip6.bu.lifetime", "75".into()),
                ("mip6.nemo.mnp.pfl", "64".into()),
                ("mip6.nemo.mnp.mnp", "2001:db8:1::".into()),
                ("mip6.hi", "2".into()),
                ("mip6.att", "8".into()),
                ("mip6.mnid.subtype", "1".into()),
                ("mip6.mnid.identifier", "mn1@pmip.lab".into()),
                ("mip6.timestamp_tmp", "Nov 14, 2023 22:13:20.500000000 UTC".into()),
                ("mip6.lila_lla", "fe80::1".into()),
            ],
        },
        Case {
            message: Message::Bri(Bri {
                trigger: RevocationTrigger::InterMagHandoverSameAccessType,
                sequence: 77,
                flags: RevocationFlags { p: true, v: false, g: true },
                options: vec![hnp("2001:db8:2::"), nai()],
            }),
            from_mag: false,
            expect: vec![
                ("mip6.mhtype", "16".into()),
                ("mip6.bri_br.type", "1".into()),
                ("mip6.bri_r.trigger", "2".into()),
                ("mip6.bri_seqnr", "77".into()),
                ("mip6.bri_ip", "1".into()),
                ("mip6.bri_iv", "0".into()),
                ("mip6.bri_ig", "1".into()),
                ("mip6.nemo.mnp.mnp", "2001:db8:2::".into()),
            ],
        },
        Case {
            message: Message::Bra(Bra {
                status: BraStatus::Success,
                sequence: 77,
                flags: RevocationFlags { p: true, v: false, g: false },
                options: vec![],
            }),
            from_mag: true,
            expect: vec![
                ("mip6.mhtype", "16".into()),
                ("mip6.bri_br.type", "2".into()),
                ("mip6.bri_status", "0".into()),
                ("mip6.bri_seqnr", "77".into()),
                ("mip6.bri_ap", "1".into()),
                ("mip6.bri_ag", "0".into()),
            ],
        },
        Case {
            message: Message::Heartbeat(Heartbeat {
                unsolicited: false,
                response: true,
                sequence: 0x0102_0304,
                options: vec![MobilityOption::RestartCounter(9)],
            }),
            from_mag: false,
            expect: vec![
                ("mip6.mhtype", "13".into()),
                ("mip6.hb.u_flag", "0".into()),
                ("mip6.hb.r_flag", "1".into()),
                ("mip6.hb.seqnr", "16909060".into()),
                ("mip6.rc", "9".into()),
            ],
        },
    ];
    let statuses = [0u8, 128, 129, 130, 135, 152, 153, 154, 155, 156, 157, 158, 159, 160, 161, 162];
    for (i, s) in statuses.into_iter().enumerate() {
        let accepted = s == 0;
        v.push(Case {
            message: Message::Pba(Pba {
                status: s.into(),
                flags: PbaFlags { p: true, ..Default::default() },
                sequence: 100 + i as u16,
                lifetime: if accepted { 75 } else { 0 },
                options: if accepted { vec![hnp("2001:db8:1::"), nai()] } else { vec![nai()] },
            }),
            from_mag: false,
            expect: vec![
                ("mip6.mhtype", "6".into()),
                ("mip6.ba.status", s.to_string()),
                ("mip6.ba.p_flag", "1".into()),
                ("mip6.ba.k_flag", "0".into()),
                ("mip6.ba.seqnr", (100 + i).to_string()),
                ("mip6.ba.lifetime", if accepted { "75" } else { "0" }.into()),
                ("mip6.mnid.identifier", "mn1@pmip.lab".into()),
            ],
        });
    }
    v
}

fn tshark_available() -> bool {
    Command::new("tshark").arg("-v").output().map(|o| o.status.success()).unwrap_or(false)
}

#[test]
fn tshark_decodes_what_the_codec_wrote() {
    if !tshark_available() {
        if std::env::var_os("PMIPLAB_SKIP_TSHARK").is_some() {
            eprintln!("tshark not found; skipped because PMIPLAB_SKIP_TSHARK is set");
            return;
        }
        panic!("tshark is not installed: run ci/test.sh (it installs it) or set PMIPLAB_SKIP_TSHARK=1");
    }
    let (mag, lma): (Ipv6Addr, Ipv6Addr) = (MAG.parse().unwrap(), LMA.parse().unwrap());
    let cfg = WireConfig::default();
    let cases = cases();
    let packets: Vec<Vec<u8>> = cases
        .iter()
        .map(|c| {
            let (src, dst) = if c.from_mag { (mag, lma) } else { (lma, mag) };
            let mh = c.message.to_bytes(&Endpoints { src, dst }, &cfg).unwrap();
            Endpoints { src, dst }.ipv6_packet(&mh)
        })
        .collect();
    let dir = std::env::temp_dir().join(format!("pmip-wire-tshark-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let pcap = dir.join("signalling.pcap");
    write_pcap(&pcap, &packets);

    for (i, case) in cases.iter().enumerate() {
        let mut cmd = Command::new("tshark");
        cmd.args(["-n", "-r"]).arg(&pcap).args(["-Y", &format!("frame.number == {}", i + 1)]);
        cmd.args(["-T", "fields", "-E", "separator=|", "-E", "occurrence=f"]);
        for (f, _) in &case.expect {
            cmd.args(["-e", f]);
        }
        let out = cmd.output().expect("tshark runs");
        assert!(out.status.success(), "tshark failed: {}", String::from_utf8_lossy(&out.stderr));
        let line = String::from_utf8_lossy(&out.stdout);
        let got: Vec<&str> = line.trim_end_matches('\n').split('|').collect();
        assert_eq!(got.len(), case.expect.len(), "tshark printed: {line}");
        for ((field, want), got) in case.expect.iter().zip(got.iter()) {
            let got = match *got {
                "True" => "1",
                "False" => "0",
                g => g,
            };
            assert_eq!(got, want, "frame {} ({}): field {field}", i + 1, case.message.name());
        }
    }

    // No expert info of severity warning or error: no malformed packet, no
    // invalid length, nothing Wireshark found wrong.
    let out = Command::new("tshark")
        .args(["-n", "-r"])
        .arg(&pcap)
        .args([
            "-T",
            "fields",
            "-e",
            "frame.number",
            "-e",
            "_ws.expert.severity",
            "-e",
            "_ws.expert.message",
            "-e",
            "_ws.malformed",
        ])
        .output()
        .expect("tshark runs");
    let text = String::from_utf8_lossy(&out.stdout);
    for line in text.lines() {
        let lower = line.to_lowercase();
        assert!(
            !lower.contains("malformed") && !lower.contains("invalid") && !lower.contains("length"),
            "tshark raised expert info: {line}"
        );
        let sev: Vec<&str> = line.split('\t').nth(1).unwrap_or("").split(',').collect();
        assert!(
            sev.iter().all(|s| s.is_empty() || s.parse::<u32>().map(|v| v < 0x0060_0000).unwrap_or(true)),
            "tshark raised a warning or error: {line}"
        );
    }
    if std::env::var_os("PMIPLAB_KEEP_PCAP").is_none() {
        std::fs::remove_dir_all(&dir).ok();
    }
}
