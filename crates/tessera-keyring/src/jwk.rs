//! Public keys as JSON Web Keys (RFC 7517) and their RFC 7638 thumbprints.

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde::{Deserialize, Serialize};

/// base64url without padding, the encoding of every JOSE binary value.
pub fn b64url(bytes: &[u8]) -> String {
    URL_SAFE_NO_PAD.encode(bytes)
}

/// The RFC 7638 thumbprint of an RSA public key: base64url(SHA-256) of the
/// canonical JWK `{"e":..,"kty":"RSA","n":..}` (members sorted, no whitespace).
///
/// `n` and `e` are big-endian without leading zeros, as RFC 7518 §6.3.1 requires.
pub fn rsa_thumbprint(n: &[u8], e: &[u8]) -> String {
    // Both values are base64url, which never needs JSON escaping, so formatting
    // the canonical form by hand is exact.
    let canonical = format!(r#"{{"e":"{}","kty":"RSA","n":"{}"}}"#, b64url(e), b64url(n));
    b64url(&crate::crypto::sha256(canonical.as_bytes()))
}

/// One public RSA signing key as published in the JWKS.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Jwk {
    /// Always `RSA`.
    pub kty: String,
    /// Always `sig`.
    #[serde(rename = "use")]
    pub use_: String,
    /// Always `RS256`.
    pub alg: String,
    /// The key id: the RFC 7638 thumbprint of the key.
    pub kid: String,
    /// The modulus, base64url.
    pub n: String,
    /// The public exponent, base64url.
    pub e: String,
}

impl Jwk {
    /// The JWK of an RS256 signing key given its modulus and exponent.
    pub fn rs256(n: &[u8], e: &[u8]) -> Self {
        Self {
            kty: "RSA".to_owned(),
            use_: "sig".to_owned(),
            alg: crate::ALG.to_owned(),
            kid: rsa_thumbprint(n, e),
            n: b64url(n),
            e: b64url(e),
        }
    }
}

/// A JWK set (RFC 7517 §5): what `/.well-known/jwks.json` serves.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct JwkSet {
    /// The published keys: pending, active and retired, never revoked.
    pub keys: Vec<Jwk>,
}

impl JwkSet {
    /// The key with this `kid`, if published.
    pub fn find(&self, kid: &str) -> Option<&Jwk> {
        self.keys.iter().find(|k| k.kid == kid)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// RFC 7638 §3.1: the example key and its published thumbprint.
    #[test]
    fn thumbprint_matches_rfc7638_example() {
        let n = "0vx7agoebGcQSuuPiLJXZptN9nndrQmbXEps2aiAFbWhM78LhWx4cbbfAAtVT86zwu1RK7aPFFxuhDR1L6tSoc_BJECPebWKRXjBZCiFV4n3oknjhMstn64tZ_2W-5JsGY4Hc5n9yBXArwl93lqt7_RN5w6Cf0h4QyQ5v-65YGjQR0_FDW2QvzqY368QQMicAtaSqzs8KJZgnYb9c7d0zgdAZHzu6qMQvRL5hajrn1n91CbOpbISD08qNLyrdkt-bFTWhAI4vMQFh6WeZu0fM4lFd2NcRwr3XPksINHaQ-G_xBniIqbw0Ls1jF44-csFCur-kEgU8awapJzKnqDKgw";
        let n = URL_SAFE_NO_PAD.decode(n).unwrap();
        let e = URL_SAFE_NO_PAD.decode("AQAB").unwrap();
        assert_eq!(
            rsa_thumbprint(&n, &e),
            "NzbLsXh8uDCcd-6MNwXF4W_7noWXFZAfHkxZsRGC9Xs"
        );
        let jwk = Jwk::rs256(&n, &e);
        assert_eq!(jwk.kid, "NzbLsXh8uDCcd-6MNwXF4W_7noWXFZAfHkxZsRGC9Xs");
        let json: serde_json::Value = serde_json::to_value(&jwk).unwrap();
        assert_eq!(json["kty"], "RSA");
        assert_eq!(json["use"], "sig");
        assert_eq!(json["alg"], "RS256");
        assert_eq!(json["e"], "AQAB");
    }
}
