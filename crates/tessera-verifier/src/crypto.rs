//! The one seam between the verifier and a signature implementation:
//! `aws-lc-rs` by default, `ring` as a feature. RS256, ES256 and EdDSA; keys
//! are checked and parsed once, when the JWKS is loaded.

#[cfg(all(feature = "aws-lc-rs", feature = "ring"))]
compile_error!(
    "tessera-verifier: enable exactly one crypto backend. `aws-lc-rs` is the default; \
     for ring use `default-features = false, features = [\"ring\"]`"
);
#[cfg(not(any(feature = "aws-lc-rs", feature = "ring")))]
compile_error!(
    "tessera-verifier: no crypto backend enabled; enable `aws-lc-rs` (default) or `ring`"
);

use std::fmt;

/// The name of the backend this build verifies with.
pub const BACKEND: &str = if cfg!(feature = "aws-lc-rs") {
    "aws-lc-rs"
} else {
    "ring"
};

/// A JWS algorithm this crate verifies. Each is bound to one key type: an
/// `RS256` token is checked only with an RSA key, `ES256` only with a P-256
/// key, `EdDSA` only with an Ed25519 key.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Algorithm {
    /// RSASSA-PKCS1-v1_5 with SHA-256.
    Rs256,
    /// ECDSA P-256 with SHA-256, signatures the 64-byte `r || s`.
    Es256,
    /// EdDSA with Ed25519 only.
    EdDsa,
}

impl Algorithm {
    /// Every algorithm this crate verifies.
    pub const ALL: [Self; 3] = [Self::Rs256, Self::Es256, Self::EdDsa];

    /// The `alg` value, exactly as JOSE spells it.
    pub fn name(self) -> &'static str {
        match self {
            Self::Rs256 => "RS256",
            Self::Es256 => "ES256",
            Self::EdDsa => "EdDSA",
        }
    }

    /// The algorithm named exactly `name` (`alg` is case-sensitive).
    pub fn from_name(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|a| a.name() == name)
    }
}

impl fmt::Display for Algorithm {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// A public key ready to verify signatures of its one algorithm, checked and
/// parsed when the JWKS is loaded.
///
/// With aws-lc-rs every key is parsed once into the library's own form. ring
/// has no public parsed verification key, so with ring the checked bytes are
/// kept and handed to it on each verification.
#[derive(Clone)]
pub struct VerifyingKey {
    kind: Kind,
    #[cfg(feature = "aws-lc-rs")]
    parsed: std::sync::Arc<aws_lc_rs::signature::ParsedPublicKey>,
}

/// The key's checked bytes: what ring verifies with, and what the
/// `jsonwebtoken` bridge hands over (unread in an aws-lc-rs build without it).
#[derive(Clone)]
#[cfg_attr(
    all(feature = "aws-lc-rs", not(feature = "jsonwebtoken")),
    allow(dead_code)
)]
enum Kind {
    Rsa {
        /// The modulus and exponent, without leading zeros.
        n_e: std::sync::Arc<(Vec<u8>, Vec<u8>)>,
        bits: usize,
    },
    /// The uncompressed SEC1 point, `0x04 || x || y`.
    Ec(std::sync::Arc<[u8; 65]>),
    Ed([u8; 32]),
}

/// The Ed25519 encodings of points of small order (the eight-torsion
/// subgroup, and the non-canonical encodings of two of them), compared with
/// the sign bit cleared: the list libsodium refuses. Such a key verifies
/// forged signatures under some implementations. Computed independently for
/// this crate (from the curve equation) and equal to libsodium's.
const ED25519_SMALL_ORDER: [[u8; 32]; 7] = {
    const fn repeat(first: u8, fill: u8, last: u8) -> [u8; 32] {
        let mut out = [fill; 32];
        out[0] = first;
        out[31] = last;
        out
    }
    [
        repeat(0x00, 0x00, 0x00),
        repeat(0x01, 0x00, 0x00),
        [
            0x26, 0xe8, 0x95, 0x8f, 0xc2, 0xb2, 0x27, 0xb0, 0x45, 0xc3, 0xf4, 0x89, 0xf2, 0xef,
            0x98, 0xf0, 0xd5, 0xdf, 0xac, 0x05, 0xd3, 0xc6, 0x33, 0x39, 0xb1, 0x38, 0x02, 0x88,
            0x6d, 0x53, 0xfc, 0x05,
        ],
        [
            0xc7, 0x17, 0x6a, 0x70, 0x3d, 0x4d, 0xd8, 0x4f, 0xba, 0x3c, 0x0b, 0x76, 0x0d, 0x10,
            0x67, 0x0f, 0x2a, 0x20, 0x53, 0xfa, 0x2c, 0x39, 0xcc, 0xc6, 0x4e, 0xc7, 0xfd, 0x77,
            0x92, 0xac, 0x03, 0x7a,
        ],
        repeat(0xec, 0xff, 0x7f),
        repeat(0xed, 0xff, 0x7f),
        repeat(0xee, 0xff, 0x7f),
    ]
};

fn ed25519_small_order(key: &[u8; 32]) -> bool {
    ED25519_SMALL_ORDER
        .iter()
        .any(|bad| bad[..31] == key[..31] && bad[31] == key[31] & 0x7f)
}

impl VerifyingKey {
    /// Builds a key from its modulus and exponent (big-endian). Refuses moduli
    /// outside 2048..=8192 bits and anything the backend rejects.
    pub fn from_rsa_components(n: &[u8], e: &[u8]) -> Result<Self, String> {
        let n = strip_leading_zeros(n);
        let e = strip_leading_zeros(e);
        let bits = match n.first() {
            Some(first) => (n.len() - 1) * 8 + (8 - first.leading_zeros() as usize),
            None => 0,
        };
        if !(crate::MIN_RSA_BITS..=crate::MAX_RSA_BITS).contains(&bits) {
            return Err(format!(
                "{bits}-bit RSA key (must be {}..={} bits)",
                crate::MIN_RSA_BITS,
                crate::MAX_RSA_BITS
            ));
        }
        // Both backends check more on their own; this makes the rule the same for
        // both and rejects bad keys at load: an odd exponent, 3 <= e < 2^32.
        if e.len() > 4 || e.last().is_none_or(|b| b & 1 == 0) || e == [1] {
            return Err("RSA public exponent is not an odd value in 3..2^32".to_owned());
        }
        #[cfg(feature = "aws-lc-rs")]
        let parsed = aws_lc_rs::signature::RsaPublicKeyComponents { n, e }
            .to_parsed_public_key(&aws_lc_rs::signature::RSA_PKCS1_2048_8192_SHA256)
            .map_err(|e| format!("RSA key rejected by aws-lc-rs ({e})"))?;
        Ok(Self {
            kind: Kind::Rsa {
                n_e: std::sync::Arc::new((n.to_vec(), e.to_vec())),
                bits,
            },
            #[cfg(feature = "aws-lc-rs")]
            parsed: std::sync::Arc::new(parsed),
        })
    }

    /// Builds a P-256 key from its coordinates, each exactly 32 bytes (RFC
    /// 7518 §6.2.1.2). Refuses a point that is not on the curve.
    pub fn from_p256_coordinates(x: &[u8], y: &[u8]) -> Result<Self, String> {
        if x.len() != 32 || y.len() != 32 {
            return Err(format!(
                "P-256 coordinates must be 32 bytes each (x has {}, y has {})",
                x.len(),
                y.len()
            ));
        }
        let mut point = [4u8; 65];
        point[1..33].copy_from_slice(x);
        point[33..].copy_from_slice(y);
        #[cfg(feature = "aws-lc-rs")]
        let parsed = aws_lc_rs::signature::ParsedPublicKey::new(
            &aws_lc_rs::signature::ECDSA_P256_SHA256_FIXED,
            &point[..],
        )
        .map_err(|_| "the P-256 point is not on the curve".to_owned())?;
        #[cfg(all(feature = "ring", not(feature = "aws-lc-rs")))]
        {
            // ring checks a point only when it uses it: one key agreement with
            // a throwaway key is its public way to ask whether it is valid.
            use ring::agreement::{
                ECDH_P256, EphemeralPrivateKey, UnparsedPublicKey, agree_ephemeral,
            };
            let rng = ring::rand::SystemRandom::new();
            let ours = EphemeralPrivateKey::generate(&ECDH_P256, &rng)
                .map_err(|_| "cannot check the P-256 point".to_owned())?;
            agree_ephemeral(
                ours,
                &UnparsedPublicKey::new(&ECDH_P256, &point[..]),
                |_| (),
            )
            .map_err(|_| "the P-256 point is not on the curve".to_owned())?;
        }
        Ok(Self {
            kind: Kind::Ec(std::sync::Arc::new(point)),
            #[cfg(feature = "aws-lc-rs")]
            parsed: std::sync::Arc::new(parsed),
        })
    }

    /// Builds an Ed25519 key from its 32-byte encoding (RFC 8037 §2).
    /// Refuses keys of small order.
    pub fn from_ed25519(x: &[u8]) -> Result<Self, String> {
        let key = <[u8; 32]>::try_from(x)
            .map_err(|_| format!("an Ed25519 key is 32 bytes, not {}", x.len()))?;
        if ed25519_small_order(&key) {
            return Err("the Ed25519 key is a point of small order".to_owned());
        }
        #[cfg(feature = "aws-lc-rs")]
        let parsed =
            aws_lc_rs::signature::ParsedPublicKey::new(&aws_lc_rs::signature::ED25519, &key[..])
                .map_err(|_| "the Ed25519 key is not a valid point".to_owned())?;
        Ok(Self {
            kind: Kind::Ed(key),
            #[cfg(feature = "aws-lc-rs")]
            parsed: std::sync::Arc::new(parsed),
        })
    }

    /// The one algorithm this key verifies.
    pub fn alg(&self) -> Algorithm {
        match self.kind {
            Kind::Rsa { .. } => Algorithm::Rs256,
            Kind::Ec(_) => Algorithm::Es256,
            Kind::Ed(_) => Algorithm::EdDsa,
        }
    }

    /// The key size: the RSA modulus, or 256 for P-256 and Ed25519.
    pub fn bits(&self) -> usize {
        match self.kind {
            Kind::Rsa { bits, .. } => bits,
            Kind::Ec(_) | Kind::Ed(_) => 256,
        }
    }

    /// The key as `jsonwebtoken` takes it.
    #[cfg(feature = "jsonwebtoken")]
    pub(crate) fn decoding_key(&self) -> ::jsonwebtoken::DecodingKey {
        use ::jsonwebtoken::DecodingKey;
        match &self.kind {
            Kind::Rsa { n_e, .. } => DecodingKey::from_rsa_raw_components(&n_e.0, &n_e.1),
            // Despite the names, these take the raw point and key bytes.
            Kind::Ec(point) => DecodingKey::from_ec_der(&point[..]),
            Kind::Ed(key) => DecodingKey::from_ed_der(key),
        }
    }

    /// Whether `signature` is a valid `alg` signature of `message` under this
    /// key. False whenever `alg` is not this key's algorithm, and for ECDSA
    /// and EdDSA whenever the signature is not exactly 64 bytes (a DER
    /// ECDSA signature is refused, not converted).
    pub fn verify(&self, alg: Algorithm, message: &[u8], signature: &[u8]) -> bool {
        if alg != self.alg() {
            return false;
        }
        if !matches!(self.kind, Kind::Rsa { .. }) && signature.len() != 64 {
            return false;
        }
        #[cfg(feature = "aws-lc-rs")]
        {
            self.parsed.verify_sig(message, signature).is_ok()
        }
        #[cfg(all(feature = "ring", not(feature = "aws-lc-rs")))]
        {
            use ring::signature as sig;
            match &self.kind {
                Kind::Rsa { n_e, .. } => sig::RsaPublicKeyComponents {
                    n: &n_e.0,
                    e: &n_e.1,
                }
                .verify(&sig::RSA_PKCS1_2048_8192_SHA256, message, signature)
                .is_ok(),
                Kind::Ec(point) => {
                    sig::UnparsedPublicKey::new(&sig::ECDSA_P256_SHA256_FIXED, &point[..])
                        .verify(message, signature)
                        .is_ok()
                }
                Kind::Ed(key) => sig::UnparsedPublicKey::new(&sig::ED25519, &key[..])
                    .verify(message, signature)
                    .is_ok(),
            }
        }
    }

    /// Whether `signature` is a valid RS256 (RSASSA-PKCS1-v1_5 with SHA-256)
    /// signature of `message` under this key (false for any other key type).
    pub fn verify_rs256(&self, message: &[u8], signature: &[u8]) -> bool {
        self.verify(Algorithm::Rs256, message, signature)
    }
}

impl fmt::Debug for VerifyingKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("VerifyingKey")
            .field("alg", &self.alg())
            .field("bits", &self.bits())
            .finish_non_exhaustive()
    }
}

fn strip_leading_zeros(bytes: &[u8]) -> &[u8] {
    let first = bytes.iter().position(|&b| b != 0).unwrap_or(bytes.len());
    &bytes[first..]
}

/// SHA-256 of `parts` concatenated, through the same backend.
pub(crate) fn sha256(parts: &[&[u8]]) -> [u8; 32] {
    #[cfg(feature = "aws-lc-rs")]
    use aws_lc_rs::digest;
    #[cfg(all(feature = "ring", not(feature = "aws-lc-rs")))]
    use ring::digest;
    let mut context = digest::Context::new(&digest::SHA256);
    for part in parts {
        context.update(part);
    }
    let mut out = [0; 32];
    out.copy_from_slice(context.finish().as_ref());
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn small_order_ed25519_keys_are_refused_with_either_sign_bit() {
        for bad in ED25519_SMALL_ORDER {
            let mut signed = bad;
            signed[31] |= 0x80;
            for key in [bad, signed] {
                let err = VerifyingKey::from_ed25519(&key).unwrap_err();
                assert!(err.contains("small order"), "{err}");
            }
        }
        // RFC 8037 A.2's public key is an ordinary point.
        let rfc = [
            0xd7, 0x5a, 0x98, 0x01, 0x82, 0xb1, 0x0a, 0xb7, 0xd5, 0x4b, 0xfe, 0xd3, 0xc9, 0x64,
            0x07, 0x3a, 0x0e, 0xe1, 0x72, 0xf3, 0xda, 0xa6, 0x23, 0x25, 0xaf, 0x02, 0x1a, 0x68,
            0xf7, 0x07, 0x51, 0x1a,
        ];
        let key = VerifyingKey::from_ed25519(&rfc).unwrap();
        assert_eq!((key.alg(), key.bits()), (Algorithm::EdDsa, 256));
        assert!(VerifyingKey::from_ed25519(&rfc[..31]).is_err());
    }

    #[test]
    fn p256_points_off_the_curve_or_short_are_refused() {
        // The P-256 generator is on the curve; change one bit of y and it is not.
        let gx = hex("6b17d1f2e12c4247f8bce6e563a440f277037d812deb33a0f4a13945d898c296");
        let gy = hex("4fe342e2fe1a7f9b8ee7eb4a7c0f9e162bce33576b315ececbb6406837bf51f5");
        let key = VerifyingKey::from_p256_coordinates(&gx, &gy).unwrap();
        assert_eq!(key.alg(), Algorithm::Es256);
        let mut off = gy.clone();
        off[31] ^= 1;
        assert!(VerifyingKey::from_p256_coordinates(&gx, &off).is_err());
        assert!(VerifyingKey::from_p256_coordinates(&[0; 32], &[0; 32]).is_err());
        assert!(VerifyingKey::from_p256_coordinates(&gx[1..], &gy).is_err());
    }

    fn hex(s: &str) -> Vec<u8> {
        (0..s.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
            .collect()
    }
}
