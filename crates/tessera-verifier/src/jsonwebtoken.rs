//! A bridge for code that already decodes tokens with the [`jsonwebtoken`]
//! crate (feature `jsonwebtoken`): keep your `jsonwebtoken::decode` calls,
//! and take the key and the validation settings from Tessera's verifier,
//! which brings its JWKS cache (rotation, unknown-`kid` cooldown,
//! stale-if-error) and its revocation feed.
//!
//! - [`Verifier::jsonwebtoken_key`](crate::Verifier::jsonwebtoken_key):
//!   the `DecodingKey` for a token's `kid`; refuses a header this verifier
//!   would (`alg` not configured, `crit`, the wrong `typ`).
//! - [`Verifier::jsonwebtoken_validation`](crate::Verifier::jsonwebtoken_validation):
//!   the `Validation` matching the verifier's settings (its algorithms, `iss`,
//!   `aud`, leeway, `exp`, `nbf`, the required claims `jsonwebtoken` knows).
//! - [`Verifier::jsonwebtoken_key_and_validation`](crate::Verifier::jsonwebtoken_key_and_validation):
//!   both, the validation narrowed to the token's algorithm: what to use
//!   when RS256 and ES256 (say) are both allowed, since `jsonwebtoken::decode`
//!   refuses a `Validation` listing an algorithm of another key type.
//! - [`Verifier::check_decoded`](crate::Verifier::check_decoded): what
//!   `jsonwebtoken` leaves out (`iat` in the future, required `iat`/`jti`,
//!   the revocation check).
//! - [`Verifier::decode_with_jsonwebtoken`](crate::Verifier::decode_with_jsonwebtoken):
//!   all three.
//!
//! **`typ` must still be checked.** `jsonwebtoken::decode` never looks at
//! the header's `typ`, so on its own it would take an ID token or any other
//! JWT this issuer signs for an access token (RFC 9068 §4 requires
//! `at+jwt`). `jsonwebtoken_key` checks it before handing out a key; if you
//! get keys some other way, check it yourself:
//!
//! ```no_run
//! # async fn handler(verifier: tessera_verifier::Verifier, token: &str)
//! #     -> Result<(), Box<dyn std::error::Error>> {
//! use tessera_verifier::jsonwebtoken::jwt;
//! let header = jwt::decode_header(token)?;
//! if !header.typ.is_some_and(|t| t.eq_ignore_ascii_case("at+jwt")) {
//!     return Err("not an access token".into());
//! }
//! let key = verifier.jsonwebtoken_key(token).await?;
//! let data = jwt::decode::<serde_json::Value>(token, &key, &verifier.jsonwebtoken_validation())?;
//! verifier.check_decoded(&data.claims)?;
//! # Ok(()) }
//! ```
//!
//! `jsonwebtoken` reads the system clock for `exp` and `nbf`, not the
//! verifier's injected clock, and verifies with its own aws-lc-rs backend.

/// The `jsonwebtoken` crate this bridge is built against (use it, so the
/// `DecodingKey` and `Validation` types are the same).
pub use ::jsonwebtoken as jwt;

pub use crate::verifier::BridgeError;
