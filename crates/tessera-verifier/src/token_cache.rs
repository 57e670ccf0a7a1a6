//! The verified-token cache: a token seen before skips the RSA verification,
//! never the claim-time checks.
//!
//! Entries are found by a keyed SipHash (`RandomState`, so unpredictable to
//! clients) of the token's last 43 characters, which for a genuine token are
//! signature bytes; an entry is used only if its whole stored token equals the
//! presented one, byte for byte. So no collision, chosen or not, can make one
//! token pass for another, and only tokens that verified are ever stored.
//!
//! Bounded in entries and in bytes, per shard; expired entries go first when a
//! shard is full, and at least every [`SWEEP_EVERY_SECS`] in any case, so the
//! cache holds about the tokens still live, not the last `max_entries` ever
//! seen (the soak of issue 21 saw a resource server's memory grow for the
//! quarter hour its cache took to fill with expired tokens); entries whose
//! key left the JWKS are dropped on lookup.

use std::collections::HashMap;
use std::hash::BuildHasher as _;
use std::sync::{Arc, Mutex};

use crate::claims::{AccessClaims, Registered};

const SHARDS: usize = 8;
/// A shard drops its expired entries at the first insert this long after it
/// last did (a pass over one shard, an eighth of the cache).
const SWEEP_EVERY_SECS: i64 = 60;
/// How much of a token's end is hashed.
const TAIL: usize = 43;

/// One verified token, as it is kept.
#[derive(Debug, Clone)]
pub(crate) struct Entry {
    pub(crate) token: Arc<str>,
    pub(crate) kid: Arc<str>,
    pub(crate) registered: Arc<Registered>,
    /// The payload as text, for claims types other than [`AccessClaims`].
    pub(crate) payload: Arc<str>,
    /// The access claims, or why they did not parse.
    pub(crate) access: Result<Arc<AccessClaims>, crate::VerifyError>,
    /// Its revocation-list hashes (when the verifier follows a feed).
    pub(crate) revocation: Option<Arc<crate::revocation::TokenKeys>>,
}

impl Entry {
    fn bytes(&self) -> usize {
        // Token and payload dominate; the rest is a rough, fixed allowance.
        self.token.len() + self.payload.len() + self.kid.len() + 512
    }
}

#[derive(Debug, Default)]
struct Shard {
    map: HashMap<u64, Vec<Entry>>,
    entries: usize,
    bytes: usize,
    /// The `expired_before` of the last sweep (0: none yet).
    swept_at: i64,
}

impl Shard {
    fn remove_where(&mut self, mut drop_it: impl FnMut(&Entry) -> bool) {
        let (mut entries, mut bytes) = (self.entries, self.bytes);
        self.map.retain(|_, bucket| {
            bucket.retain(|e| {
                let gone = drop_it(e);
                if gone {
                    entries -= 1;
                    bytes = bytes.saturating_sub(e.bytes());
                }
                !gone
            });
            !bucket.is_empty()
        });
        (self.entries, self.bytes) = (entries, bytes);
    }
}

/// See the module documentation.
#[derive(Debug)]
pub(crate) struct TokenCache {
    hasher: std::collections::hash_map::RandomState,
    shards: [Mutex<Shard>; SHARDS],
    max_entries: usize,
    max_bytes: usize,
}

impl TokenCache {
    /// A cache of at most `max_entries` tokens and about `max_bytes` bytes.
    pub(crate) fn new(max_entries: usize, max_bytes: usize) -> Self {
        Self {
            hasher: std::collections::hash_map::RandomState::new(),
            shards: Default::default(),
            max_entries: max_entries.div_ceil(SHARDS).max(1),
            max_bytes: max_bytes.div_ceil(SHARDS).max(1),
        }
    }

    /// The lookup key of a token.
    pub(crate) fn key(&self, token: &str) -> u64 {
        let tail = &token.as_bytes()[token.len().saturating_sub(TAIL)..];
        self.hasher.hash_one(tail)
    }

    fn shard(&self, key: u64) -> &Mutex<Shard> {
        &self.shards[(key >> 59) as usize % SHARDS]
    }

    /// The entry for exactly this token.
    pub(crate) fn get(&self, key: u64, token: &str) -> Option<Entry> {
        let shard = self.shard(key).lock().ok()?;
        shard
            .map
            .get(&key)?
            .iter()
            .find(|e| *e.token == *token)
            .cloned()
    }

    pub(crate) fn remove(&self, key: u64, token: &str) {
        if let Ok(mut shard) = self.shard(key).lock() {
            let Some(bucket) = shard.map.get_mut(&key) else {
                return;
            };
            let before = bucket.len();
            let mut freed = 0;
            bucket.retain(|e| {
                let gone = *e.token == *token;
                if gone {
                    freed += e.bytes();
                }
                !gone
            });
            let removed = before - bucket.len();
            if bucket.is_empty() {
                shard.map.remove(&key);
            }
            shard.entries -= removed;
            shard.bytes = shard.bytes.saturating_sub(freed);
        }
    }

    /// Keeps `entry`; first drops what expired before `expired_before`, then, if
    /// still full, arbitrary entries (the map's order is random).
    pub(crate) fn insert(&self, key: u64, entry: Entry, expired_before: i64) {
        let size = entry.bytes();
        if size > self.max_bytes {
            return;
        }
        let Ok(mut shard) = self.shard(key).lock() else {
            return;
        };
        let full = |s: &Shard| s.entries >= self.max_entries || s.bytes + size > self.max_bytes;
        if full(&shard) || expired_before.saturating_sub(shard.swept_at) >= SWEEP_EVERY_SECS {
            shard.remove_where(|e| e.registered.exp.is_some_and(|exp| exp < expired_before));
            shard.swept_at = expired_before;
        }
        while full(&shard) {
            let Some(victim) = shard.map.keys().next().copied() else {
                break;
            };
            if let Some(bucket) = shard.map.remove(&victim) {
                shard.entries -= bucket.len();
                let freed: usize = bucket.iter().map(Entry::bytes).sum();
                shard.bytes = shard.bytes.saturating_sub(freed);
            }
        }
        let bucket = shard.map.entry(key).or_default();
        if bucket.iter().any(|e| e.token == entry.token) {
            return;
        }
        bucket.push(entry);
        shard.entries += 1;
        shard.bytes += size;
    }

    /// Entries held, across shards.
    pub(crate) fn len(&self) -> usize {
        self.shards
            .iter()
            .map(|s| s.lock().map_or(0, |s| s.entries))
            .sum()
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn entry(token: &str, exp: i64, payload: usize) -> Entry {
        Entry {
            token: Arc::from(token),
            kid: Arc::from("k"),
            registered: Arc::new(Registered {
                iss: None,
                sub: None,
                aud: Vec::new(),
                exp: Some(exp),
                nbf: None,
                iat: None,
                jti: None,
            }),
            payload: Arc::from("x".repeat(payload)),
            access: Err(crate::VerifyError::InvalidClaim("test")),
            revocation: None,
        }
    }

    fn token(i: u32) -> String {
        format!("header.payload.signature-{i:040}")
    }

    fn put(cache: &TokenCache, t: &str, exp: i64, payload: usize, expired_before: i64) {
        cache.insert(cache.key(t), entry(t, exp, payload), expired_before);
    }

    #[test]
    fn the_cache_stays_within_its_entry_bound() {
        let cache = TokenCache::new(64, 1 << 30);
        for i in 0..10_000 {
            put(&cache, &token(i), 1_000, 10, 0);
        }
        assert!(cache.len() <= 64, "{}", cache.len());
        assert!(cache.len() >= 32, "{}", cache.len());
    }

    #[test]
    fn the_cache_stays_within_its_byte_bound() {
        let cache = TokenCache::new(1_000_000, 8 * 64 * 1024);
        for i in 0..2_000 {
            put(&cache, &token(i), 1_000, 4096, 0);
        }
        let bytes: usize = cache.shards.iter().map(|s| s.lock().unwrap().bytes).sum();
        assert!(bytes <= 8 * 64 * 1024, "{bytes}");
        // An entry bigger than a shard is never kept.
        let big = token(99_999);
        put(&cache, &big, 1_000, 100 * 1024, 0);
        assert!(cache.get(cache.key(&big), &big).is_none());
    }

    #[test]
    fn expired_entries_go_first_when_a_shard_is_full() {
        let cache = TokenCache::new(8, 1 << 30); // one entry per shard
        let old = token(1);
        let shard = |t: &str| (cache.key(t) >> 59) as usize % SHARDS;
        let new = (2..).map(token).find(|t| shard(t) == shard(&old)).unwrap();
        put(&cache, &old, 100, 10, 0);
        put(&cache, &new, 10_000, 10, 200);
        assert!(cache.get(cache.key(&old), &old).is_none());
        assert!(cache.get(cache.key(&new), &new).is_some());
    }

    #[test]
    fn expired_entries_leave_within_a_sweep_period_though_nothing_is_full() {
        let cache = TokenCache::new(10_000, 1 << 30);
        let t0 = 1_000_000;
        for i in 0..400 {
            put(&cache, &token(i), t0 + 10, 10, t0);
        }
        assert_eq!(cache.len(), 400);
        // Within the period, nothing is swept: the expired stay.
        for i in 400..800 {
            put(&cache, &token(i), t0 + 1_000, 10, t0 + 30);
        }
        assert_eq!(cache.len(), 800);
        // A period after each shard's last sweep, its next insert drops what
        // expired; the live entries stay.
        let later = t0 + SWEEP_EVERY_SECS;
        for i in 800..1_200 {
            put(&cache, &token(i), later + 1_000, 10, later);
        }
        assert_eq!(cache.len(), 800);
        assert!(cache.get(cache.key(&token(1)), &token(1)).is_none());
        assert!(cache.get(cache.key(&token(401)), &token(401)).is_some());
    }

    #[test]
    fn only_the_exact_token_is_found() {
        let cache = TokenCache::new(100, 1 << 20);
        let genuine = token(7);
        put(&cache, &genuine, 1_000, 10, 0);
        // Same tail (same hash bucket), different token: not a hit.
        let forged = format!("forged.{}", &genuine["header.".len()..]);
        assert_eq!(cache.key(&forged), cache.key(&genuine));
        assert!(cache.get(cache.key(&forged), &forged).is_none());
        assert!(cache.get(cache.key(&genuine), &genuine).is_some());
        cache.remove(cache.key(&genuine), &genuine);
        assert!(cache.get(cache.key(&genuine), &genuine).is_none());
        assert_eq!(cache.len(), 0);
    }
}
