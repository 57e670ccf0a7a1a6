//! The issuer's integration tests, one binary for all of them: one link of
//! sqlx, axum and aws-lc instead of eleven. Each module is what used to be a
//! test file of its own; `common` holds their shared helpers. The test that
//! installs a global log subscriber lives in `../log.rs`, a binary of its
//! own, so that it captures no other test's logs.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

mod database_keyring;
mod emergency_revoke;
mod http;
mod keys_cli;
mod login;
mod metrics;
mod oauth;
mod postgres_instances;
mod restart_safety;
mod revocation_feed;
mod rotation_under_traffic;
mod sign_in_cli;
mod signing_algorithms;
mod users_cli;
