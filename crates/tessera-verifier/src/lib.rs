//! Tessera's verifier: what a resource server needs to trust Tessera's tokens,
//! using only the issuer's public keys.
//!
//! This crate never sees a private key and never depends on the issuer or the
//! keyring: it knows the issuer only through its published JWKS.
//!
//! Today it holds the key side of verification: a JWKS parsed once into the
//! crypto backend's verification keys ([`KeySet`]), filtered strictly (RSA only,
//! `use` absent or `sig`, `alg` absent or allowed, at least 2048 bits, a `kid`),
//! with unusable keys skipped and reported instead of failing the whole set.

mod crypto;
mod jwks;

pub use crypto::{BACKEND, VerifyingKey};
pub use jwks::{JwksError, KeySet, SkippedKey};

/// The smallest RSA modulus accepted, in bits.
pub const MIN_RSA_BITS: usize = 2048;
/// The largest RSA modulus accepted, in bits.
pub const MAX_RSA_BITS: usize = 8192;
