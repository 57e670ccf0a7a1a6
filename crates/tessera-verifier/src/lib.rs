//! Tessera's verifier: what a resource server needs to trust Tessera's access
//! tokens, using only the issuer's public keys.
//!
//! This crate never sees a private key and never depends on the issuer or the
//! keyring: it knows the issuer only through its published JWKS.
//!
//! - [`Verifier`] validates tokens strictly (size → segments → header → key by
//!   `kid` → signature → claims) and yields a [`Verified`] that only it can
//!   construct, or a typed [`VerifyError`].
//! - Its JWKS cache parses keys once into the crypto backend's verification
//!   keys, holds them in a lock-free snapshot, honours `Cache-Control`/ETag,
//!   refreshes ahead of expiry, refetches at most once per cooldown for unknown
//!   `kid`s, and keeps the last good set while the issuer is down.
//! - A verified-token cache lets a repeated token skip the RSA verification
//!   (never the time checks).
//! - Optionally, it follows the issuer's signed revocation feed and refuses
//!   revoked tokens, sessions and users ([`RevocationConfig`]).
//! - [`VerifierSet`] accepts several issuers' tokens, each verified by its
//!   own member (keys, feed, audiences), chosen by the token's `iss`.
//! - With the `axum` feature (default): the [`axum::Authenticated`] extractor,
//!   the [`axum::RequireRole`] guard and RFC 6750 responses; the [`axum`]
//!   module's docs show a whole resource server.

mod b64;
mod claims;
mod clock;
mod config;
mod crypto;
mod error;
mod fetch;
mod jwks;
mod jws;
mod metrics;
mod revocation;
mod token_cache;
mod verifier;

#[cfg(feature = "axum")]
pub mod axum;
#[cfg(feature = "fuzzing")]
#[doc(hidden)]
pub mod fuzzing;
#[cfg(feature = "jsonwebtoken")]
pub mod jsonwebtoken;
#[cfg(feature = "prometheus")]
pub mod prometheus;

pub use claims::{AccessClaims, Claim, DEFAULT_REQUIRED, Registered, Validation, Verified};
pub use clock::{Clock, ManualClock, SystemClock};
pub use config::{CookieSource, JwksSource, TokenCacheConfig, VerifierConfig};
pub use crypto::{Algorithm, BACKEND, VerifyingKey};
pub use error::{ConfigError, VerifyError};
pub use fetch::FetchError;
pub use jwks::{JwksError, KeySet, SkippedKey};
pub use jws::{Header, Jws};
pub use metrics::MetricsSnapshot;
pub use revocation::{OutagePolicy, RevocationConfig, RevocationHealth};
pub use verifier::set::VerifierSet;
pub use verifier::{KeysHealth, Verifier};

/// The smallest RSA modulus accepted, in bits.
pub const MIN_RSA_BITS: usize = 2048;
/// The largest RSA modulus accepted, in bits.
pub const MAX_RSA_BITS: usize = 8192;
/// The default (and, unless configured otherwise, only) accepted algorithm.
pub const RS256: &str = "RS256";
