//! The verifier: the validation pipeline and the JWKS cache behind it.

use std::collections::HashMap;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use arc_swap::ArcSwapOption;
use hyper::Uri;
use serde::de::DeserializeOwned;

use crate::VerifyError;
use crate::claims::{AccessClaims, Registered, Validation, Verified};
use crate::clock::Clock;
use crate::clock::secs;
use crate::config::{JwksSource, VerifierConfig};
use crate::error::ConfigError;
use crate::fetch;
use crate::jwks::KeySet;
use crate::metrics::{Metrics, MetricsSnapshot};
use crate::revocation::{RevocationList, TokenKeys};
use crate::token_cache::{Entry, TokenCache};

#[cfg(feature = "jsonwebtoken")]
mod bridge;
pub(crate) mod feed;
mod refresh;
pub(crate) mod set;
mod status;

#[cfg(feature = "jsonwebtoken")]
pub use bridge::BridgeError;

/// What the header's `kid` found in the key set.
enum Lookup<'k> {
    /// The kid (shared) and its key, from the snapshot the lookup used.
    Found(Arc<str>, &'k crate::crypto::VerifyingKey),
    /// No such kid in the set of this generation.
    Unknown(String, u64),
}

/// A header segment that passed the header checks, its kid and its alg.
type RememberedHeader = (Box<str>, Arc<str>, crate::crypto::Algorithm);

/// Header segments remembered as checked (a few per signing key in use).
const MAX_HEADERS: usize = 16;
/// Longer header segments are not remembered.
const MAX_REMEMBERED_HEADER: usize = 512;

/// The most unknown `kid`s remembered at once.
const MAX_MISSES: usize = 1024;

/// Verifies access tokens with the issuer's public keys. Cheap to clone; every
/// clone shares the key cache, the token cache and the counters.
///
/// Requests with a known `kid` never wait: the key set is a lock-free snapshot,
/// replaced whole by the background task or by an unknown-`kid` refetch.
#[derive(Debug, Clone)]
pub struct Verifier {
    inner: Arc<Inner>,
    /// A [`VerifierSet`]'s members by issuer (then `inner` is the first
    /// member's, used for nothing the set decides).
    routes: Option<Arc<dyn Routes>>,
}

/// How a [`VerifierSet`](set::VerifierSet) routes: implemented in
/// `set.rs` (a trait here, so this file names nothing of that one).
pub(crate) trait Routes: std::fmt::Debug + Send + Sync {
    /// The member for `token`'s claimed issuer.
    fn choose(&self, token: &str) -> Result<&Verifier, VerifyError>;
    /// Every member, in the order added.
    fn members(&self) -> &[Verifier];
    /// The set's challenge realm.
    fn realm(&self) -> &str;
    /// The set's cookie source.
    fn cookie_source(&self) -> Option<&crate::config::CookieSource>;
    /// The set's forwarded-token header.
    fn token_header(&self) -> Option<&str>;
    /// Every member's key health together.
    fn health(&self) -> KeysHealth;
    /// Every member's counters added.
    fn metrics(&self) -> MetricsSnapshot;
}

#[derive(Debug)]
struct Inner {
    validation: Validation,
    algorithms: Vec<String>,
    required_typ: Option<String>,
    max_token_bytes: usize,
    realm: String,
    cookie: Option<crate::config::CookieSource>,
    token_header: Option<String>,
    clock: Arc<dyn Clock>,
    metrics: Metrics,
    token_cache: Option<TokenCache>,
    keys: ArcSwapOption<KeysState>,
    source: Source,
    /// Single flight: held by whoever is fetching.
    fetch_lock: tokio::sync::Mutex<()>,
    /// When an unknown `kid` last caused a refetch (Unix seconds).
    last_kid_refetch: AtomicI64,
    /// Header segments that passed the header checks, newest first, with their
    /// kid and alg: the same bytes need no second decoding.
    headers: arc_swap::ArcSwap<Vec<RememberedHeader>>,
    /// Unknown `kid`s and when they were seen missing.
    misses: Mutex<HashMap<String, i64>>,
    health: Mutex<FetchHealth>,
    timing: Timing,
    connector: fetch::Connector,
    /// The revocation list and its feed's URL, when followed.
    revocations: Option<(RevocationList, Uri)>,
}

#[derive(Debug)]
enum Source {
    Static,
    Fetch {
        /// Known, or found by discovery (then kept).
        jwks_url: Mutex<Option<Uri>>,
    },
}

#[derive(Debug, Clone, Copy)]
struct Timing {
    min_lifetime: i64,
    max_lifetime: i64,
    cooldown: i64,
    stale_if_error: i64,
    fetch_timeout: Duration,
    check_interval: Duration,
}

/// One accepted key set.
#[derive(Debug)]
struct KeysState {
    keys: Arc<KeySet>,
    etag: Option<String>,
    /// Usable without revalidation until then (Unix seconds).
    fresh_until: i64,
    /// Revalidated in the background from then on.
    refresh_at: i64,
    /// Bumped on every accepted fetch (200 or 304).
    generation: u64,
}

#[derive(Debug, Default, Clone)]
struct FetchHealth {
    last_success_at: Option<i64>,
    last_error: Option<String>,
    last_error_at: Option<i64>,
}

/// What a resource server's health endpoint reports about its keys.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[non_exhaustive]
pub struct KeysHealth {
    /// A key set has been accepted at least once.
    pub loaded: bool,
    /// Tokens can be verified now (keys loaded, not past stale-if-error).
    pub usable: bool,
    /// The key set is past its lifetime and served stale (the issuer did not
    /// answer a revalidation).
    pub stale: bool,
    /// Usable keys.
    pub key_count: usize,
    /// Until when the set is fresh (Unix seconds).
    pub fresh_until: Option<i64>,
    /// The last successful fetch or revalidation (Unix seconds).
    pub last_success_at: Option<i64>,
    /// Seconds since then: how old the key set held is.
    pub age_secs: Option<i64>,
    /// The last failure, if any since the last success.
    pub last_error: Option<String>,
}

impl Verifier {
    /// Builds a verifier. Unless the keys are static, this spawns the
    /// background task that fetches them at once (eagerly), refreshes them
    /// ahead of expiry, and retries when the issuer is down; it must run inside
    /// a tokio runtime. It ends when the last clone of the verifier is dropped.
    pub fn start(config: VerifierConfig, clock: Arc<dyn Clock>) -> Result<Self, ConfigError> {
        config.validate()?;
        let (source, keys) = match &config.jwks {
            JwksSource::Static(set) => {
                if set.is_empty() {
                    return Err(crate::error::invalid(
                        "jwks",
                        "a static key set needs a key",
                    ));
                }
                let state = KeysState {
                    keys: Arc::new(set.clone()),
                    etag: None,
                    fresh_until: i64::MAX,
                    refresh_at: i64::MAX,
                    generation: 1,
                };
                (Source::Static, Some(Arc::new(state)))
            }
            JwksSource::Url(url) => {
                let uri = fetch::parse_url(url)
                    .map_err(|e| crate::error::invalid("jwks", e.to_string()))?;
                warn_if_insecure(&uri);
                (
                    Source::Fetch {
                        jwks_url: Mutex::new(Some(uri)),
                    },
                    None,
                )
            }
            JwksSource::Discover => {
                let issuer = fetch::parse_url(&config.issuer).map_err(|e| {
                    crate::error::invalid("issuer", format!("cannot discover keys from it: {e}"))
                })?;
                warn_if_insecure(&issuer);
                (
                    Source::Fetch {
                        jwks_url: Mutex::new(None),
                    },
                    None,
                )
            }
        };
        let revocations = match &config.revocations {
            None => None,
            Some(rc) => {
                let url = rc.url.clone().unwrap_or_else(|| {
                    format!("{}/revocations", config.issuer.trim_end_matches('/'))
                });
                let uri = fetch::parse_url(&url)
                    .map_err(|e| crate::error::invalid("revocations.url", e.to_string()))?;
                warn_if_insecure(&uri);
                Some((RevocationList::new(rc.clone(), clock.now()), uri))
            }
        };
        let fetches = matches!(source, Source::Fetch { .. }) || revocations.is_some();
        let runtime = if fetches {
            Some(tokio::runtime::Handle::try_current().map_err(|_| {
                crate::error::invalid("jwks", "fetching keys or revocations needs a tokio runtime")
            })?)
        } else {
            None
        };
        let inner = Arc::new(Inner {
            validation: Validation {
                issuer: config.issuer.clone(),
                audiences: config.audiences.clone(),
                leeway: secs(config.leeway),
                required: config.required_claims.clone(),
            },
            algorithms: config.algorithms.clone(),
            required_typ: config.required_typ.clone(),
            max_token_bytes: config.max_token_bytes,
            realm: config.realm.clone(),
            cookie: config
                .cookie
                .as_ref()
                .map(crate::config::CookieSource::normalized),
            token_header: config.token_header.as_ref().map(|h| h.to_ascii_lowercase()),
            clock,
            metrics: Metrics::default(),
            token_cache: config
                .token_cache
                .map(|c| TokenCache::new(c.max_entries, c.max_bytes)),
            keys: ArcSwapOption::new(keys),
            source,
            fetch_lock: tokio::sync::Mutex::new(()),
            last_kid_refetch: AtomicI64::new(i64::MIN),
            headers: arc_swap::ArcSwap::from_pointee(Vec::new()),
            misses: Mutex::new(HashMap::new()),
            health: Mutex::new(FetchHealth::default()),
            timing: Timing {
                min_lifetime: secs(config.min_cache_lifetime),
                max_lifetime: secs(config.max_cache_lifetime),
                cooldown: secs(config.unknown_kid_cooldown),
                stale_if_error: secs(config.stale_if_error),
                fetch_timeout: config.fetch_timeout,
                check_interval: config.refresh_check_interval,
            },
            connector: fetch::Connector::new(&config.extra_root_certificates)
                .map_err(|e| crate::error::invalid("extra_root_certificates", e.to_string()))?,
            revocations,
        });
        if let Some(runtime) = runtime {
            if matches!(inner.source, Source::Fetch { .. }) {
                runtime.spawn(background(Arc::downgrade(&inner)));
            }
            if inner.revocations.is_some() {
                runtime.spawn(follow_feed(Arc::downgrade(&inner)));
            }
        }
        Ok(Self {
            inner,
            routes: None,
        })
    }

    /// Verifies `token` (the compact JWT, without `Bearer `) and types its
    /// claims as `C`.
    ///
    /// The checks run in an order that never does crypto on garbage: size,
    /// segments and base64url, header (`alg` allowlist, no `crit`, `typ`), key
    /// by `kid`, signature, then claims (`iss`, `aud`, `exp`/`nbf`/`iat` with
    /// leeway, JSON types). A token seen before (same bytes, key still
    /// published) skips only the signature.
    pub async fn verify<C: DeserializeOwned + Send + Sync + 'static>(
        &self,
        token: &str,
    ) -> Result<Verified<C>, VerifyError> {
        let single = match &self.routes {
            None => self,
            Some(routes) => routes.choose(token)?,
        };
        single.verify_single(token).await
    }

    /// [`Verifier::verify`] by this (single-issuer) verifier.
    async fn verify_single<C: DeserializeOwned + Send + Sync + 'static>(
        &self,
        token: &str,
    ) -> Result<Verified<C>, VerifyError> {
        let result = self.verify_inner(token).await;
        let metrics = &self.inner.metrics;
        match &result {
            Ok(_) => Metrics::bump(&metrics.verified),
            Err(e) => Metrics::bump(&metrics.failed[e.index()]),
        }
        result
    }

    async fn verify_inner<C: DeserializeOwned + Send + Sync + 'static>(
        &self,
        token: &str,
    ) -> Result<Verified<C>, VerifyError> {
        let inner = &*self.inner;
        if token.len() > inner.max_token_bytes {
            return Err(VerifyError::TooLarge {
                max: inner.max_token_bytes,
            });
        }
        let now = inner.clock.now();
        let cache_key = inner
            .token_cache
            .as_ref()
            .map(|cache| (cache, cache.key(token)));
        if let Some((cache, key)) = cache_key
            && let Some(hit) = cache.get(key, token)
        {
            let published = {
                let guard = inner.keys.load();
                let state = inner.usable(guard.as_deref(), now)?;
                state.keys.get(&hit.kid).is_some()
            };
            if published {
                inner.validation.check_times(&hit.registered, now)?;
                if let (Some((list, _)), Some(keys)) = (&inner.revocations, &hit.revocation) {
                    list.check(keys, now)?;
                }
                Metrics::bump(&inner.metrics.token_cache_hits);
                let claims = cached_claims(&hit)?;
                return Ok(Verified::new(claims, hit.registered, hit.kid));
            }
            // Its key left the JWKS: forget it, and verify from scratch (which
            // will refuse it unless the key comes back).
            cache.remove(key, token);
        }

        // Header checks, then the key by kid, all on the borrowed header and one
        // load of the key set; the payload and signature are decoded only after.
        let guard = inner.keys.load();
        let snapshot = guard.as_deref();
        let lookup = |kid: &str| -> Result<Lookup<'_>, VerifyError> {
            let state = inner.usable(snapshot, now)?;
            Ok(match state.keys.entry(kid) {
                Some((kid, key)) => Lookup::Found(Arc::clone(kid), key),
                None => Lookup::Unknown(kid.to_owned(), state.generation),
            })
        };
        let headers = inner.headers.load();
        let mut inspected = false;
        let (found, parts) = crate::jws::parse_with_known(
            token,
            inner.max_token_bytes,
            // A header segment that passed these checks before passes again:
            // only its kid is looked up.
            |segment| {
                let (_, kid, alg) = headers.iter().find(|(s, _, _)| **s == *segment)?;
                Some(lookup(kid).map(|found| (*alg, found)))
            },
            |h| {
                let alg = crate::jws::check_alg(h.alg, &inner.algorithms)?;
                if let Some(typ) = &inner.required_typ {
                    crate::jws::check_typ(h.typ, typ)?;
                }
                let kid = h.kid.ok_or(VerifyError::UnknownKey)?;
                inspected = true;
                Ok(lookup(kid).map(|found| (alg, found)))
            },
        )?;
        let (alg, found) = found?;
        let kid = match found {
            Lookup::Found(kid, key) => {
                parts.verify(alg, key)?;
                kid
            }
            Lookup::Unknown(kid, generation) => {
                drop(guard);
                // Maybe a rotation we have not seen yet.
                self.refetch_for_unknown_kid(&kid, generation, now).await;
                let guard = inner.keys.load();
                let state = inner.usable(guard.as_deref(), now)?;
                let Some((kid_arc, key)) = state.keys.entry(&kid) else {
                    inner.remember_miss(&kid, now);
                    return Err(VerifyError::UnknownKey);
                };
                parts.verify(alg, key)?;
                Arc::clone(kid_arc)
            }
        };
        // Only headers of genuinely signed tokens are remembered (a flood of
        // forged headers must not churn the memo).
        if inspected && let Some(segment) = token.split('.').next() {
            inner.remember_header(segment, &kid, alg);
        }
        let (registered, text, access) = inner.validation.validate_all(&parts.payload, now)?;
        let revocation = match &inner.revocations {
            Some((list, _)) => {
                let sid = access.as_ref().ok().and_then(|a| a.sid.as_deref());
                let keys = TokenKeys::of(
                    registered.jti.as_deref(),
                    sid,
                    registered.sub.as_deref(),
                    registered.iat,
                );
                list.check(&keys, now)?;
                Some(Arc::new(keys))
            }
            None => None,
        };
        let access = access.map(Arc::new);
        let claims = typed_claims_from(text, &access)?;
        let registered = Arc::new(registered);
        if let Some((cache, key)) = cache_key {
            let entry = Entry {
                token: Arc::from(token),
                kid: Arc::clone(&kid),
                registered: Arc::clone(&registered),
                payload: Arc::from(text),
                access,
                revocation,
            };
            cache.insert(key, entry, now.saturating_sub(inner.validation.leeway));
        }
        Ok(Verified::new(claims, registered, kid))
    }

    /// One refetch for an unknown `kid`, subject to the cooldown; waits for a
    /// refetch already in flight instead of starting another.
    async fn refetch_for_unknown_kid(&self, kid: &str, generation: u64, now: i64) {
        let inner = &*self.inner;
        if !matches!(inner.source, Source::Fetch { .. }) {
            return;
        }
        let cooldown = inner.timing.cooldown;
        let remembered = inner
            .misses
            .lock()
            .ok()
            .and_then(|m| m.get(kid).copied())
            .is_some_and(|at| now.saturating_sub(at) < cooldown);
        if remembered {
            return;
        }
        let last = inner.last_kid_refetch.load(Ordering::SeqCst);
        let may_fetch = now.saturating_sub(last) >= cooldown
            && inner
                .last_kid_refetch
                .compare_exchange(last, now, Ordering::SeqCst, Ordering::SeqCst)
                .is_ok();
        if may_fetch {
            Metrics::bump(&inner.metrics.unknown_kid_refetches);
            let _ = inner.refresh(Some(generation)).await;
        } else if inner.fetch_lock.try_lock().is_err() {
            // A fetch is in flight (probably for this very rotation): wait for
            // it, bounded by its timeout, then look again.
            let _ = tokio::time::timeout(inner.timing.fetch_timeout, inner.fetch_lock.lock()).await;
        }
    }
}

/// The caller's claims type: the [`AccessClaims`] already read when that is
/// what was asked for (no second parse, no copy), otherwise a parse of the
/// payload.
fn typed_claims_from<C: DeserializeOwned + Send + Sync + 'static>(
    text: &str,
    access: &Result<Arc<AccessClaims>, VerifyError>,
) -> Result<Arc<C>, VerifyError> {
    let shared: Result<Arc<dyn std::any::Any + Send + Sync>, VerifyError> = match access {
        Ok(a) => Ok(Arc::clone(a) as Arc<dyn std::any::Any + Send + Sync>),
        Err(e) => Err(e.clone()),
    };
    if std::any::TypeId::of::<C>() == std::any::TypeId::of::<AccessClaims>() {
        return shared?
            .downcast::<C>()
            .map_err(|_| VerifyError::InvalidClaim("application claims"));
    }
    serde_json::from_str(text)
        .map(Arc::new)
        .map_err(|_| VerifyError::InvalidClaim("application claims"))
}

/// [`typed_claims_from`] for a cached token.
fn cached_claims<C: DeserializeOwned + Send + Sync + 'static>(
    hit: &Entry,
) -> Result<Arc<C>, VerifyError> {
    typed_claims_from(&hit.payload, &hit.access)
}

impl Inner {
    /// The key set if tokens may be verified with it now.
    fn usable<'a>(
        &self,
        state: Option<&'a KeysState>,
        now: i64,
    ) -> Result<&'a KeysState, VerifyError> {
        let state = state.ok_or(VerifyError::KeysUnavailable)?;
        if now >= state.fresh_until {
            if now >= state.fresh_until.saturating_add(self.timing.stale_if_error) {
                return Err(VerifyError::KeysUnavailable);
            }
            Metrics::bump(&self.metrics.stale_verifications);
        }
        Ok(state)
    }

    /// Remembers a header segment that passed the header checks, and its kid.
    fn remember_header(&self, segment: &str, kid: &str, alg: crate::crypto::Algorithm) {
        if segment.len() > MAX_REMEMBERED_HEADER {
            return;
        }
        self.headers.rcu(|headers| {
            let mut next: Vec<_> = headers
                .iter()
                .filter(|(s, _, _)| **s != *segment)
                .take(MAX_HEADERS - 1)
                .cloned()
                .collect();
            next.insert(0, (Box::from(segment), Arc::from(kid), alg));
            next
        });
    }

    fn remember_miss(&self, kid: &str, now: i64) {
        let Ok(mut misses) = self.misses.lock() else {
            return;
        };
        if misses.len() >= MAX_MISSES {
            let cooldown = self.timing.cooldown;
            misses.retain(|_, at| now.saturating_sub(*at) < cooldown);
            if misses.len() >= MAX_MISSES {
                misses.clear();
            }
        }
        misses.insert(kid.chars().take(128).collect(), now);
    }

    fn lifetime(&self, max_age: Option<u64>) -> i64 {
        let max_age = max_age.map_or(0, |s| i64::try_from(s).unwrap_or(i64::MAX));
        max_age.clamp(self.timing.min_lifetime, self.timing.max_lifetime)
    }
}

/// Polls the revocation feed every `poll_interval` until the verifier is
/// dropped. A failed poll is recorded (health, metrics, one log line when it
/// becomes an outage); the next poll comes at the same interval.
async fn follow_feed(weak: Weak<Inner>) {
    loop {
        let Some(inner) = weak.upgrade() else {
            return;
        };
        let Some((list, _)) = &inner.revocations else {
            return;
        };
        let interval = list.config.poll_interval;
        let verifier = Verifier {
            inner: Arc::clone(&inner),
            routes: None,
        };
        Metrics::bump(&inner.metrics.revocation_polls);
        if let Err(problem) = verifier.poll_feed().await {
            Metrics::bump(&inner.metrics.revocation_poll_errors);
            list.failed(problem, inner.clock.now());
        }
        drop(verifier);
        drop(inner);
        tokio::time::sleep(interval).await;
    }
}

/// Plain HTTP beyond loopback lets anyone on the path substitute the keys.
fn warn_if_insecure(uri: &Uri) {
    if fetch::is_insecure(uri) {
        tracing::warn!(
            url = %uri,
            "verification keys are fetched over plain HTTP from a non-loopback host: \
             anyone on the network path could substitute them; use https://"
        );
    }
}

/// Fetches keys at once, then keeps them fresh: revalidates at 80 % of their
/// lifetime, and after a failure retries with a growing delay (1 s … 60 s).
async fn background(weak: Weak<Inner>) {
    let mut failures: u32 = 0;
    let mut retry_at = tokio::time::Instant::now();
    loop {
        let Some(inner) = weak.upgrade() else {
            return;
        };
        let now = inner.clock.now();
        let due = inner
            .keys
            .load()
            .as_deref()
            .is_none_or(|s| now >= s.refresh_at);
        if due && tokio::time::Instant::now() >= retry_at {
            match inner.refresh(None).await {
                Ok(()) => failures = 0,
                Err(_) => {
                    failures = failures.saturating_add(1);
                    let delay = Duration::from_secs(1 << failures.min(6).saturating_sub(1))
                        .min(Duration::from_secs(60));
                    retry_at = tokio::time::Instant::now() + delay;
                }
            }
        }
        let interval = inner.timing.check_interval;
        drop(inner);
        tokio::time::sleep(interval).await;
    }
}

#[allow(dead_code)]
fn _assert_send_sync() {
    fn check<T: Send + Sync>() {}
    check::<Verifier>();
    check::<Registered>();
}
