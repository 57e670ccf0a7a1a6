//! Fetching the JWKS: revalidation with the ETag, single flight, and the
//! discovery of its URL from the issuer's metadata.

use std::sync::Arc;

use hyper::Uri;

use super::{Inner, KeysState, Source, warn_if_insecure};
use crate::fetch::{self, FetchError};
use crate::jwks::KeySet;
use crate::metrics::Metrics;

impl Inner {
    /// Fetches the JWKS (revalidating with the ETag) and installs it. With
    /// `observed`, does nothing if another fetch installed a newer set while
    /// this one waited for the lock.
    pub(super) async fn refresh(&self, observed: Option<u64>) -> Result<(), FetchError> {
        let _flight = self.fetch_lock.lock().await;
        let current = self.keys.load_full();
        if let Some(generation) = observed
            && current.as_ref().is_some_and(|s| s.generation != generation)
        {
            return Ok(());
        }
        let result = self.fetch_and_install(current.as_deref()).await;
        let now = self.clock.now();
        if let Ok(mut health) = self.health.lock() {
            match &result {
                Ok(()) => {
                    health.last_success_at = Some(now);
                    health.last_error = None;
                }
                Err(e) => {
                    health.last_error = Some(e.to_string());
                    health.last_error_at = Some(now);
                }
            }
        }
        if let Err(e) = &result {
            Metrics::bump(&self.metrics.jwks_fetch_errors);
            let serving = current.as_ref().map_or(0, |s| s.keys.len());
            tracing::warn!(error = %e, serving_keys = serving, "JWKS refresh failed; keeping the last good key set");
        }
        result
    }

    async fn fetch_and_install(&self, current: Option<&KeysState>) -> Result<(), FetchError> {
        let url = self.jwks_url().await?;
        let etag = current.and_then(|s| s.etag.as_deref());
        Metrics::bump(&self.metrics.jwks_fetches);
        let fetched = fetch::get(&self.connector, &url, etag, self.timing.fetch_timeout).await?;
        let now = self.clock.now();
        let lifetime = self.lifetime(fetched.max_age);
        let generation = current.map_or(1, |s| s.generation + 1);
        let state = match (fetched.status.as_u16(), current) {
            (304, Some(current)) => {
                Metrics::bump(&self.metrics.jwks_not_modified);
                KeysState {
                    keys: Arc::clone(&current.keys),
                    etag: fetched.etag.or_else(|| current.etag.clone()),
                    fresh_until: now.saturating_add(lifetime),
                    refresh_at: now.saturating_add(lifetime - lifetime / 5),
                    generation,
                }
            }
            (200, _) => {
                let algs: Vec<&str> = self.algorithms.iter().map(String::as_str).collect();
                let (keys, skipped) = KeySet::from_jwks_json(&fetched.body, &algs)
                    .map_err(|e| FetchError::Invalid(format!("JWKS from {url} refused: {e}")))?;
                for skip in &skipped {
                    tracing::warn!(kid = ?skip.kid, reason = %skip.reason, "JWKS key skipped");
                }
                if current.is_none_or(|c| {
                    let mut old: Vec<&str> = c.keys.kids().collect();
                    let mut new: Vec<&str> = keys.kids().collect();
                    old.sort_unstable();
                    new.sort_unstable();
                    old != new
                }) {
                    tracing::info!(keys = keys.len(), "JWKS loaded");
                }
                if let Ok(mut misses) = self.misses.lock() {
                    misses.clear();
                }
                KeysState {
                    keys: Arc::new(keys),
                    etag: fetched.etag,
                    fresh_until: now.saturating_add(lifetime),
                    refresh_at: now.saturating_add(lifetime - lifetime / 5),
                    generation,
                }
            }
            (status, _) => {
                return Err(FetchError::Status {
                    url: url.to_string(),
                    status,
                });
            }
        };
        self.keys.store(Some(Arc::new(state)));
        Ok(())
    }

    /// The JWKS URL, discovering it from the issuer's metadata the first time.
    async fn jwks_url(&self) -> Result<Uri, FetchError> {
        let Source::Fetch { jwks_url } = &self.source else {
            return Err(FetchError::Invalid(
                "static keys are never fetched".to_owned(),
            ));
        };
        if let Some(url) = jwks_url.lock().ok().and_then(|u| u.clone()) {
            return Ok(url);
        }
        let issuer = &self.validation.issuer;
        let mut last = None;
        for path in [
            "/.well-known/oauth-authorization-server",
            "/.well-known/openid-configuration",
        ] {
            let meta_url = fetch::parse_url(&format!("{}{path}", issuer.trim_end_matches('/')))?;
            let fetched =
                fetch::get(&self.connector, &meta_url, None, self.timing.fetch_timeout).await?;
            if fetched.status.as_u16() != 200 {
                last = Some(FetchError::Status {
                    url: meta_url.to_string(),
                    status: fetched.status.as_u16(),
                });
                continue;
            }
            let meta: serde_json::Value = serde_json::from_slice(&fetched.body)
                .map_err(|_| FetchError::Invalid(format!("{meta_url}: not JSON")))?;
            // RFC 8414 §3.3: the metadata's issuer must be the one configured.
            if meta.get("issuer").and_then(|v| v.as_str()) != Some(issuer.as_str()) {
                return Err(FetchError::Invalid(format!(
                    "{meta_url}: `issuer` does not match the configured {issuer:?}"
                )));
            }
            let jwks_uri = meta
                .get("jwks_uri")
                .and_then(|v| v.as_str())
                .ok_or_else(|| FetchError::Invalid(format!("{meta_url}: no jwks_uri")))?;
            let url = fetch::parse_url(jwks_uri)?;
            warn_if_insecure(&url);
            if let Ok(mut slot) = jwks_url.lock() {
                *slot = Some(url.clone());
            }
            return Ok(url);
        }
        Err(last.unwrap_or_else(|| FetchError::Invalid("no metadata".to_owned())))
    }
}
