//! The protocol profile is part of the scenario: the draft's FMI/FMA on a
//! chosen MH type, or RFC 7864, which no backend implements yet, so such a
//! scenario SKIPs and says why instead of running as something else.

use std::path::Path;

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
fn an_rfc7864_scenario_skips_with_the_reason_and_the_draft_profile_runs() {
    let file = Path::new("profile.yaml");
    let s = parse(file, &scenario("wire: { profile: rfc7864 }")).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(s.wire.profile, Profile::Rfc7864);
    let r = run_virtual(file, &s);
    assert_eq!(r.verdict, Verdict::Skip);
    assert!(r.reason.as_deref().unwrap_or("").starts_with("needs rfc7864"), "{:?}", r.reason);

    let s = parse(file, &scenario("wire: { profile: draft-fmi, fmi_mh_type: 200 }")).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!((s.wire.profile, s.wire.fmi_mh_type), (Profile::DraftFmi, 200));
    assert_eq!(run_virtual(file, &s).verdict, Verdict::Pass);

    let e = parse(file, &scenario("wire: { profile: rfc5213 }")).expect_err("no such profile");
    assert!(e.to_string().starts_with("profile.yaml:3:18: unknown variant `rfc5213`"), "{e}");
}
