//! The verifier's metrics for Prometheus (feature `prometheus`): register a
//! [`Collector`] with a `prometheus_client` registry and every scrape reads
//! the verifier's own counters and health, as they are at that moment.
//!
//! Nothing is added to the verification path: the counters are the plain
//! atomics behind [`Verifier::metrics`], read only when scraped. Labels are
//! bounded by construction: a refusal's `reason` is one of
//! [`VerifyError::reason`]'s fixed codes, never a token, a `kid` or a
//! caller's address.
//!
//! ```no_run
//! # fn demo(verifier: tessera_verifier::Verifier) {
//! let mut registry = prometheus_client::registry::Registry::default();
//! registry.register_collector(Box::new(tessera_verifier::prometheus::Collector::new(verifier)));
//! let mut text = String::new();
//! prometheus_client::encoding::prometheus_text::encode(&mut text, &registry).ok();
//! # }
//! ```
//!
//! [`VerifyError::reason`]: crate::VerifyError::reason

use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric as _};
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;

use crate::Verifier;

/// Scrapes one verifier (or a [`crate::VerifierSet`]'s verifier: its
/// members' counters added together, its feeds' worst lag).
#[derive(Debug)]
pub struct Collector {
    verifier: Verifier,
}

impl Collector {
    /// A collector of `verifier`'s metrics.
    pub fn new(verifier: Verifier) -> Self {
        Self { verifier }
    }
}

/// One counter without labels.
fn counter(
    encoder: &mut DescriptorEncoder<'_>,
    name: &str,
    help: &str,
    value: u64,
) -> Result<(), std::fmt::Error> {
    let metric = ConstCounter::new(value);
    let e = encoder.encode_descriptor(name, help, None, metric.metric_type())?;
    metric.encode(e)
}

/// One gauge without labels.
fn gauge(
    encoder: &mut DescriptorEncoder<'_>,
    name: &str,
    help: &str,
    value: i64,
) -> Result<(), std::fmt::Error> {
    let metric = ConstGauge::new(value);
    let e = encoder.encode_descriptor(name, help, None, metric.metric_type())?;
    metric.encode(e)
}

impl prometheus_client::collector::Collector for Collector {
    fn encode(&self, mut encoder: DescriptorEncoder<'_>) -> Result<(), std::fmt::Error> {
        let m = self.verifier.metrics();
        let e = &mut encoder;
        counter(
            e,
            "tessera_verifier_verified",
            "Tokens that verified.",
            m.verified,
        )?;
        {
            let metric = ConstCounter::new(0_u64);
            let mut family = e.encode_descriptor(
                "tessera_verifier_refused",
                "Tokens refused, by reason (VerifyError::reason).",
                None,
                metric.metric_type(),
            )?;
            for (reason, n) in &m.failed {
                let labels = [("reason", *reason)];
                ConstCounter::new(*n).encode(family.encode_family(&labels)?)?;
            }
        }
        counter(
            e,
            "tessera_verifier_token_cache_hits",
            "Verifications answered from the verified-token cache (no signature check).",
            m.token_cache_hits,
        )?;
        gauge(
            e,
            "tessera_verifier_token_cache_entries",
            "Tokens held in the verified-token cache.",
            i64::try_from(m.token_cache_entries).unwrap_or(i64::MAX),
        )?;
        counter(
            e,
            "tessera_verifier_jwks_fetches",
            "JWKS requests sent to the issuer (startup, refresh, unknown kid).",
            m.jwks_fetches,
        )?;
        counter(
            e,
            "tessera_verifier_jwks_not_modified",
            "JWKS requests answered 304 Not Modified.",
            m.jwks_not_modified,
        )?;
        counter(
            e,
            "tessera_verifier_jwks_fetch_errors",
            "JWKS requests that failed (network, status, unusable document).",
            m.jwks_fetch_errors,
        )?;
        counter(
            e,
            "tessera_verifier_unknown_kid_refetches",
            "JWKS fetches caused by a token with an unknown kid.",
            m.unknown_kid_refetches,
        )?;
        counter(
            e,
            "tessera_verifier_stale_verifications",
            "Verifications served with a key set past its max-age (stale-if-error).",
            m.stale_verifications,
        )?;
        let keys = self.verifier.health();
        gauge(
            e,
            "tessera_verifier_keys",
            "Usable verification keys held.",
            i64::try_from(keys.key_count).unwrap_or(i64::MAX),
        )?;
        gauge(
            e,
            "tessera_verifier_keys_usable",
            "1 if tokens can be verified with the keys held, else 0.",
            i64::from(keys.usable),
        )?;
        if let Some(age) = keys.age_secs {
            gauge(
                e,
                "tessera_verifier_jwks_age_seconds",
                "Seconds since the key set was last fetched or revalidated.",
                age,
            )?;
        }
        counter(
            e,
            "tessera_verifier_revocation_polls",
            "Revocation-feed polls (every outcome).",
            m.revocation_polls,
        )?;
        counter(
            e,
            "tessera_verifier_revocation_poll_errors",
            "Revocation-feed polls that failed (network, status, unverifiable document).",
            m.revocation_poll_errors,
        )?;
        let feeds: Vec<_> = match self.verifier.revocations() {
            Some(one) => vec![one],
            None => self
                .verifier
                .members()
                .iter()
                .filter_map(Verifier::revocations)
                .collect(),
        };
        if !feeds.is_empty() {
            let entries: usize = feeds.iter().map(|f| f.entries).sum();
            gauge(
                e,
                "tessera_verifier_revocation_entries",
                "Entries in the revocation list held.",
                i64::try_from(entries).unwrap_or(i64::MAX),
            )?;
            if let Some(lag) = feeds.iter().filter_map(|f| f.lag_secs).max() {
                gauge(
                    e,
                    "tessera_verifier_revocation_feed_lag_seconds",
                    "Now less the iat of the newest feed document applied (the worst feed's; \
                     grows on a quiet list, as 304s keep the document).",
                    lag,
                )?;
            }
            if let Some(quiet) = feeds.iter().filter_map(|f| f.unanswered_secs).max() {
                gauge(
                    e,
                    "tessera_verifier_revocation_feed_unanswered_seconds",
                    "Seconds since the feed last answered a poll, 200 or 304 (the worst feed's).",
                    quiet,
                )?;
            }
            gauge(
                e,
                "tessera_verifier_revocation_outage",
                "1 while a feed has gone unanswered longer than its outage bound.",
                i64::from(feeds.iter().any(|f| f.outage)),
            )?;
            gauge(
                e,
                "tessera_verifier_revocation_failing_closed",
                "1 while tokens are refused because a feed is unanswered (fail_closed).",
                i64::from(feeds.iter().any(|f| f.failing_closed)),
            )?;
        }
        Ok(())
    }
}
