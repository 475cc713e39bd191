//! `pmiplab bench signalling`: PBU → PBA over the real stack. A load
//! generator in a MAG's namespace sends the PBUs of many MNs through a raw
//! Mobility Header socket and counts the PBAs; first against a trivial
//! responder that answers every PBU with a canned PBA (the floor the
//! sockets and the two cores set), then against the LMA daemon, in the
//! same run. The LMA runs without a data plane: the figure is its
//! signalling.

use std::net::Ipv6Addr;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant as WallClock, SystemTime, UNIX_EPOCH};

use pmip_proto::lma::MnPolicy;
use pmip_proto::load::{self, pbu, prefix_of, LMA, MAG};
use pmip_proto::{Instant, Span};
use pmip_wire::{Endpoints, HandoffIndicator, Message, MobilityOption, Pba, PbaStatus, Timestamp, WireConfig};

use super::{set_buffer, Figure};

/// The placeholder timestamp written into the pre-built PBUs; the
/// generator overwrites it with the wall clock as it sends each one, since
/// the LMA accepts a timestamp only within 300 ms of its own clock.
const PLACEHOLDER: u64 = 0x5a5a_0123_4567_a5a5;
/// At most this many PBUs wait for their PBA at any time.
const WINDOW: usize = 256;
/// Messages per sendmmsg/recvmmsg call.
const BATCH: usize = 32;
/// A phase ends when no PBA came for this long.
const QUIET: Duration = Duration::from_secs(2);

/// What one phase of the generator saw.
struct Phase {
    sent: usize,
    answered: usize,
    accepted: usize,
    elapsed: Duration,
    /// The longest time without an answer while the phase ran: what a
    /// stall of the LMA's signalling loop shows as.
    longest_silence: Duration,
}

impl Phase {
    fn rate(&self) -> f64 {
        self.answered as f64 / self.elapsed.as_secs_f64().max(1e-9)
    }
    fn describe(&self) -> String {
        format!(
            "{:.0} /s, {} of {} answered ({:.1}%), {} accepted",
            self.rate(),
            self.answered,
            self.sent,
            100.0 * self.answered as f64 / self.sent.max(1) as f64,
            self.accepted
        )
    }
}

/// A PBU ready to send, and where its timestamp sits in it.
struct Prepared {
    bytes: Vec<u8>,
    ts_at: usize,
}

fn prepare(mns: u32, seq: u16, hi: HandoffIndicator, with_prefix: bool) -> Result<Vec<Prepared>, String> {
    let ends = Endpoints { src: MAG, dst: LMA };
    let wire = WireConfig::default();
    let needle = PLACEHOLDER.to_be_bytes();
    (0..mns)
        .map(|i| {
            let mut m = pbu(i, seq, Instant::ZERO, hi, with_prefix.then(|| prefix_of(i)));
            if let Message::Pbu(p) = &mut m {
                for o in &mut p.options {
                    if let MobilityOption::Timestamp(t) = o {
                        *t = Timestamp(PLACEHOLDER);
                    }
                }
            }
            let bytes = m.to_bytes(&ends, &wire).map_err(|e| e.to_string())?;
            let ts_at = bytes
                .windows(needle.len())
                .position(|w| w == needle)
                .ok_or_else(|| "the PBU's timestamp is not where the codec put it".to_string())?;
            Ok(Prepared { bytes, ts_at })
        })
        .collect()
}

/// A raw Mobility Header socket bound to `local`; the kernel computes and
/// checks the checksum at offset 4 (RFC 3542 §3.1).
fn mh_socket(local: Ipv6Addr) -> std::io::Result<OwnedFd> {
    // SAFETY: socket(2) with constant arguments; the descriptor is owned at once.
    let fd = unsafe { libc::socket(libc::AF_INET6, libc::SOCK_RAW | libc::SOCK_NONBLOCK, 135) };
    if fd < 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: `fd` is a fresh descriptor nothing else owns.
    let fd = unsafe { OwnedFd::from_raw_fd(fd) };
    let offset: libc::c_int = 4;
    // SAFETY: setsockopt with an int of the stated size on our descriptor.
    let rc = unsafe {
        libc::setsockopt(
            fd.as_raw_fd(),
            libc::IPPROTO_IPV6,
            libc::IPV6_CHECKSUM,
            &offset as *const libc::c_int as *const libc::c_void,
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    if rc != 0 {
        return Err(std::io::Error::last_os_error());
    }
    set_buffer(&fd, libc::SO_RCVBUF, 8 << 20);
    set_buffer(&fd, libc::SO_SNDBUF, 8 << 20);
    let addr = sockaddr(local);
    // SAFETY: bind with a sockaddr_in6 of the stated size.
    let rc = unsafe {
        libc::bind(
            fd.as_raw_fd(),
            &addr as *const libc::sockaddr_in6 as *const libc::sockaddr,
            std::mem::size_of::<libc::sockaddr_in6>() as libc::socklen_t,
        )
    };
    if rc != 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(fd)
}

fn sockaddr(a: Ipv6Addr) -> libc::sockaddr_in6 {
    // SAFETY: sockaddr_in6 is plain data; zero is a valid value of each field.
    let mut s: libc::sockaddr_in6 = unsafe { std::mem::zeroed() };
    s.sin6_family = libc::AF_INET6 as libc::sa_family_t;
    s.sin6_addr.s6_addr = a.octets();
    s
}

/// Sends `msgs` to `dst` in one sendmmsg call; returns how many went.
fn send_batch(fd: &OwnedFd, msgs: &[&[u8]], dst: Ipv6Addr) -> std::io::Result<usize> {
    let mut addr = sockaddr(dst);
    let mut iovs: Vec<libc::iovec> =
        msgs.iter().map(|m| libc::iovec { iov_base: m.as_ptr() as *mut libc::c_void, iov_len: m.len() }).collect();
    let mut hdrs: Vec<libc::mmsghdr> = iovs
        .iter_mut()
        .map(|iov| {
            // SAFETY: mmsghdr is plain data; the pointers set below outlive the call.
            let mut h: libc::mmsghdr = unsafe { std::mem::zeroed() };
            h.msg_hdr.msg_name = &mut addr as *mut libc::sockaddr_in6 as *mut libc::c_void;
            h.msg_hdr.msg_namelen = std::mem::size_of::<libc::sockaddr_in6>() as libc::socklen_t;
            h.msg_hdr.msg_iov = iov;
            h.msg_hdr.msg_iovlen = 1;
            h
        })
        .collect();
    // SAFETY: every header points at a live iovec and address for the call.
    let n = unsafe { libc::sendmmsg(fd.as_raw_fd(), hdrs.as_mut_ptr(), hdrs.len() as libc::c_uint, 0) };
    if n < 0 {
        let e = std::io::Error::last_os_error();
        return if e.kind() == std::io::ErrorKind::WouldBlock { Ok(0) } else { Err(e) };
    }
    Ok(n as usize)
}

/// Receives what is queued (at most `bufs.len()` datagrams) without
/// waiting; returns the datagrams' lengths and senders.
fn recv_batch(fd: &OwnedFd, bufs: &mut [[u8; 512]], got: &mut Vec<(usize, Ipv6Addr)>) -> std::io::Result<()> {
    got.clear();
    // SAFETY: plain data, zero-initialised.
    let mut addrs: Vec<libc::sockaddr_in6> = vec![unsafe { std::mem::zeroed() }; bufs.len()];
    let mut iovs: Vec<libc::iovec> = bufs
        .iter_mut()
        .map(|b| libc::iovec { iov_base: b.as_mut_ptr() as *mut libc::c_void, iov_len: b.len() })
        .collect();
    let mut hdrs: Vec<libc::mmsghdr> = iovs
        .iter_mut()
        .zip(addrs.iter_mut())
        .map(|(iov, a)| {
            // SAFETY: as above; the pointers outlive the call.
            let mut h: libc::mmsghdr = unsafe { std::mem::zeroed() };
            h.msg_hdr.msg_name = a as *mut libc::sockaddr_in6 as *mut libc::c_void;
            h.msg_hdr.msg_namelen = std::mem::size_of::<libc::sockaddr_in6>() as libc::socklen_t;
            h.msg_hdr.msg_iov = iov;
            h.msg_hdr.msg_iovlen = 1;
            h
        })
        .collect();
    // SAFETY: every header points at a live buffer and address for the call.
    let n = unsafe {
        libc::recvmmsg(
            fd.as_raw_fd(),
            hdrs.as_mut_ptr(),
            hdrs.len() as libc::c_uint,
            libc::MSG_DONTWAIT,
            std::ptr::null_mut(),
        )
    };
    if n < 0 {
        let e = std::io::Error::last_os_error();
        return if e.kind() == std::io::ErrorKind::WouldBlock { Ok(()) } else { Err(e) };
    }
    for (h, a) in hdrs.iter().zip(addrs.iter()).take(n as usize) {
        got.push((h.msg_len as usize, Ipv6Addr::from(a.sin6_addr.s6_addr)));
    }
    Ok(())
}

/// Waits until `fd` is readable or `ms` passed.
fn wait_readable(fd: &OwnedFd, ms: i32) {
    let mut p = libc::pollfd { fd: fd.as_raw_fd(), events: libc::POLLIN, revents: 0 };
    // SAFETY: one valid pollfd.
    unsafe { libc::poll(&mut p, 1, ms) };
}

fn unix_nanos() -> u128 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_nanos()).unwrap_or(0)
}

/// Sends every PBU with at most `WINDOW` unanswered, stamping each as it
/// goes, and counts the PBAs (MH type 6; status below 128 is accepted).
fn drive(fd: &OwnedFd, pbus: &mut [Prepared]) -> std::io::Result<Phase> {
    drive_counting(fd, pbus, &AtomicUsize::new(0))
}

/// [`drive`], publishing the count of answers as they come.
fn drive_counting(fd: &OwnedFd, pbus: &mut [Prepared], progress: &AtomicUsize) -> std::io::Result<Phase> {
    let mut bufs = vec![[0u8; 512]; BATCH];
    let mut got = Vec::with_capacity(BATCH);
    let (mut next, mut answered, mut accepted) = (0usize, 0usize, 0usize);
    let started = WallClock::now();
    let mut last_answer = started;
    let mut finished = started;
    let mut longest_silence = Duration::ZERO;
    while answered < pbus.len() {
        let in_flight = next - answered.min(next);
        if next < pbus.len() && in_flight < WINDOW {
            let end = (next + BATCH.min(WINDOW - in_flight)).min(pbus.len());
            let ts = Timestamp::from_unix_nanos(unix_nanos()).0.to_be_bytes();
            for p in &mut pbus[next..end] {
                p.bytes[p.ts_at..p.ts_at + 8].copy_from_slice(&ts);
            }
            let batch: Vec<&[u8]> = pbus[next..end].iter().map(|p| p.bytes.as_slice()).collect();
            next += send_batch(fd, &batch, LMA)?;
        }
        recv_batch(fd, &mut bufs, &mut got)?;
        for (i, (len, src)) in got.iter().enumerate() {
            let b = &bufs[i][..*len];
            if *src == LMA && b.len() > 6 && b[2] == 6 {
                answered += 1;
                accepted += usize::from(b[6] < 128);
            }
        }
        progress.store(answered, Ordering::Relaxed);
        let now = WallClock::now();
        if !got.is_empty() {
            longest_silence = longest_silence.max(now.duration_since(last_answer));
            last_answer = now;
            finished = now;
        } else if now.duration_since(last_answer) > QUIET {
            break;
        } else if next >= pbus.len() || next - answered.min(next) >= WINDOW {
            wait_readable(fd, 1);
        }
    }
    Ok(Phase { sent: next, answered, accepted, elapsed: finished.duration_since(started), longest_silence })
}

/// The baseline: answers each PBU at once with the same canned PBA, no
/// parsing, no state, until `stop`.
fn responder(fd: OwnedFd, stop: Arc<AtomicBool>) -> std::io::Result<(u64, Duration)> {
    let pba = Message::Pba(Pba {
        status: PbaStatus::Accepted,
        flags: pmip_wire::PbaFlags { p: true, ..Default::default() },
        sequence: 1,
        lifetime: 100,
        options: match pbu(7, 1, Instant::ZERO + Span::from_secs(1), HandoffIndicator::NotChanged, Some(prefix_of(7))) {
            Message::Pbu(p) => p.options,
            _ => Vec::new(),
        },
    })
    .to_bytes(&Endpoints { src: LMA, dst: MAG }, &WireConfig::default())
    .map_err(std::io::Error::other)?;
    let mut bufs = vec![[0u8; 512]; BATCH];
    let mut got = Vec::with_capacity(BATCH);
    let mut answered = 0u64;
    while !stop.load(Ordering::Relaxed) {
        recv_batch(&fd, &mut bufs, &mut got)?;
        if got.is_empty() {
            wait_readable(&fd, 50);
            continue;
        }
        let replies: Vec<&[u8]> = got.iter().map(|_| pba.as_slice()).collect();
        let mut sent = 0;
        while sent < replies.len() {
            let n = send_batch(&fd, &replies[sent..], MAG)?;
            if n == 0 {
                wait_writable(&fd);
            }
            sent += n;
        }
        answered += got.len() as u64;
    }
    Ok((answered, thread_cpu()))
}

/// CPU time (user and system) the calling thread has used.
fn thread_cpu() -> Duration {
    // SAFETY: getrusage fills the zeroed struct it is given.
    let mut u: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: as above.
    unsafe { libc::getrusage(libc::RUSAGE_THREAD, &mut u) };
    let tv = |t: libc::timeval| Duration::from_secs(t.tv_sec as u64) + Duration::from_micros(t.tv_usec as u64);
    tv(u.ru_utime) + tv(u.ru_stime)
}

/// CPU time (user and system) a process has used, from /proc.
fn process_cpu(pid: u32) -> Option<Duration> {
    let s = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // Fields after the command name, which may hold spaces, in parentheses.
    let rest = &s[s.rfind(')')? + 2..];
    let f: Vec<&str> = rest.split(' ').collect();
    let ticks = f.get(11)?.parse::<u64>().ok()? + f.get(12)?.parse::<u64>().ok()?;
    // SAFETY: sysconf with a constant name.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as u64;
    Some(Duration::from_micros(ticks * 1_000_000 / hz))
}

fn per_pbu(cpu: Option<Duration>, answered: usize) -> String {
    match cpu {
        Some(c) if answered > 0 => format!("{:.1} µs CPU per PBU", c.as_secs_f64() * 1e6 / answered as f64),
        _ => "CPU per PBU unknown".into(),
    }
}

fn wait_writable(fd: &OwnedFd) {
    let mut p = libc::pollfd { fd: fd.as_raw_fd(), events: libc::POLLOUT, revents: 0 };
    // SAFETY: one valid pollfd.
    unsafe { libc::poll(&mut p, 1, 10) };
}

/// Resident memory of a process in kB, from /proc.
fn rss_kb(pid: u32) -> Option<u64> {
    let s = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    s.lines().find_map(|l| l.strip_prefix("VmRSS:")).and_then(|v| v.trim().trim_end_matches(" kB").trim().parse().ok())
}

/// `mns` MNs registered (HI 1, prefix assigned by the LMA) and then
/// re-registered (HI 4 with their prefix, `mns` bindings in place), timed
/// at the generator; the same PBUs against the trivial responder first.
pub fn signalling(node_bin: &Path, mns: u32) -> Result<Vec<Figure>, String> {
    let e = |x: std::io::Error| x.to_string();
    let mut lab = crate::lab::Lab::new().map_err(e)?;
    for n in ["lma", "mag1"] {
        lab.add_node(n).map_err(e)?;
    }
    lab.veth("lma", "core", "mag1", "core").map_err(e)?;
    lab.address("lma", "core", LMA, 64).map_err(e)?;
    lab.address("mag1", "core", MAG, 64).map_err(e)?;

    // Sockets opened inside the namespaces stay there; the threads that
    // use them need not. Baseline first, with nothing else bound to the
    // LMA's address: every raw socket gets its own copy of each datagram.
    let gen = lab.run_in("mag1", || mh_socket(MAG)).map_err(e)?;
    let echo_fd = lab.run_in("lma", || mh_socket(LMA)).map_err(e)?;
    let stop = Arc::new(AtomicBool::new(false));
    let responder = {
        let stop = stop.clone();
        std::thread::spawn(move || responder(echo_fd, stop))
    };
    let mut pbus = prepare(mns, 1, HandoffIndicator::NewInterface, false)?;
    let echo = drive(&gen, &mut pbus);
    stop.store(true, Ordering::Relaxed);
    let (_, echo_cpu) = responder.join().map_err(|_| "the responder panicked".to_string())?.map_err(e)?;
    let echo = echo.map_err(e)?;

    let policies: Vec<MnPolicy> = (0..mns).map(load::policy).collect();
    let config = serde_json::json!({"role": "lma", "config": load::lma_config(), "policies": policies});
    lab.spawn("lma", node_bin, &config, &[]).map_err(e)?;
    let pid = lab.daemon_pids().get("lma").copied().ok_or("the LMA daemon has no pid")?;
    let rss_before = rss_kb(pid);
    let cpu_ready = process_cpu(pid);
    let register = drive(&gen, &mut pbus).map_err(e)?;
    let cpu_registered = process_cpu(pid);
    let mut refresh = prepare(mns, 2, HandoffIndicator::NotChanged, true)?;
    let refresh = drive(&gen, &mut refresh).map_err(e)?;
    let cpu_refreshed = process_cpu(pid);
    let rss_after = rss_kb(pid);
    let read = state_read_under_load(&lab, &gen, mns)?;
    let spent = |a: Option<Duration>, b: Option<Duration>| Some(b?.saturating_sub(a?));
    if register.accepted < mns as usize {
        return Err(format!(
            "the LMA accepted {} of {mns} registrations ({}); see its log",
            register.accepted,
            register.describe()
        ));
    }
    let kb = |v: Option<u64>| v.map(|k| format!("{:.1} MB", k as f64 / 1024.0)).unwrap_or_else(|| "?".into());
    let echo_per = per_pbu(Some(echo_cpu), echo.answered);
    Ok(vec![
        Figure::new(
            &format!("PBU→PBA over the real stack, LMA daemon, {mns} MNs registering (window {WINDOW})"),
            register.describe(),
            format!("canned-PBA responder: {}", echo.describe()),
            "—",
        ),
        Figure::new(
            &format!("PBU→PBA over the real stack, LMA daemon, re-registration with {mns} bindings"),
            refresh.describe(),
            format!("canned-PBA responder: {:.0} /s", echo.rate()),
            "≥ 100,000 /s, ≥ 99% answered",
        ),
        Figure::new(
            "LMA daemon CPU per PBU (registration; re-registration), what a loaded machine cannot hide",
            format!(
                "{}; {}",
                per_pbu(spent(cpu_ready, cpu_registered), register.answered),
                per_pbu(spent(cpu_registered, cpu_refreshed), refresh.answered)
            ),
            format!("canned-PBA responder: {echo_per}"),
            "≤ 10 µs (100,000 /s on one core)",
        ),
        Figure::new(
            &format!("a state read of the LMA daemon with {mns} bindings, during a third re-registration"),
            read,
            format!(
                "the same load without a read: {:.0} /s, longest silence {:.1} ms",
                refresh.rate(),
                refresh.longest_silence.as_secs_f64() * 1e3
            ),
            "a state read never stalls signalling",
        ),
        Figure::new(
            "LMA daemon resident memory",
            format!("{} after both phases", kb(rss_after)),
            format!("{} when ready, with {mns} policies", kb(rss_before)),
            "flat",
        ),
    ])
}

/// A third re-registration of every binding, with a state read sent to
/// the LMA once a quarter of it is answered: how long the read took and
/// how many PBAs came back meanwhile (none, if the read holds up the
/// signalling loop).
fn state_read_under_load(lab: &crate::lab::Lab, gen: &OwnedFd, mns: u32) -> Result<String, String> {
    let mut pbus = prepare(mns, 3, HandoffIndicator::NotChanged, true)?;
    let progress = AtomicUsize::new(0);
    std::thread::scope(|s| {
        let load = s.spawn(|| drive_counting(gen, &mut pbus, &progress));
        let started = WallClock::now();
        while progress.load(Ordering::Relaxed) < mns as usize / 4 {
            if load.is_finished() || started.elapsed() > Duration::from_secs(60) {
                return Err("the load ended before a quarter of it was answered".to_string());
            }
            std::thread::sleep(Duration::from_millis(1));
        }
        let before = progress.load(Ordering::Relaxed);
        let asked = WallClock::now();
        let state =
            lab.request("lma", &serde_json::json!({"cmd": "state"})).map_err(|e| format!("the state read: {e}"))?;
        let took = asked.elapsed();
        let meanwhile = progress.load(Ordering::Relaxed) - before;
        let phase = load.join().map_err(|_| "the load generator panicked".to_string())?.map_err(|e| e.to_string())?;
        let rows = state["state"]["tables"]["binding_cache"].as_array().map_or(0, Vec::len);
        if rows != mns as usize {
            return Err(format!("the state read showed {rows} bindings, {mns} expected"));
        }
        Ok(format!(
            "took {:.0} ms; {meanwhile} PBAs answered meanwhile ({:.0} /s), longest silence {:.1} ms; the phase: {:.0} /s",
            took.as_secs_f64() * 1e3,
            meanwhile as f64 / took.as_secs_f64().max(1e-6),
            phase.longest_silence.as_secs_f64() * 1e3,
            phase.rate()
        ))
    })
}
