//! The MAG's access links: Router Solicitations tell it an MN interface is
//! there (and, by their Source Link-Layer Address option, which MN), and
//! Router Advertisements carry exactly the MN's current prefixes
//! (RFC 5213 §6.7), sent again whenever they change.

use std::collections::BTreeMap;
use std::io;
use std::io::IoSliceMut;
use std::net::SocketAddrV6;
use std::os::fd::AsRawFd;

use nix::sys::socket::{recvmsg, setsockopt, sockopt, ControlMessageOwned, MsgFlags, SockaddrIn6};
use pmip_proto::Prefix;
use socket2::{Domain, Protocol, SockAddr, Socket, Type};
use tokio::io::unix::AsyncFd;

use crate::kernel::Kernel;
use crate::nd::{self, Nd};

struct Link {
    index: u32,
    mac: [u8; 6],
    att: u8,
}

pub struct Access {
    sock: AsyncFd<Socket>,
    links: BTreeMap<String, Link>,
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
            out.insert(
                name.clone(),
                Link { index: kernel.index(name).await?, mac: kernel.mac(name).await?, att: *att },
            );
        }
        let s = Socket::new(Domain::IPV6, Type::RAW, Some(Protocol::ICMPV6))
            .map_err(|e| io::Error::new(e.kind(), format!("cannot open a raw ICMPv6 socket: {e}")))?;
        // Neighbour Discovery messages must carry hop limit 255.
        s.set_multicast_hops_v6(255)?;
        s.set_unicast_hops_v6(255)?;
        setsockopt(&s, sockopt::Ipv6RecvPacketInfo, &true).map_err(io::Error::from)?;
        // The hop limit an RS arrived with: 255 only if it was sent on the link.
        setsockopt(&s, sockopt::Ipv6RecvHopLimit, &true).map_err(io::Error::from)?;
        s.set_nonblocking(true)?;
        // SAFETY: the AsyncFd owns the socket while registered.
        let sock = unsafe { AsyncFd::register(s) }.map_err(|e| io::Error::other(e.to_string()))?;
        Ok(Access { sock, links: out })
    }

    pub async fn advertise(&self, iface: &str, prefixes: &[Prefix]) -> io::Result<()> {
        let link = self.links.get(iface).ok_or_else(|| {
            io::Error::new(io::ErrorKind::NotFound, format!("{iface} is not an access link of this MAG"))
        })?;
        let lifetime = if prefixes.is_empty() { 0 } else { 1800 };
        let body = nd::router_advertisement(link.mac, prefixes, lifetime);
        let to = SockAddr::from(SocketAddrV6::new(nd::ALL_NODES, 0, 0, link.index));
        loop {
            let mut g = self.sock.writable().await?;
            match g.try_io(|s| s.get_ref().send_to(&body, &to)) {
                Ok(r) => return r.map(|_| ()),
                Err(_would_block) => continue,
            }
        }
    }

    /// Waits for the next Router Solicitation on an access link; an RS
    /// that is not valid (RFC 4861 §6.1.1: hop limit 255, link-local
    /// source, code 0, sane options; the kernel checks the checksum of a
    /// raw ICMPv6 socket) comes back as `Err` with the reason.
    pub async fn solicitation(&self) -> io::Result<Result<Solicitation, String>> {
        let mut buf = [0u8; 1500];
        loop {
            let mut g = self.sock.readable().await?;
            let r = g.try_io(|s| {
                let mut iov = [IoSliceMut::new(&mut buf)];
                let mut cmsg = nix::cmsg_space!(libc::in6_pktinfo, libc::c_int);
                let m = recvmsg::<SockaddrIn6>(s.get_ref().as_raw_fd(), &mut iov, Some(&mut cmsg), MsgFlags::empty())
                    .map_err(io::Error::from)?;
                let (mut index, mut hops) = (0, -1);
                for c in m.cmsgs().map_err(io::Error::from)? {
                    match c {
                        ControlMessageOwned::Ipv6PacketInfo(i) => index = i.ipi6_ifindex,
                        ControlMessageOwned::Ipv6HopLimit(h) => hops = h,
                        _ => {}
                    }
                }
                let src = m.address.map(|a| a.ip()).unwrap_or(std::net::Ipv6Addr::UNSPECIFIED);
                Ok((m.bytes, index, hops, src))
            });
            let (n, index, hops, src) = match r {
                Ok(Ok(x)) => x,
                Ok(Err(e)) => return Err(e),
                Err(_would_block) => continue,
            };
            let Some((name, link)) = self.links.iter().find(|(_, l)| l.index == index) else {
                continue;
            };
            if buf[..n].first() != Some(&nd::RS) {
                continue;
            }
            if let Some(why) = nd::invalid_router_message(u8::try_from(hops).unwrap_or(0), src, &buf[..n]) {
                return Ok(Err(format!("RS from {src} on {name}: {why}")));
            }
            if let Nd::Rs { mac } = nd::parse(&buf[..n]) {
                return Ok(Ok(Solicitation { iface: name.clone(), att: link.att, mac }));
            }
        }
    }
}
