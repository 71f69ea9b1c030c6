//! Which local interface a member uses: `-i` names an interface (`eth1`) or gives one of its
//! addresses, for either address family; [`resolve`] turns that into the address the unicast
//! socket binds and the interface index IPv6 multicast needs.

use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// A resolved local interface.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Interface {
    /// The address the unicast socket binds (the unspecified address when `-i` was not given).
    pub addr: IpAddr,
    /// The interface index (0: none named; the routing table picks).
    pub index: u32,
}

/// Resolves `spec` (an interface name, an address, or nothing) for the family of `group`.
///
/// An address must belong to the family of the group. A name must exist and carry an address
/// of that family; for IPv6 a global or unique-local address is preferred over a link-local
/// one. Without `spec` the unspecified address and index 0 are returned.
pub fn resolve(spec: Option<&str>, group: IpAddr) -> io::Result<Interface> {
    let v6 = group.is_ipv6();
    let Some(spec) = spec.map(str::trim).filter(|s| !s.is_empty()) else {
        let addr = if v6 {
            IpAddr::V6(Ipv6Addr::UNSPECIFIED)
        } else {
            IpAddr::V4(Ipv4Addr::UNSPECIFIED)
        };
        return Ok(Interface { addr, index: 0 });
    };
    let addrs = local_addresses()?;
    if let Ok(addr) = spec.parse::<IpAddr>() {
        if addr.is_ipv6() != v6 {
            return Err(invalid(format!(
                "interface address {addr} is not of the group's family ({group})"
            )));
        }
        if addr.is_unspecified() {
            return Ok(Interface { addr, index: 0 });
        }
        let index = addrs
            .iter()
            .find(|(_, _, a)| *a == addr)
            .map(|(_, i, _)| *i)
            .ok_or_else(|| invalid(format!("no local interface has the address {addr}")))?;
        return Ok(Interface { addr, index });
    }
    let index = nix::net::if_::if_nametoindex(spec)
        .map_err(|e| invalid(format!("no interface named {spec:?} ({e})")))?;
    let mut mine: Vec<IpAddr> = addrs
        .iter()
        .filter(|(n, _, a)| n == spec && a.is_ipv6() == v6)
        .map(|(_, _, a)| *a)
        .collect();
    // Prefer addresses that need no scope: IPv6 link-local (fe80::/10) last.
    mine.sort_by_key(|a| matches!(a, IpAddr::V6(x) if x.segments()[0] & 0xffc0 == 0xfe80));
    let addr = mine.first().copied().ok_or_else(|| {
        invalid(format!(
            "interface {spec} has no {} address",
            if v6 { "IPv6" } else { "IPv4" }
        ))
    })?;
    Ok(Interface { addr, index })
}

/// Whether `ip` is an address of this host (network namespace); loopback addresses are.
pub fn is_local(ip: IpAddr) -> bool {
    ip.is_loopback()
        || ip.is_unspecified()
        || local_addresses().is_ok_and(|l| l.iter().any(|(_, _, a)| *a == ip))
}

/// Every (interface name, index, address) of this host (network namespace).
fn local_addresses() -> io::Result<Vec<(String, u32, IpAddr)>> {
    let mut out = Vec::new();
    for ifa in nix::ifaddrs::getifaddrs().map_err(io::Error::from)? {
        let Some(sa) = ifa.address else { continue };
        let addr = if let Some(a) = sa.as_sockaddr_in() {
            IpAddr::V4(a.ip())
        } else if let Some(a) = sa.as_sockaddr_in6() {
            IpAddr::V6(a.ip())
        } else {
            continue;
        };
        let index = nix::net::if_::if_nametoindex(ifa.interface_name.as_str()).unwrap_or(0);
        out.push((ifa.interface_name, index, addr));
    }
    Ok(out)
}

fn invalid(msg: String) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidInput, msg)
}

#[cfg(test)]
mod tests {
    use super::*;

    const G4: IpAddr = IpAddr::V4(Ipv4Addr::new(239, 255, 0, 1));

    #[test]
    fn loopback_by_name_and_by_address() {
        let by_name = resolve(Some("lo"), G4).unwrap();
        assert_eq!(by_name.addr, IpAddr::V4(Ipv4Addr::LOCALHOST));
        assert!(by_name.index > 0);
        let by_addr = resolve(Some("127.0.0.1"), G4).unwrap();
        assert_eq!(by_addr, by_name);
    }

    #[test]
    fn nothing_given_is_the_unspecified_address() {
        let r = resolve(None, G4).unwrap();
        assert_eq!((r.addr, r.index), (IpAddr::V4(Ipv4Addr::UNSPECIFIED), 0));
        let g6: IpAddr = "ff15::4d4b".parse().unwrap();
        assert_eq!(
            resolve(None, g6).unwrap().addr,
            IpAddr::V6(Ipv6Addr::UNSPECIFIED)
        );
    }

    #[test]
    fn wrong_family_unknown_name_and_foreign_address_are_refused() {
        let g6: IpAddr = "ff15::4d4b".parse().unwrap();
        assert!(resolve(Some("127.0.0.1"), g6).is_err());
        assert!(resolve(Some("::1"), G4).is_err());
        assert!(resolve(Some("no-such-if0"), G4).is_err());
        // 192.0.2.0/24 is documentation space: no host has it.
        assert!(resolve(Some("192.0.2.77"), G4).is_err());
    }
}
