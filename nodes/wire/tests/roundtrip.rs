//! Property tests: every Repr round-trips, every byte string that parses
//! re-emits to bytes that parse the same, and nothing panics.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use pmip_wire::*;
use proptest::collection::vec;
use proptest::option::of;
use proptest::prelude::*;

fn ends() -> Endpoints {
    Endpoints { src: "2001:db8::2".parse().unwrap(), dst: "2001:db8::1".parse().unwrap() }
}

fn v6() -> impl Strategy<Value = Ipv6Addr> {
    any::<u128>().prop_map(Ipv6Addr::from)
}
fn v4() -> impl Strategy<Value = Ipv4Addr> {
    any::<u32>().prop_map(Ipv4Addr::from)
}

fn ipv6_selector() -> impl Strategy<Value = TrafficSelector> {
    (
        (of(v6()), of(v6()), of(v6()), of(v6())),
        (of(any::<u32>()), of(any::<u32>()), of(0u32..0x100000), of(0u32..0x100000)),
        (of(any::<u16>()), of(any::<u16>()), of(any::<u16>()), of(any::<u16>())),
        (of(any::<u8>()), of(any::<u8>()), of(any::<u8>()), of(any::<u8>())),
    )
        .prop_map(|(a, b, c, d)| {
            TrafficSelector::Ipv6(Ipv6Selector {
                start_src: a.0,
                end_src: a.1,
                start_dst: a.2,
                end_dst: a.3,
                start_spi: b.0,
                end_spi: b.1,
                start_flow_label: b.2,
                end_flow_label: b.3,
                start_src_port: c.0,
                end_src_port: c.1,
                start_dst_port: c.2,
                end_dst_port: c.3,
                start_traffic_class: d.0,
                end_traffic_class: d.1,
                start_next_header: d.2,
                end_next_header: d.3,
            })
        })
}

fn ipv4_selector() -> impl Strategy<Value = TrafficSelector> {
    (
        (of(v4()), of(v4()), of(v4()), of(v4())),
        (of(any::<u32>()), of(any::<u32>())),
        (of(any::<u16>()), of(any::<u16>()), of(any::<u16>()), of(any::<u16>())),
        (of(any::<u8>()), of(any::<u8>()), of(any::<u8>()), of(any::<u8>())),
    )
        .prop_map(|(a, b, c, d)| {
            TrafficSelector::Ipv4(Ipv4Selector {
                start_src: a.0,
                end_src: a.1,
                start_dst: a.2,
                end_dst: a.3,
                start_spi: b.0,
                end_spi: b.1,
                start_src_port: c.0,
                end_src_port: c.1,
                start_dst_port: c.2,
                end_dst_port: c.3,
                start_ds: d.0,
                end_ds: d.1,
                start_protocol: d.2,
                end_protocol: d.3,
            })
        })
}

fn selector() -> impl Strategy<Value = TrafficSelector> {
    prop_oneof![
        ipv6_selector(),
        ipv4_selector(),
        (3u8..=255, vec(any::<u8>(), 0..20)).prop_map(|(format, data)| TrafficSelector::Other { format, data }),
    ]
}

fn sub_option() -> impl Strategy<Value = FlowSubOption> {
    prop_oneof![
        vec(any::<u16>(), 1..5).prop_map(FlowSubOption::BindingReference),
        selector().prop_map(FlowSubOption::TrafficSelector),
        (4u8..=255, vec(any::<u8>(), 0..10)).prop_map(|(kind, data)| FlowSubOption::Unknown { kind, data }),
    ]
}

const KNOWN_OPTIONS: [u8; 14] = [0, 1, 8, 22, 23, 24, 25, 26, 27, 28, 35, 44, 45, 45];

fn option() -> impl Strategy<Value = MobilityOption> {
    prop_oneof![
        (any::<u8>(), vec(any::<u8>(), 1..40))
            .prop_map(|(s, id)| MobilityOption::MnIdentifier { subtype: s.into(), id }),
        (any::<u8>(), v6()).prop_map(|(l, p)| MobilityOption::HomeNetworkPrefix { prefix_len: l, prefix: p }),
        any::<u8>().prop_map(|v| MobilityOption::HandoffIndicator(v.into())),
        any::<u8>().prop_map(|v| MobilityOption::AccessTechnologyType(v.into())),
        vec(any::<u8>(), 1..20).prop_map(MobilityOption::MnLinkLayerIdentifier),
        v6().prop_map(MobilityOption::LinkLocalAddress),
        any::<u64>().prop_map(|t| MobilityOption::Timestamp(Timestamp(t))),
        any::<u32>().prop_map(MobilityOption::RestartCounter),
        (
            any::<u16>(),
            any::<u8>(),
            any::<bool>(),
            0u8..128,
            prop_oneof![Just(None), v4().prop_map(|a| Some(IpAddr::V4(a))), v6().prop_map(|a| Some(IpAddr::V6(a)))]
        )
            .prop_map(|(bid, status, h, bid_pri, coa)| MobilityOption::BindingIdentifier {
                bid,
                status: status.into(),
                h,
                bid_pri,
                coa
            }),
        vec(any::<u16>(), 1..8).prop_map(MobilityOption::FlowSummary),
        (any::<u16>(), any::<u16>(), any::<u8>(), vec(sub_option(), 0..3)).prop_map(
            |(fid, fid_pri, status, sub_options)| {
                MobilityOption::FlowIdentification(FlowIdentification { fid, fid_pri, status, sub_options })
            }
        ),
        (any::<u8>().prop_filter("not a known type", |k| !KNOWN_OPTIONS.contains(k)), vec(any::<u8>(), 0..30))
            .prop_map(|(kind, data)| MobilityOption::Unknown { kind, data }),
    ]
}

fn options() -> impl Strategy<Value = Vec<MobilityOption>> {
    vec(option(), 0..6)
}

fn message() -> impl Strategy<Value = Message> {
    let flags7 = any::<[bool; 7]>();
    prop_oneof![
        (any::<u16>(), flags7, any::<u16>(), options()).prop_map(|(sequence, f, lifetime, options)| {
            Message::Pbu(Pbu {
                sequence,
                flags: PbuFlags { a: f[0], h: f[1], l: f[2], k: f[3], m: f[4], r: f[5], p: f[6] },
                lifetime,
                options,
            })
        }),
        (any::<u8>(), any::<[bool; 3]>(), any::<u16>(), any::<u16>(), options()).prop_map(
            |(s, f, sequence, lifetime, options)| Message::Pba(Pba {
                status: s.into(),
                flags: PbaFlags { k: f[0], r: f[1], p: f[2] },
                sequence,
                lifetime,
                options
            })
        ),
        (any::<u8>(), any::<u16>(), any::<[bool; 3]>(), options()).prop_map(|(t, sequence, f, options)| {
            Message::Bri(Bri {
                trigger: t.into(),
                sequence,
                flags: RevocationFlags { p: f[0], v: f[1], g: f[2] },
                options,
            })
        }),
        (any::<u8>(), any::<u16>(), any::<[bool; 3]>(), options()).prop_map(|(s, sequence, f, options)| {
            Message::Bra(Bra {
                status: s.into(),
                sequence,
                flags: RevocationFlags { p: f[0], v: f[1], g: f[2] },
                options,
            })
        }),
        (any::<bool>(), any::<bool>(), any::<u32>(), options()).prop_map(|(u, r, sequence, options)| {
            Message::Heartbeat(Heartbeat { unsolicited: u, response: r, sequence, options })
        }),
        (any::<u16>(), any::<bool>(), any::<bool>(), any::<u16>(), options()).prop_map(
            |(sequence, cancel, refresh, lifetime, options)| Message::Fmi(Fmi {
                sequence,
                cancel,
                refresh,
                lifetime,
                options
            })
        ),
        (any::<u16>(), any::<u8>(), any::<u16>(), options()).prop_map(|(sequence, s, lifetime, options)| {
            Message::Fma(Fma { sequence, status: s.into(), lifetime, options })
        }),
        (any::<u16>(), any::<u8>(), any::<bool>(), any::<bool>(), options()).prop_map(
            |(sequence, r, a, d, options)| Message::Upn(Upn {
                sequence,
                reason: r.into(),
                ack_requested: a,
                deregister: d,
                options
            })
        ),
        (any::<u16>(), any::<u8>(), options()).prop_map(|(sequence, s, options)| Message::Upa(Upa {
            sequence,
            status: s.into(),
            options
        })),
        (
            any::<u8>().prop_filter("not a decoded type", |t| ![5, 6, 11, 13, 16, 19, 20].contains(t)),
            (0usize..6).prop_flat_map(|k| vec(any::<u8>(), 8 * k + 2))
        )
            .prop_map(|(mh_type, data)| Message::Unknown { mh_type, data }),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    #[test]
    fn every_repr_round_trips(m in message()) {
        let cfg = WireConfig::default();
        let bytes = m.to_bytes(&ends(), &cfg).unwrap();
        prop_assert_eq!(bytes.len(), m.buffer_len(&cfg));
        prop_assert_eq!(bytes.len() % 8, 0);
        prop_assert_eq!(Message::parse(&bytes, &ends(), &cfg).unwrap(), m);
        let d = lax::decode(&bytes, Some(&ends()), &cfg);
        prop_assert!(d.is_clean(), "{:?}", d.problems);
    }

    #[test]
    fn emit_into_a_buffer_matches_to_bytes(m in message()) {
        let cfg = WireConfig::default();
        let mut buf = vec![0u8; m.buffer_len(&cfg) + 3];
        let n = m.emit(&mut buf, &ends(), &cfg).unwrap();
        prop_assert_eq!(&buf[..n], &m.to_bytes(&ends(), &cfg).unwrap()[..]);
    }

    #[test]
    fn a_valid_byte_string_re_emits_identically(m in message()) {
        let cfg = WireConfig::default();
        let bytes = m.to_bytes(&ends(), &cfg).unwrap();
        let again = Message::parse(&bytes, &ends(), &cfg).unwrap().to_bytes(&ends(), &cfg).unwrap();
        prop_assert_eq!(again, bytes);
    }

    #[test]
    fn any_bytes_that_parse_re_emit_to_the_same_meaning(mut raw in vec(any::<u8>(), 8..200), t in prop_oneof![Just(5u8), Just(6), Just(11), Just(13), Just(16), Just(19), Just(20), any::<u8>()]) {
        let cfg = WireConfig::default();
        raw[0] = 59;
        raw[2] = t;
        raw[1] = ((raw.len() / 8) - 1) as u8;
        MhPacket::new_unchecked(&mut raw[..]).fill_checksum(&ends());
        if let Ok(m) = Message::parse(&raw, &ends(), &cfg) {
            if m.check_encodable(&cfg).is_ok() {
                let re = m.to_bytes(&ends(), &cfg).unwrap();
                prop_assert_eq!(Message::parse(&re, &ends(), &cfg).unwrap(), m);
            }
        }
    }

    #[test]
    fn parsing_never_panics(raw in vec(any::<u8>(), 0..300)) {
        let cfg = WireConfig::default();
        let _ = Message::parse(&raw, &ends(), &cfg);
        let _ = lax::decode(&raw, Some(&ends()), &cfg);
        let _ = lax::decode(&raw, None, &WireConfig { flow_mobility_mh_type: 200, ..Default::default() });
    }
}
