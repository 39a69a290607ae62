//! IP addresses and CIDR blocks (M-4).

use std::net::IpAddr;

/// An address block; a bare address is a /32 or /128.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Cidr {
    network: IpAddr,
    prefix: u8,
}

impl Cidr {
    /// Parses `10.0.0.1`, `10.0.0.0/8`, `::1` or `fd00::/8`.
    pub(crate) fn parse(value: &str) -> Option<Self> {
        let (addr, prefix) = match value.split_once('/') {
            Some((a, p)) => (a, Some(p)),
            None => (value, None),
        };
        let network: IpAddr = addr.parse().ok()?;
        let max = if network.is_ipv4() { 32 } else { 128 };
        let prefix = match prefix {
            Some(p) if !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()) => {
                p.parse::<u8>().ok().filter(|p| *p <= max)?
            }
            Some(_) => return None,
            None => max,
        };
        Some(Cidr { network, prefix })
    }

    /// Whether `ip` lies inside the block. An IPv4-mapped IPv6 address
    /// (`::ffff:10.1.2.3`, what a dual-stack listener reports for an IPv4
    /// peer) is in an IPv4 block when its IPv4 address is, and an IPv4
    /// address in an IPv6 block when its mapped form is, as on Envoy.
    pub(crate) fn contains(&self, ip: IpAddr) -> bool {
        let ip = match (self.network, ip) {
            (IpAddr::V4(_), IpAddr::V6(v6)) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
            (IpAddr::V6(_), IpAddr::V4(v4)) => IpAddr::V6(v4.to_ipv6_mapped()),
            _ => ip,
        };
        match (self.network, ip) {
            (IpAddr::V4(net), IpAddr::V4(ip)) => {
                let mask = u32::MAX
                    .checked_shl(32 - u32::from(self.prefix))
                    .unwrap_or(0);
                u32::from(net) & mask == u32::from(ip) & mask
            }
            (IpAddr::V6(net), IpAddr::V6(ip)) => {
                let mask = u128::MAX
                    .checked_shl(128 - u32::from(self.prefix))
                    .unwrap_or(0);
                u128::from(net) & mask == u128::from(ip) & mask
            }
            _ => false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::Cidr;

    #[test]
    fn m_4_addresses_and_blocks() {
        let ip = |s: &str| s.parse().unwrap_or(std::net::IpAddr::from([0, 0, 0, 0]));
        let block = Cidr::parse("10.1.0.0/16");
        assert!(block.is_some_and(|b| b.contains(ip("10.1.2.3"))));
        assert!(block.is_some_and(|b| !b.contains(ip("10.2.0.1"))));
        assert!(Cidr::parse("10.1.2.3").is_some_and(|b| !b.contains(ip("10.1.2.4"))));
        assert!(Cidr::parse("0.0.0.0/0").is_some_and(|b| b.contains(ip("1.2.3.4"))));
        assert!(Cidr::parse("fd00::/8").is_some_and(|b| b.contains(ip("fd12::1"))));
        assert!(Cidr::parse("fd00::/8").is_some_and(|b| !b.contains(ip("10.0.0.1"))));
        // IPv4-mapped IPv6 peers are IPv4 peers.
        assert!(Cidr::parse("10.0.0.0/8").is_some_and(|b| b.contains(ip("::ffff:10.1.2.3"))));
        assert!(Cidr::parse("10.0.0.0/8").is_some_and(|b| !b.contains(ip("::ffff:11.1.2.3"))));
        assert!(Cidr::parse("10.0.0.0/8").is_some_and(|b| !b.contains(ip("::10.1.2.3"))));
        assert!(Cidr::parse("::ffff:0:0/96").is_some_and(|b| b.contains(ip("10.1.2.3"))));
        assert_eq!(Cidr::parse("10.0.0.0/33"), None);
        assert_eq!(Cidr::parse("10.0.0.0/"), None);
        assert_eq!(Cidr::parse("10.0.0"), None);
        assert_eq!(Cidr::parse("example.com"), None);
    }
}
