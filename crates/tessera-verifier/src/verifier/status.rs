//! What a verifier reports about itself (counters, key and feed health,
//! readiness) and its settings, for a single issuer or a set.

use std::time::Duration;

use super::Verifier;
use crate::KeysHealth;
use crate::metrics::MetricsSnapshot;
use crate::revocation::RevocationHealth;
use crate::token_cache::TokenCache;

impl Verifier {
    /// The counters (a set's: its members' added together).
    pub fn metrics(&self) -> MetricsSnapshot {
        if let Some(routes) = &self.routes {
            return routes.metrics();
        }
        let cached = self.inner.token_cache.as_ref().map_or(0, TokenCache::len);
        self.inner.metrics.snapshot(cached)
    }

    /// The state of the key set, for health and readiness endpoints (a
    /// set's: every member's together).
    pub fn health(&self) -> KeysHealth {
        if let Some(routes) = &self.routes {
            return routes.health();
        }
        let inner = &*self.inner;
        let now = inner.clock.now();
        let guard = inner.keys.load();
        let state = guard.as_deref();
        let fetch = inner.health.lock().map(|h| h.clone()).unwrap_or_default();
        KeysHealth {
            loaded: state.is_some(),
            usable: inner.usable(state, now).is_ok(),
            stale: state.is_some_and(|s| now >= s.fresh_until),
            key_count: state.map_or(0, |s| s.keys.len()),
            fresh_until: state.map(|s| s.fresh_until).filter(|&t| t != i64::MAX),
            last_success_at: fetch.last_success_at,
            age_secs: fetch.last_success_at.map(|t| now.saturating_sub(t)),
            last_error: fetch.last_error,
        }
    }

    /// Where the revocation feed stands, if the verifier follows one (a
    /// set: see each of [`Verifier::members`]).
    pub fn revocations(&self) -> Option<RevocationHealth> {
        if self.routes.is_some() {
            return None;
        }
        let now = self.inner.clock.now();
        self.inner
            .revocations
            .as_ref()
            .map(|(list, _)| list.health(now))
    }

    /// Whether tokens can be verified now: keys usable, and not failing
    /// closed for want of the revocation feed.
    pub fn is_ready(&self) -> bool {
        if let Some(routes) = &self.routes {
            return routes.members().iter().all(Verifier::is_ready);
        }
        self.health().usable && self.revocations().is_none_or(|r| !r.failing_closed)
    }

    /// Waits (up to `timeout`) until keys are usable and, when a revocation
    /// feed is followed, it has answered once; true if so.
    pub async fn ready(&self, timeout: Duration) -> bool {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let loaded = |v: &Verifier| v.revocations().is_none_or(|r| r.loaded);
            let feeds = match &self.routes {
                Some(routes) => routes.members().iter().all(loaded),
                None => loaded(self),
            };
            if self.is_ready() && feeds {
                return true;
            }
            if tokio::time::Instant::now() >= deadline {
                return false;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    /// The issuer whose tokens are accepted (the exact `iss`; a set's
    /// first member's: see [`Verifier::issuers`]).
    pub fn issuer(&self) -> &str {
        &self.inner.validation.issuer
    }

    /// Every issuer whose tokens are accepted.
    pub fn issuers(&self) -> Vec<&str> {
        self.members().iter().map(Verifier::issuer).collect()
    }

    /// A set's members, in the order they were added; a single verifier:
    /// itself.
    pub fn members(&self) -> &[Verifier] {
        match &self.routes {
            Some(routes) => routes.members(),
            None => std::slice::from_ref(self),
        }
    }

    /// The `realm` for `WWW-Authenticate` challenges.
    pub fn realm(&self) -> &str {
        match &self.routes {
            Some(routes) => routes.realm(),
            None => &self.inner.realm,
        }
    }

    /// Where the axum extractors also look for a token, if anywhere: a cookie
    /// (see [`crate::config::CookieSource`]).
    pub fn cookie_source(&self) -> Option<&crate::config::CookieSource> {
        match &self.routes {
            Some(routes) => routes.cookie_source(),
            None => self.inner.cookie.as_ref(),
        }
    }

    /// The request header that may carry a raw token, if one is configured
    /// (lower case).
    pub fn token_header(&self) -> Option<&str> {
        match &self.routes {
            Some(routes) => routes.token_header(),
            None => self.inner.token_header.as_deref(),
        }
    }

    /// The kids of the current key set (a set's: every member's), for
    /// diagnostics.
    pub fn kids(&self) -> Vec<String> {
        if self.routes.is_some() {
            let mut kids: Vec<String> = self.members().iter().flat_map(Verifier::kids).collect();
            kids.sort_unstable();
            return kids;
        }
        let guard = self.inner.keys.load();
        let mut kids: Vec<String> = guard
            .as_deref()
            .map(|s| s.keys.kids().map(str::to_owned).collect())
            .unwrap_or_default();
        kids.sort_unstable();
        kids
    }
}
