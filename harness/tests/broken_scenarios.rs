//! Bad input is refused with a sentence that names the file, line and
//! column and says what was expected.

use std::path::Path;

use pmiplab::scenario::parse;

const GOOD: &str = r#"id: T-01
title: a scenario to break
nodes:
  lma: { role: lma }
  mag1: { role: mag }
  mn1: { role: mn, interfaces: [if1], prefixes: ["2001:db8:1::/64"] }
  cn: { role: cn }
links:
  - { mn: mn1/if1, mag: mag1, att: wifi }
flows:
  X: { mn: mn1, prefix: "2001:db8:1::/64", dport: 5001 }
steps:
  - attach: { iface: mn1/if1 }
  - expect_flow: { flow: X, arrives_on: mn1/if1 }
"#;

fn broken(from: &str, to: &str) -> String {
    assert!(GOOD.contains(from), "test bug: {from:?} is not in the good scenario");
    GOOD.replacen(from, to, 1)
}

/// Parses `text` and returns "line:col: message".
fn error(text: &str) -> String {
    let e = parse(Path::new("case.yaml"), text).expect_err("this scenario must be refused");
    let s = e.to_string();
    assert!(s.starts_with("case.yaml:"), "the error names the file: {s}");
    s.trim_start_matches("case.yaml:").to_string()
}

#[test]
fn the_good_scenario_is_accepted() {
    let s = parse(Path::new("case.yaml"), GOOD).unwrap();
    // Saying nothing about security means ESP on (issue 15).
    assert!(s.security.esp.value);
    let off =
        parse(Path::new("case.yaml"), &broken("title: a scenario to break", "title: t\nsecurity: { esp: false }"));
    assert!(!off.unwrap().security.esp.value);
}

#[test]
fn broken_scenarios_are_refused_with_where_and_what() {
    let cases: Vec<(String, &str)> = vec![
        // YAML syntax: an unclosed flow mapping.
        (broken("  lma: { role: lma }", "  lma: { role: lma"), "4:"),
        // A retransmission timer of zero.
        (
            broken("title: a scenario to break", "title: t\nlma: { initial_retransmit_ms: 0 }"),
            "3:8: invalid value: integer `0`, expected a nonzero u64",
        ),
        // An unknown key at the top.
        (broken("title: a scenario to break", "title: t\ncolour: blue"), "3:1: unknown field `colour`"),
        // A ladder column that names no node, one named twice, no room.
        (
            broken("title: a scenario to break", "title: t\nladder: { columns: [lma, mag9] }"),
            "3:26: there is no node named 'mag9'",
        ),
        (
            broken("title: a scenario to break", "title: t\nladder: { columns: [lma, mag1, lma] }"),
            "3:32: 'lma' is in the ladder's columns twice",
        ),
        (
            broken("title: a scenario to break", "title: t\nladder: { width: 30 }"),
            "3:18: a ladder 30 columns wide has no room to draw in: give at least 40",
        ),
        // An unknown key in a node.
        (broken("mag1: { role: mag }", "mag1: { role: mag, colour: 1 }"), "5:22: unknown field `colour`"),
        // A role that does not exist.
        (broken("mag1: { role: mag }", "mag1: { role: router }"), "5:17: unknown variant `router`"),
        // A link to a node that does not exist.
        (broken("mag: mag1, att", "mag: mag9, att"), "9:25: there is no node named 'mag9'"),
        // A link to an interface the MN does not have.
        (broken("{ mn: mn1/if1, mag", "{ mn: mn1/if7, mag"), "9:11: mn1 has no interface 'if7'"),
        // An interface attached twice.
        (
            broken("  - expect_flow:", "  - attach: { iface: mn1/if1 }\n  - expect_flow:"),
            "14:22: mn1/if1 is attached twice without a detach in between",
        ),
        // A wait_for with nothing to wait for.
        (
            broken("  - expect_flow:", "  - wait_for: { timeout: 2s }\n  - expect_flow:"),
            "14:5: wait_for needs exactly one of 'seen' (a message) or 'holds' (a state)",
        ),
        // A wait_for bound that is not a duration.
        (
            broken("  - expect_flow:", "  - wait_for: { seen: { message: PBA }, timeout: soon }\n  - expect_flow:"),
            "14:50: 'soon' is not a duration: write e.g. 500ms or 5s",
        ),
        // A delay with no length.
        (
            broken("  - expect_flow:", "  - fault: { message: PBA, action: delay }\n  - expect_flow:"),
            "14:36: a delay needs 'delay_ms'",
        ),
        // A fault action that does not exist.
        (
            broken("  - expect_flow:", "  - fault: { message: PBA, action: shuffle }\n  - expect_flow:"),
            "14:36: 'shuffle' is not a fault action; expected drop, delay, duplicate or reorder",
        ),
        // A flow stopped that was never started.
        (
            broken("  - expect_flow:", "  - stop_flow: { flow: X }\n  - expect_flow:"),
            "14:24: the downlink of flow X is stopped but no start_flow started it",
        ),
        // A flow sent faster than the probes can go.
        (
            broken("  - expect_flow:", "  - start_flow: { flow: X, rate_pps: 0 }\n  - expect_flow:"),
            "14:38: rate_pps is 0; it must be between 1 and 100000",
        ),
        // An option send cannot leave out.
        (
            broken("  - expect_flow:", "  - send: { pbu: mn1/if1, omit: [checksum] }\n  - expect_flow:"),
            "14:34: 'checksum' is not an option send can leave out; expected one of mn-id, hnp, hi, att, ll-id, timestamp",
        ),
        // An FMI operation that does not exist.
        (
            broken("  - expect_flow:", "  - send_fmi: { to: mag1, mn: mn1, fid: 2, dst: \"2001:db8:1::/64\", op: swap }\n  - expect_flow:"),
            "14:72: 'swap' is not an FMI operation; expected add, del or refresh",
        ),
        // A spoof from a node with no link to the receiver: a CN's one link
        // is to the LMA.
        (
            broken("  - expect_flow:", "  - spoof: { from: cn, as: lma, to: mag1, message: { bri: { mn: mn1 } } }\n  - expect_flow:"),
            "14:20: cn is a CN: its one link is to the LMA lma, not to mag1",
        ),
        // Only a CN or an MN spoofs, on its own link.
        (
            broken("  - expect_flow:", "  - spoof: { from: mag1, as: lma, to: lma, message: { bri: { mn: mn1 } } }\n  - expect_flow:"),
            "14:20: mag1 is not a CN or an MN: only they spoof, on their own link",
        ),
        // An MN spoofs on its access link to a MAG, not to the LMA.
        (
            broken("  - expect_flow:", "  - spoof: { from: mn1, as: mag1, to: lma, message: { bri: { mn: mn1 } } }\n  - expect_flow:"),
            "14:20: mn1 has no link to lma (an MN spoofs on its access link to a MAG)",
        ),
        // A spoofed PBU's sender is the spoof's, not the message's.
        (
            broken("  - expect_flow:", "  - spoof: { from: cn, as: mag1, to: lma, message: { send: { pbu: mn1/if1, from: mag1 } } }\n  - expect_flow:"),
            "14:82: a spoofed PBU is sent by the spoof's 'from' as 'as': leave 'from' out here",
        ),
        // ESP is on or off.
        (broken("title: a scenario to break", "title: t\nsecurity: { esp: sometimes }"), "3:18: invalid boolean"),
        // A security setting that does not exist.
        (broken("title: a scenario to break", "title: t\nsecurity: { ipsec: ikev2 }"), "3:13: unknown field `ipsec`"),
        // A node restarted that was never killed.
        (
            broken("  - expect_flow:", "  - restart: mag1\n  - expect_flow:"),
            "14:14: mag1 is restarted but was not killed",
        ),
        // A CN cannot crash on purpose.
        (
            broken("  - expect_flow:", "  - kill: cn\n  - expect_flow:"),
            "14:11: cn is not an lma or a mag node: only those can be killed and restarted",
        ),
        // A flow to an unknown MN.
        (broken("X: { mn: mn1,", "X: { mn: mn2,"), "11:12: there is no node named 'mn2'"),
        // A flow to a prefix the MN does not own.
        (
            broken("X: { mn: mn1, prefix: \"2001:db8:1::/64\"", "X: { mn: mn1, prefix: \"2001:db8:9::/64\""),
            "11:12: flow X: 2001:db8:9::/64 is not one of mn1's prefixes",
        ),
        // A wrong type: a port that is not a number.
        (broken("dport: 5001", "dport: fifty"), "11:51: invalid u16"),
        // A port out of range.
        (broken("dport: 5001", "dport: 70000"), "11:51: invalid u16"),
        // A prefix that does not parse.
        (broken("prefixes: [\"2001:db8:1::/64\"]", "prefixes: [\"2001:db8:1::/200\"]"), "6:"),
        // An unknown access technology.
        (broken("att: wifi", "att: carrier-pigeon"), "9:36: 'carrier-pigeon' is not an access technology"),
        // An expectation on an unknown flow.
        (broken("expect_flow: { flow: X,", "expect_flow: { flow: Z,"), "14:26: there is no flow named 'Z' under flows"),
        // A step that does not exist.
        (broken("  - expect_flow:", "  - teleport: mn1\n  - expect_flow:"), "14:5: unknown variant `teleport`"),
        // A wait that is not a duration.
        (broken("  - expect_flow:", "  - wait: soon\n  - expect_flow:"), "14:11: 'soon' is not a duration"),
        // No LMA.
        (broken("  lma: { role: lma }\n", ""), "a scenario needs at least one lma node"),
        // An MN served by a node that is not an LMA.
        (
            broken("mn1: { role: mn,", "mn1: { role: mn, lma: mag1,"),
            "6:25: 'mag1' is a mag node, but a lma node is expected here",
        ),
        // A flow moved on attach with no bind step to give it an FID.
        (
            broken("att: wifi }", "att: wifi, moved_on_attach: [X] }"),
            "9:60: flow X has no FID: a bind step gives it the FID the PBU or PBA carries",
        ),
        // A heartbeat on an MN.
        (
            broken("mn1: { role: mn,", "mn1: { role: mn, heartbeat: { interval_ms: 1000 },"),
            "only mag nodes take 'heartbeat'",
        ),
        // 'proxy_enabled' on a MAG.
        (broken("mag1: { role: mag }", "mag1: { role: mag, proxy_enabled: false }"), "only mn nodes take 'proxy_enabled'"),
        // A missing required field.
        (broken("title: a scenario to break\n", ""), "1:1: missing field `title`"),
        // A detach of an interface never attached.
        (
            broken("  - attach: { iface: mn1/if1 }\n", "  - detach: mn1/if1\n"),
            "13:13: mn1/if1 is detached but was not attached",
        ),
        // MN-only fields on a MAG.
        (
            broken("mag1: { role: mag }", "mag1: { role: mag, prefixes: [\"2001:db8:5::/64\"] }"),
            "only mn nodes take 'prefixes'",
        ),
        // An id that climbs out of --out, or is an absolute path, or holds a newline.
        (
            broken("id: T-01", "id: ../../../x"),
            "1:5: the scenario id '../../../x' names the folder of its results: use at most 64 letters, digits, -, _ and ., starting with a letter or a digit",
        ),
        (broken("id: T-01", "id: /etc/x"), "1:5: the scenario id '/etc/x' names the folder"),
        (broken("id: T-01", "id: \"T\\n01\""), "1:5: the scenario id 'T\\n01' names the folder"),
        // A node name longer than an interface name can hold once prefixed with to-.
        (
            broken("mag1: { role: mag }", "magnificent-mag: { role: mag }"),
            "5:20: node name 'magnificent-mag' must be 1 to 12 letters, digits, - and _",
        ),
        // A node name that is a path.
        (broken("mag1: { role: mag }", "\"../mag\": { role: mag }"), "5:13: node name '../mag' must be"),
        // An MN interface whose MAG port to-mn1-<iface> would not fit.
        (
            broken("interfaces: [if1]", "interfaces: [wireless-lan0]"),
            "6:8: mn1: interface name 'wireless-lan0' must be letters, digits, - and _, not one of lo, lif, core, eth0, and short enough that the MAG's port to-mn1-wireless-lan0 fits in 15 characters",
        ),
        // An MN interface named like the MN's logical interface.
        (broken("interfaces: [if1]", "interfaces: [lif]"), "6:8: mn1: interface name 'lif' must be"),
        // An MN-ID with a newline, which would forge log lines.
        (
            broken("mn1: { role: mn,", "mn1: { role: mn, mn_id: \"mn1\\nforged\","),
            "6:8: mn1: mn_id 'mn1\\nforged' must be 1 to 253 octets with no control characters",
        ),
        // A prefix with host bits set.
        (
            broken("prefixes: [\"2001:db8:1::/64\"]", "prefixes: [\"2001:db8:1::1/64\"]"),
            "6:51: 2001:db8:1::1/64 has host bits set past its /64; the prefix is 2001:db8:1::/64",
        ),
    ];
    assert!(cases.len() >= 15);
    let mut wrong = Vec::new();
    for (text, want) in &cases {
        let got = error(text);
        if !got.contains(want) {
            wrong.push(format!("expected an error containing {want:?}, got {got:?}"));
        }
    }
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));
}

const TWO_LEVEL: &str = r#"id: T-2L
title: a two-level scenario to break
lma:
  two_level: { temporal_pool: "2002:2::/32", temporal_len: 48, idle_lifetime: 30s }
nodes:
  lma: { role: lma }
  mag1: { role: mag }
  mn1: { role: mn, interfaces: [if1], model: two-level, prefixes: ["2002:1:1::/64"] }
  cn: { role: cn }
links:
  - { mn: mn1/if1, mag: mag1, att: wifi }
flows:
  X: { mn: mn1, prefix: "2002:2:1:1::/64", dport: 5001 }
steps:
  - attach: { iface: mn1/if1 }
  - carve: { iface: mn1/if1, service: voip }
  - flow_handover: { to: mn1/if1, prefixes: ["2002:2:1:1::/64"] }
  - expect_flow: { flow: X, arrives_on: mn1/if1 }
"#;

/// The 2-level model's settings and steps are refused where they are
/// wrong, with the line and column.
#[test]
fn broken_two_level_settings_are_refused_with_where_and_what() {
    parse(Path::new("case.yaml"), TWO_LEVEL).unwrap();
    let broken = |from: &str, to: &str| {
        assert!(TWO_LEVEL.contains(from), "test bug: {from:?} is not in the good scenario");
        TWO_LEVEL.replacen(from, to, 1)
    };
    let cases: Vec<(String, &str)> = vec![
        (broken("temporal_len: 48", "temporal_len: 16"), "4:60: temporal_len 16 should be longer than the temporal_pool's /32 and shorter than the level-2 /64s"),
        (broken("temporal_len: 48", "temporal_len: 64"), "4:60: temporal_len 64 should be longer"),
        (
            broken("temporal_len: 48", "temporal_len: 33").replacen("  mag1: { role: mag }\n", "  mag1: { role: mag }\n  mag2: { role: mag }\n", 1),
            "4:31: the temporal_pool 2002:2::/32 holds 1 /33s after the first, too few for 2 MAGs",
        ),
        (broken("idle_lifetime: 30s", "idle_lifetime: soon"), "4:79: idle_lifetime 'soon' should be a duration (e.g. 30s) or never"),
        (broken("idle_lifetime: 30s", "colour: blue"), "4:"),
        (broken("  two_level: { temporal_pool: \"2002:2::/32\", temporal_len: 48, idle_lifetime: 30s }\n", "  use_timestamps: false\n"), "8:8: mn1: the two-level prefix model needs 'two_level:' settings under 'lma:'"),
        (broken("prefixes: [\"2002:1:1::/64\"]", "prefixes: []"), "8:8: mn1: the two-level prefix model needs a permanent prefix per interface in 'prefixes' (0 for 1 interfaces)"),
        (broken("model: two-level, ", ""), "4:31: two_level settings, but no MN says 'model: two-level'"),
        (broken("service: voip", "service: \"\""), "16:39: a carve step names the service it is for"),
        (broken("prefixes: [\"2002:2:1:1::/64\"] }", "prefixes: [\"2001:db8::/64\"] }"), "17:46: 2001:db8::/64 is not a temporal prefix: it lies outside the temporal_pool"),
        (broken("  - attach: { iface: mn1/if1 }\n", ""), "15:21: mn1/if1 is not attached at this step"),
    ];
    let mut wrong = Vec::new();
    for (text, want) in &cases {
        let got = match parse(Path::new("case.yaml"), text) {
            Ok(_) => "accepted".to_string(),
            Err(e) => e.to_string().trim_start_matches("case.yaml:").to_string(),
        };
        if !got.starts_with(want) {
            wrong.push(format!("want {want}\n got {got}"));
        }
    }
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));
}
