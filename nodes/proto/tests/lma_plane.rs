//! The LMA's data-plane intents are worked out per MN: a PBU only touches
//! its own MN's routes, and a tunnel shared by several MNs behind one MAG
//! stays up until the last of them leaves.

use std::net::Ipv6Addr;

use pmip_proto::lma::{Lma, LmaConfig, LmaInput, MnPolicy, PrefixModel};
use pmip_proto::signalling::{hnp_request, nai, timestamp_at};
use pmip_proto::{Instant, Intent, Prefix, Span};
use pmip_wire::{AccessTechnologyType, HandoffIndicator, Message, MobilityOption, Pbu, PbuFlags};

const LMA: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 0xffff, 0, 0, 0, 0, 1);
const MAG: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 0xffff, 0, 0, 0, 0, 0x11);

fn pref(n: u16) -> Prefix {
    Prefix::new(Ipv6Addr::new(0x2001, 0xdb8, n, 0, 0, 0, 0, 0), 64)
}

fn lma(mns: u16) -> Lma {
    let mut cfg = LmaConfig::new(LMA);
    cfg.authorized_mags = vec![MAG];
    let mut l = Lma::new(cfg);
    for n in 1..=mns {
        let mut p = MnPolicy::new(format!("mn{n}@pmip.lab"), PrefixModel::Unique);
        p.unique_prefixes = vec![pref(n)];
        l.add_policy(p);
    }
    l
}

/// The intents a PBU for `mn` from the MAG gives (`lifetime` 0 de-registers).
fn pbu(l: &mut Lma, n: u16, seq: u16, lifetime: u16, now: Instant) -> Vec<Intent> {
    let mut options = vec![nai(&format!("mn{n}@pmip.lab"))];
    options.push(if lifetime == 0 {
        MobilityOption::HomeNetworkPrefix { prefix_len: 64, prefix: pref(n).addr() }
    } else {
        hnp_request()
    });
    options.extend([
        MobilityOption::HandoffIndicator(if lifetime == 0 {
            HandoffIndicator::NotChanged
        } else {
            HandoffIndicator::NewInterface
        }),
        MobilityOption::AccessTechnologyType(AccessTechnologyType::Ieee80211),
        MobilityOption::MnLinkLayerIdentifier(vec![2, 0, 0, 0, 0, n as u8]),
        MobilityOption::Timestamp(timestamp_at(now, 0)),
    ]);
    let message = Message::Pbu(Pbu { sequence: seq, flags: PbuFlags::proxy(), lifetime, options });
    l.handle(now, LmaInput::Message { src: MAG, dst: LMA, message }).intents
}

fn at(ms: u64) -> Instant {
    Instant::ZERO + Span::from_millis(ms)
}

#[test]
fn a_tunnel_shared_by_two_mns_stays_up_until_the_last_leaves() {
    let mut l = lma(2);
    let tunnel = |up| Intent::LmaTunnel { mag: MAG, up };
    let route = |n, up| Intent::LmaPrefixRoute { prefix: pref(n), mag: MAG, up };
    assert_eq!(pbu(&mut l, 1, 1, 100, at(10)), [tunnel(true), route(1, true)]);
    // The second MN behind the same MAG adds its route only.
    assert_eq!(pbu(&mut l, 2, 1, 100, at(20)), [route(2, true)]);
    // A re-registration changes nothing in the data plane.
    assert_eq!(pbu(&mut l, 1, 2, 100, at(30)), []);
    // The first MN leaves: its route goes, the tunnel stays for the second.
    assert_eq!(pbu(&mut l, 1, 3, 0, at(40)), [route(1, false)]);
    // The last one leaves: route and tunnel go.
    assert_eq!(pbu(&mut l, 2, 2, 0, at(50)), [tunnel(false), route(2, false)]);
}

#[test]
fn a_pbu_touches_only_its_own_mns_routes_among_many() {
    // The intents of one MN's PBU name only that MN's prefix,
    // whatever the others hold.
    let mut l = lma(500);
    for n in 1..=500 {
        pbu(&mut l, n, 1, 100, at(u64::from(n)));
    }
    assert_eq!(l.binding_cache().len(), 500);
    let out = pbu(&mut l, 250, 2, 0, at(1000));
    assert_eq!(out, [Intent::LmaPrefixRoute { prefix: pref(250), mag: MAG, up: false }]);
}
