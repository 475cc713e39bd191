//! `wait_for` waits by predicate in virtual time: it ends as soon as what
//! it waits for holds, and it is a failed check, saying what was last
//! seen, when its bound passes first.

use std::path::Path;

use pmiplab::report::Verdict;
use pmiplab::run::run_virtual;
use pmiplab::scenario::parse;

const SCENARIO: &str = r#"id: WAIT-01
title: waiting by predicate
lma: { max_lifetime_secs: 8 }
nodes:
  lma: { role: lma }
  mag1: { role: mag }
  mn1: { role: mn, interfaces: [if1], prefixes: ["2001:db8:1::/64"] }
links:
  - { mn: mn1/if1, mag: mag1, att: wifi }
steps:
  - attach: { iface: mn1/if1 }
  - wait_for: { seen: { message: PBU, from: mag1, with: [hi=5] }, timeout: 10s }
  - wait_for: { holds: { node: lma, path: /binding_cache, len: 2 }, timeout: 500ms }
"#;

#[test]
fn wait_for_ends_when_its_predicate_holds_and_fails_when_its_bound_passes() {
    let file = Path::new("wait.yaml");
    let s = parse(file, SCENARIO).unwrap_or_else(|e| panic!("{e}"));
    let r = run_virtual(file, &s);
    assert_eq!(r.verdict, Verdict::Fail, "{:#?}", r.checks);
    let waits: Vec<_> = r.checks.iter().filter(|c| c.what.starts_with("wait for")).collect();
    let [rereg, never] = waits.as_slice() else { panic!("two checks: {:#?}", r.checks) };
    // The MAG re-registers at 3/4 of the 8 s lifetime: 6 s after the first PBA.
    assert!(rereg.passed(), "{rereg:?}");
    let waited: u64 = rereg.detail.split(' ').nth(2).and_then(|n| n.parse().ok()).unwrap_or(0);
    assert!((5990..=6010).contains(&waited), "{}", rereg.detail);
    assert!(!never.ok());
    assert_eq!(never.detail, "not within 500ms: found 1 entries");
}
