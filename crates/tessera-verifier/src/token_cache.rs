//! The verified-token cache: a token seen before skips the RSA verification,
//! never the claim-time checks.
//!
//! Keyed by SHA-256 of the whole token. Bounded in entries and in bytes, per
//! shard; entries are dropped once expired (on insert), and ignored and
//! dropped when their key has left the JWKS (on lookup).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use crate::claims::Registered;

const SHARDS: usize = 8;

/// One verified token, as it is kept.
#[derive(Debug, Clone)]
pub(crate) struct Entry {
    pub(crate) kid: Arc<str>,
    pub(crate) registered: Arc<Registered>,
    pub(crate) payload: Arc<[u8]>,
}

impl Entry {
    fn bytes(&self) -> usize {
        // The payload dominates; the rest is a rough, fixed allowance.
        self.payload.len() + self.kid.len() + 256
    }
}

#[derive(Debug, Default)]
struct Shard {
    map: HashMap<[u8; 32], Entry>,
    bytes: usize,
}

/// See the module documentation.
#[derive(Debug)]
pub(crate) struct TokenCache {
    shards: [Mutex<Shard>; SHARDS],
    max_entries: usize,
    max_bytes: usize,
}

impl TokenCache {
    /// A cache of at most `max_entries` tokens and about `max_bytes` bytes.
    pub(crate) fn new(max_entries: usize, max_bytes: usize) -> Self {
        Self {
            shards: Default::default(),
            max_entries: max_entries.div_ceil(SHARDS).max(1),
            max_bytes: max_bytes.div_ceil(SHARDS).max(1),
        }
    }

    fn shard(&self, key: &[u8; 32]) -> &Mutex<Shard> {
        &self.shards[usize::from(key[0]) % SHARDS]
    }

    pub(crate) fn get(&self, key: &[u8; 32]) -> Option<Entry> {
        let shard = self.shard(key).lock().ok()?;
        shard.map.get(key).cloned()
    }

    pub(crate) fn remove(&self, key: &[u8; 32]) {
        if let Ok(mut shard) = self.shard(key).lock()
            && let Some(old) = shard.map.remove(key)
        {
            shard.bytes = shard.bytes.saturating_sub(old.bytes());
        }
    }

    /// Keeps `entry`; first drops what expired before `expired_before`, then, if
    /// still full, arbitrary entries (the map's order is random).
    pub(crate) fn insert(&self, key: [u8; 32], entry: Entry, expired_before: i64) {
        let size = entry.bytes();
        if size > self.max_bytes {
            return;
        }
        let Ok(mut shard) = self.shard(&key).lock() else {
            return;
        };
        let full = |s: &Shard| s.map.len() >= self.max_entries || s.bytes + size > self.max_bytes;
        if full(&shard) {
            let before = shard.map.len();
            shard
                .map
                .retain(|_, e| e.registered.exp.is_none_or(|exp| exp >= expired_before));
            if shard.map.len() != before {
                shard.bytes = shard.map.values().map(Entry::bytes).sum();
            }
        }
        while full(&shard) {
            let Some(victim) = shard.map.keys().next().copied() else {
                break;
            };
            if let Some(old) = shard.map.remove(&victim) {
                shard.bytes = shard.bytes.saturating_sub(old.bytes());
            }
        }
        shard.bytes += size;
        if let Some(old) = shard.map.insert(key, entry) {
            shard.bytes = shard.bytes.saturating_sub(old.bytes());
        }
    }

    /// Entries held, across shards.
    pub(crate) fn len(&self) -> usize {
        self.shards
            .iter()
            .map(|s| s.lock().map_or(0, |s| s.map.len()))
            .sum()
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn entry(exp: i64, payload: usize) -> Entry {
        Entry {
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
            payload: vec![0u8; payload].into(),
        }
    }

    fn key(i: u32) -> [u8; 32] {
        crate::crypto::sha256(&i.to_be_bytes())
    }

    #[test]
    fn the_cache_stays_within_its_entry_bound() {
        let cache = TokenCache::new(64, 1 << 30);
        for i in 0..10_000 {
            cache.insert(key(i), entry(1_000, 10), 0);
        }
        assert!(cache.len() <= 64, "{}", cache.len());
        assert!(cache.len() >= 32, "{}", cache.len());
    }

    #[test]
    fn the_cache_stays_within_its_byte_bound() {
        let cache = TokenCache::new(1_000_000, 8 * 64 * 1024);
        for i in 0..2_000 {
            cache.insert(key(i), entry(1_000, 4096), 0);
        }
        let bytes: usize = cache.shards.iter().map(|s| s.lock().unwrap().bytes).sum();
        assert!(bytes <= 8 * 64 * 1024, "{bytes}");
        // An entry bigger than a shard is never kept.
        cache.insert(key(99_999), entry(1_000, 100 * 1024), 0);
        assert!(cache.get(&key(99_999)).is_none());
    }

    #[test]
    fn expired_entries_go_first_when_a_shard_is_full() {
        let cache = TokenCache::new(8, 1 << 30); // one entry per shard
        let (old, new) = (
            key(1),
            (2..).map(key).find(|k| k[0] % 8 == key(1)[0] % 8).unwrap(),
        );
        cache.insert(old, entry(100, 10), 0);
        cache.insert(new, entry(10_000, 10), 200);
        assert!(cache.get(&old).is_none());
        assert!(cache.get(&new).is_some());
    }
}
