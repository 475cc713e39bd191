//! Carrier changes of named interfaces, from rtnetlink link notifications
//! (`ip monitor link`): how a MAG learns an MN interface went away and how
//! the MN learns an interface came up.

use std::collections::BTreeMap;
use std::io;

use futures::StreamExt;
use rtnetlink::packet_core::NetlinkPayload;
use rtnetlink::packet_route::link::{LinkAttribute, LinkFlags, LinkMessage};
use rtnetlink::packet_route::RouteNetlinkMessage;
use rtnetlink::MulticastGroup;
use tokio::sync::mpsc;

fn name_and_carrier(m: &LinkMessage) -> Option<(String, bool)> {
    let name = m.attributes.iter().find_map(|a| match a {
        LinkAttribute::IfName(n) => Some(n.clone()),
        _ => None,
    })?;
    Some((name, m.header.flags.contains(LinkFlags::LowerUp)))
}

/// The current carrier of `names`, then every change, as (name, up).
pub async fn watch(names: Vec<String>) -> io::Result<(BTreeMap<String, bool>, mpsc::Receiver<(String, bool)>)> {
    let (conn, handle, mut messages) = rtnetlink::new_multicast_connection(&[MulticastGroup::Link])?;
    tokio::spawn(conn);
    let mut now = BTreeMap::new();
    let mut links = handle.link().get().execute();
    while let Some(Ok(m)) = links.next().await {
        if let Some((n, up)) = name_and_carrier(&m) {
            if names.contains(&n) {
                now.insert(n, up);
            }
        }
    }
    let (tx, rx) = mpsc::channel(64);
    let mut last = now.clone();
    tokio::spawn(async move {
        let _keep = handle;
        while let Some((msg, _)) = messages.next().await {
            let NetlinkPayload::InnerMessage(RouteNetlinkMessage::NewLink(m) | RouteNetlinkMessage::DelLink(m)) =
                msg.payload
            else {
                continue;
            };
            let Some((n, up)) = name_and_carrier(&m) else {
                continue;
            };
            if names.contains(&n) && last.get(&n) != Some(&up) {
                last.insert(n.clone(), up);
                if tx.send((n, up)).await.is_err() {
                    break;
                }
            }
        }
    });
    Ok((now, rx))
}
