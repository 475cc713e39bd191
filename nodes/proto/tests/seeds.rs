//! The seed figures of the flow mobility draft and slides, in virtual
//! time. Each snapshot holds the state tables a reviewer compares with the
//! figure it names, and the message sequence that led there.

mod common;

use common::*;
use pmip_proto::flow::prefix_selector;
use pmip_proto::lma::{FlowAction, LmaCommand, PrefixModel};
use pmip_wire::{AccessTechnologyType::*, HandoffIndicator};
use serde::Serialize;

#[derive(Serialize)]
struct Snapshot {
    ladder: Vec<String>,
    state: pmip_proto::world::WorldState,
}

fn snap(s: &Seed) -> Snapshot {
    Snapshot { ladder: s.world.ladder(), state: s.world.state() }
}

/// Draft §3.2 Figures 1–3: one prefix on both interfaces; the LMA moves
/// flow Y from MAG2 to MAG1 with no signalling.
#[test]
fn fm_sp_shared_prefix_move_needs_no_signalling() {
    let mut s = seed(policy(PrefixModel::Shared, &[1], &[], 1));
    s.attach("if1", "mag1", Ieee80211);
    s.attach("if2", "mag2", EUtran);
    let (x, y) = (flow(1, 5001), flow(1, 5002));
    s.bind(1, 10, x, &[1]);
    s.bind(2, 20, y, &[2]);
    assert_eq!(s.arrives_on(x).as_deref(), Some("if1"));
    assert_eq!(s.arrives_on(y).as_deref(), Some("if2"));
    let before = s.world.messages.len();

    s.move_flow(2, 1);
    assert_eq!(s.world.messages.len(), before, "a shared-prefix move puts nothing on the wire");
    assert_eq!(s.arrives_on(y).as_deref(), Some("if1"));
    assert_eq!(s.arrives_on(x).as_deref(), Some("if1"));
    assert_eq!(s.uplink_on(y).as_deref(), Some("if1"), "uplink follows the downlink");
    insta::assert_yaml_snapshot!("fm_sp_figure_3", snap(&s));
}

/// Draft §3.2 "the LMA MAY re-use the signalling" when a MAG must know
/// flow descriptors: the same move, announced by FMI.
#[test]
fn fm_sp_with_fmi_when_mags_need_flow_descriptors() {
    let mut s = seed_with(policy(PrefixModel::Shared, &[1], &[], 1), |c| c.notify_shared_moves = true);
    s.attach("if1", "mag1", Ieee80211);
    s.attach("if2", "mag2", EUtran);
    let y = flow(1, 5002);
    s.bind(2, 20, y, &[2]);
    s.move_flow(2, 1);
    assert_eq!(s.count("FMI"), 1);
    assert_eq!(s.count("FMA"), 1);
    assert_eq!(s.arrives_on(y).as_deref(), Some("if1"));
    let mag1 = s.world.mag("mag1").unwrap().state();
    assert_eq!(mag1.flows.len(), 1, "MAG1 now knows flow Y's descriptor");
}

/// Draft Figure 4 and the slides' partial handoff: pref1 and pref2 on if1
/// at MAG1; if2 powers on at MAG2 with PBU(pref2, HI=partial); the LMA
/// moves pref2 to a new BCE, answers PBA(pref2), and revokes pref2 at MAG1
/// with BRI/BRA.
#[test]
fn fm_up_pbu_partial_handoff() {
    let mut s = seed(policy(PrefixModel::Unique, &[], &[1, 2], 2));
    s.attach("if1", "mag1", Ieee80211);
    let (x, y) = (flow(1, 5001), flow(2, 5002));
    assert_eq!(s.arrives_on(x).as_deref(), Some("if1"));
    assert_eq!(s.arrives_on(y).as_deref(), Some("if1"));
    insta::assert_yaml_snapshot!("fm_up_pbu_before", s.world.state());

    s.attach_with("if2", "mag2", EUtran, HandoffIndicator::NewInterfaceSharingPrefixes, vec![pref(2)]);
    assert_eq!(s.names(), ["PBU", "PBA", "PBU", "PBA", "BRI", "BRA"]);
    assert_eq!(s.arrives_on(y).as_deref(), Some("if2"));
    assert_eq!(s.arrives_on(x).as_deref(), Some("if1"));
    insta::assert_yaml_snapshot!("fm_up_pbu_after", snap(&s));
}

/// Draft Figure 5 and the slides: unique prefixes; the LMA moves flow Y
/// (traffic to pref2) to MAG1 with FMI[add], FMA, then FMI[del] to MAG2.
///
/// Draft Figure 6 draws the binding and flow state *before* the move
/// (flow Y on BID 2), although the text calls it the state after; the
/// slides show MAG1 routing pref2 after it. This scenario follows the
/// message sequence: after the FMA, flow Y is on BID 1 and MAG1 routes
/// pref2, as the slides show.
#[test]
fn fm_up_fmi_moves_flow_y_to_mag1() {
    let mut s = seed(policy(PrefixModel::Unique, &[], &[1, 2], 1));
    s.attach("if1", "mag1", Ieee80211);
    s.attach("if2", "mag2", EUtran);
    let (x, y) = (flow(1, 5001), flow(2, 5002));
    s.bind_selector(1, 10, prefix_selector(pref(1)), &[1], FlowAction::Forward);
    s.bind_selector(2, 20, prefix_selector(pref(2)), &[2], FlowAction::Forward);
    assert_eq!(s.arrives_on(x).as_deref(), Some("if1"));
    assert_eq!(s.arrives_on(y).as_deref(), Some("if2"));
    assert_eq!(s.uplink_on(y).as_deref(), Some("if2"));
    insta::assert_yaml_snapshot!("fm_up_fmi_figure_6_before_move", s.world.state());

    s.move_flow(2, 1);
    assert_eq!(&s.names()[4..], ["FMI", "FMA", "FMI", "FMA"]);
    assert_eq!(s.arrives_on(y).as_deref(), Some("if1"), "flow Y now arrives on if1");
    assert_eq!(s.arrives_on(x).as_deref(), Some("if1"), "flow X is untouched");
    assert_eq!(s.uplink_on(y).as_deref(), Some("if1"), "the MN's uplink of Y follows its downlink");
    insta::assert_yaml_snapshot!("fm_up_fmi_after_move", snap(&s));
}

/// Draft §3.1 scenario 3: a new attachment gets the shared prefix and a
/// new one; moving a flow of the shared prefix needs no signalling, moving
/// a flow of the new prefix does.
#[test]
fn fm_hyb_only_new_prefixes_need_signalling() {
    let mut s = seed(policy(PrefixModel::Hybrid, &[1], &[2, 3], 1));
    s.attach("if1", "mag1", Ieee80211);
    s.attach("if2", "mag2", EUtran);
    let shared = flow(1, 5001);
    let own = flow(3, 5003);
    s.bind(1, 10, shared, &[1]);
    s.bind_selector(2, 20, prefix_selector(pref(3)), &[2], FlowAction::Forward);
    assert_eq!(s.arrives_on(shared).as_deref(), Some("if1"));
    assert_eq!(s.arrives_on(own).as_deref(), Some("if2"));
    let before = s.world.messages.len();
    s.move_flow(1, 2);
    assert_eq!(s.world.messages.len(), before, "the shared prefix moves silently");
    assert_eq!(s.arrives_on(shared).as_deref(), Some("if2"));
    s.move_flow(2, 1);
    assert_eq!(s.count("FMI"), 2, "FMI[add] to MAG1 and FMI[del] to MAG2");
    assert_eq!(s.arrives_on(own).as_deref(), Some("if1"));
    insta::assert_yaml_snapshot!("fm_hyb_after_moves", snap(&s));
}

/// Draft §5, Figures 7 and 8: two BCEs (BID-PRI 20 and 30, WiFi and 3GPP,
/// sharing HNP1), flow bindings in FID-PRI order with forward and drop,
/// and entries that turn Inactive only when all their BIDs deregister.
#[test]
fn fm_ts_flow_bindings_by_priority() {
    let mut s = seed(policy(PrefixModel::Hybrid, &[1], &[2, 3], 1));
    s.attach("if1", "mag1", Ieee80211);
    s.attach("if2", "mag2", EUtran);
    let tcp = pmip_wire::TrafficSelector::Ipv6(pmip_wire::Ipv6Selector {
        start_dst: Some(pref(1).addr()),
        end_dst: Some(pref(1).last()),
        start_next_header: Some(6),
        ..Default::default()
    });
    let udp = pmip_wire::TrafficSelector::Ipv6(pmip_wire::Ipv6Selector {
        start_dst: Some(pref(1).addr()),
        end_dst: Some(pref(1).last()),
        start_next_header: Some(17),
        ..Default::default()
    });
    let blocked = pmip_wire::TrafficSelector::Ipv6(pmip_wire::Ipv6Selector {
        start_dst_port: Some(6666),
        start_next_header: Some(17),
        ..Default::default()
    });
    s.bind_selector(2, 10, tcp, &[1], FlowAction::Forward);
    s.bind_selector(4, 20, udp, &[2, 1], FlowAction::Forward);
    s.bind_selector(6, 5, blocked, &[1, 2], FlowAction::Drop);
    let mut tcp_flow = flow(1, 80);
    tcp_flow.next_header = 6;
    assert_eq!(s.arrives_on(tcp_flow).as_deref(), Some("if1"));
    assert_eq!(s.arrives_on(flow(1, 5001)).as_deref(), Some("if1"), "FID 4: BID 1 has the lower BID-PRI");
    let dropped = s.world.downlink("cn", flow(1, 6666));
    assert_eq!(dropped.dropped.as_deref(), Some("the LMA's flow binding drops it"));
    insta::assert_yaml_snapshot!("fm_ts_figures_7_and_8", s.world.state().lma);

    // if1 leaves: FID 2 (BID 1 only) turns inactive, FID 4 stays active on BID 2.
    s.world.detach("mn1", "if1");
    s.settle();
    s.world.run_for(pmip_proto::Span::from_secs(11));
    assert_eq!(s.arrives_on(flow(1, 5001)).as_deref(), Some("if2"));
    insta::assert_yaml_snapshot!("fm_ts_after_if1_leaves", s.world.state().lma);

    s.world.detach("mn1", "if2");
    s.settle();
    let lma = s.world.state().lma.unwrap();
    assert!(lma.flow_mobility_cache.iter().all(|r| r.state == "inactive"));
}

/// RFC 5213: attach, re-registration before expiry, inter-MAG handover
/// (HI 3) keeping the prefix, de-registration and BCE deletion after
/// MinDelayBeforeBCEDelete.
#[test]
fn pm_attach_reregister_handover_deregister() {
    let mut s = seed(policy(PrefixModel::Unique, &[], &[1, 2], 1));
    s.attach("if1", "mag1", Ieee80211);
    let x = flow(1, 5001);
    assert_eq!(s.arrives_on(x).as_deref(), Some("if1"));
    insta::assert_yaml_snapshot!("pm_attach", s.world.state());

    // Lifetime 400 s: the MAG re-registers at 300 s with HI 5.
    s.world.run_for(pmip_proto::Span::from_secs(301));
    let rereg = s.world.messages.iter().filter(|m| m.summary.starts_with("PBU")).nth(1).unwrap();
    assert!(rereg.summary.contains("hi=5"), "{}", rereg.summary);
    assert!(rereg.summary.contains("hnp=2001:db8:1::/64"), "{}", rereg.summary);
    assert_eq!(s.count("PBA"), 2);

    // Inter-MAG handover of the same interface: MAG2, HI 3.
    s.world.detach("mn1", "if1");
    s.world.attach("mn1", "if1", "mag2", "to-if1", Ieee80211, Some(HandoffIndicator::BetweenMags), vec![]);
    s.settle();
    assert_eq!(s.arrives_on(x).as_deref(), Some("if1"), "the MN keeps pref1 behind MAG2");
    let lma = s.world.state().lma.unwrap();
    assert_eq!(lma.binding_cache.len(), 1, "the handover updates BID 1, no new entry");
    assert_eq!(lma.binding_cache[0].proxy_coa, a(MAG2));
    insta::assert_yaml_snapshot!("pm_inter_mag_handover", snap(&s));

    s.world.detach("mn1", "if1");
    s.settle();
    let lma = s.world.state().lma.unwrap();
    assert_eq!(format!("{:?}", lma.binding_cache[0].state), "Deregistered");
    s.world.run_for(pmip_proto::Span::from_secs(10));
    assert!(s.world.state().lma.unwrap().binding_cache.is_empty());
}

/// The LMA's unbind command cancels flow state the MAG holds.
#[test]
fn unbinding_a_moved_flow_cancels_it_at_the_mag() {
    let mut s = seed(policy(PrefixModel::Unique, &[], &[1, 2], 1));
    s.attach("if1", "mag1", Ieee80211);
    s.attach("if2", "mag2", EUtran);
    s.bind_selector(2, 20, prefix_selector(pref(2)), &[2], FlowAction::Forward);
    s.move_flow(2, 1);
    assert_eq!(s.world.mag("mag1").unwrap().state().flows.len(), 1);
    s.world.command(LmaCommand::UnbindFlow { mn_id: MN.into(), fid: 2 }).expect("the LMA unbinds the flow");
    s.settle();
    assert!(s.world.mag("mag1").unwrap().state().flows.is_empty());
    assert_eq!(s.arrives_on(flow(2, 5002)).as_deref(), Some("if2"), "back on the default path");
}

/// Prefix granularity (DESIGN: FMI with HNP options): the LMA moves every
/// packet to pref2 to MAG1; the FMI names the prefix, not a flow.
#[test]
fn fm_up_fmi_prefix_granularity() {
    let mut s = seed(policy(PrefixModel::Unique, &[], &[1, 2], 1));
    s.attach("if1", "mag1", Ieee80211);
    s.attach("if2", "mag2", EUtran);
    s.world
        .command(LmaCommand::MovePrefix { mn_id: MN.into(), prefix: pref(2), to_bid: 1 })
        .expect("the LMA moves the prefix");
    s.settle();
    let fmi = s.world.messages.iter().find(|m| m.summary.starts_with("FMI")).unwrap();
    assert!(fmi.summary.contains("hnp=2001:db8:2::/64") && !fmi.summary.contains("fid="), "{}", fmi.summary);
    assert_eq!(s.arrives_on(flow(2, 9)).as_deref(), Some("if1"));
    let mag1 = s.world.mag("mag1").unwrap().state();
    assert!(mag1.routes.iter().any(|r| r.dest == "2001:db8:2::/64" && r.next_hop == "p2p to-if1"));
    assert_eq!(s.count("FMA"), 2, "FMA from MAG1 and for the FMI[del] at MAG2");
}
