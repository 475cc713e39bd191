//! The lab's core segment: the MAGs meet on the LMA's bridge, and the LMA
//! sends to each MAG straight out of that MAG's port. Through the bridge
//! device itself an encapsulated TCP burst loses its segmentation offload
//! (a bridge has no encapsulation features) and the downlink through the
//! kernel datapath fell to a fifth of plain forwarding.
//!
//! Needs root (it makes namespaces); skipped without it only when
//! PMIPLAB_SKIP_NETNS is set.

use std::net::Ipv6Addr;
use std::process::Command;

use pmiplab::lab::Lab;

fn ip_in(lab: &Lab, node: &str, args: &[&str]) -> String {
    let args: Vec<String> = args.iter().map(|a| a.to_string()).collect();
    lab.run_in(node, move || {
        let out = Command::new("ip").args(&args).output()?;
        Ok(String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr))
    })
    .unwrap()
}

#[test]
fn the_lma_reaches_each_mag_out_of_its_port_and_the_mags_reach_each_other() {
    if !nix::unistd::geteuid().is_root() {
        assert!(
            std::env::var_os("PMIPLAB_SKIP_NETNS").is_some(),
            "this test needs root; run it as root (CI does) or set PMIPLAB_SKIP_NETNS=1"
        );
        return;
    }
    let a = |s: &str| s.parse::<Ipv6Addr>().unwrap();
    let mut lab = Lab::new().expect("a lab");
    for n in ["lma", "mag1", "mag2"] {
        lab.add_node(n).unwrap();
    }
    lab.core(("lma", a("2001:db8:ffff::1")), &[("mag1", a("2001:db8:ffff::11")), ("mag2", a("2001:db8:ffff::12"))])
        .unwrap();
    for (mag, addr) in [("mag1", "2001:db8:ffff::11"), ("mag2", "2001:db8:ffff::12")] {
        let route = ip_in(&lab, "lma", &["-6", "route", "get", addr]);
        assert!(route.contains(&format!("dev to-{mag}")), "the LMA's route to {mag}: {route}");
        let neigh = ip_in(&lab, "lma", &["-6", "neigh", "show", addr]);
        assert!(neigh.contains(&format!("dev to-{mag}")) && neigh.contains("PERMANENT"), "{neigh}");
        let mac = pmiplab::lab::mac(mag, "core");
        let text = mac.iter().map(|b| format!("{b:02x}")).collect::<Vec<_>>().join(":");
        assert!(neigh.contains(&text), "the neighbour is {mag}'s core interface ({text}): {neigh}");
    }
    // The bridge is a plain segment: frames it forwards skip the LMA's
    // IPv6 netfilter hooks.
    let knob = lab
        .run_in("lma", || std::fs::read_to_string("/proc/sys/net/bridge/bridge-nf-call-ip6tables").or(Ok("0".into())))
        .unwrap();
    assert_eq!(knob.trim(), "0", "bridge-nf-call-ip6tables in the LMA's namespace");
    // Datagrams cross: the LMA to a MAG out of the port, a MAG to the LMA
    // and to the other MAG through the bridge.
    for (from, to, at) in [
        ("lma", "mag1", "2001:db8:ffff::11"),
        ("mag1", "lma", "2001:db8:ffff::1"),
        ("mag1", "mag2", "2001:db8:ffff::12"),
    ] {
        let dst = std::net::SocketAddr::new(a(at).into(), 7007);
        let rx = lab.run_in(to, move || std::net::UdpSocket::bind(dst)).unwrap();
        rx.set_read_timeout(Some(std::time::Duration::from_secs(3))).unwrap();
        let tx = lab.run_in(from, || std::net::UdpSocket::bind("[::]:0")).unwrap();
        tx.send_to(b"core", dst).unwrap();
        let mut buf = [0u8; 8];
        let got = rx.recv(&mut buf);
        assert!(matches!(got, Ok(4)), "{from} → {to}: {got:?}");
    }
}
