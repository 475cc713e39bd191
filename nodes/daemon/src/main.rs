//! `pmip-node`: runs one role (LMA or MAG today) of the protocol core in
//! the network namespace it is started in.

mod access;
mod cn_node;
mod config;
mod control;
mod data_plane;
mod esp;
mod faults;
mod kernel;
mod link_watch;
mod mn_kernel;
mod mn_node;
mod nd;
mod node;
mod packet;
mod packet_socket;
mod probe;
mod ratelimit;
mod raw_socket;
mod tun;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Parser;
use pmip_wire::WireConfig;

#[derive(Parser)]
#[command(name = "pmip-node", version, about = "The pmiplab node daemon")]
struct Args {
    /// The node's configuration (role and settings) as JSON, as the
    /// harness writes it.
    #[arg(long, required_unless_present_any = ["impl_config", "request"], conflicts_with = "impl_config")]
    config: Option<PathBuf>,
    /// Runs as an implementation under test: the configuration is the
    /// hand-over pmiplab gives any implementation (PMIPLAB_CONFIG, see
    /// docs/implementation-under-test.md). `--control` is then optional.
    #[arg(long = "impl", value_name = "HANDOVER")]
    impl_config: Option<PathBuf>,
    /// Where to create the control socket (mode 0600); with `--request`,
    /// the socket to send the request to.
    #[arg(long, required_unless_present = "impl_config")]
    control: Option<PathBuf>,
    /// Sends one request line (JSON) to the daemon at `--control`, prints
    /// its reply and exits 0 when the reply is ok: a small admin client.
    #[arg(long, conflicts_with_all = ["config", "impl_config"])]
    request: Option<String>,
    /// MH type carrying the draft's FMI/FMA.
    #[arg(long, default_value_t = 11)]
    fmi_mh_type: u8,
    /// Frame flow mobility as RFC 7864's UPN/UPA instead of FMI/FMA.
    /// With `--impl`, the hand-over's `profile` says it.
    #[arg(long)]
    rfc7864: bool,
    /// Keeps the Restart Counter (RFC 5847 §3.2) in this file, one more at
    /// each start: with `--impl`, where the hand-over names no such file.
    #[arg(long, value_name = "FILE")]
    restart_counter_file: Option<PathBuf>,
    /// Joins this network namespace (a file that names one, such as
    /// /run/netns/NAME or /proc/PID/ns/net) before anything else.
    #[arg(long, value_name = "PATH")]
    netns: Option<PathBuf>,
    /// Dies with the process PID (the harness that started it): killed
    /// when it exits, and exits at once if it is gone already.
    #[arg(long, value_name = "PID", conflicts_with = "new_session")]
    die_with: Option<i32>,
    /// Starts a session of its own (a deployed lab's daemon, which
    /// outlives the command that started it).
    #[arg(long)]
    new_session: bool,
}

/// Joins the namespace and ties this process's life as `args` say. Runs
/// before any thread exists: a network namespace is joined per thread.
fn place(args: &Args) -> anyhow::Result<()> {
    use anyhow::Context;
    if let Some(path) = &args.netns {
        let ns =
            std::fs::File::open(path).with_context(|| format!("opening the network namespace {}", path.display()))?;
        nix::sched::setns(&ns, nix::sched::CloneFlags::CLONE_NEWNET)
            .with_context(|| format!("joining the network namespace {}", path.display()))?;
    }
    if let Some(parent) = args.die_with {
        // SAFETY: prctl(2) with an integer signal number.
        if unsafe { libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) } != 0 {
            return Err(std::io::Error::last_os_error()).context("asking to die with the harness");
        }
        // The harness may have died before the line above: then no signal comes.
        if nix::unistd::getppid().as_raw() != parent {
            anyhow::bail!("the process that started this one ({parent}) is gone");
        }
    }
    if args.new_session {
        nix::unistd::setsid().context("starting a session")?;
    }
    Ok(())
}

/// Log lines queued for the log thread at most (the protocol events reach
/// the log at info level at 1,000 lines per 10 s).
const LOG_QUEUE_LINES: usize = 8192;

fn main() -> ExitCode {
    let args = Args::parse();
    if let Err(e) = place(&args) {
        eprintln!("pmip-node: {e:#}");
        return ExitCode::FAILURE;
    }
    // The log is written by a thread of its own: a line per protocol event
    // costs the signalling loop a queue push, not a write(2). Nothing is
    // dropped when the queue is full; the loop waits instead. The queue is
    // allocated and touched whole at start: the default 128,000 lines cost
    // each daemon 4 MB of zeroed pages, and a lab of 578 daemons 2.3 GB.
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
    let (log, _flush_at_exit) = tracing_appender::non_blocking::NonBlockingBuilder::default()
        .lossy(false)
        .buffered_lines_limit(LOG_QUEUE_LINES)
        .finish(std::io::stderr());
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()))
        .with_writer(log)
        // A log kept in a file must read as plain text.
        .with_ansi(ansi)
        .init();
    match run(args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("pmip-node: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// Sends `line` to the control socket at `sock` and prints the reply.
fn request(sock: &std::path::Path, line: &str) -> anyhow::Result<()> {
    use anyhow::Context;
    use std::io::{BufRead, Write};
    let mut s =
        std::os::unix::net::UnixStream::connect(sock).with_context(|| format!("connecting to {}", sock.display()))?;
    s.set_read_timeout(Some(std::time::Duration::from_secs(5)))?;
    s.write_all(format!("{}\n", line.trim()).as_bytes())?;
    let mut reply = String::new();
    std::io::BufReader::new(s).read_line(&mut reply).context("reading the reply")?;
    println!("{}", reply.trim_end());
    let r: control::Reply = serde_json::from_str(&reply).context("the reply is not a control reply")?;
    match r.ok {
        true => Ok(()),
        false => anyhow::bail!("refused: {}", r.error.unwrap_or_default()),
    }
}

fn run(args: Args) -> anyhow::Result<()> {
    use anyhow::Context;
    if let Some(line) = &args.request {
        let sock = args.control.as_deref().context("--request needs --control")?;
        return request(sock, line);
    }
    let (mut config, fmi_mh_type, profile) = match (&args.config, &args.impl_config) {
        (Some(path), _) => {
            let text = std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
            let config: config::DaemonConfig = serde_json::from_str(&text)
                .with_context(|| format!("{} is not a node configuration", path.display()))?;
            let profile = if args.rfc7864 { pmip_wire::Profile::Rfc7864 } else { pmip_wire::Profile::DraftFmi };
            (config, args.fmi_mh_type, profile)
        }
        (None, Some(path)) => config::from_handover(path)?,
        (None, None) => anyhow::bail!("give --config or --impl"),
    };
    if let Some(file) = &args.restart_counter_file {
        config.restart_counter_file = Some(file.clone());
    }
    config.count_start()?;
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    rt.block_on(async {
        match config.node {
            config::NodeConfig::Mn { config: mn } => {
                let control = args.control.as_deref().context("an MN needs --control")?;
                let datapath = config.data_plane.as_ref().map(|d| d.datapath).unwrap_or_default();
                return mn_node::MnNode::new(mn, datapath).await?.run(control).await;
            }
            config::NodeConfig::Cn { address } => {
                let control = args.control.as_deref().context("a CN needs --control")?;
                return cn_node::CnNode::new(address).run(control).await;
            }
            _ => {}
        }
        let wire = WireConfig { flow_mobility_mh_type: fmi_mh_type, profile };
        node::Node::new(config, wire).await?.run(args.control.as_deref()).await
    })
}
