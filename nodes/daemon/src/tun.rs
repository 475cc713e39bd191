//! A TUN device (IFF_TUN, no packet information): whole IPv6 packets in
//! and out, read and written by the daemon.

use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};

use tokio::io::unix::AsyncFd;

// TUNSETIFF takes a `struct ifreq` (libc's, not one laid out here) with
// the name and the flags; nix makes the call and reads errno.
nix::ioctl_write_ptr_bad!(tunsetiff, libc::TUNSETIFF, libc::ifreq);

pub struct Tun {
    fd: AsyncFd<OwnedFd>,
}

impl Tun {
    pub fn open(name: &str) -> io::Result<Tun> {
        if name.is_empty() || name.len() >= libc::IFNAMSIZ {
            return Err(io::Error::new(io::ErrorKind::InvalidInput, format!("'{name}' is not a valid interface name")));
        }
        // SAFETY: open(2) with a constant path; the result is checked.
        let raw = unsafe { libc::open(c"/dev/net/tun".as_ptr(), libc::O_RDWR | libc::O_NONBLOCK | libc::O_CLOEXEC) };
        if raw < 0 {
            let e = io::Error::last_os_error();
            return Err(io::Error::new(e.kind(), format!("this kernel offers no TUN device (/dev/net/tun): {e}")));
        }
        // SAFETY: raw is a descriptor we just opened and own.
        let fd = unsafe { OwnedFd::from_raw_fd(raw) };
        // SAFETY: ifreq is plain data; all zeroes is a valid value.
        let mut req: libc::ifreq = unsafe { std::mem::zeroed() };
        for (d, s) in req.ifr_name.iter_mut().zip(name.as_bytes()) {
            *d = *s as libc::c_char;
        }
        req.ifr_ifru.ifru_flags = (libc::IFF_TUN | libc::IFF_NO_PI) as libc::c_short;
        // SAFETY: the kernel reads the ifreq, which lives through the call.
        if let Err(e) = unsafe { tunsetiff(fd.as_raw_fd(), &req) } {
            let e = io::Error::from(e);
            return Err(io::Error::new(e.kind(), format!("cannot create TUN device {name}: {e}")));
        }
        // SAFETY: the AsyncFd owns the descriptor while registered.
        let fd = unsafe { AsyncFd::register(fd) }.map_err(|e| io::Error::other(e.to_string()))?;
        Ok(Tun { fd })
    }

    pub async fn read(&self, buf: &mut [u8]) -> io::Result<usize> {
        loop {
            let mut guard = self.fd.readable().await?;
            match guard.try_io(|f| nix::unistd::read(f.get_ref(), buf).map_err(io::Error::from)) {
                Ok(r) => return r,
                Err(_would_block) => continue,
            }
        }
    }

    /// Reads a packet if one is already waiting; `None` when none is.
    pub fn try_read(&self, buf: &mut [u8]) -> io::Result<Option<usize>> {
        // The descriptor is non-blocking: EAGAIN is "nothing waiting".
        match nix::unistd::read(self.fd.get_ref(), buf) {
            Ok(n) => Ok(Some(n)),
            Err(nix::errno::Errno::EAGAIN) => Ok(None),
            Err(e) => Err(e.into()),
        }
    }

    pub async fn write(&self, pkt: &[u8]) -> io::Result<()> {
        loop {
            let mut guard = self.fd.writable().await?;
            match guard.try_io(|f| nix::unistd::write(f.get_ref(), pkt).map(drop).map_err(io::Error::from)) {
                Ok(r) => return r,
                Err(_would_block) => continue,
            }
        }
    }
}
