//! Malformed input gives a typed error that says what and where.

use pmip_wire::*;

fn ends() -> Endpoints {
    Endpoints { src: "2001:db8::2".parse().unwrap(), dst: "2001:db8::1".parse().unwrap() }
}

fn pba_with(options: Vec<MobilityOption>) -> Vec<u8> {
    Message::Pba(Pba { status: PbaStatus::Accepted, flags: PbaFlags::default(), sequence: 1, lifetime: 10, options })
        .to_bytes(&ends(), &WireConfig::default())
        .unwrap()
}

fn refix_checksum(b: &mut [u8]) {
    MhPacket::new_unchecked(b).fill_checksum(&ends());
}

fn parse(b: &[u8]) -> WireError {
    Message::parse(b, &ends(), &WireConfig::default()).unwrap_err()
}

#[test]
fn wrong_checksum() {
    let mut b = pba_with(vec![]);
    b[5] ^= 0xff;
    let e = parse(&b);
    assert_eq!(e.offset, 4);
    assert!(matches!(e.kind, ErrorKind::Checksum { .. }), "{e}");
    assert!(e.to_string().contains("checksum at offset 4"), "{e}");
}

#[test]
fn header_len_beyond_buffer() {
    let mut b = pba_with(vec![]);
    b[1] = 9;
    let e = parse(&b);
    assert_eq!(e.kind, ErrorKind::HeaderLenBeyondBuffer { declared: 80, available: 16 });
    assert_eq!(e.offset, 1);
}

#[test]
fn shorter_than_the_mobility_header() {
    let e = parse(&[59, 0, 5]);
    assert_eq!(e.kind, ErrorKind::Truncated { needed: 8, available: 3 });
}

#[test]
fn message_too_short_for_its_type() {
    // Header Len 0 (8 octets) cannot hold a PBU's fixed fields.
    let mut b = vec![59, 0, 5, 0, 0, 0, 0, 1];
    refix_checksum(&mut b);
    let e = parse(&b);
    assert_eq!(e.kind, ErrorKind::MessageTooShort { mh_type: 5, needed: 12, found: 8 });
}

#[test]
fn wrong_payload_proto() {
    let mut b = pba_with(vec![]);
    b[0] = 6;
    refix_checksum(&mut b);
    assert_eq!(parse(&b).kind, ErrorKind::PayloadProto { found: 6 });
}

#[test]
fn option_overrunning_the_header() {
    let mut b = pba_with(vec![]);
    // Options at 12: replace the PadN(2) with an HNP claiming 18 octets.
    b[12] = 22;
    b[13] = 18;
    refix_checksum(&mut b);
    let e = parse(&b);
    assert_eq!(e.offset, 12);
    assert_eq!(e.kind, ErrorKind::OptionOverrun { option_type: 22, declared: 18, available: 2 });
}

#[test]
fn wrong_fixed_option_length() {
    let mut b = pba_with(vec![MobilityOption::HandoffIndicator(HandoffIndicator::NewInterface)]);
    // HI at offset 12 with length 2: claim 1 instead and pad the freed octet.
    assert_eq!(b[12], 23);
    b[13] = 1;
    b[15] = 0; // now a Pad1
    refix_checksum(&mut b);
    let e = parse(&b);
    assert_eq!(e.offset, 12);
    assert_eq!(e.kind, ErrorKind::OptionLength { option_type: 23, expected: "exactly 2", found: 1 });
    assert!(e.to_string().contains("requires exactly 2"), "{e}");
}

#[test]
fn traffic_selector_shorter_than_its_flags() {
    let fi = MobilityOption::FlowIdentification(FlowIdentification {
        fid: 1,
        fid_pri: 1,
        status: 0,
        sub_options: vec![FlowSubOption::TrafficSelector(TrafficSelector::Ipv6(Ipv6Selector {
            start_dst_port: Some(80),
            ..Default::default()
        }))],
    });
    let mut b = pba_with(vec![fi]);
    // The TS flags are at option offset 2+6+2+2 = 12 from the option start (12).
    assert_eq!(b[12], 45);
    let flags_at = 12 + 2 + 6 + 2 + 2;
    b[flags_at] |= 0x80; // also announce a source address that is not there
    refix_checksum(&mut b);
    let e = parse(&b);
    assert!(matches!(e.kind, ErrorKind::TrafficSelectorTruncated { format: 2, needed: 18, found: 2 }), "{e:?}");
    assert_eq!(e.offset, 12 + 2 + 6 + 2);
}

#[test]
fn lax_decoder_reads_what_it_can_of_a_truncated_pbu() {
    let b = Message::Pbu(Pbu {
        sequence: 3,
        flags: PbuFlags::proxy(),
        lifetime: 10,
        options: vec![
            MobilityOption::MnIdentifier { subtype: MnIdSubtype::Nai, id: b"mn1@lab".to_vec() },
            MobilityOption::HomeNetworkPrefix { prefix_len: 64, prefix: "2001:db8:1::".parse().unwrap() },
        ],
    })
    .to_bytes(&ends(), &WireConfig::default())
    .unwrap();
    let cut = &b[..30];
    let d = lax::decode(cut, Some(&ends()), &WireConfig::default());
    assert_eq!(d.mh_type, Some(5));
    let Some(Message::Pbu(p)) = &d.message else { panic!("fixed part should decode: {d:?}") };
    assert_eq!(p.sequence, 3);
    assert_eq!(p.options.len(), 1, "the MN-ID fits, the HNP does not");
    assert!(matches!(d.problems[0].kind, ErrorKind::HeaderLenBeyondBuffer { .. }));
    assert!(d.problems.iter().any(|e| matches!(e.kind, ErrorKind::OptionOverrun { option_type: 22, .. })));
}

#[test]
fn lax_decoder_reports_a_bad_checksum_and_still_decodes() {
    let mut b = pba_with(vec![]);
    b[4] ^= 1;
    let d = lax::decode(&b, Some(&ends()), &WireConfig::default());
    assert!(matches!(d.message, Some(Message::Pba(_))));
    assert_eq!(d.problems.len(), 1);
    assert!(matches!(d.problems[0].kind, ErrorKind::Checksum { .. }));
}

#[test]
fn emit_refuses_what_cannot_be_encoded() {
    let big = MobilityOption::Unknown { kind: 200, data: vec![0; 300] };
    let m = Message::Pba(Pba {
        status: PbaStatus::Accepted,
        flags: PbaFlags::default(),
        sequence: 1,
        lifetime: 0,
        options: vec![big],
    });
    let e = m.to_bytes(&ends(), &WireConfig::default()).unwrap_err();
    assert!(matches!(e.kind, ErrorKind::Unencodable(_)));
    let pbu_type_for_fmi = WireConfig { flow_mobility_mh_type: 5, ..Default::default() };
    let fmi = Message::Fmi(Fmi { sequence: 1, cancel: false, refresh: false, lifetime: 1, options: vec![] });
    assert!(fmi.to_bytes(&ends(), &pbu_type_for_fmi).is_err());
}
