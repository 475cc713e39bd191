//! Lost messages are recovered by retransmission; lifetimes that run out
//! remove the state they should.

mod common;

use common::*;
use pmip_proto::fault::{FaultAction, FaultRule};
use pmip_proto::flow::prefix_selector;
use pmip_proto::lma::{FlowAction, PrefixModel};
use pmip_proto::Span;
use pmip_wire::AccessTechnologyType::*;

fn drop(message: &str, count: u32) -> FaultRule {
    FaultRule::drop(message, count)
}

fn two_interfaces() -> Seed {
    let mut s = seed(policy(PrefixModel::Unique, &[], &[1, 2], 1));
    s.attach("if1", "mag1", Ieee80211);
    s.attach("if2", "mag2", EUtran);
    s.bind_selector(2, 20, prefix_selector(pref(2)), &[2], FlowAction::Forward);
    s
}

#[test]
fn a_lost_pba_is_recovered_by_the_mags_retransmission() {
    let mut s = seed(policy(PrefixModel::Unique, &[], &[1, 2], 1));
    s.world.add_fault(drop("PBA", 1));
    s.attach("if1", "mag1", Ieee80211);
    assert_eq!(s.arrives_on(flow(1, 1)), None, "not registered yet");
    let ok = s.world.run_until(Span::from_secs(5), |w| w.mag("mag1").unwrap().state().routes.len() == 2);
    assert!(ok, "the MAG retransmitted the PBU and got a PBA");
    s.settle();
    assert_eq!(s.names(), ["PBU", "PBA(dropped)", "PBU", "PBA"]);
    assert_eq!(s.arrives_on(flow(1, 1)).as_deref(), Some("if1"));
}

#[test]
fn a_lost_fmi_is_retransmitted_by_the_lma() {
    let mut s = two_interfaces();
    s.world.add_fault(drop("FMI", 1));
    s.move_flow(2, 1);
    assert_eq!(s.arrives_on(flow(2, 1)).as_deref(), Some("if2"), "no move without an FMA");
    s.world.run_for(Span::from_secs(2));
    assert_eq!(&s.names()[4..], ["FMI(dropped)", "FMI", "FMA", "FMI", "FMA"]);
    assert_eq!(s.arrives_on(flow(2, 1)).as_deref(), Some("if1"));
}

#[test]
fn a_lost_fma_makes_the_lma_repeat_the_fmi_and_the_mag_repeat_its_answer() {
    let mut s = two_interfaces();
    s.world.add_fault(FaultRule { from: Some("mag1".into()), ..FaultRule::drop("FMA", 1) });
    s.move_flow(2, 1);
    s.world.run_for(Span::from_secs(2));
    let fmi_seqs: Vec<&str> =
        s.world.messages.iter().filter(|m| m.summary.starts_with("FMI")).map(|m| m.summary.as_str()).collect();
    assert!(fmi_seqs[0].contains("seq=1") && fmi_seqs[1].contains("seq=1"), "same sequence number: {fmi_seqs:?}");
    let fmas: Vec<&str> = s
        .world
        .messages
        .iter()
        .filter(|m| m.summary.starts_with("FMA") && m.from == "mag1")
        .map(|m| m.summary.as_str())
        .collect();
    assert!(fmas.iter().all(|f| f.contains("status=0")), "the repeat is a success, not 133: {fmas:?}");
    assert_eq!(s.arrives_on(flow(2, 1)).as_deref(), Some("if1"));
}

#[test]
fn a_lost_bra_makes_the_lma_repeat_the_bri() {
    let mut s = seed(policy(PrefixModel::Unique, &[], &[1, 2], 2));
    s.world.add_fault(drop("BRA", 1));
    s.attach("if1", "mag1", Ieee80211);
    s.attach_with("if2", "mag2", EUtran, pmip_wire::HandoffIndicator::NewInterfaceSharingPrefixes, vec![pref(2)]);
    s.world.run_for(Span::from_secs(2));
    assert_eq!(&s.names()[2..], ["PBU", "PBA", "BRI", "BRA(dropped)", "BRI", "BRA"]);
    assert!(s.world.messages.last().unwrap().summary.contains("status=0"));
    assert!(s.world.state().lma.unwrap().pending.is_empty());
}

#[test]
fn flow_state_at_a_mag_expires_when_refreshes_are_lost() {
    let mut s = two_interfaces();
    s.move_flow(2, 1);
    assert_eq!(s.world.mag("mag1").unwrap().state().flows.len(), 1);
    // Every later FMI to mag1 is lost: refresh at 240 s never arrives.
    s.world.add_fault(FaultRule { to: Some("mag1".into()), ..FaultRule::drop("FMI", 1000) });
    s.world.run_for(Span::from_secs(301));
    assert!(s.world.mag("mag1").unwrap().state().flows.is_empty(), "MAG1's flow state expired");
    // Refresh at 240 s, then retries 1, 2, 4, 8 and 16 s apart; at 300 s
    // the LMA knows the MAG's state has run out and stops waiting.
    s.world.run_for(Span::from_secs(10));
    assert!(s.world.events.iter().any(|e| e.node == "mag1" && e.text.contains("expired")));
    assert!(s.world.events.iter().any(|e| e.node == "lma" && e.text.contains("ran out unrefreshed")));
    assert!(s.world.state().lma.unwrap().pending.is_empty(), "the refresh is no longer retransmitted");
}

#[test]
fn a_binding_whose_lifetime_runs_out_is_removed_and_its_flows_go_inactive() {
    let mut s = two_interfaces();
    s.world.add_fault(FaultRule { from: Some("mag2".into()), ..FaultRule::drop("PBU", 1000) });
    s.world.run_for(Span::from_secs(401));
    let lma = s.world.state().lma.unwrap();
    assert_eq!(lma.binding_cache.len(), 1, "BID 2 expired: {lma:?}");
    assert_eq!(lma.binding_cache[0].bid, 1);
    assert_eq!(lma.flow_mobility_cache[0].state, "inactive");
    assert!(s.world.events.iter().any(|e| e.node == "lma" && e.text.contains("expired")));
}

#[test]
fn signalling_survives_a_lossy_link_and_latency_shows_in_the_ladder() {
    let mut s = seed(policy(PrefixModel::Unique, &[], &[1, 2], 1));
    s.world.set_link(
        "mag1",
        "lma",
        pmip_proto::world::LinkProps { latency: Span::from_millis(20), loss_per_mille: 500 },
    );
    s.world.seed_loss(7);
    s.attach("if1", "mag1", Ieee80211);
    let ok = s.world.run_until(Span::from_secs(120), |w| w.mag("mag1").unwrap().state().routes.len() == 2);
    assert!(ok, "half the messages lost, and still registered: {:?}", s.world.ladder());
    let answer = s.world.messages.iter().find(|m| m.from == "lma" && !m.dropped).unwrap();
    let seq = answer.summary.split(' ').nth(1).unwrap();
    let asked = s.world.messages.iter().find(|m| m.from == "mag1" && m.summary.split(' ').nth(1) == Some(seq)).unwrap();
    assert_eq!(answer.at_ms - asked.at_ms, 20, "the PBA leaves one link latency after its PBU");
    assert!(s.world.messages.iter().any(|m| m.dropped), "the link did lose messages");
}

#[test]
fn the_protocol_core_depends_on_no_socket_runtime_or_clock_crate() {
    let manifest = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/Cargo.toml")).unwrap();
    let deps = manifest.split("[dependencies]").nth(1).unwrap().split("\n[").next().unwrap();
    let names: Vec<&str> =
        deps.lines().filter_map(|l| l.split('=').next()).map(str::trim).filter(|n| !n.is_empty()).collect();
    // A pure hash function (rustc-hash) is no I/O; every crate added here
    // is looked at for sockets, runtimes and clocks first.
    assert_eq!(names, ["pmip-wire", "rustc-hash", "serde"], "nodes/proto must stay sans-IO");
}

fn fault(message: &str, from: Option<&str>, to: Option<&str>, action: FaultAction) -> FaultRule {
    FaultRule { from: from.map(Into::into), to: to.map(Into::into), action, ..FaultRule::drop(message, 1) }
}

#[test]
fn a_duplicated_fmi_is_answered_twice_and_the_second_fma_changes_nothing() {
    let mut s = two_interfaces();
    s.world.add_fault(fault("FMI", Some("lma"), None, FaultAction::Duplicate));
    s.move_flow(2, 1);
    s.world.run_for(Span::from_secs(3));
    // Both copies are on the wire and both are answered, with success:
    // the MAG applies the same FMI twice to the same end.
    assert_eq!(&s.names()[4..], ["FMI", "FMI", "FMA", "FMA", "FMI", "FMA"]);
    let fmas: Vec<&str> =
        s.world.messages.iter().filter(|m| m.summary.starts_with("FMA seq=1")).map(|m| m.summary.as_str()).collect();
    assert!(fmas.iter().all(|f| f.contains("status=0")), "{fmas:?}");
    assert!(
        s.world.events.iter().any(|e| e.node == "lma" && e.text.contains("FMA seq 1")),
        "the LMA says it ignored the second FMA"
    );
    assert_eq!(s.count("FMI"), 3, "no retransmission: the first FMA completed the move");
    assert_eq!(s.arrives_on(flow(2, 1)).as_deref(), Some("if1"));
}

#[test]
fn a_pba_delayed_past_the_retransmission_is_ignored_when_it_arrives() {
    let mut s = seed(policy(PrefixModel::Unique, &[], &[1, 2], 1));
    s.world.add_fault(fault("PBA", Some("lma"), None, FaultAction::Delay { ms: 1500 }));
    s.attach("if1", "mag1", Ieee80211);
    s.world.run_for(Span::from_secs(3));
    let ladder = s.world.ladder();
    let pbas: Vec<&String> = ladder.iter().filter(|l| l.contains("PBA")).collect();
    // The MAG gave up waiting at 1 s and sent PBU seq=2; its PBA arrives
    // first, and the one for seq=1 leaves the LMA 1.5 s after it was due.
    assert!(pbas[0].contains("PBA seq=2"), "{ladder:#?}");
    assert!(pbas[1].contains("PBA seq=1") && pbas[1].starts_with("1501ms"), "{ladder:#?}");
    assert!(
        s.world.events.iter().any(|e| e.node == "mag1" && e.text.contains("PBA seq 1 matches no PBU in flight")),
        "{:#?}",
        s.world.events
    );
    assert_eq!(s.arrives_on(flow(1, 1)).as_deref(), Some("if1"));
}

#[test]
fn a_reorder_at_the_sender_swaps_a_message_with_the_next_one_on_the_wire() {
    let mut s = seed(policy(PrefixModel::Unique, &[], &[1, 2], 1));
    // The LMA holds its PBA to MAG1 until its next message, the PBA to
    // MAG2, and sends it right after that one.
    s.world.add_fault(fault("PBA", Some("lma"), None, FaultAction::Reorder));
    s.attach("if1", "mag1", Ieee80211);
    s.attach("if2", "mag2", EUtran);
    let ladder: Vec<String> =
        s.world.ladder().iter().map(|l| l.split(" lifetime").next().unwrap_or("").to_string()).collect();
    assert_eq!(
        ladder,
        [
            "0ms mag1 -> lma PBU seq=1",
            "50ms mag2 -> lma PBU seq=1",
            "51ms lma -> mag2 PBA seq=1 status=0",
            "51ms lma -> mag1 PBA seq=1 status=0",
        ]
    );
    assert_eq!(s.arrives_on(flow(1, 1)).as_deref(), Some("if1"));
}

#[test]
fn a_reorder_at_the_receiver_leaves_the_wire_as_sent() {
    let mut s = two_interfaces();
    s.world.add_fault(fault("FMA", None, Some("lma"), FaultAction::Reorder));
    s.move_flow(2, 1);
    s.world.run_for(Span::from_secs(3));
    // The FMA is on the wire at once but the LMA handles it only after the
    // next message it receives: the FMA answering its repeated FMI.
    assert_eq!(&s.names()[4..8], ["FMI", "FMA", "FMI", "FMA"]);
    assert_eq!(s.arrives_on(flow(2, 1)).as_deref(), Some("if1"));
}

#[test]
fn a_pbu_late_past_the_timestamp_window_is_sent_again_with_a_fresh_timestamp() {
    let mut s = seed(policy(PrefixModel::Unique, &[], &[1, 2], 1));
    // 400 ms on the way: past the LMA's 300 ms window (156), before the
    // MAG's own retransmission at 1 s.
    s.world.add_fault(fault("PBU", Some("mag1"), None, FaultAction::Delay { ms: 400 }));
    s.attach("if1", "mag1", Ieee80211);
    s.world.run_for(Span::from_secs(2));
    assert!(s.world.messages.iter().any(|m| m.summary.contains("status=156")), "{:#?}", s.world.ladder());
    assert_eq!(
        s.world.mag("mag1").unwrap().state().binding_update_list[0].state,
        pmip_proto::mag::BulState::Registered
    );
    assert_eq!(s.arrives_on(flow(1, 1)).as_deref(), Some("if1"));
}

#[test]
fn a_mag_registers_again_an_mn_still_on_its_link_when_its_binding_ran_out() {
    let mut s = seed(policy(PrefixModel::Unique, &[], &[1, 2], 1));
    s.attach("if1", "mag1", Ieee80211);
    // Every answer to the re-registration at 300 s and to its repeats is
    // lost until the binding has run out at both ends.
    s.world.add_fault(FaultRule { to: Some("mag1".into()), ..FaultRule::drop("PBA", 12) });
    s.world.run_for(Span::from_secs(800));
    let bul = s.world.mag("mag1").unwrap().state().binding_update_list;
    assert_eq!(bul.len(), 1, "the MN is still on the link: {:#?}", s.world.events);
    assert_eq!(bul[0].state, pmip_proto::mag::BulState::Registered);
    assert_eq!(s.arrives_on(flow(1, 1)).as_deref(), Some("if1"));
}
