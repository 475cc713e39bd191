//! Without `nft` on its PATH, a daemon on `datapath: auto` says why and
//! runs the userspace datapath; on `datapath: kernel` it refuses to start
//! and says why. Needs root; PMIPLAB_SKIP_NETNS=1 skips it where that is
//! impossible. Alone in its binary: it changes the process's PATH, which
//! the daemons inherit.

mod common;

use common::*;

use std::path::Path;

use pmip_proto::lma::LmaConfig;
use serde_json::json;

#[test]
fn without_nft_auto_falls_back_to_userspace_and_kernel_refuses() {
    if skip() {
        return;
    }
    let mut lab = seed_network();
    // No nft anywhere the daemons look: an empty folder as their PATH.
    let empty = std::env::temp_dir().join(format!("pmiplab-no-nft-{}", std::process::id()));
    std::fs::create_dir_all(&empty).unwrap();
    std::env::set_var("PATH", &empty);
    std::env::remove_var("PMIPLAB_DATAPATH");
    let bin = Path::new(env!("CARGO_BIN_EXE_pmip-node"));
    let mut lma = LmaConfig::new(a(LMA));
    lma.authorized_mags = vec![a(MAG1)];
    let cfg = json!({"role": "lma", "config": lma, "policies": [], "data_plane": {"datapath": "auto"}});
    lab.spawn("lma", bin, &cfg, &[]).unwrap();
    let st = lab.request("lma", &json!({"cmd": "state"})).unwrap();
    assert_eq!(st["state"]["data_plane"]["datapath"], "userspace", "{}", st["state"]["data_plane"]);
    let log = lab.daemon_log("lma");
    assert!(
        log.contains("the kernel datapath cannot run (the nft tool is not installed (Debian package nftables)); falling back to the userspace TUN datapath"),
        "{log}"
    );

    let mut c = pmip_proto::mag::MagConfig::new(a(MAG1), a(LMA));
    c.mns = vec![];
    let cfg = json!({"role": "mag", "config": c, "data_plane": {"datapath": "kernel"}});
    let e = lab.spawn("mag1", bin, &cfg, &[]).expect_err("a forced kernel datapath without nft does not start");
    let log = lab.daemon_log("mag1");
    assert!(
        log.contains("the kernel datapath was asked for but cannot run: the nft tool is not installed"),
        "{e}: {log}"
    );

    // The MN's logical interface: the same, and a fallback leaves nothing
    // of the kernel one behind.
    lab.veth("mag1", "to-if1", "mn1", "if1").unwrap();
    let mn = mn1_on_if1();
    lab.spawn("mn1", bin, &json!({"role": "mn", "config": mn, "data_plane": {"datapath": "auto"}}), &[]).unwrap();
    let st = lab.request("mn1", &json!({"cmd": "state"})).unwrap();
    assert_eq!(st["state"]["datapath"], "userspace", "{}", st["state"]);
    let log = lab.daemon_log("mn1");
    assert!(
        log.contains("the kernel logical interface cannot run (the nft tool is not installed (Debian package nftables)); falling back to the userspace one"),
        "{log}"
    );
    ok(lab.request("mn1", &json!({"cmd": "shutdown"})).unwrap());
    // PATH is empty here: the tool by its full name.
    let ip = ["/usr/sbin/ip", "/sbin/ip", "/usr/bin/ip", "/bin/ip"].into_iter().find(|p| Path::new(p).exists());
    if let Some(ip) = ip {
        let rules = lab
            .run_in("mn1", move || {
                Ok(String::from_utf8_lossy(&std::process::Command::new(ip).args(["-6", "rule"]).output()?.stdout)
                    .into_owned())
            })
            .unwrap();
        assert!(!rules.contains("lookup 201"), "the fallback left rules of the kernel one: {rules}");
    }
    lab.add_node("mn2").unwrap();
    lab.veth("mag1", "to-mn2", "mn2", "if1").unwrap();
    let mn2 = pmip_proto::mn::MnConfig { name: "mn2".into(), ..mn };
    let cfg = json!({"role": "mn", "config": mn2, "data_plane": {"datapath": "kernel"}});
    let e = lab.spawn("mn2", bin, &cfg, &[]).expect_err("a forced kernel logical interface without nft does not start");
    let log = lab.daemon_log("mn2");
    assert!(
        log.contains("the kernel logical interface was asked for but cannot run: the nft tool is not installed"),
        "{e}: {log}"
    );
    let _ = std::fs::remove_dir_all(&empty);
}
