//! The 2-level prefix model in the virtual World: PBUs and PBAs cross the
//! wire (through the codec), the tables take the draft's form, and the
//! downlink to a level-2 prefix follows a flow handover and its reverse.

mod common;

use common::*;
use pmip_proto::lma::PrefixModel;
use pmip_proto::two_level::{Flag, TwoLevelConfig};
use pmip_proto::{FlowKey, Span};
use pmip_wire::AccessTechnologyType::{EUtran, Ieee80211};

fn two_level() -> Seed {
    let mut s = seed(policy(PrefixModel::TwoLevel, &[], &[1, 2], 1));
    s.world.enable_two_level(TwoLevelConfig::default(), &[MN.to_string()]).expect("two MAGs fit the pool");
    s
}

/// MN1's if1 attached at MAG1 (802.11) and if2 at MAG2 (E-UTRAN).
fn attach_both(s: &mut Seed) {
    s.attach("if1", "mag1", Ieee80211);
    s.attach("if2", "mag2", EUtran);
}

/// Scenario 1's start (§5.1.1): both interfaces attached and MAG1's two
/// level-2 prefixes carved for if1, VoIP then web.
fn voip_and_web_on_if1() -> Seed {
    let mut s = two_level();
    attach_both(&mut s);
    s.world.two_level_carve("mn1", "if1", "voip").expect("MAG1 carves");
    s.world.two_level_carve("mn1", "if1", "web").expect("MAG1 carves");
    s
}

fn to(prefix: &str, dport: u16) -> FlowKey {
    FlowKey { src: a(CN), dst: p(prefix).with_iid(IID), next_header: 17, src_port: 7000, dst_port: dport }
}

/// (iface-hex-free) rows of a table as (prefixes, MAG, flag).
fn rows(r: &[pmip_proto::two_level::Row]) -> Vec<(Vec<String>, String, Flag)> {
    r.iter().map(|r| (r.prefixes.iter().map(|p| p.to_string()).collect(), r.mag.to_string(), r.flag)).collect()
}

fn row(prefixes: &[&str], mag: &str, flag: Flag) -> (Vec<String>, String, Flag) {
    (prefixes.iter().map(|s| s.to_string()).collect(), mag.to_string(), flag)
}

/// Scenario 1 (§5.1): both interfaces attach, MAG1 carves two level-2
/// prefixes and MAG2 one; the web flow moves to if2 (PFHO) and back.
#[test]
fn pfho_and_its_reverse_move_the_downlink_and_keep_idle_entries() {
    let mut s = voip_and_web_on_if1();
    s.world.two_level_carve("mn1", "if2", "iptv").expect("MAG2 carves");
    s.settle();
    let lma = s.world.state().lma.expect("an LMA").two_level;
    assert_eq!(
        rows(&lma),
        vec![
            row(&["2001:db8:1::/64", "2002:2:1::/48"], MAG1, Flag::A),
            row(&["2001:db8:2::/64", "2002:2:2::/48"], MAG2, Flag::A),
            row(&["2002:2:1:1::/64", "2002:2:1:2::/64"], MAG1, Flag::A),
            row(&["2002:2:2:1::/64"], MAG2, Flag::A),
        ]
    );
    let web = to("2002:2:1:2::/64", 80);
    assert_eq!(s.arrives_on(web).as_deref(), Some("if1"), "the RA gave if1 its level-2 prefixes");
    assert_eq!(s.arrives_on(to("2001:db8:1::/64", 5060)).as_deref(), Some("if1"));

    // PFHO: MAG2 sends a PBU with HI 5 and HNP_1_2(T).
    let before = s.count("PBU");
    s.world.two_level_move("mn1", "if2", &[p("2002:2:1:2::/64")]).expect("MAG2 takes the web flow");
    s.settle();
    assert_eq!(s.count("PBU"), before + 1);
    let pbu = s.world.messages.iter().rev().find(|m| m.summary.starts_with("PBU")).expect("the PBU");
    assert!(pbu.summary.contains("2002:2:1:2::/64"), "{}", pbu.summary);
    assert_eq!(pbu.from, "mag2");
    let state = s.world.state();
    assert_eq!(
        rows(&state.lma.expect("an LMA").two_level),
        vec![
            row(&["2001:db8:1::/64", "2002:2:1::/48"], MAG1, Flag::A),
            row(&["2001:db8:2::/64", "2002:2:2::/48"], MAG2, Flag::A),
            row(&["2002:2:1:1::/64"], MAG1, Flag::A),
            row(&["2002:2:1:2::/64"], MAG1, Flag::I),
            row(&["2002:2:2:1::/64"], MAG2, Flag::A),
            row(&["2002:2:1:2::/64"], MAG2, Flag::A),
        ]
    );
    assert!(rows(&state.mags["mag1"].two_level).contains(&row(&["2002:2:1:2::/64"], MAG1, Flag::I)));
    assert_eq!(s.arrives_on(web).as_deref(), Some("if2"), "the LMA's longest match sends it to MAG2");
    assert_eq!(s.arrives_on(to("2002:2:1:1::/64", 5060)).as_deref(), Some("if1"), "VoIP stays");

    // Reverse: MAG1 takes it back; MAG2's copy becomes Idle.
    s.world.two_level_move("mn1", "if1", &[p("2002:2:1:2::/64")]).expect("MAG1 takes it back");
    s.settle();
    assert_eq!(s.arrives_on(web).as_deref(), Some("if1"));
    let lma = s.world.state().lma.expect("an LMA").two_level;
    assert!(rows(&lma).contains(&row(&["2002:2:1:2::/64"], MAG2, Flag::I)), "{lma:?}");

    // Idle entries expire after the setting (30 s), by the LMA's own timer.
    s.world.run_for(Span::from_secs(31));
    let lma = s.world.state().lma.expect("an LMA").two_level;
    assert!(lma.iter().all(|r| r.flag == Flag::A), "{lma:?}");
}

/// FFHO with the aggregated HNP_1(T): every level-2 flow of if1 goes to
/// if2; if1's entries stay Idle.
#[test]
fn ffho_moves_every_level2_prefix_with_the_aggregate() {
    let mut s = voip_and_web_on_if1();
    s.settle();
    s.world.two_level_move("mn1", "if2", &[p("2002:2:1::/48")]).expect("FFHO");
    s.settle();
    let pba = s.world.messages.iter().rev().find(|m| m.summary.starts_with("PBA")).expect("the PBA");
    assert!(pba.summary.contains("2002:2:1:1::/64") && pba.summary.contains("2002:2:1:2::/64"), "{}", pba.summary);
    assert_eq!(s.arrives_on(to("2002:2:1:1::/64", 5060)).as_deref(), Some("if2"));
    assert_eq!(s.arrives_on(to("2002:2:1:2::/64", 80)).as_deref(), Some("if2"));
    assert_eq!(s.arrives_on(to("2001:db8:1::/64", 80)).as_deref(), Some("if1"), "the permanent prefix stays");
    let lma = s.world.state().lma.expect("an LMA").two_level;
    assert!(rows(&lma).contains(&row(&["2002:2:1:1::/64", "2002:2:1:2::/64"], MAG1, Flag::I)), "{lma:?}");
}

/// When each MAG's policy store knows only the MN interface linked to it
/// (as scenarios configure MAGs), the old MAG still takes the L2 hint and
/// keeps its entry Idle: the hint names the MN by its MN-ID, not by the
/// new interface's link-layer id, which the old MAG has never seen (it
/// used to be dropped there, leaving the old MAG's entry Active).
#[test]
fn the_old_mag_keeps_its_entry_idle_even_without_the_new_interface_in_its_store() {
    use pmip_proto::lma::{Lma, LmaConfig};
    use pmip_proto::mag::{Mag, MagConfig, MnBinding};
    use pmip_proto::mn::{Mn, MnConfig};
    use pmip_proto::world::{mac_for, World};
    let mut cfg = LmaConfig::new(a(LMA));
    cfg.authorized_mags = vec![a(MAG1), a(MAG2)];
    let mut lma = Lma::new(cfg);
    lma.add_policy(policy(PrefixModel::TwoLevel, &[], &[1, 2], 1));
    let mut world = World::new();
    world.add_lma("lma", lma);
    for (name, addr, iface) in [("mag1", MAG1, "if1"), ("mag2", MAG2, "if2")] {
        let mut c = MagConfig::new(a(addr), a(LMA));
        c.mns = vec![MnBinding { ll_id: mac_for("mn1", iface), mn_id: MN.into() }];
        world.add_mag(name, Mag::new(c));
    }
    let interfaces = vec!["if1".to_string(), "if2".to_string()];
    world.add_mn(
        "mn1",
        Mn::new(MnConfig {
            name: "mn1".into(),
            iid: IID,
            interfaces: interfaces.clone(),
            uplink_preference: interfaces,
        }),
    );
    world.add_cn("cn", a(CN));
    let mut s = Seed { world };
    s.world.enable_two_level(TwoLevelConfig::default(), &[MN.to_string()]).expect("two MAGs fit the pool");
    attach_both(&mut s);
    s.world.two_level_carve("mn1", "if1", "web").expect("MAG1 carves");
    s.settle();
    s.world.two_level_move("mn1", "if2", &[p("2002:2:1:1::/64")]).expect("MAG2 takes the web flow");
    s.settle();
    let mag1 = s.world.state().mags["mag1"].two_level.clone();
    assert!(rows(&mag1).contains(&row(&["2002:2:1:1::/64"], MAG1, Flag::I)), "{mag1:?}");
    assert!(!rows(&mag1).contains(&row(&["2002:2:1:1::/64"], MAG1, Flag::A)), "{mag1:?}");
}
