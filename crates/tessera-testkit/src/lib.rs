//! What Tessera's test suites share, so each helper exists once:
//!
//! - [`oneshot`]: a request through a router (`tower::ServiceExt::oneshot`)
//!   and its [`oneshot::Reply`];
//! - [`jwks`]: a JWKS and metadata server standing in for an issuer;
//! - [`jws`]: a compact token's header and claims, read without checking;
//! - [`process`]: a command that must succeed, and what it printed;
//! - [`pg`] (feature `pg`): scratch PostgreSQL databases, and the database a
//!   test of the issuer uses on the backend the run chose;
//! - [`stack`] (feature `stack`): issuers in this process or as a real
//!   process, the demo resource server, and the calls a user makes to them.
//!
//! Test support: it fails loudly, at once (panics are its error handling),
//! and is never published.

#![allow(clippy::panic, clippy::unwrap_used, clippy::expect_used)]

pub mod jwks;
pub mod jws;
pub mod oneshot;
#[cfg(feature = "pg")]
pub mod pg;
pub mod process;
pub mod prometheus;
#[cfg(feature = "stack")]
pub mod stack;
