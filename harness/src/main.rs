//! The `pmiplab` command line.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use pmiplab::run::expand;
use pmiplab::scenario;

#[derive(Parser)]
#[command(name = "pmiplab", version, about = "Proxy Mobile IPv6 flow mobility testbed")]
struct Cli {
    /// The datapath every pmiplab daemon runs (namespaces only): `kernel`
    /// (the LMA–MAG tunnel, the Flow Mobility Cache and the MN's logical
    /// interface in the kernel; a daemon that cannot run it fails to
    /// start), `userspace` (TUN devices and raw sockets), or `auto` (the
    /// kernel where the kernel has what it needs, else userspace). The
    /// same as PMIPLAB_DATAPATH, which it sets; see docs/datapath.md.
    #[arg(long, global = true, value_parser = ["auto", "kernel", "userspace"])]
    datapath: Option<String>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Runs scenarios and gives each a verdict (PASS, FAIL, INIT-FAIL, SKIP).
    ///
    /// Scenarios run against the protocol core in virtual time, or with
    /// real daemons in network namespaces (`--backend netns`). Each
    /// scenario's line is printed as it finishes, then a summary in input
    /// order. The run's report is `<out>/report.json` and
    /// `<out>/junit.xml`; a scenario file that cannot be read is an error
    /// entry there and the others still run. SIGINT, SIGTERM or
    /// `--timeout` stop the run between steps: what finished, the
    /// captures so far and a report marked partial are written first.
    ///
    /// Exit codes, the first that applies: 4 the run was cut short
    /// (signal or --timeout); 2 bad input (a file that cannot be read or
    /// validated, a pattern that names nothing); 1 a scenario FAILed; 3 a
    /// lab could not be built (INIT-FAIL); 0 every scenario passed or
    /// was skipped.
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
        /// Runs only shard K of N of the files (1-based), e.g. `--shard
        /// 2/4`: the files, in input order, are dealt round robin, so every
        /// CI runner given the same patterns gets its own share. Each
        /// writes its own report; `pmiplab merge-reports` joins them.
        #[arg(long, value_name = "K/N", value_parser = shard)]
        shard: Option<(usize, usize)>,
        /// Stops the run after this long (e.g. 90s, 10m), writing what it
        /// has, as SIGINT does.
        #[arg(long, value_parser = humantime::parse_duration)]
        timeout: Option<std::time::Duration>,
    },
    /// Joins the reports of several runs (the shards of one catalogue)
    /// into one report.json and junit.xml, and exits as the whole run
    /// would have.
    MergeReports {
        /// Each run's `--out` folder, or its report.json.
        #[arg(required = true)]
        reports: Vec<PathBuf>,
        /// Where the merged report.json and junit.xml go.
        #[arg(long)]
        out: PathBuf,
    },
    /// Checks scenario files and reports every problem of each with its
    /// line and column (a file that does not parse stops at its first).
    /// Exit code 2 when any file has a problem.
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
    /// Lists deployed labs, or shows one lab's nodes, daemons and tables:
    /// a table by default, `--format json` for the whole tables.
    Inspect {
        name: Option<String>,
        #[arg(long, default_value = "table", value_parser = ["table", "json"])]
        format: String,
    },
    /// Draws a topology: a deployed lab's (by name) or a scenario file's,
    /// as ASCII (default), Graphviz DOT or a standalone SVG.
    Graph {
        /// A deployed lab's name or a scenario file.
        lab: String,
        #[arg(long, default_value = "ascii", value_parser = ["ascii", "dot", "svg"])]
        format: String,
    },
    /// Plays steps on a deployed lab through the scenario engine, as a run
    /// plays them: `pmiplab step demo 'move: {flow: Y, to_bid: 1}'`, or
    /// `--steps FILE` for a scenario file's steps. Steps are checked
    /// against the lab's scenario first; the steps played before on the
    /// lab count for what they set up (a bind's FID). Exit code 1 when an
    /// expectation fails, 2 for steps that do not validate.
    Step {
        name: String,
        /// One step, or a YAML list of steps, in the scenario format.
        #[arg(required_unless_present = "steps", allow_hyphen_values = true)]
        step: Option<String>,
        /// A scenario file whose steps to play.
        #[arg(long, conflicts_with = "step")]
        steps: Option<PathBuf>,
    },
    /// Runs a command inside a node of a deployed lab.
    Exec {
        name: String,
        node: String,
        #[arg(last = true, required = true)]
        command: Vec<String>,
    },
    /// Destroys the caller's deployed labs (the user who deployed them,
    /// the one behind sudo under sudo), or every one with `--all`; touches
    /// only what pmiplab marked as its own.
    Cleanup {
        /// Every deployed lab, whoever deployed it.
        #[arg(long)]
        all: bool,
    },
    /// Measures the performance figures of DESIGN.md, each beside a
    /// baseline from the same run, and prints them as a Markdown table.
    Bench {
        /// `core`: the sans-IO LMA's PBU→PBA rate. `lab`: the seed lab up and
        /// down (root). `catalogue`: every scenario in namespaces, two at
        /// once, against the same in virtual time (root). `datapath`: TCP
        /// and UDP between CN and MN through the lab beside plain kernel
        /// forwarding over the same namespaces (root). `move`: flow moves
        /// under load, decision to first packet on the new link (root).
        /// `signalling`: PBU→PBA through the LMA daemon's sockets beside a
        /// canned-PBA responder (root). `scale`: 1 LMA, N MAGs and 8 MNs
        /// per MAG attached, registered and detached, in namespaces beside
        /// virtual time (root).
        #[arg(default_values_t = ["core".to_string()], value_parser = ["core", "lab", "catalogue", "datapath", "move", "signalling", "scale"])]
        what: Vec<String>,
        /// Bindings in the LMA for `core` and MNs for `signalling` (DESIGN.md
        /// states its target at 100,000).
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
        /// The sizes for `scale`: MAGs, each with 8 MNs.
        #[arg(long, value_delimiter = ',', default_values_t = [1, 2, 4, 8, 16, 32, 64])]
        mags: Vec<usize>,
    },
}

/// `PMIP_NODE` as an absolute path: an implementation under test runs in
/// a work folder of its own, and a wrapper that starts pmip-node from the
/// inherited variable (ci/iut/pmip-node-iut) would not find a path
/// relative to where pmiplab was started.
fn absolute_node_binary() {
    let Some(p) = std::env::var_os("PMIP_NODE") else { return };
    if let Ok(abs) = std::path::absolute(&p) {
        if abs.as_os_str() != p {
            // Before any thread starts: nothing else reads the environment yet.
            std::env::set_var("PMIP_NODE", abs);
        }
    }
}

fn main() -> ExitCode {
    absolute_node_binary();
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .with_writer(std::io::stderr)
        // A log kept in a file must read as plain text.
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
    let cli = Cli::parse();
    if let Some(d) = &cli.datapath {
        // Before any thread starts: nothing else reads the environment yet;
        // the daemons inherit it.
        std::env::set_var("PMIPLAB_DATAPATH", d);
    }
    match cli.command {
        Command::Validate { files } => validate(&files),
        Command::Run { files, jobs, out, backend, record, shard, timeout, iut } => {
            ExitCode::from(pmiplab::run_cmd::run(&pmiplab::run_cmd::RunOptions {
                patterns: &files,
                jobs,
                out: &out,
                backend: &backend,
                record,
                shard,
                timeout,
                iut: &iut,
            }))
        }
        Command::MergeReports { reports, out } => ExitCode::from(pmiplab::run_cmd::merge_reports(&reports, &out)),
        Command::Deploy { file, name } => deploy(&file, name),
        Command::Destroy { name } => report(pmiplab::deploy::destroy(&name).map(|d| d.join("\n"))),
        Command::Inspect { name: None, format } => {
            let labs = pmiplab::deploy::labs();
            if format == "json" {
                println!("{}", serde_json::json!(labs));
            } else if labs.is_empty() {
                println!("no deployed lab");
            } else {
                print!("{}", pmiplab::deploy::labs_table());
            }
            ExitCode::SUCCESS
        }
        Command::Inspect { name: Some(n), format } => {
            let s = pmiplab::deploy::read_marker(&n).ok().and_then(|m| scenario::load(&m.scenario).ok());
            report(pmiplab::deploy::inspect(&n, s.as_ref()).map(|v| match format.as_str() {
                "json" => serde_json::to_string_pretty(&v).unwrap_or_default(),
                _ => pmiplab::deploy::inspect_table(&v).trim_end().to_string(),
            }))
        }
        Command::Graph { lab, format } => graph(&lab, &format),
        Command::Step { name, step, steps } => play_steps(&name, step, steps),
        Command::Exec { name, node, command } => match pmiplab::deploy::exec(&name, &node, &command) {
            Ok(status) => ExitCode::from(status.code().unwrap_or(1).clamp(0, 255) as u8),
            Err(e) => {
                eprintln!("pmiplab: {e}");
                ExitCode::from(2)
            }
        },
        Command::Bench { what, bindings, runs, scenarios, seconds, moves, rate, mags } => {
            bench(&what, bindings, runs, &scenarios, (seconds, moves, rate), &mags)
        }
        Command::Cleanup { all } => {
            for line in pmiplab::deploy::cleanup(all) {
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
        match pmiplab::validate::check_file(f) {
            Ok(s) => println!("ok        {} ({})", f.display(), s.id),
            Err(all) => {
                bad += 1;
                for e in all {
                    eprintln!("{e}");
                }
            }
        }
    }
    if bad > 0 {
        ExitCode::from(2)
    } else {
        ExitCode::SUCCESS
    }
}

/// `pmiplab graph`: the topology of a scenario file, or of the scenario
/// a deployed lab was made from.
fn graph(lab: &str, format: &str) -> ExitCode {
    let file = if std::path::Path::new(lab).is_file() {
        PathBuf::from(lab)
    } else {
        match pmiplab::deploy::read_marker(lab) {
            Ok(m) => m.scenario,
            Err(e) => {
                eprintln!("pmiplab: {e} (and no scenario file {lab})");
                return ExitCode::from(2);
            }
        }
    };
    let s = match scenario::load(&file) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("{e}");
            return ExitCode::from(2);
        }
    };
    let text = match format {
        "dot" => pmiplab::graph::dot(&s),
        "svg" => pmiplab::graph::svg(&s),
        _ => pmiplab::graph::ascii(&s),
    };
    print!("{text}");
    ExitCode::SUCCESS
}

/// `pmiplab step`: steps given inline or as a scenario file's.
fn play_steps(lab: &str, step: Option<String>, file: Option<PathBuf>) -> ExitCode {
    let (text, origin) = match (step, file) {
        (Some(t), _) => (t, PathBuf::from("<step>")),
        (None, Some(f)) => {
            let steps = std::fs::read_to_string(&f)
                .map_err(|e| format!("{}: {e}", f.display()))
                .and_then(|t| {
                    serde_saphyr::from_str::<serde_json::Value>(&t).map_err(|e| format!("{}: {e}", f.display()))
                })
                .and_then(|v| {
                    let steps = v.get("steps").cloned().ok_or(format!("{} has no steps", f.display()))?;
                    serde_saphyr::to_string(&steps).map_err(|e| e.to_string())
                });
            match steps {
                Ok(t) => (t, f),
                Err(e) => {
                    eprintln!("pmiplab: {e}");
                    return ExitCode::from(2);
                }
            }
        }
        (None, None) => {
            eprintln!("pmiplab: give a step, or --steps FILE");
            return ExitCode::from(2);
        }
    };
    match pmiplab::deploy::step(lab, &text, &origin) {
        Ok(r) => {
            for c in &r.checks {
                println!("{}", pmiplab::run::explain(c));
            }
            println!("{}", r.line());
            if r.verdict == pmiplab::report::Verdict::Fail {
                ExitCode::from(1)
            } else {
                ExitCode::SUCCESS
            }
        }
        Err(e) => {
            eprintln!("{e}");
            ExitCode::from(2)
        }
    }
}

/// Reads `--shard K/N`.
fn shard(s: &str) -> Result<(usize, usize), String> {
    pmiplab::run_report::parse_shard(s)
}

fn bench(
    what: &[String],
    bindings: u32,
    runs: u32,
    scenarios: &str,
    (seconds, moves, rate): (f64, u32, u32),
    mags: &[usize],
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
            "datapath" | "move" | "signalling" | "scale" => match pmiplab::netns_run::node_binary() {
                Ok(bin) if w == "datapath" => pmiplab::bench::datapath(&bin, runs, seconds),
                Ok(bin) if w == "scale" => pmiplab::bench::scale(&bin, mags),
                Ok(bin) if w == "signalling" => pmiplab::bench::signalling(&bin, bindings),
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
