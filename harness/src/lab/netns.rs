//! Network namespaces held by the run: each is kept alive by a small child
//! process that dies with the thread that made it (PR_SET_PDEATHSIG), so a
//! killed harness leaves no namespace behind and nothing is bind-mounted.

use std::fs::File;
use std::io;
use std::os::fd::{AsFd, AsRawFd, OwnedFd};

use nix::sys::signal::{kill, Signal};
use nix::sys::wait::waitpid;
use nix::unistd::{fork, pipe, ForkResult, Pid};

pub struct NetNs {
    pub name: String,
    /// The holder process; none for a deployed lab's namespace opened
    /// from its pin, which the pin keeps alive.
    pid: Option<Pid>,
    fd: File,
    /// Where the namespace is bind-mounted for `ip netns`, when it persists.
    pinned: Option<std::path::PathBuf>,
}

/// Where `ip netns` looks for named namespaces.
pub const NETNS_DIR: &str = "/run/netns";

impl NetNs {
    /// Starts a holder process in a new network namespace.
    pub fn new(name: &str) -> io::Result<NetNs> {
        let parent = nix::unistd::getpid();
        let (r, w) = pipe().map_err(io::Error::from)?;
        // SAFETY: the child only makes async-signal-safe calls (prctl,
        // getppid, unshare, write, pause, _exit) before it dies.
        match unsafe { fork() }.map_err(io::Error::from)? {
            ForkResult::Child => unsafe {
                libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
                if libc::getppid() != parent.as_raw() {
                    libc::_exit(1);
                }
                let status: u8 = if libc::unshare(libc::CLONE_NEWNET) == 0 { 0 } else { 1 };
                libc::write(w.as_raw_fd(), &status as *const u8 as *const libc::c_void, 1);
                loop {
                    libc::pause();
                }
            },
            ForkResult::Parent { child } => {
                drop(w);
                let mut status = [1u8];
                let n = nix::unistd::read(r.as_fd(), &mut status).map_err(io::Error::from)?;
                if n != 1 || status[0] != 0 {
                    let _ = kill(child, Signal::SIGKILL);
                    let _ = waitpid(child, None);
                    return Err(io::Error::new(
                        io::ErrorKind::PermissionDenied,
                        format!("cannot create network namespace {name}: unshare(CLONE_NEWNET) failed (pmiplab needs root or CAP_SYS_ADMIN)"),
                    ));
                }
                let fd = File::open(format!("/proc/{}/ns/net", child))?;
                Ok(NetNs { name: name.into(), pid: Some(child), fd, pinned: None })
            }
        }
    }

    /// A deployed lab's namespace, opened from its pin in `/run/netns`.
    pub fn open_pinned(name: &str, ns_name: &str) -> io::Result<NetNs> {
        let path = std::path::Path::new(NETNS_DIR).join(ns_name);
        let fd = File::open(&path).map_err(|e| io::Error::new(e.kind(), format!("{}: {e}", path.display())))?;
        Ok(NetNs { name: name.into(), pid: None, fd, pinned: None })
    }

    /// Bind-mounts the namespace at `/run/netns/<ns_name>` so that it
    /// outlives this process and `ip netns exec <ns_name>` can enter it.
    pub fn pin(&mut self, ns_name: &str) -> io::Result<()> {
        std::fs::create_dir_all(NETNS_DIR)?;
        let path = std::path::Path::new(NETNS_DIR).join(ns_name);
        if path.exists() {
            return Err(io::Error::new(io::ErrorKind::AlreadyExists, format!("{} exists already", path.display())));
        }
        File::create(&path)?;
        let pid = self.pid.ok_or_else(|| io::Error::other(format!("{ns_name} is pinned already")))?;
        let src = format!("/proc/{pid}/ns/net");
        nix::mount::mount(Some(src.as_str()), &path, None::<&str>, nix::mount::MsFlags::MS_BIND, None::<&str>)
            .map_err(|e| {
                let _ = std::fs::remove_file(&path);
                io::Error::other(format!("cannot bind-mount namespace {ns_name}: {e}"))
            })?;
        self.pinned = Some(path);
        Ok(())
    }

    pub fn holder_pid(&self) -> Option<u32> {
        self.pid.map(|p| p.as_raw() as u32)
    }

    /// A path another process opens to join this namespace while this one
    /// lives: this process's descriptor of it, through /proc.
    pub fn path_for_child(&self) -> std::path::PathBuf {
        std::path::PathBuf::from(format!("/proc/{}/fd/{}", std::process::id(), self.fd.as_raw_fd()))
    }

    pub fn raw_fd(&self) -> i32 {
        self.fd.as_raw_fd()
    }

    /// A descriptor of the namespace for another thread or process.
    pub fn fd(&self) -> io::Result<OwnedFd> {
        let dup = nix::unistd::dup(self.fd.as_fd()).map_err(io::Error::from)?;
        Ok(dup)
    }

    /// Runs `f` on a thread inside this namespace; sockets it opens stay there.
    pub fn run_in<T: Send + 'static>(&self, f: impl FnOnce() -> io::Result<T> + Send + 'static) -> io::Result<T> {
        let fd = self.fd()?;
        let name = self.name.clone();
        std::thread::spawn(move || {
            nix::sched::setns(&fd, nix::sched::CloneFlags::CLONE_NEWNET)
                .map_err(|e| io::Error::other(format!("cannot enter namespace {name}: {e}")))?;
            f()
        })
        .join()
        .map_err(|_| io::Error::other("a namespace thread panicked"))?
    }
}

impl Drop for NetNs {
    fn drop(&mut self) {
        if let Some(pid) = self.pid {
            let _ = kill(pid, Signal::SIGKILL);
            let _ = waitpid(pid, None);
        }
    }
}

/// Removes a pinned namespace: unmounts and deletes `/run/netns/<ns_name>`.
pub fn unpin(ns_name: &str) -> io::Result<()> {
    let path = std::path::Path::new(NETNS_DIR).join(ns_name);
    nix::mount::umount2(&path, nix::mount::MntFlags::MNT_DETACH)
        .map_err(|e| io::Error::other(format!("cannot unmount {}: {e}", path.display())))?;
    std::fs::remove_file(&path)
}
