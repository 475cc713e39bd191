//! What the namespace tests share: the seed addresses and the root check,
//! the seed's daemons and MN1's registration through them.
#![allow(dead_code)]

pub mod data_plane;

use std::net::Ipv6Addr;
use std::path::Path;
use std::time::Duration;

use pmip_proto::flow::prefix_selector;
use pmip_proto::lma::{FlowAction, LmaCommand, LmaConfig, MnPolicy, PrefixModel};
use pmip_proto::mag::{MagConfig, MnBinding};
use pmip_proto::world::mac_for;
use pmip_proto::Prefix;
use pmip_wire::{AccessTechnologyType, HandoffIndicator, MnIdSubtype, MobilityOption, Pbu, PbuFlags};
use pmiplab::lab::Lab;
use serde_json::{json, Value};

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

/// The seed's LMA: MAG1 and MAG2 authorised, MN1 with pref1 and pref2
/// (one unique prefix per interface).
pub fn lma_config() -> (LmaConfig, Vec<MnPolicy>) {
    let mut c = LmaConfig::new(a(LMA));
    c.authorized_mags = vec![a(MAG1), a(MAG2)];
    let mut p = MnPolicy::new(MN, PrefixModel::Unique);
    p.unique_prefixes = vec![pref(1), pref(2)];
    (c, vec![p])
}

/// A seed MAG at `addr` that serves both of MN1's interfaces.
pub fn mag_config(addr: &str) -> MagConfig {
    let mut c = MagConfig::new(a(addr), a(LMA));
    c.mns = ["if1", "if2"].iter().map(|i| MnBinding { ll_id: mac_for("mn1", i), mn_id: MN.into() }).collect();
    c
}

/// The control request that attaches MN1's `iface` at the MAG's `to-{iface}`.
pub fn attach(iface: &str, att: AccessTechnologyType) -> Value {
    json!({"cmd": "attach", "iface": format!("to-{iface}"), "ll_id": mac_for("mn1", iface), "att": att.value()})
}

/// Starts the seed's LMA, MAG1 and MAG2 daemons on `lab`, each with the
/// settings in the object `with` (ESP keys, a data plane) beside its role
/// and configuration.
pub fn spawn_seed_daemons(lab: &mut Lab, with: &Value) {
    let bin = Path::new(env!("CARGO_BIN_EXE_pmip-node"));
    let spec = |mut base: Value| {
        if let (Some(b), Some(w)) = (base.as_object_mut(), with.as_object()) {
            b.extend(w.iter().map(|(k, v)| (k.clone(), v.clone())));
        }
        base
    };
    let (c, policies) = lma_config();
    lab.spawn("lma", bin, &spec(json!({"role": "lma", "config": c, "policies": policies})), &[])
        .unwrap_or_else(|e| panic!("the lma daemon: {e}"));
    for (n, addr) in [("mag1", MAG1), ("mag2", MAG2)] {
        lab.spawn(n, bin, &spec(json!({"role": "mag", "config": mag_config(addr)})), &[])
            .unwrap_or_else(|e| panic!("the {n} daemon: {e}"));
    }
}

/// Attaches MN1's if1 at MAG1 (802.11) and then its if2 at MAG2 (E-UTRAN),
/// each registered before the next; a MAG that does not register fails the
/// test with the LMA's log.
pub fn attach_mn1(lab: &Lab) {
    let limit = Duration::from_secs(5);
    for (mag, iface, att) in
        [("mag1", "if1", AccessTechnologyType::Ieee80211), ("mag2", "if2", AccessTechnologyType::EUtran)]
    {
        ok(lab.request(mag, &attach(iface, att)).unwrap());
        lab.wait_for(mag, limit, |s| s["tables"]["binding_update_list"][0]["state"] == "registered")
            .unwrap_or_else(|e| panic!("{e}\n--- lma log ---\n{}", lab.daemon_log("lma")));
    }
}

/// The LMA's state once its binding cache holds MN1's two bindings.
pub fn lma_with_two_bindings(lab: &Lab) -> Value {
    lab.wait_for("lma", Duration::from_secs(5), |s| {
        s["tables"]["binding_cache"].as_array().is_some_and(|b| b.len() == 2)
    })
    .unwrap_or_else(|e| panic!("{e}\n--- lma log ---\n{}", lab.daemon_log("lma")))
}

/// The PBU with which MAG1 would de-register MN1's if1 (lifetime 0, pref1,
/// 802.11), numbered `sequence`, with no timestamp yet.
pub fn if1_deregistration(sequence: u16) -> Pbu {
    Pbu {
        sequence,
        flags: PbuFlags::proxy(),
        lifetime: 0,
        options: vec![
            MobilityOption::MnIdentifier { subtype: MnIdSubtype::Nai, id: MN.as_bytes().to_vec() },
            MobilityOption::HomeNetworkPrefix { prefix_len: 64, prefix: pref(1).addr() },
            MobilityOption::HandoffIndicator(HandoffIndicator::NotChanged),
            MobilityOption::AccessTechnologyType(AccessTechnologyType::Ieee80211),
            MobilityOption::MnLinkLayerIdentifier(mac_for("mn1", "if1")),
        ],
    }
}

/// MN1 with one interface, if1, and the logical interface's IID 1.
pub fn mn1_on_if1() -> pmip_proto::mn::MnConfig {
    pmip_proto::mn::MnConfig {
        name: "mn1".into(),
        iid: 1,
        interfaces: vec!["if1".into()],
        uplink_preference: vec!["if1".into()],
    }
}

/// The network interfaces of the test's own namespace, sorted by name.
pub fn host_interfaces() -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir("/sys/class/net")
        .unwrap()
        .filter_map(|e| e.ok())
        .map(|e| e.file_name().to_string_lossy().into())
        .collect();
    v.sort();
    v
}
