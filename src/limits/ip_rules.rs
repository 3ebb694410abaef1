//! `routes[].allow` and `routes[].deny`: CIDR lists of client addresses,
//! IPv4 and IPv6. `deny` is checked first; then, when `allow` is set, the
//! address must be in it. Refused requests get 403.
//!
//! IPv4-mapped IPv6 addresses (`::ffff:10.1.2.3`, what a dual-stack `[::]`
//! listener sees for IPv4 clients) are matched as the IPv4 address.

use std::net::IpAddr;

/// One CIDR block: `10.0.0.0/8`, `2001:db8::/32`, or a single address.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cidr {
    /// The network address, as 128 bits (IPv4 in the low 32).
    bits: u128,
    /// Prefix length (at most 32 for IPv4, 128 for IPv6).
    prefix: u8,
    v4: bool,
}

impl Cidr {
    /// Parses `ADDRESS/PREFIX` or a bare address (a /32 or /128).
    ///
    /// # Errors
    /// Not an address, a prefix out of range, or bits set past the prefix
    /// (`10.0.0.1/8` is refused: it would silently mean `10.0.0.0/8`).
    pub fn parse(s: &str) -> Result<Self, String> {
        let s = s.trim();
        let (addr, prefix) = match s.split_once('/') {
            Some((a, p)) => (a, Some(p)),
            None => (s, None),
        };
        let ip: IpAddr = addr
            .parse()
            .map_err(|_| format!("{s:?} is not an IP address or CIDR block"))?;
        let (bits, max, v4) = match ip {
            IpAddr::V4(a) => (u128::from(u32::from(a)), 32u8, true),
            IpAddr::V6(a) => (u128::from(a), 128u8, false),
        };
        let prefix = match prefix {
            None => max,
            Some(p) => match p.parse::<u8>() {
                Ok(n) if n <= max && p.bytes().all(|b| b.is_ascii_digit()) => n,
                _ => return Err(format!("{s:?}: the prefix length must be 0 to {max}")),
            },
        };
        let cidr = Cidr { bits, prefix, v4 };
        if cidr.network() != bits {
            return Err(format!(
                "{s:?} has bits set past the /{prefix} prefix; did you mean {}?",
                Cidr {
                    bits: cidr.network(),
                    ..cidr
                }
            ));
        }
        Ok(cidr)
    }

    fn mask(&self) -> u128 {
        let width = if self.v4 { 32 } else { 128 };
        let host = width - u32::from(self.prefix);
        let all = if self.v4 {
            u128::from(u32::MAX)
        } else {
            u128::MAX
        };
        if host >= 128 {
            0
        } else {
            all & !((1u128 << host) - 1)
        }
    }

    fn network(&self) -> u128 {
        self.bits & self.mask()
    }

    /// True when `ip` is in the block.
    pub fn contains(&self, ip: IpAddr) -> bool {
        let v4 = match ip {
            IpAddr::V4(a) => Some(a),
            IpAddr::V6(a) if !self.v4 => return u128::from(a) & self.mask() == self.bits,
            IpAddr::V6(a) => a.to_ipv4_mapped(),
        };
        self.v4 && v4.is_some_and(|a| u128::from(u32::from(a)) & self.mask() == self.bits)
    }
}

impl std::fmt::Display for Cidr {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.v4 {
            let a = std::net::Ipv4Addr::from(u32::try_from(self.bits).unwrap_or(0));
            write!(f, "{a}/{}", self.prefix)
        } else {
            write!(f, "{}/{}", std::net::Ipv6Addr::from(self.bits), self.prefix)
        }
    }
}

/// A route's allow and deny lists.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct IpRules {
    /// Blocks that may use the route; empty = every address not denied.
    pub allow: Vec<Cidr>,
    /// Blocks that may not, checked first.
    pub deny: Vec<Cidr>,
    /// True when `allow` was written (even empty: then nobody may).
    pub allow_set: bool,
}

impl IpRules {
    /// True when `ip` may use the route: not in `deny`, and in `allow` when set.
    pub fn permits(&self, ip: IpAddr) -> bool {
        if self.deny.iter().any(|c| c.contains(ip)) {
            return false;
        }
        !self.allow_set || self.allow.iter().any(|c| c.contains(ip))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::net::{Ipv4Addr, Ipv6Addr};

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn parses_and_matches() {
        let c = Cidr::parse("10.0.0.0/8").unwrap();
        assert!(c.contains(ip("10.255.1.2")));
        assert!(!c.contains(ip("11.0.0.1")));
        assert!(c.contains(ip("::ffff:10.1.2.3")));
        assert!(!c.contains(ip("::1")));
        let one = Cidr::parse("127.0.0.2").unwrap();
        assert!(one.contains(ip("127.0.0.2")) && !one.contains(ip("127.0.0.3")));
        let v6 = Cidr::parse("2001:db8::/32").unwrap();
        assert!(v6.contains(ip("2001:db8:1::5")));
        assert!(!v6.contains(ip("2001:db9::1")));
        assert!(!v6.contains(ip("10.0.0.1")));
        assert!(Cidr::parse("0.0.0.0/0").unwrap().contains(ip("1.2.3.4")));
        assert!(Cidr::parse("::/0").unwrap().contains(ip("fe80::1")));
        assert_eq!(c.to_string(), "10.0.0.0/8");
        let e = Cidr::parse("10.0.0.1/8").unwrap_err();
        assert!(e.contains("did you mean 10.0.0.0/8"), "{e}");
        for bad in [
            "",
            "10.0.0.0/33",
            "::/129",
            "10.0.0/8",
            "x/8",
            "10.0.0.0/",
            "10.0.0.0/+8",
            "10.0.0.0/-1",
        ] {
            assert!(Cidr::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn deny_first_then_allow() {
        let rules = IpRules {
            allow: vec![Cidr::parse("10.0.0.0/8").unwrap()],
            deny: vec![Cidr::parse("10.9.0.0/16").unwrap()],
            allow_set: true,
        };
        assert!(rules.permits(ip("10.1.1.1")));
        assert!(!rules.permits(ip("10.9.1.1")));
        assert!(!rules.permits(ip("192.168.1.1")));
        let deny_only = IpRules {
            deny: vec![Cidr::parse("127.0.0.3").unwrap()],
            ..IpRules::default()
        };
        assert!(deny_only.permits(ip("127.0.0.2")));
        assert!(!deny_only.permits(ip("127.0.0.3")));
        let nobody = IpRules {
            allow_set: true,
            ..IpRules::default()
        };
        assert!(!nobody.permits(ip("127.0.0.1")));
    }

    proptest! {
        /// Every address of a parsed block is contained; the address just
        /// past it (when there is one) is not; printing and parsing round-trips.
        #[test]
        fn v4_blocks(addr: u32, prefix in 0u8..=32) {
            let mask = if prefix == 0 { 0 } else { u32::MAX << (32 - prefix) };
            let net = addr & mask;
            let s = format!("{}/{prefix}", Ipv4Addr::from(net));
            let c = Cidr::parse(&s).unwrap();
            prop_assert_eq!(c.to_string(), s);
            prop_assert!(c.contains(IpAddr::V4(Ipv4Addr::from(net))));
            prop_assert!(c.contains(IpAddr::V4(Ipv4Addr::from(net | !mask))));
            if let Some(next) = (net | !mask).checked_add(1) {
                prop_assert!(!c.contains(IpAddr::V4(Ipv4Addr::from(next))));
            }
            if addr != net {
                let with_host_bits = format!("{}/{prefix}", Ipv4Addr::from(addr));
                prop_assert!(Cidr::parse(&with_host_bits).is_err());
            }
        }

        #[test]
        fn v6_blocks(addr: u128, prefix in 0u8..=128) {
            let mask = if prefix == 0 { 0 } else { u128::MAX << (128 - u32::from(prefix)) };
            let net = addr & mask;
            let s = format!("{}/{prefix}", Ipv6Addr::from(net));
            let c = Cidr::parse(&s).unwrap();
            prop_assert!(c.contains(IpAddr::V6(Ipv6Addr::from(net | !mask))));
            if let Some(next) = (net | !mask).checked_add(1) {
                prop_assert!(!c.contains(IpAddr::V6(Ipv6Addr::from(next))));
            }
        }

        /// Arbitrary text never panics the parser.
        #[test]
        fn any_text(s in ".{0,40}") {
            let _ = Cidr::parse(&s);
        }
    }
}
