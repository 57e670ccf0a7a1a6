//! The client registry: every OAuth client tokens may be issued to, and what
//! it may ask for. Shared by every instance (the `clients` table), managed with
//! `tessera-issuer clients ...`.
//!
//! A token's `client_id` is always a registered id, its scope a subset of the
//! client's allowed scopes (the client's default when none is asked for), and
//! its audience the client's (or the issuer's configured audiences when the
//! client names none). Nothing a caller sends is signed as given.
//!
//! **Secrets.** A confidential client has a secret: generated (256 random
//! bits) or supplied (at least [`MIN_SECRET_CHARS`] characters). Only its
//! SHA-256 is stored, compared in constant time. A fast hash is the right one
//! here: client secrets are machine credentials with enough entropy that an
//! offline search is hopeless, which is why short ones are refused; a slow
//! hash (Argon2) would put 20 ms of CPU on every introspection call and make
//! client authentication a way to exhaust the issuer.
//!
//! **Reads.** Each instance keeps the registry in memory
//! (`crate::service::registry::Registry`),
//! reloaded when it is more than [`FRESH_FOR`] old (and at once, at most every
//! [`MISS_RELOAD_EVERY`], when a request names an id it does not hold), so a
//! request costs no query and a CLI change is in force within a second.

use std::time::Duration;

use tessera_keyring::sha256;

/// The shortest client secret accepted.
pub const MIN_SECRET_CHARS: usize = 32;
/// The longest client secret accepted, in bytes.
pub const MAX_SECRET_BYTES: usize = 512;
/// How long a copy of the registry is used before it is reloaded.
pub const FRESH_FOR: Duration = Duration::from_secs(1);
/// How often an unknown client id may trigger an early reload.
pub const MISS_RELOAD_EVERY: Duration = Duration::from_millis(100);

/// Whether a client holds a secret.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum ClientKind {
    /// No secret: a browser or native app, or the issuer's own login page.
    Public,
    /// Has a secret and must authenticate with it.
    Confidential,
}

impl ClientKind {
    /// The stored name.
    pub fn name(self) -> &'static str {
        match self {
            Self::Public => "public",
            Self::Confidential => "confidential",
        }
    }

    pub(crate) fn from_name(name: &str) -> Option<Self> {
        match name {
            "public" => Some(Self::Public),
            "confidential" => Some(Self::Confidential),
            _ => None,
        }
    }
}

/// The grant types a client may be allowed (those this issuer implements).
pub const GRANT_TYPES: &[&str] = &["password", "refresh_token", "client_credentials"];

/// A registered client, as operators see it (never its secret).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Client {
    /// The `client_id`.
    pub client_id: String,
    /// Public or confidential.
    #[serde(rename = "type")]
    pub kind: ClientKind,
    /// Grant types it may use at `/token` (`password`, `refresh_token`,
    /// `client_credentials`).
    pub grant_types: Vec<String>,
    /// Scopes it may be issued.
    pub scopes: Vec<String>,
    /// The scope issued when it asks for none (a subset of `scopes`).
    pub default_scope: Vec<String>,
    /// The `aud` of its tokens; empty: the issuer's configured audiences.
    pub audiences: Vec<String>,
    /// Where browser sign-in may send it back (exact match).
    pub redirect_uris: Vec<String>,
    /// May call `/introspect` (confidential clients only).
    pub introspect: bool,
    /// Disabled clients get no tokens and cannot refresh.
    pub disabled: bool,
    /// When it was registered (Unix seconds).
    pub created_at: i64,
    /// When it last changed (Unix seconds).
    pub updated_at: i64,
    /// SHA-256 of the secret (confidential clients).
    #[serde(skip)]
    pub secret_sha256: Option<[u8; 32]>,
}

impl Client {
    /// Whether it may use `grant` at `/token`.
    pub fn allows_grant(&self, grant: &str) -> bool {
        self.grant_types.iter().any(|g| g == grant)
    }

    /// The scope to issue for a request asking for `requested` (space
    /// separated; `None` or empty: the default), or `None` if it asks for a
    /// scope the client may not have.
    pub fn grant_scope(&self, requested: Option<&str>) -> Option<String> {
        let requested = requested.map(str::trim).filter(|s| !s.is_empty());
        let Some(requested) = requested else {
            return Some(self.default_scope.join(" "));
        };
        let mut granted: Vec<&str> = Vec::new();
        for scope in requested.split(' ').filter(|s| !s.is_empty()) {
            if !self.scopes.iter().any(|s| s == scope) {
                return None;
            }
            if !granted.contains(&scope) {
                granted.push(scope);
            }
        }
        Some(granted.join(" "))
    }

    /// `scope` less what the client may no longer have (a refresh after the
    /// operator narrowed it).
    pub fn narrow_scope(&self, scope: &str) -> String {
        scope
            .split(' ')
            .filter(|s| !s.is_empty() && self.scopes.iter().any(|a| a == s))
            .collect::<Vec<_>>()
            .join(" ")
    }

    /// Whether `secret` is this client's (constant time in the secret).
    pub fn secret_matches(&self, secret: &str) -> bool {
        match &self.secret_sha256 {
            Some(stored) => same(&sha256(secret.as_bytes()), stored),
            None => spend_secret_check(secret),
        }
    }
}

/// The work of checking `secret` against a stored hash, then `false`: what
/// an unknown client id costs, so it costs what a wrong secret does.
pub fn spend_secret_check(secret: &str) -> bool {
    let _ = same(&sha256(secret.as_bytes()), &[0u8; 32]);
    false
}

/// Equal in time independent of where the inputs differ.
pub fn same(a: &[u8; 32], b: &[u8; 32]) -> bool {
    let diff = a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y));
    std::hint::black_box(diff) == 0
}

/// A new client secret: 256 random bits, base64url.
pub fn new_secret() -> String {
    crate::passwords::random_token(32)
}

/// How a secret is stored: SHA-256, base64url.
pub fn secret_hash_text(secret: &str) -> String {
    tessera_keyring::b64url(&sha256(secret.as_bytes()))
}

/// Checks a supplied secret's shape (length; no control characters).
pub fn check_secret(secret: &str) -> Result<(), String> {
    if secret.chars().count() < MIN_SECRET_CHARS {
        return Err(format!(
            "a client secret needs at least {MIN_SECRET_CHARS} characters (leave it out to have one generated)"
        ));
    }
    if secret.len() > MAX_SECRET_BYTES || secret.chars().any(char::is_control) {
        return Err(format!(
            "a client secret has at most {MAX_SECRET_BYTES} bytes and no control characters"
        ));
    }
    Ok(())
}

/// A client id: 1 to 64 visible ASCII characters, no colon (HTTP Basic).
pub fn check_client_id(id: &str) -> Result<(), String> {
    if crate::validate::client_id(id).is_err() || id.contains(':') {
        return Err(format!(
            "{id:?} is not a client id (1 to 64 visible ASCII characters, no colon)"
        ));
    }
    Ok(())
}

/// Checks a client's settings together; returns the first problem.
pub fn check(client: &Client) -> Result<(), String> {
    check_client_id(&client.client_id)?;
    for grant in &client.grant_types {
        if !GRANT_TYPES.contains(&grant.as_str()) {
            return Err(format!(
                "{grant:?} is not a grant type this issuer supports ({})",
                GRANT_TYPES.join(", ")
            ));
        }
    }
    for scope in &client.scopes {
        if scope.contains(' ') || crate::validate::scope(scope).is_err() {
            return Err(format!("{scope:?} is not a scope token"));
        }
    }
    for scope in &client.default_scope {
        if !client.scopes.contains(scope) {
            return Err(format!(
                "the default scope {scope:?} is not one of the client's scopes"
            ));
        }
    }
    for audience in &client.audiences {
        if audience.is_empty() || audience.trim() != audience || audience.len() > 256 {
            return Err(format!("{audience:?} is not an audience"));
        }
    }
    for uri in &client.redirect_uris {
        check_redirect_uri(uri)?;
    }
    if client.introspect && client.kind == ClientKind::Public {
        return Err("only a confidential client may introspect".to_owned());
    }
    if client.allows_grant("client_credentials") && client.kind == ClientKind::Public {
        return Err(
            "only a confidential client may use client_credentials (a token for itself needs proof of who it is)"
                .to_owned(),
        );
    }
    Ok(())
}

/// A redirect URI: absolute, `https`, or `http` on a loopback host (RFC 8252
/// §7.3), no fragment.
pub fn check_redirect_uri(uri: &str) -> Result<(), String> {
    let bad = || format!("{uri:?} is not a redirect URI (https, or http on loopback; no fragment)");
    if uri.contains('#') || uri.len() > 1024 {
        return Err(bad());
    }
    let parsed: axum::http::Uri = uri.parse().map_err(|_| bad())?;
    let host = parsed.host().ok_or_else(bad)?;
    match parsed.scheme_str() {
        Some("https") => Ok(()),
        Some("http") if host == "localhost" || is_loopback(host) => Ok(()),
        _ => Err(bad()),
    }
}

fn is_loopback(host: &str) -> bool {
    host.trim_start_matches('[')
        .trim_end_matches(']')
        .parse::<std::net::IpAddr>()
        .is_ok_and(|ip| ip.is_loopback())
}

/// 32 bytes of base64url.
pub fn decode_hash(text: &str) -> Option<[u8; 32]> {
    use base64::Engine as _;
    let mut out = [0u8; 32];
    let n = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode_slice(text.trim(), &mut out)
        .ok()?;
    (n == 32).then_some(out)
}

/// The first-party client `/login` issues tokens for, created when the
/// registry is empty (a first start, or the first start after an upgrade):
/// public, password and refresh grants, scope `profile`.
pub fn login_client(client_id: &str, now: i64) -> Client {
    Client {
        client_id: client_id.to_owned(),
        kind: ClientKind::Public,
        grant_types: vec!["password".to_owned(), "refresh_token".to_owned()],
        scopes: vec!["profile".to_owned()],
        default_scope: vec!["profile".to_owned()],
        audiences: Vec::new(),
        redirect_uris: Vec::new(),
        introspect: false,
        disabled: false,
        created_at: now,
        updated_at: now,
        secret_sha256: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn client() -> Client {
        Client {
            scopes: vec!["profile".into(), "orders:read".into(), "email".into()],
            default_scope: vec!["profile".into()],
            ..login_client("web", 0)
        }
    }

    #[test]
    fn scopes_are_checked_against_the_registration() {
        let c = client();
        assert_eq!(c.grant_scope(None).as_deref(), Some("profile"));
        assert_eq!(c.grant_scope(Some("  ")).as_deref(), Some("profile"));
        assert_eq!(
            c.grant_scope(Some("email orders:read email")).as_deref(),
            Some("email orders:read")
        );
        assert_eq!(c.grant_scope(Some("profile admin")), None);
        assert_eq!(c.grant_scope(Some("orders:write")), None);
        assert_eq!(c.narrow_scope("profile admin email"), "profile email");
    }

    #[test]
    fn settings_are_checked_together() {
        assert!(check(&client()).is_ok());
        let bad = [
            Client {
                client_id: "a:b".into(),
                ..client()
            },
            Client {
                grant_types: vec!["implicit".into()],
                ..client()
            },
            Client {
                scopes: vec!["two words".into()],
                default_scope: vec![],
                ..client()
            },
            Client {
                default_scope: vec!["admin".into()],
                ..client()
            },
            Client {
                redirect_uris: vec!["http://example.com/cb".into()],
                ..client()
            },
            Client {
                introspect: true,
                ..client()
            },
        ];
        for c in bad {
            assert!(check(&c).is_err(), "{c:?}");
        }
        for ok in [
            "https://app.example.com/cb",
            "http://127.0.0.1:8000/cb",
            "http://localhost/cb",
            "http://[::1]:3000/cb",
        ] {
            check_redirect_uri(ok).unwrap();
        }
        for bad in [
            "https://app.example.com/cb#x",
            "/relative",
            "ftp://x/",
            "http://10.0.0.1/cb",
        ] {
            assert!(check_redirect_uri(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn secrets_match_only_their_hash() {
        let secret = new_secret();
        let c = Client {
            kind: ClientKind::Confidential,
            secret_sha256: decode_hash(&secret_hash_text(&secret)),
            ..client()
        };
        assert!(c.secret_matches(&secret));
        assert!(!c.secret_matches(&format!("{secret}x")));
        assert!(!client().secret_matches(&secret), "public: no secret");
        assert!(check_secret("short").is_err());
        assert!(check_secret(&"x".repeat(32)).is_ok());
    }
}
