//! The issuer's rules, with no HTTP in them: who may log in, refresh and
//! revoke, and what each of these does to sessions, the revocation list and
//! the audit trail. The HTTP handlers ([`crate::http`]) and the operator CLI
//! both call this layer; nothing else decides these rules.
//!
//! - [`Issuer`] (this file): what a running service holds, and its accessors.
//! - [`login`]: password logins (throttling, Argon2, sessions, signing).
//! - [`refresh`]: refresh-token rotation, replay and reuse.
//! - [`revoke`]: logout, `/revoke`, and [`revoke::Revocations`], the one way
//!   sessions and tokens are revoked (by the service and by operators).
//! - [`client_credentials`]: a confidential client's token for itself.
//! - [`authorize`]: browser sign-in (authorization requests, the SSO
//!   session, consent, codes); [`code`]: redeeming a code, ID tokens,
//!   `/userinfo`.
//! - [`accounts`]: operators' changes to users, with their side effects.
//! - [`clients`]: client authentication; [`registry`]: this instance's copy
//!   of the client registry.
//! - [`introspect`]: what RFC 7662 says about a token.
//! - [`error`]: [`AuthError`], the one error of this layer.

pub mod accounts;
pub mod assertion;
pub mod authorize;
pub mod client_credentials;
pub mod clients;
pub mod code;
pub mod error;
pub mod introspect;
pub mod login;
pub mod refresh;
pub mod registry;
pub mod revoke;

use std::sync::Arc;

use tessera_keyring::Clock;

pub use error::AuthError;

use crate::audit::Folded;
use crate::config::IntrospectionClient;
use crate::db::Db;
use crate::feed::Feed;
use crate::keys::{KeyHandle, KeySnapshot};
use crate::passwords::Hasher;
use crate::throttle::Throttle;
use crate::tokens::TokenSettings;

/// A running issuer: its database, keys, password hasher, throttle, token
/// settings, revocation feed, client registry and clock. Cheap to clone (one
/// `Arc`).
#[derive(Debug, Clone)]
pub struct Issuer {
    inner: Arc<Inner>,
}

/// The parts. The stateful ones (throttle, feed, registry, folded log lines)
/// sit behind their own `Arc`, so a builder applied to an issuer that is
/// already shared copies the parts and keeps sharing that state.
#[derive(Debug, Clone)]
struct Inner {
    db: Db,
    keys: Arc<KeyHandle>,
    hasher: Hasher,
    clock: Arc<dyn Clock>,
    settings: TokenSettings,
    throttle: Arc<Throttle>,
    feed: Arc<Feed>,
    clients: Arc<registry::Registry>,
    throttled_lines: Arc<Folded>,
    /// The same for client authentication.
    client_throttled_lines: Arc<Folded>,
    introspection_clients: Vec<IntrospectionClient>,
    /// What the service counts (exported at `/metrics`).
    metrics: Arc<crate::metrics::Metrics>,
}

impl Issuer {
    /// An issuer with the default login throttle and no legacy
    /// introspection clients.
    pub fn new(
        keys: Arc<KeyHandle>,
        db: Db,
        hasher: Hasher,
        clock: Arc<dyn Clock>,
        settings: TokenSettings,
    ) -> Self {
        Self::build(Inner {
            db,
            keys,
            hasher,
            clock,
            settings,
            throttle: Arc::default(),
            feed: Arc::default(),
            clients: Arc::default(),
            throttled_lines: Arc::default(),
            client_throttled_lines: Arc::default(),
            introspection_clients: Vec::new(),
            metrics: Arc::default(),
        })
    }

    fn build(inner: Inner) -> Self {
        Self {
            inner: Arc::new(inner),
        }
    }

    /// Takes the parts back to change one of them (the builders below). If
    /// the issuer is already shared, the parts are copied: the copy shares
    /// the same throttle, feed and registry; a clone made before keeps the
    /// old value of the part changed.
    fn rebuilt(self, change: impl FnOnce(&mut Inner)) -> Self {
        let mut inner = Arc::unwrap_or_clone(self.inner);
        change(&mut inner);
        Self::build(inner)
    }

    /// The same issuer with other throttling limits (benchmarks flood logins
    /// on purpose; tests of the limits use small ones).
    pub fn with_throttle(self, throttle: Throttle) -> Self {
        self.rebuilt(|inner| inner.throttle = Arc::new(throttle))
    }

    /// The same issuer, with these callers also allowed to use `/introspect`
    /// (the deprecated `[[introspection_clients]]` table).
    pub fn with_introspection_clients(self, clients: Vec<IntrospectionClient>) -> Self {
        self.rebuilt(|inner| inner.introspection_clients = clients)
    }

    /// The live keyring.
    pub fn keys(&self) -> &Arc<KeyHandle> {
        &self.inner.keys
    }

    /// The database.
    pub fn db(&self) -> &Db {
        &self.inner.db
    }

    /// The password hasher.
    pub fn hasher(&self) -> &Hasher {
        &self.inner.hasher
    }

    /// The token settings.
    pub fn settings(&self) -> &TokenSettings {
        &self.inner.settings
    }

    /// The issuer URL (`iss`).
    pub fn issuer_url(&self) -> &str {
        &self.inner.settings.issuer
    }

    /// What the service counts.
    pub fn metrics(&self) -> &crate::metrics::Metrics {
        &self.inner.metrics
    }

    /// The same, shared (for what outlives a borrow of the issuer).
    pub fn metrics_handle(&self) -> Arc<crate::metrics::Metrics> {
        Arc::clone(&self.inner.metrics)
    }

    /// Now, by the injected clock (the keyring's rules take a `SystemTime`).
    pub fn clock_time(&self) -> std::time::SystemTime {
        self.inner.clock.now()
    }

    /// Now, Unix seconds, by the injected clock.
    pub fn now(&self) -> i64 {
        crate::unix_now(self.inner.clock.as_ref())
    }

    /// This instance's revocation feed.
    pub fn feed(&self) -> &Feed {
        &self.inner.feed
    }

    /// The registry changed through this process: the next request reloads
    /// it rather than wait up to [`crate::clients::FRESH_FOR`].
    pub fn clients_changed(&self) {
        self.inner.clients.forget();
    }

    /// The keyring snapshot to sign with.
    pub fn snapshot(&self) -> Result<Arc<KeySnapshot>, AuthError> {
        self.keys().current().ok_or(AuthError::NoKeys)
    }

    /// Answers a poll of the revocation feed (`since`: the poller's cursor).
    pub async fn revocation_feed(
        &self,
        since: Option<&str>,
        if_none_match: impl Fn(&str) -> bool,
    ) -> Result<crate::feed::Answer, crate::feed::FeedError> {
        let snapshot = self
            .snapshot()
            .map_err(|_| crate::feed::FeedError::NoKeys)?;
        self.inner
            .feed
            .answer(
                self.db(),
                snapshot.signer(),
                self.issuer_url(),
                since,
                if_none_match,
                self.now(),
            )
            .await
    }
}
