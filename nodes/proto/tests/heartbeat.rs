//! Heartbeats (RFC 5847) in virtual time: requests every interval while
//! there are bindings, a peer down after `missing_allowed` unanswered
//! requests, and what each side does about a peer down or restarted.

mod common;

use common::*;
use pmip_proto::heartbeat::HeartbeatConfig;
use pmip_proto::lma::{Lma, LmaConfig, MagDownAction, PrefixModel};
use pmip_proto::mag::{Mag, MagConfig, MnBinding};
use pmip_proto::world::mac_for;
use pmip_proto::Span;
use pmip_wire::AccessTechnologyType::*;

fn hb(interval_ms: u64, missing_allowed: u32) -> Option<HeartbeatConfig> {
    Some(HeartbeatConfig { interval: Span::from_millis(interval_ms), missing_allowed })
}

fn lma_with(on_down: MagDownAction, restart_counter: u32) -> Lma {
    let mut cfg = LmaConfig::new(a(LMA));
    cfg.authorized_mags = vec![a(MAG1), a(MAG2)];
    cfg.heartbeat = hb(1000, 2);
    cfg.on_mag_down = on_down;
    cfg.restart_counter = restart_counter;
    let mut l = Lma::new(cfg);
    l.add_policy(policy(PrefixModel::Unique, &[], &[1, 2], 1));
    l
}

fn mag1(heartbeat: Option<HeartbeatConfig>, restart_counter: u32) -> Mag {
    let mut c = MagConfig::new(a(MAG1), a(LMA));
    c.mns = vec![MnBinding { ll_id: mac_for("mn1", "if1"), mn_id: MN.into() }];
    c.heartbeat = heartbeat;
    c.restart_counter = restart_counter;
    Mag::new(c)
}

fn summaries(s: &Seed, name: &str) -> Vec<String> {
    s.world.messages.iter().filter(|m| m.summary.starts_with(name)).map(|m| m.summary.clone()).collect()
}

#[test]
fn no_heartbeats_without_bindings_then_one_per_interval_each_answered() {
    let mut s = seed(policy(PrefixModel::Unique, &[], &[1, 2], 1));
    s.world.add_lma("lma", lma_with(MagDownAction::Hold, 7));
    s.world.run_for(Span::from_secs(5));
    assert!(s.world.messages.is_empty(), "no binding, no heartbeat: {:?}", s.world.ladder());
    s.attach("if1", "mag1", Ieee80211);
    s.world.run_for(Span::from_millis(3500));
    assert_eq!(summaries(&s, "HB-REQ"), ["HB-REQ seq=1", "HB-REQ seq=2", "HB-REQ seq=3"]);
    assert_eq!(
        summaries(&s, "HB-RESP"),
        ["HB-RESP seq=1 restart=0", "HB-RESP seq=2 restart=0", "HB-RESP seq=3 restart=0"],
        "the MAG answers with its own Restart Counter"
    );
    let rows = s.world.lma().unwrap().state().heartbeats;
    assert_eq!(rows.len(), 1);
    assert_eq!((rows[0].state, rows[0].restart_counter), ("up", Some(0)));
}

#[test]
fn a_dead_mag_is_declared_down_after_the_missing_requests_and_its_bindings_dropped_or_held() {
    for (action, left) in [(MagDownAction::Drop, 0), (MagDownAction::Hold, 1)] {
        let mut s = seed(policy(PrefixModel::Unique, &[], &[1, 2], 1));
        s.world.add_lma("lma", lma_with(action, 1));
        s.attach("if1", "mag1", Ieee80211);
        assert!(s.world.kill("mag1"));
        s.world.run_for(Span::from_millis(2500));
        assert_eq!(s.world.lma().unwrap().binding_cache().len(), 1, "{action:?}: two unanswered, not yet down");
        s.world.run_for(Span::from_secs(1));
        assert_eq!(s.world.lma().unwrap().binding_cache().len(), left, "{action:?}: down at the third interval");
        s.world.run_for(Span::from_secs(10));
        assert_eq!(s.count("HB-REQ"), 2, "{action:?}: a MAG that is down is not probed again");
        if action == MagDownAction::Hold {
            assert_eq!(s.world.lma().unwrap().state().heartbeats[0].state, "down");
            // The MAG comes back: any message from it makes it live again.
            s.world.add_mag("mag1", mag1(None, 2));
            s.world.detach("mn1", "if1");
            s.attach("if1", "mag1", Ieee80211);
            assert_eq!(s.world.lma().unwrap().state().heartbeats[0].state, "up");
        }
    }
}

#[test]
fn a_restarted_mag_loses_its_bindings_at_the_lma() {
    let mut s = seed(policy(PrefixModel::Unique, &[], &[1, 2], 1));
    s.world.add_lma("lma", lma_with(MagDownAction::Hold, 1));
    s.world.add_mag("mag1", mag1(None, 1));
    s.attach("if1", "mag1", Ieee80211);
    s.world.run_for(Span::from_millis(1100));
    assert_eq!(summaries(&s, "HB-RESP"), ["HB-RESP seq=1 restart=1"]);
    assert!(s.world.kill("mag1"));
    s.world.add_mag("mag1", mag1(None, 2));
    s.world.run_for(Span::from_secs(1));
    assert_eq!(summaries(&s, "HB-RESP").last().map(String::as_str), Some("HB-RESP seq=2 restart=2"));
    assert!(s.world.lma().unwrap().binding_cache().is_empty(), "the restarted MAG lost its BUL: the bindings go");
    assert_eq!(s.arrives_on(flow(1, 1)), None);
}

#[test]
fn a_mag_registers_its_mns_again_when_the_lmas_restart_counter_changes() {
    let mut s = seed(policy(PrefixModel::Unique, &[], &[1, 2], 1));
    let mut l = lma_with(MagDownAction::Hold, 1);
    l.config.heartbeat = None;
    s.world.add_lma("lma", l);
    s.world.add_mag("mag1", mag1(hb(1000, 3), 1));
    s.attach("if1", "mag1", Ieee80211);
    s.world.run_for(Span::from_millis(1100));
    assert!(s.world.kill("lma"));
    let mut l = lma_with(MagDownAction::Hold, 2);
    l.config.heartbeat = None;
    s.world.add_lma("lma", l);
    assert_eq!(s.arrives_on(flow(1, 1)), None, "the restarted LMA has no binding");
    s.world.run_for(Span::from_secs(1));
    let ladder = s.world.ladder();
    assert!(ladder.iter().any(|l| l.contains("HB-RESP seq=2 restart=2")), "{ladder:#?}");
    assert!(ladder.iter().any(|l| l.contains("PBU seq=2") && l.contains("hi=4")), "{ladder:#?}");
    assert_eq!(s.arrives_on(flow(1, 1)).as_deref(), Some("if1"), "registered again, the flow is back");
    // The same counter again is no restart: no further PBU.
    s.world.run_for(Span::from_secs(3));
    assert_eq!(s.count("PBU"), 2, "{:#?}", s.world.ladder());
}

#[test]
fn a_response_that_answers_no_request_in_flight_is_ignored() {
    let mut h = pmip_proto::heartbeat::Heartbeats::new(hb(1000, 1), 5);
    let mut out = pmip_proto::Output::default();
    h.track(pmip_proto::Instant::ZERO, [a(MAG1)]);
    let resp = pmip_wire::Heartbeat {
        unsolicited: false,
        response: true,
        sequence: 9,
        options: vec![pmip_wire::MobilityOption::RestartCounter(3)],
    };
    assert_eq!(h.on_heartbeat(a(LMA), a(MAG1), resp, &mut out), None);
    assert_eq!(h.rows()[0].restart_counter, None, "an unsolicited response teaches nothing");
    let t = pmip_proto::Instant::ZERO + Span::from_secs(1);
    assert!(h.on_timeout(t, a(LMA), &mut out).is_empty());
    assert_eq!(out.transmits.len(), 1, "one request");
    let news = h.on_timeout(t + Span::from_secs(1), a(LMA), &mut out);
    assert_eq!(news, [pmip_proto::heartbeat::PeerNews::Down(a(MAG1))], "missing_allowed 1: down at the next interval");
}

#[test]
fn a_mag_finds_its_lma_down_and_keeps_its_bindings() {
    let mut s = seed(policy(PrefixModel::Unique, &[], &[1, 2], 1));
    let mut l = lma_with(MagDownAction::Hold, 1);
    l.config.heartbeat = None;
    s.world.add_lma("lma", l);
    s.world.add_mag("mag1", mag1(hb(1000, 2), 1));
    s.attach("if1", "mag1", Ieee80211);
    assert!(s.world.kill("lma"));
    s.world.run_for(Span::from_millis(2500));
    assert_eq!(s.world.mag("mag1").unwrap().state().heartbeats[0].state, "up", "two unanswered, not yet down");
    s.world.run_for(Span::from_secs(1));
    let st = s.world.mag("mag1").unwrap().state();
    assert_eq!(st.heartbeats[0].state, "down");
    assert_eq!(st.binding_update_list.len(), 1, "the MAG keeps the binding until it runs out");
    s.world.run_for(Span::from_secs(10));
    assert_eq!(s.count("HB-REQ"), 2, "an LMA that is down is not probed again");
}
