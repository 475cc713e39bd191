//! The LMA's cost per message does not grow with the number of bindings:
//! the heartbeats' peers came from a scan of every binding on every
//! message, which made registering 100,000 MNs take hours. Timed in one
//! process at two sizes and compared, so a loaded machine slows both.

use std::time::Instant as WallClock;

use pmip_proto::lma::{Lma, LmaInput};
use pmip_proto::load::{self, pbu, prefix_of, LMA, MAG};
use pmip_proto::{Instant, Span};
use pmip_wire::{HandoffIndicator, Message};

/// Seconds per re-registration of `sample` MNs in an LMA holding `bindings`.
fn per_message(bindings: u32, sample: u32) -> f64 {
    let mut lma = Lma::new(load::lma_config());
    for i in 0..bindings {
        lma.add_policy(load::policy(i));
    }
    let mut now = Instant::ZERO + Span::from_secs(1);
    for i in 0..bindings {
        lma.handle(
            now,
            LmaInput::Message { src: MAG, dst: LMA, message: pbu(i, 1, now, HandoffIndicator::NewInterface, None) },
        );
    }
    assert_eq!(lma.state().binding_cache.len(), bindings as usize);
    now = now + Span::from_secs(10);
    let step = bindings / sample;
    let messages: Vec<Message> =
        (0..sample).map(|k| pbu(k * step, 2, now, HandoffIndicator::NotChanged, Some(prefix_of(k * step)))).collect();
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
