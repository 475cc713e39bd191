//! The daemon's own namespace through rtnetlink: link state, routes and
//! policy rules. What it installs it remembers, and removes on shutdown.

use std::collections::BTreeMap;
use std::io;
use std::net::Ipv6Addr;

use futures::TryStreamExt;
use pmip_proto::Prefix;
use rtnetlink::packet_route::address::{AddressAttribute, AddressFlags};
use rtnetlink::packet_route::link::{LinkAttribute, LinkMessage};
use rtnetlink::packet_route::route::{RouteMessage, RouteProtocol};
use rtnetlink::packet_route::rule::{RuleAction, RuleMessage};
use rtnetlink::{Handle, LinkUnspec, RouteMessageBuilder};

fn nl(what: String) -> impl FnOnce(rtnetlink::Error) -> io::Error {
    move |e| io::Error::other(format!("{what}: {e}"))
}

enum Installed {
    Route(RouteMessage),
    Rule(RuleMessage),
}

/// The route protocol number pmiplab's daemons mark their routes with, so
/// that a restarted daemon finds what a crashed one left (`ip -6 route
/// show proto 154`).
pub const ROUTE_PROTOCOL: u8 = 154;
/// The priority of pmiplab's policy rules, for the same reason.
pub const RULE_PRIORITY: u32 = 1000;

pub struct Kernel {
    h: Handle,
    installed: Vec<(String, Installed)>,
}

/// The link-local address a MAC gives by modified EUI-64 (RFC 4291 App. A).
pub fn link_local_of(mac: &[u8]) -> Option<Ipv6Addr> {
    let m: [u8; 6] = mac.try_into().ok()?;
    Some(Ipv6Addr::new(
        0xfe80,
        0,
        0,
        0,
        u16::from_be_bytes([m[0] ^ 0x02, m[1]]),
        u16::from_be_bytes([m[2], 0xff]),
        u16::from_be_bytes([0xfe, m[3]]),
        u16::from_be_bytes([m[4], m[5]]),
    ))
}

/// Turns the kernel's IPv6 off on an interface, so that a daemon owns
/// every frame on it.
pub fn disable_ipv6(iface: &str) -> io::Result<()> {
    std::fs::write(format!("/proc/sys/net/ipv6/conf/{iface}/disable_ipv6"), "1")
        .map_err(|e| io::Error::new(e.kind(), format!("cannot turn the kernel's IPv6 off on {iface}: {e}")))
}

/// Turns IPv6 forwarding on in this namespace.
pub fn enable_forwarding() -> io::Result<()> {
    std::fs::write("/proc/sys/net/ipv6/conf/all/forwarding", "1")
        .map_err(|e| io::Error::new(e.kind(), format!("cannot enable IPv6 forwarding: {e}")))
}

impl Kernel {
    /// The netlink handle, for requests this type does not wrap.
    pub fn handle(&self) -> &Handle {
        &self.h
    }

    pub fn new() -> io::Result<Kernel> {
        let (conn, h, _) = rtnetlink::new_connection()?;
        tokio::spawn(conn);
        Ok(Kernel { h, installed: Vec::new() })
    }

    /// The link named `name`, as the kernel describes it.
    async fn link(&self, name: &str) -> io::Result<LinkMessage> {
        self.h
            .link()
            .get()
            .match_name(name.to_string())
            .execute()
            .try_next()
            .await
            .map_err(nl(format!("looking up link {name}")))?
            .ok_or_else(|| io::Error::new(io::ErrorKind::NotFound, format!("no link named {name}")))
    }

    pub async fn index(&self, name: &str) -> io::Result<u32> {
        Ok(self.link(name).await?.header.index)
    }

    /// The link-layer address of an interface.
    pub async fn mac(&self, name: &str) -> io::Result<[u8; 6]> {
        let link = self.link(name).await?;
        link.attributes
            .iter()
            .find_map(|a| match a {
                LinkAttribute::Address(m) => <[u8; 6]>::try_from(m.as_slice()).ok(),
                _ => None,
            })
            .ok_or_else(|| io::Error::new(io::ErrorKind::NotFound, format!("{name} has no Ethernet address")))
    }

    /// Adds an address with no duplicate address detection.
    pub async fn add_address(&mut self, name: &str, addr: Ipv6Addr, prefix_len: u8) -> io::Result<()> {
        let i = self.index(name).await?;
        let mut req = self.h.address().add(i, addr.into(), prefix_len);
        req.message_mut().attributes.push(AddressAttribute::Flags(AddressFlags::Nodad));
        req.replace().execute().await.map_err(nl(format!("adding {addr}/{prefix_len} to {name}")))
    }

    /// The IPv6 addresses on `name`.
    pub async fn addresses(&self, name: &str) -> io::Result<Vec<Ipv6Addr>> {
        let i = self.index(name).await?;
        let mut out = Vec::new();
        let mut s = self.h.address().get().set_link_index_filter(i).execute();
        while let Some(m) = s.try_next().await.map_err(nl(format!("listing the addresses of {name}")))? {
            for a in m.attributes {
                if let AddressAttribute::Address(std::net::IpAddr::V6(v6)) = a {
                    out.push(v6);
                }
            }
        }
        Ok(out)
    }

    pub async fn del_address(&mut self, name: &str, addr: Ipv6Addr) -> io::Result<()> {
        let i = self.index(name).await?;
        let mut s = self.h.address().get().set_link_index_filter(i).set_address_filter(addr.into()).execute();
        while let Some(m) = s.try_next().await.map_err(nl(format!("looking up {addr} on {name}")))? {
            self.h.address().del(m).execute().await.map_err(nl(format!("removing {addr} from {name}")))?;
        }
        Ok(())
    }

    /// A permanent neighbour entry for `addr` at `mac` on `name`, replacing
    /// any other; the kernel then never solicits it.
    pub async fn put_neighbour(&self, name: &str, addr: Ipv6Addr, mac: [u8; 6]) -> io::Result<()> {
        let i = self.index(name).await?;
        self.h
            .neighbours()
            .add(i, addr.into())
            .link_layer_address(&mac)
            .replace()
            .execute()
            .await
            .map_err(nl(format!("adding the neighbour {addr} on {name}")))
    }

    /// Raises to at least `mtu` the MTU of link `index` and, when it is a
    /// bridge, of every port of it; returns the names of the links changed.
    pub async fn raise_mtu(&self, index: u32, mtu: u32) -> io::Result<Vec<String>> {
        let mut changed = Vec::new();
        let mut links = self.h.link().get().execute();
        let mut targets = Vec::new();
        while let Some(l) = links.try_next().await.map_err(nl("listing links".into()))? {
            let mut name = String::new();
            let (mut cur, mut port) = (0, false);
            for a in &l.attributes {
                match a {
                    LinkAttribute::IfName(n) => name = n.clone(),
                    LinkAttribute::Mtu(m) => cur = *m,
                    LinkAttribute::Controller(c) => port = *c == index,
                    _ => {}
                }
            }
            if (l.header.index == index || port) && cur < mtu {
                targets.push((l.header.index, name, port));
            }
        }
        // Ports first: a bridge takes no MTU above its ports'.
        targets.sort_by_key(|t| !t.2);
        for (i, name, _) in targets {
            self.h
                .link()
                .set(LinkUnspec::new_with_index(i).mtu(mtu).build())
                .execute()
                .await
                .map_err(nl(format!("setting the MTU of {name} to {mtu}")))?;
            changed.push(name);
        }
        Ok(changed)
    }

    pub async fn up(&self, name: &str, mtu: Option<u32>) -> io::Result<()> {
        let i = self.index(name).await?;
        let mut b = LinkUnspec::new_with_index(i).up();
        if let Some(m) = mtu {
            b = b.mtu(m);
        }
        self.h.link().set(b.build()).execute().await.map_err(nl(format!("setting {name} up")))
    }

    /// Removes the routes and policy rules a daemon of this node left in
    /// the kernel when it died without cleaning up (SIGKILL, a crash): they
    /// carry [`ROUTE_PROTOCOL`] and [`RULE_PRIORITY`]. Returns how many.
    pub async fn sweep_leftovers(&mut self) -> io::Result<usize> {
        let mut stale = Vec::new();
        let mut dump = self.h.route().get(RouteMessageBuilder::<Ipv6Addr>::new().build()).execute();
        while let Some(r) = dump.try_next().await.map_err(nl("listing routes".into()))? {
            if r.header.protocol == RouteProtocol::Other(ROUTE_PROTOCOL) {
                stale.push(r);
            }
        }
        let mut removed = stale.len();
        for r in stale {
            self.h.route().del(r).execute().await.map_err(nl("removing a route a previous daemon left".into()))?;
        }
        let mut rules = Vec::new();
        let mut dump = self.h.rule().get(rtnetlink::IpVersion::V6).execute();
        while let Some(r) = dump.try_next().await.map_err(nl("listing rules".into()))? {
            let prio = r.attributes.iter().find_map(|a| match a {
                rtnetlink::packet_route::rule::RuleAttribute::Priority(p) => Some(*p),
                _ => None,
            });
            let ours = r.attributes.iter().any(|a| {
                matches!(a, rtnetlink::packet_route::rule::RuleAttribute::Protocol(p) if *p == RouteProtocol::Other(ROUTE_PROTOCOL))
            });
            if (prio == Some(RULE_PRIORITY) || ours) && r.header.table != 255 {
                rules.push(r);
            }
        }
        removed += rules.len();
        for r in rules {
            self.h.rule().del(r).execute().await.map_err(nl("removing a rule a previous daemon left".into()))?;
        }
        Ok(removed)
    }

    /// A route to `prefix` out of `dev`, through `via` if given, in `table`.
    pub async fn add_route(&mut self, prefix: Prefix, dev: &str, via: Option<Ipv6Addr>, table: u32) -> io::Result<()> {
        let i = self.index(dev).await?;
        let mut b = RouteMessageBuilder::<Ipv6Addr>::new()
            .destination_prefix(prefix.addr(), prefix.prefix_len())
            .output_interface(i)
            .protocol(RouteProtocol::Other(ROUTE_PROTOCOL));
        if let Some(g) = via {
            b = b.gateway(g);
        }
        if table != 254 {
            b = b.table_id(table);
        }
        let msg = b.build();
        let what =
            format!("route {prefix} dev {dev}{} table {table}", via.map(|g| format!(" via {g}")).unwrap_or_default());
        self.h.route().add(msg.clone()).replace().execute().await.map_err(nl(format!("adding {what}")))?;
        self.installed.retain(|(w, _)| *w != what);
        self.installed.push((what, Installed::Route(msg)));
        Ok(())
    }

    pub async fn del_route(&mut self, prefix: Prefix, dev: &str, via: Option<Ipv6Addr>, table: u32) -> io::Result<()> {
        let what =
            format!("route {prefix} dev {dev}{} table {table}", via.map(|g| format!(" via {g}")).unwrap_or_default());
        self.remove(&what).await
    }

    /// A policy rule: packets from `prefix` look up `table`.
    pub async fn add_rule(&mut self, prefix: Prefix, table: u32) -> io::Result<()> {
        let what = format!("rule from {prefix} lookup {table}");
        if self.installed.iter().any(|(w, _)| *w == what) {
            return Ok(());
        }
        let mut req = self
            .h
            .rule()
            .add()
            .v6()
            .source_prefix(prefix.addr(), prefix.prefix_len())
            .table_id(table)
            .priority(RULE_PRIORITY)
            .action(RuleAction::ToTable);
        let msg = req.message_mut().clone();
        req.execute().await.map_err(nl(format!("adding {what}")))?;
        self.installed.push((what, Installed::Rule(msg)));
        Ok(())
    }

    pub async fn del_rule(&mut self, prefix: Prefix, table: u32) -> io::Result<()> {
        self.remove(&format!("rule from {prefix} lookup {table}")).await
    }

    /// Adds (or replaces) a route built by the caller, remembered under
    /// `what` so that a later [`Kernel::remove`] or [`Kernel::cleanup`]
    /// takes it away. A route already remembered under `what` is replaced.
    pub async fn put_route(&mut self, what: String, msg: RouteMessage) -> io::Result<()> {
        self.h.route().add(msg.clone()).replace().execute().await.map_err(nl(format!("adding {what}")))?;
        self.installed.retain(|(w, _)| *w != what);
        self.installed.push((what, Installed::Route(msg)));
        Ok(())
    }

    /// Adds a policy rule built by the caller, remembered under `what`;
    /// nothing happens when one is already remembered under that name.
    pub async fn put_rule(&mut self, what: String, msg: RuleMessage) -> io::Result<()> {
        if self.installed.iter().any(|(w, _)| *w == what) {
            return Ok(());
        }
        let mut req = self.h.rule().add();
        *req.message_mut() = msg.clone();
        req.execute().await.map_err(nl(format!("adding {what}")))?;
        self.installed.push((what, Installed::Rule(msg)));
        Ok(())
    }

    /// Adds a route that is not remembered (a probe, a scratch entry).
    pub async fn add_route_once(&self, msg: RouteMessage) -> Result<(), rtnetlink::Error> {
        self.h.route().add(msg).replace().execute().await
    }

    /// Removes a route that is not remembered.
    pub async fn del_route_once(&self, msg: RouteMessage) -> Result<(), rtnetlink::Error> {
        self.h.route().del(msg).execute().await
    }

    /// Adds a rule that is not remembered; an existing equal rule is fine.
    pub async fn add_rule_once(&self, msg: RuleMessage) -> io::Result<()> {
        let mut req = self.h.rule().add();
        *req.message_mut() = msg;
        match req.execute().await {
            Ok(()) => Ok(()),
            Err(rtnetlink::Error::NetlinkError(e)) if e.raw_code() == -libc::EEXIST => Ok(()),
            Err(e) => Err(io::Error::other(format!("adding a policy rule: {e}"))),
        }
    }

    /// The IPv6 policy rules as the kernel reports them.
    pub async fn rules(&self) -> io::Result<Vec<RuleMessage>> {
        let mut out = Vec::new();
        let mut dump = self.h.rule().get(rtnetlink::IpVersion::V6).execute();
        while let Some(r) = dump.try_next().await.map_err(nl("listing rules".into()))? {
            out.push(r);
        }
        Ok(out)
    }

    /// Removes a rule that is not remembered.
    pub async fn del_rule_once(&self, msg: RuleMessage) -> io::Result<()> {
        self.h.rule().del(msg).execute().await.map_err(nl("removing a policy rule".into()))
    }

    /// The interface that holds `addr`: its index and name.
    pub async fn holder_of(&self, addr: Ipv6Addr) -> io::Result<(u32, String)> {
        let mut s = self.h.address().get().set_address_filter(addr.into()).execute();
        if let Some(m) = s.try_next().await.map_err(nl(format!("looking up {addr}")))? {
            let index = m.header.index;
            let link = self.h.link().get().match_index(index).execute().try_next().await;
            if let Ok(Some(l)) = link {
                for a in &l.attributes {
                    if let LinkAttribute::IfName(n) = a {
                        return Ok((index, n.clone()));
                    }
                }
            }
            return Ok((index, format!("if{index}")));
        }
        Err(io::Error::new(io::ErrorKind::NotFound, format!("no interface holds {addr}")))
    }

    pub(crate) async fn remove(&mut self, what: &str) -> io::Result<()> {
        let Some(i) = self.installed.iter().position(|(w, _)| w == what) else {
            return Ok(());
        };
        let (w, item) = self.installed.remove(i);
        match item {
            Installed::Route(m) => self.h.route().del(m).execute().await.map_err(nl(format!("removing {w}"))),
            Installed::Rule(m) => self.h.rule().del(m).execute().await.map_err(nl(format!("removing {w}"))),
        }
    }

    /// Removes everything installed, newest first.
    pub async fn cleanup(&mut self) -> Vec<String> {
        let mut failed = Vec::new();
        while let Some((w, _)) = self.installed.last() {
            let w = w.clone();
            if let Err(e) = self.remove(&w).await {
                failed.push(e.to_string());
            }
        }
        failed
    }

    /// The IPv6 routes (all tables but `local`) and policy rules as the
    /// kernel reports them now, one line each.
    pub async fn read_back(&self) -> io::Result<(Vec<String>, Vec<String>)> {
        use rtnetlink::packet_route::route::{RouteAddress, RouteAttribute};
        use rtnetlink::packet_route::rule::RuleAttribute;
        let mut names = BTreeMap::new();
        let mut links = self.h.link().get().execute();
        while let Some(l) = links.try_next().await.map_err(nl("listing links".into()))? {
            for a in &l.attributes {
                if let LinkAttribute::IfName(n) = a {
                    names.insert(l.header.index, n.clone());
                }
            }
        }
        let mut routes = Vec::new();
        let mut dump = self.h.route().get(RouteMessageBuilder::<Ipv6Addr>::new().build()).execute();
        while let Some(r) = dump.try_next().await.map_err(nl("listing routes".into()))? {
            let mut table = u32::from(r.header.table);
            let (mut dst, mut via, mut dev, mut encap) = (None, None, None, String::new());
            for a in &r.attributes {
                match a {
                    RouteAttribute::Encap(e) => encap = describe_encap(e),
                    RouteAttribute::Table(t) => table = *t,
                    RouteAttribute::Destination(RouteAddress::Inet6(d)) => dst = Some(*d),
                    RouteAttribute::Gateway(RouteAddress::Inet6(g)) => via = Some(*g),
                    RouteAttribute::Oif(i) => dev = names.get(i).cloned(),
                    _ => {}
                }
            }
            let dst = dst.unwrap_or(Ipv6Addr::UNSPECIFIED);
            if table == 255 || dst.is_multicast() {
                continue;
            }
            let kind = match r.header.kind {
                rtnetlink::packet_route::route::RouteType::BlackHole => "blackhole ",
                _ => "",
            };
            routes.push(format!(
                "{kind}{}/{}{}{encap} dev {} table {table}",
                dst,
                r.header.destination_prefix_length,
                via.map(|g| format!(" via {g}")).unwrap_or_default(),
                dev.unwrap_or_else(|| "?".into())
            ));
        }
        let mut rules = Vec::new();
        let mut dump = self.h.rule().get(rtnetlink::IpVersion::V6).execute();
        while let Some(r) = dump.try_next().await.map_err(nl("listing rules".into()))? {
            let (mut from, mut table, mut prio) = (None, u32::from(r.header.table), 0);
            // Selectors in `ip rule`'s order, whatever the kernel's.
            let mut extra: [String; 5] = Default::default();
            for a in &r.attributes {
                match a {
                    RuleAttribute::Source(std::net::IpAddr::V6(s)) => from = Some(*s),
                    RuleAttribute::Destination(std::net::IpAddr::V6(d)) => {
                        extra[0] = format!(" to {d}/{}", r.header.dst_len)
                    }
                    RuleAttribute::FwMark(m) => extra[1] = format!(" fwmark {m:#x}"),
                    RuleAttribute::IpProtocol(p) => extra[2] = format!(" ipproto {}", i32::from(*p)),
                    RuleAttribute::SourcePortRange(p) => extra[3] = format!(" sport {}-{}", p.start, p.end),
                    RuleAttribute::DestinationPortRange(p) => extra[4] = format!(" dport {}-{}", p.start, p.end),
                    RuleAttribute::Table(t) => table = *t,
                    RuleAttribute::Priority(p) => prio = *p,
                    _ => {}
                }
            }
            let extra = extra.concat();
            let from = from.map(|s| format!("{s}/{}", r.header.src_len)).unwrap_or_else(|| "all".into());
            let action = match r.header.action {
                RuleAction::Blackhole => "blackhole".to_string(),
                _ => format!("lookup {table}"),
            };
            rules.push(format!("{prio}: from {from}{extra} {action}"));
        }
        Ok((routes, rules))
    }

    pub fn installed(&self) -> Vec<String> {
        self.installed.iter().map(|(w, _)| w.clone()).collect()
    }
}

/// A lightweight tunnel encapsulation as `ip route` shows it, roughly.
fn describe_encap(e: &[rtnetlink::packet_route::route::RouteLwTunnelEncap]) -> String {
    use rtnetlink::packet_route::route::{RouteLwTunnelEncap, RouteSeg6IpTunnel, RouteSeg6LocalTunnel};
    let mut out = String::new();
    for a in e {
        match a {
            RouteLwTunnelEncap::Seg6(RouteSeg6IpTunnel::Seg6(h)) => {
                let mode = match u32::from(h.mode) {
                    0 => "inline".to_string(),
                    1 => "encap".to_string(),
                    3 => "encap.red".to_string(),
                    m => format!("mode {m}"),
                };
                let segs: Vec<String> = h.segments.iter().map(|s| s.to_string()).collect();
                out.push_str(&format!(" encap seg6 mode {mode} segs {}", segs.join(",")));
            }
            RouteLwTunnelEncap::Seg6(RouteSeg6IpTunnel::Src(a)) => out.push_str(&format!(" tunsrc {a}")),
            RouteLwTunnelEncap::Seg6Local(RouteSeg6LocalTunnel::Action(a)) => {
                out.push_str(&format!(" encap seg6local action {a}"))
            }
            RouteLwTunnelEncap::Seg6Local(RouteSeg6LocalTunnel::Table(t)) => out.push_str(&format!(" table {t}")),
            RouteLwTunnelEncap::Other(nla) => out.push_str(&describe_bpf_encap(nla)),
            _ => {}
        }
    }
    out
}

/// An `encap bpf` attribute as `ip route` shows it: the xmit program's
/// name (the kernel reports the name, not the program), and the headroom.
fn describe_bpf_encap(nla: &rtnetlink::packet_core::DefaultNla) -> String {
    use rtnetlink::packet_core::Nla;
    let mut value = vec![0u8; nla.value_len()];
    nla.emit_value(&mut value);
    match nla.kind() & 0x3fff {
        3 => {
            let mut name = None;
            let mut rest = value.as_slice();
            while rest.len() >= 4 {
                let len = usize::from(u16::from_ne_bytes([rest[0], rest[1]]));
                let kind = u16::from_ne_bytes([rest[2], rest[3]]) & 0x3fff;
                if len < 4 || len > rest.len() {
                    break;
                }
                if kind == 2 {
                    let text = &rest[4..len];
                    let end = text.iter().position(|b| *b == 0).unwrap_or(text.len());
                    name = Some(String::from_utf8_lossy(&text[..end]).into_owned());
                }
                rest = &rest[len.next_multiple_of(4).min(rest.len())..];
            }
            format!(" encap bpf xmit {}", name.unwrap_or_else(|| "(unnamed)".into()))
        }
        4 if value.len() >= 4 => format!(" headroom {}", u32::from_ne_bytes([value[0], value[1], value[2], value[3]])),
        _ => String::new(),
    }
}
