//! Synthetic load for benchmarks and scaling checks: many MNs behind one
//! MAG, each with its own NAI, home network prefix and link-layer
//! identifier, and the PBUs that register and refresh them. The roles do
//! not use it; `pmiplab bench` and the scaling tests do, so that what they
//! measure is the same load.

use std::net::Ipv6Addr;

use pmip_wire::{AccessTechnologyType, HandoffIndicator, Message, MnIdSubtype, MobilityOption, Pbu, PbuFlags};

use crate::lma::{LmaConfig, MnPolicy, PrefixModel};
use crate::prefix::Prefix;
use crate::signalling::timestamp_at;
use crate::time::Instant;

/// The LMA the load is sent to.
pub const LMA: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 0xffff, 0, 0, 0, 0, 1);
/// The one MAG every MN of the load is behind.
pub const MAG: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 0xffff, 0, 0, 0, 0, 0x11);

/// MN `i`'s NAI.
pub fn mn_id(i: u32) -> String {
    format!("mn{i}@pmip.lab")
}

/// MN `i`'s home network prefix: `2001:db8:<0x100 + i / 2^16>:<i mod 2^16>::/64`,
/// clear of the seed's 2001:db8:1::/64 and 2001:db8:2::/64 so that a load
/// can run in a lab beside them. Distinct for every `i` below 0xff00_0000.
pub fn prefix_of(i: u32) -> Prefix {
    Prefix::new(Ipv6Addr::new(0x2001, 0xdb8, 0x100u16.wrapping_add((i >> 16) as u16), i as u16, 0, 0, 0, 0), 64)
}

/// The LMA's policy for MN `i`: one unique prefix, [`prefix_of`] `i`.
pub fn policy(i: u32) -> MnPolicy {
    let mut p = MnPolicy::new(mn_id(i), PrefixModel::Unique);
    p.unique_prefixes = vec![prefix_of(i)];
    p
}

/// An LMA at [`LMA`] that takes PBUs from [`MAG`]; the MNs' policies are
/// added with [`policy`].
pub fn lma_config() -> LmaConfig {
    let mut c = LmaConfig::new(LMA);
    c.authorized_mags = vec![MAG];
    c
}

/// MN `i`'s PBU from [`MAG`] (lifetime 100, 802.11, stamped at `now`),
/// asking for `hnp` or, without one, for a prefix to be assigned.
pub fn pbu(i: u32, seq: u16, now: Instant, hi: HandoffIndicator, hnp: Option<Prefix>) -> Message {
    let prefix = hnp.unwrap_or_else(|| Prefix::new(Ipv6Addr::UNSPECIFIED, 0));
    let ll = i.to_be_bytes();
    Message::Pbu(Pbu {
        sequence: seq,
        flags: PbuFlags::proxy(),
        lifetime: 100,
        options: vec![
            MobilityOption::MnIdentifier { subtype: MnIdSubtype::Nai, id: mn_id(i).into_bytes() },
            MobilityOption::HomeNetworkPrefix { prefix_len: prefix.prefix_len(), prefix: prefix.addr() },
            MobilityOption::HandoffIndicator(hi),
            MobilityOption::AccessTechnologyType(AccessTechnologyType::Ieee80211),
            MobilityOption::MnLinkLayerIdentifier(vec![2, 0, ll[0], ll[1], ll[2], ll[3]]),
            MobilityOption::Timestamp(timestamp_at(now, 0)),
        ],
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_mn_has_its_own_prefix_clear_of_the_seeds() {
        assert_eq!(prefix_of(0).to_string(), "2001:db8:100::/64");
        assert_eq!(prefix_of(0x1_0002).to_string(), "2001:db8:101:2::/64");
        let seen: std::collections::BTreeSet<Prefix> = (0..70_000).map(prefix_of).collect();
        assert_eq!(seen.len(), 70_000);
    }

    #[test]
    fn a_pbu_without_a_prefix_asks_for_one_and_names_its_mn() {
        let Message::Pbu(p) = pbu(5, 9, Instant::ZERO, HandoffIndicator::NewInterface, None) else {
            panic!("not a PBU");
        };
        assert_eq!(p.sequence, 9);
        assert!(p
            .options
            .contains(&MobilityOption::HomeNetworkPrefix { prefix_len: 0, prefix: Ipv6Addr::UNSPECIFIED }));
        assert!(p
            .options
            .contains(&MobilityOption::MnIdentifier { subtype: MnIdSubtype::Nai, id: b"mn5@pmip.lab".to_vec() }));
        assert!(p.options.contains(&MobilityOption::MnLinkLayerIdentifier(vec![2, 0, 0, 0, 0, 5])));
    }
}
