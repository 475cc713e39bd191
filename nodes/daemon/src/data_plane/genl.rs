//! `ip sr tunsrc set <address>` over generic netlink: the source address
//! the namespace's seg6 encapsulations write into the outer header
//! (family "SEG6", `include/uapi/linux/seg6_genl.h`).

use std::io;
use std::net::Ipv6Addr;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};

const NETLINK_GENERIC: libc::c_int = 16;
const GENL_ID_CTRL: u16 = 0x10;
const CTRL_CMD_GETFAMILY: u8 = 3;
const CTRL_ATTR_FAMILY_ID: u16 = 1;
const CTRL_ATTR_FAMILY_NAME: u16 = 2;
const SEG6_CMD_SET_TUNSRC: u8 = 3;
const SEG6_CMD_GET_TUNSRC: u8 = 4;
const SEG6_ATTR_DST: u16 = 1;
const NLM_F_REQUEST: u16 = 1;
const NLM_F_ACK: u16 = 4;
const NLMSG_ERROR: u16 = 2;

struct Genl {
    fd: OwnedFd,
    seq: u32,
}

fn align(n: usize) -> usize {
    (n + 3) & !3
}

impl Genl {
    fn open() -> io::Result<Genl> {
        // SAFETY: plain socket(2); the descriptor is owned right away.
        let fd = unsafe { libc::socket(libc::AF_NETLINK, libc::SOCK_RAW | libc::SOCK_CLOEXEC, NETLINK_GENERIC) };
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: `fd` is a fresh descriptor nobody else owns.
        let fd = unsafe { OwnedFd::from_raw_fd(fd) };
        let tv = libc::timeval { tv_sec: 2, tv_usec: 0 };
        // SAFETY: a timeval of the right size for SO_RCVTIMEO.
        unsafe {
            libc::setsockopt(
                fd.as_raw_fd(),
                libc::SOL_SOCKET,
                libc::SO_RCVTIMEO,
                &tv as *const _ as *const libc::c_void,
                std::mem::size_of::<libc::timeval>() as u32,
            );
        }
        Ok(Genl { fd, seq: 1 })
    }

    /// Sends one request (header, genl header, attributes) and returns the
    /// payload of the answer after the genl header, or the kernel's error.
    fn request(&mut self, family: u16, flags: u16, cmd: u8, attrs: &[(u16, &[u8])]) -> io::Result<Vec<u8>> {
        let mut msg = vec![0u8; 20];
        for (kind, value) in attrs {
            let len = 4 + value.len();
            msg.extend_from_slice(&(len as u16).to_ne_bytes());
            msg.extend_from_slice(&kind.to_ne_bytes());
            msg.extend_from_slice(value);
            msg.resize(align(msg.len()), 0);
        }
        self.seq += 1;
        let total = msg.len() as u32;
        msg[0..4].copy_from_slice(&total.to_ne_bytes());
        msg[4..6].copy_from_slice(&family.to_ne_bytes());
        msg[6..8].copy_from_slice(&(NLM_F_REQUEST | flags).to_ne_bytes());
        msg[8..12].copy_from_slice(&self.seq.to_ne_bytes());
        msg[16] = cmd;
        msg[17] = 1;
        // SAFETY: `msg` is a valid buffer of its length; the kernel is the
        // default destination of an unbound netlink socket.
        let n = unsafe { libc::send(self.fd.as_raw_fd(), msg.as_ptr() as *const libc::c_void, msg.len(), 0) };
        if n < 0 {
            return Err(io::Error::last_os_error());
        }
        let mut answer = None;
        loop {
            let mut buf = vec![0u8; 8192];
            // SAFETY: `buf` is writable for its length.
            let n = unsafe { libc::recv(self.fd.as_raw_fd(), buf.as_mut_ptr() as *mut libc::c_void, buf.len(), 0) };
            if n < 0 {
                return Err(io::Error::last_os_error());
            }
            let buf = &buf[..n as usize];
            let mut off = 0;
            while off + 16 <= buf.len() {
                let len = u32::from_ne_bytes([buf[off], buf[off + 1], buf[off + 2], buf[off + 3]]) as usize;
                let kind = u16::from_ne_bytes([buf[off + 4], buf[off + 5]]);
                if len < 16 || off + len > buf.len() {
                    return Err(io::Error::other("a truncated netlink answer"));
                }
                let body = &buf[off + 16..off + len];
                if kind == NLMSG_ERROR {
                    let code = body.get(0..4).map(|b| i32::from_ne_bytes([b[0], b[1], b[2], b[3]])).unwrap_or(-1);
                    if code != 0 {
                        return Err(io::Error::from_raw_os_error(-code));
                    }
                    return Ok(answer.unwrap_or_default());
                }
                answer = Some(body.get(4..).unwrap_or_default().to_vec());
                if flags & NLM_F_ACK == 0 {
                    return Ok(answer.unwrap_or_default());
                }
                off += align(len);
            }
        }
    }
}

/// The attributes of a genl payload, as (type, value).
fn attributes(mut b: &[u8]) -> Vec<(u16, Vec<u8>)> {
    let mut out = Vec::new();
    while b.len() >= 4 {
        let len = u16::from_ne_bytes([b[0], b[1]]) as usize;
        let kind = u16::from_ne_bytes([b[2], b[3]]) & 0x3fff;
        if len < 4 || len > b.len() {
            break;
        }
        out.push((kind, b[4..len].to_vec()));
        b = &b[align(len).min(b.len())..];
    }
    out
}

fn seg6_family(g: &mut Genl) -> io::Result<u16> {
    let answer = g
        .request(GENL_ID_CTRL, 0, CTRL_CMD_GETFAMILY, &[(CTRL_ATTR_FAMILY_NAME, b"SEG6\0")])
        .map_err(|e| io::Error::new(e.kind(), format!("the kernel has no SEG6 generic netlink family: {e}")))?;
    attributes(&answer)
        .into_iter()
        .find(|(k, v)| *k == CTRL_ATTR_FAMILY_ID && v.len() >= 2)
        .map(|(_, v)| u16::from_ne_bytes([v[0], v[1]]))
        .ok_or_else(|| io::Error::other("the SEG6 family answer carries no family id"))
}

/// `ip sr tunsrc set <addr>` for this namespace.
pub fn set_tunsrc(addr: Ipv6Addr) -> io::Result<()> {
    let mut g = Genl::open()?;
    let family = seg6_family(&mut g)?;
    g.request(family, NLM_F_ACK, SEG6_CMD_SET_TUNSRC, &[(SEG6_ATTR_DST, &addr.octets())])
        .map(|_| ())
        .map_err(|e| io::Error::new(e.kind(), format!("setting the seg6 tunnel source to {addr}: {e}")))
}

/// `ip sr tunsrc show`.
pub fn tunsrc() -> io::Result<Ipv6Addr> {
    let mut g = Genl::open()?;
    let family = seg6_family(&mut g)?;
    let answer = g.request(family, 0, SEG6_CMD_GET_TUNSRC, &[])?;
    attributes(&answer)
        .into_iter()
        .find(|(k, v)| *k == SEG6_ATTR_DST && v.len() == 16)
        .and_then(|(_, v)| <[u8; 16]>::try_from(v.as_slice()).ok())
        .map(Ipv6Addr::from)
        .ok_or_else(|| io::Error::other("the seg6 tunnel source answer carries no address"))
}
