//! Model-based random testing of the protocol core (`pmip_proto::sim`):
//! random topologies and event sequences in virtual time, invariants after
//! every step, failures shrunk and written as scenario files.
//!
//! - `cargo test -p pmip-proto --test random_model` plays a fixed budget
//!   of cases from a fixed seed; `PMIP_SEED` and `PMIP_CASES` change them.
//! - `PMIP_SOAK_SECS=3600 cargo test --release -p pmip-proto --test
//!   random_model -- --ignored soak --nocapture` plays cases for that long.
//!
//! A failure prints its case seed, which replays alone with
//! `PMIP_SEED=<seed> PMIP_CASES=1`, and writes the shrunk case as a
//! scenario under `PMIP_SIM_OUT` (default the test's temporary folder).

use std::path::PathBuf;
use std::time::{Duration, Instant};

use pmip_proto::sim::{apply, case_seed, run, run_twice, Case, Op, Violation};

const MAX_OPS: usize = 30;

fn env_u64(name: &str) -> Option<u64> {
    let v = std::env::var(name).ok()?;
    let v = v.trim();
    match v.strip_prefix("0x") {
        Some(hex) => u64::from_str_radix(hex, 16).ok(),
        None => v.parse().ok(),
    }
}

fn out_dir() -> PathBuf {
    std::env::var_os("PMIP_SIM_OUT")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("random-model"))
}

/// Shrinks a failing case, writes it as a scenario and says where.
fn report(case: &Case, v: &Violation) -> String {
    let (small, sv) = case.shrink(v.kind, 400);
    let id = format!("REG-{:x}", case.seed & 0xffff_ffff);
    let yaml = small.to_scenario(&id, &sv);
    let dir = out_dir();
    let path = dir.join(format!("reg-{:x}.yaml", case.seed & 0xffff_ffff));
    let written = std::fs::create_dir_all(&dir).and_then(|_| std::fs::write(&path, &yaml));
    format!(
        "case seed {:#x}: {v}\nshrunk from {} to {} steps: {sv}\n{}\n{yaml}",
        case.seed,
        case.ops.len(),
        small.ops.len(),
        match written {
            Ok(()) => format!("written to {}", path.display()),
            Err(e) => format!("could not write {}: {e}", path.display()),
        }
    )
}

/// Plays one case; every eighth is played twice to check the replay.
fn play(i: u64, seed: u64) -> Result<(), Box<(Case, Violation)>> {
    let case = Case::generate(seed, MAX_OPS);
    let r = if i.is_multiple_of(8) { run_twice(&case) } else { run(&case) };
    r.map(|_| ()).map_err(|v| Box::new((case, v)))
}

#[test]
fn random_sequences_keep_every_invariant() {
    let base = env_u64("PMIP_SEED").unwrap_or(0x5eed_0011);
    let cases = env_u64("PMIP_CASES").unwrap_or(2000);
    let started = Instant::now();
    for i in 0..cases {
        // One case alone replays by its own seed.
        let seed = if cases == 1 { base } else { case_seed(base, i) };
        if let Err(failed) = play(i, seed) {
            let (case, v) = *failed;
            panic!("random model test (base seed {base:#x}, case {i}):\n{}", report(&case, &v));
        }
    }
    eprintln!("{cases} random cases from seed {base:#x} in {:.1?}", started.elapsed());
}

#[test]
fn a_case_replays_to_the_same_ladder_and_writes_as_a_scenario() {
    let case = Case::generate(0xfeed, MAX_OPS);
    let a = run(&case).expect("this case passes");
    let b = run(&case).expect("and again");
    assert_eq!(a.ladder, b.ladder);
    assert!(!a.ladder.is_empty(), "the case signalled something");
    let v = Violation {
        step: case.ops.len() - 1,
        kind: pmip_proto::sim::Kind::BlackHole,
        detail: "example".into(),
        expect: vec!["expect_flow: { flow: f1, arrives_on: mn1/if1 }".into()],
        drain_ms: 0,
    };
    let yaml = case.to_scenario("REG-EXAMPLE", &v);
    assert!(yaml.contains("id: REG-EXAMPLE") && yaml.contains("steps:") && yaml.contains("expect_flow"), "{yaml}");
    assert!(yaml.matches("\n  - ").count() >= case.ops.len(), "{yaml}");
}

#[test]
#[ignore = "a long soak: PMIP_SOAK_SECS (default 60), PMIP_SEED"]
fn soak() {
    let secs = env_u64("PMIP_SOAK_SECS").unwrap_or(60);
    let base = env_u64("PMIP_SEED").unwrap_or_else(|| {
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_nanos() as u64).unwrap_or(1)
    });
    eprintln!("soak: base seed {base:#x} for {secs} s");
    let started = Instant::now();
    let mut failures: Vec<String> = Vec::new();
    let mut kinds = std::collections::BTreeSet::new();
    let mut i = 0u64;
    while started.elapsed() < Duration::from_secs(secs) {
        let seed = case_seed(base, i);
        if let Err(failed) = play(i, seed) {
            let (case, v) = *failed;
            // One report per kind of failure and first words of its detail.
            let sig = (v.kind, v.detail.split(':').next().unwrap_or("").to_string());
            if kinds.insert(sig) {
                let r = report(&case, &v);
                eprintln!("soak: FAILURE at case {i}:\n{r}");
                failures.push(r);
            }
        }
        i += 1;
        if i.is_multiple_of(10_000) {
            eprintln!("soak: {i} cases in {:.0?}", started.elapsed());
        }
    }
    let elapsed = started.elapsed().as_secs_f64();
    eprintln!(
        "soak: {i} cases in {elapsed:.0} s ({:.0} cases/s) from base seed {base:#x}; {} distinct failures",
        i as f64 / elapsed,
        failures.len()
    );
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
}

/// Writes generated cases as scenarios whose expectations are what the
/// virtual run saw (messages per kind and direction, table sizes), to be
/// replayed in namespaces: `pmiplab run --backend netns <dir>/*.yaml`.
/// Only cases namespaces can play in time: no wait past 8 s in all, and no
/// fault or crash, whose timing there is the daemons' own.
#[test]
#[ignore = "writes PMIP_SAMPLES (default 8) scenarios under PMIP_SIM_OUT/sample"]
fn write_namespace_sample() {
    let n = env_u64("PMIP_SAMPLES").unwrap_or(8);
    let base = env_u64("PMIP_SEED").unwrap_or(0x5a3);
    let dir = out_dir().join("sample");
    std::fs::create_dir_all(&dir).expect("the sample folder");
    let (mut written, mut i) = (0u64, 0u64);
    while written < n && i < 1_000_000 {
        let seed = case_seed(base, i);
        i += 1;
        let case = Case::generate(seed, 20);
        let moves = case.ops.iter().filter(|o| matches!(o, Op::Move { .. } | Op::MovePrefix { .. })).count();
        let waited: u64 = case.ops.iter().map(|o| if let Op::Wait { ms } = o { *ms } else { 0 }).sum();
        let timed = case.ops.iter().any(|o| matches!(o, Op::Fault { .. } | Op::Kill(_) | Op::Restart(_)));
        // Samples that move flows: attaches alone say little.
        if waited > 8000 || timed || moves < 2 || run(&case).is_err() {
            continue;
        }
        let t = &case.topology;
        let mut w = t.world();
        for op in &case.ops {
            assert!(apply(t, &mut w, op), "seed {seed:#x} spins");
        }
        // A command the LMA refused is a failed step in a scenario: such a
        // case is no sample of agreement.
        let refused = |e: &pmip_proto::world::EventRecord| {
            e.node == "lma" && (e.text.starts_with("cannot ") || e.text.contains(" is already bound to BID "))
        };
        if w.events.iter().any(refused) {
            continue;
        }
        let mut counts = std::collections::BTreeMap::new();
        for m in w.messages.iter().filter(|m| !m.dropped) {
            let name = m.summary.split(' ').next().unwrap_or("").to_string();
            *counts.entry((name, m.from.clone(), m.to.clone())).or_insert(0usize) += 1;
        }
        let mut expect: Vec<String> = counts
            .into_iter()
            .map(|((name, from, to), c)| {
                format!("expect_message: {{ message: {name}, from: {from}, to: {to}, count: {c} }}")
            })
            .collect();
        let st = w.state();
        for (mag, ms) in &st.mags {
            expect.push(format!(
                "expect_state: {{ node: {mag}, path: /binding_update_list, len: {} }}",
                ms.binding_update_list.len()
            ));
            expect.push(format!("expect_state: {{ node: {mag}, path: /flows, len: {} }}", ms.flows.len()));
        }
        if let Some(l) = &st.lma {
            expect.push(format!("expect_state: {{ node: lma, path: /binding_cache, len: {} }}", l.binding_cache.len()));
            expect.push(format!(
                "expect_state: {{ node: lma, path: /flow_mobility_cache, len: {} }}",
                l.flow_mobility_cache.len()
            ));
        }
        let id = format!("SAMPLE-{:x}", seed & 0xffff_ffff);
        let path = dir.join(format!("sample-{:x}.yaml", seed & 0xffff_ffff));
        std::fs::write(&path, case.to_sample_scenario(&id, &expect)).expect("the sample file");
        written += 1;
    }
    assert_eq!(written, n, "only {written} cases fit namespaces in {i} tries");
    eprintln!("{written} samples in {}", dir.display());
}
