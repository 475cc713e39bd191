//! Every FMA status a MAG sends (flow mobility draft §4.2), each provoked
//! by an FMI built for it, straight into the sans-IO MAG.

use std::net::Ipv6Addr;

use pmip_proto::flow::prefix_selector;
use pmip_proto::mag::{Mag, MagConfig, MagInput, MnBinding};
use pmip_proto::signalling::{hnp, nai};
use pmip_proto::{Instant, Intent, Output, Prefix, Span};
use pmip_wire::*;

const LMA: &str = "2001:db8:ffff::1";
const MAG: &str = "2001:db8:ffff::11";

fn a(s: &str) -> Ipv6Addr {
    s.parse().unwrap()
}
fn pref(n: u8) -> Prefix {
    format!("2001:db8:{n}::/64").parse().unwrap()
}
fn at(ms: u64) -> Instant {
    Instant::ZERO + Span::from_millis(ms)
}

/// A MAG with mn1 attached and registered with pref1.
fn registered_mag() -> Mag {
    let mut c = MagConfig::new(a(MAG), a(LMA));
    c.mns = vec![MnBinding { ll_id: vec![2, 0, 0, 0, 0, 1], mn_id: "mn1".into() }];
    let mut m = Mag::new(c);
    let out = m.handle(
        at(0),
        MagInput::Attach {
            iface: "to-mn1".into(),
            ll_id: vec![2, 0, 0, 0, 0, 1],
            att: AccessTechnologyType::Ieee80211,
            handoff: None,
            prefixes: vec![],
        },
    );
    let Message::Pbu(pbu) = &out.transmits[0].message else { panic!("attach sends a PBU") };
    let pba = Pba {
        status: PbaStatus::Accepted,
        flags: PbaFlags { p: true, ..Default::default() },
        sequence: pbu.sequence,
        lifetime: 100,
        options: vec![nai("mn1"), hnp(pref(1))],
    };
    m.handle(at(1), MagInput::Message { src: a(LMA), dst: a(MAG), message: Message::Pba(pba) });
    m
}

fn fi(fid: u16, selector: TrafficSelector) -> MobilityOption {
    MobilityOption::FlowIdentification(FlowIdentification {
        fid,
        fid_pri: 10,
        status: 0,
        sub_options: vec![FlowSubOption::TrafficSelector(selector)],
    })
}

fn fmi(seq: u16, cancel: bool, refresh: bool, lifetime: u16, options: Vec<MobilityOption>) -> Message {
    Message::Fmi(Fmi { sequence: seq, cancel, refresh, lifetime, options })
}

fn send(m: &mut Mag, now: Instant, msg: Message) -> (Option<Fma>, Output) {
    let out = m.handle(now, MagInput::Message { src: a(LMA), dst: a(MAG), message: msg });
    let fma = out.transmits.iter().find_map(|t| match &t.message {
        Message::Fma(f) => Some(f.clone()),
        _ => None,
    });
    (fma, out)
}

fn status(m: &mut Mag, now: Instant, msg: Message) -> FmaStatus {
    send(m, now, msg).0.expect("an FMI from the LMA gets an FMA").status
}

#[test]
fn s0_success_installs_a_route_and_echoes_the_flow() {
    let mut m = registered_mag();
    let (fma, out) = send(&mut m, at(10), fmi(1, false, false, 300, vec![nai("mn1"), fi(2, prefix_selector(pref(2)))]));
    let fma = fma.unwrap();
    assert_eq!(fma.status, FmaStatus::Success);
    assert_eq!(fma.sequence, 1);
    assert_eq!(fma.lifetime, 300);
    assert!(matches!(fma.options[1], MobilityOption::FlowIdentification(ref f) if f.fid == 2));
    assert!(out.intents.contains(&Intent::MagRoute { prefix: pref(2), iface: "to-mn1".into(), up: true }));
    assert_eq!(m.route(&pref(2).with_iid(1)), Some("to-mn1"));
}

#[test]
fn s128_reason_unspecified_without_mn_id() {
    let mut m = registered_mag();
    assert_eq!(
        status(&mut m, at(10), fmi(1, false, false, 300, vec![fi(2, prefix_selector(pref(2)))])),
        FmaStatus::ReasonUnspecified
    );
}

#[test]
fn s129_mn_not_attached() {
    let mut m = registered_mag();
    let msg = fmi(1, false, false, 300, vec![nai("someone-else"), fi(2, prefix_selector(pref(2)))]);
    assert_eq!(status(&mut m, at(10), msg), FmaStatus::MnNotAttached);
}

#[test]
fn s130_sequence_number_out_of_window() {
    let mut m = registered_mag();
    assert_eq!(
        status(&mut m, at(10), fmi(5, false, false, 300, vec![nai("mn1"), fi(2, prefix_selector(pref(2)))])),
        FmaStatus::Success
    );
    let old = fmi(4, false, false, 300, vec![nai("mn1"), fi(3, prefix_selector(pref(3)))]);
    assert_eq!(status(&mut m, at(20), old), FmaStatus::SequenceNumberOutOfWindow);
}

#[test]
fn s131_traffic_selector_format_unsupported() {
    let mut m = registered_mag();
    let v4 = TrafficSelector::Ipv4(Ipv4Selector { start_dst_port: Some(80), ..Default::default() });
    assert_eq!(
        status(&mut m, at(10), fmi(1, false, false, 300, vec![nai("mn1"), fi(2, v4)])),
        FmaStatus::TrafficSelectorFormatUnsupported
    );
}

#[test]
fn s132_no_flow_mobility_cache_entry() {
    let mut m = registered_mag();
    let refresh = fmi(1, false, true, 300, vec![nai("mn1"), fi(7, prefix_selector(pref(7)))]);
    assert_eq!(status(&mut m, at(10), refresh), FmaStatus::NoFlowMobilityCacheEntry);
    let cancel = fmi(2, true, false, 0, vec![nai("mn1"), fi(8, prefix_selector(pref(8)))]);
    assert_eq!(status(&mut m, at(20), cancel), FmaStatus::NoFlowMobilityCacheEntry);
    // Cancelling a flow to a prefix this MAG serves from the PBA is fine:
    // its state here is the prefix route, which stays.
    let implicit = fmi(3, true, false, 0, vec![nai("mn1"), fi(9, prefix_selector(pref(1)))]);
    assert_eq!(status(&mut m, at(30), implicit), FmaStatus::Success);
}

#[test]
fn s133_flow_mobility_cache_entry_exists() {
    let mut m = registered_mag();
    let add = |seq| fmi(seq, false, false, 300, vec![nai("mn1"), fi(2, prefix_selector(pref(2)))]);
    assert_eq!(status(&mut m, at(10), add(1)), FmaStatus::Success);
    assert_eq!(status(&mut m, at(20), add(2)), FmaStatus::FlowMobilityCacheEntryExists);
}

#[test]
fn a_retransmitted_fmi_gets_the_same_fma_and_changes_nothing() {
    let mut m = registered_mag();
    let add = fmi(1, false, false, 300, vec![nai("mn1"), fi(2, prefix_selector(pref(2)))]);
    let (first, _) = send(&mut m, at(10), add.clone());
    let (again, out) = send(&mut m, at(1010), add);
    assert_eq!(first, again);
    assert!(out.intents.is_empty());
}

#[test]
fn refresh_extends_and_cancel_removes_flow_state() {
    let mut m = registered_mag();
    let flow = || vec![nai("mn1"), fi(2, prefix_selector(pref(2)))];
    assert_eq!(status(&mut m, at(0), fmi(1, false, false, 10, flow())), FmaStatus::Success);
    assert_eq!(status(&mut m, at(8_000), fmi(2, false, true, 10, flow())), FmaStatus::Success);
    m.handle(at(12_000), MagInput::Timeout);
    assert_eq!(m.state().flows.len(), 1, "the refresh at 8 s carried the state past 10 s");
    let (fma, out) = send(&mut m, at(13_000), fmi(3, true, false, 0, flow()));
    assert_eq!(fma.unwrap().status, FmaStatus::Success);
    assert!(out.intents.contains(&Intent::MagRoute { prefix: pref(2), iface: "to-mn1".into(), up: false }));
    assert!(m.state().flows.is_empty());
}

#[test]
fn flow_state_expires_with_its_lifetime() {
    let mut m = registered_mag();
    let flow = vec![nai("mn1"), fi(2, prefix_selector(pref(2)))];
    assert_eq!(status(&mut m, at(0), fmi(1, false, false, 5, flow)), FmaStatus::Success);
    assert_eq!(m.next_timeout(), Some(at(5_000)));
    let out = m.handle(at(5_000), MagInput::Timeout);
    assert!(out.intents.contains(&Intent::MagRoute { prefix: pref(2), iface: "to-mn1".into(), up: false }));
    assert!(out.events.iter().any(|e| e.text().contains("expired")));
}

#[test]
fn fmi_and_bri_from_anyone_but_the_lma_are_ignored() {
    let mut m = registered_mag();
    let msg = fmi(1, false, false, 300, vec![nai("mn1"), fi(2, prefix_selector(pref(2)))]);
    let out = m.handle(at(10), MagInput::Message { src: a("2001:db8:bad::1"), dst: a(MAG), message: msg });
    assert!(out.transmits.is_empty());
    assert!(m.state().flows.is_empty());
    let bri = Message::Bri(Bri {
        trigger: RevocationTrigger::Unspecified,
        sequence: 1,
        flags: RevocationFlags { p: true, ..Default::default() },
        options: vec![nai("mn1")],
    });
    let out = m.handle(at(10), MagInput::Message { src: a("2001:db8:bad::1"), dst: a(MAG), message: bri });
    assert!(out.transmits.is_empty());
    assert_eq!(m.state().binding_update_list.len(), 1);
}
