//! The client's address behind reverse proxies. `Forwarded` (RFC 7239) and `X-Forwarded-For`
//! are believed only when the socket peer is a configured trusted proxy; the list is then read
//! from the right, skipping trusted proxies, and the first other address is the client. Anyone
//! else's headers are ignored: a browser could write any address into them.

use std::net::IpAddr;

use axum::http::HeaderMap;
use ipnet::IpNet;

#[derive(Clone, Debug, Default)]
pub struct TrustedProxies {
    nets: Vec<IpNet>,
}

impl TrustedProxies {
    /// Addresses (`10.0.0.7`, `::1`) or CIDRs (`10.0.0.0/8`, `fd00::/8`).
    pub fn parse(list: &[String]) -> anyhow::Result<Self> {
        let nets = list
            .iter()
            .map(|s| {
                let s = s.trim();
                s.parse::<IpNet>()
                    .or_else(|_| s.parse::<IpAddr>().map(IpNet::from))
                    .map_err(|_| {
                        anyhow::anyhow!(
                            "trusted_proxies: {s:?} is neither an IP address nor a CIDR like 10.0.0.0/8"
                        )
                    })
            })
            .collect::<anyhow::Result<Vec<_>>>()?;
        Ok(Self { nets })
    }

    pub fn trusts(&self, ip: IpAddr) -> bool {
        let ip = canonical(ip);
        self.nets.iter().any(|n| n.contains(&ip))
    }

    /// The client's address: `peer` itself unless it is a trusted proxy that says who it
    /// forwards for.
    pub fn client_ip(&self, peer: IpAddr, headers: &HeaderMap) -> IpAddr {
        let peer = canonical(peer);
        if !self.trusts(peer) {
            return peer;
        }
        // `Forwarded` is the standard; when a proxy sends it, it wins over the older header.
        let chain = forwarded_chain(headers);
        let chain = if chain.is_empty() {
            x_forwarded_for_chain(headers)
        } else {
            chain
        };
        // Right to left: each hop was added by the proxy that received it; stop at the first
        // address that is not one of ours. An unparsable hop ends the trust there.
        let mut client = peer;
        for hop in chain.iter().rev() {
            match hop {
                Some(ip) => {
                    client = canonical(*ip);
                    if !self.trusts(client) {
                        break;
                    }
                }
                None => break,
            }
        }
        client
    }
}

/// IPv4-mapped IPv6 addresses are their IPv4 address.
fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        v4 => v4,
    }
}

/// Every `for=` of every `Forwarded` header, in order (`None` for `unknown`, an obfuscated
/// name or anything unparsable).
fn forwarded_chain(headers: &HeaderMap) -> Vec<Option<IpAddr>> {
    let mut out = Vec::new();
    for value in headers.get_all("forwarded") {
        let Ok(text) = value.to_str() else {
            out.push(None);
            continue;
        };
        for element in text.split(',') {
            for pair in element.split(';') {
                let Some((name, v)) = pair.split_once('=') else {
                    continue;
                };
                if name.trim().eq_ignore_ascii_case("for") {
                    out.push(parse_node(v.trim().trim_matches('"')));
                }
            }
        }
    }
    out
}

fn x_forwarded_for_chain(headers: &HeaderMap) -> Vec<Option<IpAddr>> {
    let mut out = Vec::new();
    for value in headers.get_all("x-forwarded-for") {
        let Ok(text) = value.to_str() else {
            out.push(None);
            continue;
        };
        out.extend(text.split(',').map(|s| parse_node(s.trim())));
    }
    out
}

/// `192.0.2.60`, `192.0.2.60:4711`, `[2001:db8::1]`, `[2001:db8::1]:4711`, `2001:db8::1`.
fn parse_node(s: &str) -> Option<IpAddr> {
    if let Ok(ip) = s.parse::<IpAddr>() {
        return Some(ip);
    }
    if let Some(rest) = s.strip_prefix('[') {
        return rest.split(']').next()?.parse().ok();
    }
    let (host, port) = s.rsplit_once(':')?;
    port.parse::<u16>().ok()?;
    host.parse::<std::net::Ipv4Addr>().ok().map(IpAddr::V4)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use axum::http::HeaderValue;

    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.append(*k, HeaderValue::from_str(v).unwrap());
        }
        h
    }

    #[test]
    fn headers_from_an_untrusted_peer_are_ignored() {
        let t = TrustedProxies::parse(&["10.0.0.0/8".into()]).unwrap();
        let h = headers(&[("x-forwarded-for", "203.0.113.9")]);
        assert_eq!(t.client_ip(ip("198.51.100.4"), &h), ip("198.51.100.4"));
        let none = TrustedProxies::default();
        assert_eq!(none.client_ip(ip("10.1.1.1"), &h), ip("10.1.1.1"));
    }

    #[test]
    fn a_trusted_chain_is_read_from_the_right() {
        let t = TrustedProxies::parse(&["10.0.0.0/8".into(), "::1".into()]).unwrap();
        // The client wrote a fake first hop; the proxies appended the real ones.
        let h = headers(&[("x-forwarded-for", "1.2.3.4, 203.0.113.9, 10.0.0.2")]);
        assert_eq!(t.client_ip(ip("10.0.0.1"), &h), ip("203.0.113.9"));
        let h = headers(&[
            ("x-forwarded-for", "1.2.3.4"),
            ("x-forwarded-for", "203.0.113.9:5555"),
        ]);
        assert_eq!(t.client_ip(ip("::1"), &h), ip("203.0.113.9"));
        // Forwarded wins over X-Forwarded-For; IPv6 in brackets with a port.
        let h = headers(&[
            (
                "forwarded",
                r#"for=192.0.2.43, for="[2001:db8:cafe::17]:4711";proto=https"#,
            ),
            ("x-forwarded-for", "198.51.100.1"),
        ]);
        assert_eq!(t.client_ip(ip("10.9.9.9"), &h), ip("2001:db8:cafe::17"));
        // Nothing forwarded: the proxy itself.
        assert_eq!(
            t.client_ip(ip("10.0.0.1"), &HeaderMap::new()),
            ip("10.0.0.1")
        );
        // An obfuscated hop stops the walk at the last trusted address.
        let h = headers(&[("forwarded", "for=_hidden, for=10.0.0.3")]);
        assert_eq!(t.client_ip(ip("10.0.0.1"), &h), ip("10.0.0.3"));
        // IPv4-mapped peers count as IPv4.
        let h = headers(&[("x-forwarded-for", "203.0.113.9")]);
        assert_eq!(t.client_ip(ip("::ffff:10.0.0.1"), &h), ip("203.0.113.9"));
    }

    #[test]
    fn bad_entries_are_refused_at_start_up() {
        assert!(TrustedProxies::parse(&["10.0.0.0/33".into()]).is_err());
        assert!(TrustedProxies::parse(&["proxy.internal".into()]).is_err());
        assert!(TrustedProxies::parse(&["192.0.2.1".into(), "2001:db8::/32".into()]).is_ok());
    }
}
