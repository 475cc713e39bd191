//! IPv6 prefixes as the protocol tables show them.

use std::fmt;
use std::net::Ipv6Addr;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// An IPv6 prefix with its host bits cleared.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Prefix {
    addr: Ipv6Addr,
    len: u8,
}

fn mask(len: u8) -> u128 {
    if len == 0 {
        0
    } else {
        u128::MAX << (128 - u32::from(len.min(128)))
    }
}

impl Prefix {
    /// The prefix of length `len` that contains `addr`.
    pub fn new(addr: Ipv6Addr, len: u8) -> Prefix {
        let len = len.min(128);
        Prefix { addr: Ipv6Addr::from(u128::from(addr) & mask(len)), len }
    }
    pub fn addr(&self) -> Ipv6Addr {
        self.addr
    }
    pub fn prefix_len(&self) -> u8 {
        self.len
    }
    pub fn is_default(&self) -> bool {
        self.len == 0
    }
    pub fn contains(&self, a: &Ipv6Addr) -> bool {
        u128::from(*a) & mask(self.len) == u128::from(self.addr)
    }
    /// The address made of this prefix and a 64-bit interface identifier.
    pub fn with_iid(&self, iid: u64) -> Ipv6Addr {
        Ipv6Addr::from(u128::from(self.addr) | u128::from(iid))
    }
    /// The smallest prefix that holds every address from `start` to `end`,
    /// if the range is exactly a prefix.
    pub fn from_range(start: Ipv6Addr, end: Ipv6Addr) -> Option<Prefix> {
        let (s, e) = (u128::from(start), u128::from(end));
        if s > e {
            return None;
        }
        let host_bits = 128 - (s ^ e).leading_zeros();
        let p = Prefix::new(start, (128 - host_bits) as u8);
        let all_ones = if host_bits == 0 { 0 } else { u128::MAX >> (128 - host_bits) };
        (u128::from(p.addr) == s && s | all_ones == e).then_some(p)
    }
    /// Last address of the prefix.
    pub fn last(&self) -> Ipv6Addr {
        Ipv6Addr::from(u128::from(self.addr) | !mask(self.len))
    }
}

impl fmt::Display for Prefix {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.addr, self.len)
    }
}

/// Why a prefix did not parse.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PrefixParseError(pub String);

impl fmt::Display for PrefixParseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

impl std::error::Error for PrefixParseError {}

impl FromStr for Prefix {
    type Err = PrefixParseError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let (a, l) = s.split_once('/').ok_or_else(|| {
            PrefixParseError(format!("'{s}' is not an IPv6 prefix: expected address/length, e.g. 2001:db8:1::/64"))
        })?;
        let addr: Ipv6Addr =
            a.parse().map_err(|_| PrefixParseError(format!("'{a}' in '{s}' is not an IPv6 address")))?;
        let len: u8 = l
            .parse()
            .ok()
            .filter(|l| *l <= 128)
            .ok_or_else(|| PrefixParseError(format!("'{l}' in '{s}' is not a prefix length from 0 to 128")))?;
        Ok(Prefix::new(addr, len))
    }
}

impl Serialize for Prefix {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Prefix {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges_that_are_prefixes() {
        let p: Prefix = "2001:db8:2::/64".parse().unwrap();
        assert_eq!(Prefix::from_range(p.addr(), p.last()), Some(p));
        let one: Ipv6Addr = "2001:db8:2::5".parse().unwrap();
        assert_eq!(Prefix::from_range(one, one), Some(Prefix::new(one, 128)));
        assert_eq!(Prefix::from_range(one, "2001:db8:2::7".parse().unwrap()), None);
        assert!(p.contains(&"2001:db8:2::99".parse().unwrap()));
        assert!(!p.contains(&"2001:db8:3::1".parse().unwrap()));
        assert!("2001:db8::/129".parse::<Prefix>().is_err());
    }
}
