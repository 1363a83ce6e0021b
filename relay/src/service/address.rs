//! What per-address limits count by (issue 13).
//!
//! An IPv6 host usually holds a whole /64 (SLAAC, privacy addresses that change every
//! day, or any of 2^64 addresses it picks), so limits keyed by the full address would let
//! one machine walk past them by changing its address. Every limit or block keyed by a
//! peer address (unauthenticated slots, failed-login blocks, the audit feed's rows)
//! therefore counts an IPv6 address by its /64 prefix, and an IPv4-mapped IPv6 address
//! (`::ffff:192.0.2.1`, what a dual-stack socket reports for IPv4 peers) as the IPv4
//! address.
//!
//! A household behind one router shares one IPv4 address or one /64 either way, so this
//! changes nothing for its members: the limits were already designed never to lock them
//! out (see `server::admission` and [`super::Shared::is_blocked`]).

use std::fmt;
use std::net::{IpAddr, Ipv6Addr};

/// The unit per-address limits count by: an IPv4 address, or an IPv6 /64 prefix.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct AddressKey(IpAddr);

impl AddressKey {
    /// The key of a peer address.
    pub fn of(ip: IpAddr) -> Self {
        match ip.to_canonical() {
            IpAddr::V4(v4) => AddressKey(IpAddr::V4(v4)),
            IpAddr::V6(v6) => {
                let prefix = u128::from(v6) & !((1u128 << 64) - 1);
                AddressKey(IpAddr::V6(Ipv6Addr::from(prefix)))
            }
        }
    }

    /// The IPv4 address, or the first address of the /64.
    pub fn ip(&self) -> IpAddr {
        self.0
    }
}

/// `192.0.2.1`, or `2001:db8:1:2::/64`.
impl fmt::Display for AddressKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0 {
            IpAddr::V4(v4) => write!(f, "{v4}"),
            IpAddr::V6(v6) => write!(f, "{v6}/64"),
        }
    }
}

impl From<IpAddr> for AddressKey {
    fn from(ip: IpAddr) -> Self {
        AddressKey::of(ip)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(s: &str) -> AddressKey {
        AddressKey::of(s.parse().unwrap())
    }

    #[test]
    fn ipv6_counts_by_its_64_and_mapped_ipv4_as_ipv4() {
        assert_eq!(
            key("2001:db8:1:2::1"),
            key("2001:db8:1:2:ffff:ffff:ffff:ffff")
        );
        assert_ne!(key("2001:db8:1:2::1"), key("2001:db8:1:3::1"));
        assert_eq!(key("2001:db8:1:2:abcd::9").to_string(), "2001:db8:1:2::/64");
        assert_eq!(key("::ffff:192.0.2.7"), key("192.0.2.7"));
        assert_eq!(key("::ffff:192.0.2.7").to_string(), "192.0.2.7");
        assert_ne!(key("192.0.2.7"), key("192.0.2.8"), "IPv4 counts one by one");
        assert_eq!(key("::1"), key("::2"));
    }
}
