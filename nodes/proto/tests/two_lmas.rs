//! Two LMAs in one world: each MAG asks its own LMA, an LMA that does not
//! serve the MN answers NOT_LMA_FOR_THIS_MOBILE_NODE (153), and each LMA's
//! data plane, timers and crash are its own.

mod common;

use common::*;
use pmip_proto::lma::{Lma, LmaConfig, PrefixModel};
use pmip_proto::mag::{Mag, MagConfig, MnBinding};
use pmip_proto::world::mac_for;
use pmip_proto::Span;
use pmip_wire::AccessTechnologyType::*;

const LMA2: &str = "2001:db8:ffff::2";

fn lma(address: &str, served_by: Option<&str>) -> Lma {
    let mut cfg = LmaConfig::new(a(address));
    cfg.authorized_mags = vec![a(MAG1), a(MAG2)];
    let mut l = Lma::new(cfg);
    let mut p = policy(PrefixModel::Unique, &[], &[1, 2], 1);
    p.served_by = served_by.map(a);
    l.add_policy(p);
    l
}

/// `lma` serves the MN; mag2 sends its PBUs to `lma2`, which does not.
fn two_lmas() -> Seed {
    let mut s = seed(policy(PrefixModel::Unique, &[], &[1, 2], 1));
    s.world.add_other_lma("lma2", lma(LMA2, Some(LMA)));
    let mut c = MagConfig::new(a(MAG2), a(LMA2));
    c.mns = ["if1", "if2"].iter().map(|i| MnBinding { ll_id: mac_for("mn1", i), mn_id: MN.into() }).collect();
    s.world.add_mag("mag2", Mag::new(c));
    s
}

#[test]
fn the_lma_that_does_not_serve_the_mn_answers_153() {
    let mut s = two_lmas();
    s.attach("if1", "mag1", Ieee80211);
    s.attach("if2", "mag2", EUtran);
    let ladder = s.world.ladder();
    assert!(ladder[2].contains("mag2 -> lma2 PBU"), "{ladder:#?}");
    assert!(ladder[3].contains("lma2 -> mag2 PBA") && ladder[3].contains("status=153"), "{ladder:#?}");
    assert_eq!(s.world.lma().unwrap().binding_cache().len(), 1, "the serving LMA keeps its binding");
    assert!(s.world.lma_named("lma2").unwrap().binding_cache().is_empty());
    assert!(s.world.lma_plane_of("lma2").unwrap().routes.is_empty(), "no route at the LMA that refused");
    assert_eq!(s.arrives_on(flow(1, 1)).as_deref(), Some("if1"));
    let st = s.world.state();
    assert!(st.other_lmas.contains_key("lma2"), "the second LMA's tables are in the world's state");
}

#[test]
fn the_second_lma_serves_its_own_mns_and_runs_its_own_timers() {
    let mut s = seed(policy(PrefixModel::Unique, &[], &[1, 2], 1));
    // lma2 serves the MN and grants at most 8 s; mag2 asks it.
    let mut l2 = lma(LMA2, None);
    l2.config.max_lifetime_secs = 8;
    s.world.add_other_lma("lma2", l2);
    let mut c = MagConfig::new(a(MAG2), a(LMA2));
    c.mns = vec![MnBinding { ll_id: mac_for("mn1", "if2"), mn_id: MN.into() }];
    s.world.add_mag("mag2", Mag::new(c));
    s.attach("if2", "mag2", EUtran);
    assert_eq!(s.world.lma_named("lma2").unwrap().binding_cache().len(), 1);
    assert_eq!(s.world.lma_plane_of("lma2").unwrap().routes.len(), 1, "lma2's own plane routes the prefix");
    assert!(s.world.lma_plane_of("lma").unwrap().routes.is_empty(), "the first LMA's plane is untouched");
    // mag2 re-registers before the granted 8 s run out: lma2 answers.
    s.world.run_for(Span::from_secs(20));
    assert!(s.count("PBA") >= 3, "{:#?}", s.world.ladder());
    assert_eq!(s.world.lma_named("lma2").unwrap().binding_cache().len(), 1, "still registered");
    assert!(s.world.kill("lma2"), "lma2 can crash");
    assert!(s.world.lma_named("lma2").is_none() && s.world.lma_plane_of("lma2").is_none());
    assert!(s.world.lma().is_some(), "the first LMA runs on");
}
