//! `pmiplab bench`: the performance figures of DESIGN.md, each measured in
//! one run beside its baseline, so that a number always comes with what it
//! should be read against.

pub mod scale;
mod signalling;

pub use scale::scale;
pub use signalling::signalling;

use std::net::Ipv6Addr;
use std::path::Path;
use std::time::{Duration, Instant as WallClock};

use pmip_proto::lma::{Lma, LmaCommand, LmaConfig, LmaInput, MnPolicy, PrefixModel};
use pmip_proto::load::{self, mn_id, pbu, prefix_of, LMA, MAG};
use pmip_proto::{Instant, Prefix, Span};
use pmip_wire::{Endpoints, HandoffIndicator, Message, WireConfig};

/// One line of the report: a figure, its baseline and the target.
pub struct Figure {
    pub what: String,
    pub value: String,
    pub baseline: String,
    pub target: String,
}

impl Figure {
    fn new(what: &str, value: String, baseline: String, target: &str) -> Self {
        Figure { what: what.into(), value, baseline, target: target.into() }
    }
}

/// The report as a Markdown table.
pub fn table(figures: &[Figure]) -> String {
    let mut out = String::from("| measure | value | baseline (same run) | target |\n|---|---|---|---|\n");
    for f in figures {
        out.push_str(&format!("| {} | {} | {} | {} |\n", f.what, f.value, f.baseline, f.target));
    }
    out
}

/// The sans-IO LMA with `bindings` MNs registered; then re-registrations
/// of all of them, timed, each followed by the timer check a daemon makes
/// on every turn of its loop: PBU in, PBA out, in memory; and the same with
/// the codec on both sides. Baseline: the codec alone (parse the PBU, emit
/// the PBA), which any implementation pays.
pub fn core(bindings: u32) -> Result<Vec<Figure>, String> {
    let mut lma = Lma::new(load::lma_config());
    for i in 0..bindings {
        lma.add_policy(load::policy(i));
    }
    let mut now = Instant::ZERO + Span::from_secs(1);
    for i in 0..bindings {
        let out = lma.handle(
            now,
            LmaInput::Message { src: MAG, dst: LMA, message: pbu(i, 1, now, HandoffIndicator::NewInterface, None) },
        );
        expect_accepted(&out.transmits, i)?;
    }
    if lma.state().binding_cache.len() != bindings as usize {
        return Err(format!("{} bindings registered, {bindings} expected", lma.state().binding_cache.len()));
    }
    // Re-registrations, built beforehand so that only handling is timed.
    now = now + Span::from_secs(10);
    let rereg: Vec<Message> =
        (0..bindings).map(|i| pbu(i, 2, now, HandoffIndicator::NotChanged, Some(prefix_of(i)))).collect();
    let ends = Endpoints { src: MAG, dst: LMA };
    let wire = WireConfig::default();
    let bytes: Vec<Vec<u8>> =
        rereg.iter().map(|m| m.to_bytes(&ends, &wire).map_err(|e| e.to_string())).collect::<Result<_, _>>()?;

    let started = WallClock::now();
    for (i, m) in rereg.into_iter().enumerate() {
        let out = lma.handle(now, LmaInput::Message { src: MAG, dst: LMA, message: m });
        expect_accepted(&out.transmits, i as u32)?;
        timers(&mut lma, now);
    }
    let core_rate = f64::from(bindings) / started.elapsed().as_secs_f64();

    // Baseline: the codec alone, on the same messages.
    let back = Endpoints { src: LMA, dst: MAG };
    let started = WallClock::now();
    let mut emitted = 0usize;
    for b in &bytes {
        let m = Message::parse(b, &ends, &wire).map_err(|e| e.to_string())?;
        let pba = pmip_wire::Message::Pba(pmip_wire::Pba {
            status: pmip_wire::PbaStatus::Accepted,
            flags: Default::default(),
            sequence: match &m {
                Message::Pbu(p) => p.sequence,
                _ => 0,
            },
            lifetime: 100,
            options: m.options().to_vec(),
        });
        emitted += pba.to_bytes(&back, &wire).map_err(|e| e.to_string())?.len();
    }
    let codec_rate = f64::from(bindings) / started.elapsed().as_secs_f64();
    std::hint::black_box(emitted);

    // Bytes in, bytes out: what a daemon's core does per message.
    now = now + Span::from_secs(10);
    let rereg: Vec<Vec<u8>> = (0..bindings)
        .map(|i| pbu(i, 3, now, HandoffIndicator::NotChanged, Some(prefix_of(i))).to_bytes(&ends, &wire))
        .collect::<Result<_, _>>()
        .map_err(|e| e.to_string())?;
    let started = WallClock::now();
    for (i, b) in rereg.iter().enumerate() {
        let m = Message::parse(b, &ends, &wire).map_err(|e| e.to_string())?;
        let out = lma.handle(now, LmaInput::Message { src: MAG, dst: LMA, message: m });
        expect_accepted(&out.transmits, i as u32)?;
        timers(&mut lma, now);
        for t in &out.transmits {
            std::hint::black_box(t.message.to_bytes(&back, &wire).map_err(|e| e.to_string())?);
        }
    }
    let full_rate = f64::from(bindings) / started.elapsed().as_secs_f64();
    let per_s = |r: f64| format!("{:.0} /s", r);
    Ok(vec![
        Figure::new(
            &format!("sans-IO LMA, PBU→PBA (re-registration) with {bindings} bindings, timers included"),
            per_s(core_rate),
            format!("codec alone (parse PBU, emit PBA): {}", per_s(codec_rate)),
            "≥ 1,000,000 /s",
        ),
        Figure::new(
            &format!("sans-IO LMA with the codec, bytes in → bytes out, {bindings} bindings"),
            per_s(full_rate),
            format!("codec alone: {}", per_s(codec_rate)),
            "—",
        ),
    ])
}

/// What a daemon does after each message: asks when the core next needs
/// the clock, and hands it a timeout when that moment has come.
fn timers(lma: &mut Lma, now: Instant) {
    if lma.next_timeout().is_some_and(|t| t <= now) {
        std::hint::black_box(lma.handle(now, LmaInput::Timeout));
    }
}

fn expect_accepted(transmits: &[pmip_proto::Transmit], i: u32) -> Result<(), String> {
    match transmits.iter().find_map(|t| match &t.message {
        Message::Pba(p) => Some(p.status),
        _ => None,
    }) {
        Some(s) if s.is_accepted() => Ok(()),
        Some(s) => Err(format!("PBU of {} was refused with {}", mn_id(i), s.value())),
        None => Err(format!("PBU of {} got no PBA", mn_id(i))),
    }
}

/// The seed topology (lma, mag1, mag2, mn1 with two interfaces, cn) built
/// with its daemons running and ready, then torn down, `runs` times.
/// Baseline: the same namespaces and links with no daemon.
pub fn lab(node_bin: &Path, scenario: &Path, runs: u32) -> Result<Vec<Figure>, String> {
    let s = crate::scenario::load(scenario).map_err(|e| e.to_string())?;
    let mut full = Vec::new();
    let mut bare = Vec::new();
    for _ in 0..runs {
        let t = WallClock::now();
        let lab = crate::lab::Lab::new().map_err(|e| e.to_string())?;
        let run = crate::netns_run::build(lab, &s, node_bin, false)?;
        drop(run);
        full.push(t.elapsed());

        let t = WallClock::now();
        let lab = crate::lab::Lab::new().map_err(|e| e.to_string())?;
        crate::netns_run::build_links(lab, &s)?;
        bare.push(t.elapsed());
    }
    let show = |v: &mut Vec<Duration>| {
        v.sort();
        format!("median {:.0} ms, max {:.0} ms", ms(v[v.len() / 2]), ms(v[v.len() - 1]))
    };
    Ok(vec![Figure::new(
        &format!("seed lab up (daemons ready) and down, {runs} runs"),
        show(&mut full),
        format!("namespaces and links alone: {}", show(&mut bare)),
        "≤ 150 ms",
    )])
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

/// Every scenario of `files` in namespaces, two at once (the 2-core target
/// machine), timed as a whole; baseline: the same scenarios in virtual
/// time, one at a time. A scenario that does not pass fails the benchmark.
pub fn catalogue(node_bin: &Path, files: &[std::path::PathBuf]) -> Result<Vec<Figure>, String> {
    let loaded: Vec<(std::path::PathBuf, crate::scenario::Scenario)> = files
        .iter()
        .map(|f| crate::scenario::load(f).map(|s| (f.clone(), s)).map_err(|e| e.to_string()))
        .collect::<Result<_, _>>()?;
    let out = std::env::temp_dir().join(format!("pmiplab-bench-{}", std::process::id()));
    let t = WallClock::now();
    let virtual_reports = crate::run::run_all(&loaded, 1, None, &out, Default::default());
    let virtual_time = t.elapsed();
    let t = WallClock::now();
    let netns_reports = crate::run::run_all(&loaded, 2, Some(node_bin), &out, Default::default());
    let netns_time = t.elapsed();
    let _ = std::fs::remove_dir_all(&out);
    for r in virtual_reports.iter().chain(&netns_reports) {
        if matches!(r.verdict, crate::report::Verdict::Fail | crate::report::Verdict::InitFail) {
            return Err(format!("{} did not pass on {}: {}", r.id, r.backend, r.line()));
        }
    }
    Ok(vec![Figure::new(
        &format!("the catalogue ({} scenarios) in namespaces, 2 at once", loaded.len()),
        format!("{:.1} s", netns_time.as_secs_f64()),
        format!("in virtual time: {:.0} ms", ms(virtual_time)),
        "≥ 30 scenarios in ≤ 60 s",
    )])
}

// ---------------------------------------------------------------------
// The datapath and flow-move benchmarks: real packets through namespaces.

const CN: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 0xc, 0, 0, 0, 0, 1);
const CN_GW: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 0xc, 0, 0, 0, 0, 0xffff);
const MAG2: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 0xffff, 0, 0, 0, 0, 0x12);
const BENCH_MN: &str = "mn1@pmip.lab";

fn bench_prefix(n: u16) -> Prefix {
    Prefix::new(Ipv6Addr::new(0x2001, 0xdb8, n, 0, 0, 0, 0, 0), 64)
}

fn mn_addr(n: u16) -> Ipv6Addr {
    bench_prefix(n).with_iid(1)
}

/// Runs `ip` with `args` inside `node`'s namespace.
fn ip(lab: &crate::lab::Lab, node: &str, args: String) -> Result<(), String> {
    let shown = args.clone();
    lab.run_in(node, move || {
        let out = std::process::Command::new("ip").args(args.split_whitespace()).output()?;
        if out.status.success() {
            Ok(())
        } else {
            Err(std::io::Error::other(String::from_utf8_lossy(&out.stderr).trim().to_string()))
        }
    })
    .map_err(|e| format!("{node}: ip {shown}: {e}"))
}

fn link_local(node: &str, iface: &str) -> Ipv6Addr {
    crate::frames::link_local(crate::lab::mac(node, iface))
}

/// What carries the packets between the CN and the MN.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Path6 {
    /// Plain kernel IPv6 forwarding, static routes, no daemon.
    Forwarding,
    /// The lab: LMA and MAG daemons on this datapath ("kernel" or
    /// "userspace"), the MN a plain host attached by the MAG.
    Lab(&'static str),
    /// The lab with the MN daemon too: its logical interface on the same
    /// datapath, attached by its Router Solicitations as in a run.
    LabWithMn(&'static str),
}

/// The chain cn — lma — mag1 (— mag2) — mn1: the same namespaces and links
/// for every path. The MN is a plain host (the kernel's own stack), with
/// 2001:db8:1::1 on if1 towards mag1 and 2001:db8:2::1 on if2 towards mag2.
fn chain(node_bin: &Path, path: Path6, two_mags: bool, bridged: bool) -> Result<crate::lab::Lab, String> {
    let e = |x: std::io::Error| x.to_string();
    let mut lab = crate::lab::Lab::new().map_err(e)?;
    let mags: &[(&str, Ipv6Addr, &str)] =
        if two_mags { &[("mag1", MAG, "if1"), ("mag2", MAG2, "if2")] } else { &[("mag1", MAG, "if1")] };
    for n in ["lma", "mn1", "cn"].iter().chain(mags.iter().map(|m| &m.0)) {
        lab.add_node(n).map_err(e)?;
    }
    let core: Vec<(&str, Ipv6Addr)> = mags.iter().map(|m| (m.0, m.1)).collect();
    if bridged || two_mags {
        lab.core(("lma", LMA), &core).map_err(e)?;
    } else {
        // One MAG on a veth of the LMA's own, no bridge.
        lab.veth("lma", "core", "mag1", "core").map_err(e)?;
        lab.address("lma", "core", LMA, 64).map_err(e)?;
        lab.address("mag1", "core", MAG, 64).map_err(e)?;
    }
    lab.veth("lma", "to-cn", "cn", "eth0").map_err(e)?;
    lab.address("lma", "to-cn", CN_GW, 64).map_err(e)?;
    lab.address("cn", "eth0", CN, 64).map_err(e)?;
    lab.default_route("cn", CN_GW).map_err(e)?;
    let mn_daemon = matches!(path, Path6::LabWithMn(_));
    for (i, (mag, _, iface)) in mags.iter().enumerate() {
        let access = format!("to-{iface}");
        lab.veth(mag, &access, "mn1", iface).map_err(e)?;
        if !mn_daemon {
            lab.address("mn1", iface, mn_addr(i as u16 + 1), 64).map_err(e)?;
        }
    }
    if !mn_daemon {
        ip(&lab, "mn1", format!("-6 route add default via {} dev if1", link_local("mag1", "to-if1")))?;
    }
    match path {
        Path6::Forwarding => {
            for (i, (mag, addr, iface)) in mags.iter().enumerate() {
                let p = bench_prefix(i as u16 + 1);
                ip(&lab, "lma", format!("-6 route add {p} via {addr}"))?;
                ip(&lab, mag, format!("-6 route add {p} via {} dev to-{iface}", link_local("mn1", iface)))?;
                ip(&lab, mag, format!("-6 route add default via {LMA}"))?;
            }
            for n in ["lma"].iter().chain(mags.iter().map(|m| &m.0)) {
                lab.run_in(n, || std::fs::write("/proc/sys/net/ipv6/conf/all/forwarding", "1")).map_err(e)?;
            }
        }
        Path6::Lab(datapath) | Path6::LabWithMn(datapath) => {
            let mut cfg = LmaConfig::new(LMA);
            cfg.authorized_mags = mags.iter().map(|m| m.1).collect();
            let mut policy = MnPolicy::new(BENCH_MN, PrefixModel::Unique);
            policy.unique_prefixes = (1..=mags.len() as u16).map(bench_prefix).collect();
            let dp = serde_json::json!({"tun": "tun0", "mtu": 1460, "datapath": datapath});
            let lma = serde_json::json!({"role": "lma", "config": cfg, "policies": [policy], "data_plane": dp});
            lab.spawn("lma", node_bin, &lma, &[]).map_err(e)?;
            for (mag, addr, _) in mags {
                let mut c = pmip_proto::mag::MagConfig::new(*addr, LMA);
                c.mns = mags
                    .iter()
                    .map(|m| pmip_proto::mag::MnBinding {
                        ll_id: pmip_proto::world::mac_for("mn1", m.2),
                        mn_id: BENCH_MN.into(),
                    })
                    .collect();
                let mut cfg = serde_json::json!({"role": "mag", "config": c, "data_plane": dp});
                if mn_daemon {
                    // 802.11 (4): the MAG attaches the MN by its RS.
                    let port = mags.iter().find(|m| m.0 == *mag).map(|m| format!("to-{}", m.2)).unwrap_or_default();
                    cfg["access"] = serde_json::json!({ port: 4 });
                }
                lab.spawn(mag, node_bin, &cfg, &[]).map_err(e)?;
            }
            if mn_daemon {
                let interfaces: Vec<String> = mags.iter().map(|m| m.2.to_string()).collect();
                let mn = pmip_proto::mn::MnConfig {
                    name: "mn1".into(),
                    iid: 1,
                    interfaces: interfaces.clone(),
                    uplink_preference: interfaces.clone(),
                };
                let cfg = serde_json::json!({"role": "mn", "config": mn, "data_plane": dp});
                lab.spawn("mn1", node_bin, &cfg, &[]).map_err(e)?;
                lab.wait_for("mn1", Duration::from_secs(5), |s| {
                    interfaces.iter().all(|i| s["counters"][format!("RA taken on {i}")].as_u64().unwrap_or(0) > 0)
                })
                .map_err(e)?;
                let st = lab.request("mn1", &serde_json::json!({"cmd": "state"})).map_err(e)?;
                let got = st["state"]["datapath"].as_str().unwrap_or("?").to_string();
                if got != datapath {
                    return Err(format!("the MN runs the {got} logical interface, not {datapath}"));
                }
            }
            for (mag, _, iface) in mags.iter().filter(|_| !mn_daemon) {
                let ll = pmip_proto::world::mac_for("mn1", iface);
                let att = serde_json::json!({"cmd": "attach", "iface": format!("to-{iface}"), "ll_id": ll, "att": 4});
                let r = lab.request(mag, &att).map_err(e)?;
                if r["ok"] != true {
                    return Err(format!("{mag} refused the attachment: {r}"));
                }
                lab.wait_for(mag, Duration::from_secs(5), |s| {
                    s["tables"]["binding_update_list"][0]["state"] == "registered"
                })
                .map_err(e)?;
            }
            let st = lab.request("lma", &serde_json::json!({"cmd": "state"})).map_err(e)?;
            let got = st["state"]["data_plane"]["datapath"].as_str().unwrap_or("?").to_string();
            if got != datapath {
                return Err(format!("the LMA runs the {got} datapath, not {datapath}"));
            }
        }
    }
    Ok(lab)
}

/// One transfer's result: bits per second at the receiver, and for UDP
/// the datagrams sent and received.
struct Transfer {
    bps: f64,
    sent: u64,
    received: u64,
}

/// TCP from `from` to `to` (addresses inside them) for `secs` seconds.
fn tcp(lab: &crate::lab::Lab, from: &str, to: &str, dst: Ipv6Addr, secs: f64) -> Result<Transfer, String> {
    use std::io::{Read, Write};
    let e = |x: std::io::Error| x.to_string();
    let listener = lab
        .run_in(to, || std::net::TcpListener::bind(std::net::SocketAddrV6::new(Ipv6Addr::UNSPECIFIED, 5201, 0, 0)))
        .map_err(e)?;
    let server = std::thread::spawn(move || -> std::io::Result<(u64, Duration)> {
        let (mut s, _) = listener.accept()?;
        s.set_read_timeout(Some(Duration::from_secs(10)))?;
        let mut buf = vec![0u8; 256 * 1024];
        let mut total = 0u64;
        let mut first = None;
        loop {
            let n = s.read(&mut buf)?;
            if n == 0 {
                break;
            }
            first.get_or_insert_with(WallClock::now);
            total += n as u64;
        }
        Ok((total, first.map(|t| t.elapsed()).unwrap_or_default()))
    });
    let stream = lab
        .run_in(from, move || {
            std::net::TcpStream::connect_timeout(
                &std::net::SocketAddr::V6(std::net::SocketAddrV6::new(dst, 5201, 0, 0)),
                Duration::from_secs(5),
            )
        })
        .map_err(|x| format!("connecting from {from} to {dst}: {x}"))?;
    let mut stream = stream;
    stream.set_write_timeout(Some(Duration::from_secs(10))).map_err(e)?;
    let buf = vec![0x5au8; 128 * 1024];
    let deadline = WallClock::now() + Duration::from_secs_f64(secs);
    while WallClock::now() < deadline {
        stream.write_all(&buf).map_err(|x| format!("TCP {from} → {to}: {x}"))?;
    }
    stream.shutdown(std::net::Shutdown::Write).map_err(e)?;
    let (total, took) = server
        .join()
        .map_err(|_| "the TCP receiver panicked".to_string())?
        .map_err(|x| format!("TCP receiver: {x}"))?;
    Ok(Transfer { bps: total as f64 * 8.0 / took.as_secs_f64().max(1e-6), sent: 0, received: 0 })
}

/// UDP datagrams of 1200 octets from `from` to `to` as fast as the
/// sender goes, for `secs` seconds.
fn udp(lab: &crate::lab::Lab, from: &str, to: &str, dst: Ipv6Addr, secs: f64) -> Result<Transfer, String> {
    let e = |x: std::io::Error| x.to_string();
    let rx = lab
        .run_in(to, || std::net::UdpSocket::bind(std::net::SocketAddrV6::new(Ipv6Addr::UNSPECIFIED, 5202, 0, 0)))
        .map_err(e)?;
    set_buffer(&rx, libc::SO_RCVBUF, 8 << 20);
    rx.set_read_timeout(Some(Duration::from_millis(300))).map_err(e)?;
    let tx = lab
        .run_in(from, move || {
            let s = std::net::UdpSocket::bind(std::net::SocketAddrV6::new(Ipv6Addr::UNSPECIFIED, 0, 0, 0))?;
            s.connect(std::net::SocketAddrV6::new(dst, 5202, 0, 0))?;
            Ok(s)
        })
        .map_err(e)?;
    let receiver = std::thread::spawn(move || -> (u64, u64, Option<Duration>) {
        let mut buf = vec![0u8; 2048];
        let (mut n, mut bytes, mut first, mut last) = (0u64, 0u64, None, None);
        while let Ok(len) = rx.recv(&mut buf) {
            let now = WallClock::now();
            first.get_or_insert(now);
            last = Some(now);
            n += 1;
            bytes += len as u64;
        }
        let span = first.zip(last).map(|(f, l)| l - f);
        (n, bytes, span)
    });
    let payload = vec![0xa5u8; 1200];
    let deadline = WallClock::now() + Duration::from_secs_f64(secs);
    let mut sent = 0u64;
    while WallClock::now() < deadline {
        for _ in 0..64 {
            if tx.send(&payload).is_ok() {
                sent += 1;
            }
        }
    }
    let (received, bytes, span) = receiver.join().map_err(|_| "the UDP receiver panicked".to_string())?;
    let span = span.unwrap_or_default().as_secs_f64().max(1e-6);
    Ok(Transfer { bps: bytes as f64 * 8.0 / span, sent, received })
}

fn set_buffer(s: &impl std::os::fd::AsRawFd, opt: libc::c_int, bytes: libc::c_int) {
    // SAFETY: setsockopt with an int option of the right size.
    unsafe {
        libc::setsockopt(
            s.as_raw_fd(),
            libc::SOL_SOCKET,
            opt,
            &bytes as *const libc::c_int as *const libc::c_void,
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        );
    }
}

fn median_spread(v: &mut [f64]) -> (f64, f64, f64) {
    v.sort_by(|a, b| a.total_cmp(b));
    if v.is_empty() {
        return (0.0, 0.0, 0.0);
    }
    (v[v.len() / 2], v[0], v[v.len() - 1])
}

/// The datapaths the lab runs in a bench: both, unless PMIPLAB_DATAPATH
/// names one.
fn lab_datapaths() -> Vec<&'static str> {
    match std::env::var("PMIPLAB_DATAPATH").as_deref() {
        Ok("kernel") => vec!["kernel"],
        Ok("userspace") => vec!["userspace"],
        _ => vec!["kernel", "userspace"],
    }
}

/// TCP and UDP, CN → MN and MN → CN, through the lab (each datapath)
/// and through plain kernel forwarding over the same chain of
/// namespaces, built in turn `runs` times, each transfer `secs` long.
pub fn datapath(node_bin: &Path, runs: u32, secs: f64) -> Result<Vec<Figure>, String> {
    let mut paths = vec![Path6::Forwarding];
    paths.extend(lab_datapaths().into_iter().map(Path6::Lab));
    paths.extend(lab_datapaths().into_iter().map(Path6::LabWithMn));
    let tests: [(&str, bool, bool); 4] = [
        ("TCP CN→MN", true, true),
        ("TCP MN→CN", true, false),
        ("UDP CN→MN", false, true),
        ("UDP MN→CN", false, false),
    ];
    // results[path][test] = (bps per run, loss per run)
    let mut bps = vec![vec![Vec::new(); tests.len()]; paths.len()];
    let mut loss = vec![vec![Vec::new(); tests.len()]; paths.len()];
    for _ in 0..runs {
        for (pi, p) in paths.iter().enumerate() {
            let lab = chain(node_bin, *p, false, true)?;
            for (ti, (_, is_tcp, down)) in tests.iter().enumerate() {
                let (from, to, dst) = if *down { ("cn", "mn1", mn_addr(1)) } else { ("mn1", "cn", CN) };
                let t = if *is_tcp { tcp(&lab, from, to, dst, secs) } else { udp(&lab, from, to, dst, secs) }
                    .map_err(|x| format!("{p:?}: {x}"))?;
                bps[pi][ti].push(t.bps / 1e6);
                if !is_tcp {
                    loss[pi][ti].push(100.0 * t.sent.saturating_sub(t.received) as f64 / t.sent.max(1) as f64);
                }
            }
        }
    }
    // TCP CN→MN once more with the LMA's core a plain veth instead of the
    // lab's bridge, beside forwarding over the same bridge-less chain: how
    // much of the gap the bridge makes for encapsulated packets.
    let (mut veth_lab, mut veth_fwd) = (Vec::new(), Vec::new());
    if lab_datapaths().contains(&"kernel") {
        for _ in 0..runs {
            for (p, out) in [(Path6::Forwarding, &mut veth_fwd), (Path6::Lab("kernel"), &mut veth_lab)] {
                let lab = chain(node_bin, p, false, false)?;
                let t = tcp(&lab, "cn", "mn1", mn_addr(1), secs).map_err(|x| format!("{p:?}, no bridge: {x}"))?;
                out.push(t.bps / 1e6);
            }
        }
    }
    let mut figures = Vec::new();
    if !veth_lab.is_empty() {
        let (base, bmin, bmax) = median_spread(&mut veth_fwd);
        let (m, lo, hi) = median_spread(&mut veth_lab);
        figures.push(Figure::new(
            &format!("TCP CN→MN, kernel datapath, the LMA–MAG link a veth (no bridge), {runs} runs of {secs} s"),
            format!("{m:.0} Mbit/s ({lo:.0}–{hi:.0}), {:.0}% of forwarding", 100.0 * m / base.max(1e-9)),
            format!("plain kernel forwarding, same bridge-less chain: {base:.0} Mbit/s ({bmin:.0}–{bmax:.0})"),
            "≥ 80% of forwarding",
        ));
    }
    for (ti, (name, is_tcp, _)) in tests.iter().enumerate() {
        let (base, bmin, bmax) = median_spread(&mut bps[0][ti]);
        let (bloss, _, _) = median_spread(&mut loss[0][ti]);
        for (pi, p) in paths.iter().enumerate().skip(1) {
            let what = match p {
                Path6::Lab(dp) => format!("lab on the {dp} datapath"),
                Path6::LabWithMn(dp) => format!("lab and the MN daemon (logical interface) on the {dp} datapath"),
                Path6::Forwarding => continue,
            };
            let (m, lo, hi) = median_spread(&mut bps[pi][ti]);
            let (l, _, lmax) = median_spread(&mut loss[pi][ti]);
            let loss_text =
                |l: f64, lmax: f64| if *is_tcp { String::new() } else { format!(", lost {l:.1}% (max {lmax:.1}%)") };
            figures.push(Figure::new(
                &format!("{name}, {what}, {runs} runs of {secs} s"),
                format!(
                    "{m:.0} Mbit/s ({lo:.0}–{hi:.0}), {:.0}% of forwarding{}",
                    100.0 * m / base.max(1e-9),
                    loss_text(l, lmax)
                ),
                format!(
                    "plain kernel forwarding, same chain: {base:.0} Mbit/s ({bmin:.0}–{bmax:.0}){}",
                    loss_text(bloss, bloss)
                ),
                "≥ 80% of forwarding, no loss inside the lab",
            ));
        }
    }
    Ok(figures)
}

/// Receives one datagram with the index of the interface it arrived on
/// (IPV6_PKTINFO).
fn recv_with_ifindex(fd: libc::c_int, buf: &mut [u8]) -> std::io::Result<(usize, u32)> {
    let mut iov = libc::iovec { iov_base: buf.as_mut_ptr() as *mut libc::c_void, iov_len: buf.len() };
    let mut control = [0u64; 16];
    // SAFETY: msghdr is plain data; every pointer in it refers to a live
    // buffer of the stated length for the duration of the call.
    let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
    msg.msg_iov = &mut iov;
    msg.msg_iovlen = 1;
    msg.msg_control = control.as_mut_ptr() as *mut libc::c_void;
    msg.msg_controllen = std::mem::size_of_val(&control) as _;
    // SAFETY: see above.
    let n = unsafe { libc::recvmsg(fd, &mut msg, 0) };
    if n < 0 {
        return Err(std::io::Error::last_os_error());
    }
    let mut ifindex = 0;
    // SAFETY: the CMSG macros walk the control buffer the kernel filled,
    // bounded by msg_controllen.
    unsafe {
        let mut c = libc::CMSG_FIRSTHDR(&msg);
        while !c.is_null() {
            if (*c).cmsg_level == libc::IPPROTO_IPV6 && (*c).cmsg_type == libc::IPV6_PKTINFO {
                let info = std::ptr::read_unaligned(libc::CMSG_DATA(c) as *const libc::in6_pktinfo);
                ifindex = info.ipi6_ifindex;
            }
            c = libc::CMSG_NXTHDR(&msg, c);
        }
    }
    Ok((n as usize, ifindex))
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

/// `moves` flow moves while the CN sends the flow at `rate` packets/s:
/// MN with if1 on MAG1 and if2 on MAG2, flow Y (everything to
/// 2001:db8:2::/64) moved back and forth between the two bindings by
/// MoveFlow (FMI/FMA to the MAGs). Measured: the command to the LMA →
/// the first packet of the flow on the new interface, the last one on the
/// old, and loss; baseline: the steady one-way transit CN → MN in the
/// same run.
pub fn moves(node_bin: &Path, moves: u32, rate: u32) -> Result<Vec<Figure>, String> {
    use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
    use std::sync::Arc;
    let mut figures = Vec::new();
    for dp in lab_datapaths() {
        let e = |x: std::io::Error| x.to_string();
        let lab = chain(node_bin, Path6::Lab(dp), true, true)?;
        let idx = |name: &'static str| {
            lab.run_in("mn1", move || {
                let c = std::ffi::CString::new(name).map_err(std::io::Error::other)?;
                // SAFETY: a NUL-terminated name that lives across the call.
                match unsafe { libc::if_nametoindex(c.as_ptr()) } {
                    0 => Err(std::io::Error::last_os_error()),
                    i => Ok(i),
                }
            })
            .map_err(e)
        };
        let (if1, if2) = (idx("if1")?, idx("if2")?);
        let rx = lab
            .run_in("mn1", || std::net::UdpSocket::bind(std::net::SocketAddrV6::new(Ipv6Addr::UNSPECIFIED, 5002, 0, 0)))
            .map_err(e)?;
        let on: libc::c_int = 1;
        // SAFETY: an int option of the right size.
        unsafe {
            libc::setsockopt(
                std::os::fd::AsRawFd::as_raw_fd(&rx),
                libc::IPPROTO_IPV6,
                libc::IPV6_RECVPKTINFO,
                &on as *const libc::c_int as *const libc::c_void,
                std::mem::size_of::<libc::c_int>() as libc::socklen_t,
            );
        }
        set_buffer(&rx, libc::SO_RCVBUF, 8 << 20);
        rx.set_read_timeout(Some(Duration::from_millis(100))).map_err(e)?;
        let tx = lab
            .run_in("cn", || {
                let s = std::net::UdpSocket::bind(std::net::SocketAddrV6::new(CN, 7002, 0, 0))?;
                s.connect(std::net::SocketAddrV6::new(mn_addr(2), 5002, 0, 0))?;
                Ok(s)
            })
            .map_err(e)?;
        let epoch = WallClock::now();
        let stop = Arc::new(AtomicBool::new(false));
        let last_if = Arc::new(AtomicU32::new(0));
        let on_new = Arc::new(AtomicU64::new(0));
        // The receiver: (seq, interface, arrival and send times in ns since epoch).
        let receiver = {
            let (stop, last_if, on_new) = (stop.clone(), last_if.clone(), on_new.clone());
            std::thread::spawn(move || {
                let mut got: Vec<(u64, u32, u64, u64)> = Vec::with_capacity(1 << 20);
                let mut buf = [0u8; 256];
                let fd = std::os::fd::AsRawFd::as_raw_fd(&rx);
                loop {
                    match recv_with_ifindex(fd, &mut buf) {
                        Ok((n, i)) if n >= 16 => {
                            let at = epoch.elapsed().as_nanos() as u64;
                            let seq = u64::from_be_bytes(buf[0..8].try_into().unwrap_or_default());
                            let sent = u64::from_be_bytes(buf[8..16].try_into().unwrap_or_default());
                            if last_if.swap(i, Ordering::SeqCst) == i {
                                on_new.fetch_add(1, Ordering::SeqCst);
                            } else {
                                on_new.store(1, Ordering::SeqCst);
                            }
                            got.push((seq, i, at, sent));
                        }
                        Ok(_) => {}
                        Err(_) if stop.load(Ordering::SeqCst) => break,
                        Err(_) => {}
                    }
                }
                got
            })
        };
        let sender = {
            let stop = stop.clone();
            std::thread::spawn(move || {
                let gap = Duration::from_secs_f64(1.0 / f64::from(rate.max(1)));
                let start = WallClock::now();
                let mut seq = 0u64;
                let mut pkt = [0u8; 64];
                while !stop.load(Ordering::SeqCst) {
                    let due = start + gap * seq as u32;
                    let now = WallClock::now();
                    if now < due {
                        let left = due - now;
                        if left > Duration::from_micros(200) {
                            std::thread::sleep(left - Duration::from_micros(100));
                        }
                        continue;
                    }
                    pkt[0..8].copy_from_slice(&seq.to_be_bytes());
                    pkt[8..16].copy_from_slice(&(epoch.elapsed().as_nanos() as u64).to_be_bytes());
                    let _ = tx.send(&pkt);
                    seq += 1;
                }
                seq
            })
        };
        let wait_on = |want: u32, packets: u64| -> bool {
            let deadline = WallClock::now() + Duration::from_secs(3);
            while WallClock::now() < deadline {
                if last_if.load(Ordering::SeqCst) == want && on_new.load(Ordering::SeqCst) >= packets {
                    return true;
                }
                std::thread::sleep(Duration::from_micros(200));
            }
            false
        };
        let lma = |c: LmaCommand| -> Result<(), String> {
            let r = lab.request("lma", &serde_json::json!({"cmd": "lma", "command": c})).map_err(e)?;
            if r["ok"] == true {
                Ok(())
            } else {
                Err(format!("the LMA refused a command: {r}"))
            }
        };
        let mut outcome = (|| -> Result<Vec<(u64, u32)>, String> {
            if !wait_on(if2, 200) {
                return Err("the flow does not arrive on if2 before any move".into());
            }
            lma(LmaCommand::BindFlow {
                mn_id: BENCH_MN.into(),
                fid: 2,
                fid_pri: 20,
                selector: pmip_proto::flow::prefix_selector(bench_prefix(2)),
                bids: vec![2],
                action: pmip_proto::lma::FlowAction::Forward,
            })?;
            let mut marks = Vec::new();
            for k in 0..moves {
                let (bid, want) = if k % 2 == 0 { (1, if1) } else { (2, if2) };
                let at = epoch.elapsed().as_nanos() as u64;
                lma(LmaCommand::MoveFlow { mn_id: BENCH_MN.into(), fid: 2, to_bid: bid })?;
                marks.push((at, want));
                if !wait_on(want, 20) {
                    return Err(format!("move {k}: the flow did not reach its new interface within 3 s"));
                }
            }
            Ok(marks)
        })();
        // Let the last packets land, then stop.
        std::thread::sleep(Duration::from_millis(50));
        stop.store(true, Ordering::SeqCst);
        let sent = sender.join().map_err(|_| "the sender panicked".to_string())?;
        let got = receiver.join().map_err(|_| "the receiver panicked".to_string())?;
        let marks = std::mem::replace(&mut outcome, Ok(Vec::new()))?;
        // Figures.
        let first_move = marks.first().map(|m| m.0).unwrap_or(u64::MAX);
        let mut transit: Vec<f64> =
            got.iter().filter(|g| g.2 < first_move).map(|g| g.2.saturating_sub(g.3) as f64 / 1e3).collect();
        transit.sort_by(|a, b| a.total_cmp(b));
        // Moves to BID 1 (MAG1 lacks the prefix: FMI[add] and FMA first)
        // and back to BID 2 (MAG2 holds it: the LMA switches at once), apart.
        let mut first_new = [Vec::new(), Vec::new()];
        let mut last_old = [Vec::new(), Vec::new()];
        for (k, (at, want)) in marks.iter().enumerate() {
            let until = marks.get(k + 1).map(|m| m.0).unwrap_or(u64::MAX);
            if let Some(g) = got.iter().find(|g| g.2 >= *at && g.1 == *want) {
                first_new[k % 2].push((g.2 - at) as f64 / 1e3);
            }
            if let Some(g) = got.iter().rev().find(|g| g.2 >= *at && g.2 < until && g.1 != *want) {
                last_old[k % 2].push((g.2 - at) as f64 / 1e3);
            }
        }
        for v in first_new.iter_mut().chain(last_old.iter_mut()) {
            v.sort_by(|a, b| a.total_cmp(b));
        }
        let mut seen = std::collections::HashSet::new();
        for g in &got {
            seen.insert(g.0);
        }
        let lost = sent.saturating_sub(seen.len() as u64);
        let ms = |v: f64| if v.is_nan() { "—".to_string() } else { format!("{:.2} ms", v / 1e3) };
        for (kind, what) in [(1, "shared prefix, no signalling"), (0, "FMI[add]/FMA to the new MAG first")] {
            figures.push(Figure::new(
                &format!(
                    "flow move, {dp} datapath, {what}: command to the LMA → first packet on the new interface, {} moves at {rate} packets/s",
                    first_new[kind].len()
                ),
                format!(
                    "median {}, p99 {}, max {}; last packet on the old interface: median {}, max {}",
                    ms(percentile(&first_new[kind], 0.5)),
                    ms(percentile(&first_new[kind], 0.99)),
                    ms(percentile(&first_new[kind], 1.0)),
                    ms(percentile(&last_old[kind], 0.5)),
                    ms(percentile(&last_old[kind], 1.0)),
                ),
                format!(
                    "steady one-way transit CN → MN: median {}, p99 {}",
                    ms(percentile(&transit, 0.5)),
                    ms(percentile(&transit, 0.99))
                ),
                "median ≤ 0.5 ms, p99 ≤ 2 ms over ≥ 100 moves",
            ));
        }
        figures.push(Figure::new(
            &format!("packets lost across the moves, {dp} datapath"),
            format!("{lost} of {sent}"),
            "—".into(),
            &format!("0 at {rate} packets/s"),
        ));
    }
    Ok(figures)
}
