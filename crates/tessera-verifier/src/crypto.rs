//! The one seam between the verifier and an RSA implementation: `aws-lc-rs` by
//! default, `ring` as a feature. Keys are parsed once, when the JWKS is loaded.

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

/// An RSA public key ready to verify RS256 signatures.
///
/// With aws-lc-rs the key is parsed once into the library's own form. ring has no
/// public parsed RSA verification key, so with ring the checked components are
/// kept and handed to it on each verification.
#[derive(Clone)]
pub struct VerifyingKey {
    #[cfg(feature = "aws-lc-rs")]
    parsed: std::sync::Arc<aws_lc_rs::signature::ParsedPublicKey>,
    #[cfg(all(feature = "ring", not(feature = "aws-lc-rs")))]
    components: ring::signature::RsaPublicKeyComponents<Vec<u8>>,
    /// The modulus and exponent, for the `jsonwebtoken` bridge.
    #[cfg(feature = "jsonwebtoken")]
    n_e: std::sync::Arc<(Vec<u8>, Vec<u8>)>,
    bits: usize,
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
        {
            let parsed = aws_lc_rs::signature::RsaPublicKeyComponents { n, e }
                .to_parsed_public_key(&aws_lc_rs::signature::RSA_PKCS1_2048_8192_SHA256)
                .map_err(|e| format!("RSA key rejected by aws-lc-rs ({e})"))?;
            Ok(Self {
                parsed: std::sync::Arc::new(parsed),
                #[cfg(feature = "jsonwebtoken")]
                n_e: std::sync::Arc::new((n.to_vec(), e.to_vec())),
                bits,
            })
        }
        #[cfg(all(feature = "ring", not(feature = "aws-lc-rs")))]
        {
            Ok(Self {
                components: ring::signature::RsaPublicKeyComponents {
                    n: n.to_vec(),
                    e: e.to_vec(),
                },
                #[cfg(feature = "jsonwebtoken")]
                n_e: std::sync::Arc::new((n.to_vec(), e.to_vec())),
                bits,
            })
        }
    }

    /// The modulus size.
    pub fn bits(&self) -> usize {
        self.bits
    }

    /// The key as `jsonwebtoken` takes it.
    #[cfg(feature = "jsonwebtoken")]
    pub(crate) fn decoding_key(&self) -> ::jsonwebtoken::DecodingKey {
        ::jsonwebtoken::DecodingKey::from_rsa_raw_components(&self.n_e.0, &self.n_e.1)
    }

    /// Whether `signature` is a valid RS256 (RSASSA-PKCS1-v1_5 with SHA-256)
    /// signature of `message` under this key.
    pub fn verify_rs256(&self, message: &[u8], signature: &[u8]) -> bool {
        #[cfg(feature = "aws-lc-rs")]
        {
            self.parsed.verify_sig(message, signature).is_ok()
        }
        #[cfg(all(feature = "ring", not(feature = "aws-lc-rs")))]
        {
            self.components
                .verify(
                    &ring::signature::RSA_PKCS1_2048_8192_SHA256,
                    message,
                    signature,
                )
                .is_ok()
        }
    }
}

impl fmt::Debug for VerifyingKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("VerifyingKey")
            .field("alg", &"RS256")
            .field("bits", &self.bits)
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
