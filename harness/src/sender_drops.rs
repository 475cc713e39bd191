//! Messages a node's own outgoing fault rule dropped: they never reached a
//! link, so no capture shows them, yet virtual time draws them on the
//! ladder as `(dropped)`. The sender's message log is the only place they
//! are written; the ladder takes them from there, marked as never on the
//! wire, so that both backends draw the same rows. No verdict reads them:
//! the wire comparison and the message checks count only what crossed a
//! link and was taken in. A node killed in the run loses its log, and
//! with it what it dropped before: such a message is missing from the
//! namespace ladder.

use serde_json::Value;

use crate::engine::Observed;
use crate::plan::AddressPlan;

/// The messages `node`'s state (`messages`, its log) says it dropped on
/// the way out, stamped on the lab's clock (`epoch_us` is its start).
pub fn from_state(node: &str, state: &Value, plan: &AddressPlan, epoch_us: u64) -> Vec<Observed> {
    let Some(log) = state.get("messages").and_then(Value::as_array) else { return Vec::new() };
    log.iter()
        .filter(|m| m.get("dir").and_then(Value::as_str) == Some("dropped"))
        .filter(|m| m.get("out").and_then(Value::as_bool) == Some(true))
        .filter_map(|m| {
            let peer = m.get("peer")?.as_str()?.parse().ok()?;
            let wall_us = m.get("wall_us")?.as_u64()?;
            Some(Observed {
                at_ms: wall_us.saturating_sub(epoch_us) / 1000,
                from: node.to_string(),
                to: plan.name_of(peer),
                summary: m.get("summary")?.as_str()?.to_string(),
                on_wire: false,
                delivered: false,
            })
        })
        .collect()
}

/// `observed` with `unsent` put in time order among them; at the same
/// millisecond, what crossed a link goes first.
pub fn merge(mut observed: Vec<Observed>, unsent: &[Observed]) -> Vec<Observed> {
    for u in unsent {
        let at = observed.partition_point(|o| o.at_ms <= u.at_ms);
        observed.insert(at, u.clone());
    }
    observed
}

#[cfg(test)]
mod tests {
    use super::*;

    fn seen(at_ms: u64, summary: &str) -> Observed {
        Observed {
            at_ms,
            from: "lma".into(),
            to: "mag1".into(),
            summary: summary.into(),
            on_wire: true,
            delivered: true,
        }
    }

    #[test]
    fn only_what_the_node_dropped_on_its_way_out_and_in_time_order() {
        let mut plan = AddressPlan { of: Default::default(), iid: Default::default() };
        plan.of.insert("lma".into(), "2001:db8:ffff::1".parse().unwrap());
        let state = serde_json::json!({"messages": [
            {"at_ms": 1, "wall_us": 1_007_400, "dir": "dropped", "out": true, "peer": "2001:db8:ffff::1", "summary": "FMA seq=1 status=0"},
            {"at_ms": 2, "wall_us": 1_008_000, "dir": "dropped", "out": false, "peer": "2001:db8:ffff::1", "summary": "FMI seq=1"},
            {"at_ms": 3, "wall_us": 1_009_000, "dir": "sent", "out": true, "peer": "2001:db8:ffff::1", "summary": "PBU seq=1"},
        ]});
        let unsent = from_state("mag1", &state, &plan, 1_000_000);
        assert_eq!(unsent.len(), 1, "{unsent:?}");
        assert_eq!(
            (unsent[0].at_ms, unsent[0].to.as_str(), unsent[0].on_wire, unsent[0].delivered),
            (7, "lma", false, false)
        );
        let merged = merge(vec![seen(6, "FMI seq=1"), seen(7, "X"), seen(2506, "FMI seq=1")], &unsent);
        let order: Vec<&str> = merged.iter().map(|m| m.summary.as_str()).collect();
        assert_eq!(order, ["FMI seq=1", "X", "FMA seq=1 status=0", "FMI seq=1"]);
    }
}
