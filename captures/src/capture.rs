//! Capture threads: one per link end, inside its namespace (the caller
//! enters it), reading frames with pnet and writing them to pcapng.
//!
//! Each frame carries the kernel's receive timestamp, not the time the
//! thread got round to reading it: several capture threads share two cores,
//! and the merged message sequence of all links is ordered by these stamps.

use std::fs::File;
use std::io::{self, BufWriter};
use std::os::fd::{IntoRawFd, RawFd};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use nix::sys::socket::{self, AddressFamily, SockFlag, SockProtocol, SockType};

use pnet_datalink::{Channel, Config};

use crate::pcapng::{Writer, LINKTYPE_ETHERNET};

/// A signalling frame seen on a link, as it was seen: handed on live
/// while the capture goes on, so that checks read the wire during the run.
#[derive(Debug, Clone)]
pub struct Sighting {
    /// The link's name, as the caller gave it.
    pub link: String,
    /// The kernel's receive time, microseconds since the epoch.
    pub ts_us: u64,
    pub frame: Vec<u8>,
}

/// Where a capture hands its signalling frames (Mobility Header, Router
/// Solicitation and Advertisement); data frames only go to the file.
pub type Tap = std::sync::mpsc::Sender<Sighting>;

/// Whether an Ethernet frame carries signalling a run observes: a Mobility
/// Header, in the clear or in ESP (which a lab uses for nothing else), or
/// an ICMPv6 Router Solicitation or Advertisement.
pub fn is_signalling(frame: &[u8]) -> bool {
    if frame.len() < 55 || frame[12..14] != [0x86, 0xdd] {
        return false;
    }
    match frame[20] {
        135 | 50 => true,
        58 => matches!(frame[54], 133 | 134),
        _ => false,
    }
}

pub struct Capture {
    pub path: PathBuf,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<io::Result<u64>>>,
}

impl Capture {
    /// Starts capturing `iface`, which must be visible to the calling
    /// thread (its namespace). `enter` runs first on the capture thread,
    /// e.g. to join the namespace.
    pub fn start(
        iface: &str,
        path: &Path,
        enter: impl FnOnce() -> io::Result<()> + Send + 'static,
    ) -> io::Result<Capture> {
        Capture::start_tapped(iface, path, None, enter)
    }

    /// [`start`](Capture::start), also handing every signalling frame to
    /// `tap` under the link name `link`.
    pub fn start_tapped(
        iface: &str,
        path: &Path,
        tap: Option<(String, Tap)>,
        enter: impl FnOnce() -> io::Result<()> + Send + 'static,
    ) -> io::Result<Capture> {
        let stop = Arc::new(AtomicBool::new(false));
        let (ready_tx, ready_rx) = std::sync::mpsc::channel::<io::Result<()>>();
        let (name, file, flag) = (iface.to_string(), path.to_path_buf(), stop.clone());
        let thread = std::thread::spawn(move || -> io::Result<u64> {
            let opened = (|| {
                enter()?;
                let nic = pnet_datalink::interfaces().into_iter().find(|i| i.name == name).ok_or_else(|| {
                    io::Error::new(io::ErrorKind::NotFound, format!("no interface {name} to capture"))
                })?;
                let fd = timestamped_packet_socket()?;
                let config =
                    Config { read_timeout: Some(Duration::from_millis(20)), socket_fd: Some(fd), ..Default::default() };
                let rx = match pnet_datalink::channel(&nic, config)? {
                    Channel::Ethernet(_, rx) => rx,
                    _ => return Err(io::Error::other(format!("{name}: not an Ethernet channel"))),
                };
                let w = Writer::new(BufWriter::new(File::create(&file)?), &[(&name, LINKTYPE_ETHERNET)])?;
                Ok((rx, w, fd))
            })();
            let (mut rx, mut w, fd) = match opened {
                Ok(x) => {
                    let _ = ready_tx.send(Ok(()));
                    x
                }
                Err(e) => {
                    let _ = ready_tx.send(Err(io::Error::new(e.kind(), e.to_string())));
                    return Err(e);
                }
            };
            let mut n = 0u64;
            // After the stop, what the kernel had already queued is still
            // read, until the link is quiet for one read timeout (at most
            // half a second): a frame seen just before the stop is kept.
            let mut drain_until = None;
            loop {
                let stopping = flag.load(Ordering::Relaxed);
                if stopping && drain_until.is_none() {
                    drain_until = Some(std::time::Instant::now() + Duration::from_millis(500));
                }
                if drain_until.is_some_and(|t| std::time::Instant::now() > t) {
                    break;
                }
                match rx.next() {
                    Ok(frame) => {
                        let ts = receive_time_us(fd);
                        w.packet(0, ts, frame)?;
                        n += 1;
                        if let Some((link, tap)) = tap.as_ref().filter(|_| is_signalling(frame)) {
                            // A run that stopped listening only loses the live copy.
                            let _ = tap.send(Sighting { link: link.clone(), ts_us: ts, frame: frame.to_vec() });
                        }
                    }
                    Err(e) if e.kind() == io::ErrorKind::TimedOut || e.kind() == io::ErrorKind::WouldBlock => {
                        if stopping {
                            break;
                        }
                    }
                    Err(e) => return Err(e),
                }
            }
            w.flush()?;
            Ok(n)
        });
        ready_rx.recv().map_err(|_| io::Error::other("the capture thread died"))??;
        Ok(Capture { path: path.to_path_buf(), stop, thread: Some(thread) })
    }

    /// Stops the capture and returns how many frames it wrote.
    pub fn stop(&mut self) -> io::Result<u64> {
        self.stop.store(true, Ordering::Relaxed);
        match self.thread.take() {
            Some(t) => t.join().map_err(|_| io::Error::other("the capture thread panicked"))?,
            None => Ok(0),
        }
    }
}

impl Drop for Capture {
    fn drop(&mut self) {
        let _ = self.stop();
    }
}

nix::ioctl_read_bad!(last_receive_time, SIOCGSTAMPNS, libc::timespec);

/// SIOCGSTAMPNS_OLD from <asm-generic/sockios.h>: on 64-bit Linux its
/// `timespec` is already two 64-bit fields.
const SIOCGSTAMPNS: libc::c_ulong = 0x8907;

/// An AF_PACKET socket for every protocol with kernel receive timestamps on.
/// Its descriptor goes to pnet, which owns and closes it.
fn timestamped_packet_socket() -> io::Result<RawFd> {
    let fd = socket::socket(AddressFamily::Packet, SockType::Raw, SockFlag::SOCK_CLOEXEC, SockProtocol::EthAll)?
        .into_raw_fd();
    // The first SIOCGSTAMPNS turns stamping on, kept per read in the socket
    // for the next SIOCGSTAMPNS. It fails with ENOENT (nothing read yet), which
    // is expected. SO_TIMESTAMPNS would not do: it sends the stamp as a control
    // message, which pnet's recvfrom drops.
    let mut t = libc::timespec { tv_sec: 0, tv_nsec: 0 };
    // SAFETY: `fd` was just opened and is owned here; `t` is a valid timespec.
    let _ = unsafe { last_receive_time(fd, &mut t) };
    Ok(fd)
}

/// When the kernel received the frame just read from `fd`, in microseconds
/// since the epoch; the wall clock if the kernel cannot say.
fn receive_time_us(fd: RawFd) -> u64 {
    let mut t = libc::timespec { tv_sec: 0, tv_nsec: 0 };
    // SAFETY: `fd` is the capture's open packet socket, owned by the pnet
    // receiver that outlives this call; `t` is a valid timespec to fill.
    if unsafe { last_receive_time(fd, &mut t) }.is_ok() && t.tv_sec > 0 {
        return t.tv_sec as u64 * 1_000_000 + t.tv_nsec as u64 / 1_000;
    }
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_micros() as u64).unwrap_or(0)
}
