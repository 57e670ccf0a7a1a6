//! The signature algorithms a key may have: part of the key, never of a token.

use std::fmt;
use std::str::FromStr;

/// A key's JWS algorithm (RFC 7518 §3.1, RFC 8037 §3.1). It is fixed when the
/// key is made, recorded in the manifest, and written into every JWS header
/// the key signs: a key never signs with another algorithm.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[non_exhaustive]
pub enum Algorithm {
    /// RSASSA-PKCS1-v1_5 with SHA-256, RSA keys of 2048 to 8192 bits. The
    /// default: every verifier understands it.
    Rs256,
    /// ECDSA on P-256 with SHA-256; signatures are the fixed-width `r || s`.
    Es256,
    /// EdDSA with Ed25519 (and only Ed25519: no Ed448).
    EdDsa,
}

impl Algorithm {
    /// Every algorithm, in the order the docs list them.
    pub const ALL: [Self; 3] = [Self::Rs256, Self::Es256, Self::EdDsa];

    /// The `alg` value, exactly as JOSE spells it.
    pub fn name(self) -> &'static str {
        match self {
            Self::Rs256 => "RS256",
            Self::Es256 => "ES256",
            Self::EdDsa => "EdDSA",
        }
    }

    /// The algorithm whose JOSE name is exactly `name` (`alg` is case-sensitive).
    pub fn from_name(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|a| a.name() == name)
    }

    /// The JWK `kty` of its keys.
    pub fn key_type(self) -> &'static str {
        match self {
            Self::Rs256 => "RSA",
            Self::Es256 => "EC",
            Self::EdDsa => "OKP",
        }
    }

    /// The size the manifest records for keys that have no choice of size:
    /// 256 for P-256 and Ed25519; `None` for RSA, whose size varies.
    pub fn fixed_bits(self) -> Option<u32> {
        match self {
            Self::Rs256 => None,
            Self::Es256 | Self::EdDsa => Some(256),
        }
    }
}

impl fmt::Display for Algorithm {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// A name that is not one of [`Algorithm::ALL`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0:?} is not a signing algorithm Tessera offers (RS256, ES256 or EdDSA)")]
#[non_exhaustive]
pub struct UnknownAlgorithm(pub String);

impl FromStr for Algorithm {
    type Err = UnknownAlgorithm;

    /// The exact JOSE name; a configuration may also write it in any case
    /// (`es256`, `eddsa`), since there it is not compared with a token.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::ALL
            .into_iter()
            .find(|a| a.name().eq_ignore_ascii_case(s.trim()))
            .ok_or_else(|| UnknownAlgorithm(s.chars().take(32).collect()))
    }
}

impl serde::Serialize for Algorithm {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.name())
    }
}

impl<'de> serde::Deserialize<'de> for Algorithm {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let name = std::borrow::Cow::<'de, str>::deserialize(d)?;
        name.parse().map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip_and_configuration_ignores_case() {
        for alg in Algorithm::ALL {
            assert_eq!(Algorithm::from_name(alg.name()), Some(alg));
            assert_eq!(alg.name().to_lowercase().parse::<Algorithm>(), Ok(alg));
        }
        // A token's `alg` is compared exactly.
        assert_eq!(Algorithm::from_name("es256"), None);
        assert!("HS256".parse::<Algorithm>().is_err());
        assert!("none".parse::<Algorithm>().is_err());
        assert!("Ed25519".parse::<Algorithm>().is_err());
    }
}
