//! The client address a login is throttled by.
//!
//! By default it is the TCP peer: nothing a client sends can change it. Behind a reverse proxy
//! (the gateway forwards `/oauth/*` here and replaces `X-Forwarded-For` with the address of its
//! own peer) every peer is the proxy, so `AUTH_TRUSTED_PROXIES` names the proxies' addresses:
//! for a request whose peer is one of them, the client is the **last** `X-Forwarded-For` entry,
//! the one the proxy itself wrote. Entries to its left came from further away and may be forged,
//! so only one hop is trusted. A trusted peer that sends no usable entry is taken as the client
//! itself (the stricter choice: it shares its own counter).

use std::fmt;
use std::net::{IpAddr, SocketAddr};
use std::str::FromStr;

use axum::extract::ConnectInfo;
use http::HeaderMap;
use http::request::Parts;

/// A network: an address and a prefix length (`10.0.0.0/8`, `fd00::/8`; a bare address is a
/// single host).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IpNet {
    addr: IpAddr,
    prefix: u8,
}

impl IpNet {
    pub fn contains(&self, ip: IpAddr) -> bool {
        match (self.addr, ip.to_canonical()) {
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

impl FromStr for IpNet {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let (addr, prefix) = match s.split_once('/') {
            Some((addr, prefix)) => (addr, Some(prefix)),
            None => (s, None),
        };
        let addr = addr
            .parse::<IpAddr>()
            .map_err(|_| format!("{s:?} is not an IP address or network"))?
            .to_canonical();
        let max = if addr.is_ipv4() { 32 } else { 128 };
        let prefix = match prefix {
            None => max,
            Some(p) => p
                .parse::<u8>()
                .ok()
                .filter(|p| *p <= max)
                .ok_or_else(|| format!("{s:?}: the prefix length must be 0 to {max}"))?,
        };
        Ok(Self { addr, prefix })
    }
}

impl fmt::Display for IpNet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.addr, self.prefix)
    }
}

/// `AUTH_TRUSTED_PROXIES`: the peers whose `X-Forwarded-For` is believed. Empty by default.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TrustedProxies(Vec<IpNet>);

impl TrustedProxies {
    /// A comma-separated list of addresses and networks; empty trusts nobody.
    pub fn parse(value: &str) -> Result<Self, String> {
        value
            .split(',')
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(str::parse)
            .collect::<Result<_, _>>()
            .map(Self)
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    pub fn trusts(&self, peer: IpAddr) -> bool {
        self.0.iter().any(|net| net.contains(peer))
    }

    /// The client of a request from `peer`: the peer itself, or, from a trusted proxy, the last
    /// `X-Forwarded-For` entry when it is an IP address.
    pub fn client_ip(&self, peer: IpAddr, headers: &HeaderMap) -> IpAddr {
        let peer = peer.to_canonical();
        if !self.trusts(peer) {
            return peer;
        }
        headers
            .get_all("x-forwarded-for")
            .iter()
            .next_back()
            .and_then(|value| value.to_str().ok())
            .and_then(|value| value.rsplit(',').next())
            .and_then(|last| last.trim().parse::<IpAddr>().ok())
            .map_or(peer, |ip| ip.to_canonical())
    }

    /// [`TrustedProxies::client_ip`] of a request; `None` without a peer address (only in tests
    /// that call the router without a socket).
    pub fn client_ip_of(&self, parts: &Parts) -> Option<IpAddr> {
        parts
            .extensions
            .get::<ConnectInfo<SocketAddr>>()
            .map(|ConnectInfo(peer)| self.client_ip(peer.ip(), &parts.headers))
    }
}

impl fmt::Display for TrustedProxies {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, net) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str(",")?;
            }
            write!(f, "{net}")?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    fn xff(values: &[&str]) -> HeaderMap {
        let mut headers = HeaderMap::new();
        for value in values {
            headers.append("x-forwarded-for", value.parse().unwrap());
        }
        headers
    }

    #[test]
    fn networks_parse_and_match() {
        let trusted =
            TrustedProxies::parse(" 10.0.0.0/8, 192.168.1.7 ,fd00::/8,, ::1").expect("parses");
        assert_eq!(
            trusted.to_string(),
            "10.0.0.0/8,192.168.1.7/32,fd00::/8,::1/128"
        );
        assert!(trusted.trusts(ip("10.200.3.4")));
        assert!(trusted.trusts(ip("::ffff:10.1.1.1")), "IPv4-mapped");
        assert!(trusted.trusts(ip("192.168.1.7")));
        assert!(!trusted.trusts(ip("192.168.1.8")));
        assert!(trusted.trusts(ip("fd12::1")));
        assert!(trusted.trusts(ip("::1")));
        assert!(!trusted.trusts(ip("11.0.0.1")));
        assert!(!trusted.trusts(ip("fe80::1")));

        let all = TrustedProxies::parse("0.0.0.0/0,::/0").unwrap();
        assert!(all.trusts(ip("203.0.113.1")) && all.trusts(ip("2001:db8::1")));
        assert!(TrustedProxies::parse("").unwrap().is_empty());
        for bad in [
            "10.0.0.0/33",
            "::/129",
            "10.0.0.0/x",
            "example.com",
            "10.0.0.0/8/8",
        ] {
            assert!(TrustedProxies::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn the_peer_is_the_client_unless_it_is_a_trusted_proxy() {
        let trusted = TrustedProxies::parse("10.0.0.0/8").unwrap();
        let forged = xff(&["6.6.6.6"]);
        assert_eq!(
            trusted.client_ip(ip("203.0.113.7"), &forged),
            ip("203.0.113.7")
        );
        assert_eq!(
            TrustedProxies::default().client_ip(ip("10.1.1.1"), &forged),
            ip("10.1.1.1"),
            "nobody is trusted by default"
        );
        assert_eq!(trusted.client_ip(ip("10.1.1.1"), &forged), ip("6.6.6.6"));
    }

    #[test]
    fn only_the_entry_the_proxy_wrote_is_believed() {
        let trusted = TrustedProxies::parse("10.0.0.0/8").unwrap();
        let proxy = ip("10.1.1.1");
        // The client wrote the first entry, the proxy appended the real address.
        let appended = xff(&["6.6.6.6, 198.51.100.4"]);
        assert_eq!(trusted.client_ip(proxy, &appended), ip("198.51.100.4"));
        let two_lines = xff(&["6.6.6.6", "198.51.100.4"]);
        assert_eq!(trusted.client_ip(proxy, &two_lines), ip("198.51.100.4"));
        assert_eq!(
            trusted.client_ip(proxy, &xff(&["::ffff:198.51.100.4"])),
            ip("198.51.100.4")
        );
        // Nothing usable: the proxy's own address.
        for unusable in [xff(&[]), xff(&["unknown"]), xff(&["198.51.100.4:443"])] {
            assert_eq!(trusted.client_ip(proxy, &unusable), proxy);
        }
    }
}
