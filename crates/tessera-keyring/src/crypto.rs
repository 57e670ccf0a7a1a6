//! The one seam between Tessera and an RSA implementation.
//!
//! Everything that signs goes through [`RsaSigningKey`]. The backend is chosen at
//! build time: `aws-lc-rs` (default) or `ring` (`--no-default-features --features
//! ring`). Their APIs have the same shape, so the code below is written once against
//! the `backend` alias. The `rsa` crate never appears here: it generates keys and
//! converts formats elsewhere, but it never signs (RUSTSEC-2023-0071).

#[cfg(all(feature = "aws-lc-rs", feature = "ring"))]
compile_error!(
    "tessera-keyring: enable exactly one crypto backend. `aws-lc-rs` is the default; \
     for ring use `default-features = false, features = [\"ring\"]`"
);
#[cfg(not(any(feature = "aws-lc-rs", feature = "ring")))]
compile_error!(
    "tessera-keyring: no crypto backend enabled; enable `aws-lc-rs` (default) or `ring`"
);

#[cfg(feature = "aws-lc-rs")]
use aws_lc_rs as backend;
#[cfg(all(feature = "ring", not(feature = "aws-lc-rs")))]
use ring as backend;

use backend::signature::{KeyPair as _, RsaKeyPair, RsaPublicKeyComponents};
use std::fmt;

/// The name of the backend this build signs with, for logs and benchmarks.
pub const BACKEND: &str = if cfg!(feature = "aws-lc-rs") {
    "aws-lc-rs"
} else {
    "ring"
};

/// Signing failed inside the crypto backend. It carries no detail on purpose: the
/// backends report none, and nothing about the key may leak through an error.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, thiserror::Error)]
#[error("the {BACKEND} backend failed to produce an RS256 signature")]
#[non_exhaustive]
pub struct SignError;

/// An RSA private key, parsed once into the backend's form, that signs RS256.
pub(crate) struct RsaSigningKey {
    pair: RsaKeyPair,
    rng: backend::rand::SystemRandom,
    /// Signature length in bytes. Computed once: ring deprecates
    /// `public_modulus_len` and aws-lc-rs lacks ring's replacement.
    modulus_len: usize,
}

impl RsaSigningKey {
    /// Parses a PKCS#8 DER private key. The backend checks the key's consistency.
    pub(crate) fn from_pkcs8_der(der: &[u8]) -> Result<Self, String> {
        let pair = RsaKeyPair::from_pkcs8(der).map_err(|e| e.to_string())?;
        let modulus_len = RsaPublicKeyComponents::<Vec<u8>>::from(pair.public_key())
            .n
            .len();
        Ok(Self {
            pair,
            rng: backend::rand::SystemRandom::new(),
            modulus_len,
        })
    }

    /// RSASSA-PKCS1-v1_5 with SHA-256 over `message`.
    pub(crate) fn sign_rs256(&self, message: &[u8]) -> Result<Vec<u8>, SignError> {
        let mut signature = vec![0; self.modulus_len];
        self.pair
            .sign(
                &backend::signature::RSA_PKCS1_SHA256,
                &self.rng,
                message,
                &mut signature,
            )
            .map_err(|_| SignError)?;
        Ok(signature)
    }

    /// The public modulus and exponent, big-endian without leading zeros.
    pub(crate) fn public_components(&self) -> RsaPublicKeyComponents<Vec<u8>> {
        RsaPublicKeyComponents::<Vec<u8>>::from(self.pair.public_key())
    }
}

impl fmt::Debug for RsaSigningKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RsaSigningKey")
            .field("bits", &(self.modulus_len * 8))
            .finish_non_exhaustive()
    }
}

/// SHA-256 through the same backend.
pub fn sha256(data: &[u8]) -> [u8; 32] {
    let digest = backend::digest::digest(&backend::digest::SHA256, data);
    let mut out = [0; 32];
    out.copy_from_slice(digest.as_ref());
    out
}

/// Verifies an RS256 signature with a public key given as components. The keyring
/// uses it to prove a key it is about to publish really signs (see
/// [`crate::Signer::self_test`]); resource servers use the verifier crate instead.
pub fn verify_rs256(n: &[u8], e: &[u8], message: &[u8], signature: &[u8]) -> bool {
    RsaPublicKeyComponents { n, e }
        .verify(
            &backend::signature::RSA_PKCS1_2048_8192_SHA256,
            message,
            signature,
        )
        .is_ok()
}

/// Encrypts `plaintext` (AES-256-GCM, random nonce) under a key derived from
/// `secret` (SHA-256 of a domain label and the secret). Only a holder of the
/// same secret can [`open_with_secret`] it. The issuer uses it to keep a
/// refresh response for an idempotent retry, readable only by whoever presents
/// the refresh token that produced it.
pub fn seal_with_secret(secret: &[u8], plaintext: &[u8]) -> Result<Vec<u8>, SignError> {
    use backend::aead::{AES_256_GCM, Aad, LessSafeKey, NONCE_LEN, Nonce, UnboundKey};
    use backend::rand::SecureRandom as _;
    let key = LessSafeKey::new(
        UnboundKey::new(&AES_256_GCM, &derive_key(secret)).map_err(|_| SignError)?,
    );
    let mut nonce = [0u8; NONCE_LEN];
    backend::rand::SystemRandom::new()
        .fill(&mut nonce)
        .map_err(|_| SignError)?;
    let mut buffer = plaintext.to_vec();
    key.seal_in_place_append_tag(
        Nonce::assume_unique_for_key(nonce),
        Aad::empty(),
        &mut buffer,
    )
    .map_err(|_| SignError)?;
    let mut out = nonce.to_vec();
    out.extend_from_slice(&buffer);
    Ok(out)
}

/// Decrypts what [`seal_with_secret`] produced with the same secret; `None` if
/// the secret is wrong or the data was altered.
pub fn open_with_secret(secret: &[u8], sealed: &[u8]) -> Option<Vec<u8>> {
    use backend::aead::{AES_256_GCM, Aad, LessSafeKey, NONCE_LEN, Nonce, UnboundKey};
    if sealed.len() < NONCE_LEN {
        return None;
    }
    let (nonce, ciphertext) = sealed.split_at(NONCE_LEN);
    let key = LessSafeKey::new(UnboundKey::new(&AES_256_GCM, &derive_key(secret)).ok()?);
    let nonce = Nonce::try_assume_unique_for_key(nonce).ok()?;
    let mut buffer = ciphertext.to_vec();
    let plain = key.open_in_place(nonce, Aad::empty(), &mut buffer).ok()?;
    Some(plain.to_vec())
}

fn derive_key(secret: &[u8]) -> [u8; 32] {
    let mut input = b"tessera/sealed/v1\0".to_vec();
    input.extend_from_slice(secret);
    sha256(&input)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sealed_data_opens_only_with_the_same_secret() {
        let sealed = seal_with_secret(b"secret one", b"payload").unwrap();
        assert_eq!(
            open_with_secret(b"secret one", &sealed).unwrap(),
            b"payload"
        );
        assert!(open_with_secret(b"secret two", &sealed).is_none());
        let mut tampered = sealed.clone();
        let last = tampered.len() - 1;
        tampered[last] ^= 1;
        assert!(open_with_secret(b"secret one", &tampered).is_none());
        assert!(open_with_secret(b"secret one", &sealed[..5]).is_none());
        assert_ne!(
            seal_with_secret(b"secret one", b"payload").unwrap(),
            sealed,
            "random nonce"
        );
    }
}
