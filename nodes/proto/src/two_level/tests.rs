//! The draft's figures played in virtual time: every table is compared
//! with the figure's rows, line by line.

use std::net::Ipv6Addr;

use pmip_wire::{HandoffIndicator as Hi, Pba, PbaStatus, Pbu};

use super::*;
use crate::output::Output;
use crate::signalling::pick;
use crate::time::Instant;

const LMA: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 0xffff, 0, 0, 0, 0, 1);
const MAG1: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 0xffff, 0, 0, 0, 0, 0x11);
const MAG2: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 0xffff, 0, 0, 0, 0, 0x12);
const MH: &str = "mh@pmip.lab";
const IF1: &[u8] = &[2, 0, 0, 0, 0, 1];
const IF2: &[u8] = &[2, 0, 0, 0, 0, 2];

fn p(s: &str) -> Prefix {
    s.parse().expect("a prefix in the test")
}

struct Lab {
    now: Instant,
    lma: TwoLevelLma,
    mag1: TwoLevelMag,
    mag2: TwoLevelMag,
    names: Names,
    out: Output,
}

impl Lab {
    /// The draft's example prefixes (§3): HNP_1(P) = 2002:1:1::/64 and so
    /// on; the temporal prefixes come from the LMA's distribution.
    fn new() -> Lab {
        let config = TwoLevelConfig::default();
        let mut lma = TwoLevelLma::new(LMA, config.clone());
        lma.add_mn(MH, vec![p("2002:1:1::/64"), p("2002:1:2::/64")]);
        let all = lma.distribute(&[MAG1, MAG2]).expect("two MAGs fit the pool");
        let mut mag1 = TwoLevelMag::new(MAG1, config.clone());
        let mut mag2 = TwoLevelMag::new(MAG2, config);
        mag1.learn_temporal(&all);
        mag2.learn_temporal(&all);
        let mut names = Names::default();
        names.ifaces.insert(IF1.to_vec(), "if1".into());
        names.ifaces.insert(IF2.to_vec(), "if2".into());
        names.mags.insert(MAG1, "MAG1".into());
        names.mags.insert(MAG2, "MAG2".into());
        for (s, n) in [
            ("2002:1:1::/64", "HNP_1(P)"),
            ("2002:1:2::/64", "HNP_2(P)"),
            ("2002:2:1::/48", "HNP_1(T)"),
            ("2002:2:2::/48", "HNP_2(T)"),
            ("2002:2:1:1::/64", "HNP_1_1(T)"),
            ("2002:2:1:2::/64", "HNP_1_2(T)"),
            ("2002:2:2:1::/64", "HNP_2_1(T)"),
            ("2002:2:2:2::/64", "HNP_2_2(T)"),
        ] {
            names.prefixes.insert(p(s), n.into());
        }
        Lab { now: Instant::ZERO, lma, mag1, mag2, names, out: Output::default() }
    }

    fn mag(&mut self, which: u8) -> &mut TwoLevelMag {
        if which == 1 {
            &mut self.mag1
        } else {
            &mut self.mag2
        }
    }

    /// One PBU/PBA exchange between a MAG and the LMA.
    fn exchange(&mut self, which: u8, pbu: Pbu) -> Pba {
        let src = self.mag(which).address;
        let pba = self.lma.on_pbu(self.now, src, &pbu, &mut self.out);
        let now = self.now;
        let mut out = Output::default();
        self.mag(which).on_pba(now, &pba, &mut out);
        pba
    }

    fn attach(&mut self, which: u8, iface: &[u8], hi: Hi, prefixes: &[Prefix]) -> Pba {
        let pbu = self.mag(which).attach(MH, iface, hi, prefixes);
        self.exchange(which, pbu)
    }

    fn carve(&mut self, which: u8, iface: &[u8], service: &str) -> Prefix {
        let (pfx, pbu) = self.mag(which).carve(MH, iface, service).expect("room for a level-2 prefix");
        let pba = self.exchange(which, pbu);
        assert_eq!(pba.status, PbaStatus::Accepted, "registering {pfx}");
        pfx
    }

    fn take(&mut self, which: u8, iface: &[u8], prefixes: &[Prefix]) -> Pba {
        let pbu = self.mag(which).take_flows(MH, iface, prefixes);
        self.exchange(which, pbu)
    }

    /// A flow handover of `prefixes` to MAG `to`'s `iface` (PBU HI 5),
    /// then the L2 hint that tells the other MAG they moved.
    fn hand_over(&mut self, to: u8, iface: &[u8], prefixes: &[Prefix]) -> Pba {
        let pba = self.take(to, iface, prefixes);
        let now = self.now;
        self.mag(3 - to).hint_moved(now, MH, prefixes);
        pba
    }

    fn lma_lines(&self) -> Vec<String> {
        self.lma.table.lines(&self.names)
    }
    fn mag_lines(&self, which: u8) -> Vec<String> {
        if which == 1 {
            self.mag1.table.lines(&self.names)
        } else {
            self.mag2.table.lines(&self.names)
        }
    }
    fn ra(&self, which: u8, iface: &[u8]) -> Vec<String> {
        let m = if which == 1 { &self.mag1 } else { &self.mag2 };
        m.ra_prefixes(MH, iface).iter().map(|x| self.names.prefixes[x].clone()).collect()
    }

    /// Each interface's RA as at the initial stage of scenario 1 (§5.1.1
    /// step 4): its permanent prefix and its MAG's two level-2 prefixes.
    #[track_caller]
    fn assert_initial_ras(&self) {
        assert_eq!(self.ra(1, IF1), lines(&["HNP_1(P)", "HNP_1_1(T)", "HNP_1_2(T)"]));
        assert_eq!(self.ra(2, IF2), lines(&["HNP_2(P)", "HNP_2_1(T)", "HNP_2_2(T)"]));
    }

    /// if1 attached at MAG1 (HI 1) with one level-2 prefix carved for VoIP
    /// (HNP_1_1(T)): where the single-interface figures start.
    fn voip_on_if1() -> Lab {
        let mut lab = Lab::new();
        lab.attach(1, IF1, Hi::NewInterface, &[]);
        lab.carve(1, IF1, "voip");
        lab
    }

    /// §5.1.1: both interfaces attach (HI 1), MAG1 carves two level-2
    /// prefixes (VoIP, web) for if1 and MAG2 two (IPTV, and one more as in
    /// Figure 7) for if2.
    fn scenario_1_initial() -> Lab {
        let mut lab = Lab::new();
        let pba = lab.attach(1, IF1, Hi::NewInterface, &[]);
        assert_eq!(pick(&pba.options).hnps, vec![p("2002:1:1::/64")], "step 3: the PBA carries HNP_1(P)");
        assert_eq!(lab.carve(1, IF1, "voip"), p("2002:2:1:1::/64"));
        assert_eq!(lab.carve(1, IF1, "web"), p("2002:2:1:2::/64"));
        lab.attach(2, IF2, Hi::NewInterface, &[]);
        assert_eq!(lab.carve(2, IF2, "iptv"), p("2002:2:2:1::/64"));
        assert_eq!(lab.carve(2, IF2, "iptv-2"), p("2002:2:2:2::/64"));
        lab
    }
}

/// MAG1's table once if1 is attached with VoIP and web carved (Figures 6
/// and 8), and again when every handover away from it has been reversed.
const MAG1_INITIAL: &[&str] =
    &["MH:if1 [HNP_1(P)] --> MAG1[A]", "MH:if1 [HNP_1(T)] --> MAG1[A]", "MH:if1 [HNP_1_1(T),HNP_1_2(T)] --> MAG1[A]"];

fn lines(v: &[&str]) -> Vec<String> {
    v.iter().map(|s| s.to_string()).collect()
}

/// Figure 6 and Figure 7 (Before/After of the LMA): the initial stage of
/// scenario 1, and the RA that carries the permanent prefix beside the
/// level-2 ones (§5.1.1 step 4).
#[test]
fn figure_6_and_7_initial_stage_of_scenario_1() {
    let lab = Lab::scenario_1_initial();
    assert_eq!(
        lab.lma_lines(),
        lines(&[
            "MH:if1 [HNP_1(P),HNP_1(T)] --> MAG1[A]",
            "MH:if1 [HNP_1_1(T),HNP_1_2(T)] --> MAG1[A]",
            "MH:if2 [HNP_2(P),HNP_2(T)] --> MAG2[A]",
            "MH:if2 [HNP_2_1(T),HNP_2_2(T)] --> MAG2[A]",
        ])
    );
    assert_eq!(lab.mag_lines(1), lines(MAG1_INITIAL));
    lab.assert_initial_ras();
    assert_eq!(lab.mag1.service_of(&p("2002:2:1:1::/64")), Some("voip"));
}

/// Figure 3 / Figure 7 (After): PFHO of the web flow (HNP_1_2(T)) from if1
/// to if2 with a PBU HI 5; the original kept Idle; then the reverse
/// handover makes it Active again, and the Idle entries expire after the
/// configured time.
#[test]
fn figure_7_pfho_idle_entry_and_reverse_handover() {
    let mut lab = Lab::scenario_1_initial();
    let web = p("2002:2:1:2::/64");
    let pba = lab.hand_over(2, IF2, &[web]);
    assert_eq!(pba.status, PbaStatus::Accepted);
    assert_eq!(pick(&pba.options).hi, Some(Hi::NotChanged));
    assert_eq!(
        lab.mag_lines(1),
        lines(&[
            "MH:if1 [HNP_1(P)] --> MAG1[A]",
            "MH:if1 [HNP_1(T)] --> MAG1[A]",
            "MH:if1 [HNP_1_1(T)] --> MAG1[A]",
            "MH:if1 [HNP_1_2(T)] --> MAG1[I]",
        ])
    );
    assert_eq!(
        lab.mag_lines(2),
        lines(&[
            "MH:if2 [HNP_2(P)] --> MAG2[A]",
            "MH:if2 [HNP_2(T)] --> MAG2[A]",
            "MH:if2 [HNP_2_1(T),HNP_2_2(T)] --> MAG2[A]",
            "MH:if2 [HNP_1_2(T)] --> MAG2[A]",
        ])
    );
    assert_eq!(
        lab.lma_lines(),
        lines(&[
            "MH:if1 [HNP_1(P),HNP_1(T)] --> MAG1[A]",
            "MH:if1 [HNP_1_1(T)] --> MAG1[A]",
            "MH:if1 [HNP_1_2(T)] --> MAG1[I]",
            "MH:if2 [HNP_2(P),HNP_2(T)] --> MAG2[A]",
            "MH:if2 [HNP_2_1(T),HNP_2_2(T)] --> MAG2[A]",
            "MH:if2 [HNP_1_2(T)] --> MAG2[A]",
        ])
    );
    assert_eq!(lab.ra(1, IF1), lines(&["HNP_1(P)", "HNP_1_1(T)"]), "the Idle prefix leaves MAG1's RA");
    assert_eq!(lab.ra(2, IF2), lines(&["HNP_2(P)", "HNP_2_1(T)", "HNP_2_2(T)", "HNP_1_2(T)"]));

    // Reverse handover: MAG1 takes the web flow back.
    lab.now = lab.now + crate::time::Span::from_secs(5);
    assert_eq!(lab.hand_over(1, IF1, &[web]).status, PbaStatus::Accepted);
    assert_eq!(
        lab.lma_lines(),
        lines(&[
            "MH:if1 [HNP_1(P),HNP_1(T)] --> MAG1[A]",
            "MH:if1 [HNP_1_1(T)] --> MAG1[A]",
            "MH:if1 [HNP_1_2(T)] --> MAG1[A]",
            "MH:if2 [HNP_2(P),HNP_2(T)] --> MAG2[A]",
            "MH:if2 [HNP_2_1(T),HNP_2_2(T)] --> MAG2[A]",
            "MH:if2 [HNP_1_2(T)] --> MAG2[I]",
        ])
    );
    lab.assert_initial_ras();

    // Idle entries go idle_lifetime after they became Idle, not before.
    let idle_at = lab.now;
    assert_eq!(lab.lma.next_timeout(), Some(idle_at + lab.lma.config.idle_lifetime));
    lab.now = Instant((idle_at + lab.lma.config.idle_lifetime).0 - 1);
    let mut out = Output::default();
    lab.lma.on_timeout(lab.now, &mut out);
    assert_eq!(lab.lma_lines().len(), 6);
    lab.now = idle_at + lab.lma.config.idle_lifetime;
    lab.lma.on_timeout(lab.now, &mut out);
    lab.mag2.on_timeout(lab.now, &mut out);
    assert!(lab.lma_lines().iter().all(|l| l.ends_with("[A]")), "{:?}", lab.lma_lines());
    assert_eq!(lab.lma_lines().len(), 5);
    assert!(lab.mag_lines(2).iter().all(|l| l.ends_with("[A]")));
}

/// Figure 4: FFHO with the aggregated level-1 temporal prefix HNP_1(T);
/// the PBA names the level-2 prefixes it stood for; if1's session stays
/// Idle, and a reverse full handover brings it back.
#[test]
fn figure_4_ffho_with_the_aggregate_and_its_reverse() {
    let mut lab = Lab::scenario_1_initial();
    let t1 = p("2002:2:1::/48");
    let pba = lab.hand_over(2, IF2, &[t1]);
    assert_eq!(pba.status, PbaStatus::Accepted);
    assert_eq!(pick(&pba.options).hnps, vec![p("2002:2:1:1::/64"), p("2002:2:1:2::/64")]);
    assert_eq!(
        lab.lma_lines(),
        lines(&[
            "MH:if1 [HNP_1(P),HNP_1(T)] --> MAG1[A]",
            "MH:if1 [HNP_1_1(T),HNP_1_2(T)] --> MAG1[I]",
            "MH:if2 [HNP_2(P),HNP_2(T)] --> MAG2[A]",
            "MH:if2 [HNP_2_1(T),HNP_2_2(T)] --> MAG2[A]",
            "MH:if2 [HNP_1_1(T),HNP_1_2(T)] --> MAG2[A]",
        ])
    );
    assert_eq!(lab.ra(1, IF1), lines(&["HNP_1(P)"]));
    assert_eq!(lab.mag_lines(2).last().map(String::as_str), Some("MH:if2 [HNP_1_1(T),HNP_1_2(T)] --> MAG2[A]"));
    assert_eq!(lab.mag_lines(1).last().map(String::as_str), Some("MH:if1 [HNP_1_1(T),HNP_1_2(T)] --> MAG1[I]"));
    assert_eq!(lab.ra(2, IF2), lines(&["HNP_2(P)", "HNP_2_1(T)", "HNP_2_2(T)", "HNP_1_1(T)", "HNP_1_2(T)"]));

    assert_eq!(lab.hand_over(1, IF1, &[t1]).status, PbaStatus::Accepted);
    assert_eq!(
        lab.lma_lines(),
        lines(&[
            "MH:if1 [HNP_1(P),HNP_1(T)] --> MAG1[A]",
            "MH:if1 [HNP_1_1(T),HNP_1_2(T)] --> MAG1[A]",
            "MH:if2 [HNP_2(P),HNP_2(T)] --> MAG2[A]",
            "MH:if2 [HNP_2_1(T),HNP_2_2(T)] --> MAG2[A]",
            "MH:if2 [HNP_1_1(T),HNP_1_2(T)] --> MAG2[I]",
        ])
    );
    lab.assert_initial_ras();
    // MAG1's own level-1 temporal prefix never went Idle with the
    // aggregate (it stayed Idle after the reverse handover before).
    assert_eq!(lab.mag_lines(1), lines(MAG1_INITIAL));
}

/// Figure 1: IAHO, if1 moves from MAG1 to MAG2 (HI 3): every entry moves.
#[test]
fn figure_1_iaho_moves_every_entry() {
    let mut lab = Lab::voip_on_if1();
    let pba = lab.attach(2, IF1, Hi::BetweenMags, &[p("2002:1:1::/64")]);
    assert_eq!(pba.status, PbaStatus::Accepted);
    assert_eq!(lab.lma_lines(), lines(&["MH:if1 [HNP_1(P),HNP_1(T)] --> MAG2[A]", "MH:if1 [HNP_1_1(T)] --> MAG2[A]"]));
    // flow1 follows (Figure 1, After): the PBA names HNP_1_1(T) beside
    // HNP_1(P), and MAG2 serves it beside its own temporal prefix.
    assert_eq!(pick(&pba.options).hnps, vec![p("2002:1:1::/64"), p("2002:2:1:1::/64")]);
    assert_eq!(
        lab.mag_lines(2),
        lines(&["MH:if1 [HNP_1(P)] --> MAG2[A]", "MH:if1 [HNP_2(T)] --> MAG2[A]", "MH:if1 [HNP_1_1(T)] --> MAG2[A]"])
    );
    assert_eq!(lab.ra(2, IF1), vec!["HNP_1(P)", "HNP_1_1(T)"]);
}

/// Figure 1 when the interface shows the new MAG another link-layer id:
/// the LMA finds it by the permanent prefix the PBU names (this failed
/// with status 172 before the LMA looked by prefix).
#[test]
fn figure_1_iaho_finds_the_interface_by_its_permanent_prefix() {
    const IF1B: &[u8] = &[2, 0, 0, 0, 0, 0x1b];
    let mut lab = Lab::voip_on_if1();
    lab.names.ifaces.insert(IF1B.to_vec(), "if1".into());
    let pba = lab.attach(2, IF1B, Hi::BetweenMags, &[p("2002:1:1::/64")]);
    assert_eq!(pba.status, PbaStatus::Accepted);
    assert_eq!(lab.lma_lines(), lines(&["MH:if1 [HNP_1(P),HNP_1(T)] --> MAG2[A]", "MH:if1 [HNP_1_1(T)] --> MAG2[A]"]));
    assert_eq!(
        lab.lma.figure(),
        lines(&[
            "MH:02:00:00:00:00:1b [2002:1:1::/64(P),2002:2:1::/48(T)] --> 2001:db8:ffff::12[A]",
            "MH:02:00:00:00:00:1b [2002:2:1:1::/64(T)] --> 2001:db8:ffff::12[A]",
        ])
    );
}

/// Figure 2: IIHO, if2 behind MAG2 takes over if1's session (HI 2): the
/// entries move to if2 and none is kept Idle (unlike FFHO).
#[test]
fn figure_2_iiho_moves_the_interface_and_keeps_nothing_idle() {
    let mut lab = Lab::voip_on_if1();
    let pba = lab.attach(2, IF2, Hi::BetweenInterfaces, &[p("2002:1:1::/64")]);
    assert_eq!(pba.status, PbaStatus::Accepted);
    assert_eq!(lab.lma_lines(), lines(&["MH:if2 [HNP_1(P),HNP_1(T)] --> MAG2[A]", "MH:if2 [HNP_1_1(T)] --> MAG2[A]"]));
    // flow1 follows to if2 (Figure 2, After).
    assert_eq!(lab.mag_lines(2), lines(&["MH:if2 [HNP_1(P)] --> MAG2[A]", "MH:if2 [HNP_1_1(T)] --> MAG2[A]"]));
    assert_eq!(lab.ra(2, IF2), vec!["HNP_1(P)", "HNP_1_1(T)"]);
}

/// Figures 8 and 9 (§5.2): sequential attachment. if1 alone first, then
/// if2 behind MAG2 sharing the permanent prefix HNP_1(P) (HI 2 keeps
/// if1's entries only when if1 is gone; here if2 is a new interface and
/// gets its own permanent prefix, as the draft's "initial attachment of
/// the other interface").
#[test]
fn figures_8_and_9_sequential_attachment() {
    let mut lab = Lab::voip_on_if1();
    lab.carve(1, IF1, "web");
    assert_eq!(lab.mag_lines(1), lines(MAG1_INITIAL));
    assert!(lab.mag_lines(2).is_empty(), "Figure 8: MAG2 has no state yet");
    lab.attach(2, IF2, Hi::NewInterface, &[]);
    lab.carve(2, IF2, "iptv");
    assert_eq!(
        lab.mag_lines(2),
        lines(&["MH:if2 [HNP_2(P)] --> MAG2[A]", "MH:if2 [HNP_2(T)] --> MAG2[A]", "MH:if2 [HNP_2_1(T)] --> MAG2[A]",])
    );
    // Third stage (§5.2.3): an inter-interface handover, if1 lost.
    lab.attach(2, IF2, Hi::BetweenInterfaces, &[p("2002:1:1::/64")]);
    assert!(
        lab.lma_lines().iter().all(|l| l.starts_with("MH:if2") && l.ends_with("--> MAG2[A]")),
        "{:?}",
        lab.lma_lines()
    );
}

/// What the LMA refuses: an MN with no profile (152), a MAG that got no
/// temporal prefix (154), a flow handover of a prefix nobody holds (159),
/// a level-2 prefix outside every temporal prefix (155).
#[test]
fn refusals() {
    let mut lab = Lab::new();
    let mut stranger = TwoLevelMag::new(Ipv6Addr::LOCALHOST, TwoLevelConfig::default());
    let pbu = stranger.attach(MH, IF1, Hi::NewInterface, &[]);
    assert_eq!(
        lab.lma.on_pbu(lab.now, Ipv6Addr::LOCALHOST, &pbu, &mut lab.out).status,
        PbaStatus::MagNotAuthorizedForProxyReg
    );
    let pbu = lab.mag1.attach("nobody@pmip.lab", IF1, Hi::NewInterface, &[]);
    assert_eq!(lab.lma.on_pbu(lab.now, MAG1, &pbu, &mut lab.out).status, PbaStatus::ProxyRegNotEnabled);
    lab.attach(1, IF1, Hi::NewInterface, &[]);
    assert_eq!(lab.take(2, IF2, &[p("2002:2:1:7::/64")]).status, PbaStatus::BcePbuPrefixSetDoNotMatch);
    assert_eq!(lab.take(2, IF2, &[p("2003::/64")]).status, PbaStatus::NotAuthorizedForHomeNetworkPrefix);
}
