//! Raw IPv6 sockets: one for the Mobility Header (protocol 135), where the
//! kernel computes and checks the checksum at offset 4 (`IPV6_CHECKSUM`)
//! and the codec checks it again; one for IPv6-in-IPv6 (protocol 41), the
//! userspace LMA–MAG tunnel, where the kernel adds and strips the outer
//! header.

use std::io;
use std::mem::MaybeUninit;
use std::net::{Ipv6Addr, SocketAddrV6};
use std::os::fd::AsRawFd;

use socket2::{Domain, Protocol, SockAddr, Socket, Type};
use tokio::io::unix::AsyncFd;

pub const IPPROTO_MH: i32 = 135;
pub const IPPROTO_IPV6: i32 = 41;

pub struct RawSocket {
    fd: AsyncFd<Socket>,
    /// `recv_on`'s receive buffer, kept between calls rather than zeroed
    /// anew for every datagram.
    buf: std::sync::Mutex<Vec<u8>>,
    /// `try_recv_many`'s buffers, made at its first call and kept.
    slots: std::sync::Mutex<Slots>,
}

/// Receive buffers for `recvmmsg`: a datagram's whole payload fits in
/// each (as in `recv_on`), with room for its packet info.
#[derive(Default)]
struct Slots {
    data: Vec<u8>,
    control: Vec<u8>,
}

/// Largest payload one slot takes: what an IPv6 datagram without a jumbo
/// option can carry.
const SLOT: usize = 65536;

impl Slots {
    fn receive(&mut self, s: &Socket, max: usize) -> io::Result<Vec<(Vec<u8>, Ipv6Addr, u32)>> {
        let max = max.clamp(1, 1024);
        // SAFETY: CMSG_SPACE is arithmetic on its argument.
        let cspace = unsafe { libc::CMSG_SPACE(std::mem::size_of::<libc::in6_pktinfo>() as u32) } as usize;
        if self.data.len() < max * SLOT {
            // Zeroed by the allocator's fresh pages: only what datagrams
            // fill is ever touched.
            self.data = vec![0; max * SLOT];
        }
        if self.control.len() < max * cspace {
            self.control = vec![0; max * cspace];
        }
        // SAFETY: sockaddr_in6 is plain data; zero is valid for each field.
        let mut addrs: Vec<libc::sockaddr_in6> = vec![unsafe { std::mem::zeroed() }; max];
        let mut iovs: Vec<libc::iovec> = self
            .data
            .chunks_exact_mut(SLOT)
            .take(max)
            .map(|b| libc::iovec { iov_base: b.as_mut_ptr() as *mut libc::c_void, iov_len: SLOT })
            .collect();
        let mut hdrs: Vec<libc::mmsghdr> = iovs
            .iter_mut()
            .zip(addrs.iter_mut())
            .zip(self.control.chunks_exact_mut(cspace))
            .map(|((iov, a), c)| {
                // SAFETY: mmsghdr is plain data; the pointers set here outlive the call.
                let mut h: libc::mmsghdr = unsafe { std::mem::zeroed() };
                h.msg_hdr.msg_name = a as *mut libc::sockaddr_in6 as *mut libc::c_void;
                h.msg_hdr.msg_namelen = std::mem::size_of::<libc::sockaddr_in6>() as libc::socklen_t;
                h.msg_hdr.msg_iov = iov;
                h.msg_hdr.msg_iovlen = 1;
                h.msg_hdr.msg_control = c.as_mut_ptr() as *mut libc::c_void;
                h.msg_hdr.msg_controllen = cspace as _;
                h
            })
            .collect();
        // SAFETY: every header points at a live buffer, address and control
        // area of the stated sizes for the duration of the call.
        let n = unsafe {
            libc::recvmmsg(
                s.as_raw_fd(),
                hdrs.as_mut_ptr(),
                hdrs.len() as libc::c_uint,
                libc::MSG_DONTWAIT,
                std::ptr::null_mut(),
            )
        };
        if n < 0 {
            let e = io::Error::last_os_error();
            return if e.kind() == io::ErrorKind::WouldBlock { Ok(Vec::new()) } else { Err(e) };
        }
        let mut got = Vec::with_capacity(n as usize);
        for (i, h) in hdrs.iter().take(n as usize).enumerate() {
            let len = (h.msg_len as usize).min(SLOT);
            let src = Ipv6Addr::from(addrs[i].sin6_addr.s6_addr);
            got.push((self.data[i * SLOT..i * SLOT + len].to_vec(), src, packet_info_ifindex(&h.msg_hdr)));
        }
        Ok(got)
    }
}

/// The arrival interface an `IPV6_PKTINFO` control message names, 0 if none.
fn packet_info_ifindex(m: &libc::msghdr) -> u32 {
    // SAFETY: the CMSG_* macros walk the control area the kernel filled
    // and bounded by `msg_controllen`; the data is read unaligned.
    unsafe {
        let mut c = libc::CMSG_FIRSTHDR(m);
        while !c.is_null() {
            if (*c).cmsg_level == libc::IPPROTO_IPV6 && (*c).cmsg_type == libc::IPV6_PKTINFO {
                let info = std::ptr::read_unaligned(libc::CMSG_DATA(c) as *const libc::in6_pktinfo);
                return info.ipi6_ifindex;
            }
            c = libc::CMSG_NXTHDR(m, c);
        }
    }
    0
}

/// Has the kernel compute and verify the checksum of a raw IPv6 socket's
/// payload, at `offset` bytes into it (RFC 3542 §3.1).
pub fn kernel_checksum_at(s: &Socket, offset: libc::c_int) -> io::Result<()> {
    // SAFETY: a plain setsockopt with a valid int on a socket the caller owns.
    let rc = unsafe {
        libc::setsockopt(
            s.as_raw_fd(),
            libc::IPPROTO_IPV6,
            libc::IPV6_CHECKSUM,
            &offset as *const _ as *const libc::c_void,
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    if rc != 0 {
        let e = io::Error::last_os_error();
        return Err(io::Error::new(e.kind(), format!("cannot set IPV6_CHECKSUM: {e}")));
    }
    Ok(())
}

impl RawSocket {
    /// The Mobility Header socket bound to `local`, the node's signalling address.
    pub fn mobility_header(local: Ipv6Addr) -> io::Result<Self> {
        Self::open(IPPROTO_MH, local, Some(4))?.with_packet_info()
    }

    /// The socket of the daemon's own ESP (protocol 50) around the
    /// Mobility Header, bound to `local`.
    pub fn esp(local: Ipv6Addr) -> io::Result<Self> {
        Self::open(crate::esp::IPPROTO_ESP, local, None)?.with_packet_info()
    }

    /// Has each datagram say which interface it came in on (`recv_on`).
    fn with_packet_info(self) -> io::Result<Self> {
        nix::sys::socket::setsockopt(self.fd.get_ref(), nix::sys::socket::sockopt::Ipv6RecvPacketInfo, &true)
            .map_err(|e| io::Error::other(format!("cannot set IPV6_RECVPKTINFO: {e}")))?;
        Ok(self)
    }

    /// The IPv6-in-IPv6 socket of the userspace tunnel.
    pub fn ip6_in_ip6(local: Ipv6Addr) -> io::Result<Self> {
        Self::open(IPPROTO_IPV6, local, None)
    }

    fn open(proto: i32, local: Ipv6Addr, checksum_at: Option<libc::c_int>) -> io::Result<Self> {
        let s = Socket::new(Domain::IPV6, Type::RAW, Some(Protocol::from(proto))).map_err(|e| {
            io::Error::new(
                e.kind(),
                format!("cannot open a raw IPv6 socket for protocol {proto} (needs CAP_NET_RAW): {e}"),
            )
        })?;
        if let Some(offset) = checksum_at {
            kernel_checksum_at(&s, offset)?;
        }
        s.bind(&SockAddr::from(SocketAddrV6::new(local, 0, 0, 0))).map_err(|e| {
            io::Error::new(e.kind(), format!("cannot bind the protocol {proto} socket to {local}: {e}"))
        })?;
        s.set_nonblocking(true)?;
        // SAFETY: the AsyncFd owns the socket, so the descriptor stays open
        // and ours for as long as it is registered.
        let fd = unsafe { AsyncFd::register(s) }.map_err(|e| io::Error::other(e.to_string()))?;
        Ok(RawSocket { fd, buf: std::sync::Mutex::new(Vec::new()), slots: Default::default() })
    }

    pub async fn send_to(&self, bytes: &[u8], dst: Ipv6Addr) -> io::Result<()> {
        let addr = SockAddr::from(SocketAddrV6::new(dst, 0, 0, 0));
        loop {
            let mut guard = self.fd.writable().await?;
            match guard.try_io(|s| s.get_ref().send_to(bytes, &addr)) {
                Ok(r) => return r.map(|_| ()),
                Err(_would_block) => continue,
            }
        }
    }

    /// Sends each datagram to its destination, in order, with as few
    /// system calls as the kernel takes (`sendmmsg`): a daemon that
    /// answered a drained batch of requests pays one call, not one each.
    /// Says for each datagram whether the kernel took it, as `send_to` would.
    pub async fn send_many(&self, datagrams: &[(&[u8], Ipv6Addr)]) -> Vec<io::Result<()>> {
        let mut results = Vec::with_capacity(datagrams.len());
        while results.len() < datagrams.len() {
            let rest = &datagrams[results.len()..];
            let sent = loop {
                let mut guard = match self.fd.writable().await {
                    Ok(g) => g,
                    Err(e) => break Err(e),
                };
                match guard.try_io(|s| send_mmsg(s.get_ref(), rest)) {
                    Ok(r) => break r,
                    Err(_would_block) => continue,
                }
            };
            match sent {
                Ok(0) => results.push(Err(io::Error::other("sendmmsg took no datagram"))),
                Ok(n) => results.extend((0..n.min(rest.len())).map(|_| Ok(()))),
                // sendmmsg reports an error only for the first datagram of
                // a call: it is that one's, and the rest are tried again.
                Err(e) => results.push(Err(e)),
            }
        }
        results
    }

    /// Receives one payload, who sent it and the index of the interface it
    /// arrived on (0 if the kernel did not say), from a socket made by
    /// `mobility_header`.
    pub async fn recv_on(&self) -> io::Result<(Vec<u8>, Ipv6Addr, u32)> {
        loop {
            let mut guard = self.fd.readable().await?;
            match guard.try_io(|s| self.recv_on_now(s.get_ref())) {
                Ok(r) => return r,
                Err(_would_block) => continue,
            }
        }
    }

    /// What is already queued, up to `max` datagrams, in one `recvmmsg`
    /// call: each payload, its sender and the interface it came in on, as
    /// `recv_on` gives them. Empty when nothing waits.
    pub fn try_recv_many(&self, max: usize) -> io::Result<Vec<(Vec<u8>, Ipv6Addr, u32)>> {
        let mut slots = self.slots.lock().map_err(|_| io::Error::other("the receive slots are poisoned"))?;
        slots.receive(self.fd.get_ref(), max)
    }

    fn recv_on_now(&self, s: &Socket) -> io::Result<(Vec<u8>, Ipv6Addr, u32)> {
        use nix::sys::socket::{recvmsg, ControlMessageOwned, MsgFlags, SockaddrIn6};
        let mut buf = self.buf.lock().map_err(|_| io::Error::other("the receive buffer is poisoned"))?;
        if buf.len() < 65536 {
            buf.resize(65536, 0);
        }
        let mut iov = [io::IoSliceMut::new(&mut buf[..])];
        let mut cmsg = nix::cmsg_space!(libc::in6_pktinfo);
        let m = recvmsg::<SockaddrIn6>(s.as_raw_fd(), &mut iov, Some(&mut cmsg), MsgFlags::empty())
            .map_err(io::Error::from)?;
        let index = m
            .cmsgs()
            .map_err(io::Error::from)?
            .find_map(|c| match c {
                ControlMessageOwned::Ipv6PacketInfo(i) => Some(i.ipi6_ifindex),
                _ => None,
            })
            .unwrap_or(0);
        let src = m.address.map(|a| a.ip()).unwrap_or(Ipv6Addr::UNSPECIFIED);
        let n = m.bytes;
        Ok((buf[..n].to_vec(), src, index))
    }

    /// Receives one payload (the Mobility Header, or the inner packet) and
    /// who sent it.
    pub async fn recv(&self) -> io::Result<(Vec<u8>, Ipv6Addr)> {
        let mut buf = [MaybeUninit::<u8>::uninit(); 65536];
        loop {
            let mut guard = self.fd.readable().await?;
            match guard.try_io(|s| s.get_ref().recv_from(&mut buf)) {
                Ok(Ok((n, from))) => {
                    // SAFETY: recv_from initialised the first n bytes.
                    let bytes: Vec<u8> = buf[..n].iter().map(|b| unsafe { b.assume_init() }).collect();
                    let src = from.as_socket_ipv6().map(|a| *a.ip()).unwrap_or(Ipv6Addr::UNSPECIFIED);
                    return Ok((bytes, src));
                }
                Ok(Err(e)) => return Err(e),
                Err(_would_block) => continue,
            }
        }
    }
}

/// One `sendmmsg` call over `datagrams`; how many the kernel took (at
/// least one, else the error about the first).
fn send_mmsg(s: &Socket, datagrams: &[(&[u8], Ipv6Addr)]) -> io::Result<usize> {
    // The kernel takes at most UIO_MAXIOV messages per call.
    let datagrams = &datagrams[..datagrams.len().min(1024)];
    let mut addrs: Vec<libc::sockaddr_in6> = datagrams
        .iter()
        .map(|(_, dst)| {
            // SAFETY: sockaddr_in6 is plain data; zero is valid for each field.
            let mut a: libc::sockaddr_in6 = unsafe { std::mem::zeroed() };
            a.sin6_family = libc::AF_INET6 as libc::sa_family_t;
            a.sin6_addr.s6_addr = dst.octets();
            a
        })
        .collect();
    let mut iovs: Vec<libc::iovec> = datagrams
        .iter()
        .map(|(b, _)| libc::iovec { iov_base: b.as_ptr() as *mut libc::c_void, iov_len: b.len() })
        .collect();
    let mut hdrs: Vec<libc::mmsghdr> = iovs
        .iter_mut()
        .zip(addrs.iter_mut())
        .map(|(iov, a)| {
            // SAFETY: mmsghdr is plain data; the pointers set here outlive the call.
            let mut h: libc::mmsghdr = unsafe { std::mem::zeroed() };
            h.msg_hdr.msg_name = a as *mut libc::sockaddr_in6 as *mut libc::c_void;
            h.msg_hdr.msg_namelen = std::mem::size_of::<libc::sockaddr_in6>() as libc::socklen_t;
            h.msg_hdr.msg_iov = iov;
            h.msg_hdr.msg_iovlen = 1;
            h
        })
        .collect();
    // SAFETY: every header points at a live buffer (read only by the
    // kernel) and address for the duration of the call.
    let n = unsafe { libc::sendmmsg(s.as_raw_fd(), hdrs.as_mut_ptr(), hdrs.len() as libc::c_uint, 0) };
    if n < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(n as usize)
}
