//! Following the issuer's revocation feed: the list of revoked tokens
//! (`jti`), sessions (`sid`) and users (`sub`, tokens issued up to a time),
//! held in memory and checked on every verification, cached tokens included.
//!
//! The feed is a JWS (`typ: revocations+jwt`) signed with one of the issuer's
//! published keys, so it is checked with the key set the verifier already
//! holds. Entries carry `SHA-256("<kind>:<value>")`, never the value: the
//! verifier hashes the token's own claims once (when it is first verified)
//! and looks the hashes up. Entries are dropped when they expire, which the
//! issuer sets to the latest time a token they cover could still be valid, so
//! the list stays as small as one access-token lifetime of revocations.

use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};
use std::sync::Mutex;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::time::Duration;

use arc_swap::ArcSwap;
use std::sync::Arc;

use crate::VerifyError;
use crate::error::{ConfigError, invalid};

/// The `typ` of a feed document.
pub(crate) use tessera_feed::TYP as FEED_TYP;

/// The largest feed document read (a snapshot of ~500,000 entries).
pub(crate) const MAX_FEED_BYTES: usize = 64 << 20;

/// What a verifier does once the feed has gone unanswered for longer than
/// [`RevocationConfig::max_outage`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum OutagePolicy {
    /// Keep verifying with the list last received (revocations made during
    /// the outage are not seen until it ends); logged, and visible in
    /// [`RevocationHealth`]. The default: an issuer outage does not become a
    /// resource-server outage.
    #[default]
    KeepGoing,
    /// Refuse every token (`503`, `revocations_unavailable`) until the feed
    /// answers again, and before it has answered once.
    FailClosed,
}

/// How the verifier follows the issuer's revocation feed.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct RevocationConfig {
    /// The feed URL. Default `None`: `<issuer>/revocations`.
    pub url: Option<String>,
    /// How often the feed is polled. Default 2 s; at least 100 ms.
    pub poll_interval: Duration,
    /// How long the feed may go unanswered before `on_outage` applies.
    /// Default 60 s.
    pub max_outage: Duration,
    /// What happens then. Default [`OutagePolicy::KeepGoing`].
    pub on_outage: OutagePolicy,
    /// The most entries held; a feed with more is refused (and counts as an
    /// unanswered poll). Default 1,000,000 (about 80 MB).
    pub max_entries: usize,
    /// The oldest a feed document's `iat` may be (by this verifier's clock)
    /// to be accepted; documents also never go back in `iat`. Default 120 s
    /// (the issuer re-signs every 30 s; the rest is clock skew).
    pub max_document_age: Duration,
}

impl Default for RevocationConfig {
    fn default() -> Self {
        Self {
            url: None,
            poll_interval: Duration::from_secs(2),
            max_outage: Duration::from_secs(60),
            on_outage: OutagePolicy::KeepGoing,
            max_entries: 1_000_000,
            max_document_age: Duration::from_secs(120),
        }
    }
}

impl RevocationConfig {
    pub(crate) fn validate(&self) -> Result<(), ConfigError> {
        if self.poll_interval < Duration::from_millis(100) {
            return Err(invalid("revocations.poll_interval", "at least 100 ms"));
        }
        if self.max_outage < self.poll_interval {
            return Err(invalid(
                "revocations.max_outage",
                "must be at least the poll interval",
            ));
        }
        if self.max_document_age < Duration::from_secs(1) {
            return Err(invalid("revocations.max_document_age", "at least 1 s"));
        }
        if self.max_entries == 0 {
            return Err(invalid("revocations.max_entries", "must be positive"));
        }
        Ok(())
    }
}

/// The hashes a token is looked up by: its `jti`, `sid` and `sub`, each as
/// `SHA-256("<kind>:<value>")`. Computed once per token (kept in the token
/// cache with it), with the last list generation found not to revoke it: a
/// cached token is looked up again only when the list has changed.
#[derive(Debug, Default)]
pub(crate) struct TokenKeys {
    jti: Option<[u8; 32]>,
    sid: Option<[u8; 32]>,
    sub: Option<[u8; 32]>,
    iat: Option<i64>,
    /// The generation of the list last checked clean (0: none). Entries only
    /// expire within a generation, so "not revoked" holds until it changes.
    clean_in: AtomicU64,
}

impl TokenKeys {
    pub(crate) fn of(
        jti: Option<&str>,
        sid: Option<&str>,
        sub: Option<&str>,
        iat: Option<i64>,
    ) -> Self {
        let hash = |kind: &str, value: Option<&str>| {
            value.map(|v| crate::crypto::sha256(&tessera_feed::hash_parts(kind, v)))
        };
        Self {
            jti: hash("jti", jti),
            sid: hash("sid", sid),
            sub: hash("sub", sub),
            iat,
            clean_in: AtomicU64::new(0),
        }
    }
}

/// One entry: until when it holds, and for a user, up to which `iat`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Rule {
    exp: i64,
    iat_before: Option<i64>,
}

/// The keys are SHA-256 outputs: their first eight bytes are already a
/// uniform hash, so hashing them again would be wasted work on every request.
#[derive(Default)]
struct PrefixHasher(u64);

impl Hasher for PrefixHasher {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        // `[u8; 32]` hashes as a length then the bytes: keep the bytes' prefix.
        if let Some(prefix) = bytes.get(..8) {
            let mut word = [0; 8];
            word.copy_from_slice(prefix);
            self.0 = u64::from_le_bytes(word);
        }
    }
    fn write_usize(&mut self, _: usize) {}
}

type Map = HashMap<[u8; 32], Rule, BuildHasherDefault<PrefixHasher>>;

/// The list as last received.
#[derive(Default)]
struct List {
    /// Unique per list installed (from 1); 0 for the empty start.
    generation: u64,
    map: Map,
    /// The earliest `exp` in the map (when a prune is next worth doing).
    next_expiry: Option<i64>,
}

impl List {
    fn from_map(map: Map, generation: u64) -> Self {
        let next_expiry = map.values().map(|r| r.exp).min();
        Self {
            generation,
            map,
            next_expiry,
        }
    }

    /// The entries not yet expired at `now`.
    fn live(&self, now: i64) -> impl Iterator<Item = ([u8; 32], Rule)> + '_ {
        self.map
            .iter()
            .filter(move |(_, rule)| rule.exp > now)
            .map(|(k, v)| (*k, *v))
    }

    fn revokes(&self, keys: &TokenKeys, now: i64) -> bool {
        let live = |hash: &Option<[u8; 32]>| {
            hash.and_then(|h| self.map.get(&h))
                .filter(|rule| rule.exp > now)
        };
        if live(&keys.jti).is_some() || live(&keys.sid).is_some() {
            return true;
        }
        // A user entry revokes what was issued up to its time; a token
        // without `iat` cannot show it came after, so it is revoked too.
        live(&keys.sub).is_some_and(|rule| match (rule.iat_before, keys.iat) {
            (Some(before), Some(iat)) => iat <= before,
            _ => true,
        })
    }
}

/// A feed document's payload, as the contract shapes it.
pub(crate) type Document = tessera_feed::Document<String, Vec<tessera_feed::Entry>>;

/// What [`RevocationList::health`] reports.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[non_exhaustive]
pub struct RevocationHealth {
    /// The feed has answered at least once.
    pub loaded: bool,
    /// Entries held now.
    pub entries: usize,
    /// The last answered poll (Unix seconds).
    pub last_success_at: Option<i64>,
    /// Seconds since the feed last answered (`200` or `304`): what outage
    /// alerts should watch.
    pub unanswered_secs: Option<i64>,
    /// How old the newest document applied is: now less its `iat`, in
    /// seconds. A `304` keeps the document held, so on a quiet list this
    /// grows between changes; it says how old the list's last change is as
    /// this verifier saw it, not whether the feed answers.
    pub lag_secs: Option<i64>,
    /// The last failure since then, if any.
    pub last_error: Option<String>,
    /// Unanswered for longer than the configured bound.
    pub outage: bool,
    /// What happens during an outage.
    pub on_outage: OutagePolicy,
    /// Tokens are being refused because of the outage.
    pub failing_closed: bool,
}

/// Why a feed document was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub(crate) enum FeedProblem {
    #[error("revocation feed: {0}")]
    Invalid(String),
}

/// The revocation list a verifier holds, and where its feed stands.
#[derive(Debug)]
pub(crate) struct RevocationList {
    pub(crate) config: RevocationConfig,
    list: ArcSwap<List>,
    /// The list the current one replaced, kept to be refilled as the next
    /// (see [`RevocationList::empty_map`]).
    retired: Mutex<Option<Arc<List>>>,
    /// The last list generation handed out.
    generations: AtomicU64,
    /// When the feed last answered (Unix seconds); `i64::MIN` never.
    last_success: AtomicI64,
    /// The `iat` of the last document applied; `i64::MIN` none.
    last_iat: AtomicI64,
    /// When following began: an outage is measured from here until the feed
    /// first answers.
    started_at: i64,
    state: Mutex<FeedState>,
}

#[derive(Debug, Default)]
pub(crate) struct FeedState {
    pub(crate) cursor: Option<String>,
    pub(crate) etag: Option<String>,
    last_error: Option<String>,
    /// An outage has been logged (so it is logged once, and its end too).
    outage_logged: bool,
}

impl std::fmt::Debug for List {
    // By hand: the map is large and says nothing useful entry by entry.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("List")
            .field("entries", &self.map.len())
            .finish_non_exhaustive()
    }
}

impl RevocationList {
    pub(crate) fn new(config: RevocationConfig, now: i64) -> Self {
        Self {
            started_at: now,
            config,
            list: ArcSwap::from_pointee(List::default()),
            retired: Mutex::new(None),
            generations: AtomicU64::new(0),
            last_success: AtomicI64::new(i64::MIN),
            last_iat: AtomicI64::new(i64::MIN),
            state: Mutex::new(FeedState::default()),
        }
    }

    /// Refuses a revoked token, or every token while failing closed.
    pub(crate) fn check(&self, keys: &TokenKeys, now: i64) -> Result<(), VerifyError> {
        if self.config.on_outage == OutagePolicy::FailClosed && self.refusing(now) {
            return Err(VerifyError::RevocationsUnavailable);
        }
        let list = self.list.load();
        if list.map.is_empty() || keys.clean_in.load(Ordering::Relaxed) == list.generation {
            return Ok(());
        }
        if list.revokes(keys, now) {
            return Err(VerifyError::Revoked);
        }
        keys.clean_in.store(list.generation, Ordering::Relaxed);
        Ok(())
    }

    /// Installs a new list under a generation of its own.
    fn install(&self, map: Map) {
        let generation = self.generations.fetch_add(1, Ordering::Relaxed) + 1;
        let old = self.list.swap(Arc::new(List::from_map(map, generation)));
        if let Ok(mut retired) = self.retired.lock() {
            *retired = Some(old);
        }
    }

    /// An empty map with room for `want` entries: the retired list's, once
    /// no verification holds it any more (it was replaced a poll ago), else
    /// a new one. Every change to the list builds a whole new map (lookups
    /// stay lock-free), so without this each poll allocated and freed a
    /// table the size of the list, megabytes at tens of thousands of
    /// entries, and glibc's heap, fragmented by that churn, grew by a few
    /// megabytes over a half-hour soak (issue 21).
    fn empty_map(&self, want: usize) -> Map {
        let retired = self.retired.lock().ok().and_then(|mut r| r.take());
        match retired.and_then(|list| Arc::try_unwrap(list).ok()) {
            Some(List { mut map, .. }) => {
                map.clear();
                // After a burst, give the room back rather than keep it.
                if map.capacity() > 4 * want.max(1024) {
                    map.shrink_to(want);
                }
                map.reserve(want);
                map
            }
            None => Map::with_capacity_and_hasher(want, Default::default()),
        }
    }

    /// Unanswered for longer than the bound: since the last answer, or since
    /// following began if there was none.
    fn in_outage(&self, now: i64) -> bool {
        let last = self.last_success.load(Ordering::Relaxed);
        let since = if last == i64::MIN {
            self.started_at
        } else {
            last
        };
        now.saturating_sub(since) > crate::clock::secs(self.config.max_outage)
    }

    /// What fail-closed refuses on: an outage, or no answer yet at all.
    fn refusing(&self, now: i64) -> bool {
        self.last_success.load(Ordering::Relaxed) == i64::MIN || self.in_outage(now)
    }

    /// Where the next poll starts, and the ETag to revalidate with.
    pub(crate) fn position(&self) -> (Option<String>, Option<String>) {
        self.state
            .lock()
            .map(|s| (s.cursor.clone(), s.etag.clone()))
            .unwrap_or_default()
    }

    /// The feed answered `304`: nothing new.
    pub(crate) fn unchanged(&self, now: i64) {
        self.prune(now);
        self.succeeded(now);
    }

    /// Applies a verified document (its `iss` already checked).
    pub(crate) fn apply(
        &self,
        document: Document,
        etag: Option<String>,
        now: i64,
    ) -> Result<(), FeedProblem> {
        let max_age = crate::clock::secs(self.config.max_document_age);
        if document.iat < now.saturating_sub(max_age) || document.iat > now.saturating_add(60) {
            return Err(FeedProblem::Invalid(format!(
                "document signed at {} is not recent (now {now}; revocations.max_document_age)",
                document.iat
            )));
        }
        if document.iat < self.last_iat.load(Ordering::Relaxed) {
            return Err(FeedProblem::Invalid(
                "document older than the last one accepted (a replay?)".to_owned(),
            ));
        }
        let mut added = Vec::with_capacity(document.entries.len());
        for entry in &document.entries {
            if entry.known_kind().is_none() {
                // A kind from a newer issuer: skipped, not fatal.
                continue;
            }
            let hash = decode_hash(&entry.hash).ok_or_else(|| {
                FeedProblem::Invalid("an entry's hash is not 32 bytes of base64url".to_owned())
            })?;
            if entry.exp > now {
                added.push((
                    hash,
                    Rule {
                        exp: entry.exp,
                        iat_before: entry.iat_before,
                    },
                ));
            }
        }
        let current = self.list.load();
        let changed = document.snapshot || !document.entries.is_empty();
        if changed || current.next_expiry.is_some_and(|t| t <= now) {
            let kept = if document.snapshot {
                0
            } else {
                current.map.len()
            };
            let mut map = self.empty_map(kept + added.len());
            if !document.snapshot {
                map.extend(current.live(now));
            }
            map.extend(added);
            if map.len() > self.config.max_entries {
                return Err(FeedProblem::Invalid(format!(
                    "{} entries, more than the {} allowed (revocations.max_entries)",
                    map.len(),
                    self.config.max_entries
                )));
            }
            drop(current);
            self.install(map);
        }
        if let Ok(mut state) = self.state.lock() {
            state.cursor = Some(document.cursor);
            state.etag = etag;
        }
        self.last_iat.fetch_max(document.iat, Ordering::Relaxed);
        self.succeeded(now);
        Ok(())
    }

    /// Drops expired entries, if any are due.
    fn prune(&self, now: i64) {
        let current = self.list.load();
        if current.next_expiry.is_some_and(|t| t <= now) {
            let mut map = self.empty_map(current.map.len());
            map.extend(current.live(now));
            self.install(map);
        }
    }

    fn succeeded(&self, now: i64) {
        self.last_success.store(now, Ordering::Relaxed);
        if let Ok(mut state) = self.state.lock() {
            state.last_error = None;
            if state.outage_logged {
                tracing::warn!("revocation feed answering again");
                state.outage_logged = false;
            }
        }
    }

    /// A poll failed: recorded, and logged once when it becomes an outage.
    pub(crate) fn failed(&self, problem: String, now: i64) {
        tracing::debug!(error = %problem, "revocation feed poll failed");
        let outage = self.in_outage(now);
        if let Ok(mut state) = self.state.lock() {
            if outage && !state.outage_logged {
                state.outage_logged = true;
                match self.config.on_outage {
                    OutagePolicy::KeepGoing => tracing::warn!(
                        error = %problem,
                        "revocation feed unanswered beyond its bound: keeping going with the \
                         last list (revocations made meanwhile are not seen)"
                    ),
                    OutagePolicy::FailClosed => tracing::error!(
                        error = %problem,
                        "revocation feed unanswered beyond its bound: refusing every token"
                    ),
                }
            }
            state.last_error = Some(problem);
        }
    }

    pub(crate) fn health(&self, now: i64) -> RevocationHealth {
        let last = self.last_success.load(Ordering::Relaxed);
        let outage = self.in_outage(now);
        RevocationHealth {
            loaded: last != i64::MIN,
            entries: self.list.load().map.len(),
            last_success_at: (last != i64::MIN).then_some(last),
            unanswered_secs: (last != i64::MIN).then(|| now.saturating_sub(last)),
            lag_secs: {
                let iat = self.last_iat.load(Ordering::Relaxed);
                (iat != i64::MIN).then(|| now.saturating_sub(iat))
            },
            last_error: self.state.lock().ok().and_then(|s| s.last_error.clone()),
            outage,
            on_outage: self.config.on_outage,
            failing_closed: self.config.on_outage == OutagePolicy::FailClosed && self.refusing(now),
        }
    }
}

fn decode_hash(text: &str) -> Option<[u8; 32]> {
    let mut out = [0u8; 32];
    let n = crate::b64::decode_into(text.as_bytes(), &mut out)?;
    (n == 32).then_some(out)
}

#[cfg(test)]
mod tests;
