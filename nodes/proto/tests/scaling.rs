//! The LMA's cost per message does not grow with the number of bindings:
//! the heartbeats' peers came from a scan of every binding on every
//! message, which made registering 100,000 MNs take hours. Timed in one
//! process at two sizes and compared, so a loaded machine slows both.

use std::net::Ipv6Addr;
use std::time::Instant as WallClock;

use pmip_proto::lma::{Lma, LmaConfig, LmaInput, MnPolicy, PrefixModel};
use pmip_proto::signalling::timestamp_at;
use pmip_proto::{Instant, Prefix, Span};
use pmip_wire::{AccessTechnologyType, HandoffIndicator, Message, MnIdSubtype, MobilityOption, Pbu, PbuFlags};

const LMA: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 0xffff, 0, 0, 0, 0, 1);
const MAG: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 0xffff, 0, 0, 0, 0, 0x11);

fn prefix_of(i: u32) -> Prefix {
    let o = i.to_be_bytes();
    Prefix::new(
        Ipv6Addr::new(0x2001, 0xdb8, u16::from_be_bytes([o[0], o[1]]), u16::from_be_bytes([o[2], o[3]]), 0, 0, 0, 0),
        64,
    )
}

fn pbu(i: u32, seq: u16, now: Instant, hi: HandoffIndicator, hnp: Prefix) -> Message {
    let ll = i.to_be_bytes();
    Message::Pbu(Pbu {
        sequence: seq,
        flags: PbuFlags::proxy(),
        lifetime: 100,
        options: vec![
            MobilityOption::MnIdentifier { subtype: MnIdSubtype::Nai, id: format!("mn{i}@pmip.lab").into_bytes() },
            MobilityOption::HomeNetworkPrefix { prefix_len: hnp.prefix_len(), prefix: hnp.addr() },
            MobilityOption::HandoffIndicator(hi),
            MobilityOption::AccessTechnologyType(AccessTechnologyType::Ieee80211),
            MobilityOption::MnLinkLayerIdentifier(vec![2, 0, ll[0], ll[1], ll[2], ll[3]]),
            MobilityOption::Timestamp(timestamp_at(now, 0)),
        ],
    })
}

/// Seconds per re-registration of `sample` MNs in an LMA holding `bindings`.
fn per_message(bindings: u32, sample: u32) -> f64 {
    let mut cfg = LmaConfig::new(LMA);
    cfg.authorized_mags = vec![MAG];
    let mut lma = Lma::new(cfg);
    for i in 0..bindings {
        let mut p = MnPolicy::new(format!("mn{i}@pmip.lab"), PrefixModel::Unique);
        p.unique_prefixes = vec![prefix_of(i)];
        lma.add_policy(p);
    }
    let mut now = Instant::ZERO + Span::from_secs(1);
    let any = Prefix::new(Ipv6Addr::UNSPECIFIED, 0);
    for i in 0..bindings {
        lma.handle(
            now,
            LmaInput::Message { src: MAG, dst: LMA, message: pbu(i, 1, now, HandoffIndicator::NewInterface, any) },
        );
    }
    assert_eq!(lma.state().binding_cache.len(), bindings as usize);
    now = now + Span::from_secs(10);
    let step = bindings / sample;
    let messages: Vec<Message> =
        (0..sample).map(|k| pbu(k * step, 2, now, HandoffIndicator::NotChanged, prefix_of(k * step))).collect();
    let started = WallClock::now();
    for m in messages {
        lma.handle(now, LmaInput::Message { src: MAG, dst: LMA, message: m });
    }
    started.elapsed().as_secs_f64() / f64::from(sample)
}

#[test]
fn a_message_costs_about_the_same_with_a_thousand_bindings_or_thirty_two_thousand() {
    let best = |n| (0..3).map(|_| per_message(n, 1000)).fold(f64::INFINITY, f64::min);
    let (small, large) = (best(1000), best(32_000));
    // Ordered indexes cost a logarithm more; a scan costs 32 times more,
    // so the bound leaves room for a machine busy with other work.
    assert!(large < small * 12.0, "per message: {small:e} s at 1,000 bindings, {large:e} s at 32,000");
}
