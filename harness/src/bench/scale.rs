//! `pmiplab bench scale`: one LMA, N MAGs and eight single-interface MNs
//! per MAG, every MN attached, its registration checked as a catalogue
//! scenario checks it, then detached; in namespaces (the real daemons, the
//! kernel datapath) beside the same scenario in virtual time.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant as WallClock};

use super::{ms, Figure};
use crate::engine::{self, Judging, Reference};
use crate::report::Verdict;
use crate::scenario::Scenario;

/// MNs per MAG.
pub const MNS_PER_MAG: usize = 8;

/// The scenario's text: `lma`, `mag1`…`magN`, `mn1`…`mn8N` (MN k on MAG
/// ⌈k/8⌉, prefix 2001:db8:k::/64 with k in hex), one CN; steps attach every
/// MN, then check each PBA the LMA sent (status 0, the MN's prefix), then
/// detach every MN and check the LMA's binding cache is left with
/// de-registered entries only.
pub fn scenario_text(mags: usize) -> String {
    let mns = mags * MNS_PER_MAG;
    let mut t = String::new();
    let _ = writeln!(t, "id: BENCH-SCALE-{mags}");
    let _ = writeln!(t, "title: 1 LMA, {mags} MAGs, {mns} MNs attach, register and detach");
    t.push_str("nodes:\n  lma: { role: lma }\n  cn: { role: cn }\n");
    for m in 1..=mags {
        let _ = writeln!(t, "  mag{m}: {{ role: mag }}");
    }
    for k in 1..=mns {
        let _ = writeln!(t, "  mn{k}: {{ role: mn, interfaces: [if1], prefixes: [\"2001:db8:{k:x}::/64\"] }}");
    }
    t.push_str("links:\n");
    for k in 1..=mns {
        let _ = writeln!(t, "  - {{ mn: mn{k}/if1, mag: mag{}, att: ethernet }}", mag_of(k));
    }
    t.push_str("steps:\n");
    for k in 1..=mns {
        let _ = writeln!(t, "  - attach: {{ iface: mn{k}/if1 }}");
    }
    for k in 1..=mns {
        let _ = writeln!(
            t,
            "  - expect_message: {{ message: PBA, from: lma, to: mag{}, with: [status=0, \"hnp=2001:db8:{k:x}::/64\"] }}",
            mag_of(k)
        );
    }
    let _ = writeln!(t, "  - expect_state: {{ node: lma, path: /binding_cache, len: {mns} }}");
    for k in 1..=mns {
        let _ = writeln!(t, "  - detach: mn{k}/if1");
    }
    t
}

fn mag_of(mn: usize) -> usize {
    (mn - 1) / MNS_PER_MAG + 1
}

/// The scenario for `mags` MAGs, parsed and validated by the normal loader.
pub fn scenario(mags: usize) -> Result<(PathBuf, Scenario), String> {
    let file = PathBuf::from(format!("bench-scale-{mags}.yaml"));
    let s = crate::scenario::parse(&file, &scenario_text(mags)).map_err(|e| format!("the generated scenario: {e}"))?;
    Ok((file, s))
}

/// One size's phases, wall clock.
#[derive(Debug, Clone, Copy)]
pub struct Phases {
    /// Namespaces, links, daemons started and ready, captures on.
    pub up: Duration,
    /// From the first attach to the last registration checked.
    pub registered: Duration,
    /// The detaches and their settling.
    pub detached: Duration,
    /// The lab torn down: daemons stopped, namespaces and links removed.
    pub down: Duration,
}

impl Phases {
    pub fn total(&self) -> Duration {
        self.up + self.registered + self.detached + self.down
    }
}

/// Plays the scale scenario for `mags` MAGs in namespaces, with the model
/// run alongside as a catalogue run has it; the phases, or why the run
/// did not pass. Also gives the model run's wall time (the baseline).
pub fn run_netns(node_bin: &Path, mags: usize) -> Result<(Phases, Duration), String> {
    let (file, s) = scenario(mags)?;
    let t = WallClock::now();
    let model = crate::run::run_virtual(&file, &s);
    let virtual_time = t.elapsed();
    if model.verdict != Verdict::Pass {
        return Err(format!("{mags} MAGs, virtual time: {}", failure(&model)));
    }
    let reference = Reference::of(&model);
    let judging = Judging { reference: Some(&reference), pins: Default::default(), out: None };

    let t = WallClock::now();
    let lab = crate::lab::Lab::new().map_err(|e| format!("making the lab: {e}"))?;
    let mut run = crate::netns_run::build(lab, &s, node_bin, true).map_err(|e| format!("{mags} MAGs: {e}"))?;
    let up = t.elapsed();
    let report = engine::play(&file, &s, &mut run, judging);
    let t = WallClock::now();
    drop(run);
    let down = t.elapsed();
    if report.verdict != Verdict::Pass {
        return Err(format!("{mags} MAGs, namespaces: {}", failure(&report)));
    }
    // The step marks are in milliseconds since the run began: the first
    // detach's mark ends the registration phase.
    let first_detach = report
        .step_marks
        .iter()
        .find(|(_, m)| m.contains(": detach"))
        .map(|(at, _)| Duration::from_millis(*at))
        .ok_or("the run marked no detach step")?;
    let first = report.step_marks.first().map(|(at, _)| Duration::from_millis(*at)).unwrap_or_default();
    let played = Duration::from_secs_f64(report.wall_ms / 1000.0);
    Ok((
        Phases {
            up,
            registered: first_detach.saturating_sub(first),
            detached: played.saturating_sub(first_detach),
            down,
        },
        virtual_time,
    ))
}

/// The report's failed checks, or its reason, in a line or a few.
fn failure(r: &crate::report::ScenarioReport) -> String {
    let failed: Vec<String> = r.checks.iter().filter(|c| !c.ok()).take(5).map(crate::run::explain).collect();
    format!("{:?}: {}{}", r.verdict, r.reason.clone().unwrap_or_default(), failed.join("\n"))
}

/// The benchmark: each size of `mags` in turn, one row per size.
pub fn scale(node_bin: &Path, mags: &[usize]) -> Result<Vec<Figure>, String> {
    let mut figures = Vec::new();
    let mut first_per_mn = None;
    for &n in mags {
        let mns = n * MNS_PER_MAG;
        let (p, virtual_time) = run_netns(node_bin, n)?;
        let per_mn = p.total().as_secs_f64() * 1000.0 / mns as f64;
        let base = *first_per_mn.get_or_insert(per_mn);
        eprintln!(
            "pmiplab bench scale: {n} MAGs, {mns} MNs: up {:.0} ms, registered {:.0} ms, detached {:.0} ms, down {:.0} ms",
            ms(p.up),
            ms(p.registered),
            ms(p.detached),
            ms(p.down)
        );
        figures.push(Figure::new(
            &format!("1 LMA + {n} MAGs + {mns} MNs: lab up; all registered; detached; down; per MN"),
            format!(
                "{:.2} s; {:.2} s; {:.2} s; {:.2} s; {:.1} ms per MN ({:+.0}% against the first size)",
                p.up.as_secs_f64(),
                p.registered.as_secs_f64(),
                p.detached.as_secs_f64(),
                p.down.as_secs_f64(),
                per_mn,
                100.0 * (per_mn / base - 1.0),
            ),
            format!("the same scenario in virtual time: {:.0} ms", ms(virtual_time)),
            "512 MNs: up + registered ≤ 10 s, down ≤ 5 s; per MN within 20% from 8 to 512 MNs",
        ));
    }
    Ok(figures)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_generated_scenario_loads_and_passes_in_virtual_time() {
        let (file, s) = scenario(2).expect("the scenario parses");
        assert_eq!(s.nodes.len(), 1 + 1 + 2 + 16);
        assert_eq!(s.steps.len(), 16 + 16 + 1 + 16);
        let r = crate::run::run_virtual(&file, &s);
        assert_eq!(r.verdict, Verdict::Pass, "{}", failure(&r));
    }
}
