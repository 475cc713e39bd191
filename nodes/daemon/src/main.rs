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
    /// The node's configuration (role and settings) as JSON.
    #[arg(long)]
    config: PathBuf,
    /// Where to create the control socket (mode 0600).
    #[arg(long)]
    control: PathBuf,
    /// MH type carrying the draft's FMI/FMA.
    #[arg(long, default_value_t = 11)]
    fmi_mh_type: u8,
    /// Frame flow mobility as RFC 7864's UPN/UPA instead of FMI/FMA.
    #[arg(long)]
    rfc7864: bool,
}

fn main() -> ExitCode {
    // The log is written by a thread of its own: a line per protocol event
    // costs the signalling loop a queue push, not a write(2). Nothing is
    // dropped when the queue is full; the loop waits instead.
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
    let (log, _flush_at_exit) =
        tracing_appender::non_blocking::NonBlockingBuilder::default().lossy(false).finish(std::io::stderr());
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()))
        .with_writer(log)
        // A log kept in a file must read as plain text.
        .with_ansi(ansi)
        .init();
    let args = Args::parse();
    match run(args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("pmip-node: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn run(args: Args) -> anyhow::Result<()> {
    use anyhow::Context;
    let text = std::fs::read_to_string(&args.config).with_context(|| format!("reading {}", args.config.display()))?;
    let mut config: config::DaemonConfig = serde_json::from_str(&text)
        .with_context(|| format!("{} is not a node configuration", args.config.display()))?;
    config.count_start()?;
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    rt.block_on(async {
        match config.node {
            config::NodeConfig::Mn { config: mn } => return mn_node::MnNode::new(mn).await?.run(&args.control).await,
            config::NodeConfig::Cn { address } => return cn_node::CnNode::new(address).run(&args.control).await,
            _ => {}
        }
        let profile = if args.rfc7864 { pmip_wire::Profile::Rfc7864 } else { pmip_wire::Profile::DraftFmi };
        let wire = WireConfig { flow_mobility_mh_type: args.fmi_mh_type, profile };
        node::Node::new(config, wire).await?.run(&args.control).await
    })
}
