//! The Wireshark Lua dissector shipped in `captures/wireshark/pmiplab.lua`
//! reads, field by field, the FMI/FMA, UPN/UPA and flow options that
//! `pmip-wire` writes, verifies their checksum, and flags a bad one.
//!
//! Needs `tshark` (ci/test.sh installs it). Set PMIPLAB_SKIP_TSHARK=1 to
//! skip on a machine without it; otherwise its absence fails the test.

use std::net::Ipv6Addr;
use std::path::{Path, PathBuf};
use std::process::Command;

use pmip_wire::*;

const LINKTYPE_RAW: u16 = 101;

fn script() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("wireshark/pmiplab.lua")
}

fn nai() -> MobilityOption {
    MobilityOption::MnIdentifier { subtype: MnIdSubtype::Nai, id: b"mn1@pmip.lab".to_vec() }
}

fn flow(fid: u16, fid_pri: u16, bids: Vec<u16>) -> MobilityOption {
    let ts = TrafficSelector::Ipv6(Ipv6Selector {
        start_dst: Some("2001:db8:2::".parse().unwrap()),
        end_dst: Some("2001:db8:2:0:ffff:ffff:ffff:ffff".parse().unwrap()),
        start_dst_port: Some(5002),
        end_dst_port: Some(5003),
        start_next_header: Some(17),
        end_next_header: Some(17),
        ..Default::default()
    });
    MobilityOption::FlowIdentification(FlowIdentification {
        fid,
        fid_pri,
        status: 0,
        sub_options: vec![FlowSubOption::BindingReference(bids), FlowSubOption::TrafficSelector(ts)],
    })
}

struct Case {
    message: Message,
    cfg: WireConfig,
    /// Corrupt the checksum after emitting.
    bad_checksum: bool,
    /// (field, every occurrence joined by commas).
    expect: Vec<(&'static str, &'static str)>,
}

fn case(message: Message, expect: Vec<(&'static str, &'static str)>) -> Case {
    Case { message, cfg: WireConfig::default(), bad_checksum: false, expect }
}

fn cases() -> Vec<Case> {
    let fmi = Message::Fmi(Fmi {
        sequence: 7,
        cancel: false,
        refresh: false,
        lifetime: 300,
        options: vec![nai(), flow(2, 20, vec![1])],
    });
    vec![
        case(
            fmi.clone(),
            vec![
                ("pmip.msg", "FMI"),
                ("pmip.seq", "7"),
                ("pmip.fm.i", "1"),
                ("pmip.fmi.c", "0"),
                ("pmip.lifetime", "300"),
                ("pmip.checksum.status", "1"),
                ("pmip.mnid", "mn1@pmip.lab"),
                ("pmip.fid", "2"),
                ("pmip.fid.pri", "20"),
                ("pmip.bidref", "1"),
                ("pmip.ts.format", "2"),
                ("pmip.ts.flags", "0x3033"),
                ("pmip.ts.dst", "2001:db8:2::,2001:db8:2:0:ffff:ffff:ffff:ffff"),
                ("pmip.ts.dport", "5002,5003"),
                ("pmip.ts.next_header", "17,17"),
                ("_ws.col.Info", "FMI seq=7 op=add lifetime=300"),
            ],
        ),
        case(
            Message::Fmi(Fmi {
                sequence: 8,
                cancel: true,
                refresh: false,
                lifetime: 0,
                options: vec![nai(), flow(2, 20, vec![2])],
            }),
            vec![("pmip.fmi.c", "1"), ("pmip.bidref", "2"), ("_ws.col.Info", "FMI seq=8 op=del lifetime=0")],
        ),
        case(
            Message::Fma(Fma {
                sequence: 7,
                status: FmaStatus::FlowMobilityCacheEntryExists,
                lifetime: 0,
                options: vec![nai()],
            }),
            vec![("pmip.msg", "FMA"), ("pmip.fm.i", "0"), ("pmip.fma.status", "133"), ("pmip.checksum.status", "1")],
        ),
        case(
            Message::Upn(Upn {
                sequence: 9,
                reason: NotificationReason::FlowMobility,
                ack_requested: true,
                deregister: false,
                options: vec![
                    nai(),
                    MobilityOption::HomeNetworkPrefix { prefix_len: 64, prefix: "2001:db8:2::".parse().unwrap() },
                    flow(3, 30, vec![1, 2]),
                ],
            }),
            vec![
                ("pmip.msg", "UPN"),
                ("pmip.upn.reason", "8"),
                ("pmip.upn.a", "1"),
                ("pmip.upn.d", "0"),
                ("pmip.hnp", "2001:db8:2::"),
                ("pmip.hnp.len", "64"),
                ("pmip.bidref", "1,2"),
                ("pmip.checksum.status", "1"),
            ],
        ),
        case(
            Message::Upa(Upa { sequence: 9, status: UpaStatus::ReasonUnspecified, options: vec![nai()] }),
            vec![("pmip.msg", "UPA"), ("pmip.upa.status", "131"), ("pmip.checksum.status", "1")],
        ),
        case(
            Message::Pbu(Pbu {
                sequence: 4,
                flags: PbuFlags::proxy(),
                lifetime: 100,
                options: vec![nai(), MobilityOption::FlowSummary(vec![1, 2]), flow(1, 10, vec![1])],
            }),
            // Wireshark's own dissector keeps the PBU; the flow options are ours.
            vec![
                ("mip6.mhtype", "5"),
                ("mip6.mnid.identifier", "mn1@pmip.lab"),
                ("pmip.fs.fid", "1,2"),
                ("pmip.fid", "1"),
                ("pmip.checksum.status", "1"),
            ],
        ),
        // Every Mobility Header's checksum is verified, not only the
        // messages the Lua tree decodes itself.
        case(
            Message::Pba(Pba {
                status: PbaStatus::from(0),
                flags: PbaFlags { p: true, ..Default::default() },
                sequence: 4,
                lifetime: 100,
                options: vec![nai()],
            }),
            vec![("mip6.mhtype", "6"), ("pmip.checksum.status", "1")],
        ),
        Case {
            message: Message::Pba(Pba {
                status: PbaStatus::from(0),
                flags: PbaFlags { p: true, ..Default::default() },
                sequence: 5,
                lifetime: 100,
                options: vec![nai()],
            }),
            cfg: WireConfig::default(),
            bad_checksum: true,
            expect: vec![("mip6.mhtype", "6"), ("pmip.checksum.status", "0")],
        },
        // What an LMA and a MAG send in the RFC 7864 profile: the core's
        // FMI[del] framed as a UPN with D set, its FMA 129 as a UPA 132.
        case(
            Profile::Rfc7864.outgoing(Message::Fmi(Fmi {
                sequence: 8,
                cancel: true,
                refresh: false,
                lifetime: 0,
                options: vec![nai(), flow(2, 20, vec![])],
            })),
            vec![
                ("pmip.mhtype", "19"),
                ("pmip.msg", "UPN"),
                ("pmip.upn.reason", "8"),
                ("pmip.upn.a", "1"),
                ("pmip.upn.d", "1"),
                ("pmip.fid", "2"),
                ("pmip.checksum.status", "1"),
            ],
        ),
        case(
            Profile::Rfc7864.outgoing(Message::Fma(Fma {
                sequence: 8,
                status: FmaStatus::MnNotAttached,
                lifetime: 0,
                options: vec![nai()],
            })),
            vec![("pmip.mhtype", "20"), ("pmip.msg", "UPA"), ("pmip.upa.status", "132"), ("pmip.checksum.status", "1")],
        ),
        Case {
            message: fmi.clone(),
            cfg: WireConfig { flow_mobility_mh_type: 200, ..Default::default() },
            bad_checksum: false,
            expect: vec![("pmip.mhtype", "200"), ("pmip.msg", "FMI"), ("pmip.checksum.status", "1")],
        },
        Case {
            message: fmi,
            cfg: WireConfig::default(),
            bad_checksum: true,
            expect: vec![("pmip.msg", "FMI"), ("pmip.checksum.status", "0")],
        },
    ]
}

fn tshark_available() -> bool {
    Command::new("tshark").arg("-v").output().map(|o| o.status.success()).unwrap_or(false)
}

/// Runs tshark with the dissector on `pcap`, one line per frame with the
/// given fields (every occurrence, comma-separated).
fn fields(pcap: &Path, fmi_type: u8, fields: &[&str]) -> Vec<Vec<String>> {
    let mut cmd = Command::new("tshark");
    cmd.arg("-X").arg(format!("lua_script:{}", script().display()));
    cmd.args(["-o", &format!("pmip.fmi_mh_type:{fmi_type}"), "-n", "-r"]).arg(pcap);
    cmd.args(["-T", "fields", "-E", "separator=|", "-E", "occurrence=a", "-E", "aggregator=,"]);
    for f in fields {
        cmd.args(["-e", f]);
    }
    let out = cmd.output().expect("tshark runs");
    assert!(out.status.success(), "tshark failed: {}", String::from_utf8_lossy(&out.stderr));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!stderr.contains("Lua: Error"), "the dissector failed to load: {stderr}");
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| l.split('|').map(|v| v.replace("True", "1").replace("False", "0")).collect())
        .collect()
}

#[test]
fn the_lua_dissector_reads_what_the_codec_wrote_and_checks_the_checksum() {
    if !tshark_available() {
        if std::env::var_os("PMIPLAB_SKIP_TSHARK").is_some() {
            eprintln!("tshark not found; skipped because PMIPLAB_SKIP_TSHARK is set");
            return;
        }
        panic!("tshark is not installed: run ci/test.sh (it installs it) or set PMIPLAB_SKIP_TSHARK=1");
    }
    let (lma, mag): (Ipv6Addr, Ipv6Addr) = ("2001:db8:ffff::1".parse().unwrap(), "2001:db8:ffff::11".parse().unwrap());
    let ends = Endpoints { src: lma, dst: mag };
    let dir = std::env::temp_dir().join(format!("pmip-lua-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    for (i, c) in cases().iter().enumerate() {
        let mut mh = c.message.to_bytes(&ends, &c.cfg).unwrap();
        if c.bad_checksum {
            mh[4] ^= 0x5a;
        }
        // One file per case, so that each can name its own FMI/FMA type.
        let pcap = dir.join(format!("case-{i}.pcapng"));
        let mut w =
            pmip_captures::pcapng::Writer::new(std::fs::File::create(&pcap).unwrap(), &[("core", LINKTYPE_RAW)])
                .unwrap();
        w.packet(0, 1_700_000_000_000_000, &ends.ipv6_packet(&mh)).unwrap();
        w.flush().unwrap();
        drop(w);

        let names: Vec<&str> = c.expect.iter().map(|(f, _)| *f).collect();
        let rows = fields(&pcap, c.cfg.flow_mobility_mh_type, &names);
        assert_eq!(rows.len(), 1, "case {i}: one frame");
        for ((field, want), got) in c.expect.iter().zip(&rows[0]) {
            assert_eq!(got, want, "case {i} ({}): field {field}", c.message.name());
        }
        // Only the corrupted checksum draws expert info; nothing is
        // malformed. Wireshark's own dissector notes that it leaves options
        // 44 and 45 of a PBU undissected: those are the ones the Lua tree
        // decodes, so that note is not counted.
        let expert = fields(&pcap, c.cfg.flow_mobility_mh_type, &["_ws.expert.message", "_ws.malformed"]);
        let messages: Vec<&str> =
            expert[0][0].split(',').filter(|m| !m.is_empty() && *m != "IE data not dissected yet").collect();
        assert!(expert[0][1].is_empty(), "case {i}: malformed: {:?}", expert[0]);
        if c.bad_checksum {
            assert_eq!(messages, ["Bad Mobility Header checksum"], "case {i}");
        } else {
            assert!(messages.is_empty(), "case {i} ({}): expert info {messages:?}", c.message.name());
        }
    }
    std::fs::remove_dir_all(&dir).ok();
}
