//! The verifier's configuration. What matters for security (issuer, audiences)
//! has no default; everything else has a documented one.

use std::time::Duration;

use crate::claims::{Claim, DEFAULT_REQUIRED};
use crate::error::{ConfigError, invalid};
use crate::jwks::KeySet;

/// Where the public keys come from.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub enum JwksSource {
    /// Read `jwks_uri` from the issuer's RFC 8414 metadata
    /// (`/.well-known/oauth-authorization-server`, then
    /// `/.well-known/openid-configuration`), whose `issuer` must match.
    Discover,
    /// This JWKS URL.
    Url(String),
    /// These keys, never fetched (offline use, tests, benchmarks).
    Static(KeySet),
}

/// Bounds of the verified-token cache.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TokenCacheConfig {
    /// Most tokens kept.
    pub max_entries: usize,
    /// About the most bytes kept.
    pub max_bytes: usize,
}

impl Default for TokenCacheConfig {
    /// 10,000 tokens or 8 MiB, whichever comes first.
    fn default() -> Self {
        Self {
            max_entries: 10_000,
            max_bytes: 8 << 20,
        }
    }
}

/// A cookie that carries the access token (a web app's, set by the issuer's
/// `POST /session`), read by the axum extractors when a request has no
/// `Authorization` header. A request with both is refused (`400`): two
/// tokens, and no way to know which the caller meant.
///
/// Browsers send cookies with requests other sites make them send, so a
/// cookie-borne token on an unsafe method (anything but `GET`, `HEAD`,
/// `OPTIONS`, `TRACE`) counts only when the request's `Origin` is one of
/// `allowed_origins`; otherwise `403` (CSRF). Header-borne tokens are not
/// affected: no browser attaches those on its own.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct CookieSource {
    /// The cookie's name (the issuer's `access_cookie_name`:
    /// `tessera_access` unless configured).
    pub name: String,
    /// Origins (`https://app.example.com`: scheme, host, port; no path)
    /// whose pages may make state-changing requests with the cookie:
    /// usually this server's own. Compared without regard to case.
    pub allowed_origins: Vec<String>,
}

impl CookieSource {
    /// The cookie `name`, with unsafe methods allowed from `allowed_origins`.
    pub fn new(
        name: impl Into<String>,
        allowed_origins: impl IntoIterator<Item = impl Into<String>>,
    ) -> Self {
        Self {
            name: name.into(),
            allowed_origins: allowed_origins.into_iter().map(Into::into).collect(),
        }
    }

    /// The same, each origin as browsers send it: lower case, without a
    /// default port (`HTTPS://App.example.com:443` → `https://app.example.com`).
    pub(crate) fn normalized(&self) -> Self {
        let origins = self.allowed_origins.iter().map(|origin| {
            let lower = origin.to_ascii_lowercase();
            let default_port = if lower.starts_with("https://") {
                ":443"
            } else {
                ":80"
            };
            match lower.strip_suffix(default_port) {
                Some(bare) => bare.to_owned(),
                None => lower,
            }
        });
        Self {
            name: self.name.clone(),
            allowed_origins: origins.collect(),
        }
    }

    fn validate(&self) -> Result<(), ConfigError> {
        let token = |b: u8| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b);
        if self.name.is_empty() || !self.name.bytes().all(token) {
            return Err(invalid(
                "cookie",
                format!("{:?} is not a cookie name", self.name),
            ));
        }
        for origin in &self.allowed_origins {
            let lower = origin.to_ascii_lowercase();
            let rest = lower
                .strip_prefix("https://")
                .or_else(|| lower.strip_prefix("http://"));
            let ok = rest.is_some_and(|r| {
                !r.is_empty()
                    && !r.contains(['/', '?', '#', '@'])
                    && !r.contains(char::is_whitespace)
            });
            if !ok {
                return Err(invalid(
                    "cookie",
                    format!("{origin:?} is not an origin like \"https://app.example.com\""),
                ));
            }
        }
        Ok(())
    }
}

/// Everything a [`crate::Verifier`] is built from.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct VerifierConfig {
    /// The exact `iss` accepted. Required.
    pub issuer: String,
    /// `aud` must contain one of these. Required, non-empty.
    pub audiences: Vec<String>,
    /// Where keys come from. Default: discovered from the issuer.
    pub jwks: JwksSource,
    /// Accepted `alg` values: any of `RS256`, `ES256`, `EdDSA`. Default
    /// `["RS256"]`. Each is bound to its key type (an `ES256` token is only
    /// ever checked with a P-256 key); to follow an issuer that migrates,
    /// allow both its old and its new algorithm.
    pub algorithms: Vec<String>,
    /// Clock skew tolerated on `exp`, `nbf`, `iat`. Default 60 s, at most 300 s.
    pub leeway: Duration,
    /// Required header `typ`. Default `Some("at+jwt")` (RFC 9068).
    pub required_typ: Option<String>,
    /// Claims whose absence is an error. Default `iss`, `sub`, `aud`, `exp`, `iat`.
    pub required_claims: Vec<Claim>,
    /// Longer tokens are refused unread. Default 8 KiB.
    pub max_token_bytes: usize,
    /// The JWKS is kept for its `Cache-Control: max-age`, clamped to
    /// `[min_cache_lifetime, max_cache_lifetime]`. Defaults 1 min and 1 day; a
    /// response without `max-age` gets the minimum.
    pub min_cache_lifetime: Duration,
    /// See [`VerifierConfig::min_cache_lifetime`].
    pub max_cache_lifetime: Duration,
    /// A token with an unknown `kid` causes at most one JWKS refetch per this
    /// long, however many arrive. Default 30 s.
    pub unknown_kid_cooldown: Duration,
    /// While the issuer is unreachable or answers garbage, the last good key
    /// set keeps being used this long past its lifetime; after that every
    /// token is refused with `keys_unavailable`. Default 1 day.
    pub stale_if_error: Duration,
    /// Per fetch. Default 5 s.
    pub fetch_timeout: Duration,
    /// How often the background task checks whether a refresh is due. Default 1 s.
    pub refresh_check_interval: Duration,
    /// The verified-token cache; `None` turns it off. Default on (see
    /// `docs/benchmarks.md`: a repeated token then costs no RSA).
    pub token_cache: Option<TokenCacheConfig>,
    /// The `realm` of `WWW-Authenticate` challenges. Default `"tessera"`.
    pub realm: String,
    /// Root certificates (DER) trusted for HTTPS fetches besides Mozilla's,
    /// e.g. an internal CA. Default none.
    pub extra_root_certificates: Vec<Vec<u8>>,
    /// Follow the issuer's revocation feed and refuse revoked tokens. Default
    /// `None` (off: not every issuer publishes one); the demo resource server
    /// turns it on.
    pub revocations: Option<crate::revocation::RevocationConfig>,
    /// Also take the token from this cookie (the axum extractors). Default
    /// `None`: the `Authorization` header only.
    pub cookie: Option<CookieSource>,
    /// Also take the token from this request header, holding the raw token
    /// (a gateway's `X-Forwarded-Access-Token`, say). Default `None`. Never
    /// `Authorization` or `Cookie`; the query string stays refused.
    pub token_header: Option<String>,
}

impl VerifierConfig {
    /// A configuration for tokens from `issuer` for any of `audiences`, with
    /// every other setting at its default.
    pub fn new(
        issuer: impl Into<String>,
        audiences: impl IntoIterator<Item = impl Into<String>>,
    ) -> Self {
        Self {
            issuer: issuer.into(),
            audiences: audiences.into_iter().map(Into::into).collect(),
            jwks: JwksSource::Discover,
            algorithms: vec![crate::RS256.to_owned()],
            leeway: Duration::from_secs(60),
            required_typ: Some("at+jwt".to_owned()),
            required_claims: DEFAULT_REQUIRED.to_vec(),
            max_token_bytes: 8 * 1024,
            min_cache_lifetime: Duration::from_secs(60),
            max_cache_lifetime: Duration::from_secs(86_400),
            unknown_kid_cooldown: Duration::from_secs(30),
            stale_if_error: Duration::from_secs(86_400),
            fetch_timeout: Duration::from_secs(5),
            refresh_check_interval: Duration::from_secs(1),
            token_cache: Some(TokenCacheConfig::default()),
            realm: "tessera".to_owned(),
            extra_root_certificates: Vec::new(),
            revocations: None,
            cookie: None,
            token_header: None,
        }
    }

    /// The same, with keys from `source`.
    pub fn with_jwks(mut self, source: JwksSource) -> Self {
        self.jwks = source;
        self
    }

    pub(crate) fn validate(&self) -> Result<(), ConfigError> {
        if self.issuer.is_empty() {
            return Err(invalid("issuer", "must be set"));
        }
        if self.audiences.is_empty() || self.audiences.iter().any(String::is_empty) {
            return Err(invalid(
                "audiences",
                "at least one non-empty audience is required",
            ));
        }
        if self.algorithms.is_empty() {
            return Err(invalid("algorithms", "at least one algorithm is required"));
        }
        if let Some(alg) = self
            .algorithms
            .iter()
            .find(|a| crate::Algorithm::from_name(a).is_none())
        {
            return Err(invalid(
                "algorithms",
                format!(
                    "{alg:?} is not supported (RS256, ES256 or EdDSA, spelled exactly so; \
                     never none or HMAC)"
                ),
            ));
        }
        if self.leeway > Duration::from_secs(300) {
            return Err(invalid("leeway", "at most 300 s"));
        }
        if !(256..=64 * 1024).contains(&self.max_token_bytes) {
            return Err(invalid("max_token_bytes", "must be 256 B ..= 64 KiB"));
        }
        if self.min_cache_lifetime < Duration::from_secs(1)
            || self.min_cache_lifetime > self.max_cache_lifetime
        {
            return Err(invalid(
                "min_cache_lifetime",
                "must be at least 1 s and at most max_cache_lifetime",
            ));
        }
        if self.unknown_kid_cooldown < Duration::from_secs(1) {
            return Err(invalid("unknown_kid_cooldown", "at least 1 s"));
        }
        if self.fetch_timeout.is_zero() || self.refresh_check_interval.is_zero() {
            return Err(invalid(
                "fetch_timeout",
                "fetch_timeout and refresh_check_interval must be positive",
            ));
        }
        if let Some(c) = self.token_cache
            && (c.max_entries == 0 || c.max_bytes == 0)
        {
            return Err(invalid(
                "token_cache",
                "bounds must be positive (use None to turn it off)",
            ));
        }
        if let Some(revocations) = &self.revocations {
            revocations.validate()?;
        }
        if let Some(cookie) = &self.cookie {
            cookie.validate()?;
        }
        if let Some(name) = &self.token_header {
            let lower = name.to_ascii_lowercase();
            let token = |b: u8| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b);
            if lower.is_empty()
                || !lower.bytes().all(token)
                || lower == "authorization"
                || lower == "cookie"
            {
                return Err(invalid(
                    "token_header",
                    format!("{name:?} is not a header name (nor Authorization or Cookie)"),
                ));
            }
        }
        if self.realm.contains('"') || self.realm.contains('\\') {
            return Err(invalid("realm", "may not contain quotes or backslashes"));
        }
        Ok(())
    }
}
