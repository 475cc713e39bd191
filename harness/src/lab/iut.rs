//! Processes of an implementation under test in a node's namespace: its
//! command, its readiness probes and hooks. pmiplab never talks to it:
//! it starts it, watches its namespace from outside (files, sockets,
//! exit statuses) and stops it with SIGTERM, then SIGKILL, sweeping
//! whatever else it left running in the namespace.

use std::collections::BTreeMap;
use std::io::{self, Write};
use std::net::{Ipv6Addr, SocketAddrV6};
use std::os::fd::AsRawFd;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use nix::sys::signal::{kill, killpg, Signal};
use nix::unistd::Pid;

use super::{not_found, rundir, Daemon, Lab};
use crate::iut::Ready;

/// How an IUT is started again by `restart`, and judged ready.
#[derive(Debug, Clone)]
pub struct IutLaunch {
    pub command: Vec<String>,
    pub env: BTreeMap<String, String>,
    pub work: PathBuf,
    pub ready: Ready,
    pub ready_within: Duration,
    pub stop_within: Duration,
}

/// How an IUT's stop went, for the report.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Stopped {
    /// It was not running any more (killed by a step, or exited).
    NotRunning,
    /// It exited on SIGTERM within its bound.
    OnTerm,
    /// It was still running after its bound and was killed.
    Killed { after: Duration },
}

/// Longest a probe command or a hook may run.
const PROBE_LIMIT: Duration = Duration::from_secs(10);

/// A relative program path is the caller's, not the work folder's.
/// Whether an IUT's command has exited, without waiting: an IUT is always
/// this process's child (a deployed lab has none).
fn exit_status(d: &mut Daemon) -> io::Result<Option<ExitStatus>> {
    d.child.as_mut().map_or(Ok(None), |c| c.try_wait())
}

fn program(p: &str) -> PathBuf {
    let path = Path::new(p);
    if p.contains('/') && path.is_relative() {
        std::env::current_dir().map(|d| d.join(path)).unwrap_or_else(|_| path.into())
    } else {
        path.into()
    }
}

/// The namespace identity (`net:[…]`) of a process.
fn netns_of(pid: u32) -> Option<PathBuf> {
    std::fs::read_link(format!("/proc/{pid}/ns/net")).ok()
}

/// Every process in the same network namespace as `holder`, but it.
fn processes_in(holder: u32) -> Vec<u32> {
    let Some(ns) = netns_of(holder) else { return Vec::new() };
    std::fs::read_dir("/proc")
        .into_iter()
        .flatten()
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .filter(|&pid| pid != holder && netns_of(pid).as_ref() == Some(&ns))
        .collect()
}

/// Whether `/proc/<pid>/net/<table>` lists a socket for `(kind, number)`.
fn socket_open(pid: u32, kind: &str, number: u32) -> bool {
    let table = match kind {
        "tcp" => "tcp6",
        "udp" => "udp6",
        _ => "raw6",
    };
    let text = std::fs::read_to_string(format!("/proc/{pid}/net/{table}")).unwrap_or_default();
    let text4 = match kind {
        "tcp" => std::fs::read_to_string(format!("/proc/{pid}/net/tcp")).unwrap_or_default(),
        "udp" => std::fs::read_to_string(format!("/proc/{pid}/net/udp")).unwrap_or_default(),
        _ => String::new(),
    };
    text.lines().chain(text4.lines()).skip(1).any(|line| {
        let f: Vec<&str> = line.split_whitespace().collect();
        let port = f.get(1).and_then(|a| a.rsplit_once(':')).and_then(|(_, p)| u32::from_str_radix(p, 16).ok());
        // A TCP socket counts once it listens (state 0A).
        port == Some(number) && (kind != "tcp" || f.get(3) == Some(&"0A"))
    })
}

impl Lab {
    /// Starts an implementation under test as `node`, its stdout and
    /// stderr going to `<node>.log`, without waiting for it.
    pub fn start_iut(&mut self, node: &str, launch: IutLaunch) -> io::Result<()> {
        let log_path = self.dir.join(format!("{node}.log"));
        if !self.daemons.contains_key(node) {
            drop(rundir::create_new_file(&log_path)?);
        }
        // Appending: the harness adds its own lines (hooks, probes) to the
        // same log, and neither may write over the other.
        let log = rundir::open_append(&log_path)?;
        let (prog, args) = launch
            .command
            .split_first()
            .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, format!("{node}: impl has no command")))?;
        let mut cmd = Command::new(program(prog));
        cmd.args(args).envs(&launch.env).current_dir(&launch.work);
        cmd.stdin(Stdio::null()).stdout(log.try_clone()?).stderr(log);
        // Its own process group, so that a stop reaches what it started.
        cmd.process_group(0);
        let child = self.spawn_in(node, cmd, true).map_err(|e| {
            io::Error::new(
                e.kind(),
                format!("cannot start {node}'s implementation ({}): {e}", launch.command.join(" ")),
            )
        })?;
        let control = self.dir.join(format!("{node}.sock"));
        let pid = child.id();
        let daemon = Daemon {
            child: Some(child),
            pid,
            control,
            log: log_path,
            binary: PathBuf::new(),
            args: Vec::new(),
            iut: Some(launch),
        };
        self.daemons.insert(node.into(), daemon);
        Ok(())
    }

    /// Spawns `cmd` inside `node`'s namespace; `die_with_us` kills it when
    /// this process dies.
    fn spawn_in(&self, node: &str, mut cmd: Command, die_with_us: bool) -> io::Result<std::process::Child> {
        let ns_fd = self.ns(node)?.fd()?;
        let raw = ns_fd.as_raw_fd();
        // SAFETY: between fork and exec the child only calls setns and
        // prctl, which are async-signal-safe; `ns_fd` outlives the spawn.
        unsafe {
            cmd.pre_exec(move || {
                if libc::setns(raw, libc::CLONE_NEWNET) != 0 {
                    return Err(io::Error::last_os_error());
                }
                if die_with_us {
                    libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
                }
                Ok(())
            });
        }
        let child = cmd.spawn();
        drop(ns_fd);
        child
    }

    /// Runs a probe or hook command in `node`'s namespace, at most
    /// [`PROBE_LIMIT`]; its status and output (also appended to the node's
    /// log, marked as the harness's).
    pub fn run_in_node(
        &self,
        node: &str,
        argv: &[String],
        env: &BTreeMap<String, String>,
        work: &Path,
    ) -> io::Result<(ExitStatus, String)> {
        let (prog, args) =
            argv.split_first().ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "an empty command"))?;
        let out = self.dir.join(format!(".{node}-probe-{}.out", rundir::random_suffix()?));
        let file = rundir::create_new_file(&out)?;
        let mut cmd = Command::new(program(prog));
        cmd.args(args).envs(env).current_dir(work).stdin(Stdio::null());
        cmd.stdout(file.try_clone()?).stderr(file).process_group(0);
        let mut child = self.spawn_in(node, cmd, true)?;
        let deadline = Instant::now() + PROBE_LIMIT;
        let status = loop {
            if let Some(s) = child.try_wait()? {
                break Some(s);
            }
            if Instant::now() > deadline {
                let _ = killpg(Pid::from_raw(child.id() as i32), Signal::SIGKILL);
                let _ = child.wait();
                break None;
            }
            std::thread::sleep(Duration::from_millis(5));
        };
        let text = std::fs::read_to_string(&out).unwrap_or_default();
        let _ = std::fs::remove_file(&out);
        if let Some(d) = self.daemons.get(node) {
            if let Ok(mut log) = rundir::open_append(&d.log) {
                let _ = writeln!(log, "[pmiplab] ran {}: {}", argv.join(" "), text.trim_end());
            }
        }
        match status {
            Some(s) => Ok((s, text)),
            None => Err(io::Error::new(
                io::ErrorKind::TimedOut,
                format!("{} did not finish within {PROBE_LIMIT:?}; output: {}", argv.join(" "), text.trim_end()),
            )),
        }
    }

    /// The process that holds `node`'s namespace: an IUT runs only in a
    /// lab this process made, where every namespace has one.
    fn iut_holder(&self, node: &str) -> io::Result<u32> {
        self.ns(node)?
            .holder_pid()
            .ok_or_else(|| io::Error::other(format!("{node}'s namespace belongs to a deployed lab: no IUT runs there")))
    }

    /// Whether `node`'s IUT meets its readiness condition now.
    fn iut_ready_now(&self, node: &str, launch: &IutLaunch) -> io::Result<bool> {
        let holder = self.iut_holder(node)?;
        Ok(match &launch.ready {
            Ready::File(f) => launch.work.join(f).exists(),
            Ready::Socket(s) => {
                let (kind, n) = crate::iut::parse_socket(s).map_err(io::Error::other)?;
                socket_open(holder, kind, n)
            }
            Ready::Command(argv) => self.run_in_node(node, argv, &launch.env, &launch.work)?.0.success(),
        })
    }

    /// Waits until `node`'s IUT is ready, at most its bound; says why not,
    /// with its log, when it exited first or never became ready.
    pub(super) fn wait_iut_ready(&mut self, node: &str) -> io::Result<()> {
        let launch = self
            .daemons
            .get(node)
            .and_then(|d| d.iut.clone())
            .ok_or_else(|| not_found(format!("no implementation runs in {node}")))?;
        let deadline = Instant::now() + launch.ready_within;
        let cmd = launch.command.join(" ");
        loop {
            if self.iut_ready_now(node, &launch)? {
                return Ok(());
            }
            let d = self.daemons.get_mut(node).ok_or_else(|| not_found(format!("no implementation in {node}")))?;
            let exited = exit_status(d)?;
            let log = || std::fs::read_to_string(&d.log).unwrap_or_default();
            // A command that exits 0 may have left its daemon running: only
            // a failure, or a readiness it can no longer reach, ends the wait.
            if let Some(status) = exited.filter(|s| !s.success()) {
                return Err(io::Error::other(format!(
                    "{node}'s implementation ({cmd}) exited ({status}) before it was ready; its log:\n{}",
                    log()
                )));
            }
            if Instant::now() > deadline {
                let condition = match &launch.ready {
                    Ready::File(f) => format!("the file {f} did not appear"),
                    Ready::Socket(s) => format!("no {s} socket was open in its namespace"),
                    Ready::Command(c) => format!("the probe {} never exited 0", c.join(" ")),
                };
                return Err(io::Error::new(
                    io::ErrorKind::TimedOut,
                    format!(
                        "{node}'s implementation ({cmd}) was not ready within {:?}: {condition}; its log:\n{}",
                        launch.ready_within,
                        log()
                    ),
                ));
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// Stops `node`'s IUT: SIGTERM to its process group, SIGKILL after its
    /// bound, then SIGKILL to anything else left in its namespace.
    pub fn stop_iut(&mut self, node: &str) -> io::Result<Stopped> {
        let holder = self.iut_holder(node)?;
        let d = self.daemons.get_mut(node).ok_or_else(|| not_found(format!("no implementation runs in {node}")))?;
        let within = d.iut.as_ref().map_or(Duration::ZERO, |l| l.stop_within);
        let pgid = Pid::from_raw(d.pid as i32);
        let running = exit_status(d)?.is_none();
        // The command's group, and whatever runs in the namespace besides
        // (a command that exited 0 may have left its daemon there).
        let others = processes_in(holder);
        if !running && others.is_empty() {
            return Ok(Stopped::NotRunning);
        }
        if running {
            let _ = killpg(pgid, Signal::SIGTERM);
        }
        for pid in &others {
            let _ = kill(Pid::from_raw(*pid as i32), Signal::SIGTERM);
        }
        let started = Instant::now();
        let deadline = started + within;
        let outcome = loop {
            let done = !running || exit_status(d)?.is_some();
            if done && processes_in(holder).is_empty() {
                break Stopped::OnTerm;
            }
            if Instant::now() > deadline {
                let _ = killpg(pgid, Signal::SIGKILL);
                if let Some(c) = d.child.as_mut().filter(|_| running) {
                    c.wait()?;
                }
                break Stopped::Killed { after: started.elapsed() };
            }
            std::thread::sleep(Duration::from_millis(5));
        };
        // Its group, then anything it left in its namespace, however it got there.
        let _ = killpg(pgid, Signal::SIGKILL);
        for _ in 0..100 {
            let left = processes_in(holder);
            if left.is_empty() {
                break;
            }
            for pid in left {
                let _ = kill(Pid::from_raw(pid as i32), Signal::SIGKILL);
            }
            std::thread::sleep(Duration::from_millis(5));
        }
        Ok(outcome)
    }

    /// Sends one Mobility Header message from `node`'s namespace, `src` to
    /// `dst`, on a raw socket of the harness's own: a message the test
    /// crafts as a node under test would send it (`send` as its MAG,
    /// `send_fmi` as its LMA), with nothing asked of the implementation.
    pub fn send_mh_from(&self, node: &str, src: Ipv6Addr, dst: Ipv6Addr, bytes: Vec<u8>) -> io::Result<()> {
        use socket2::{Domain, Protocol, Socket, Type};
        self.run_in(node, move || {
            // Linux computes the Mobility Header checksum of a protocol-135
            // raw socket itself (offset 4); the codec's is the same.
            let s = Socket::new(Domain::IPV6, Type::RAW, Some(Protocol::from(135)))?;
            s.bind(&SocketAddrV6::new(src, 0, 0, 0).into())
                .map_err(|e| io::Error::new(e.kind(), format!("binding a raw MH socket to {src}: {e}")))?;
            s.send_to(&bytes, &SocketAddrV6::new(dst, 0, 0, 0).into())
                .map_err(|e| io::Error::new(e.kind(), format!("sending to {dst}: {e}")))?;
            Ok(())
        })
    }

    /// How `node`'s implementation under test was started, if it is one.
    pub fn iut_launch(&self, node: &str) -> Option<&IutLaunch> {
        self.daemons.get(node)?.iut.as_ref()
    }

    /// Whether `node` is played by an implementation under test.
    pub fn is_iut(&self, node: &str) -> bool {
        self.daemons.get(node).is_some_and(|d| d.iut.is_some())
    }

    /// Stops every IUT (all at once): their outcomes by node.
    pub fn stop_iuts(&mut self) -> Vec<(String, io::Result<Stopped>)> {
        let nodes: Vec<String> = self.daemons.iter().filter(|(_, d)| d.iut.is_some()).map(|(n, _)| n.clone()).collect();
        nodes
            .into_iter()
            .map(|n| {
                let r = self.stop_iut(&n);
                (n, r)
            })
            .collect()
    }
}
