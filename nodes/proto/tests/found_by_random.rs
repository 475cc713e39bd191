//! Bugs the random model test (`pmip_proto::sim`) found, each as the
//! shrunk case it printed, written out here so that the case stays the
//! same whatever becomes of the generator. Each failed on the code before
//! its fix; `run` checks every invariant after every step.

use std::net::Ipv6Addr;

use pmip_proto::lma::PrefixModel;
use pmip_proto::sim::{run, Att, Case, FlowSpec, IfaceSpec, MnSpec, Op, Topology};
use pmip_proto::Prefix;

/// `2001:db8:<n>::/64`, as the generator numbers MN 1's prefixes (0x10 + j).
fn p(n: u16) -> Prefix {
    Prefix::new(Ipv6Addr::new(0x2001, 0xdb8, n, 0, 0, 0, 0, 0), 64)
}

fn mn(ifaces: &[(usize, Att)], model: PrefixModel, shared: &[u16], unique: &[u16]) -> MnSpec {
    MnSpec {
        name: "mn1".into(),
        ifaces: ifaces
            .iter()
            .enumerate()
            .map(|(i, (mag, att))| IfaceSpec { name: format!("if{}", i + 1), mag: *mag, att: *att })
            .collect(),
        model,
        shared: shared.iter().map(|n| p(*n)).collect(),
        unique: unique.iter().map(|n| p(*n)).collect(),
        per_attachment: 1,
    }
}

fn flow(prefix: u16) -> FlowSpec {
    FlowSpec { name: "f1".into(), mn: 0, prefix: p(prefix), dport: 5001, tcp: false, fid: 1 }
}

fn case(mags: usize, m: MnSpec, flows: Vec<FlowSpec>, lifetime: u16, ops: Vec<Op>) -> Case {
    Case {
        seed: 0,
        topology: Topology { mags, mns: vec![m], flows, flow_lifetime_secs: lifetime, min_delay_ms: 1000 },
        ops,
    }
}

fn attach(i: usize) -> Op {
    Op::Attach { mn: 0, iface: i }
}
fn detach(i: usize) -> Op {
    Op::Detach { mn: 0, iface: i }
}
fn bind(bids: &[u16], prefix: bool) -> Op {
    Op::Bind { flow: 0, fid_pri: 10, bids: bids.to_vec(), prefix, drop: false }
}
fn wait(ms: u64) -> Op {
    Op::Wait { ms }
}

fn passes(c: &Case) {
    if let Err(v) = run(c) {
        panic!("{v}\n{}", c.to_scenario("REG-FOUND", &v));
    }
}

/// A MAG spun forever at one instant: a de-registering entry kept its
/// re-registration timer, due and never served.
#[test]
fn a_detach_during_a_due_re_registration_does_not_spin_the_mag() {
    let m = mn(&[(0, Att::Wifi)], PrefixModel::Unique, &[], &[0x11]);
    passes(&case(1, m, vec![], 300, vec![attach(0), wait(290_000), Op::Kill("lma".into()), detach(0), wait(20_000)]));
}

/// Flow state stayed routed to an interface that detached while another
/// interface of the MN stayed on the same MAG: a black hole.
#[test]
fn flow_state_follows_the_mn_to_its_other_interface_on_the_same_mag() {
    let m = mn(&[(0, Att::Lte), (0, Att::Ethernet)], PrefixModel::Unique, &[], &[0x11, 0x12]);
    let ops = vec![attach(0), bind(&[2], false), Op::Move { flow: 0, to_bid: 1 }, attach(1), detach(0)];
    passes(&case(1, m, vec![flow(0x12)], 30, ops));
}

/// FMI[del] went to the MAG of a BID the flow was merely bound to, which
/// held nothing for it, and was refused with 132.
#[test]
fn no_fmi_del_to_a_mag_that_never_held_the_flow() {
    let m = mn(&[(0, Att::Wifi), (1, Att::Lte)], PrefixModel::Hybrid, &[0x10], &[0x11, 0x12, 0x13]);
    let ops = vec![attach(0), attach(1), bind(&[1], true), Op::Move { flow: 0, to_bid: 2 }];
    passes(&case(2, m, vec![flow(0x13)], 300, ops));
}

/// Moving a flow between two bindings behind one MAG sent an FMI[add]
/// that MAG refused with 133.
#[test]
fn moving_between_two_bindings_behind_one_mag_needs_no_fmi() {
    let m =
        mn(&[(0, Att::Ethernet), (0, Att::Wifi), (0, Att::Ethernet)], PrefixModel::Unique, &[], &[0x11, 0x12, 0x13]);
    let ops = vec![
        attach(0),
        attach(2),
        bind(&[4], true),
        Op::MovePrefix { mn: 0, prefix: p(0x13), to_bid: 2 },
        Op::MovePrefix { mn: 0, prefix: p(0x13), to_bid: 1 },
    ];
    passes(&case(1, m, vec![flow(0x13)], 30, ops));
}

/// A prefix move picked FID 1 itself; a later bind of FID 1 took the entry
/// over and left the MAG routing the prefix, not the flow: a black hole.
#[test]
fn a_bind_cancels_what_an_earlier_fmi_left_under_its_fid() {
    let m = MnSpec {
        per_attachment: 2,
        ..mn(
            &[(0, Att::Lte), (0, Att::Lte), (2, Att::Wifi)],
            PrefixModel::Hybrid,
            &[0x10],
            &[0x11, 0x12, 0x13, 0x14, 0x15, 0x16],
        )
    };
    let ops = vec![
        attach(1),
        attach(2),
        attach(0),
        Op::MovePrefix { mn: 0, prefix: p(0x14), to_bid: 1 },
        Op::Bind { flow: 0, fid_pri: 20, bids: vec![4, 5], prefix: false, drop: false },
        Op::Move { flow: 0, to_bid: 3 },
    ];
    passes(&case(3, m, vec![FlowSpec { tcp: true, ..flow(0x13) }], 65535, ops));
}

/// A re-registration and a detach in the same tick carried the same
/// timestamp, and the LMA refused the de-registration with 157. (No
/// scenario: it takes 900 s of re-registrations, which namespaces cannot
/// play, and every scenario in topologies/ must pass in both backends.)
#[test]
fn a_re_registration_and_a_detach_in_one_tick_are_both_accepted() {
    let m = MnSpec {
        per_attachment: 2,
        ..mn(&[(0, Att::Wifi), (1, Att::Ethernet), (1, Att::Lte)], PrefixModel::Shared, &[0x10], &[])
    };
    let ops = vec![attach(1), attach(2), wait(320_000), wait(250_000), wait(320_000), wait(10_000), detach(1)];
    passes(&case(2, m, vec![], 30, ops));
}

fn fault(message: &str, to: Option<&str>, count: u32, action: pmip_proto::fault::FaultAction) -> Op {
    Op::Fault { message: message.into(), from: None, to: to.map(Into::into), count, action }
}

/// Two Flow Mobility Cache entries for one prefix share one state at a
/// MAG (prefix granularity keys it by prefix): moving the second there
/// sent an FMI[add] refused with 133.
#[test]
fn two_entries_for_one_prefix_share_its_state_at_the_mag() {
    let m = mn(&[(2, Att::Wifi), (1, Att::Ethernet), (1, Att::Wifi)], PrefixModel::Unique, &[], &[0x11, 0x12, 0x13]);
    let ops = vec![
        attach(1),
        attach(2),
        Op::MovePrefix { mn: 0, prefix: p(0x11), to_bid: 1 },
        Op::MovePrefix { mn: 0, prefix: p(0x12), to_bid: 1 },
        Op::Bind { flow: 0, fid_pri: 10, bids: vec![3], prefix: true, drop: true },
        Op::MovePrefix { mn: 0, prefix: p(0x12), to_bid: 1 },
    ];
    passes(&case(3, m, vec![flow(0x12)], 30, ops));
}

/// A PBU duplicated on the way was answered 157 the second time; that
/// answer overtook the first and the MAG dropped a binding the LMA kept.
/// Replayed from its seed (its shrunk form depends on what the shrinker
/// ran before it), so this one is tied to the generator of this commit.
#[test]
fn a_duplicated_pbu_is_not_answered_157() {
    let c = Case::generate(0x2099_ba22_c455_05aa, 30);
    passes(&c);
}

/// A bind took over a FID whose prefix move was still in flight; the FMA
/// then committed the newly bound flow to the prefix's MAG, which had no
/// route for it.
#[test]
fn a_move_in_flight_does_not_commit_a_flow_bound_anew_meanwhile() {
    use pmip_proto::fault::FaultAction;
    let m = MnSpec {
        per_attachment: 2,
        ..mn(
            &[(0, Att::Ethernet), (2, Att::Ethernet), (0, Att::Wifi)],
            PrefixModel::Hybrid,
            &[0x10],
            &[0x11, 0x12, 0x13, 0x14, 0x15, 0x16],
        )
    };
    let ops = vec![
        attach(0),
        attach(1),
        attach(2),
        fault("FMI", Some("mag1"), 1, FaultAction::Drop),
        Op::MovePrefix { mn: 0, prefix: p(0x14), to_bid: 3 },
        Op::Bind { flow: 0, fid_pri: 20, bids: vec![1], prefix: false, drop: false },
        wait(131_004),
    ];
    passes(&case(3, m, vec![flow(0x13)], 30, ops));
}

/// Two entries for one prefix at one MAG; moving one on sent that MAG an
/// FMI[del] of the prefix, which removed the state the other counted on.
#[test]
fn an_fmi_del_of_a_prefix_is_known_to_remove_it_for_every_entry() {
    let m = mn(&[(0, Att::Lte), (0, Att::Ethernet), (1, Att::Ethernet)], PrefixModel::Unique, &[], &[0x11, 0x12, 0x13]);
    let ops = vec![
        attach(0),
        attach(1),
        attach(2),
        Op::MovePrefix { mn: 0, prefix: p(0x13), to_bid: 1 },
        Op::MovePrefix { mn: 0, prefix: p(0x12), to_bid: 1 },
        Op::Bind { flow: 0, fid_pri: 20, bids: vec![1], prefix: true, drop: false },
        Op::MovePrefix { mn: 0, prefix: p(0x12), to_bid: 3 },
    ];
    passes(&case(2, m, vec![flow(0x12)], 300, ops));
}

/// A move made silently because the MAG held the prefix for another entry
/// kept nothing of that state; when the other entry was bound anew and its
/// state deleted, the moved entry still pointed at the MAG: a black hole.
#[test]
fn a_move_riding_on_another_entrys_state_ends_with_it() {
    let m = mn(&[(0, Att::Ethernet), (1, Att::Ethernet)], PrefixModel::Unique, &[], &[0x11, 0x12]);
    let f1 = FlowSpec { tcp: true, ..flow(0x11) };
    let f2 = FlowSpec { name: "f2".into(), dport: 5002, fid: 2, ..flow(0x11) };
    let ops = vec![
        attach(0),
        attach(1),
        Op::Bind { flow: 1, fid_pri: 10, bids: vec![1], prefix: true, drop: false },
        Op::MovePrefix { mn: 0, prefix: p(0x11), to_bid: 2 },
        Op::Bind { flow: 0, fid_pri: 10, bids: vec![3], prefix: true, drop: false },
        Op::MovePrefix { mn: 0, prefix: p(0x11), to_bid: 2 },
        Op::Bind { flow: 1, fid_pri: 20, bids: vec![3], prefix: false, drop: false },
        wait(2),
    ];
    passes(&case(3, m, vec![f1, f2], 300, ops));
}
