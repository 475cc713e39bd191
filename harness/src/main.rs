//! The `pmiplab` command line.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use pmiplab::report::{junit, ScenarioReport, Verdict};
use pmiplab::run::{expand, explain};
use pmiplab::scenario;

#[derive(Parser)]
#[command(name = "pmiplab", version, about = "Proxy Mobile IPv6 flow mobility testbed")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Runs scenarios and gives each a verdict (PASS, FAIL, INIT-FAIL, SKIP).
    ///
    /// Scenarios run against the protocol core in virtual time, or with
    /// real daemons in network namespaces (`--backend netns`). Exit code 0
    /// only when no scenario fails (SKIP does not fail a run).
    Run {
        /// Scenario files or glob patterns, e.g. 'topologies/**/*.yaml'.
        #[arg(required = true)]
        files: Vec<String>,
        /// Scenarios to run at once.
        #[arg(short = 'j', long = "jobs", default_value_t = 1)]
        jobs: usize,
        /// Where each scenario's folder (result.json, ladder, state tables) goes.
        #[arg(long, default_value = "out")]
        out: PathBuf,
        /// `virtual`: the protocol core in virtual time. `netns`: real
        /// daemons in network namespaces (needs root and pmip-node beside
        /// pmiplab, or PMIP_NODE), with a pcapng capture of every link.
        #[arg(long, default_value = "virtual", value_parser = ["virtual", "netns"])]
        backend: String,
        /// Writes this run's state tables and ladder as the stored pins
        /// beside each scenario (`<dir>/snapshots/`), for review: later
        /// runs compare with them. Without it, a run that differs from a
        /// pin leaves its own beside it as `.snap.new` for `cargo insta
        /// review`.
        #[arg(long)]
        record: bool,
        /// Plays every node of a role with an implementation under test
        /// (namespaces only): `mag=COMMAND` (shell words) or
        /// `lma=FILE.yaml` (an `impl:` with hooks and readiness). See
        /// docs/implementation-under-test.md.
        #[arg(long, value_name = "ROLE=CMD")]
        iut: Vec<String>,
    },
    /// Checks scenario files and reports the first problem of each with its line and column.
    Validate {
        #[arg(required = true)]
        files: Vec<String>,
    },
    /// Builds a scenario's topology as a persistent demo lab in named
    /// namespaces (`ip netns exec pmiplab-<lab>-<node> …`), attaches every
    /// MN interface and leaves the daemons running (root).
    Deploy {
        file: PathBuf,
        /// The lab's name; the file's stem by default.
        #[arg(long)]
        name: Option<String>,
    },
    /// Stops a deployed lab's daemons and removes its namespaces.
    Destroy { name: String },
    /// Lists deployed labs, or shows one lab's nodes and tables as JSON.
    Inspect { name: Option<String> },
    /// Runs a command inside a node of a deployed lab.
    Exec {
        name: String,
        node: String,
        #[arg(last = true, required = true)]
        command: Vec<String>,
    },
    /// Destroys every deployed lab; touches only what pmiplab marked as its own.
    Cleanup,
    /// Measures the performance figures of DESIGN.md, each beside a
    /// baseline from the same run, and prints them as a Markdown table.
    Bench {
        /// `core`: the sans-IO LMA's PBU→PBA rate. `lab`: the seed lab up and
        /// down (root). `catalogue`: every scenario in namespaces, two at
        /// once, against the same in virtual time (root). `datapath`: TCP
        /// and UDP between CN and MN through the lab beside plain kernel
        /// forwarding over the same namespaces (root). `move`: flow moves
        /// under load, decision to first packet on the new link (root).
        #[arg(default_values_t = ["core".to_string()], value_parser = ["core", "lab", "catalogue", "datapath", "move"])]
        what: Vec<String>,
        /// Bindings in the LMA for `core` (DESIGN.md states its target at
        /// 100,000).
        #[arg(long, default_value_t = 100_000)]
        bindings: u32,
        /// Repetitions for `lab` and `datapath`.
        #[arg(long, default_value_t = 10)]
        runs: u32,
        /// Seconds per transfer for `datapath`.
        #[arg(long, default_value_t = 2.0)]
        seconds: f64,
        /// Flow moves for `move`.
        #[arg(long, default_value_t = 100)]
        moves: u32,
        /// Packets per second of the moved flow for `move`.
        #[arg(long, default_value_t = 10_000)]
        rate: u32,
        /// The scenarios for `lab` (its first file) and `catalogue`.
        #[arg(long, default_value = "topologies/*.yaml")]
        scenarios: String,
    },
}

fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .with_writer(std::io::stderr)
        // A log kept in a file must read as plain text.
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
    match Cli::parse().command {
        Command::Validate { files } => validate(&files),
        Command::Run { files, jobs, out, backend, record, iut } => run(&files, jobs, &out, &backend, record, &iut),
        Command::Deploy { file, name } => deploy(&file, name),
        Command::Destroy { name } => report(pmiplab::deploy::destroy(&name).map(|d| d.join("\n"))),
        Command::Inspect { name: None } => {
            let labs = pmiplab::deploy::labs();
            if labs.is_empty() {
                println!("no deployed lab");
            }
            for l in labs {
                println!("{l}");
            }
            ExitCode::SUCCESS
        }
        Command::Inspect { name: Some(n) } => {
            let s = pmiplab::deploy::read_marker(&n).ok().and_then(|m| scenario::load(&m.scenario).ok());
            report(
                pmiplab::deploy::inspect(&n, s.as_ref()).map(|v| serde_json::to_string_pretty(&v).unwrap_or_default()),
            )
        }
        Command::Exec { name, node, command } => match pmiplab::deploy::exec(&name, &node, &command) {
            Ok(status) => ExitCode::from(status.code().unwrap_or(1).clamp(0, 255) as u8),
            Err(e) => {
                eprintln!("pmiplab: {e}");
                ExitCode::from(2)
            }
        },
        Command::Bench { what, bindings, runs, scenarios, seconds, moves, rate } => {
            bench(&what, bindings, runs, &scenarios, (seconds, moves, rate))
        }
        Command::Cleanup => {
            for line in pmiplab::deploy::cleanup() {
                println!("{line}");
            }
            ExitCode::SUCCESS
        }
    }
}

fn validate(patterns: &[String]) -> ExitCode {
    let files = match expand(patterns) {
        Ok(f) => f,
        Err(e) => {
            eprintln!("pmiplab: {e}");
            return ExitCode::from(2);
        }
    };
    let mut bad = 0;
    for f in &files {
        match scenario::load(f) {
            Ok(s) => println!("ok        {} ({})", f.display(), s.id),
            Err(e) => {
                bad += 1;
                eprintln!("{e}");
            }
        }
    }
    if bad > 0 {
        ExitCode::from(2)
    } else {
        ExitCode::SUCCESS
    }
}

fn run(
    patterns: &[String],
    jobs: usize,
    out: &std::path::Path,
    backend: &str,
    record: bool,
    iut: &[String],
) -> ExitCode {
    let files = match expand(patterns) {
        Ok(f) => f,
        Err(e) => {
            eprintln!("pmiplab: {e}");
            return ExitCode::from(2);
        }
    };
    // Refuse the whole run, before anything is built, if any file is wrong.
    let mut loaded = Vec::new();
    let mut bad = false;
    for f in &files {
        match scenario::load(f) {
            Ok(s) => loaded.push((f.clone(), s)),
            Err(e) => {
                eprintln!("{e}");
                bad = true;
            }
        }
    }
    if bad {
        eprintln!("pmiplab: nothing was run: fix the scenario files above first");
        return ExitCode::from(2);
    }
    if !iut.is_empty() && backend != "netns" {
        eprintln!("pmiplab: --iut needs --backend netns: an implementation under test runs in namespaces");
        return ExitCode::from(2);
    }
    for arg in iut {
        match pmiplab::iut::load_cli(arg) {
            Ok((role, spec)) => loaded.iter_mut().for_each(|(_, s)| pmiplab::iut::apply(s, role, &spec)),
            Err(e) => {
                eprintln!("pmiplab: {e}");
                return ExitCode::from(2);
            }
        }
    }
    let mut ids = std::collections::BTreeMap::new();
    for (f, s) in &loaded {
        if let Some(prev) = ids.insert(s.id.clone(), f.clone()) {
            eprintln!(
                "pmiplab: {} and {} both have id {}; ids name the output folders, so they must differ",
                prev.display(),
                f.display(),
                s.id
            );
            return ExitCode::from(2);
        }
    }
    let node_bin = if backend == "netns" {
        match pmiplab::netns_run::node_binary() {
            Ok(b) => Some(b),
            Err(e) => {
                eprintln!("pmiplab: {e}");
                return ExitCode::from(2);
            }
        }
    } else {
        None
    };
    let how = if node_bin.is_some() { "network namespaces" } else { "virtual time" };
    println!("pmiplab: {} scenario(s), {how}, {} at once, output in {}", loaded.len(), jobs.max(1), out.display());
    let pins = pmiplab::snapshots::Pins { record, pending: !record };
    let reports: Vec<ScenarioReport> = pmiplab::run::run_all(&loaded, jobs.max(1), node_bin.as_deref(), out, pins);
    let mut failed = 0;
    let mut unchecked = 0;
    for r in &reports {
        println!("{}", r.line());
        for c in r.checks.iter().filter(|c| !c.passed()) {
            println!("{}", explain(c));
        }
        unchecked += r.checks.iter().filter(|c| c.ok() && !c.passed()).count();
        if matches!(r.verdict, Verdict::Fail | Verdict::InitFail) {
            failed += 1;
        }
        if let Err(e) = r.write(out) {
            eprintln!("pmiplab: could not write the results of {} under {}: {e}", r.id, out.display());
            return ExitCode::from(2);
        }
    }
    if let Err(e) = std::fs::write(out.join("junit.xml"), junit(&reports)) {
        eprintln!("pmiplab: could not write {}: {e}", out.join("junit.xml").display());
    }
    if node_bin.is_some() {
        let lua = out.join("pmiplab.lua");
        match std::fs::write(&lua, pmip_captures::LUA_DISSECTOR) {
            Ok(()) => println!(
                "pmiplab: read the captures with `tshark -X lua_script:{}` (FMI/FMA on MH type N: add -o pmip.fmi_mh_type:N)",
                lua.display()
            ),
            Err(e) => eprintln!("pmiplab: could not write {}: {e}", lua.display()),
        }
    }
    let passed = reports.iter().filter(|r| r.verdict == Verdict::Pass).count();
    let skipped = reports.iter().filter(|r| r.verdict == Verdict::Skip).count();
    if unchecked > 0 {
        println!("pmiplab: {unchecked} check(s) had nothing to compare with and were not passed (see above)");
    }
    println!("{passed} passed, {failed} failed, {skipped} skipped");
    if failed > 0 {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    }
}

fn bench(
    what: &[String],
    bindings: u32,
    runs: u32,
    scenarios: &str,
    (seconds, moves, rate): (f64, u32, u32),
) -> ExitCode {
    let started = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0);
    println!(
        "pmiplab bench: {} at unix time {started}, {} CPUs",
        what.join(", "),
        std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1)
    );
    let mut figures = Vec::new();
    for w in what {
        let r = match w.as_str() {
            "core" => pmiplab::bench::core(bindings),
            "datapath" | "move" => match pmiplab::netns_run::node_binary() {
                Ok(bin) if w == "datapath" => pmiplab::bench::datapath(&bin, runs, seconds),
                Ok(bin) => pmiplab::bench::moves(&bin, moves, rate),
                Err(e) => Err(e.to_string()),
            },
            "lab" | "catalogue" => {
                let files = match expand(&[scenarios.to_string()]) {
                    Ok(f) => f,
                    Err(e) => {
                        eprintln!("pmiplab: {e}");
                        return ExitCode::from(2);
                    }
                };
                match pmiplab::netns_run::node_binary() {
                    Ok(bin) if w == "lab" => pmiplab::bench::lab(&bin, &files[0], runs),
                    Ok(bin) => pmiplab::bench::catalogue(&bin, &files),
                    Err(e) => Err(e.to_string()),
                }
            }
            other => Err(format!("no benchmark named {other}")),
        };
        match r {
            Ok(f) => figures.extend(f),
            Err(e) => {
                eprintln!("pmiplab: the {w} benchmark failed: {e}");
                return ExitCode::FAILURE;
            }
        }
    }
    print!("{}", pmiplab::bench::table(&figures));
    ExitCode::SUCCESS
}

fn report(r: std::io::Result<String>) -> ExitCode {
    match r {
        Ok(text) => {
            if !text.is_empty() {
                println!("{text}");
            }
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("pmiplab: {e}");
            ExitCode::from(2)
        }
    }
}

fn deploy(file: &std::path::Path, name: Option<String>) -> ExitCode {
    let s = match scenario::load(file) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("{e}");
            return ExitCode::from(2);
        }
    };
    let name = name.unwrap_or_else(|| file.file_stem().map(|x| x.to_string_lossy().into_owned()).unwrap_or_default());
    let bin = match pmiplab::netns_run::node_binary() {
        Ok(b) => b,
        Err(e) => {
            eprintln!("pmiplab: {e}");
            return ExitCode::from(2);
        }
    };
    match pmiplab::deploy::deploy(file, &s, &name, &bin) {
        Ok(m) => {
            println!("deployed lab {name}:");
            for (node, ns) in &m.namespaces {
                println!("  {node:<8} ip netns exec {ns} …");
            }
            println!("pmiplab destroy {name} removes it");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("pmiplab: deploying {name} failed, nothing was left behind: {e}");
            ExitCode::from(1)
        }
    }
}
