//! Golden vectors laid out by hand from the RFC diagrams, field by field.
//! The checksum is computed here by a separate, naive implementation of
//! RFC 6275 §6.1.1 so that the codec's own checksum is checked too.

use std::net::Ipv6Addr;

use pmip_wire::*;

const MAG: &str = "2001:db8:ffff::2";
const LMA: &str = "2001:db8:ffff::1";

fn ends() -> Endpoints {
    Endpoints { src: MAG.parse().unwrap(), dst: LMA.parse().unwrap() }
}

/// Naive pseudo-header checksum: sum every 16-bit word, fold, invert.
fn naive_checksum(src: Ipv6Addr, dst: Ipv6Addr, mh: &[u8]) -> u16 {
    let mut words: Vec<u8> = Vec::new();
    words.extend_from_slice(&src.octets());
    words.extend_from_slice(&dst.octets());
    words.extend_from_slice(&(mh.len() as u32).to_be_bytes());
    words.extend_from_slice(&[0, 0, 0, 135]);
    let mut body = mh.to_vec();
    body[4] = 0;
    body[5] = 0;
    words.extend_from_slice(&body);
    if words.len() % 2 == 1 {
        words.push(0);
    }
    let mut sum: u64 = 0;
    for w in words.chunks(2) {
        sum += u64::from(w[0]) << 8 | u64::from(w[1]);
    }
    while sum >> 16 != 0 {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    !(sum as u16)
}

fn hex(s: &str) -> Vec<u8> {
    let clean: String =
        s.lines().map(|l| l.split('#').next().unwrap_or("")).collect::<Vec<_>>().join(" ").split_whitespace().collect();
    (0..clean.len()).step_by(2).map(|i| u8::from_str_radix(&clean[i..i + 2], 16).unwrap()).collect()
}

fn check(vector: &str, expected: Message, cfg: WireConfig) {
    let e = ends();
    let mut bytes = hex(vector);
    assert_eq!(bytes.len() % 8, 0, "golden vector is not a multiple of 8 octets");
    let c = naive_checksum(e.src, e.dst, &bytes);
    bytes[4..6].copy_from_slice(&c.to_be_bytes());
    let parsed = Message::parse(&bytes, &e, &cfg).expect("golden vector parses");
    assert_eq!(parsed, expected);
    assert_eq!(expected.to_bytes(&e, &cfg).unwrap(), bytes, "emit gives the golden bytes back");
    assert_eq!(expected.buffer_len(&cfg), bytes.len());
}

fn nai(s: &str) -> MobilityOption {
    MobilityOption::MnIdentifier { subtype: MnIdSubtype::Nai, id: s.as_bytes().to_vec() }
}

fn hnp(p: &str) -> MobilityOption {
    MobilityOption::HomeNetworkPrefix { prefix_len: 64, prefix: p.parse().unwrap() }
}

#[test]
fn pbu_rfc5213_section_8_1() {
    let v = "
        3b 0a 05 00 0000          # proto 59, len 10 (88 octets), type 5, reserved, checksum
        0001 c200 0064            # seq 1, A|H|P, lifetime 100 (400 s)
        16 12 00 40 20010db8000100000000000000000000   # HNP (22), 18, reserved, /64, 2001:db8:1::
        08 0d 01 6d6e3140706d69702e6c6162              # MN-ID (8), 13, NAI, mn1@pmip.lab
        17 02 00 01               # HI (23): 1 new interface
        18 02 00 04               # ATT (24): 4 802.11
        01 01 00                  # PadN: Timestamp wants 8n+2
        1b 08 000067e4f2a08000    # Timestamp (27): 0x67e4f2a0 s + 0.5
        01 00                     # PadN: Link-local Address wants 8n+6
        1a 10 fe800000000000000211 22fffe334455       # LLA (26)
    ";
    let expected = Message::Pbu(Pbu {
        sequence: 1,
        flags: PbuFlags::proxy(),
        lifetime: 100,
        options: vec![
            hnp("2001:db8:1::"),
            nai("mn1@pmip.lab"),
            MobilityOption::HandoffIndicator(HandoffIndicator::NewInterface),
            MobilityOption::AccessTechnologyType(AccessTechnologyType::Ieee80211),
            MobilityOption::Timestamp(Timestamp::from_parts(0x67e4_f2a0, 0x8000)),
            MobilityOption::LinkLocalAddress("fe80::211:22ff:fe33:4455".parse().unwrap()),
        ],
    });
    check(v, expected, WireConfig::default());
}

#[test]
fn pba_rfc5213_section_8_2_accepted() {
    let v = "
        3b 05 06 00 0000          # proto, len 5 (48 octets), type 6 PBA
        00 20 0001 0064           # status 0, P flag, seq 1, lifetime 100
        16 12 00 40 20010db8000100000000000000000000   # HNP at offset 12 (8n+4)
        08 0d 01 6d6e3140706d69702e6c6162              # MN-ID NAI
        00                        # Pad1 to 48
    ";
    let expected = Message::Pba(Pba {
        status: PbaStatus::Accepted,
        flags: PbaFlags { p: true, ..Default::default() },
        sequence: 1,
        lifetime: 100,
        options: vec![hnp("2001:db8:1::"), nai("mn1@pmip.lab")],
    });
    check(v, expected, WireConfig::default());
}

#[test]
fn pba_reject_154() {
    let v = "
        3b 01 06 00 0000
        9a 20 0007 0000           # 154 MAG_NOT_AUTHORIZED_FOR_PROXY_REG, seq 7
        01 02 0000                # PadN to 16
    ";
    let expected = Message::Pba(Pba {
        status: PbaStatus::MagNotAuthorizedForProxyReg,
        flags: PbaFlags { p: true, ..Default::default() },
        sequence: 7,
        lifetime: 0,
        options: vec![],
    });
    check(v, expected, WireConfig::default());
}

#[test]
fn bri_rfc5846_section_6_1() {
    let v = "
        3b 05 10 00 0000          # type 16 Binding Revocation, len 5 (48 octets)
        01 02 002a 80 00          # BRI, trigger 2 inter-MAG same access, seq 42, P
        16 12 00 40 20010db8000200000000000000000000   # HNP pref2
        08 0d 01 6d6e3140706d69702e6c6162
        00
    ";
    let expected = Message::Bri(Bri {
        trigger: RevocationTrigger::InterMagHandoverSameAccessType,
        sequence: 42,
        flags: RevocationFlags { p: true, ..Default::default() },
        options: vec![hnp("2001:db8:2::"), nai("mn1@pmip.lab")],
    });
    check(v, expected, WireConfig::default());
}

#[test]
fn bra_rfc5846_section_6_2() {
    let v = "
        3b 01 10 00 0000
        02 00 002a 80 00          # BRA, status 0, seq 42, P
        01 02 0000
    ";
    let expected = Message::Bra(Bra {
        status: BraStatus::Success,
        sequence: 42,
        flags: RevocationFlags { p: true, ..Default::default() },
        options: vec![],
    });
    check(v, expected, WireConfig::default());
}

#[test]
fn heartbeat_rfc5847_section_3_1() {
    let v = "
        3b 02 0d 00 0000          # type 13 Heartbeat, len 2 (24 octets)
        00 01 0000beef            # reserved, R (response), sequence 0xbeef
        01 00                     # PadN: Restart Counter wants 4n+2
        1c 04 00000003            # Restart Counter (28) = 3
        01 02 0000                # PadN to 24
    ";
    let expected = Message::Heartbeat(Heartbeat {
        unsolicited: false,
        response: true,
        sequence: 0xbeef,
        options: vec![MobilityOption::RestartCounter(3)],
    });
    check(v, expected, WireConfig::default());
}

#[test]
fn fmi_draft_section_4_1_with_flow_identification() {
    let v = "
        3b 09 0b 00 0000          # type 11 (Experimental) carries FMI/FMA by default; 80 octets
        0005 80 00 012c           # seq 5, I, lifetime 300 s
        08 0d 01 6d6e3140706d69702e6c6162   # MN-ID at 12..27
        00                        # Pad1: Flow Identification wants 2n
        2d 32 0002 0014 00 00     # Flow Id (45), len 50, FID 2, FID-PRI 20, reserved, status
        02 02 0001                # sub-option BID Reference (2): BID 1
        03 26                     # sub-option Traffic Selector (3), 38 octets
        02 00 3000 0000           # TS format 2 (IPv6), flags C|D
        20010db8000200000000000000000000   # start dst
        20010db800020000ffffffffffffffff   # end dst
    ";
    let ts = TrafficSelector::Ipv6(Ipv6Selector {
        start_dst: Some("2001:db8:2::".parse().unwrap()),
        end_dst: Some("2001:db8:2:0:ffff:ffff:ffff:ffff".parse().unwrap()),
        ..Default::default()
    });
    let expected = Message::Fmi(Fmi {
        sequence: 5,
        cancel: false,
        refresh: false,
        lifetime: 300,
        options: vec![
            nai("mn1@pmip.lab"),
            MobilityOption::FlowIdentification(FlowIdentification {
                fid: 2,
                fid_pri: 20,
                status: 0,
                sub_options: vec![FlowSubOption::BindingReference(vec![1]), FlowSubOption::TrafficSelector(ts)],
            }),
        ],
    });
    check(v, expected, WireConfig::default());
}

#[test]
fn fma_draft_section_4_2_on_a_configured_type() {
    let v = "
        3b 01 e0 00 0000          # type 224, as a topology may configure
        0005 00 84 0000           # seq 5, I clear, status 132, lifetime 0
        01 02 0000
    ";
    let expected =
        Message::Fma(Fma { sequence: 5, status: FmaStatus::NoFlowMobilityCacheEntry, lifetime: 0, options: vec![] });
    check(v, expected, WireConfig { flow_mobility_mh_type: 224, ..Default::default() });
}

#[test]
fn upn_and_upa_rfc7077() {
    let upn = "
        3b 01 13 00 0000          # type 19 UPN
        0009 08 80 0000           # seq 9, reason 8 FLOW-MOBILITY, A flag
        01 02 0000
    ";
    check(
        upn,
        Message::Upn(Upn {
            sequence: 9,
            reason: NotificationReason::FlowMobility,
            ack_requested: true,
            deregister: false,
            options: vec![],
        }),
        WireConfig::default(),
    );
    let upa = "
        3b 01 14 00 0000          # type 20 UPA
        0009 84 000000            # seq 9, status 132 MN not attached (RFC 7864)
        01 02 0000
    ";
    check(
        upa,
        Message::Upa(Upa { sequence: 9, status: UpaStatus::MnNotAttached, options: vec![] }),
        WireConfig::default(),
    );
}

#[test]
fn binding_identifier_and_flow_summary_and_unknown_option() {
    let v = "
        3b 03 06 00 0000
        00 20 0002 0064           # PBA accepted
        23 04 0001 00 14          # BID (35): BID 1, status 0, H clear, BID-PRI 20
        2c 04 0002 0004           # Flow Summary (44): FIDs 2, 4
        c8 03 aabbcc              # unknown option 200 kept as it is
        01 01 00                  # PadN to 32
    ";
    let expected = Message::Pba(Pba {
        status: PbaStatus::Accepted,
        flags: PbaFlags { p: true, ..Default::default() },
        sequence: 2,
        lifetime: 100,
        options: vec![
            MobilityOption::BindingIdentifier { bid: 1, status: PbaStatus::Accepted, h: false, bid_pri: 20, coa: None },
            MobilityOption::FlowSummary(vec![2, 4]),
            MobilityOption::Unknown { kind: 200, data: vec![0xaa, 0xbb, 0xcc] },
        ],
    });
    check(v, expected, WireConfig::default());
}

#[test]
fn unknown_mh_type_is_opaque_not_an_error() {
    let v = "
        3b 01 63 00 0000          # type 99
        0102030405060708 0900     # ten octets of message data
    ";
    check(v, Message::Unknown { mh_type: 99, data: hex("0102030405060708 0900") }, WireConfig::default());
}
