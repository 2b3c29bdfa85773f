//! Admin-trusted networks: CIDR matching on `PAM_RHOST`.
//!
//! Only literal IP addresses match. A host name never does: resolving it
//! would let whoever controls DNS skip the second factor, and would make a
//! login wait on a resolver.

use std::net::IpAddr;

use ipnet::{IpNet, Ipv4Net};

/// A parsed `trusted_networks` list.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Networks(Vec<IpNet>);

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

    /// True when `rhost` is a literal IP inside one of the networks.
    pub fn contains(&self, rhost: &str) -> bool {
        match parse_rhost(rhost) {
            Some(ip) => self.0.iter().any(|net| net.contains(&ip)),
            None => false,
        }
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

fn parse_net(text: &str) -> Option<IpNet> {
    let text = text.trim();
    let net = match text.parse::<IpNet>() {
        Ok(net) => net,
        Err(_) => IpNet::from(text.parse::<IpAddr>().ok()?),
    };
    Some(canonical_net(net))
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

/// An rhost as sshd and login give it: a literal address, perhaps in
/// brackets or with an IPv6 zone; IPv4-mapped IPv6 becomes IPv4.
pub fn parse_rhost(rhost: &str) -> Option<IpAddr> {
    let text = rhost.trim();
    let text = text
        .strip_prefix('[')
        .and_then(|t| t.strip_suffix(']'))
        .unwrap_or(text);
    let text = text.split('%').next().unwrap_or(text);
    text.parse::<IpAddr>().ok().map(|ip| ip.to_canonical())
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
        assert!(n.contains("[2001:db8::1]"));
        assert!(!n.contains("fe80::1%eth0"));
        assert!(
            nets(&["fe80::/10"]).contains("fe80::1%eth0"),
            "zone index ignored"
        );
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
    fn host_bits_in_a_network_are_ignored() {
        assert!(nets(&["10.1.2.3/8"]).contains("10.200.0.1"));
    }
}
