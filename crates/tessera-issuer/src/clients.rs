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
pub const GRANT_TYPES: &[&str] = &[
    "authorization_code",
    "password",
    "refresh_token",
    "client_credentials",
];

/// `client_secret_basic`: the secret in HTTP Basic (RFC 6749 §2.3.1).
pub const SECRET_BASIC: &str = "client_secret_basic";
/// `client_secret_post`: the secret in the form body (RFC 6749 §2.3.1).
pub const SECRET_POST: &str = "client_secret_post";
/// `private_key_jwt`: a JWT signed with one of the client's registered keys
/// (RFC 7523 §2.2, OpenID Connect Core §9).
pub const PRIVATE_KEY_JWT: &str = "private_key_jwt";
/// The ways a confidential client may authenticate at `/token`.
pub const AUTH_METHODS: &[&str] = &[SECRET_BASIC, SECRET_POST, PRIVATE_KEY_JWT];
/// The algorithms a `private_key_jwt` assertion may be signed with.
pub const ASSERTION_ALGS: &[&str] = &["RS256", "ES256", "EdDSA"];

/// The largest registered JWK set, in bytes.
pub const MAX_JWKS_BYTES: usize = 64 * 1024;
/// The shortest per-client access-token lifetime, in seconds.
pub const MIN_TOKEN_LIFETIME_SECS: u64 = 60;
/// The longest per-client access-token lifetime, in seconds (a day: a
/// service refetches; a revocation entry lives this long).
pub const MAX_TOKEN_LIFETIME_SECS: u64 = 24 * 3600;
/// How long a rotated secret stays valid unless the operator says otherwise.
pub const DEFAULT_SECRET_GRACE_SECS: i64 = 24 * 3600;
/// The longest grace a rotated secret may get.
pub const MAX_SECRET_GRACE_SECS: i64 = 30 * 24 * 3600;

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
    /// How it may authenticate at `/token` ([`AUTH_METHODS`]); empty: by
    /// what it holds (see [`Client::auth_methods`]).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub auth_methods: Vec<String>,
    /// Its public keys, a JWK set as registered (JSON), for
    /// `private_key_jwt`. Never fetched from a URL.
    #[serde(skip_serializing_if = "Option::is_none", serialize_with = "jwks_kids")]
    pub jwks: Option<String>,
    /// SHA-256 of the secret before the last rotation, valid until
    /// `previous_secret_until`.
    #[serde(skip)]
    pub previous_secret_sha256: Option<[u8; 32]>,
    /// Until when (Unix seconds) the previous secret is accepted.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub previous_secret_until: Option<i64>,
    /// Its access tokens' lifetime in seconds; `None`: the issuer's.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub token_lifetime_secs: Option<u64>,
    /// Not the issuer's own: browser sign-in asks the user to allow the
    /// scopes it asks for (once per scope, remembered).
    pub third_party: bool,
    /// Where RP-initiated logout may send the browser afterwards (exact).
    pub post_logout_redirect_uris: Vec<String>,
}

/// Operators see a client's key ids, not its JWK set.
fn jwks_kids<S: serde::Serializer>(jwks: &Option<String>, s: S) -> Result<S::Ok, S::Error> {
    let kids = jwks.as_deref().map(kids_of).unwrap_or_default();
    serde::Serialize::serialize(&kids, s)
}

/// The `kid`s of a registered JWK set.
pub fn kids_of(jwks: &str) -> Vec<String> {
    let parsed: serde_json::Value = serde_json::from_str(jwks).unwrap_or_default();
    parsed
        .get("keys")
        .and_then(|k| k.as_array())
        .map(|keys| {
            keys.iter()
                .filter_map(|k| k.get("kid").and_then(|v| v.as_str()).map(str::to_owned))
                .collect()
        })
        .unwrap_or_default()
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

    /// Whether `secret` is this client's at `now`: its secret, or the one
    /// before the last rotation while its grace lasts. Both are compared
    /// whichever matches, each in constant time.
    pub fn secret_matches(&self, secret: &str, now: i64) -> bool {
        let offered = sha256(secret.as_bytes());
        let previous = match (&self.previous_secret_sha256, self.previous_secret_until) {
            (Some(old), Some(until)) => same(&offered, old) & (now < until),
            _ => false,
        };
        match &self.secret_sha256 {
            Some(stored) => same(&offered, stored) | previous,
            None => spend_secret_check(secret),
        }
    }

    /// How it may authenticate at `/token`: the registered methods, or, if
    /// none are registered, what it holds (a secret: Basic or the body; a
    /// JWK set: `private_key_jwt`). A public client: none.
    pub fn auth_methods(&self) -> Vec<&str> {
        if self.kind == ClientKind::Public {
            return Vec::new();
        }
        if !self.auth_methods.is_empty() {
            return self.auth_methods.iter().map(String::as_str).collect();
        }
        let mut methods = Vec::new();
        if self.secret_sha256.is_some() {
            methods.extend([SECRET_BASIC, SECRET_POST]);
        }
        if self.jwks.is_some() {
            methods.push(PRIVATE_KEY_JWT);
        }
        methods
    }

    /// Whether it may authenticate with `method`.
    pub fn allows_auth(&self, method: &str) -> bool {
        self.auth_methods().contains(&method)
    }

    /// Whether `uri` is one of its redirect URIs: the same string, except
    /// that a registered `http` URI on a loopback IP literal matches any
    /// port (RFC 8252 §7.3: a native app listens on whatever port it got).
    pub fn redirect_matches(&self, uri: &str) -> bool {
        self.redirect_uris
            .iter()
            .any(|r| r == uri || loopback_port_varies(r, uri))
    }

    /// Whether `uri` is one of its post-logout redirect URIs (exactly).
    pub fn post_logout_matches(&self, uri: &str) -> bool {
        self.post_logout_redirect_uris.iter().any(|r| r == uri)
    }

    /// Its access tokens' lifetime: its own, or `default`.
    pub fn token_lifetime(&self, default: Duration) -> Duration {
        self.token_lifetime_secs
            .map_or(default, Duration::from_secs)
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
    for uri in client
        .redirect_uris
        .iter()
        .chain(&client.post_logout_redirect_uris)
    {
        check_redirect_uri(uri)?;
    }
    if client.allows_grant("authorization_code") && client.redirect_uris.is_empty() {
        return Err(
            "the authorization_code grant needs a redirect URI (--redirect-uri)".to_owned(),
        );
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
    check_credentials(client)?;
    if let Some(secs) = client.token_lifetime_secs
        && !(MIN_TOKEN_LIFETIME_SECS..=MAX_TOKEN_LIFETIME_SECS).contains(&secs)
    {
        return Err(format!(
            "a client's token lifetime is {MIN_TOKEN_LIFETIME_SECS} s to {MAX_TOKEN_LIFETIME_SECS} s"
        ));
    }
    Ok(())
}

/// What a client holds against how it may authenticate.
fn check_credentials(client: &Client) -> Result<(), String> {
    if client.kind == ClientKind::Public {
        if !client.auth_methods.is_empty() {
            return Err("a public client does not authenticate (no --auth-method)".to_owned());
        }
        if client.jwks.is_some() || client.secret_sha256.is_some() {
            return Err("a public client holds no secret and no keys".to_owned());
        }
        return Ok(());
    }
    for method in &client.auth_methods {
        if !AUTH_METHODS.contains(&method.as_str()) {
            return Err(format!(
                "{method:?} is not a client authentication method ({})",
                AUTH_METHODS.join(", ")
            ));
        }
    }
    if let Some(jwks) = &client.jwks {
        check_jwks(jwks)?;
    }
    let methods = client.auth_methods();
    if methods.is_empty() {
        return Err("a confidential client needs a secret or a JWK set (--jwks)".to_owned());
    }
    let uses_secret = methods.iter().any(|m| *m != PRIVATE_KEY_JWT);
    if uses_secret && client.secret_sha256.is_none() {
        return Err("client_secret_basic and client_secret_post need a secret".to_owned());
    }
    if methods.contains(&PRIVATE_KEY_JWT) && client.jwks.is_none() {
        return Err("private_key_jwt needs the client's public keys (--jwks FILE)".to_owned());
    }
    Ok(())
}

/// JWK members that only a private or symmetric key has.
const PRIVATE_MEMBERS: &[&str] = &["d", "p", "q", "dp", "dq", "qi", "oth", "k"];

/// Checks a JWK set given for a client: public signing keys only (RSA, EC
/// P-256, OKP Ed25519), each with a `kid`, every one usable for its one
/// algorithm in [`ASSERTION_ALGS`] (nothing silently skipped).
/// Returns how many keys it holds.
pub fn check_jwks(jwks: &str) -> Result<usize, String> {
    if jwks.len() > MAX_JWKS_BYTES {
        return Err(format!(
            "a client's JWK set has at most {MAX_JWKS_BYTES} bytes"
        ));
    }
    let value: serde_json::Value =
        serde_json::from_str(jwks).map_err(|e| format!("not a JWK set: {e}"))?;
    let keys = value
        .get("keys")
        .and_then(|k| k.as_array())
        .ok_or("not a JWK set: no \"keys\" array")?;
    for key in keys {
        if PRIVATE_MEMBERS.iter().any(|m| key.get(m).is_some()) {
            return Err(
                "the JWK set holds a private key: register the client's public keys only"
                    .to_owned(),
            );
        }
    }
    let (set, skipped) = tessera_verifier::KeySet::from_jwks_json(jwks.as_bytes(), ASSERTION_ALGS)
        .map_err(|e| e.to_string())?;
    if let Some(skip) = skipped.first() {
        return Err(format!(
            "key {} cannot be used: {}",
            skip.kid.as_deref().unwrap_or("(no kid)"),
            skip.reason
        ));
    }
    Ok(set.len())
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
        Some("http") if host == "localhost" || crate::validate::is_loopback_ip(host) => Ok(()),
        _ => Err(bad()),
    }
}

/// `registered` and `offered` are the same `http` URI on the same loopback
/// IP literal but for the port.
fn loopback_port_varies(registered: &str, offered: &str) -> bool {
    let (Ok(r), Ok(o)) = (
        registered.parse::<axum::http::Uri>(),
        offered.parse::<axum::http::Uri>(),
    ) else {
        return false;
    };
    r.scheme_str() == Some("http")
        && o.scheme_str() == Some("http")
        && r.host().is_some_and(crate::validate::is_loopback_ip)
        && r.host() == o.host()
        && r.path_and_query() == o.path_and_query()
        && !offered.contains('#')
        && o.authority().is_some_and(|a| !a.as_str().contains('@'))
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
        auth_methods: Vec::new(),
        jwks: None,
        previous_secret_sha256: None,
        previous_secret_until: None,
        token_lifetime_secs: None,
        third_party: false,
        post_logout_redirect_uris: Vec::new(),
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
    fn redirect_uris_match_exactly_but_for_a_loopback_port() {
        let c = Client {
            redirect_uris: vec![
                "https://app.example.com/cb".into(),
                "http://127.0.0.1/cb".into(),
                "http://localhost:8080/cb".into(),
            ],
            ..client()
        };
        for ok in [
            "https://app.example.com/cb",
            "http://127.0.0.1/cb",
            "http://127.0.0.1:49152/cb",
            "http://localhost:8080/cb",
        ] {
            assert!(c.redirect_matches(ok), "{ok}");
        }
        for bad in [
            "https://app.example.com/cb/",
            "https://app.example.com/cb?x=1",
            "https://app.example.com:444/cb",
            "https://APP.example.com/cb",
            "http://127.0.0.1:49152/cb2",
            "http://127.0.0.1:49152/cb?x",
            "http://127.0.0.2:49152/cb",
            "http://localhost:8081/cb",
            "http://user@127.0.0.1:1/cb",
            "https://127.0.0.1/cb",
        ] {
            assert!(!c.redirect_matches(bad), "{bad}");
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
        assert!(c.secret_matches(&secret, 0));
        assert!(!c.secret_matches(&format!("{secret}x"), 0));
        assert!(!client().secret_matches(&secret, 0), "public: no secret");
        let next = new_secret();
        let rotated = Client {
            secret_sha256: decode_hash(&secret_hash_text(&next)),
            previous_secret_sha256: c.secret_sha256,
            previous_secret_until: Some(100),
            ..c.clone()
        };
        assert!(rotated.secret_matches(&next, 99));
        assert!(rotated.secret_matches(&secret, 99), "within the grace");
        assert!(!rotated.secret_matches(&secret, 100), "after it");
        assert!(rotated.secret_matches(&next, 100));
        assert!(check_secret("short").is_err());
        assert!(check_secret(&"x".repeat(32)).is_ok());
    }
}
