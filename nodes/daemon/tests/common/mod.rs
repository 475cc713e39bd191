//! What the namespace tests share: the seed addresses and the root check.
#![allow(dead_code)]

use std::net::Ipv6Addr;

use pmip_proto::flow::prefix_selector;
use pmip_proto::lma::{FlowAction, LmaCommand};
use pmip_proto::Prefix;
use pmiplab::lab::Lab;
use serde_json::Value;

pub const LMA: &str = "2001:db8:ffff::1";
pub const MAG1: &str = "2001:db8:ffff::11";
pub const MAG2: &str = "2001:db8:ffff::12";
pub const CN: &str = "2001:db8:c::1";
pub const CN_GW: &str = "2001:db8:c::ffff";
pub const MN: &str = "mn1@pmip.lab";

pub fn a(s: &str) -> Ipv6Addr {
    s.parse().unwrap()
}

pub fn pref(n: u8) -> Prefix {
    format!("2001:db8:{n}::/64").parse().unwrap()
}

/// True when the test should not run: not root, and PMIPLAB_SKIP_NETNS
/// says that is expected. Not root without it is a failure.
pub fn skip() -> bool {
    if nix::unistd::geteuid().is_root() {
        return false;
    }
    if std::env::var_os("PMIPLAB_SKIP_NETNS").is_some() {
        eprintln!("not root: skipped because PMIPLAB_SKIP_NETNS is set");
        return true;
    }
    panic!("this test builds network namespaces and needs root; run it as root (CI does) or set PMIPLAB_SKIP_NETNS=1");
}

/// A control reply that must be a success.
pub fn ok(v: Value) {
    assert_eq!(v["ok"], true, "{v}");
}

/// The seed network before any MN link: the LMA on the core segment with
/// MAG1 and MAG2, and the CN behind the LMA with its default route.
pub fn seed_network() -> Lab {
    let mut lab = Lab::new().unwrap();
    for n in ["lma", "mag1", "mag2", "mn1", "cn"] {
        lab.add_node(n).unwrap();
    }
    lab.core(("lma", a(LMA)), &[("mag1", a(MAG1)), ("mag2", a(MAG2))]).unwrap();
    lab.veth("lma", "to-cn", "cn", "eth0").unwrap();
    lab.address("lma", "to-cn", a(CN_GW), 64).unwrap();
    lab.address("cn", "eth0", a(CN), 64).unwrap();
    lab.default_route("cn", a(CN_GW)).unwrap();
    lab
}

/// The seed's flow Y: everything to pref2, FID 2 (FID-PRI 20), on BID 2.
pub fn bind_flow_y() -> LmaCommand {
    LmaCommand::BindFlow {
        mn_id: MN.into(),
        fid: 2,
        fid_pri: 20,
        selector: prefix_selector(pref(2)),
        bids: vec![2],
        action: FlowAction::Forward,
    }
}
