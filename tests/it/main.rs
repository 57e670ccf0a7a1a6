//! Tessera's cross-crate and end-to-end tests, one binary for all of them
//! (each module was a test file of its own). Their own helpers are in
//! `support`; what every suite shares is `tessera-testkit`'s.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod browser_sign_in;
mod cookie_sessions;
mod interop_node;
mod interop_python;
mod interop_rust;
mod issuer_outage;
mod issuer_to_resource_server;
mod jsonwebtoken_bridge;
mod keyring_to_verifier;
mod readme;
mod support;
mod testkit;
