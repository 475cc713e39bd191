//! `pmiplab bench`: the performance figures of DESIGN.md, each measured in
//! one run beside its baseline, so that a number always comes with what it
//! should be read against.

use std::net::Ipv6Addr;
use std::path::Path;
use std::time::{Duration, Instant as WallClock};

use pmip_proto::lma::{Lma, LmaConfig, LmaInput, MnPolicy, PrefixModel};
use pmip_proto::signalling::timestamp_at;
use pmip_proto::{Instant, Prefix, Span};
use pmip_wire::{
    AccessTechnologyType, Endpoints, HandoffIndicator, Message, MnIdSubtype, MobilityOption, Pbu, PbuFlags, WireConfig,
};

/// One line of the report: a figure, its baseline and the target.
pub struct Figure {
    pub what: String,
    pub value: String,
    pub baseline: String,
    pub target: String,
}

impl Figure {
    fn new(what: &str, value: String, baseline: String, target: &str) -> Self {
        Figure { what: what.into(), value, baseline, target: target.into() }
    }
}

/// The report as a Markdown table.
pub fn table(figures: &[Figure]) -> String {
    let mut out = String::from("| measure | value | baseline (same run) | target |\n|---|---|---|---|\n");
    for f in figures {
        out.push_str(&format!("| {} | {} | {} | {} |\n", f.what, f.value, f.baseline, f.target));
    }
    out
}

const LMA: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 0xffff, 0, 0, 0, 0, 1);
const MAG: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 0xffff, 0, 0, 0, 0, 0x11);

fn mn_id(i: u32) -> String {
    format!("mn{i}@pmip.lab")
}

fn pbu(i: u32, seq: u16, now: Instant, hi: HandoffIndicator, hnp: Option<Prefix>) -> Message {
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

fn prefix_of(i: u32) -> Prefix {
    Prefix::new(Ipv6Addr::new(0x2001, 0xdb8, 0x100 + (i >> 16) as u16, (i & 0xffff) as u16, 0, 0, 0, 0), 64)
}

/// The sans-IO LMA with `bindings` MNs registered; then re-registrations
/// of all of them, timed: PBU in, PBA out, in memory; and the same with
/// the codec on both sides. Baseline: the codec alone (parse the PBU, emit
/// the PBA), which any implementation pays.
pub fn core(bindings: u32) -> Result<Vec<Figure>, String> {
    let mut cfg = LmaConfig::new(LMA);
    cfg.authorized_mags = vec![MAG];
    let mut lma = Lma::new(cfg);
    for i in 0..bindings {
        let mut p = MnPolicy::new(mn_id(i), PrefixModel::Unique);
        p.unique_prefixes = vec![prefix_of(i)];
        lma.add_policy(p);
    }
    let mut now = Instant::ZERO + Span::from_secs(1);
    for i in 0..bindings {
        let out = lma.handle(
            now,
            LmaInput::Message { src: MAG, dst: LMA, message: pbu(i, 1, now, HandoffIndicator::NewInterface, None) },
        );
        expect_accepted(&out.transmits, i)?;
    }
    if lma.state().binding_cache.len() != bindings as usize {
        return Err(format!("{} bindings registered, {bindings} expected", lma.state().binding_cache.len()));
    }
    // Re-registrations, built beforehand so that only handling is timed.
    now = now + Span::from_secs(10);
    let rereg: Vec<Message> =
        (0..bindings).map(|i| pbu(i, 2, now, HandoffIndicator::NotChanged, Some(prefix_of(i)))).collect();
    let ends = Endpoints { src: MAG, dst: LMA };
    let wire = WireConfig::default();
    let bytes: Vec<Vec<u8>> =
        rereg.iter().map(|m| m.to_bytes(&ends, &wire).map_err(|e| e.to_string())).collect::<Result<_, _>>()?;

    let started = WallClock::now();
    for (i, m) in rereg.into_iter().enumerate() {
        let out = lma.handle(now, LmaInput::Message { src: MAG, dst: LMA, message: m });
        expect_accepted(&out.transmits, i as u32)?;
    }
    let core_rate = f64::from(bindings) / started.elapsed().as_secs_f64();

    // Baseline: the codec alone, on the same messages.
    let back = Endpoints { src: LMA, dst: MAG };
    let started = WallClock::now();
    let mut emitted = 0usize;
    for b in &bytes {
        let m = Message::parse(b, &ends, &wire).map_err(|e| e.to_string())?;
        let pba = pmip_wire::Message::Pba(pmip_wire::Pba {
            status: pmip_wire::PbaStatus::Accepted,
            flags: Default::default(),
            sequence: match &m {
                Message::Pbu(p) => p.sequence,
                _ => 0,
            },
            lifetime: 100,
            options: m.options().to_vec(),
        });
        emitted += pba.to_bytes(&back, &wire).map_err(|e| e.to_string())?.len();
    }
    let codec_rate = f64::from(bindings) / started.elapsed().as_secs_f64();
    std::hint::black_box(emitted);

    // Bytes in, bytes out: what a daemon's core does per message.
    now = now + Span::from_secs(10);
    let rereg: Vec<Vec<u8>> = (0..bindings)
        .map(|i| pbu(i, 3, now, HandoffIndicator::NotChanged, Some(prefix_of(i))).to_bytes(&ends, &wire))
        .collect::<Result<_, _>>()
        .map_err(|e| e.to_string())?;
    let started = WallClock::now();
    for (i, b) in rereg.iter().enumerate() {
        let m = Message::parse(b, &ends, &wire).map_err(|e| e.to_string())?;
        let out = lma.handle(now, LmaInput::Message { src: MAG, dst: LMA, message: m });
        expect_accepted(&out.transmits, i as u32)?;
        for t in &out.transmits {
            std::hint::black_box(t.message.to_bytes(&back, &wire).map_err(|e| e.to_string())?);
        }
    }
    let full_rate = f64::from(bindings) / started.elapsed().as_secs_f64();
    let per_s = |r: f64| format!("{:.0} /s", r);
    Ok(vec![
        Figure::new(
            &format!("sans-IO LMA, PBU→PBA (re-registration) with {bindings} bindings"),
            per_s(core_rate),
            format!("codec alone (parse PBU, emit PBA): {}", per_s(codec_rate)),
            "≥ 1,000,000 /s",
        ),
        Figure::new(
            &format!("sans-IO LMA with the codec, bytes in → bytes out, {bindings} bindings"),
            per_s(full_rate),
            format!("codec alone: {}", per_s(codec_rate)),
            "—",
        ),
    ])
}

fn expect_accepted(transmits: &[pmip_proto::Transmit], i: u32) -> Result<(), String> {
    match transmits.iter().find_map(|t| match &t.message {
        Message::Pba(p) => Some(p.status),
        _ => None,
    }) {
        Some(s) if s.is_accepted() => Ok(()),
        Some(s) => Err(format!("PBU of {} was refused with {}", mn_id(i), s.value())),
        None => Err(format!("PBU of {} got no PBA", mn_id(i))),
    }
}

/// The seed topology (lma, mag1, mag2, mn1 with two interfaces, cn) built
/// with its daemons running and ready, then torn down, `runs` times.
/// Baseline: the same namespaces and links with no daemon.
pub fn lab(node_bin: &Path, scenario: &Path, runs: u32) -> Result<Vec<Figure>, String> {
    let s = crate::scenario::load(scenario).map_err(|e| e.to_string())?;
    let mut full = Vec::new();
    let mut bare = Vec::new();
    for _ in 0..runs {
        let t = WallClock::now();
        let lab = crate::lab::Lab::new().map_err(|e| e.to_string())?;
        let run = crate::netns_run::build(lab, &s, scenario, node_bin, false)?;
        drop(run);
        full.push(t.elapsed());

        let t = WallClock::now();
        let lab = crate::lab::Lab::new().map_err(|e| e.to_string())?;
        crate::netns_run::build_links(lab, &s)?;
        bare.push(t.elapsed());
    }
    let show = |v: &mut Vec<Duration>| {
        v.sort();
        format!("median {:.0} ms, max {:.0} ms", ms(v[v.len() / 2]), ms(v[v.len() - 1]))
    };
    Ok(vec![Figure::new(
        &format!("seed lab up (daemons ready) and down, {runs} runs"),
        show(&mut full),
        format!("namespaces and links alone: {}", show(&mut bare)),
        "≤ 150 ms",
    )])
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

/// Every scenario of `files` in namespaces, two at once (the 2-core target
/// machine), timed as a whole; baseline: the same scenarios in virtual
/// time, one at a time. A scenario that does not pass fails the benchmark.
pub fn catalogue(node_bin: &Path, files: &[std::path::PathBuf]) -> Result<Vec<Figure>, String> {
    let loaded: Vec<(std::path::PathBuf, crate::scenario::Scenario)> = files
        .iter()
        .map(|f| crate::scenario::load(f).map(|s| (f.clone(), s)).map_err(|e| e.to_string()))
        .collect::<Result<_, _>>()?;
    let out = std::env::temp_dir().join(format!("pmiplab-bench-{}", std::process::id()));
    let t = WallClock::now();
    let virtual_reports = crate::run::run_all(&loaded, 1, None, &out, Default::default());
    let virtual_time = t.elapsed();
    let t = WallClock::now();
    let netns_reports = crate::run::run_all(&loaded, 2, Some(node_bin), &out, Default::default());
    let netns_time = t.elapsed();
    let _ = std::fs::remove_dir_all(&out);
    for r in virtual_reports.iter().chain(&netns_reports) {
        if matches!(r.verdict, crate::report::Verdict::Fail | crate::report::Verdict::InitFail) {
            return Err(format!("{} did not pass on {}: {}", r.id, r.backend, r.line()));
        }
    }
    Ok(vec![Figure::new(
        &format!("the catalogue ({} scenarios) in namespaces, 2 at once", loaded.len()),
        format!("{:.1} s", netns_time.as_secs_f64()),
        format!("in virtual time: {:.0} ms", ms(virtual_time)),
        "≥ 30 scenarios in ≤ 60 s",
    )])
}
