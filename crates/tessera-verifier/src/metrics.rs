//! Counters a resource server can read and export: plain atomics, no registry.

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

use crate::error::REASONS;

/// Live counters, updated by the verifier.
#[derive(Debug, Default)]
pub(crate) struct Metrics {
    pub(crate) verified: AtomicU64,
    pub(crate) failed: [AtomicU64; REASONS.len()],
    pub(crate) token_cache_hits: AtomicU64,
    pub(crate) jwks_fetches: AtomicU64,
    pub(crate) jwks_not_modified: AtomicU64,
    pub(crate) jwks_fetch_errors: AtomicU64,
    pub(crate) unknown_kid_refetches: AtomicU64,
    pub(crate) stale_verifications: AtomicU64,
    pub(crate) revocation_polls: AtomicU64,
    pub(crate) revocation_poll_errors: AtomicU64,
}

/// A copy of the counters at one moment.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
#[non_exhaustive]
pub struct MetricsSnapshot {
    /// Tokens that verified.
    pub verified: u64,
    /// Tokens refused, by [`crate::VerifyError::reason`] (every reason listed).
    pub failed: Vec<(&'static str, u64)>,
    /// Verifications answered from the verified-token cache (no RSA).
    pub token_cache_hits: u64,
    /// JWKS requests sent to the issuer (every reason: startup, refresh,
    /// unknown `kid`).
    pub jwks_fetches: u64,
    /// Of those, answered `304 Not Modified`.
    pub jwks_not_modified: u64,
    /// Of those, failed (network, status, unusable document).
    pub jwks_fetch_errors: u64,
    /// Fetches caused by a token with an unknown `kid`.
    pub unknown_kid_refetches: u64,
    /// Verifications served with a key set past its `max-age` (stale-if-error).
    pub stale_verifications: u64,
    /// Revocation-feed polls (every outcome).
    pub revocation_polls: u64,
    /// Of those, failed (network, status, unverifiable document).
    pub revocation_poll_errors: u64,
    /// Tokens held in the verified-token cache now.
    pub token_cache_entries: usize,
}

impl MetricsSnapshot {
    /// Adds `other`'s counts to these (a verifier set's members).
    pub fn add(&mut self, other: &Self) {
        self.verified += other.verified;
        for (reason, n) in &other.failed {
            match self.failed.iter_mut().find(|(r, _)| r == reason) {
                Some((_, mine)) => *mine += n,
                None => self.failed.push((reason, *n)),
            }
        }
        self.token_cache_hits += other.token_cache_hits;
        self.jwks_fetches += other.jwks_fetches;
        self.jwks_not_modified += other.jwks_not_modified;
        self.jwks_fetch_errors += other.jwks_fetch_errors;
        self.unknown_kid_refetches += other.unknown_kid_refetches;
        self.stale_verifications += other.stale_verifications;
        self.revocation_polls += other.revocation_polls;
        self.revocation_poll_errors += other.revocation_poll_errors;
        self.token_cache_entries += other.token_cache_entries;
    }

    /// How many tokens were refused for `reason`.
    pub fn failed(&self, reason: &str) -> u64 {
        self.failed
            .iter()
            .find(|(r, _)| *r == reason)
            .map_or(0, |(_, n)| *n)
    }
}

impl Metrics {
    pub(crate) fn snapshot(&self, token_cache_entries: usize) -> MetricsSnapshot {
        MetricsSnapshot {
            verified: self.verified.load(Relaxed),
            failed: REASONS
                .iter()
                .zip(&self.failed)
                .map(|(r, n)| (*r, n.load(Relaxed)))
                .collect(),
            token_cache_hits: self.token_cache_hits.load(Relaxed),
            jwks_fetches: self.jwks_fetches.load(Relaxed),
            jwks_not_modified: self.jwks_not_modified.load(Relaxed),
            jwks_fetch_errors: self.jwks_fetch_errors.load(Relaxed),
            unknown_kid_refetches: self.unknown_kid_refetches.load(Relaxed),
            stale_verifications: self.stale_verifications.load(Relaxed),
            revocation_polls: self.revocation_polls.load(Relaxed),
            revocation_poll_errors: self.revocation_poll_errors.load(Relaxed),
            token_cache_entries,
        }
    }

    pub(crate) fn bump(counter: &AtomicU64) {
        counter.fetch_add(1, Relaxed);
    }
}
