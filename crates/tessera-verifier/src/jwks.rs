//! A JWK set parsed once into verification keys, with strict filtering.

use std::collections::HashMap;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde::Deserialize;

use crate::crypto::{Algorithm, VerifyingKey};

/// Verification keys by `kid`, built from a JWKS document.
#[derive(Debug, Clone, Default)]
pub struct KeySet {
    keys: HashMap<std::sync::Arc<str>, VerifyingKey>,
}

/// A JWK that was left out of the set, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SkippedKey {
    /// Its `kid`, if it had one.
    pub kid: Option<String>,
    /// Why it cannot be used.
    pub reason: String,
}

/// A JWKS document that cannot be used at all.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum JwksError {
    /// Not a JSON object with a `keys` array.
    #[error("not a JWK set: {0}")]
    Malformed(String),
    /// Parsed, but not one key is usable: such a set must never replace a good one.
    #[error("the JWK set has no usable key ({} skipped)", skipped.len())]
    NoUsableKeys {
        /// Every key and why it was skipped.
        skipped: Vec<SkippedKey>,
    },
}

#[derive(Deserialize)]
struct RawSet {
    keys: Vec<serde_json::Value>,
}

/// The members of a JWK this crate reads; everything else is ignored, as RFC 7517
/// requires. Wrong JSON types make the key unusable, not the set.
#[derive(Deserialize)]
struct RawJwk {
    kty: String,
    kid: Option<String>,
    #[serde(rename = "use")]
    use_: Option<String>,
    alg: Option<String>,
    key_ops: Option<Vec<String>>,
    n: Option<String>,
    e: Option<String>,
    crv: Option<String>,
    x: Option<String>,
    y: Option<String>,
}

impl KeySet {
    /// Parses a JWKS document. Each key's algorithm follows from its type
    /// and curve: RSA is `RS256`, EC P-256 is `ES256`, OKP Ed25519 is
    /// `EdDSA`. Keys whose algorithm is not allowed, whose `alg` member
    /// names another, that are not signing keys, RSA keys under 2048 bits,
    /// points off the curve or of small order, keys without a `kid` or
    /// repeating one, and keys that do not parse are skipped and returned
    /// beside the set.
    ///
    /// `allowed_algs` comes from configuration, never from a token.
    pub fn from_jwks_json(
        json: &[u8],
        allowed_algs: &[&str],
    ) -> Result<(Self, Vec<SkippedKey>), JwksError> {
        let raw: RawSet =
            serde_json::from_slice(json).map_err(|e| JwksError::Malformed(e.to_string()))?;
        let mut keys = HashMap::new();
        let mut skipped = Vec::new();
        for value in raw.keys {
            let kid = value.get("kid").and_then(|k| k.as_str()).map(str::to_owned);
            let skip = |reason: String| SkippedKey {
                kid: kid.clone(),
                reason,
            };
            let key = serde_json::from_value::<RawJwk>(value)
                .map_err(|e| format!("malformed JWK ({e})"))
                .and_then(|jwk| usable(jwk, allowed_algs));
            match key {
                Ok((kid, key)) => match keys.entry(std::sync::Arc::from(kid)) {
                    std::collections::hash_map::Entry::Occupied(_) => {
                        skipped.push(skip("duplicate kid".to_owned()));
                    }
                    std::collections::hash_map::Entry::Vacant(slot) => {
                        slot.insert(key);
                    }
                },
                Err(reason) => skipped.push(skip(reason)),
            }
        }
        if keys.is_empty() {
            return Err(JwksError::NoUsableKeys { skipped });
        }
        Ok((Self { keys }, skipped))
    }

    /// The key with this `kid`.
    pub fn get(&self, kid: &str) -> Option<&VerifyingKey> {
        self.keys.get(kid)
    }

    /// The key with this `kid`, and the `kid` as shared (no allocation to keep it).
    pub(crate) fn entry(&self, kid: &str) -> Option<(&std::sync::Arc<str>, &VerifyingKey)> {
        self.keys.get_key_value(kid)
    }

    /// How many usable keys the set holds.
    pub fn len(&self) -> usize {
        self.keys.len()
    }

    /// Whether the set holds no key.
    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }

    /// The `kid`s in the set, in no particular order.
    pub fn kids(&self) -> impl Iterator<Item = &str> {
        self.keys.keys().map(|k| &**k)
    }
}

fn usable(jwk: RawJwk, allowed_algs: &[&str]) -> Result<(String, VerifyingKey), String> {
    let alg = match (jwk.kty.as_str(), jwk.crv.as_deref()) {
        ("RSA", _) => Algorithm::Rs256,
        ("EC", Some("P-256")) => Algorithm::Es256,
        ("OKP", Some("Ed25519")) => Algorithm::EdDsa,
        ("EC" | "OKP", Some(crv)) => {
            return Err(format!("curve {crv:?} is not supported (P-256, Ed25519)"));
        }
        ("EC" | "OKP", None) => return Err(format!("{} key without crv", jwk.kty)),
        (kty, _) => return Err(format!("kty {kty:?} is not RSA, EC or OKP")),
    };
    if let Some(u) = jwk.use_.as_deref().filter(|u| *u != "sig") {
        return Err(format!("use {u:?} is not \"sig\""));
    }
    if let Some(ops) = &jwk.key_ops
        && !ops.iter().any(|op| op == "verify")
    {
        return Err("key_ops does not include \"verify\"".to_owned());
    }
    if let Some(named) = jwk.alg.as_deref() {
        if !allowed_algs.contains(&named) {
            return Err(format!("alg {named:?} is not allowed"));
        }
        if named != alg.name() {
            return Err(format!(
                "alg {named:?} does not match a {} key ({} only)",
                jwk.kty,
                alg.name()
            ));
        }
    } else if !allowed_algs.contains(&alg.name()) {
        return Err(format!("{} is not an allowed algorithm", alg.name()));
    }
    let kid = jwk
        .kid
        .filter(|k| !k.is_empty())
        .ok_or_else(|| "no kid".to_owned())?;
    let decode = |name: &str, v: Option<String>| {
        let v = v.ok_or_else(|| format!("no {name}"))?;
        URL_SAFE_NO_PAD
            .decode(v.as_bytes())
            .map_err(|e| format!("{name} is not base64url without padding ({e})"))
    };
    let key = match alg {
        Algorithm::Rs256 => {
            VerifyingKey::from_rsa_components(&decode("n", jwk.n)?, &decode("e", jwk.e)?)?
        }
        Algorithm::Es256 => {
            VerifyingKey::from_p256_coordinates(&decode("x", jwk.x)?, &decode("y", jwk.y)?)?
        }
        Algorithm::EdDsa => VerifyingKey::from_ed25519(&decode("x", jwk.x)?)?,
    };
    Ok((kid, key))
}
