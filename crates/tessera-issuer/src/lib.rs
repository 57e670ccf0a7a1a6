//! Tessera's issuer: the HTTP service that publishes the keyring's public keys
//! (and, next, logs users in and signs their tokens), and the configuration it
//! shares with the operator CLI.
//!
//! - [`config`]: file, environment and flags, validated once.
//! - [`keys`]: the live keyring, reloaded without a restart when the CLI rotates.
//! - [`service`]: the rules: login, refresh, revocation, accounts, clients.
//! - [`http`]: routes, handlers, and the mapping of errors to responses.
//! - [`db`]: the data layer, one file per table group.
//! - [`metrics`]: what the service counts for Prometheus.
//! - [`serve`]: start-up and graceful shutdown.

pub mod audit;
pub mod clients;
pub mod config;
pub mod db;
pub mod feed;
pub mod http;
pub mod keys;
pub mod metrics;
pub mod passwords;
pub mod proxies;
pub mod revocation;
pub mod serve;
pub mod service;
pub mod throttle;
pub mod tokens;
pub mod validate;

/// Seconds since the Unix epoch by `clock` (0 before 1970).
pub fn unix_now(clock: &dyn tessera_keyring::Clock) -> i64 {
    clock
        .now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(secs)
        .unwrap_or(0)
}

/// Whole seconds of `d` as the `i64` the database and the claims use
/// (`i64::MAX` for a duration beyond it).
pub fn secs(d: std::time::Duration) -> i64 {
    i64::try_from(d.as_secs()).unwrap_or(i64::MAX)
}
