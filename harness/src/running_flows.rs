//! Flows that run at a rate while a scenario goes on (`start_flow` …
//! `stop_flow`): in virtual time, a packet leaves the CN (or, uplink, the
//! MN) at each interval and the World says where it went; in namespaces
//! the daemons send probes. Both give the same account at `stop_flow`.

use std::collections::BTreeMap;

use pmip_proto::world::World;
use pmip_proto::{FlowKey, Instant, Span};

use crate::report::Check;
use crate::scenario::StopFlow;

/// What the receiving MN saw of a running flow.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FlowAccount {
    pub sent: u64,
    pub received: u64,
    /// Packets per arrival interface (`mn/iface`), in the order the
    /// interfaces first saw the flow.
    pub by_interface: Vec<(String, u64)>,
}

impl FlowAccount {
    pub fn arrived(&mut self, iface: &str) {
        self.received += 1;
        match self.by_interface.iter_mut().find(|(i, _)| i == iface) {
            Some((_, n)) => *n += 1,
            None => self.by_interface.push((iface.to_string(), 1)),
        }
    }

    /// The check `stop_flow` makes: at most `max_lost` lost, and, when
    /// `arrived_on` (downlink) or `left_on` (uplink) is given, exactly
    /// those MN interfaces in that order.
    pub fn check(&self, s: &StopFlow, line: u64) -> Check {
        let lost = self.sent.saturating_sub(self.received);
        let order: Vec<&str> = self.by_interface.iter().map(|(i, _)| i.as_str()).collect();
        let (verb, listed) = if s.left_on.is_empty() { ("arrived on", &s.arrived_on) } else { ("left on", &s.left_on) };
        let want: Vec<&str> = listed.iter().map(|i| i.value.as_str()).collect();
        let ok = lost <= s.max_lost && (want.is_empty() || want == order);
        let counts: Vec<String> = self.by_interface.iter().map(|(i, n)| format!("{n} {verb} {i}")).collect();
        let mut what = format!("flow {} lost at most {}", s.flow.value, s.max_lost);
        if !want.is_empty() {
            what.push_str(&format!(" and {verb} {}", want.join(" then ")));
        }
        Check::new(
            line,
            what,
            ok,
            format!("sent {}, received {} (lost {lost}): {}", self.sent, self.received, counts.join(", ")),
        )
    }
}

/// A flow running in virtual time.
pub struct Running {
    pub cn: String,
    /// Set for an uplink flow: the MN that sends it.
    pub uplink_from: Option<String>,
    pub key: FlowKey,
    pub interval: Span,
    pub next_at: Instant,
    pub account: FlowAccount,
}

/// Runs `world` until `done` holds or `limit` passes, sending each running
/// flow's packets when they are due. True when `done` held.
pub fn advance(
    world: &mut World,
    flows: &mut BTreeMap<String, Running>,
    limit: Span,
    mut done: impl FnMut(&World) -> bool,
) -> bool {
    let end = world.now() + limit;
    loop {
        let next = flows.values().map(|f| f.next_at).min().filter(|t| *t <= end);
        let until = next.unwrap_or(end);
        if world.run_until(until.saturating_since(world.now()), &mut done) {
            return true;
        }
        if next.is_none() {
            return false;
        }
        let now = world.now();
        for f in flows.values_mut().filter(|f| f.next_at <= now) {
            f.account.sent += 1;
            // Downlink: where it arrived; uplink: where it left, if it
            // reached the CN.
            let path = match &f.uplink_from {
                None => world.downlink(&f.cn, f.key),
                Some(mn) => world.uplink(mn, f.key.reversed()),
            };
            if let Some((mn, iface)) = path.delivered_on {
                f.account.arrived(&format!("{mn}/{iface}"));
            }
            f.next_at = f.next_at + f.interval;
        }
    }
}
