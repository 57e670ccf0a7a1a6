//! A JWK set parsed once into verification keys, with strict filtering.

use std::collections::HashMap;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde::Deserialize;

use crate::crypto::VerifyingKey;

/// The signature algorithm Tessera verifies.
const RS256: &str = "RS256";

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
    #[error("the JWK set has no usable RS256 key ({} skipped)", skipped.len())]
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
}

impl KeySet {
    /// Parses a JWKS document. Keys that are not RSA signing keys for an allowed
    /// algorithm, are under 2048 bits, lack a `kid`, repeat a `kid`, or do not
    /// parse are skipped and returned beside the set.
    ///
    /// `allowed_algs` comes from configuration, never from a token: a key whose
    /// `alg` is outside it is skipped. Only `RS256` is implemented.
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
    if jwk.kty != "RSA" {
        return Err(format!("kty {:?} is not RSA", jwk.kty));
    }
    if let Some(u) = jwk.use_.as_deref().filter(|u| *u != "sig") {
        return Err(format!("use {u:?} is not \"sig\""));
    }
    if let Some(ops) = &jwk.key_ops
        && !ops.iter().any(|op| op == "verify")
    {
        return Err("key_ops does not include \"verify\"".to_owned());
    }
    match jwk.alg.as_deref() {
        Some(alg) if !allowed_algs.contains(&alg) => {
            return Err(format!("alg {alg:?} is not allowed"));
        }
        Some(alg) if alg != RS256 => return Err(format!("alg {alg:?} is not supported")),
        _ if !allowed_algs.contains(&RS256) => {
            return Err("RS256 is not an allowed algorithm".to_owned());
        }
        _ => {}
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
    let n = decode("n", jwk.n)?;
    let e = decode("e", jwk.e)?;
    let key = VerifyingKey::from_rsa_components(&n, &e)?;
    Ok((kid, key))
}
