//! Where signalling may come from: the one ingress rule the daemons apply
//! to every Mobility Header and the virtual World applies to every message
//! it delivers, so that a spoofed message is refused for the same reason
//! in both.
//!
//! A node takes signalling only on the side that holds its own signalling
//! address (the LMA's core side; a MAG's side facing its LMA), whatever
//! the source address says; and a MAG takes it only from its own LMA. A
//! message that arrives on an access link or on a CN's link with a
//! forged source is refused by the first rule; one from another node of
//! the core by the second (or, for the LMA, by its list of authorized
//! MAGs, which answers 154).

use std::fmt;
use std::net::Ipv6Addr;

/// The side of a node a message arrived on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Side {
    /// The interface that holds the node's signalling address: the core.
    Signalling,
    /// Any other interface: an MN's access link, a CN's link.
    Other,
}

/// Why a message was refused before the protocol core saw it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// It arrived on an interface that does not hold the signalling address.
    WrongInterface,
    /// It came from an address that is not this node's peer.
    NotFromPeer,
}

impl Refusal {
    /// The reason as the daemons count it (`refused.by_reason`).
    pub fn reason(self) -> &'static str {
        match self {
            Refusal::WrongInterface => "wrong interface",
            Refusal::NotFromPeer => "not from a peer",
        }
    }
}

impl fmt::Display for Refusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.reason())
    }
}

/// Whether a node whose only peer is `peer` (a MAG's LMA; `None` for an
/// LMA, which answers any source itself) takes a Mobility Header from
/// `src` that arrived on `side`.
pub fn check(side: Side, src: Ipv6Addr, peer: Option<Ipv6Addr>) -> Result<(), Refusal> {
    if side != Side::Signalling {
        return Err(Refusal::WrongInterface);
    }
    match peer {
        Some(p) if p != src => Err(Refusal::NotFromPeer),
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const LMA: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 0xffff, 0, 0, 0, 0, 1);
    const MAG1: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 0xffff, 0, 0, 0, 0, 0x11);

    #[test]
    fn the_source_address_alone_never_admits_a_message() {
        // MAG1's address on the CN's link: the LMA refuses it.
        assert_eq!(check(Side::Other, MAG1, None), Err(Refusal::WrongInterface));
        // The LMA's address on an MN's access link: the MAG refuses it.
        assert_eq!(check(Side::Other, LMA, Some(LMA)), Err(Refusal::WrongInterface));
    }

    #[test]
    fn a_mag_takes_signalling_only_from_its_lma() {
        assert_eq!(check(Side::Signalling, LMA, Some(LMA)), Ok(()));
        assert_eq!(check(Side::Signalling, MAG1, Some(LMA)), Err(Refusal::NotFromPeer));
        // The LMA takes any source on its core and answers it itself (154).
        assert_eq!(check(Side::Signalling, MAG1, None), Ok(()));
    }
}
