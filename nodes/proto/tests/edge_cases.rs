//! The flow-state edge cases of issue 11, each played in virtual time:
//! every test here failed before its fix.

mod common;

use common::*;
use pmip_proto::fault::FaultRule;
use pmip_proto::flow::prefix_selector;
use pmip_proto::lma::{FlowAction, LmaCommand, PrefixModel};
use pmip_proto::mag::{Mag, MagConfig, MnBinding};
use pmip_proto::mn::{Mn, MnConfig};
use pmip_proto::world::mac_for;
use pmip_proto::Span;
use pmip_wire::AccessTechnologyType::*;

const MAG3: &str = "2001:db8:ffff::13";

/// if1 on MAG1 (pref 1, BID 1), if2 on MAG2 (pref 2, BID 2); flow 2 is
/// everything to pref 2, bound to BID 2.
fn two_interfaces_with(tune: impl FnOnce(&mut pmip_proto::lma::LmaConfig)) -> Seed {
    let mut s = seed_with(policy(PrefixModel::Unique, &[], &[1, 2, 3], 1), tune);
    s.attach("if1", "mag1", Ieee80211);
    s.attach("if2", "mag2", EUtran);
    s.bind_selector(2, 20, prefix_selector(pref(2)), &[2], FlowAction::Forward);
    s
}

/// Messages on the wire (delivered) whose summary has every one of `with`.
fn delivered(s: &Seed, name: &str, from: &str, to: &str, with: &[&str]) -> usize {
    s.world
        .messages
        .iter()
        .filter(|m| !m.dropped && m.from == from && m.to == to)
        .filter(|m| m.summary.split(' ').next() == Some(name))
        .filter(|m| with.iter().all(|w| m.summary.split(' ').any(|t| t == *w)))
        .count()
}

fn fmc_bids(s: &Seed, fid: u16) -> Vec<u16> {
    s.world.lma().unwrap().flow_cache().get(MN, fid).map(|e| e.bids.clone()).unwrap_or_default()
}

#[test]
fn an_infinite_fmi_lifetime_still_gets_its_fmi_del_when_the_flow_moves_on() {
    let mut s = two_interfaces_with(|c| c.flow_lifetime_secs = 0xffff);
    s.move_flow(2, 1);
    assert_eq!(s.arrives_on(flow(2, 1)).as_deref(), Some("if1"));
    // Home again: MAG2 has the prefix, so no FMI[add]; MAG1 holds flow
    // state with no end and must be told to drop it.
    s.move_flow(2, 2);
    assert_eq!(delivered(&s, "FMI", "lma", "mag1", &["op=del"]), 1, "{:#?}", s.world.ladder());
    assert!(s.world.mag("mag1").unwrap().state().flows.is_empty());
    // So the next move to MAG1 is not refused with 133.
    s.move_flow(2, 1);
    assert_eq!(delivered(&s, "FMA", "mag1", "lma", &["status=133"]), 0, "{:#?}", s.world.ladder());
    assert_eq!(s.arrives_on(flow(2, 1)).as_deref(), Some("if1"));
    // Infinite means no refresh and no expiry at either end.
    s.world.run_for(Span::from_secs(3600));
    assert_eq!(delivered(&s, "FMI", "lma", "mag1", &["op=refresh"]), 0);
    assert_eq!(s.arrives_on(flow(2, 1)).as_deref(), Some("if1"));
}

#[test]
fn lost_refreshes_make_the_lma_fall_back_to_the_default_binding_before_the_mag_forgets() {
    let mut s = two_interfaces_with(|_| {});
    s.move_flow(2, 1);
    s.world.add_fault(FaultRule { to: Some("mag1".into()), ..FaultRule::drop("FMI", 1000) });
    // Every packet of the flow, sampled each second through the refresh
    // period and past the MAG's expiry, arrives somewhere.
    for t in 0..320 {
        s.world.run_for(Span::from_secs(1));
        assert!(s.arrives_on(flow(2, 1)).is_some(), "black hole at {t} s: {:#?}", s.world.events);
    }
    assert!(s.world.mag("mag1").unwrap().state().flows.is_empty(), "MAG1's flow state expired");
    assert_eq!(fmc_bids(&s, 2), [2], "back on its default binding");
    assert_eq!(s.arrives_on(flow(2, 1)).as_deref(), Some("if2"));
    assert!(s.world.lma().unwrap().state().pending.is_empty(), "no refresh left pending");
}

#[test]
fn a_refresh_refused_by_the_mag_moves_the_flow_back_to_its_default_binding() {
    let mut s = two_interfaces_with(|c| c.flow_lifetime_secs = 30);
    s.move_flow(2, 1);
    // MAG1 crashes and comes back empty: the refresh at 24 s is refused.
    let cfg = s.world.mag("mag1").unwrap().config.clone();
    s.world.kill("mag1");
    s.world.add_mag("mag1", Mag::new(cfg));
    s.world.run_for(Span::from_secs(25));
    let refused = s
        .world
        .messages
        .iter()
        .any(|m| m.from == "mag1" && m.summary.starts_with("FMA") && !m.summary.contains("status=0"));
    assert!(refused, "{:#?}", s.world.ladder());
    assert_eq!(fmc_bids(&s, 2), [2]);
    assert_eq!(s.arrives_on(flow(2, 1)).as_deref(), Some("if2"));
}

#[test]
fn a_retransmitted_fmi_after_the_mn_left_is_answered_129_not_from_the_cache() {
    let mut s = two_interfaces_with(|_| {});
    s.world.add_fault(FaultRule { from: Some("mag1".into()), ..FaultRule::drop("FMA", 1) });
    s.move_flow(2, 1);
    // The MN leaves MAG1 before the LMA repeats its FMI.
    s.world.detach("mn1", "if1");
    s.world.run_for(Span::from_secs(3));
    assert_eq!(delivered(&s, "FMA", "mag1", "lma", &["seq=1", "status=129"]), 1, "{:#?}", s.world.ladder());
    assert_eq!(delivered(&s, "FMA", "mag1", "lma", &["seq=1", "status=0"]), 0);
    assert_eq!(fmc_bids(&s, 2), [2], "the flow was not committed to the de-registered BID 1");
    assert_eq!(s.arrives_on(flow(2, 1)).as_deref(), Some("if2"));
}

/// The seed with a third MAG and a third MN interface attached to it.
fn three_mags() -> Seed {
    let mut s = seed_with(policy(PrefixModel::Unique, &[], &[1, 2, 3], 1), |c| c.authorized_mags.push(a(MAG3)));
    let mut c = MagConfig::new(a(MAG3), a(LMA));
    c.mns = vec![MnBinding { ll_id: mac_for("mn1", "if3"), mn_id: MN.into() }];
    s.world.add_mag("mag3", Mag::new(c));
    let ifaces: Vec<String> = ["if1", "if2", "if3"].iter().map(|i| i.to_string()).collect();
    s.world.add_mn(
        "mn1",
        Mn::new(MnConfig { name: "mn1".into(), iid: IID, interfaces: ifaces.clone(), uplink_preference: ifaces }),
    );
    s.attach("if1", "mag1", Ieee80211);
    s.attach("if2", "mag2", EUtran);
    s.attach("if3", "mag3", Ieee8023);
    s
}

#[test]
fn one_move_sends_one_fmi_del_to_the_mag_the_flow_leaves() {
    let mut s = three_mags();
    s.bind_selector(1, 10, prefix_selector(pref(1)), &[1], FlowAction::Forward);
    s.move_flow(1, 2);
    assert_eq!(s.arrives_on(flow(1, 1)).as_deref(), Some("if2"));
    // MAG2 holds the flow by FMI and is also the MAG of the BID it was on.
    s.move_flow(1, 3);
    assert_eq!(delivered(&s, "FMI", "lma", "mag2", &["op=del"]), 1, "{:#?}", s.world.ladder());
    assert_eq!(delivered(&s, "FMA", "mag2", "lma", &["status=132"]), 0, "{:#?}", s.world.ladder());
    assert_eq!(s.arrives_on(flow(1, 1)).as_deref(), Some("if3"));
}

#[test]
fn a_bid_is_not_handed_out_again_while_a_flow_entry_names_it() {
    let mut s = seed_with(policy(PrefixModel::Unique, &[], &[1, 2], 1), |c| {
        c.min_delay_before_bce_delete = Span::from_secs(1);
    });
    s.attach("if1", "mag1", Ieee80211);
    s.bind_selector(7, 10, flow(1, 5001).selector(), &[1], FlowAction::Drop);
    assert_eq!(s.arrives_on(flow(1, 5001)), None, "dropped by its flow binding");
    s.world.detach("mn1", "if1");
    s.world.run_for(Span::from_secs(2));
    assert!(s.world.lma().unwrap().binding_cache().is_empty(), "every binding gone");
    // A new, unrelated binding of the same MN.
    s.attach("if2", "mag2", EUtran);
    let lma = s.world.lma().unwrap().state();
    assert_eq!(lma.binding_cache.len(), 1);
    assert_ne!(lma.binding_cache[0].bid, 1, "BID 1 is still named by FID 7: {lma:#?}");
    assert_eq!(lma.flow_mobility_cache[0].state, "inactive", "FID 7 stays bound to the binding that left");
    // The drop rule written for the old binding does not catch the new one.
    let key = pmip_proto::FlowKey { dst: mn_addr(1), ..flow(1, 5001) };
    assert_eq!(s.arrives_on(key).as_deref(), Some("if2"), "{:#?}", s.world.lma().unwrap().state());
}

#[test]
fn the_old_mag_keeps_the_uplink_path_while_the_mn_switches_on_a_move_home() {
    let mut s = two_interfaces_with(|_| {});
    s.move_flow(2, 1);
    // The downlink arrives on if1, so the MN sends the uplink there too.
    assert_eq!(s.arrives_on(flow(2, 1)).as_deref(), Some("if1"));
    assert_eq!(s.uplink_on(flow(2, 1)).as_deref(), Some("if1"));
    // Home: the LMA sends the downlink to MAG2 at once and FMI[del] to
    // MAG1. Until the next downlink packet reaches if2, the MN's uplink
    // still leaves on if1.
    s.move_flow(2, 2);
    assert_eq!(delivered(&s, "FMA", "mag1", "lma", &["status=0"]), 2, "{:#?}", s.world.ladder());
    let path = s.world.uplink("mn1", flow(2, 1).reversed());
    assert_eq!(path.delivered_on.map(|(_, i)| i).as_deref(), Some("if1"), "lost at MAG1: {:?}", path.dropped);
    // The hold ends; the MN has switched by then.
    s.world.run_for(Span::from_secs(3));
    let path = s.world.uplink("mn1", flow(2, 1).reversed());
    assert!(path.dropped.as_deref().is_some_and(|d| d.contains("no uplink rule")), "the held path is gone: {path:?}");
    assert_eq!(s.arrives_on(flow(2, 1)).as_deref(), Some("if2"));
    assert_eq!(s.uplink_on(flow(2, 1)).as_deref(), Some("if2"));
}

#[test]
fn moving_a_prefix_with_an_infinite_lifetime_and_back_leaves_no_state_at_the_mag() {
    let mut s = two_interfaces_with(|c| c.flow_lifetime_secs = 0xffff);
    s.world.command(LmaCommand::MovePrefix { mn_id: MN.into(), prefix: pref(2), to_bid: 1 }).expect("moved to MAG1");
    s.settle();
    assert_eq!(s.world.mag("mag1").unwrap().state().flows.len(), 1);
    s.world.command(LmaCommand::MovePrefix { mn_id: MN.into(), prefix: pref(2), to_bid: 2 }).expect("moved home");
    s.settle();
    assert!(s.world.mag("mag1").unwrap().state().flows.is_empty(), "{:#?}", s.world.ladder());
}
