//! A case as a scenario file, in the step vocabulary of
//! `docs/scenario-format.md`, so that a shrunk failure is committed as a
//! regression and replays in both backends.

use std::fmt::Write;

use super::check::quote;
use super::{mag_name, Case, Op, Violation};
use crate::fault::FaultAction;
use crate::lma::PrefixModel;

fn list(items: impl IntoIterator<Item = String>) -> String {
    format!("[{}]", items.into_iter().collect::<Vec<_>>().join(", "))
}

fn duration(ms: u64) -> String {
    if ms.is_multiple_of(1000) {
        format!("{}s", ms / 1000)
    } else {
        format!("{ms}ms")
    }
}

pub(super) fn write(case: &Case, id: &str, v: &Violation) -> String {
    let t = &case.topology;
    let mut y = String::new();
    let _ = writeln!(y, "# Shrunk by the random model test from seed {:#x}.", case.seed);
    let _ = writeln!(y, "# It found: {v}");
    let _ = writeln!(y, "id: {id}");
    let _ = writeln!(y, "title: \"Random model regression: {}\"", v.kind);
    let _ = writeln!(y, "references:");
    let _ = writeln!(y, "  - docs/random-testing.md (seed {:#x})", case.seed);
    let _ = writeln!(y, "requires: [draft-fmi]");
    let _ = writeln!(
        y,
        "lma: {{ flow_lifetime_secs: {}, min_delay_before_bce_delete_ms: {} }}",
        t.flow_lifetime_secs, t.min_delay_ms
    );
    let _ = writeln!(y, "nodes:");
    let _ = writeln!(y, "  lma: {{ role: lma }}");
    for i in 0..t.mags {
        let _ = writeln!(y, "  {}: {{ role: mag }}", mag_name(i));
    }
    for m in &t.mns {
        let model = match m.model {
            PrefixModel::Unique => "unique",
            PrefixModel::Shared => "shared",
            PrefixModel::Hybrid => "hybrid",
        };
        let mut fields = vec![
            "role: mn".to_string(),
            format!("interfaces: {}", list(m.ifaces.iter().map(|f| f.name.clone()))),
            format!("model: {model}"),
        ];
        if !m.shared.is_empty() {
            fields.push(format!("shared_prefixes: {}", list(m.shared.iter().map(quote))));
        }
        if !m.unique.is_empty() {
            fields.push(format!("prefixes: {}", list(m.unique.iter().map(quote))));
        }
        if m.per_attachment != 1 {
            fields.push(format!("per_attachment: {}", m.per_attachment));
        }
        let _ = writeln!(y, "  {}: {{ {} }}", m.name, fields.join(", "));
    }
    let _ = writeln!(y, "  cn: {{ role: cn }}");
    let _ = writeln!(y, "links:");
    for m in &t.mns {
        for f in &m.ifaces {
            let _ = writeln!(y, "  - {{ mn: {}/{}, mag: {}, att: {} }}", m.name, f.name, mag_name(f.mag), f.att.name());
        }
    }
    if !t.flows.is_empty() {
        let _ = writeln!(y, "flows:");
        for f in &t.flows {
            let proto = if f.tcp { ", proto: tcp" } else { "" };
            let _ = writeln!(
                y,
                "  {}: {{ mn: {}, prefix: {}, dport: {}{proto} }}",
                f.name,
                t.mns[f.mn].name,
                quote(&f.prefix),
                f.dport
            );
        }
    }
    let _ = writeln!(y, "steps:");
    let upto = v.step.min(case.ops.len().saturating_sub(1));
    for op in case.ops.iter().take(upto + 1) {
        let _ = writeln!(y, "  - {}", step(case, op));
    }
    if v.step >= case.ops.len() && v.drain_ms > 0 {
        let _ = writeln!(y, "  - wait: {}", duration(v.drain_ms));
    }
    let _ = writeln!(y, "  # What the invariant asks for here:");
    if v.expect.is_empty() {
        let _ = writeln!(y, "  # (no step of the format checks this invariant; see the test in nodes/proto/tests)");
    }
    for e in &v.expect {
        let _ = writeln!(y, "  - {e}");
    }
    y
}

fn iface(case: &Case, mn: usize, i: usize) -> String {
    let m = &case.topology.mns[mn];
    format!("{}/{}", m.name, m.ifaces[i].name)
}

fn step(case: &Case, op: &Op) -> String {
    let t = &case.topology;
    match op {
        Op::Attach { mn, iface: i } => format!("attach: {{ iface: {} }}", iface(case, *mn, *i)),
        Op::Detach { mn, iface: i } => format!("detach: {}", iface(case, *mn, *i)),
        Op::Bind { flow, fid_pri, bids, prefix, drop } => {
            let f = &t.flows[*flow];
            format!(
                "bind: {{ flow: {}, fid: {}, fid_pri: {fid_pri}, bids: {}, match: {}{} }}",
                f.name,
                f.fid,
                list(bids.iter().map(|b| b.to_string())),
                if *prefix { "prefix" } else { "flow" },
                if *drop { ", action: drop" } else { "" }
            )
        }
        Op::Move { flow, to_bid } => format!("move: {{ flow: {}, to_bid: {to_bid} }}", t.flows[*flow].name),
        Op::MovePrefix { mn, prefix, to_bid } => {
            format!("move_prefix: {{ mn: {}, prefix: {}, to_bid: {to_bid} }}", t.mns[*mn].name, quote(prefix))
        }
        Op::Unbind { flow } => format!("unbind: {}", t.flows[*flow].name),
        Op::Fault { message, from, to, count, action } => {
            let mut s = format!("fault: {{ message: {message}");
            if let Some(f) = from {
                let _ = write!(s, ", from: {f}");
            }
            if let Some(x) = to {
                let _ = write!(s, ", to: {x}");
            }
            let _ = write!(s, ", count: {count}");
            match action {
                FaultAction::Drop => s.push_str(", action: drop"),
                FaultAction::Duplicate => s.push_str(", action: duplicate"),
                FaultAction::Reorder => s.push_str(", action: reorder"),
                FaultAction::Delay { ms } => {
                    let _ = write!(s, ", action: delay, delay_ms: {ms}");
                }
            }
            s.push_str(" }");
            s
        }
        Op::Kill(n) => format!("kill: {n}"),
        Op::Restart(n) => format!("restart: {n}"),
        Op::Wait { ms } => format!("wait: {}", duration(*ms)),
    }
}
