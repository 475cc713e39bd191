//! What the data-plane tests share: the seed with MN1 as a plain host on
//! both MAGs, UDP sinks in its namespace that say where a datagram came
//! in, and the CN's sending socket.

use std::io::IoSliceMut;
use std::net::{Ipv6Addr, SocketAddrV6, UdpSocket};
use std::os::fd::AsRawFd;
use std::time::{Duration, Instant};

use nix::sys::socket::{recvmsg, setsockopt, sockopt, ControlMessageOwned, MsgFlags, SockaddrIn6};
use pmip_proto::lma::LmaCommand;
use pmiplab::lab::Lab;
use serde_json::json;

use super::*;

/// The seed network with MN1 a plain host (static addresses, no daemon):
/// if1 on MAG1 with pref1::1, if2 on MAG2 with pref2::1.
pub fn mn1_host_lab() -> Lab {
    let lab = seed_network();
    lab.veth("mag1", "to-if1", "mn1", "if1").unwrap();
    lab.veth("mag2", "to-if2", "mn1", "if2").unwrap();
    lab.address("mn1", "if1", pref(1).with_iid(1), 64).unwrap();
    lab.address("mn1", "if2", pref(2).with_iid(1), 64).unwrap();
    lab
}

/// A UDP socket on `port` in MN1's namespace that reports the interface
/// each datagram arrives on, for use from the test's thread.
pub fn sink(lab: &Lab, port: u16) -> UdpSocket {
    lab.run_in("mn1", move || {
        let s = UdpSocket::bind(SocketAddrV6::new(Ipv6Addr::UNSPECIFIED, port, 0, 0))?;
        setsockopt(&s, sockopt::Ipv6RecvPacketInfo, &true).map_err(std::io::Error::from)?;
        Ok(s)
    })
    .unwrap()
}

/// The index of MN1's interface `name`.
pub fn mn1_if_index(lab: &Lab, name: &'static str) -> u32 {
    lab.run_in("mn1", move || nix::net::if_::if_nametoindex(name).map_err(std::io::Error::from)).unwrap()
}

/// The CN's UDP socket, bound to its address and port 7000.
pub fn cn_socket(lab: &Lab) -> UdpSocket {
    lab.run_in("cn", || UdpSocket::bind(SocketAddrV6::new(a(CN), 7000, 0, 0))).unwrap()
}

/// Sends one probe datagram from `cn` to `dst`, `port`.
pub fn probe(cn: &UdpSocket, dst: Ipv6Addr, port: u16) {
    cn.send_to(b"pmiplab probe", SocketAddrV6::new(dst, port, 0, 0)).unwrap();
}

/// Waits for one datagram and says on which interface index it arrived.
pub fn arrival(sock: &UdpSocket, limit: Duration) -> Option<u32> {
    let deadline = Instant::now() + limit;
    sock.set_nonblocking(true).ok()?;
    let mut buf = [0u8; 2048];
    let mut cmsg = nix::cmsg_space!(nix::libc::in6_pktinfo);
    loop {
        let mut iov = [IoSliceMut::new(&mut buf)];
        match recvmsg::<SockaddrIn6>(sock.as_raw_fd(), &mut iov, Some(&mut cmsg), MsgFlags::empty()) {
            Ok(msg) => {
                for c in msg.cmsgs().ok()? {
                    if let ControlMessageOwned::Ipv6PacketInfo(info) = c {
                        return Some(info.ipi6_ifindex);
                    }
                }
                return Some(0);
            }
            Err(nix::errno::Errno::EAGAIN) if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(2)),
            Err(_) => return None,
        }
    }
}

/// Binds the seed's flow Y and moves it to MAG1 (BID 1) by FMI, and waits
/// until the LMA's flow mobility cache says so and MAG1 routes pref2 onto
/// if1's link.
pub fn move_flow_y_to_mag1(lab: &Lab, limit: Duration) {
    ok(lab.request("lma", &json!({"cmd": "lma", "command": bind_flow_y()})).unwrap());
    ok(lab
        .request("lma", &json!({"cmd": "lma", "command": LmaCommand::MoveFlow { mn_id: MN.into(), fid: 2, to_bid: 1 }}))
        .unwrap());
    lab.wait_for("lma", limit, |s| s["tables"]["flow_mobility_cache"][0]["bids"][0] == 1).unwrap();
    lab.wait_for("mag1", limit, |s| {
        s["data_plane"]["installed"]
            .as_array()
            .is_some_and(|i| i.iter().any(|r| r.as_str().unwrap_or("").starts_with("route 2001:db8:2::/64 dev to-if1")))
    })
    .unwrap();
}
