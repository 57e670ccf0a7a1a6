//! The verifier's integration tests, one binary for all of them (each module
//! was a test file of its own); `common` holds their shared helpers. Modules
//! that need a feature (`axum`, `tls`) compile only with it.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

mod algorithms;
mod claims_properties;

mod extractors;
mod https;
mod jwks_cache;
mod reject;
mod vectors;
mod verifier_set;
