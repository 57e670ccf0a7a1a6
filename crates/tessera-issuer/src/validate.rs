//! Shapes of operator- and user-supplied names.

/// The longest username accepted, in characters.
pub const MAX_USERNAME_CHARS: usize = 64;

/// A username: 1 to 64 characters, no control characters, no surrounding spaces.
/// Any script is fine (`José`, `李`); it is stored and compared exactly.
pub fn username(name: &str) -> Result<(), String> {
    let chars = name.chars().count();
    if chars == 0 || chars > MAX_USERNAME_CHARS {
        return Err(format!(
            "a username has 1 to {MAX_USERNAME_CHARS} characters"
        ));
    }
    if name.chars().any(char::is_control) || name.trim() != name {
        return Err("a username has no control characters and no surrounding spaces".to_owned());
    }
    Ok(())
}

/// A role: 1 to 64 of `a-z 0-9 _ - . :`.
pub fn role(role: &str) -> Result<(), String> {
    let ok = !role.is_empty()
        && role.len() <= 64
        && role
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"_-.:".contains(&b));
    if ok {
        Ok(())
    } else {
        Err(format!(
            "{role:?} is not a role name (1 to 64 of a-z 0-9 _ - . :)"
        ))
    }
}

/// An OAuth `client_id`: 1 to 64 visible ASCII characters.
pub fn client_id(id: &str) -> Result<(), String> {
    if !id.is_empty() && id.len() <= 64 && id.bytes().all(|b| b.is_ascii_graphic()) {
        Ok(())
    } else {
        Err("a client_id is 1 to 64 visible ASCII characters".to_owned())
    }
}

/// An OAuth `scope` (RFC 6749 §3.3): space-separated tokens of visible ASCII
/// without `"` or `\`, at most 512 bytes.
pub fn scope(scope: &str) -> Result<(), String> {
    let ok = scope.len() <= 512
        && scope.split(' ').all(|t| {
            !t.is_empty()
                && t.bytes()
                    .all(|b| b.is_ascii_graphic() && b != b'"' && b != b'\\')
        });
    if ok {
        Ok(())
    } else {
        Err("not a valid scope".to_owned())
    }
}

/// Whether `text` is unpadded base64url (the alphabet only).
pub fn is_b64url(text: &str) -> bool {
    text.bytes()
        .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

/// A web origin (RFC 6454) as browsers send it in `Origin`:
/// `http(s)://host[:port]`, lower case, no path, no default port. Returns it
/// in that form (`HTTPS://App.Example.com:443` → `https://app.example.com`).
pub fn origin(text: &str) -> Result<String, String> {
    let invalid = || {
        format!(
            "{text:?} is not an origin like \"https://app.example.com\" (scheme, host, optional port; no path)"
        )
    };
    let lower = text.to_ascii_lowercase();
    let (scheme, rest) = lower.split_once("://").ok_or_else(invalid)?;
    let default_port = match scheme {
        "https" => "443",
        "http" => "80",
        _ => return Err(invalid()),
    };
    let (host, port) = split_host_port(rest).ok_or_else(invalid)?;
    let host_ok = if let Some(v6) = host.strip_prefix('[') {
        v6.strip_suffix(']')
            .is_some_and(|a| a.parse::<std::net::Ipv6Addr>().is_ok())
    } else {
        !host.is_empty()
            && host
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.')
    };
    if !host_ok {
        return Err(invalid());
    }
    match port {
        None => Ok(format!("{scheme}://{host}")),
        Some(p) if p == default_port => Ok(format!("{scheme}://{host}")),
        Some(p) if p.parse::<u16>().is_ok_and(|n| n > 0) && !p.starts_with('0') => {
            Ok(format!("{scheme}://{host}:{p}"))
        }
        Some(_) => Err(invalid()),
    }
}

/// `host[:port]` → `(host, port)`; `None` when anything follows.
fn split_host_port(rest: &str) -> Option<(&str, Option<&str>)> {
    if rest.starts_with('[') {
        let end = rest.find(']')? + 1;
        let (host, tail) = rest.split_at(end);
        return match tail {
            "" => Some((host, None)),
            _ => Some((host, Some(tail.strip_prefix(':')?))),
        };
    }
    match rest.split_once(':') {
        Some((host, port)) => Some((host, Some(port))),
        None => Some((rest, None)),
    }
}

/// The origin of an `http(s)` URL (its scheme, host and port), if it has one.
pub fn origin_of(url: &str) -> Option<String> {
    let scheme_end = url.find("://")? + 3;
    let authority_end = url[scheme_end..]
        .find(['/', '?', '#'])
        .map_or(url.len(), |i| scheme_end + i);
    origin(&url[..authority_end]).ok()
}

/// The host of an `http(s)` URL, lower case, without its port.
pub fn url_host(url: &str) -> Option<String> {
    let origin = origin_of(url)?;
    let rest = &origin[origin.find("://")? + 3..];
    let (host, _) = split_host_port(rest)?;
    Some(host.to_owned())
}

/// Whether a URL is plain HTTP to a loopback host (`127.0.0.0/8`, `[::1]`,
/// `localhost`): the one case where cookies go without `Secure`.
pub fn is_loopback_http(url: &str) -> bool {
    if !url.to_ascii_lowercase().starts_with("http://") {
        return false;
    }
    match url_host(url) {
        Some(host) if host == "localhost" => true,
        Some(host) => is_loopback_ip(&host),
        None => false,
    }
}

/// Whether `host` (as a URI has it, IPv6 in brackets) is a loopback IP
/// literal: `127.0.0.0/8` or `[::1]`, not a name.
pub fn is_loopback_ip(host: &str) -> bool {
    ip_literal(host).is_some_and(|ip| ip.is_loopback())
}

/// The IP address `host` (as a URI has it, IPv6 in brackets) spells, if it
/// is an IP literal rather than a name.
pub fn ip_literal(host: &str) -> Option<std::net::IpAddr> {
    host.trim_start_matches('[')
        .trim_end_matches(']')
        .parse()
        .ok()
}

/// A cookie name: an RFC 6265 token (RFC 7230 `tchar`s), 1 to 64 bytes.
pub fn cookie_name(name: &str) -> Result<(), String> {
    let ok = !name.is_empty()
        && name.len() <= 64
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b));
    if ok {
        Ok(())
    } else {
        Err(format!(
            "{name:?} is not a cookie name (1 to 64 letters, digits or !#$%&'*+-.^_`|~)"
        ))
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn origins_are_normalised_and_checked() {
        for (given, normal) in [
            ("https://app.example.com", "https://app.example.com"),
            ("HTTPS://App.Example.COM:443", "https://app.example.com"),
            ("http://127.0.0.1:8081", "http://127.0.0.1:8081"),
            ("http://[::1]:3000", "http://[::1]:3000"),
            ("http://localhost:80", "http://localhost"),
        ] {
            assert_eq!(super::origin(given).unwrap(), normal, "{given}");
        }
        for bad in [
            "app.example.com",
            "https://app.example.com/",
            "https://app.example.com/path",
            "ftp://x.example",
            "null",
            "*",
            "https://",
            "https://a.example:0",
            "https://a.example:99999",
            "https://a b.example",
            "https://user@a.example",
            "http://[::1",
        ] {
            assert!(super::origin(bad).is_err(), "{bad:?}");
        }
        assert_eq!(
            super::origin_of("https://auth.example.com:8443/tenant").as_deref(),
            Some("https://auth.example.com:8443")
        );
        assert_eq!(
            super::url_host("https://Auth.Example.com:8443/x").as_deref(),
            Some("auth.example.com")
        );
        for loopback in [
            "http://127.0.0.1:8080",
            "http://localhost:1",
            "http://[::1]:9",
        ] {
            assert!(super::is_loopback_http(loopback), "{loopback}");
        }
        for not in [
            "https://127.0.0.1",
            "http://10.0.0.1",
            "http://auth.example.com",
        ] {
            assert!(!super::is_loopback_http(not), "{not}");
        }
        super::cookie_name("tessera_access").unwrap();
        super::cookie_name("__Host-session").unwrap();
        for bad in ["", "a b", "a;b", "a=b", "é"] {
            assert!(super::cookie_name(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn usernames_and_roles() {
        for ok in ["alice", "José", "李小龍", "a.b-c_d@example.com", "x"] {
            super::username(ok).unwrap();
        }
        for bad in [
            "",
            " alice",
            "alice ",
            "al\nice",
            "a\u{0}b",
            &"x".repeat(65),
        ] {
            assert!(super::username(bad).is_err(), "{bad:?}");
        }
        for ok in ["admin", "user", "billing:read", "team-1.ops"] {
            super::role(ok).unwrap();
        }
        for bad in ["", "Admin", "a b", "x'; DROP TABLE users;--"] {
            assert!(super::role(bad).is_err(), "{bad:?}");
        }
    }
}
