//! An AF_PACKET socket on one physical interface: the MN's logical
//! interface sends and receives whole Ethernet frames on it, and a MAG
//! takes Router Solicitations from it.
//!
//! Not pnet_datalink's channel (which the capture threads use): a MAG's
//! socket must have its classic BPF filter attached before it is bound,
//! so that not one frame of another kind is ever queued on it, and the
//! daemons read it from tokio's reactor rather than from a thread that
//! blocks per interface; pnet's channel offers neither.

use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};

use tokio::io::unix::AsyncFd;

pub struct PacketSocket {
    fd: AsyncFd<OwnedFd>,
}

impl PacketSocket {
    pub fn open(ifindex: u32) -> io::Result<PacketSocket> {
        Self::open_filtered(ifindex, libc::ETH_P_ALL as u16, &[])
    }

    /// A packet socket for frames of `ethertype` on `ifindex` that pass
    /// the classic BPF program `filter` (none when empty). The filter is
    /// attached before the socket is bound, so no other frame is queued.
    pub fn open_filtered(ifindex: u32, ethertype: u16, filter: &[libc::sock_filter]) -> io::Result<PacketSocket> {
        let proto = ethertype.to_be();
        // With a filter, the socket is opened for no protocol, so that it
        // takes in nothing — from any interface — until the filter is on
        // and the bind below names the protocol and the interface.
        let opened_for = if filter.is_empty() { proto } else { 0 };
        // SAFETY: socket(2); the result is checked and owned below.
        let raw = unsafe {
            libc::socket(
                libc::AF_PACKET,
                libc::SOCK_RAW | libc::SOCK_NONBLOCK | libc::SOCK_CLOEXEC,
                i32::from(opened_for),
            )
        };
        if raw < 0 {
            let e = io::Error::last_os_error();
            return Err(io::Error::new(
                e.kind(),
                format!("cannot open a packet socket (needs CAP_NET_RAW and AF_PACKET): {e}"),
            ));
        }
        // SAFETY: raw is a descriptor we just opened.
        let fd = unsafe { OwnedFd::from_raw_fd(raw) };
        if !filter.is_empty() {
            let prog = libc::sock_fprog { len: filter.len() as u16, filter: filter.as_ptr() as *mut libc::sock_filter };
            // SAFETY: setsockopt(2) with a sock_fprog that points into `filter`, which outlives the call.
            let rc = unsafe {
                libc::setsockopt(
                    fd.as_raw_fd(),
                    libc::SOL_SOCKET,
                    libc::SO_ATTACH_FILTER,
                    &prog as *const libc::sock_fprog as *const libc::c_void,
                    std::mem::size_of::<libc::sock_fprog>() as libc::socklen_t,
                )
            };
            if rc < 0 {
                return Err(io::Error::last_os_error());
            }
        }
        // SAFETY: a zeroed sockaddr_ll is valid; we set the fields bind needs.
        let mut sll: libc::sockaddr_ll = unsafe { std::mem::zeroed() };
        sll.sll_family = libc::AF_PACKET as u16;
        sll.sll_protocol = proto;
        sll.sll_ifindex = ifindex as i32;
        // SAFETY: bind(2) with a sockaddr_ll of the right size.
        let rc = unsafe {
            libc::bind(
                fd.as_raw_fd(),
                &sll as *const libc::sockaddr_ll as *const libc::sockaddr,
                std::mem::size_of::<libc::sockaddr_ll>() as libc::socklen_t,
            )
        };
        if rc < 0 {
            let e = io::Error::last_os_error();
            return Err(io::Error::new(e.kind(), format!("cannot bind a packet socket to interface {ifindex}: {e}")));
        }
        // SAFETY: the AsyncFd owns the descriptor while registered.
        let fd = unsafe { AsyncFd::register(fd) }.map_err(|e| io::Error::other(e.to_string()))?;
        Ok(PacketSocket { fd })
    }

    /// Receives one frame. Frames this host sent come back on a packet
    /// socket too (PACKET_OUTGOING); they are skipped.
    pub async fn recv(&self, buf: &mut [u8]) -> io::Result<usize> {
        loop {
            if let (n, false) = self.recv_either(buf).await? {
                return Ok(n);
            }
        }
    }

    /// Receives one frame, arriving or leaving: says whether it left this
    /// host (PACKET_OUTGOING) — from any socket but this one.
    pub async fn recv_either(&self, buf: &mut [u8]) -> io::Result<(usize, bool)> {
        loop {
            let mut guard = self.fd.readable().await?;
            let r = guard.try_io(|f| {
                // SAFETY: recvfrom(2) into our buffer, with a sockaddr_ll to learn the packet type.
                let mut sll: libc::sockaddr_ll = unsafe { std::mem::zeroed() };
                let mut len = std::mem::size_of::<libc::sockaddr_ll>() as libc::socklen_t;
                let n = unsafe {
                    libc::recvfrom(
                        f.get_ref().as_raw_fd(),
                        buf.as_mut_ptr() as *mut libc::c_void,
                        buf.len(),
                        0,
                        &mut sll as *mut libc::sockaddr_ll as *mut libc::sockaddr,
                        &mut len,
                    )
                };
                if n < 0 {
                    Err(io::Error::last_os_error())
                } else {
                    Ok((n as usize, sll.sll_pkttype))
                }
            });
            match r {
                Ok(Ok((n, t))) => return Ok((n, t == libc::PACKET_OUTGOING)),
                Ok(Err(e)) => return Err(e),
                Err(_would_block) => continue,
            }
        }
    }

    /// Sends one frame. A packet socket keeps ENETDOWN as a pending error
    /// when its link goes down, or when it is bound while the link is
    /// down, and the next call reports it once even if the link is up by
    /// then; so ENETDOWN is tried once more, and only a second one means
    /// the link is down now.
    pub async fn send(&self, frame: &[u8]) -> io::Result<()> {
        match self.send_once(frame).await {
            Err(e) if e.raw_os_error() == Some(libc::ENETDOWN) => self.send_once(frame).await,
            r => r,
        }
    }

    async fn send_once(&self, frame: &[u8]) -> io::Result<()> {
        loop {
            let mut guard = self.fd.writable().await?;
            // SAFETY: send(2) from a slice we own.
            match guard.try_io(|f| {
                let n = unsafe {
                    libc::send(f.get_ref().as_raw_fd(), frame.as_ptr() as *const libc::c_void, frame.len(), 0)
                };
                if n < 0 {
                    Err(io::Error::last_os_error())
                } else {
                    Ok(())
                }
            }) {
                Ok(r) => return r,
                Err(_would_block) => continue,
            }
        }
    }
}
