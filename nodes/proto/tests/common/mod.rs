//! The seed topology of the draft's figures, in virtual time: an LMA, two
//! MAGs, one MN with two interfaces, and a CN.
#![allow(dead_code)]

use std::net::Ipv6Addr;

use pmip_proto::lma::{FlowAction, Lma, LmaCommand, LmaConfig, MnPolicy, PrefixModel};
use pmip_proto::mag::{Mag, MagConfig, MnBinding};
use pmip_proto::mn::{Mn, MnConfig};
use pmip_proto::world::{mac_for, World};
use pmip_proto::{FlowKey, Prefix, Span};
use pmip_wire::{AccessTechnologyType, HandoffIndicator};

pub const LMA: &str = "2001:db8:ffff::1";
pub const MAG1: &str = "2001:db8:ffff::11";
pub const MAG2: &str = "2001:db8:ffff::12";
pub const CN: &str = "2001:db8:c::1";
pub const MN: &str = "mn1@pmip.lab";
pub const IID: u64 = 0x1;

pub fn a(s: &str) -> Ipv6Addr {
    s.parse().unwrap()
}

pub fn p(s: &str) -> Prefix {
    s.parse().unwrap()
}

pub fn pref(n: u8) -> Prefix {
    p(&format!("2001:db8:{n}::/64"))
}

/// The MN's address in prefix `n`.
pub fn mn_addr(n: u8) -> Ipv6Addr {
    pref(n).with_iid(IID)
}

/// A UDP flow from the CN to the MN's address in prefix `n`.
pub fn flow(n: u8, dport: u16) -> FlowKey {
    FlowKey { src: a(CN), dst: mn_addr(n), next_header: 17, src_port: 7000, dst_port: dport }
}

pub struct Seed {
    pub world: World,
}

pub fn policy(model: PrefixModel, shared: &[u8], unique: &[u8], per_attachment: usize) -> MnPolicy {
    let mut pol = MnPolicy::new(MN, model);
    pol.shared_prefixes = shared.iter().map(|n| pref(*n)).collect();
    pol.unique_prefixes = unique.iter().map(|n| pref(*n)).collect();
    pol.per_attachment = per_attachment;
    pol
}

pub fn seed_with(policy: MnPolicy, tune: impl FnOnce(&mut LmaConfig)) -> Seed {
    let mut cfg = LmaConfig::new(a(LMA));
    cfg.authorized_mags = vec![a(MAG1), a(MAG2)];
    tune(&mut cfg);
    let mut lma = Lma::new(cfg);
    lma.add_policy(policy);
    let mut world = World::new();
    world.add_lma("lma", lma);
    for (name, addr) in [("mag1", MAG1), ("mag2", MAG2)] {
        let mut c = MagConfig::new(a(addr), a(LMA));
        c.mns = ["if1", "if2"].iter().map(|i| MnBinding { ll_id: mac_for("mn1", i), mn_id: MN.into() }).collect();
        world.add_mag(name, Mag::new(c));
    }
    world.add_mn(
        "mn1",
        Mn::new(MnConfig {
            name: "mn1".into(),
            iid: IID,
            interfaces: vec!["if1".into(), "if2".into()],
            uplink_preference: vec!["if1".into(), "if2".into()],
        }),
    );
    world.add_cn("cn", a(CN));
    Seed { world }
}

pub fn seed(policy: MnPolicy) -> Seed {
    seed_with(policy, |_| {})
}

impl Seed {
    pub fn attach(&mut self, iface: &str, mag: &str, att: AccessTechnologyType) {
        self.world.attach("mn1", iface, mag, &format!("to-{iface}"), att, None, vec![]);
        self.settle();
    }

    pub fn attach_with(
        &mut self,
        iface: &str,
        mag: &str,
        att: AccessTechnologyType,
        hi: HandoffIndicator,
        prefixes: Vec<Prefix>,
    ) {
        self.world.attach("mn1", iface, mag, &format!("to-{iface}"), att, Some(hi), prefixes);
        self.settle();
    }

    /// Lets in-flight signalling finish (a few round trips of 1 ms links).
    pub fn settle(&mut self) {
        self.world.run_for(Span::from_millis(50));
    }

    pub fn bind(&mut self, fid: u16, fid_pri: u16, key: FlowKey, bids: &[u16]) {
        self.bind_selector(fid, fid_pri, key.selector(), bids, FlowAction::Forward);
    }

    pub fn bind_selector(
        &mut self,
        fid: u16,
        fid_pri: u16,
        selector: pmip_wire::TrafficSelector,
        bids: &[u16],
        action: FlowAction,
    ) {
        self.world
            .command(LmaCommand::BindFlow { mn_id: MN.into(), fid, fid_pri, selector, bids: bids.to_vec(), action })
            .expect("the LMA binds the flow");
    }

    pub fn move_flow(&mut self, fid: u16, to_bid: u16) {
        // A refused move is a result the tests check in the tables.
        let _ = self.world.command(LmaCommand::MoveFlow { mn_id: MN.into(), fid, to_bid });
        self.settle();
    }

    /// Sends a downlink packet and returns the MN interface it arrived on.
    pub fn arrives_on(&mut self, key: FlowKey) -> Option<String> {
        let path = self.world.downlink("cn", key);
        path.delivered_on.map(|(_, i)| i)
    }

    /// The MN interface the uplink of `key`'s flow leaves on, if it reaches the CN.
    pub fn uplink_on(&mut self, key: FlowKey) -> Option<String> {
        self.world.uplink("mn1", key.reversed()).delivered_on.map(|(_, i)| i)
    }

    /// Messages on the wire so far, by short name, in order.
    pub fn names(&self) -> Vec<String> {
        self.world
            .messages
            .iter()
            .map(|m| {
                let n = m.summary.split(' ').next().unwrap_or("").to_string();
                if m.dropped {
                    format!("{n}(dropped)")
                } else {
                    n
                }
            })
            .collect()
    }

    pub fn count(&self, name: &str) -> usize {
        self.world.messages.iter().filter(|m| m.summary.split(' ').next() == Some(name) && !m.dropped).count()
    }
}
