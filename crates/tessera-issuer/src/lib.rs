//! Tessera's issuer: the HTTP service that publishes the keyring's public keys
//! (and, next, logs users in and signs their tokens), and the configuration it
//! shares with the operator CLI.
//!
//! - [`config`]: file, environment and flags, validated once.
//! - [`keys`]: the live keyring, reloaded without a restart when the CLI rotates.
//! - [`http`]: routes and the mapping of errors to responses.
//! - [`serve`]: start-up and graceful shutdown.

pub mod config;
pub mod http;
pub mod keys;
pub mod serve;
