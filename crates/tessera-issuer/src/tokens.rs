//! Access tokens (RFC 9068 JWT profile) and refresh tokens.

use std::time::Duration;

use serde::Serialize;
use tessera_keyring::{SignError, b64url, sha256};

use crate::db::User;
use crate::passwords::random_token;

/// What the issuer puts into every access token, from configuration.
#[derive(Debug, Clone)]
pub struct TokenSettings {
    /// The `iss` claim: the public issuer URL.
    pub issuer: String,
    /// The `aud` claim.
    pub audiences: Vec<String>,
    /// `exp - iat`.
    pub access_token_lifetime: Duration,
    /// A session ends after this long without a refresh.
    pub refresh_idle_lifetime: Duration,
    /// A session ends this long after login.
    pub refresh_absolute_lifetime: Duration,
    /// The `max-age` the JWKS is served with.
    pub jwks_cache_lifetime: Duration,
    /// The registered client `/login` issues tokens for.
    pub login_client: String,
    /// How long after a rotation the used refresh token gets the same pair
    /// again (0: never; every second use is reuse).
    pub refresh_retry_window: Duration,
}

/// `aud`: a string for one audience, an array for several (RFC 7519 §4.1.3).
#[derive(Debug, Serialize)]
#[serde(untagged)]
enum Audience<'a> {
    One(&'a str),
    Many(&'a [String]),
}

/// The claims of an access token (RFC 9068 §2.2). No secrets, no password data.
#[derive(Debug, Serialize)]
struct AccessClaims<'a> {
    iss: &'a str,
    sub: &'a str,
    aud: Audience<'a>,
    exp: i64,
    iat: i64,
    nbf: i64,
    jti: String,
    client_id: &'a str,
    sid: &'a str,
    #[serde(skip_serializing_if = "str::is_empty")]
    scope: &'a str,
    roles: &'a [String],
    #[serde(skip_serializing_if = "str::is_empty")]
    preferred_username: &'a str,
}

/// The parts of an access token that vary per request.
#[derive(Debug)]
pub struct AccessGrant<'a> {
    /// The user it is issued to.
    pub user: &'a User,
    /// The session (refresh-token family) it belongs to.
    pub session_id: &'a str,
    /// The registered OAuth client.
    pub client_id: &'a str,
    /// Space-separated scopes, already checked against the client's.
    pub scope: &'a str,
    /// The client's audiences; empty: the configured ones.
    pub audiences: &'a [String],
    /// The client is a third party: the token says only what its scope
    /// (which the user allowed) covers: `preferred_username` with
    /// `profile`, `roles` with `roles`.
    pub third_party: bool,
}

impl TokenSettings {
    /// Signs an access token issued at `now` (Unix seconds).
    pub fn sign_access(
        &self,
        signer: &tessera_keyring::Signer,
        grant: &AccessGrant<'_>,
        now: i64,
    ) -> Result<String, SignError> {
        let lifetime = crate::secs(self.access_token_lifetime);
        let audiences = if grant.audiences.is_empty() {
            self.audiences.as_slice()
        } else {
            grant.audiences
        };
        let aud = match audiences {
            [one] => Audience::One(one),
            many => Audience::Many(many),
        };
        let scoped = |name: &str| grant.scope.split(' ').any(|s| s == name);
        let (roles, username): (&[String], &str) = if grant.third_party {
            (
                if scoped("roles") {
                    &grant.user.roles
                } else {
                    &[]
                },
                if scoped("profile") {
                    &grant.user.username
                } else {
                    ""
                },
            )
        } else {
            (&grant.user.roles, &grant.user.username)
        };
        let claims = AccessClaims {
            iss: &self.issuer,
            sub: &grant.user.id,
            aud,
            exp: now.saturating_add(lifetime),
            iat: now,
            nbf: now,
            jti: random_token(16),
            client_id: grant.client_id,
            sid: grant.session_id,
            scope: grant.scope,
            roles,
            preferred_username: username,
        };
        let payload = serde_json::to_vec(&claims).map_err(|_| SignError::default())?;
        signer.sign_jwt("at+jwt", &payload)
    }
}

/// The claims of a token a client gets for itself (client credentials,
/// RFC 9068 §2.2): `sub` is the client, and there is no session, role or
/// username, since no user is involved.
#[derive(Debug, Serialize)]
struct ServiceClaims<'a> {
    iss: &'a str,
    sub: &'a str,
    aud: Audience<'a>,
    exp: i64,
    iat: i64,
    nbf: i64,
    jti: String,
    client_id: &'a str,
    #[serde(skip_serializing_if = "str::is_empty")]
    scope: &'a str,
}

impl TokenSettings {
    /// Signs a client's token for itself, issued at `now`, for `audiences`
    /// (already checked against the client's; empty: the configured ones),
    /// valid for `lifetime` (the client's, or the issuer's).
    pub fn sign_service(
        &self,
        signer: &tessera_keyring::Signer,
        client_id: &str,
        scope: &str,
        audiences: &[String],
        (now, lifetime): (i64, Duration),
    ) -> Result<String, SignError> {
        let audiences = if audiences.is_empty() {
            self.audiences.as_slice()
        } else {
            audiences
        };
        let claims = ServiceClaims {
            iss: &self.issuer,
            sub: client_id,
            aud: match audiences {
                [one] => Audience::One(one),
                many => Audience::Many(many),
            },
            exp: now.saturating_add(crate::secs(lifetime)),
            iat: now,
            nbf: now,
            jti: random_token(16),
            client_id,
            scope,
        };
        let payload = serde_json::to_vec(&claims).map_err(|_| SignError::default())?;
        signer.sign_jwt("at+jwt", &payload)
    }
}

/// The claims of an OpenID Connect ID token (Core §2): who signed in, when,
/// how, for which client. `aud` is the client alone; `typ` is `JWT`, so no
/// resource server that wants `at+jwt` takes it for an access token.
#[derive(Debug, Serialize)]
struct IdClaims<'a> {
    iss: &'a str,
    sub: &'a str,
    aud: &'a str,
    azp: &'a str,
    exp: i64,
    iat: i64,
    auth_time: i64,
    #[serde(skip_serializing_if = "Option::is_none")]
    nonce: Option<&'a str>,
    sid: &'a str,
    amr: [&'static str; 1],
    at_hash: String,
}

/// What an ID token says, besides what the settings do.
#[derive(Debug)]
pub struct IdGrant<'a> {
    /// The user (`sub`).
    pub user_id: &'a str,
    /// The client (`aud`, `azp`).
    pub client_id: &'a str,
    /// The session (`sid`), the same as its access tokens'.
    pub session_id: &'a str,
    /// The authorization request's nonce.
    pub nonce: Option<&'a str>,
    /// When the password was checked.
    pub auth_time: i64,
    /// The access token issued with it (`at_hash`).
    pub access_token: &'a str,
}

impl TokenSettings {
    /// Signs an ID token issued at `now`, valid as long as an access token.
    pub fn sign_id_token(
        &self,
        signer: &tessera_keyring::Signer,
        grant: &IdGrant<'_>,
        now: i64,
    ) -> Result<String, SignError> {
        // OpenID Connect Core §3.1.3.6: the left half of the hash that goes
        // with the signature's algorithm. SHA-256 for RS256 and ES256; for
        // EdDSA (Ed25519), SHA-512, as OpenID Foundation implementations do
        // (Ed25519 hashes with SHA-512).
        let at_hash = match signer.alg() {
            tessera_keyring::Algorithm::EdDsa => {
                b64url(&tessera_keyring::sha512(grant.access_token.as_bytes())[..32])
            }
            _ => b64url(&sha256(grant.access_token.as_bytes())[..16]),
        };
        let claims = IdClaims {
            iss: &self.issuer,
            sub: grant.user_id,
            aud: grant.client_id,
            azp: grant.client_id,
            exp: now.saturating_add(crate::secs(self.access_token_lifetime)),
            iat: now,
            auth_time: grant.auth_time,
            nonce: grant.nonce,
            sid: grant.session_id,
            // A password at the login page: RFC 8176 `pwd`.
            amr: ["pwd"],
            at_hash,
        };
        let payload = serde_json::to_vec(&claims).map_err(|_| SignError::default())?;
        signer.sign_jwt("JWT", &payload)
    }
}

/// A new refresh token: 256 random bits, base64url, and the SHA-256 hash that is
/// all the database ever stores.
pub fn new_refresh_token() -> (String, [u8; 32]) {
    let token = random_token(32);
    let hash = refresh_token_hash(&token);
    (token, hash)
}

/// The stored form of a refresh token.
pub fn refresh_token_hash(token: &str) -> [u8; 32] {
    sha256(token.as_bytes())
}

/// The body of a successful token response (RFC 6749 §5.1).
#[derive(Serialize)]
pub struct TokenResponse {
    /// The signed access token.
    pub access_token: String,
    /// Always `Bearer`.
    pub token_type: &'static str,
    /// Seconds until the access token expires.
    pub expires_in: u64,
    /// The opaque refresh token, when the client may refresh.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub refresh_token: Option<String>,
    /// The scope granted (RFC 6749 §5.1 asks for it when it differs from
    /// what was asked; Tessera always says).
    #[serde(skip_serializing_if = "str::is_empty")]
    pub scope: String,
    /// The OpenID Connect ID token (authorization code with scope `openid`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub id_token: Option<String>,
}

impl std::fmt::Debug for TokenResponse {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TokenResponse")
            .field("token_type", &self.token_type)
            .field("expires_in", &self.expires_in)
            .finish_non_exhaustive()
    }
}

/// A short, loggable fingerprint of a secret (first 8 characters of its hash),
/// for correlating audit events without logging the secret.
pub fn fingerprint(hash: &[u8; 32]) -> String {
    b64url(&hash[..6])
}

/// What `/logout` and `/revoke` need from an access token the issuer itself
/// signed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OwnToken {
    /// The session.
    pub sid: String,
    /// The user.
    pub sub: String,
    /// The token itself.
    pub jti: String,
}

/// Checks an access token this issuer signed: with a key it publishes now and
/// that key's algorithm,
/// `typ` `at+jwt`, our `iss`, not expired (60 s leeway). Not a general-purpose
/// validator: resource servers use the verifier crate.
pub fn check_own_access_token(
    jwks: &tessera_keyring::JwkSet,
    issuer: &str,
    token: &str,
    now: i64,
) -> Result<OwnToken, &'static str> {
    let claims = own_access_token_claims(jwks, issuer, token, now, 60)?;
    Ok(OwnToken {
        sid: claims["sid"].as_str().ok_or("no sid")?.to_owned(),
        sub: claims["sub"].as_str().ok_or("no sub")?.to_owned(),
        jti: claims["jti"].as_str().ok_or("no jti")?.to_owned(),
    })
}

/// The claims of an access token this issuer signed, checked as
/// [`check_own_access_token`] says, with `leeway` seconds past `exp`.
pub fn own_access_token_claims(
    jwks: &tessera_keyring::JwkSet,
    issuer: &str,
    token: &str,
    now: i64,
    leeway: i64,
) -> Result<serde_json::Value, &'static str> {
    own_token_claims(jwks, issuer, token, "at+jwt", (now, leeway))
}

/// The claims of a token this issuer signed with `typ` (`at+jwt`: an access
/// token; `JWT`: an ID token), not expired more than `leeway` seconds ago.
pub fn own_token_claims(
    jwks: &tessera_keyring::JwkSet,
    issuer: &str,
    token: &str,
    typ: &str,
    (now, leeway): (i64, i64),
) -> Result<serde_json::Value, &'static str> {
    use base64::Engine as _;
    use base64::engine::general_purpose::URL_SAFE_NO_PAD;
    if token.len() > 8 * 1024 {
        return Err("token too large");
    }
    let mut parts = token.split('.');
    let (Some(h), Some(p), Some(s), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err("malformed token");
    };
    let decode = |seg: &str| URL_SAFE_NO_PAD.decode(seg).map_err(|_| "malformed token");
    let header: serde_json::Value =
        serde_json::from_slice(&decode(h)?).map_err(|_| "malformed token")?;
    if header["typ"] != typ || header.get("crit").is_some() {
        return Err("unacceptable header");
    }
    let kid = header["kid"].as_str().ok_or("no kid")?;
    let jwk = jwks.find(kid).ok_or("unknown key")?;
    // The key's own algorithm, never the token's: a header naming another
    // is refused before any signature is checked.
    if header["alg"] != jwk.alg.as_str() {
        return Err("unacceptable header");
    }
    if !jwk.verifies(format!("{h}.{p}").as_bytes(), &decode(s)?) {
        return Err("bad signature");
    }
    let claims: serde_json::Value =
        serde_json::from_slice(&decode(p)?).map_err(|_| "malformed claims")?;
    if claims["iss"] != issuer {
        return Err("wrong issuer");
    }
    let exp = claims["exp"].as_i64().ok_or("no exp")?;
    if now >= exp.saturating_add(leeway) {
        return Err("expired");
    }
    Ok(claims)
}
