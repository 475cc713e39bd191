//! The protocol profile is part of the scenario: the draft's FMI/FMA on a
//! chosen MH type, or RFC 7864's UPN/UPA, which both backends play; a
//! backend without the profile's feature SKIPs and says why instead of
//! running it as something else.

use std::path::Path;

use pmiplab::plan::missing_features;
use pmiplab::report::Verdict;
use pmiplab::run::run_virtual;
use pmiplab::scenario::{parse, Profile};

fn scenario(wire: &str) -> String {
    format!(
        r#"id: PROFILE-01
title: a flow move in a chosen profile
{wire}
nodes:
  lma: {{ role: lma }}
  mag1: {{ role: mag }}
  mn1: {{ role: mn, interfaces: [if1], prefixes: ["2001:db8:1::/64"] }}
links:
  - {{ mn: mn1/if1, mag: mag1, att: wifi }}
steps:
  - attach: {{ iface: mn1/if1 }}
"#
    )
}

#[test]
fn an_rfc7864_scenario_runs_in_both_backends_and_the_draft_profile_too() {
    let file = Path::new("profile.yaml");
    let s = parse(file, &scenario("wire: { profile: rfc7864 }")).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(s.wire.profile, Profile::Rfc7864);
    let r = run_virtual(file, &s);
    assert_eq!(r.verdict, Verdict::Pass, "{:?}", r.reason);
    assert!(missing_features(&s, &pmiplab::plan::NETNS_FEATURES).is_empty());
    // A backend that does not play the profile (an implementation under
    // test, say) still skips it rather than run it as the draft.
    assert_eq!(missing_features(&s, &["virtual", "draft-fmi"]), vec!["rfc7864"]);

    let s = parse(file, &scenario("wire: { profile: draft-fmi, fmi_mh_type: 200 }")).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!((s.wire.profile, s.wire.fmi_mh_type), (Profile::DraftFmi, 200));
    assert_eq!(run_virtual(file, &s).verdict, Verdict::Pass);

    let e = parse(file, &scenario("wire: { profile: rfc5213 }")).expect_err("no such profile");
    assert!(e.to_string().starts_with("profile.yaml:3:18: unknown variant `rfc5213`"), "{e}");
}
