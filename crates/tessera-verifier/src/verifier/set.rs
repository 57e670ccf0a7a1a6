//! Several issuers behind one [`Verifier`]: [`VerifierSet`] picks the
//! member by the token's `iss`, read unverified only to choose. The member
//! then runs every check with its own keys, audiences and revocation feed,
//! `iss` included, so a token signed by issuer A's key that claims issuer B
//! goes to B, whose keys never verify it.

use std::collections::HashMap;
use std::sync::Arc;

use serde::Deserialize;

use super::Verifier;
use crate::config::CookieSource;
use crate::{ConfigError, KeysHealth, MetricsSnapshot, VerifyError};

/// Builds a [`Verifier`] that accepts the tokens of several issuers, each
/// verified by its own member [`Verifier`] (its own JWKS cache, revocation
/// feed, audiences, algorithms and leeway). A token whose `iss` is none of
/// the members' is refused as [`VerifyError::WrongIssuer`] (`401`).
///
/// Where the token is looked for, and how refusals are answered, are the
/// set's own settings (a member's `realm`, cookie and header are not used).
///
/// ```no_run
/// # use std::sync::Arc;
/// # use tessera_verifier::{SystemClock, Verifier, VerifierConfig, VerifierSet};
/// # async fn f() -> Result<(), tessera_verifier::ConfigError> {
/// let clock = Arc::new(SystemClock);
/// let staff = Verifier::start(VerifierConfig::new("https://staff.example", ["api"]), clock.clone())?;
/// let partners = Verifier::start(VerifierConfig::new("https://partners.example", ["api"]), clock)?;
/// let verifier: Verifier = VerifierSet::new().with(staff)?.with(partners)?.build()?;
/// // `verifier` goes where a single one would: state, extractors, layers.
/// # Ok(()) }
/// ```
#[derive(Debug, Default)]
pub struct VerifierSet {
    members: Vec<Verifier>,
    realm: Option<String>,
    cookie: Option<CookieSource>,
    token_header: Option<String>,
}

/// A built set: the members by issuer, and the set's own settings.
#[derive(Debug)]
struct Routes {
    by_issuer: HashMap<Box<str>, Verifier>,
    /// Each member's payload prefix, for the fast path.
    prefixes: Vec<(IssFirst, Verifier)>,
    /// In the order they were added (health and metrics).
    members: Vec<Verifier>,
    realm: String,
    cookie: Option<CookieSource>,
    token_header: Option<String>,
    max_token_bytes: usize,
}

impl VerifierSet {
    /// An empty set.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds `verifier`; refused if the set has a member for its issuer
    /// already, or `verifier` is itself a set.
    pub fn with(mut self, verifier: Verifier) -> Result<Self, ConfigError> {
        if verifier.routes.is_some() {
            return Err(crate::error::invalid(
                "verifier_set",
                "a set's member must be a single issuer's verifier",
            ));
        }
        if self.members.iter().any(|m| m.issuer() == verifier.issuer()) {
            return Err(crate::error::invalid(
                "verifier_set",
                format!("two members for the issuer {:?}", verifier.issuer()),
            ));
        }
        self.members.push(verifier);
        Ok(self)
    }

    /// The `realm` of the set's challenges [default: the first member's].
    pub fn realm(mut self, realm: impl Into<String>) -> Self {
        self.realm = Some(realm.into());
        self
    }

    /// Also take tokens from a cookie (see [`CookieSource`]).
    pub fn cookie(mut self, cookie: CookieSource) -> Self {
        self.cookie = Some(cookie.normalized());
        self
    }

    /// Also take a raw token from this request header (see
    /// [`crate::VerifierConfig::token_header`]).
    pub fn token_header(mut self, name: impl Into<String>) -> Self {
        self.token_header = Some(name.into().to_ascii_lowercase());
        self
    }

    /// The verifier of every member's tokens.
    pub fn build(self) -> Result<Verifier, ConfigError> {
        let Some(first) = self.members.first().cloned() else {
            return Err(crate::error::invalid(
                "verifier_set",
                "a set needs at least one member",
            ));
        };
        let max_token_bytes = self
            .members
            .iter()
            .map(|m| m.inner.max_token_bytes)
            .max()
            .unwrap_or(first.inner.max_token_bytes);
        let routes = Routes {
            prefixes: self
                .members
                .iter()
                .map(|m| (IssFirst::new(m.issuer()), m.clone()))
                .collect(),
            by_issuer: self
                .members
                .iter()
                .map(|m| (Box::from(m.issuer()), m.clone()))
                .collect(),
            realm: self.realm.unwrap_or_else(|| first.realm().to_owned()),
            cookie: self.cookie,
            token_header: self.token_header,
            max_token_bytes,
            members: self.members,
        };
        Ok(Verifier {
            inner: first.inner,
            routes: Some(Arc::new(routes)),
        })
    }
}

/// How a payload whose first member is `iss` = one issuer starts, in
/// base64url: the characters that `{"iss":"<issuer>"` alone determines, and,
/// when its length is not a multiple of 3, the one character it shares with
/// whatever follows: its value and how many of its low bits are not ours.
#[derive(Debug)]
struct IssFirst {
    exact: Box<[u8]>,
    shared: Option<(u8, u8)>,
}

impl IssFirst {
    fn new(issuer: &str) -> Self {
        use base64::Engine as _;
        let json = serde_json::to_string(issuer).unwrap_or_default();
        let text = format!(r#"{{"iss":{json}"#);
        let mut chars = base64::engine::general_purpose::URL_SAFE_NO_PAD
            .encode(text.as_bytes())
            .into_bytes();
        // 1 byte over whole groups: its last character holds 2 of our bits
        // (4 not ours); 2 bytes over: 4 of ours (2 not ours).
        let shared = match text.len() % 3 {
            1 => chars.pop().and_then(value).map(|v| (v, 4)),
            2 => chars.pop().and_then(value).map(|v| (v, 2)),
            _ => None,
        };
        Self {
            exact: chars.into_boxed_slice(),
            shared,
        }
    }

    fn matches(&self, payload: &[u8]) -> bool {
        let Some(after) = payload.strip_prefix(&*self.exact) else {
            return false;
        };
        match self.shared {
            None => true,
            Some((ours, not_ours)) => after
                .first()
                .and_then(|&c| value(c))
                .is_some_and(|v| v >> not_ours == ours >> not_ours),
        }
    }
}

/// A base64url character's 6-bit value.
fn value(c: u8) -> Option<u8> {
    match c {
        b'A'..=b'Z' => Some(c - b'A'),
        b'a'..=b'z' => Some(c - b'a' + 26),
        b'0'..=b'9' => Some(c - b'0' + 52),
        b'-' => Some(62),
        b'_' => Some(63),
        _ => None,
    }
}

/// Up to this many members, the member is found by comparing issuers in
/// turn (cheaper than hashing for a few).
const LINEAR_UP_TO: usize = 8;

impl Routes {
    /// The member for `issuer` (a few: compared in turn; more: hashed).
    fn member(&self, issuer: &str) -> Result<&Verifier, VerifyError> {
        let found = if self.members.len() <= LINEAR_UP_TO {
            self.members.iter().find(|m| m.issuer() == issuer)
        } else {
            self.by_issuer.get(issuer)
        };
        found.ok_or(VerifyError::WrongIssuer)
    }
}

impl super::Routes for Routes {
    fn choose(&self, token: &str) -> Result<&Verifier, VerifyError> {
        if token.len() > self.max_token_bytes {
            return Err(VerifyError::TooLarge {
                max: self.max_token_bytes,
            });
        }
        let after_header = token
            .split_once('.')
            .map(|(_, rest)| rest.as_bytes())
            .ok_or(VerifyError::Malformed("not three segments"))?;
        // Fast path: the payload starts `{"iss":"<a member's issuer>"`
        // (Tessera's always do): its first member is the top-level `iss`.
        // Compared still encoded, but for the last few bytes.
        for (prefix, member) in &self.prefixes {
            if prefix.matches(after_header) {
                return Ok(member);
            }
        }
        let payload = after_header
            .split(|&b| b == b'.')
            .next()
            .unwrap_or_default();
        // Anything else: the whole payload, parsed for `iss` alone.
        #[derive(Deserialize)]
        struct Iss<'a> {
            #[serde(borrow)]
            iss: Option<std::borrow::Cow<'a, str>>,
        }
        let decoded = crate::b64::decode(payload)
            .ok_or(VerifyError::Malformed("payload is not base64url"))?;
        if !crate::jws::is_json_object(&decoded) || crate::jws::too_deep(&decoded) {
            return Err(VerifyError::Malformed("payload is not a JSON object"));
        }
        let claims: Iss<'_> = serde_json::from_slice(&decoded)
            .map_err(|_| VerifyError::Malformed("payload is not valid"))?;
        let issuer = claims.iss.ok_or(VerifyError::MissingClaim("iss"))?;
        self.member(&issuer)
    }

    fn realm(&self) -> &str {
        &self.realm
    }

    fn cookie_source(&self) -> Option<&CookieSource> {
        self.cookie.as_ref()
    }

    fn token_header(&self) -> Option<&str> {
        self.token_header.as_deref()
    }

    fn members(&self) -> &[Verifier] {
        &self.members
    }

    /// Every member's health together: loaded and usable only if every
    /// member's keys are; stale if any is; the keys counted together; the
    /// soonest freshness and oldest success; the first error.
    fn health(&self) -> KeysHealth {
        let all: Vec<KeysHealth> = self.members.iter().map(Verifier::health).collect();
        KeysHealth {
            loaded: all.iter().all(|h| h.loaded),
            usable: all.iter().all(|h| h.usable),
            stale: all.iter().any(|h| h.stale),
            key_count: all.iter().map(|h| h.key_count).sum(),
            fresh_until: all.iter().filter_map(|h| h.fresh_until).min(),
            last_success_at: if all.iter().all(|h| h.last_success_at.is_some()) {
                all.iter().filter_map(|h| h.last_success_at).min()
            } else {
                None
            },
            age_secs: if all.iter().all(|h| h.age_secs.is_some()) {
                all.iter().filter_map(|h| h.age_secs).max()
            } else {
                None
            },
            last_error: all.into_iter().find_map(|h| h.last_error),
        }
    }

    /// Every member's counters added together.
    fn metrics(&self) -> MetricsSnapshot {
        let mut total: Option<MetricsSnapshot> = None;
        for member in &self.members {
            let m = member.metrics();
            match &mut total {
                None => total = Some(m),
                Some(t) => t.add(&m),
            }
        }
        total.unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::IssFirst;
    use base64::Engine as _;

    fn encoded(json: &str) -> Vec<u8> {
        base64::engine::general_purpose::URL_SAFE_NO_PAD
            .encode(json)
            .into_bytes()
    }

    #[test]
    fn the_encoded_prefix_matches_its_issuer_only_whatever_the_length() {
        // Every remainder of the prefix's length modulo 3, and what follows
        // the issuer's closing quote varied.
        for len in 1..=12 {
            let issuer = "i".repeat(len);
            let prefix = IssFirst::new(&issuer);
            for after in [r#","sub":"x"}"#, "}", r#","aud":["a"]}"#] {
                let payload = encoded(&format!(r#"{{"iss":"{issuer}"{after}"#));
                assert!(prefix.matches(&payload), "{len} {after}");
                // One character more, or a different last character: no match.
                let longer = encoded(&format!(r#"{{"iss":"{issuer}j"{after}"#));
                assert!(!prefix.matches(&longer), "{len} longer");
                let other = format!("{}j", &issuer[..len - 1]);
                let different = encoded(&format!(r#"{{"iss":"{other}"{after}"#));
                assert!(!prefix.matches(&different), "{len} different");
            }
            // iss not first, or nothing after the prefix: no match (the slow
            // path then decides).
            let later = encoded(&format!(r#"{{"sub":"x","iss":"{issuer}"}}"#));
            assert!(!prefix.matches(&later));
        }
    }
}
