//! IPv4 addresses and CIDR ranges, the only address family natgw supports so far.

use std::fmt;
use std::net::Ipv4Addr;
use std::str::FromStr;

/// An IPv4 network in CIDR notation, always normalised (no host bits set).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub(crate) struct Ipv4Net {
    addr: Ipv4Addr,
    prefix: u8,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(crate) enum NetError {
    #[error("IPv6 is not supported yet; use an IPv4 range")]
    Ipv6,
    #[error("not an IPv4 CIDR range (expected a.b.c.d/n)")]
    Syntax,
    #[error("prefix length must be 0..=32")]
    Prefix,
    #[error("host bits are set; did you mean {0}?")]
    HostBits(Ipv4Net),
}

impl Ipv4Net {
    pub(crate) fn new(addr: Ipv4Addr, prefix: u8) -> Result<Self, NetError> {
        if prefix > 32 {
            return Err(NetError::Prefix);
        }
        let net = Self {
            addr: Ipv4Addr::from(u32::from(addr) & mask(prefix)),
            prefix,
        };
        if net.addr != addr {
            return Err(NetError::HostBits(net));
        }
        Ok(net)
    }

    pub(crate) fn addr(&self) -> Ipv4Addr {
        self.addr
    }

    pub(crate) fn prefix(&self) -> u8 {
        self.prefix
    }

    pub(crate) fn contains(&self, ip: Ipv4Addr) -> bool {
        u32::from(ip) & mask(self.prefix) == u32::from(self.addr)
    }

    /// Whether the two ranges share at least one address.
    pub(crate) fn overlaps(&self, other: &Ipv4Net) -> bool {
        let p = self.prefix.min(other.prefix);
        u32::from(self.addr) & mask(p) == u32::from(other.addr) & mask(p)
    }

    /// A form usable inside resource names: `34-120-10-0-24`.
    pub(crate) fn slug(&self) -> String {
        format!(
            "{}-{}",
            self.addr.to_string().replace('.', "-"),
            self.prefix
        )
    }
}

fn mask(prefix: u8) -> u32 {
    if prefix == 0 {
        0
    } else {
        u32::MAX << (32 - u32::from(prefix))
    }
}

impl FromStr for Ipv4Net {
    type Err = NetError;

    /// Parses `a.b.c.d/n`; a bare address means `/32`.
    fn from_str(s: &str) -> Result<Self, NetError> {
        if s.contains(':') {
            return Err(NetError::Ipv6);
        }
        let (a, p) = match s.split_once('/') {
            Some((a, p)) => (a, p),
            None => (s, "32"),
        };
        let addr: Ipv4Addr = a.parse().map_err(|_| NetError::Syntax)?;
        if p.is_empty() || !p.bytes().all(|b| b.is_ascii_digit()) || p.len() > 2 {
            return Err(NetError::Syntax);
        }
        let prefix: u8 = p.parse().map_err(|_| NetError::Syntax)?;
        Self::new(addr, prefix)
    }
}

impl fmt::Display for Ipv4Net {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.addr, self.prefix)
    }
}

impl serde::Serialize for Ipv4Net {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> serde::Deserialize<'de> for Ipv4Net {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn net(s: &str) -> Ipv4Net {
        s.parse().expect("valid test range")
    }

    #[test]
    fn parses_and_normalises() {
        assert_eq!(net("10.0.0.0/8").to_string(), "10.0.0.0/8");
        assert_eq!(net("34.120.10.10").to_string(), "34.120.10.10/32");
        assert_eq!(
            "10.0.0.1/8".parse::<Ipv4Net>(),
            Err(NetError::HostBits(net("10.0.0.0/8")))
        );
        assert_eq!("::1/128".parse::<Ipv4Net>(), Err(NetError::Ipv6));
        assert_eq!("10.0.0.0/33".parse::<Ipv4Net>(), Err(NetError::Prefix));
        assert_eq!("10.0.0/8".parse::<Ipv4Net>(), Err(NetError::Syntax));
        assert_eq!("10.0.0.0/".parse::<Ipv4Net>(), Err(NetError::Syntax));
        assert_eq!("10.0.0.0/+8".parse::<Ipv4Net>(), Err(NetError::Syntax));
    }

    #[test]
    fn containment_and_overlap() {
        assert!(net("10.0.0.0/20").contains("10.0.15.255".parse().expect("ip")));
        assert!(!net("10.0.0.0/20").contains("10.0.16.0".parse().expect("ip")));
        assert!(net("10.0.0.0/8").overlaps(&net("10.4.0.0/14")));
        assert!(net("10.4.0.0/14").overlaps(&net("10.0.0.0/8")));
        assert!(!net("10.0.0.0/20").overlaps(&net("10.4.0.0/14")));
        assert!(net("0.0.0.0/0").overlaps(&net("1.2.3.4/32")));
        assert_eq!(net("34.120.10.0/24").slug(), "34-120-10-0-24");
    }
}
