//! Kernel state through rtnetlink: veth pairs created with each end
//! already in its namespace, bridges, link state and addresses without
//! duplicate address detection.

use std::io;
use std::net::{IpAddr, Ipv6Addr};

use futures::TryStreamExt;
use rtnetlink::packet_route::address::{AddressAttribute, AddressFlags};
use rtnetlink::packet_route::link::{InfoData, InfoVeth, LinkAttribute, LinkMessage};
use rtnetlink::{Handle, LinkBridge, LinkUnspec, LinkVeth};

use super::netns::NetNs;

fn nl(what: String) -> impl FnOnce(rtnetlink::Error) -> io::Error {
    move |e| io::Error::other(format!("{what}: {e}"))
}

/// A netlink handle whose socket lives in `ns`; its connection is driven
/// on `rt`.
pub fn handle_in(ns: &NetNs, rt: &tokio::runtime::Runtime) -> io::Result<Handle> {
    // The socket is opened by a thread inside the namespace, and registered
    // with the lab's runtime, which then drives it from any thread.
    let rt_handle = rt.handle().clone();
    let (conn, handle, _) = ns.run_in(move || {
        let _entered = rt_handle.enter();
        rtnetlink::new_connection()
    })?;
    rt.spawn(conn);
    Ok(handle)
}

/// A netlink handle in the harness's own namespace.
pub fn root_handle(rt: &tokio::runtime::Runtime) -> io::Result<Handle> {
    let (conn, handle, _) = rtnetlink::new_connection()?;
    rt.spawn(conn);
    Ok(handle)
}

/// Creates `a` in `ns_a` and its peer `b` in `ns_b`, both with their MACs,
/// in one request, so neither end ever exists in the harness's namespace.
pub async fn veth(
    root: &Handle,
    ns_a: &NetNs,
    a: &str,
    mac_a: [u8; 6],
    ns_b: &NetNs,
    b: &str,
    mac_b: [u8; 6],
) -> io::Result<()> {
    let index = veth_indexes(root).await?;
    let mut peer = rtnetlink::LinkMessageBuilder::<LinkUnspec>::new()
        .name(b.to_string())
        .address(mac_b.to_vec())
        .setns_by_fd(ns_b.raw_fd())
        .build();
    peer.header.index = index + 1;
    let mut msg: LinkMessage = LinkVeth::new(a, b)
        .set_info_data(InfoData::Veth(InfoVeth::Peer(peer)))
        .address(mac_a.to_vec())
        .setns_by_fd(ns_a.raw_fd())
        .build();
    msg.header.index = index;
    root.link().add(msg).execute().await.map_err(nl(format!("creating veth {}:{a} <-> {}:{b}", ns_a.name, ns_b.name)))
}

/// Interface indexes for the two ends of a new veth, different from each
/// other. The kernel handles a carrier change of a veth end whose index
/// equals its peer's (possible across namespaces) as not urgent and
/// applies it up to a second later: a MAG would then learn late that an
/// MN went away, and what it sends on a link that just came up would be
/// dropped meanwhile. Indexes are requested high, away from the
/// harness's own namespace, where the request is made.
async fn veth_indexes(root: &Handle) -> io::Result<u32> {
    static NEXT: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
    for _ in 0..64 {
        let n = 200_000 + 2 * (NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed) % 1_000_000);
        // An index taken here would make the request change that link.
        let mut taken = false;
        for i in [n, n + 1] {
            let mut found = root.link().get().match_index(i).execute();
            taken |= matches!(found.try_next().await, Ok(Some(_)));
        }
        if !taken {
            return Ok(n);
        }
    }
    Err(io::Error::other("no free pair of interface indexes for a veth"))
}

pub async fn index(h: &Handle, name: &str) -> io::Result<u32> {
    let link = h
        .link()
        .get()
        .match_name(name.to_string())
        .execute()
        .try_next()
        .await
        .map_err(nl(format!("looking up link {name}")))?
        .ok_or_else(|| io::Error::new(io::ErrorKind::NotFound, format!("no link named {name}")))?;
    Ok(link.header.index)
}

pub async fn up(h: &Handle, name: &str) -> io::Result<()> {
    let i = index(h, name).await?;
    h.link().set(LinkUnspec::new_with_index(i).up().build()).execute().await.map_err(nl(format!("setting {name} up")))
}

pub async fn set_link(h: &Handle, name: &str, up: bool) -> io::Result<()> {
    let i = index(h, name).await?;
    let b = LinkUnspec::new_with_index(i);
    let msg = if up { b.up().build() } else { b.down().build() };
    h.link().set(msg).execute().await.map_err(nl(format!("setting {name} {}", if up { "up" } else { "down" })))
}

pub async fn bridge(h: &Handle, name: &str) -> io::Result<()> {
    h.link().add(LinkBridge::new(name).build()).execute().await.map_err(nl(format!("creating bridge {name}")))
}

pub async fn enslave(h: &Handle, port: &str, bridge: &str) -> io::Result<()> {
    let (p, b) = (index(h, port).await?, index(h, bridge).await?);
    h.link()
        .set(LinkUnspec::new_with_index(p).controller(b).build())
        .execute()
        .await
        .map_err(nl(format!("adding {port} to bridge {bridge}")))
}

/// Adds an IPv6 address with no duplicate address detection, so it is
/// usable at once.
pub async fn address(h: &Handle, name: &str, addr: Ipv6Addr, prefix_len: u8) -> io::Result<()> {
    let i = index(h, name).await?;
    let mut req = h.address().add(i, IpAddr::V6(addr), prefix_len);
    req.message_mut().attributes.push(AddressAttribute::Flags(AddressFlags::Nodad));
    req.execute().await.map_err(nl(format!("adding {addr}/{prefix_len} to {name}")))
}

pub async fn default_route(h: &Handle, via: Ipv6Addr) -> io::Result<()> {
    let msg = rtnetlink::RouteMessageBuilder::<Ipv6Addr>::new().gateway(via).build();
    h.route().add(msg).execute().await.map_err(nl(format!("adding a default route via {via}")))
}

/// Sends what goes to `addr` straight out of `port` to `mac`: a host
/// route on `port` and a permanent neighbour entry, so the kernel never
/// asks for `addr` there (on a bridge port it could not hear the answer,
/// which the bridge takes).
pub async fn host_via_port(h: &Handle, port: &str, addr: Ipv6Addr, mac: [u8; 6]) -> io::Result<()> {
    let i = index(h, port).await?;
    h.neighbours()
        .add(i, IpAddr::V6(addr))
        .link_layer_address(&mac)
        .execute()
        .await
        .map_err(nl(format!("adding the neighbour {addr} on {port}")))?;
    let msg =
        rtnetlink::RouteMessageBuilder::<Ipv6Addr>::new().destination_prefix(addr, 128).output_interface(i).build();
    h.route().add(msg).execute().await.map_err(nl(format!("adding a route to {addr} out of {port}")))
}

/// Names of the links in a namespace.
pub async fn links(h: &Handle) -> io::Result<Vec<String>> {
    let mut out = Vec::new();
    let mut s = h.link().get().execute();
    while let Some(l) = s.try_next().await.map_err(nl("listing links".into()))? {
        for a in l.attributes {
            if let LinkAttribute::IfName(n) = a {
                out.push(n);
            }
        }
    }
    Ok(out)
}
