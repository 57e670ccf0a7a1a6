//! The client's address behind reverse proxies.
//!
//! `Forwarded` (RFC 7239) and `X-Forwarded-For` are believed only when the
//! connection comes from a configured trusted proxy (`trusted_proxies`), and
//! then read right to left past every trusted hop: the first address that is
//! not a trusted proxy is the client. Without trusted proxies both headers are
//! ignored, since any client can send them. The address found feeds the login
//! throttle, the audit and the logs.
//!
//! The CIDR matching is written here rather than taken from a crate: it is a
//! prefix comparison on `u128`s over the standard library's address parsing,
//! and the whole of it is tested below.

use std::net::IpAddr;

use axum::http::HeaderMap;

/// An address block, e.g. `10.0.0.0/8` or `2001:db8::/32` (a bare address is
/// a block of one).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cidr {
    network: IpAddr,
    prefix: u8,
}

impl Cidr {
    /// Parses `ADDR/PREFIX` or `ADDR`.
    pub fn parse(text: &str) -> Result<Self, String> {
        let bad = || format!("{text:?} is not an address or CIDR block (e.g. 10.0.0.0/8)");
        let (addr, prefix) = match text.trim().split_once('/') {
            Some((addr, prefix)) => (addr, Some(prefix.parse::<u8>().map_err(|_| bad())?)),
            None => (text.trim(), None),
        };
        let network: IpAddr = addr.parse().map_err(|_| bad())?;
        let max = if network.is_ipv4() { 32 } else { 128 };
        let prefix = prefix.unwrap_or(max);
        if prefix > max {
            return Err(bad());
        }
        Ok(Self { network, prefix })
    }

    /// Whether `ip` is in this block (IPv4-mapped IPv6 counts as IPv4).
    pub fn contains(&self, ip: IpAddr) -> bool {
        let ip = canonical(ip);
        match (self.network, ip) {
            (IpAddr::V4(net), IpAddr::V4(ip)) => prefix_eq(
                u128::from(u32::from(net)),
                u128::from(u32::from(ip)),
                32,
                self.prefix,
            ),
            (IpAddr::V6(net), IpAddr::V6(ip)) => {
                prefix_eq(u128::from(net), u128::from(ip), 128, self.prefix)
            }
            _ => false,
        }
    }
}

fn prefix_eq(a: u128, b: u128, bits: u8, prefix: u8) -> bool {
    let shift = u32::from(bits - prefix);
    a.checked_shr(shift).unwrap_or(0) == b.checked_shr(shift).unwrap_or(0)
}

fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        v4 => v4,
    }
}

/// The addresses a request passed through, nearest client first, as the
/// proxies wrote them: `Forwarded`'s `for=` if present, else
/// `X-Forwarded-For`. An entry that is not an address (`unknown`, an
/// obfuscated identifier) is `None`.
fn forwarded_chain(headers: &HeaderMap) -> Vec<Option<IpAddr>> {
    let values = |name: &str| {
        headers
            .get_all(name)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .map(str::trim)
            .filter(|v| !v.is_empty())
            .map(str::to_owned)
            .collect::<Vec<_>>()
    };
    let forwarded = values("forwarded");
    if !forwarded.is_empty() {
        return forwarded
            .iter()
            .map(|element| {
                element
                    .split(';')
                    .filter_map(|pair| pair.trim().split_once('='))
                    .find(|(k, _)| k.trim().eq_ignore_ascii_case("for"))
                    .and_then(|(_, v)| node_address(v))
            })
            .collect();
    }
    values("x-forwarded-for")
        .iter()
        .map(|v| node_address(v))
        .collect()
}

/// `192.0.2.1`, `"192.0.2.1:8080"`, `"[2001:db8::1]:4711"`, `2001:db8::1`.
fn node_address(text: &str) -> Option<IpAddr> {
    let text = text.trim().trim_matches('"');
    if let Ok(ip) = text.parse() {
        return Some(ip);
    }
    if let Some(rest) = text.strip_prefix('[') {
        return rest.split_once(']')?.0.parse().ok();
    }
    let (host, port) = text.rsplit_once(':')?;
    port.parse::<u16>().ok()?;
    host.parse().ok()
}

/// The client's address: `peer` itself unless it is a trusted proxy; then
/// the forwarded chain read right to left past trusted hops. An entry that is
/// not an address stops the walk at the trusted hop that sent it.
pub fn client_addr(peer: IpAddr, headers: &HeaderMap, trusted: &[Cidr]) -> IpAddr {
    let is_trusted = |ip: IpAddr| trusted.iter().any(|c| c.contains(ip));
    if !is_trusted(peer) {
        return canonical(peer);
    }
    let mut client = canonical(peer);
    for hop in forwarded_chain(headers).into_iter().rev() {
        match hop {
            Some(ip) => {
                client = canonical(ip);
                if !is_trusted(ip) {
                    break;
                }
            }
            None => break,
        }
    }
    client
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.append(*k, v.parse().unwrap());
        }
        h
    }

    #[test]
    fn blocks_match_by_prefix() {
        let net = Cidr::parse("10.0.0.0/8").unwrap();
        assert!(net.contains("10.200.3.4".parse().unwrap()));
        assert!(net.contains("::ffff:10.1.1.1".parse().unwrap()));
        assert!(!net.contains("11.0.0.1".parse().unwrap()));
        let one = Cidr::parse("192.0.2.7").unwrap();
        assert!(one.contains("192.0.2.7".parse().unwrap()));
        assert!(!one.contains("192.0.2.8".parse().unwrap()));
        let v6 = Cidr::parse("2001:db8::/32").unwrap();
        assert!(v6.contains("2001:db8:ffff::1".parse().unwrap()));
        assert!(!v6.contains("2001:db9::1".parse().unwrap()));
        assert!(
            Cidr::parse("0.0.0.0/0")
                .unwrap()
                .contains("8.8.8.8".parse().unwrap())
        );
        for bad in ["10.0.0.0/33", "::/129", "example.com", "10.0.0.0/x", ""] {
            assert!(Cidr::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn forwarded_headers_count_only_from_trusted_proxies_right_to_left() {
        let proxy: IpAddr = "10.0.0.5".parse().unwrap();
        let stranger: IpAddr = "198.51.100.9".parse().unwrap();
        let trusted = [Cidr::parse("10.0.0.0/8").unwrap()];
        let xff = headers(&[("x-forwarded-for", "6.6.6.6, 203.0.113.7, 10.0.0.9")]);
        // The client forged 6.6.6.6; the first untrusted hop from the right
        // is the address our proxies saw.
        assert_eq!(
            client_addr(proxy, &xff, &trusted),
            "203.0.113.7".parse::<IpAddr>().unwrap()
        );
        // From an untrusted peer, or with no trusted proxies: ignored.
        assert_eq!(client_addr(stranger, &xff, &trusted), stranger);
        assert_eq!(client_addr(proxy, &xff, &[]), proxy);
        // RFC 7239, with quoting, ports and IPv6; it wins over X-Forwarded-For.
        let fwd = headers(&[
            ("forwarded", "for=6.6.6.6;proto=https"),
            ("forwarded", "for=\"[2001:db8::7]:4711\", for=10.1.2.3"),
            ("x-forwarded-for", "1.1.1.1"),
        ]);
        assert_eq!(
            client_addr(proxy, &fwd, &trusted),
            "2001:db8::7".parse::<IpAddr>().unwrap()
        );
        // An entry that is not an address stops at the proxy that wrote it.
        let odd = headers(&[("forwarded", "for=unknown, for=10.0.0.9")]);
        assert_eq!(
            client_addr(proxy, &odd, &trusted),
            "10.0.0.9".parse::<IpAddr>().unwrap()
        );
        // Every hop trusted: the leftmost.
        let all = headers(&[("x-forwarded-for", "10.9.9.9, 10.0.0.9")]);
        assert_eq!(
            client_addr(proxy, &all, &trusted),
            "10.9.9.9".parse::<IpAddr>().unwrap()
        );
        // No header: the proxy itself.
        assert_eq!(client_addr(proxy, &HeaderMap::new(), &trusted), proxy);
    }
}
