//! Public keys as JSON Web Keys (RFC 7517) and their RFC 7638 thumbprints.

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde::{Deserialize, Serialize};

use crate::alg::Algorithm;
use crate::crypto::PublicKey;

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

/// The RFC 7638 thumbprint of a P-256 public key: the canonical JWK
/// `{"crv":"P-256","kty":"EC","x":..,"y":..}`, coordinates 32 bytes each.
pub fn ec_thumbprint(x: &[u8], y: &[u8]) -> String {
    let canonical = format!(
        r#"{{"crv":"P-256","kty":"EC","x":"{}","y":"{}"}}"#,
        b64url(x),
        b64url(y)
    );
    b64url(&crate::crypto::sha256(canonical.as_bytes()))
}

/// The RFC 7638 thumbprint of an Ed25519 public key (RFC 8037 §2): the
/// canonical JWK `{"crv":"Ed25519","kty":"OKP","x":..}`.
pub fn okp_thumbprint(x: &[u8]) -> String {
    let canonical = format!(r#"{{"crv":"Ed25519","kty":"OKP","x":"{}"}}"#, b64url(x));
    b64url(&crate::crypto::sha256(canonical.as_bytes()))
}

/// One public signing key as published in the JWKS: RSA (RFC 7518 §6.3), EC
/// P-256 (§6.2) or OKP Ed25519 (RFC 8037 §2). Built only by the constructors
/// below, which set exactly the members of its type; the others stay `None`
/// and are not serialised.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Jwk {
    /// `RSA`, `EC` or `OKP`.
    pub kty: String,
    /// Always `sig`.
    #[serde(rename = "use")]
    pub use_: String,
    /// `RS256`, `ES256` or `EdDSA`: the only algorithm the key signs with.
    pub alg: String,
    /// The key id: the RFC 7638 thumbprint of the key.
    pub kid: String,
    /// RSA: the modulus, base64url.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub n: Option<String>,
    /// RSA: the public exponent, base64url.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub e: Option<String>,
    /// EC and OKP: the curve, `P-256` or `Ed25519`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub crv: Option<String>,
    /// EC: the x coordinate (32 bytes); OKP: the public key (32 bytes).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub x: Option<String>,
    /// EC: the y coordinate (32 bytes).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub y: Option<String>,
}

impl Jwk {
    /// The JWK of an RS256 signing key given its modulus and exponent.
    pub fn rs256(n: &[u8], e: &[u8]) -> Self {
        Self {
            n: Some(b64url(n)),
            e: Some(b64url(e)),
            ..Self::empty(Algorithm::Rs256, rsa_thumbprint(n, e))
        }
    }

    /// The JWK of an ES256 signing key given its coordinates.
    pub fn es256(x: &[u8; 32], y: &[u8; 32]) -> Self {
        Self {
            crv: Some("P-256".to_owned()),
            x: Some(b64url(x)),
            y: Some(b64url(y)),
            ..Self::empty(Algorithm::Es256, ec_thumbprint(x, y))
        }
    }

    /// The JWK of an EdDSA (Ed25519) signing key.
    pub fn ed25519(x: &[u8; 32]) -> Self {
        Self {
            crv: Some("Ed25519".to_owned()),
            x: Some(b64url(x)),
            ..Self::empty(Algorithm::EdDsa, okp_thumbprint(x))
        }
    }

    fn empty(alg: Algorithm, kid: String) -> Self {
        Self {
            kty: alg.key_type().to_owned(),
            use_: "sig".to_owned(),
            alg: alg.name().to_owned(),
            kid,
            n: None,
            e: None,
            crv: None,
            x: None,
            y: None,
        }
    }

    pub(crate) fn of(public: &PublicKey) -> Self {
        match public {
            PublicKey::Rsa { n, e } => Self::rs256(n, e),
            PublicKey::Ec { x, y } => Self::es256(x, y),
            PublicKey::Ed { x } => Self::ed25519(x),
        }
    }

    /// The key's algorithm, if its `alg` is one Tessera signs with.
    pub fn algorithm(&self) -> Option<Algorithm> {
        Algorithm::from_name(&self.alg)
    }

    /// The public key, decoded; `None` if a member its type needs is missing
    /// or malformed, or its type and algorithm disagree.
    pub(crate) fn public_key(&self) -> Option<PublicKey> {
        use base64::Engine as _;
        let decode = |v: &Option<String>| URL_SAFE_NO_PAD.decode(v.as_deref()?).ok();
        let fixed = |v: &Option<String>| <[u8; 32]>::try_from(decode(v)?.as_slice()).ok();
        match (self.algorithm()?, self.kty.as_str(), self.crv.as_deref()) {
            (Algorithm::Rs256, "RSA", None) => Some(PublicKey::Rsa {
                n: decode(&self.n)?,
                e: decode(&self.e)?,
            }),
            (Algorithm::Es256, "EC", Some("P-256")) => Some(PublicKey::Ec {
                x: fixed(&self.x)?,
                y: fixed(&self.y)?,
            }),
            (Algorithm::EdDsa, "OKP", Some("Ed25519")) => {
                Some(PublicKey::Ed { x: fixed(&self.x)? })
            }
            _ => None,
        }
    }

    /// Whether `signature` is this key's valid signature of `message`, with
    /// the key's own algorithm (the issuer's check of tokens it signed).
    pub fn verifies(&self, message: &[u8], signature: &[u8]) -> bool {
        match (self.algorithm(), self.public_key()) {
            (Some(alg), Some(public)) => crate::crypto::verify(alg, &public, message, signature),
            _ => false,
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
        assert!(json.get("crv").is_none() && json.get("x").is_none());
    }

    /// RFC 8037 §A.2 and §A.3: the Ed25519 example key and its thumbprint.
    #[test]
    fn okp_thumbprint_matches_rfc8037_example() {
        let x = URL_SAFE_NO_PAD
            .decode("11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo")
            .unwrap();
        assert_eq!(
            okp_thumbprint(&x),
            "kPrK_qmxVWaYVA9wwBF6Iuo3vVzz7TxHCTwXBygrS4k"
        );
        let jwk = Jwk::ed25519(&x.try_into().unwrap());
        let json: serde_json::Value = serde_json::to_value(&jwk).unwrap();
        assert_eq!(
            json,
            serde_json::json!({
                "kty": "OKP", "use": "sig", "alg": "EdDSA", "crv": "Ed25519",
                "kid": "kPrK_qmxVWaYVA9wwBF6Iuo3vVzz7TxHCTwXBygrS4k",
                "x": "11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo",
            })
        );
    }

    /// An EC thumbprint hashes exactly the RFC 7638 §3.2 members, in order
    /// (the canonical form written out here by hand).
    #[test]
    fn ec_thumbprint_is_over_the_canonical_members() {
        let (x, y) = ([1u8; 32], [2u8; 32]);
        let canonical = format!(
            r#"{{"crv":"P-256","kty":"EC","x":"{}","y":"{}"}}"#,
            b64url(&x),
            b64url(&y)
        );
        assert_eq!(
            ec_thumbprint(&x, &y),
            b64url(&crate::crypto::sha256(canonical.as_bytes()))
        );
        let jwk = Jwk::es256(&x, &y);
        assert_eq!((jwk.kty.as_str(), jwk.alg.as_str()), ("EC", "ES256"));
        assert_eq!(jwk.crv.as_deref(), Some("P-256"));
        assert!(jwk.n.is_none() && jwk.e.is_none());
    }
}
