//! Flow information in PBU and PBA (flow mobility draft §3.2, after
//! Figure 4): the LMA moves a flow to a new binding with a Flow
//! Identification option in the PBA; a MAG asks for a flow with one in its
//! PBU, granted or not by the LMA's policy.

mod common;

use common::*;
use pmip_proto::lma::{FlowAction, PrefixModel};
use pmip_proto::mag::{Mag, MagConfig, MnBinding};
use pmip_proto::world::mac_for;
use pmip_wire::AccessTechnologyType::*;
use pmip_wire::{FlowIdentification, FlowSubOption};

fn request(fid: u16, key: pmip_proto::FlowKey) -> FlowIdentification {
    FlowIdentification {
        fid,
        fid_pri: 20,
        status: 0,
        sub_options: vec![FlowSubOption::TrafficSelector(key.selector())],
    }
}

/// mn1 with pref1 on if1 at mag1, flows 5001 (FID 1) and 5002 (FID 2) to
/// pref1 bound to BID 1; mag2 asks for `requests` when if2 registers there.
fn setup(tune: impl FnOnce(&mut pmip_proto::lma::MnPolicy), requests: Vec<FlowIdentification>) -> Seed {
    let mut p = policy(PrefixModel::Unique, &[], &[1, 2], 1);
    tune(&mut p);
    let mut s = seed(p);
    let mut c = MagConfig::new(a(MAG2), a(LMA));
    c.mns = vec![MnBinding { ll_id: mac_for("mn1", "if2"), mn_id: MN.into() }];
    c.flow_requests = requests.into_iter().map(|r| (mac_for("mn1", "if2"), r)).collect();
    s.world.add_mag("mag2", Mag::new(c));
    s.attach("if1", "mag1", Ieee80211);
    s.bind_selector(1, 10, flow(1, 5001).selector(), &[1], FlowAction::Forward);
    s.bind_selector(2, 20, flow(1, 5002).selector(), &[1], FlowAction::Forward);
    s
}

fn pba_to_mag2(s: &Seed) -> String {
    s.world.ladder().into_iter().find(|l| l.contains("lma -> mag2 PBA")).expect("a PBA to mag2")
}

#[test]
fn the_policy_moves_a_flow_to_the_new_interface_in_the_pba() {
    let mut s = setup(|p| p.flows_on_attach = vec![(mac_for("mn1", "if2"), 2)], vec![]);
    s.attach("if2", "mag2", EUtran);
    assert!(pba_to_mag2(&s).contains("fid=2/pri=20"), "{:#?}", s.world.ladder());
    assert_eq!(s.count("FMI"), 0, "the PBA is the instruction: no FMI");
    assert_eq!(s.arrives_on(flow(1, 5002)).as_deref(), Some("if2"));
    assert_eq!(s.arrives_on(flow(1, 5001)).as_deref(), Some("if1"), "only the one flow moved");
    assert_eq!(s.world.mag("mag2").unwrap().state().flows.len(), 1);
    // A re-registration does not move it again: only a new binding does.
    s.world.run_for(pmip_proto::Span::from_secs(400));
    assert!(s.world.ladder().iter().filter(|l| l.contains("lma -> mag2 PBA")).skip(1).all(|l| !l.contains("fid=")));
    assert_eq!(s.arrives_on(flow(1, 5002)).as_deref(), Some("if2"), "the flow state lives as long as the binding");
}

#[test]
fn a_flow_the_mag_asks_for_is_granted_in_the_pba() {
    let mut s = setup(|_| {}, vec![request(2, flow(1, 5002))]);
    s.attach("if2", "mag2", EUtran);
    let pbu = s.world.ladder().into_iter().find(|l| l.contains("mag2 -> lma PBU")).unwrap();
    assert!(pbu.contains("fid=2/pri=20"), "{pbu}");
    assert!(pba_to_mag2(&s).contains("fid=2/pri=20"));
    assert_eq!(s.arrives_on(flow(1, 5002)).as_deref(), Some("if2"));
}

#[test]
fn a_request_the_policy_does_not_grant_leaves_the_flow() {
    let mut s = setup(|p| p.grant_flow_requests = false, vec![request(2, flow(1, 5002))]);
    s.attach("if2", "mag2", EUtran);
    assert!(!pba_to_mag2(&s).contains("fid="), "{:#?}", s.world.ladder());
    assert_eq!(s.arrives_on(flow(1, 5002)).as_deref(), Some("if1"));
    assert!(s.world.mag("mag2").unwrap().state().flows.is_empty());
}

#[test]
fn a_flow_the_lma_does_not_know_is_taken_from_the_request() {
    let mut s = setup(|_| {}, vec![request(7, flow(1, 5003))]);
    s.attach("if2", "mag2", EUtran);
    assert!(pba_to_mag2(&s).contains("fid=7/pri=20"));
    assert_eq!(s.world.lma().unwrap().flow_cache().get(MN, 7).map(|e| e.bids.clone()), Some(vec![2]));
    assert_eq!(s.arrives_on(flow(1, 5003)).as_deref(), Some("if2"));
}

#[test]
fn a_flow_moved_in_a_pba_falls_back_when_its_interface_leaves_and_moves_again_when_it_returns() {
    let mut s = setup(|p| p.flows_on_attach = vec![(mac_for("mn1", "if2"), 2)], vec![]);
    s.attach("if2", "mag2", EUtran);
    s.world.detach("mn1", "if2");
    s.settle();
    s.world.run_for(pmip_proto::Span::from_secs(11));
    assert_eq!(s.arrives_on(flow(1, 5002)).as_deref(), Some("if1"), "the flow falls back to the prefix's binding");
    s.attach("if2", "mag2", EUtran);
    assert_eq!(s.arrives_on(flow(1, 5002)).as_deref(), Some("if2"), "moved again by the new binding's PBA");
}
