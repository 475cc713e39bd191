//! A lab of network namespaces joined by veths, with one node daemon per
//! namespace. Everything belongs to the run: dropping the `Lab`, or
//! killing the process that holds it, removes every namespace, interface
//! and daemon.

pub mod iut;
pub mod kernel_view;
pub mod netlink;
pub mod netns;
pub mod offload;
pub mod rundir;

use std::collections::BTreeMap;
use std::io::{self, BufRead, BufReader, Write};
use std::net::Ipv6Addr;
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use netns::NetNs;
use rtnetlink::Handle;

pub struct Daemon {
    /// None for a deployed lab's daemon met again by `Lab::attach`: it is
    /// not this process's child.
    child: Option<Child>,
    pid: u32,
    pub control: PathBuf,
    pub log: PathBuf,
    /// What started it, so that `restart` can start it again.
    binary: PathBuf,
    args: Vec<String>,
    /// Set for an implementation under test: no control socket, its own
    /// readiness and stop (see [`iut`]).
    iut: Option<iut::IutLaunch>,
}

pub struct Lab {
    pub dir: PathBuf,
    rt: tokio::runtime::Runtime,
    root: Handle,
    namespaces: BTreeMap<String, NetNs>,
    netlink: BTreeMap<String, Handle>,
    daemons: BTreeMap<String, Daemon>,
    captures: Vec<(String, pmip_captures::capture::Capture)>,
    /// A deployed lab's name: its namespaces are pinned as
    /// `pmiplab-<name>-<node>` and its daemons outlive this process.
    persistent: Option<String>,
    /// Set once a deployed lab is complete and marked: only then does it
    /// outlive this process.
    committed: bool,
}

/// Where deployed labs keep their marker, configurations, sockets and logs.
pub const DEPLOY_DIR: &str = "/run/pmiplab";

/// The `ip netns` name of a deployed lab's node.
pub fn netns_name(lab: &str, node: &str) -> String {
    format!("pmiplab-{lab}-{node}")
}

/// A deterministic, locally administered MAC for an interface: the same
/// link-layer identifier the virtual World gives it, so tables compare.
pub fn mac(node: &str, iface: &str) -> [u8; 6] {
    let m = pmip_proto::world::mac_for(node, iface);
    [m[0], m[1], m[2], m[3], m[4], m[5]]
}

fn not_found(what: String) -> io::Error {
    io::Error::new(io::ErrorKind::NotFound, what)
}

impl Lab {
    /// A lab with a private working folder for configurations, control
    /// sockets and logs: created fresh (never one that exists, never
    /// through a symlink) as `pmiplab-<pid>-<64 random bits>`, mode 0700,
    /// so parallel runs never collide and no local user can plant files in
    /// it beforehand.
    pub fn new() -> io::Result<Lab> {
        let tmp = std::env::temp_dir();
        rundir::sweep_stale(&tmp);
        let dir = rundir::create_run_dir(&tmp)?;
        Lab::with_dir(dir)
    }

    fn with_dir(dir: PathBuf) -> io::Result<Lab> {
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
        let root = {
            let _g = rt.enter();
            netlink::root_handle(&rt)?
        };
        Ok(Lab {
            dir,
            rt,
            root,
            namespaces: BTreeMap::new(),
            netlink: BTreeMap::new(),
            daemons: BTreeMap::new(),
            captures: Vec::new(),
            persistent: None,
            committed: false,
        })
    }

    /// A lab that stays after this process ends, for demos: `pmiplab
    /// deploy`. Its folder is `/run/pmiplab/<name>`.
    pub fn new_persistent(name: &str) -> io::Result<Lab> {
        if name.is_empty() || !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '-') || name.len() > 20 {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("'{name}' is not a lab name: use up to 20 letters, digits and -"),
            ));
        }
        // /run is root's; /run/pmiplab is made root-only if it is new and
        // must be root-only if it is not.
        let parent = Path::new(DEPLOY_DIR);
        match rundir::create_private_dir(parent) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {
                let m = std::fs::symlink_metadata(parent)?;
                use std::os::unix::fs::MetadataExt;
                if !m.is_dir() || m.uid() != nix::unistd::geteuid().as_raw() || m.mode() & 0o022 != 0 {
                    return Err(io::Error::new(
                        io::ErrorKind::PermissionDenied,
                        format!("{DEPLOY_DIR} is not a folder that only this user can write; refusing to use it"),
                    ));
                }
            }
            Err(e) => return Err(e),
        }
        let dir = parent.join(name);
        rundir::create_private_dir(&dir).map_err(|e| {
            if e.kind() == io::ErrorKind::AlreadyExists {
                io::Error::new(e.kind(), format!("a lab named {name} is deployed already; destroy it first"))
            } else {
                e
            }
        })?;
        let mut lab = Lab::with_dir(dir)?;
        lab.persistent = Some(name.to_string());
        Ok(lab)
    }

    /// A deployed lab met again (`pmiplab step`): its pinned namespaces
    /// and running daemons, by node, from its marker. Dropping it leaves
    /// them all as they are.
    pub fn attach(
        name: &str,
        namespaces: &BTreeMap<String, String>,
        daemons: &BTreeMap<String, u32>,
    ) -> io::Result<Lab> {
        let folder = Path::new(DEPLOY_DIR).join(name);
        // This visit's captures go to a folder of their own in the lab's.
        let dir = (1..)
            .map(|n| folder.join(format!("steps-{n}")))
            .find(|d| !d.exists())
            .ok_or_else(|| io::Error::other("no free steps folder"))?;
        rundir::create_private_dir(&dir)?;
        let mut lab = Lab::with_dir(dir)?;
        lab.persistent = Some(name.to_string());
        lab.committed = true;
        for (node, ns_name) in namespaces {
            let ns = NetNs::open_pinned(node, ns_name)?;
            let h = {
                let _g = lab.rt.enter();
                netlink::handle_in(&ns, &lab.rt)?
            };
            lab.namespaces.insert(node.clone(), ns);
            lab.netlink.insert(node.clone(), h);
        }
        for (node, &pid) in daemons {
            let daemon = Daemon {
                child: None,
                pid,
                control: folder.join(format!("{node}.sock")),
                log: folder.join(format!("{node}.log")),
                binary: PathBuf::new(),
                args: Vec::new(),
                iut: None,
            };
            lab.daemons.insert(node.clone(), daemon);
        }
        Ok(lab)
    }

    /// The lab's own folder, where what it was built with is kept: its
    /// working folder, or for a deployed lab met again (whose working
    /// folder is this visit's `steps-<n>`), the deployed lab's.
    pub fn home(&self) -> PathBuf {
        match &self.persistent {
            Some(name) => Path::new(DEPLOY_DIR).join(name),
            None => self.dir.clone(),
        }
    }

    /// Nodes and the `ip netns` names of a persistent lab's namespaces.
    pub fn namespace_names(&self) -> BTreeMap<String, String> {
        match &self.persistent {
            Some(l) => self.namespaces.keys().map(|n| (n.clone(), netns_name(l, n))).collect(),
            None => BTreeMap::new(),
        }
    }

    /// Lets a complete, marked persistent lab outlive this process.
    pub fn commit(mut self) {
        self.committed = true;
    }

    /// Daemon pids by node.
    pub fn daemon_pids(&self) -> BTreeMap<String, u32> {
        self.daemons.iter().map(|(n, d)| (n.clone(), d.pid)).collect()
    }

    fn ns(&self, node: &str) -> io::Result<&NetNs> {
        self.namespaces.get(node).ok_or_else(|| not_found(format!("no node named {node} in the lab")))
    }

    fn nl(&self, node: &str) -> io::Result<&Handle> {
        self.netlink.get(node).ok_or_else(|| not_found(format!("no node named {node} in the lab")))
    }

    /// Runs `f` on a thread inside `node`'s namespace.
    pub fn run_in<T: Send + 'static>(
        &self,
        node: &str,
        f: impl FnOnce() -> io::Result<T> + Send + 'static,
    ) -> io::Result<T> {
        self.ns(node)?.run_in(f)
    }

    /// A node: a namespace with its loopback up.
    pub fn add_node(&mut self, node: &str) -> io::Result<()> {
        let mut ns = NetNs::new(node)?;
        if let Some(lab) = &self.persistent {
            ns.pin(&netns_name(lab, node))?;
        }
        let h = {
            let _g = self.rt.enter();
            netlink::handle_in(&ns, &self.rt)?
        };
        // Addresses are usable at once: no duplicate address detection,
        // link-locals included.
        ns.run_in(|| {
            for conf in ["all", "default"] {
                std::fs::write(format!("/proc/sys/net/ipv6/conf/{conf}/accept_dad"), "0")?;
            }
            Ok(())
        })
        .map_err(|e| io::Error::new(e.kind(), format!("cannot turn off DAD in {node}: {e}")))?;
        self.rt.block_on(netlink::up(&h, "lo"))?;
        self.namespaces.insert(node.into(), ns);
        self.netlink.insert(node.into(), h);
        Ok(())
    }

    pub fn veth(&self, a: &str, a_if: &str, b: &str, b_if: &str) -> io::Result<()> {
        let (na, nb) = (self.ns(a)?, self.ns(b)?);
        self.rt.block_on(netlink::veth(&self.root, na, a_if, mac(a, a_if), nb, b_if, mac(b, b_if)))?;
        self.rt.block_on(netlink::up(self.nl(a)?, a_if))?;
        self.rt.block_on(netlink::up(self.nl(b)?, b_if))?;
        // Captures then hold packets as the wire carries them (see offload).
        for (node, iface) in [(a, a_if), (b, b_if)] {
            let name = iface.to_string();
            self.run_in(node, move || offload::all_off(&name))
                .map_err(|e| io::Error::other(format!("offloads off on {node}:{iface}: {e}")))?;
        }
        Ok(())
    }

    /// A bridge in `node`: a plain Ethernet segment. Frames it forwards
    /// between its ports do not meet `node`'s IP netfilter hooks (the
    /// kernel's bridge-nf calls them by default where br_netfilter is
    /// built in): a switch does not filter, and the LMA's nftables chains
    /// are for what it routes itself, not for MAG-to-MAG frames.
    pub fn bridge(&self, node: &str, name: &str) -> io::Result<()> {
        let h = self.nl(node)?;
        self.rt.block_on(netlink::bridge(h, name))?;
        self.run_in(node, || {
            for family in ["arptables", "iptables", "ip6tables"] {
                let knob = format!("/proc/sys/net/bridge/bridge-nf-call-{family}");
                if std::path::Path::new(&knob).exists() {
                    std::fs::write(&knob, "0")?;
                }
            }
            Ok(())
        })
        .map_err(|e| io::Error::new(e.kind(), format!("turning bridge netfilter off in {node}: {e}")))?;
        self.rt.block_on(netlink::up(h, name))
    }

    pub fn enslave(&self, node: &str, port: &str, bridge: &str) -> io::Result<()> {
        self.rt.block_on(netlink::enslave(self.nl(node)?, port, bridge))
    }

    pub fn address(&self, node: &str, iface: &str, addr: Ipv6Addr, prefix_len: u8) -> io::Result<()> {
        self.rt.block_on(netlink::address(self.nl(node)?, iface, addr, prefix_len))
    }

    /// Sets an interface up or down: for an MN interface, attaching it to
    /// its MAG's access link or taking it away.
    pub fn set_link(&self, node: &str, iface: &str, up: bool) -> io::Result<()> {
        self.rt.block_on(netlink::set_link(self.nl(node)?, iface, up))
    }

    /// A default route through `via` (on-link) in `node`.
    pub fn default_route(&self, node: &str, via: Ipv6Addr) -> io::Result<()> {
        self.rt.block_on(netlink::default_route(self.nl(node)?, via))
    }

    pub fn links(&self, node: &str) -> io::Result<Vec<String>> {
        self.rt.block_on(netlink::links(self.nl(node)?))
    }

    /// The LMA and its MAGs on one core segment: a bridge in the LMA's
    /// namespace, a veth to each MAG, the given addresses on a /64.
    ///
    /// The LMA sends to each MAG straight out of that MAG's port, as the
    /// bridge would forward it: a bridge offers no encapsulation offloads
    /// (`hw_enc_features`), so a tunnelled TCP burst leaving through it is
    /// cut into segments and checksummed in software, which held the
    /// downlink through the kernel datapath to a fifth of plain forwarding.
    /// The MAGs still reach the LMA, and each other, through the bridge.
    pub fn core(&self, lma: (&str, Ipv6Addr), mags: &[(&str, Ipv6Addr)]) -> io::Result<()> {
        self.bridge(lma.0, "core")?;
        self.address(lma.0, "core", lma.1, 64)?;
        for (mag, addr) in mags {
            let port = format!("to-{mag}");
            self.veth(lma.0, &port, mag, "core")?;
            self.enslave(lma.0, &port, "core")?;
            self.address(mag, "core", *addr, 64)?;
            self.rt.block_on(netlink::host_via_port(self.nl(lma.0)?, &port, *addr, mac(mag, "core")))?;
        }
        Ok(())
    }

    /// Starts a daemon inside `node`'s namespace and waits until its
    /// control socket answers.
    pub fn spawn(&mut self, node: &str, binary: &Path, config: &serde_json::Value, args: &[String]) -> io::Result<()> {
        self.start_unready(node, binary, config, args)?;
        self.wait_ready(node)
    }

    /// Starts `node`'s daemon without waiting for it: several daemons
    /// then start side by side, and `wait_ready` waits for each.
    pub fn start_unready(
        &mut self,
        node: &str,
        binary: &Path,
        config: &serde_json::Value,
        args: &[String],
    ) -> io::Result<()> {
        let cfg = self.dir.join(format!("{node}.json"));
        let text = serde_json::to_vec_pretty(config).map_err(io::Error::other)?;
        rundir::create_new_file(&cfg)?.write_all(&text)?;
        let log = rundir::create_new_file(&self.dir.join(format!("{node}.log")))?;
        self.start(node, binary, args, log)
    }

    /// Kills `node`'s daemon with SIGKILL, as a crash would: it keeps no
    /// state and cleans nothing up. `restart` starts it again.
    pub fn kill(&mut self, node: &str) -> io::Result<()> {
        if self.is_iut(node) {
            // A crash of the implementation: SIGKILL, and nothing it started stays.
            if let Some(d) = self.daemons.get_mut(node) {
                let launch = d.iut.as_mut().map(|l| std::mem::replace(&mut l.stop_within, Duration::ZERO));
                let _ = nix::sys::signal::killpg(
                    nix::unistd::Pid::from_raw(d.pid as i32),
                    nix::sys::signal::Signal::SIGKILL,
                );
                self.stop_iut(node)?;
                if let (Some(d), Some(within)) = (self.daemons.get_mut(node), launch) {
                    if let Some(l) = d.iut.as_mut() {
                        l.stop_within = within;
                    }
                }
            }
            return Ok(());
        }
        let d = self.daemons.get_mut(node).ok_or_else(|| not_found(format!("no daemon runs in {node}")))?;
        let c =
            d.child.as_mut().ok_or_else(|| io::Error::other(format!("{node}'s daemon belongs to a deployed lab")))?;
        c.kill()?;
        c.wait()?;
        let _ = std::fs::remove_file(&d.control);
        Ok(())
    }

    /// Starts `node`'s daemon again with the configuration it had, its log
    /// going on in the same file, and waits until it answers.
    pub fn restart(&mut self, node: &str) -> io::Result<()> {
        let d = self.daemons.get_mut(node).ok_or_else(|| not_found(format!("no daemon ran in {node}")))?;
        let c =
            d.child.as_mut().ok_or_else(|| io::Error::other(format!("{node}'s daemon belongs to a deployed lab")))?;
        if c.try_wait()?.is_none() {
            return Err(io::Error::other(format!("the {node} daemon is still running; kill it first")));
        }
        if let Some(launch) = d.iut.clone() {
            self.start_iut(node, launch)?;
            return self.wait_ready(node);
        }
        let (binary, args) = (d.binary.clone(), d.args.clone());
        let log = rundir::open_append(&d.log)?;
        self.start(node, &binary, &args, log)?;
        self.wait_ready(node)
    }

    fn start(&mut self, node: &str, binary: &Path, args: &[String], log: std::fs::File) -> io::Result<()> {
        let ns = self.ns(node)?.path_for_child();
        let cfg = self.dir.join(format!("{node}.json"));
        let control = self.dir.join(format!("{node}.sock"));
        let log_path = self.dir.join(format!("{node}.log"));
        let mut cmd = Command::new(binary);
        cmd.arg("--config").arg(&cfg).arg("--control").arg(&control).args(args);
        // pmip-node joins the namespace and ties its life to ours itself, so
        // no code runs between fork and exec and the spawn is a posix_spawn
        // (a fork of this process, with hundreds of capture threads and
        // their buffers, cost 12 ms a daemon).
        cmd.arg("--netns").arg(&ns);
        if self.persistent.is_some() {
            // A deployed lab's daemons outlive the deploy command.
            cmd.arg("--new-session");
        } else {
            cmd.arg("--die-with").arg(std::process::id().to_string());
        }
        cmd.stdin(Stdio::null()).stdout(Stdio::null()).stderr(log);
        let child = cmd
            .spawn()
            .map_err(|e| io::Error::new(e.kind(), format!("cannot start {} in {node}: {e}", binary.display())))?;
        let pid = child.id();
        let daemon = Daemon {
            child: Some(child),
            pid,
            control: control.clone(),
            log: log_path,
            binary: binary.into(),
            args: args.to_vec(),
            iut: None,
        };
        self.daemons.insert(node.into(), daemon);
        Ok(())
    }

    /// Waits until `node`'s daemon answers on its control socket, at most
    /// 10 s; says why when it exited first.
    pub fn wait_ready(&mut self, node: &str) -> io::Result<()> {
        if self.is_iut(node) {
            return self.wait_iut_ready(node);
        }
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if self.call(node, &pmip_control::Request::Ready).is_ok_and(|r| r.ok) {
                return Ok(());
            }
            if let Some(d) = self.daemons.get_mut(node) {
                if let Some(Ok(Some(status))) = d.child.as_mut().map(Child::try_wait) {
                    let tail = std::fs::read_to_string(&d.log).unwrap_or_default();
                    return Err(io::Error::other(format!(
                        "the {node} daemon exited ({status}) before it was ready:\n{tail}"
                    )));
                }
            }
            if Instant::now() > deadline {
                return Err(io::Error::new(
                    io::ErrorKind::TimedOut,
                    format!("the {node} daemon did not answer on its control socket within 10 s"),
                ));
            }
            std::thread::sleep(Duration::from_millis(2));
        }
    }

    /// Sends one request of the control protocol to a daemon and returns its reply.
    pub fn call(&self, node: &str, req: &pmip_control::Request) -> io::Result<pmip_control::Reply> {
        let v = serde_json::to_value(req).map_err(io::Error::other)?;
        serde_json::from_value(self.request(node, &v)?)
            .map_err(|e| io::Error::other(format!("{node} answered outside the control protocol: {e}")))
    }

    /// Sends one JSON request to a daemon and returns its reply: what a
    /// test uses to send what the protocol does not allow.
    pub fn request(&self, node: &str, req: &serde_json::Value) -> io::Result<serde_json::Value> {
        let d = self.daemons.get(node).ok_or_else(|| not_found(format!("no daemon runs in {node}")))?;
        if d.iut.is_some() {
            return Err(io::Error::new(
                io::ErrorKind::Unsupported,
                format!("{node} is an implementation under test: pmiplab does not talk to it"),
            ));
        }
        let mut s = UnixStream::connect(&d.control)?;
        s.set_read_timeout(Some(Duration::from_secs(5)))?;
        let mut line = serde_json::to_string(req).map_err(io::Error::other)?;
        line.push('\n');
        s.write_all(line.as_bytes())?;
        let mut reply = String::new();
        BufReader::new(s).read_line(&mut reply)?;
        serde_json::from_str(&reply)
            .map_err(|e| io::Error::other(format!("{node} answered something that is not JSON: {e}")))
    }

    /// Polls a daemon's state until `done` holds, for at most `limit`.
    pub fn wait_for(
        &self,
        node: &str,
        limit: Duration,
        done: impl Fn(&serde_json::Value) -> bool,
    ) -> io::Result<serde_json::Value> {
        let deadline = Instant::now() + limit;
        loop {
            let r = self.request(node, &serde_json::json!({"cmd": "state"}))?;
            let state = r["state"].clone();
            if done(&state) {
                return Ok(state);
            }
            if Instant::now() > deadline {
                return Err(io::Error::new(
                    io::ErrorKind::TimedOut,
                    format!("{node} did not reach the expected state within {limit:?}; last state: {state}"),
                ));
            }
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    /// Captures `iface` of `node` with pnet into `<lab dir>/<node>-<iface>.pcapng`.
    pub fn capture(&mut self, node: &str, iface: &str) -> io::Result<PathBuf> {
        self.capture_tapped(node, iface, None)
    }

    /// [`capture`](Lab::capture), handing every signalling frame to `tap`
    /// as it is seen, under the link name `<node>:<iface>`.
    pub fn capture_tapped(
        &mut self,
        node: &str,
        iface: &str,
        tap: Option<pmip_captures::capture::Tap>,
    ) -> io::Result<PathBuf> {
        let fd = self.ns(node)?.fd()?;
        let path = self.dir.join(format!("{node}-{iface}.pcapng"));
        // Made here, new and not through a symlink; the capture then writes it.
        drop(rundir::create_new_file(&path)?);
        let tap = tap.map(|t| (format!("{node}:{iface}"), t));
        let c = pmip_captures::capture::Capture::start_tapped(iface, &path, tap, move || {
            nix::sched::setns(&fd, nix::sched::CloneFlags::CLONE_NEWNET).map_err(io::Error::from)
        })?;
        self.captures.push((format!("{node}:{iface}"), c));
        Ok(path)
    }

    /// [`capture_tapped`](Lab::capture_tapped) for each `(node, iface)` of
    /// `links`, started side by side: each capture waits for its thread to
    /// enter the namespace and open its socket, and one after the other a
    /// lab of hundreds of links waited seconds for that. The captures are
    /// kept in the order given; the first that fails is the error.
    pub fn capture_all(
        &mut self,
        links: &[(String, String)],
        tap: Option<pmip_captures::capture::Tap>,
    ) -> io::Result<()> {
        let mut starts = Vec::new();
        for (node, iface) in links {
            let fd = self.ns(node)?.fd()?;
            let path = self.dir.join(format!("{node}-{iface}.pcapng"));
            drop(rundir::create_new_file(&path)?);
            starts.push((format!("{node}:{iface}"), iface.clone(), path, fd, tap.clone()));
        }
        // A few threads, each starting its share in turn: enough to overlap
        // the waits without a thread per link.
        let per_thread = starts.len().div_ceil(16).max(1);
        let mut shares = Vec::new();
        while !starts.is_empty() {
            let rest = starts.split_off(per_thread.min(starts.len()));
            shares.push(std::mem::replace(&mut starts, rest));
        }
        let started: Vec<io::Result<Vec<(String, pmip_captures::capture::Capture)>>> = std::thread::scope(|scope| {
            let threads: Vec<_> = shares
                .into_iter()
                .map(|share| {
                    scope.spawn(move || {
                        share
                            .into_iter()
                            .map(|(name, iface, path, fd, tap)| {
                                let tap = tap.map(|t| (name.clone(), t));
                                pmip_captures::capture::Capture::start_tapped(&iface, &path, tap, move || {
                                    nix::sched::setns(&fd, nix::sched::CloneFlags::CLONE_NEWNET)
                                        .map_err(io::Error::from)
                                })
                                .map(|c| (name, c))
                            })
                            .collect::<io::Result<Vec<_>>>()
                    })
                })
                .collect();
            threads
                .into_iter()
                .map(|t| t.join().unwrap_or_else(|_| Err(io::Error::other("starting a capture panicked"))))
                .collect()
        });
        // Every capture that started is kept, so that it is stopped with
        // the lab even when another failed.
        let mut first_error = None;
        for share in started {
            match share {
                Ok(c) => self.captures.extend(c),
                Err(e) => {
                    first_error.get_or_insert(e);
                }
            }
        }
        first_error.map_or(Ok(()), Err)
    }

    /// Stops every capture; returns each link's name, file and frame count.
    ///
    /// Each capture's thread reads on until its link has been quiet for one
    /// read timeout after the stop; stopped one after the other, a lab of
    /// hundreds of links waited that long for each in turn (seconds), so
    /// they are stopped side by side.
    pub fn stop_captures(&mut self) -> io::Result<Vec<(String, PathBuf, u64)>> {
        let captures: Vec<_> = self.captures.drain(..).collect();
        let stopped: Vec<io::Result<(String, PathBuf, u64)>> = std::thread::scope(|scope| {
            let stopping: Vec<_> = captures
                .into_iter()
                .map(|(name, mut c)| scope.spawn(move || c.stop().map(|n| (name, c.path.clone(), n))))
                .collect();
            stopping
                .into_iter()
                .map(|t| t.join().unwrap_or_else(|_| Err(io::Error::other("stopping a capture panicked"))))
                .collect()
        });
        stopped.into_iter().collect()
    }

    /// Every process the lab owns: namespace holders and daemons.
    pub fn pids(&self) -> Vec<u32> {
        self.namespaces.values().filter_map(|n| n.holder_pid()).chain(self.daemons.values().map(|d| d.pid)).collect()
    }

    pub fn daemon_log(&self, node: &str) -> String {
        self.daemons.get(node).and_then(|d| std::fs::read_to_string(&d.log).ok()).unwrap_or_default()
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        let _ = self.stop_captures();
        if self.persistent.is_some() && self.committed {
            // Pinned namespaces and detached daemons stay: `pmiplab destroy`.
            return;
        }
        // A deploy that failed half-way leaves nothing either.
        for ns in self.namespace_names().values() {
            let _ = netns::unpin(ns);
        }
        // Implementations under test are asked to stop first, and nothing
        // they started stays in their namespaces.
        for (node, r) in self.stop_iuts() {
            if let Err(e) = r {
                tracing::warn!("stopping {node}'s implementation: {e}");
            }
        }
        // All killed first, then all waited for: a daemon's exit tears down
        // its TUN device, which costs the kernel tens of milliseconds, and
        // one at a time that cost was most of a lab's teardown.
        for c in self.daemons.values_mut().filter_map(|d| d.child.as_mut()) {
            let _ = c.kill();
        }
        for c in self.daemons.values_mut().filter_map(|d| d.child.as_mut()) {
            let _ = c.wait();
        }
        self.netlink.clear();
        // Every holder is told to go before any is waited for, as the
        // daemons are: each exit takes the kernel a while, and one after
        // the other that was most of a large lab's teardown.
        for pid in self.namespaces.values().filter_map(|n| n.holder_pid()) {
            let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid as i32), nix::sys::signal::Signal::SIGKILL);
        }
        self.namespaces.clear();
        if let Err(e) = rundir::remove_run_dir(&self.dir) {
            tracing::warn!("{e}");
        }
    }
}
