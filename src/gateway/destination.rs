//! Where upstream calls may go. Unless private upstreams are allowed (development), a tool's endpoint
//! must be on the public internet: the check is made on the addresses the HTTP client actually connects
//! to (a resolver that drops every other address, so a name that re-resolves to an internal address
//! later cannot get through), and on an endpoint written as an address literal, which skips the
//! resolver. The client follows no redirects and uses no proxy, so the connection checked is the
//! connection made, and secret headers never leave the configured host.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use reqwest::dns::{Addrs, Name, Resolve, Resolving};

/// Whether an address is on the public internet: not loopback, unspecified, private, shared (CGNAT),
/// link-local (cloud metadata services live there), unique-local, multicast, broadcast, benchmarking or
/// documentation space, and not an IPv4 address of those in IPv6 clothing.
pub fn is_public(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => is_public_v4(v4),
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => is_public_v4(v4),
            None => is_public_v6(v6),
        },
    }
}

fn is_public_v4(ip: Ipv4Addr) -> bool {
    let [a, b, _, _] = ip.octets();
    !(ip.is_unspecified()
        || ip.is_loopback()
        || ip.is_private()
        || ip.is_link_local()
        || ip.is_multicast()
        || ip.is_broadcast()
        || ip.is_documentation()
        || a == 0
        || (a == 100 && (64..128).contains(&b))
        || (a == 192 && b == 0 && ip.octets()[2] == 0)
        || (a == 198 && (b == 18 || b == 19))
        || a >= 240)
}

fn is_public_v6(ip: Ipv6Addr) -> bool {
    let first = ip.segments()[0];
    !(ip.is_unspecified()
        || ip.is_loopback()
        || ip.is_multicast()
        || (first & 0xfe00) == 0xfc00
        || (first & 0xffc0) == 0xfe80
        || (first & 0xffc0) == 0xfec0
        || first == 0x2001 && ip.segments()[1] == 0x0db8
        || first == 0x0064 && ip.segments()[1] == 0xff9b)
}

/// Why an endpoint's address literal may not be called, if it may not (see [`address_refused`]).
pub fn literal_refused(url: &str, allow_private: bool) -> Option<String> {
    address_refused(&reqwest::Url::parse(url).ok()?, allow_private)
}

/// Why a parsed endpoint may not be called, if its host is an address literal that may not be; a
/// host name is judged when it is resolved ([`Resolver`]).
pub fn address_refused(url: &reqwest::Url, allow_private: bool) -> Option<String> {
    if allow_private {
        return None;
    }
    let ip: IpAddr = url.host_str()?.trim_matches(['[', ']']).parse().ok()?;
    (!is_public(ip)).then(|| format!("{ip} is not a public address"))
}

/// The system resolver, keeping only public addresses unless private ones are allowed.
#[derive(Debug, Clone, Copy)]
pub struct Resolver {
    pub allow_private: bool,
}

impl Resolve for Resolver {
    fn resolve(&self, name: Name) -> Resolving {
        let allow_private = self.allow_private;
        Box::pin(async move {
            let host = name.as_str().to_owned();
            let resolved: Vec<SocketAddr> =
                tokio::net::lookup_host((host.as_str(), 0)).await?.collect();
            let allowed: Vec<SocketAddr> = resolved
                .into_iter()
                .filter(|addr| allow_private || is_public(addr.ip()))
                .collect();
            if allowed.is_empty() {
                return Err(format!("{host} resolves to no public address").into());
            }
            let addrs: Addrs = Box::new(allowed.into_iter());
            Ok(addrs)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn public(text: &str) -> bool {
        is_public(text.parse().unwrap())
    }

    #[test]
    fn internal_addresses_are_not_public() {
        for internal in [
            "127.0.0.1",
            "127.8.9.10",
            "0.0.0.0",
            "10.1.2.3",
            "172.16.0.1",
            "172.31.255.255",
            "192.168.1.1",
            "169.254.169.254",
            "100.64.0.1",
            "192.0.0.8",
            "198.18.0.1",
            "224.0.0.1",
            "255.255.255.255",
            "240.0.0.1",
            "192.0.2.1",
            "::1",
            "::",
            "fc00::1",
            "fd12:3456::1",
            "fe80::1",
            "ff02::1",
            "2001:db8::1",
            "::ffff:127.0.0.1",
            "::ffff:169.254.169.254",
            "::ffff:10.0.0.1",
            "64:ff9b::a9fe:a9fe",
        ] {
            assert!(!public(internal), "{internal} counted as public");
        }
    }

    #[test]
    fn internet_addresses_are_public() {
        for external in [
            "1.1.1.1",
            "8.8.8.8",
            "172.32.0.1",
            "100.128.0.1",
            "2606:4700::1111",
            "::ffff:8.8.8.8",
        ] {
            assert!(public(external), "{external} counted as internal");
        }
    }

    #[test]
    fn endpoint_literals_are_judged_without_connecting() {
        assert!(literal_refused("http://127.0.0.1:9/", false).is_some());
        assert!(literal_refused("http://[::1]:9/", false).is_some());
        assert!(literal_refused("http://169.254.169.254/latest/meta-data", false).is_some());
        assert!(literal_refused("http://127.0.0.1:9/", true).is_none());
        assert!(literal_refused("https://8.8.8.8/", false).is_none());
        assert!(literal_refused("https://api.example.com/v1", false).is_none());
        assert!(literal_refused("not a url", false).is_none());
    }

    #[test]
    fn a_parsed_endpoint_is_judged_by_its_host() {
        let parsed = |text: &str| reqwest::Url::parse(text).unwrap();
        let loopback = parsed("http://[::1]:9/v1");
        assert_eq!(
            address_refused(&loopback, false).as_deref(),
            Some("::1 is not a public address")
        );
        assert!(address_refused(&loopback, true).is_none());
        assert!(address_refused(&parsed("http://10.0.0.7/"), false).is_some());
        assert!(address_refused(&parsed("https://8.8.8.8/"), false).is_none());
        assert!(address_refused(&parsed("https://localhost/"), false).is_none());
    }
}
