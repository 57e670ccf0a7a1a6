//! Tessera's keyring: RS256 signing keys on disk, their lifecycle, and the rules
//! that make rotation safe.
//!
//! # Design
//!
//! A keys directory holds one PKCS#8 PEM file per key (`<kid>.pem`, mode 0600)
//! and a `manifest.json` naming every key and its state:
//!
//! ```text
//! pending ──rotate──▶ active ──rotate──▶ retired ──prune (when safe)──▶ gone
//!    │                  │                   │
//!    └──────────────────┴──── revoke ───────┴──▶ revoked ──prune──▶ gone
//! ```
//!
//! Pending, active and retired keys are published in the JWKS; revoked keys never
//! are. Exactly one key is active: it is the [`Signer`]. Two rules, computed by
//! [`RotationPolicy`], keep every valid token verifiable across a rotation:
//! a pending key becomes active only after one JWKS cache lifetime of publication,
//! and a retired key leaves the JWKS only after access-token lifetime + JWKS cache
//! lifetime + clock leeway.
//!
//! Time comes from a [`Clock`] given to the [`KeyDir`] ([`SystemClock`] unless a
//! test injects a [`FixedClock`]), read once per operation after the lock is held
//! and new keys are generated, so tests of the rules run without sleeping and a
//! recorded time is never earlier than the change it records.
//!
//! Keys are generated with the `rsa` crate and converted to PKCS#8 with it; they
//! are parsed once, at load, into the crypto backend (`aws-lc-rs` by default,
//! `ring` as a feature), which is the only code that signs.

mod crypto;
mod error;
mod jwk;
mod keys;
pub mod lifecycle;
mod manifest;
pub mod ops;
mod policy;
mod store;

pub use crypto::{BACKEND, SignError, open_with_secret, seal_with_secret, sha256, verify_rs256};
pub use error::{KeyringError, Refusal};
pub use jwk::{Jwk, JwkSet, b64url, rsa_thumbprint};
pub use keys::{GENERATE_BITS, NewKey, Signer};
pub use lifecycle::{InitOutcome, Promotion, PruneOutcome, RevokeOutcome, RotateOutcome};
pub use manifest::{KeyRecord, KeyState, Manifest};
pub use ops::Op;
pub use policy::{Clock, FixedClock, RotationPolicy, SystemClock, format_time};
pub use store::{Inspection, KeyDir, Keyring};

/// The manifest's file name inside the keys directory.
pub const MANIFEST_FILE: &str = "manifest.json";

/// The one signature algorithm Tessera issues.
pub const ALG: &str = "RS256";
/// The smallest RSA modulus accepted, in bits.
pub const MIN_BITS: usize = 2048;
/// The largest RSA modulus accepted, in bits (the backends' limit).
pub const MAX_BITS: usize = 8192;
/// The size `generate` uses unless told otherwise.
pub const DEFAULT_BITS: usize = 2048;
