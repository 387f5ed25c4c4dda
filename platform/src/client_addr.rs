//! The address of the client behind a request, for decisions that key on it (login throttling)
//! and for what is recorded about a session.
//!
//! By default it is the TCP peer: nothing a client sends can change it. Behind reverse proxies
//! every peer is a proxy, so each service names the proxies it trusts (`AUTH_TRUSTED_PROXIES`,
//! `GATEWAY_TRUSTED_PROXIES`): for a request whose peer is one of them, the client is the
//! **last** `X-Forwarded-For` entry, the one that proxy itself wrote. Entries to its left came
//! from further away and may be forged, so only one hop is trusted; each proxy of the platform
//! resolves its own client this way and forwards that one address (the gateway replaces
//! `X-Forwarded-For`, never appends to it). A trusted peer that sends no usable entry is taken
//! as the client itself (the stricter choice: it shares its own counter).

use std::fmt;
use std::net::{IpAddr, SocketAddr};

use axum::extract::ConnectInfo;
use http::HeaderMap;
use http::request::Parts;
use ipnet::IpNet;

/// The peers whose `X-Forwarded-For` is believed: networks (`10.0.0.0/8`, `fd00::/8`) or single
/// addresses. Empty by default.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TrustedProxies(Vec<IpNet>);

impl TrustedProxies {
    /// A comma-separated list; blanks are skipped.
    pub fn parse(value: &str) -> Result<Self, String> {
        value
            .split(',')
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(parse_net)
            .collect::<Result<_, _>>()
            .map(Self)
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    pub fn trusts(&self, peer: IpAddr) -> bool {
        let peer = peer.to_canonical();
        self.0.iter().any(|net| net.contains(&peer))
    }

    /// The client of a request from `peer` carrying `headers`.
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

    /// [`TrustedProxies::client_ip`] of a request served with `ConnectInfo`; `None` without it.
    pub fn client_ip_of(&self, parts: &Parts) -> Option<IpAddr> {
        parts
            .extensions
            .get::<ConnectInfo<SocketAddr>>()
            .map(|ConnectInfo(peer)| self.client_ip(peer.ip(), &parts.headers))
    }
}

/// A network with its prefix, or a bare address as a single host.
fn parse_net(s: &str) -> Result<IpNet, String> {
    if s.contains('/') {
        let net: IpNet = s
            .parse()
            .map_err(|_| format!("{s:?} is not an IP network (address/prefix)"))?;
        // Peers are canonicalised (an IPv4-mapped address becomes IPv4), so an IPv4-mapped
        // network is matched as the IPv4 network it maps; one wider than the mapped range
        // (prefix below 96) would match IPv6 addresses it does not name.
        match net {
            IpNet::V6(v6) if v6.addr().to_ipv4_mapped().is_some() => {
                let prefix = v6.prefix_len().checked_sub(96).ok_or_else(|| {
                    format!("{s:?}: an IPv4-mapped network needs a prefix of at least 96")
                })?;
                let v4 = v6.addr().to_ipv4_mapped().expect("checked above");
                Ok(IpNet::new(IpAddr::V4(v4), prefix).expect("BUG: prefix at most 32"))
            }
            net => Ok(net),
        }
    } else {
        s.parse::<IpAddr>()
            .map(|addr| IpNet::from(addr.to_canonical()))
            .map_err(|_| format!("{s:?} is not an IP address or network"))
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
            "::ffff:10.0.0.0/8",
        ] {
            assert!(TrustedProxies::parse(bad).is_err(), "{bad}");
        }
        let mapped = TrustedProxies::parse("::ffff:10.0.0.0/104").unwrap();
        assert_eq!(mapped.to_string(), "10.0.0.0/8");
        assert!(mapped.trusts(ip("10.9.8.7")) && mapped.trusts(ip("::ffff:10.9.8.7")));
        assert!(!mapped.trusts(ip("::1")));
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
