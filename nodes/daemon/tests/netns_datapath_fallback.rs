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
    let _ = std::fs::remove_dir_all(&empty);
}
