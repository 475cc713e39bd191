//! The MAG's access links: Router Solicitations tell it an MN interface is
//! there (and, by their Source Link-Layer Address option, which MN), and
//! Router Advertisements carry exactly the MN's current prefixes
//! (RFC 5213 §6.7), sent again whenever they change.

use std::collections::BTreeMap;
use std::io;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use pmip_proto::Prefix;

use crate::kernel::Kernel;
use crate::nd::{self, Nd};
use crate::packet_socket::PacketSocket;

struct Link {
    mac: [u8; 6],
    att: u8,
    /// Router Solicitations are read and Advertisements sent here, as
    /// frames: the first RS after the link comes up is not lost, nor the
    /// RA answering it, while the kernel's IPv6 on the link is still
    /// getting ready.
    rs: Arc<PacketSocket>,
    /// Counts the RAs sent on the link, so a delayed one knows it is stale.
    generation: Arc<AtomicU64>,
}

pub struct Access {
    links: BTreeMap<String, Link>,
}

/// A classic BPF program that passes only ICMPv6 Router Solicitations in
/// an Ethernet frame (IPv6 next header 58 at offset 20, ICMPv6 type 133
/// at offset 54, no extension headers), so data frames never wake the MAG.
const RS_FILTER: [libc::sock_filter; 6] = [
    libc::sock_filter { code: 0x30, jt: 0, jf: 0, k: 20 },  // ldb [20]
    libc::sock_filter { code: 0x15, jt: 0, jf: 3, k: 58 },  // jeq #58, else drop
    libc::sock_filter { code: 0x30, jt: 0, jf: 0, k: 54 },  // ldb [54]
    libc::sock_filter { code: 0x15, jt: 0, jf: 1, k: 133 }, // jeq #133, else drop
    libc::sock_filter { code: 0x06, jt: 0, jf: 0, k: 0xffff }, // ret: the frame
    libc::sock_filter { code: 0x06, jt: 0, jf: 0, k: 0 },   // ret: nothing
];

/// Whether the kernel has an interface running (IFF_RUNNING): carrier up
/// and the link activated for sending.
fn running(iface: &str) -> bool {
    let Ok(sock) = std::net::UdpSocket::bind("[::1]:0").or_else(|_| std::net::UdpSocket::bind("127.0.0.1:0")) else {
        return true;
    };
    // SAFETY: a zeroed ifreq is valid; the name is copied in, NUL-terminated.
    let mut req: libc::ifreq = unsafe { std::mem::zeroed() };
    let name = iface.as_bytes();
    if name.len() >= req.ifr_name.len() {
        return true;
    }
    for (d, s) in req.ifr_name.iter_mut().zip(name) {
        *d = *s as libc::c_char;
    }
    // SAFETY: SIOCGIFFLAGS fills the ifreq we own, on a socket we own.
    let rc = unsafe { libc::ioctl(std::os::fd::AsRawFd::as_raw_fd(&sock), libc::SIOCGIFFLAGS, &mut req) };
    // SAFETY: SIOCGIFFLAGS set the flags member of the union.
    rc < 0 || (i32::from(unsafe { req.ifr_ifru.ifru_flags }) & libc::IFF_RUNNING) != 0
}

/// An MN interface asked for a router.
pub struct Solicitation {
    pub iface: String,
    pub att: u8,
    pub mac: Option<[u8; 6]>,
}

impl Access {
    /// `links`: access interface name → access technology type.
    pub async fn open(links: &BTreeMap<String, u8>) -> io::Result<Access> {
        let kernel = Kernel::new()?;
        let mut out = BTreeMap::new();
        for (name, att) in links {
            let index = kernel.index(name).await?;
            let rs = PacketSocket::open_filtered(index, libc::ETH_P_IPV6 as u16, &RS_FILTER)
                .map_err(|e| io::Error::new(e.kind(), format!("listening for Router Solicitations on {name}: {e}")))?;
            out.insert(
                name.clone(),
                Link { mac: kernel.mac(name).await?, att: *att, rs: Arc::new(rs), generation: Arc::default() },
            );
        }
        Ok(Access { links: out })
    }

    /// Sends a Router Advertisement on an access link as a whole frame,
    /// from the link-local address the link's MAC gives: it goes out even
    /// while the kernel's IPv6 on a link that just came up has no
    /// link-local address of its own yet.
    pub async fn advertise(&self, iface: &str, prefixes: &[Prefix]) -> io::Result<()> {
        let link = self.links.get(iface).ok_or_else(|| {
            io::Error::new(io::ErrorKind::NotFound, format!("{iface} is not an access link of this MAG"))
        })?;
        let lifetime = if prefixes.is_empty() { 0 } else { 1800 };
        let body = nd::router_advertisement(link.mac, prefixes, lifetime);
        let src = crate::kernel::link_local_of(&link.mac)
            .ok_or_else(|| io::Error::other(format!("{iface} has no Ethernet address")))?;
        let packet = nd::icmpv6(src, nd::ALL_NODES, body);
        // A link that just got carrier drops what is sent on it, silently,
        // until the kernel has activated it; the MN's RS can arrive before.
        let frame = nd::ethernet(nd::multicast_mac(nd::ALL_NODES), link.mac, &packet);
        let generation = link.generation.fetch_add(1, Ordering::SeqCst) + 1;
        if running(iface) {
            return link.rs.send(&frame).await;
        }
        // A link that just got carrier drops what is sent on it, silently,
        // until the kernel has activated it, and the MN's RS can come
        // before that: the RA goes out once the link runs, unless a newer
        // one was sent meanwhile or the link never runs (it went down).
        let (sock, latest, name) = (link.rs.clone(), link.generation.clone(), iface.to_string());
        tokio::spawn(async move {
            for _ in 0..100 {
                tokio::time::sleep(std::time::Duration::from_millis(2)).await;
                if latest.load(Ordering::SeqCst) != generation {
                    return;
                }
                if running(&name) {
                    if let Err(e) = sock.send(&frame).await {
                        tracing::warn!("RA on {name} failed: {e}");
                    }
                    return;
                }
            }
        });
        Ok(())
    }

    /// Waits for the next Router Solicitation on an access link; one that
    /// is not valid (RFC 4861 §6.1.1: hop limit 255, a good checksum,
    /// link-local source, code 0, sane options) comes back as `Err` with
    /// the reason.
    pub async fn solicitation(&self) -> io::Result<Result<Solicitation, String>> {
        let reads = self.links.iter().map(|(name, link)| {
            Box::pin(async move {
                let mut buf = [0u8; 1514];
                let n = link.rs.recv(&mut buf).await?;
                let Some(pkt) = buf[..n].get(14..) else {
                    return Ok(Err(format!("a runt frame on {name}")));
                };
                if let Some(why) = nd::invalid_router_packet(pkt) {
                    return Ok(Err(format!("RS on {name}: {why}")));
                }
                Ok(match nd::parse(&pkt[40..]) {
                    Nd::Rs { mac } => Ok(Solicitation { iface: name.clone(), att: link.att, mac }),
                    _ => Err(format!("not an RS on {name}")),
                })
            })
        });
        let reads: Vec<_> = reads.collect();
        if reads.is_empty() {
            return std::future::pending().await;
        }
        futures::future::select_all(reads).await.0
    }
}
