//! Every veth a lab makes has its offloads off at both ends: no capture
//! shows a checksum left for hardware that does not exist.
//!
//! Needs root (it makes namespaces); skipped without it only when
//! PMIPLAB_SKIP_NETNS is set.

use pmiplab::lab::{offload, Lab};

#[test]
fn a_lab_veth_has_every_offload_off_at_both_ends() {
    if !nix::unistd::geteuid().is_root() {
        assert!(
            std::env::var_os("PMIPLAB_SKIP_NETNS").is_some(),
            "this test needs root; run it as root (CI does) or set PMIPLAB_SKIP_NETNS=1"
        );
        return;
    }
    let mut lab = Lab::new().expect("a lab");
    lab.add_node("a").unwrap();
    lab.add_node("b").unwrap();
    lab.veth("a", "to-b", "b", "to-a").unwrap();
    for (node, iface) in [("a", "to-b"), ("b", "to-a")] {
        let on = lab.run_in(node, move || offload::on(iface)).unwrap();
        assert!(on.is_empty(), "{node}:{iface} still has {on:?} on");
    }
    // What the check reads is what the kernel holds: an offload turned
    // back on is seen.
    lab.run_in("a", || {
        nix_set_tx_csum_on("to-b");
        offload::on("to-b")
    })
    .map(|on| assert_eq!(on, ["tx-checksumming"], "the check did not see tx checksumming turned back on"))
    .unwrap();
}

/// Turns TX checksumming back on with the ethtool ioctl, as `ethtool -K
/// to-b tx on` would.
fn nix_set_tx_csum_on(iface: &str) {
    #[repr(C)]
    struct EthtoolValue {
        cmd: u32,
        data: u32,
    }
    nix::ioctl_readwrite_bad!(siocethtool, libc::SIOCETHTOOL, libc::ifreq);
    let sock = nix::sys::socket::socket(
        nix::sys::socket::AddressFamily::Inet6,
        nix::sys::socket::SockType::Datagram,
        nix::sys::socket::SockFlag::empty(),
        None,
    )
    .unwrap();
    let mut value = EthtoolValue { cmd: 0x17, data: 1 };
    let mut req: libc::ifreq = unsafe { std::mem::zeroed() };
    for (d, s) in req.ifr_name.iter_mut().zip(iface.as_bytes()) {
        *d = *s as libc::c_char;
    }
    req.ifr_ifru.ifru_data = (&mut value as *mut EthtoolValue).cast();
    unsafe { siocethtool(std::os::fd::AsRawFd::as_raw_fd(&sock), &mut req) }.unwrap();
}
