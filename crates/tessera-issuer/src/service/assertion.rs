//! `private_key_jwt` client authentication (RFC 7523 §2.2 and §3, OpenID
//! Connect Core §9): a JWT the client signs with one of the keys registered
//! for it.
//!
//! The checks, cheapest first: size and JWS structure; `alg` from the
//! issuer's list ([`ASSERTION_ALGS`], never the token's say); `typ` absent,
//! `JWT` or `client-authentication+jwt` (an access token is not an
//! assertion); the key by `kid` among the client's registered keys (a set of
//! one may omit it); the signature; then the claims: `iss` = `sub` = the
//! client id, `aud` naming this issuer or its token endpoint, `exp` in the
//! future but at most [`MAX_LIFETIME_SECS`] ahead, `nbf`/`iat` not in the
//! future, and a `jti`. The caller then records the `jti` in the shared
//! database, so an assertion is accepted once across every instance.

use serde::Deserialize;
use tessera_verifier::{Jws, KeySet};

use crate::clients::ASSERTION_ALGS;

/// `client_assertion_type` for a JWT (RFC 7523 §2.2).
pub const ASSERTION_TYPE: &str = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer";
/// The largest assertion read, in bytes.
pub const MAX_ASSERTION_BYTES: usize = 8 * 1024;
/// How far ahead an assertion's `exp` may be. An hour: what Authlib's
/// `PrivateKeyJWT` signs by default, and Okta's limit. Replay is stopped by
/// the `jti`, not by `exp`; `exp` bounds how long each `jti` is kept.
pub const MAX_LIFETIME_SECS: i64 = 3600;
/// Clock difference tolerated between the client and the issuer.
pub const LEEWAY_SECS: i64 = 60;
/// The longest `jti` accepted.
const MAX_JTI_CHARS: usize = 256;

/// An assertion that passed every check but the replay check.
#[derive(Debug)]
pub(crate) struct Accepted {
    /// Its `jti`.
    pub(crate) jti: String,
    /// Until when its `jti` must be remembered (its `exp` plus the leeway).
    pub(crate) remember_until: i64,
}

#[derive(Deserialize)]
struct Claims {
    iss: Option<String>,
    sub: Option<String>,
    aud: Option<Audience>,
    exp: Option<i64>,
    nbf: Option<i64>,
    iat: Option<i64>,
    jti: Option<String>,
}

#[derive(Deserialize)]
#[serde(untagged)]
enum Audience {
    One(String),
    Many(Vec<String>),
}

impl Audience {
    fn names(&self, wanted: &[&str]) -> bool {
        match self {
            Self::One(one) => wanted.contains(&one.as_str()),
            Self::Many(many) => many.iter().any(|a| wanted.contains(&a.as_str())),
        }
    }
}

/// The client an assertion claims to come from (`iss`), read unverified,
/// only to choose whose keys verify it (when the request names no
/// `client_id`).
pub(crate) fn claimed_client(assertion: &str) -> Option<String> {
    #[derive(Deserialize)]
    struct Iss {
        iss: Option<String>,
    }
    let jws = Jws::parse(assertion, MAX_ASSERTION_BYTES).ok()?;
    let claims: Iss = serde_json::from_slice(jws.payload()).ok()?;
    claims
        .iss
        .filter(|iss| crate::clients::check_client_id(iss).is_ok())
}

/// Checks `assertion` for `client_id`, whose registered keys are `keys`,
/// at `now`; `audiences` are the values `aud` may name (the issuer and its
/// token endpoint). The error is the reason, for the audit log.
pub(crate) fn check(
    assertion: &str,
    keys: &KeySet,
    client_id: &str,
    audiences: &[&str],
    now: i64,
) -> Result<Accepted, &'static str> {
    let jws = Jws::parse(assertion, MAX_ASSERTION_BYTES).map_err(|_| "malformed_assertion")?;
    let allowed: Vec<String> = ASSERTION_ALGS.iter().map(|a| (*a).to_owned()).collect();
    jws.check_alg(&allowed)
        .map_err(|_| "assertion_algorithm_not_allowed")?;
    let header = jws.header();
    if header.typ.is_some()
        && jws.check_typ("JWT").is_err()
        && jws.check_typ("client-authentication+jwt").is_err()
    {
        return Err("assertion_type_not_allowed");
    }
    let key = match header.kid.as_deref() {
        Some(kid) => keys.get(kid),
        None if keys.len() == 1 => keys.kids().next().and_then(|kid| keys.get(kid)),
        None => None,
    }
    .ok_or("assertion_key_not_registered")?;
    jws.verify_signature(key)
        .map_err(|_| "assertion_signature_invalid")?;
    let claims: Claims =
        serde_json::from_slice(jws.payload()).map_err(|_| "malformed_assertion")?;
    if claims.iss.as_deref() != Some(client_id) || claims.sub.as_deref() != Some(client_id) {
        return Err("assertion_subject_mismatch");
    }
    if !claims.aud.as_ref().is_some_and(|aud| aud.names(audiences)) {
        return Err("assertion_audience_mismatch");
    }
    let exp = claims.exp.ok_or("assertion_without_exp")?;
    if now >= exp.saturating_add(LEEWAY_SECS) {
        return Err("assertion_expired");
    }
    if exp > now.saturating_add(MAX_LIFETIME_SECS + LEEWAY_SECS) {
        return Err("assertion_lifetime_too_long");
    }
    let future = |t: Option<i64>| t.is_some_and(|t| t > now.saturating_add(LEEWAY_SECS));
    if future(claims.nbf) || future(claims.iat) {
        return Err("assertion_not_yet_valid");
    }
    let jti = claims
        .jti
        .filter(|j| !j.is_empty() && j.chars().count() <= MAX_JTI_CHARS)
        .ok_or("assertion_without_jti")?;
    Ok(Accepted {
        jti,
        remember_until: exp.saturating_add(LEEWAY_SECS),
    })
}
