//! Flows as the data plane sees them, and matching against RFC 6088
//! traffic selectors.

use std::fmt;
use std::net::Ipv6Addr;

use pmip_wire::{Ipv6Selector, TrafficSelector};
use serde::{Deserialize, Serialize};

use crate::prefix::Prefix;

/// The 5-tuple of a downlink packet (CN → MN): source is the CN.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct FlowKey {
    pub src: Ipv6Addr,
    pub dst: Ipv6Addr,
    pub next_header: u8,
    pub src_port: u16,
    pub dst_port: u16,
}

impl FlowKey {
    /// The same flow seen in the other direction.
    pub fn reversed(&self) -> FlowKey {
        FlowKey {
            src: self.dst,
            dst: self.src,
            next_header: self.next_header,
            src_port: self.dst_port,
            dst_port: self.src_port,
        }
    }

    /// An exact traffic selector for this flow's downlink.
    pub fn selector(&self) -> TrafficSelector {
        TrafficSelector::Ipv6(Ipv6Selector {
            start_src: Some(self.src),
            start_dst: Some(self.dst),
            start_src_port: Some(self.src_port),
            start_dst_port: Some(self.dst_port),
            start_next_header: Some(self.next_header),
            ..Default::default()
        })
    }
}

impl fmt::Display for FlowKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "[{}]:{} -> [{}]:{} proto {}", self.src, self.src_port, self.dst, self.dst_port, self.next_header)
    }
}

fn in_range<T: PartialOrd + Copy>(v: T, start: Option<T>, end: Option<T>) -> bool {
    match (start, end) {
        (None, None) => true,
        (Some(s), None) => v == s,
        (None, Some(e)) => v == e,
        (Some(s), Some(e)) => s <= v && v <= e,
    }
}

/// RFC 6088: a field present alone is a single value; start and end form
/// an inclusive range; absent fields match anything. Flow label, SPI and
/// traffic class are not part of a `FlowKey` and must be absent to match.
pub fn selector_matches(ts: &TrafficSelector, k: &FlowKey) -> bool {
    let TrafficSelector::Ipv6(s) = ts else {
        return false;
    };
    let unsupported = s.start_spi.is_some()
        || s.end_spi.is_some()
        || s.start_flow_label.is_some()
        || s.end_flow_label.is_some()
        || s.start_traffic_class.is_some()
        || s.end_traffic_class.is_some();
    !unsupported
        && in_range(u128::from(k.src), s.start_src.map(u128::from), s.end_src.map(u128::from))
        && in_range(u128::from(k.dst), s.start_dst.map(u128::from), s.end_dst.map(u128::from))
        && in_range(k.src_port, s.start_src_port, s.end_src_port)
        && in_range(k.dst_port, s.start_dst_port, s.end_dst_port)
        && in_range(k.next_header, s.start_next_header, s.end_next_header)
}

/// The destination addresses a selector covers, as a prefix, if it names
/// them as a single address or as an exact prefix range.
pub fn selector_destination(ts: &TrafficSelector) -> Option<Prefix> {
    let TrafficSelector::Ipv6(s) = ts else {
        return None;
    };
    match (s.start_dst, s.end_dst) {
        (Some(a), None) | (None, Some(a)) => Some(Prefix::new(a, 128)),
        (Some(a), Some(b)) => Prefix::from_range(a, b),
        (None, None) => None,
    }
}

/// A selector for every packet to `prefix`.
pub fn prefix_selector(prefix: Prefix) -> TrafficSelector {
    TrafficSelector::Ipv6(Ipv6Selector {
        start_dst: Some(prefix.addr()),
        end_dst: Some(prefix.last()),
        ..Default::default()
    })
}

/// A short human description of a selector, for state tables.
pub fn describe_selector(ts: &TrafficSelector) -> String {
    let TrafficSelector::Ipv6(s) = ts else {
        return format!("format {} selector", ts.format().value());
    };
    let mut parts = Vec::new();
    let range = |name: &str, a: Option<String>, b: Option<String>| match (a, b) {
        (Some(a), Some(b)) if a != b => Some(format!("{name} {a}-{b}")),
        (Some(a), _) | (None, Some(a)) => Some(format!("{name} {a}")),
        _ => None,
    };
    if let (Some(a), Some(b)) = (s.start_dst, s.end_dst) {
        if let Some(p) = Prefix::from_range(a, b) {
            parts.push(format!("dst {p}"));
        }
    }
    if parts.is_empty() {
        parts.extend(range("dst", s.start_dst.map(|a| a.to_string()), s.end_dst.map(|a| a.to_string())));
    }
    parts.extend(range("src", s.start_src.map(|a| a.to_string()), s.end_src.map(|a| a.to_string())));
    parts.extend(range("proto", s.start_next_header.map(|v| v.to_string()), s.end_next_header.map(|v| v.to_string())));
    parts.extend(range("sport", s.start_src_port.map(|v| v.to_string()), s.end_src_port.map(|v| v.to_string())));
    parts.extend(range("dport", s.start_dst_port.map(|v| v.to_string()), s.end_dst_port.map(|v| v.to_string())));
    if parts.is_empty() {
        "any".into()
    } else {
        parts.join(" ")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(dst: &str, dport: u16) -> FlowKey {
        FlowKey {
            src: "2001:db8:c::1".parse().unwrap(),
            dst: dst.parse().unwrap(),
            next_header: 17,
            src_port: 7000,
            dst_port: dport,
        }
    }

    #[test]
    fn exact_selector_matches_only_its_flow() {
        let k = key("2001:db8:2::10", 5002);
        assert!(selector_matches(&k.selector(), &k));
        assert!(!selector_matches(&k.selector(), &key("2001:db8:2::10", 5001)));
        let p: Prefix = "2001:db8:2::/64".parse().unwrap();
        assert!(selector_matches(&prefix_selector(p), &k));
        assert_eq!(selector_destination(&prefix_selector(p)), Some(p));
        assert_eq!(describe_selector(&prefix_selector(p)), "dst 2001:db8:2::/64");
    }
}
