//! Admin-trusted networks: CIDR matching on `PAM_RHOST`.
//!
//! Only literal IP addresses match. A host name never does: resolving it
//! would let whoever controls DNS skip the second factor, and would make a
//! login wait on a resolver.

use std::fmt;
use std::net::{IpAddr, Ipv6Addr};

use ipnet::{IpNet, Ipv4Net};

/// A parsed `trusted_networks` list.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Networks(Vec<Network>);

/// One entry: a network, and for link-local IPv6 the interface (zone) it
/// is on: `fe80::/64%eth0`.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Network {
    net: IpNet,
    zone: Option<String>,
}

impl Networks {
    /// Parses CIDR entries; a bare address means a single host. Returns
    /// the first entry that does not parse as the error.
    pub fn parse<S: AsRef<str>>(entries: &[S]) -> Result<Self, String> {
        entries
            .iter()
            .map(|e| parse_net(e.as_ref()).ok_or_else(|| e.as_ref().to_string()))
            .collect::<Result<Vec<_>, _>>()
            .map(Networks)
    }

    /// True when `rhost` is an address literal in canonical form (see
    /// [`parse_rhost`]) inside one of the networks, on the same interface
    /// for link-local IPv6.
    pub fn contains(&self, rhost: &str) -> bool {
        let Some(host) = parse_rhost(rhost) else {
            return false;
        };
        self.0
            .iter()
            .any(|n| n.net.contains(&host.ip) && n.zone.as_deref() == host.zone)
    }

    /// Number of networks.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// True when no network is trusted.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

fn parse_net(text: &str) -> Option<Network> {
    let text = text.trim();
    let (text, zone) = match text.split_once('%') {
        Some((net, zone)) => (net, Some(zone)),
        None => (text, None),
    };
    let net = match text.parse::<IpNet>() {
        Ok(net) => net,
        Err(_) => IpNet::from(text.parse::<IpAddr>().ok()?),
    };
    let net = canonical_net(net);
    // A zone names an interface, which only link-local addresses need.
    if let Some(zone) = zone
        && !(is_link_local_net(&net) && valid_zone(zone))
    {
        return None;
    }
    Some(Network {
        net,
        zone: zone.map(str::to_string),
    })
}

/// `::ffff:10.0.0.0/104` is the IPv4 network 10.0.0.0/8 written in IPv6.
fn canonical_net(net: IpNet) -> IpNet {
    if let IpNet::V6(v6) = net
        && let Some(v4) = v6.addr().to_ipv4_mapped()
        && v6.prefix_len() >= 96
        && let Ok(n) = Ipv4Net::new(v4, v6.prefix_len() - 96)
    {
        return IpNet::V4(n.trunc());
    }
    net.trunc()
}

/// An rhost that is an address: the IP (IPv4-mapped IPv6 as IPv4) and, for
/// link-local IPv6, its zone.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rhost<'a> {
    pub ip: IpAddr,
    pub zone: Option<&'a str>,
}

/// `PAM_RHOST` as an address, when it is one written the way sshd writes
/// it: the canonical text of the address (`10.0.0.1`, `2001:db8::1`,
/// `::ffff:10.0.0.1`), with a zone (`%eth0`) only on link-local IPv6.
/// Anything else (brackets, spaces, a zone on another address, a
/// non-canonical spelling like `::ffff:a00:1` or `010.0.0.1`) is a host
/// name, which never matches: a name that merely looks like an address
/// must not skip the second factor.
pub fn parse_rhost(rhost: &str) -> Option<Rhost<'_>> {
    let (text, zone) = match rhost.split_once('%') {
        Some((addr, zone)) => (addr, Some(zone)),
        None => (rhost, None),
    };
    let ip = text.parse::<IpAddr>().ok()?;
    if ip.to_string() != text {
        return None;
    }
    if let Some(zone) = zone {
        let IpAddr::V6(v6) = ip else { return None };
        if !(is_link_local(&v6) && valid_zone(zone)) {
            return None;
        }
    }
    Some(Rhost {
        ip: ip.to_canonical(),
        zone,
    })
}

/// The address as sshd writes it, with its zone: `10.0.0.1`, `fe80::1%eth0`
/// (an IPv4-mapped IPv6 address is its IPv4 address).
impl fmt::Display for Rhost<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.zone {
            Some(zone) => write!(f, "{}%{zone}", self.ip),
            None => write!(f, "{}", self.ip),
        }
    }
}

/// The one spelling of an rhost that is an address (see [`parse_rhost`]);
/// `None` for a host name. Remembered hosts and per-source failure counts
/// are keyed by it, so `::ffff:10.0.0.1` and `10.0.0.1` are one source.
pub fn canonical_rhost(rhost: &str) -> Option<String> {
    parse_rhost(rhost).map(|r| r.to_string())
}

/// `fe80::/10`.
fn is_link_local(ip: &Ipv6Addr) -> bool {
    ip.segments()[0] & 0xffc0 == 0xfe80
}

fn is_link_local_net(net: &IpNet) -> bool {
    match net {
        IpNet::V6(v6) => v6.prefix_len() >= 10 && is_link_local(&v6.network()),
        IpNet::V4(_) => false,
    }
}

/// An interface name as the kernel allows one (`IFNAMSIZ`), or a number.
fn valid_zone(zone: &str) -> bool {
    (1..16).contains(&zone.len())
        && zone
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"._-@".contains(&b))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn nets(list: &[&str]) -> Networks {
        Networks::parse(list).unwrap()
    }

    #[test]
    fn ipv4_cidr_edges() {
        let n = nets(&["10.0.0.0/8"]);
        assert!(n.contains("10.0.0.0"));
        assert!(n.contains("10.255.255.255"));
        assert!(!n.contains("11.0.0.0"));
        assert!(!n.contains("9.255.255.255"));
    }

    #[test]
    fn slash_zero_matches_every_address_of_its_family() {
        let n = nets(&["0.0.0.0/0"]);
        assert!(n.contains("1.2.3.4") && n.contains("255.255.255.255"));
        assert!(!n.contains("2001:db8::1"));
        let n6 = nets(&["::/0"]);
        assert!(n6.contains("2001:db8::1"));
        assert!(
            !n6.contains("1.2.3.4"),
            "IPv4 is not inside ::/0 once canonical"
        );
    }

    #[test]
    fn host_routes_match_one_address() {
        let n = nets(&["192.0.2.7/32", "2001:db8::7/128", "198.51.100.1"]);
        assert!(n.contains("192.0.2.7"));
        assert!(!n.contains("192.0.2.8"));
        assert!(n.contains("2001:db8::7"));
        assert!(!n.contains("2001:db8::8"));
        assert!(n.contains("198.51.100.1"), "bare address = /32");
    }

    #[test]
    fn ipv6_networks() {
        let n = nets(&["2001:db8::/32"]);
        assert!(n.contains("2001:db8:ffff::1"));
        assert!(!n.contains("fe80::1%eth0"));
        assert!(!n.contains("2001:db9::1"));
    }

    #[test]
    fn ipv4_mapped_ipv6_counts_as_ipv4() {
        let n = nets(&["10.0.0.0/8"]);
        assert!(n.contains("::ffff:10.1.2.3"));
        assert!(!n.contains("::ffff:11.1.2.3"));
        let mapped = nets(&["::ffff:10.0.0.0/104"]);
        assert!(mapped.contains("10.9.9.9"));
        assert!(!mapped.contains("11.0.0.1"));
    }

    #[test]
    fn host_names_and_garbage_never_match() {
        let n = nets(&["0.0.0.0/0", "::/0"]);
        for rhost in [
            "localhost",
            "example.com",
            "",
            "10.0.0.1.evil",
            "1.2.3.4/8",
            "[::1",
        ] {
            assert!(!n.contains(rhost), "{rhost}");
        }
    }

    #[test]
    fn bad_entries_are_reported() {
        assert_eq!(
            Networks::parse(&["10.0.0.0/8", "10.0.0.0/33"]),
            Err("10.0.0.0/33".into())
        );
        assert_eq!(Networks::parse(&["example.com"]), Err("example.com".into()));
        assert!(Networks::parse::<&str>(&[]).unwrap().is_empty());
    }

    #[test]
    fn only_canonical_literals_are_addresses() {
        let n = nets(&["10.0.0.0/8", "2001:db8::/32"]);
        for rhost in [
            "10.0.0.1%evil.example.com",
            "[10.0.0.1]",
            " 10.0.0.1 ",
            "10.0.0.1 ",
            "::ffff:a00:1",
            "[2001:db8::1]",
            "2001:DB8::1",
            "2001:db8:0::1",
            "2001:db8::1%eth0",
            "10.0.0.1%",
        ] {
            assert!(!n.contains(rhost), "{rhost:?} must not match");
        }
        for rhost in ["10.0.0.1", "::ffff:10.0.0.1", "2001:db8::1"] {
            assert!(n.contains(rhost), "{rhost:?} must match");
        }
    }

    #[test]
    fn link_local_addresses_match_only_on_the_interface_named() {
        let n = nets(&["fe80::/64%eth0"]);
        assert!(n.contains("fe80::1%eth0"));
        assert!(!n.contains("fe80::1%eth1"), "another interface");
        assert!(!n.contains("fe80::1"), "no interface");
        assert!(!nets(&["fe80::/64"]).contains("fe80::1%eth0"));
        assert_eq!(
            Networks::parse(&["10.0.0.0/8%eth0"]),
            Err("10.0.0.0/8%eth0".into())
        );
        assert_eq!(Networks::parse(&["fe80::/64%"]), Err("fe80::/64%".into()));
    }

    #[test]
    fn canonical_rhosts_are_one_spelling_per_address() {
        assert_eq!(
            canonical_rhost("::ffff:10.0.0.1").as_deref(),
            Some("10.0.0.1")
        );
        assert_eq!(
            canonical_rhost("fe80::1%eth0").as_deref(),
            Some("fe80::1%eth0")
        );
        assert_eq!(
            canonical_rhost("2001:db8::1").as_deref(),
            Some("2001:db8::1")
        );
        for name in [
            "host.example",
            "[10.0.0.1]",
            " 10.0.0.1",
            "::ffff:a00:1",
            "",
        ] {
            assert_eq!(canonical_rhost(name), None, "{name:?}");
        }
    }

    #[test]
    fn host_bits_in_a_network_are_ignored() {
        assert!(nets(&["10.1.2.3/8"]).contains("10.200.0.1"));
    }
}
