//! Offloads off on a lab's veths, through the ethtool ioctl (SIOCETHTOOL)
//! on a socket opened in the interface's namespace.
//!
//! Why: with TX checksum offload on, a veth hands a packet on with its
//! UDP/TCP checksum left for hardware that does not exist, so a capture
//! shows a bad checksum that no receiver ever checks; with segmentation
//! and receive coalescing on, a capture shows packets bigger than any that
//! crossed the link. With them off, the captures hold the packets as a
//! wire would carry them.

use std::io;
use std::os::fd::AsRawFd;

use nix::sys::socket::{socket, AddressFamily, SockFlag, SockType};

/// `struct ethtool_value` of linux/ethtool.h.
#[repr(C)]
struct EthtoolValue {
    cmd: u32,
    data: u32,
}

// linux/ethtool.h: the legacy get/set commands of one feature each.
const ETHTOOL_GTXCSUM: u32 = 0x16;
const ETHTOOL_STXCSUM: u32 = 0x17;
const ETHTOOL_GSG: u32 = 0x18;
const ETHTOOL_SSG: u32 = 0x19;
const ETHTOOL_GTSO: u32 = 0x1e;
const ETHTOOL_STSO: u32 = 0x1f;
const ETHTOOL_GGSO: u32 = 0x23;
const ETHTOOL_SGSO: u32 = 0x24;
const ETHTOOL_GGRO: u32 = 0x2b;
const ETHTOOL_SGRO: u32 = 0x2c;

/// Every offload turned off, each with its name and get/set commands.
/// TX checksumming goes first: segmentation depends on it.
pub const OFFLOADS: [(&str, u32, u32); 5] = [
    ("tx-checksumming", ETHTOOL_GTXCSUM, ETHTOOL_STXCSUM),
    ("scatter-gather", ETHTOOL_GSG, ETHTOOL_SSG),
    ("tcp-segmentation-offload", ETHTOOL_GTSO, ETHTOOL_STSO),
    ("generic-segmentation-offload", ETHTOOL_GGSO, ETHTOOL_SGSO),
    ("generic-receive-offload", ETHTOOL_GGRO, ETHTOOL_SGRO),
];

nix::ioctl_readwrite_bad!(siocethtool, libc::SIOCETHTOOL, libc::ifreq);

/// One ethtool command on `iface`: sets `data` or, for a get, reads it.
fn ethtool(iface: &str, cmd: u32, data: u32) -> io::Result<u32> {
    let sock = socket(AddressFamily::Inet6, SockType::Datagram, SockFlag::SOCK_CLOEXEC, None)
        .map_err(|e| io::Error::other(format!("a socket for ethtool on {iface}: {e}")))?;
    let mut value = EthtoolValue { cmd, data };
    // SAFETY: ifreq is plain data; all zeroes is a valid value.
    let mut req: libc::ifreq = unsafe { std::mem::zeroed() };
    let name = iface.as_bytes();
    if name.len() >= req.ifr_name.len() {
        return Err(io::Error::other(format!("'{iface}' is too long for an interface name")));
    }
    for (d, s) in req.ifr_name.iter_mut().zip(name) {
        *d = *s as libc::c_char;
    }
    req.ifr_ifru.ifru_data = (&mut value as *mut EthtoolValue).cast();
    // SAFETY: `req` names the interface and points at `value`, which lives
    // through the call; the kernel reads and writes only `value`.
    unsafe { siocethtool(sock.as_raw_fd(), &mut req) }
        .map_err(|e| io::Error::other(format!("ethtool command {cmd:#x} on {iface}: {e}")))?;
    Ok(value.data)
}

/// Turns every offload of [`OFFLOADS`] off on `iface`, in the calling
/// thread's namespace, and reads each back: an offload the kernel will
/// not turn off is an error that names it.
pub fn all_off(iface: &str) -> io::Result<()> {
    for (name, get, set) in OFFLOADS {
        if ethtool(iface, get, 0)? == 0 {
            continue;
        }
        ethtool(iface, set, 0).map_err(|e| io::Error::other(format!("turning {name} off: {e}")))?;
        if ethtool(iface, get, 0)? != 0 {
            return Err(io::Error::other(format!("{name} stays on on {iface}")));
        }
    }
    Ok(())
}

/// Which offloads of [`OFFLOADS`] are on on `iface`, by name.
pub fn on(iface: &str) -> io::Result<Vec<&'static str>> {
    let mut v = Vec::new();
    for (name, get, _) in OFFLOADS {
        if ethtool(iface, get, 0)? != 0 {
            v.push(name);
        }
    }
    Ok(v)
}
