//! Private keys: generation, import, parsing, and the signer.
//!
//! The `rsa` crate appears only in [`generate`] and [`normalise_import`]: it makes
//! new keys and converts PKCS#1 to PKCS#8. Once a key is PKCS#8 it is parsed by the
//! crypto backend and never touched by `rsa` again.

use std::fmt;

use zeroize::Zeroizing;

use crate::crypto::{RsaSigningKey, SignError, verify_rs256};
use crate::error::KeyringError;
use crate::jwk::{Jwk, b64url};

/// A private key parsed once into the crypto backend, with its public JWK.
pub(crate) struct ParsedKey {
    pub(crate) signing: RsaSigningKey,
    pub(crate) jwk: Jwk,
    pub(crate) bits: u32,
}

impl ParsedKey {
    /// Parses PKCS#8 DER through the backend and derives the kid and size.
    pub(crate) fn from_pkcs8_der(der: &[u8]) -> Result<Self, String> {
        let signing = RsaSigningKey::from_pkcs8_der(der)
            .map_err(|e| format!("not an RSA private key the crypto backend accepts ({e})"))?;
        let public = signing.public_components();
        let bits = modulus_bits(&public.n);
        let jwk = Jwk::rs256(&public.n, &public.e);
        Ok(Self { signing, jwk, bits })
    }
}

/// A key ready to be stored in a keyring: generated, or imported and checked
/// (parsed by the crypto backend and self-tested). Its `Debug` shows the kid
/// and size only.
pub struct NewKey {
    pub(crate) kid: String,
    pub(crate) bits: u32,
    /// PKCS#8 PEM, wiped from memory on drop.
    pub(crate) pem: Zeroizing<String>,
}

impl fmt::Debug for NewKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("NewKey")
            .field("kid", &self.kid)
            .field("bits", &self.bits)
            .finish_non_exhaustive()
    }
}

impl NewKey {
    /// Generates a new RSA key (2048, 3072 or 4096 bits).
    pub fn generate(bits: usize) -> Result<Self, KeyringError> {
        generate(bits)
    }

    /// Reads an operator's RSA private key (PKCS#8 or PKCS#1 PEM), converted to
    /// PKCS#8.
    pub fn import_file(pem_path: &std::path::Path) -> Result<Self, KeyringError> {
        let text =
            Zeroizing::new(std::fs::read(pem_path).map_err(KeyringError::io("reading", pem_path))?);
        normalise_import(&text).map_err(|problem| KeyringError::Import {
            path: pem_path.to_owned(),
            problem,
        })
    }

    /// The key's id (its RFC 7638 thumbprint).
    pub fn kid(&self) -> &str {
        &self.kid
    }

    /// The modulus size.
    pub fn bits(&self) -> u32 {
        self.bits
    }

    /// The private key, PKCS#8 PEM. Store it only where private keys may go
    /// (a 0600 file, or encrypted).
    pub fn pem(&self) -> &str {
        &self.pem
    }

    /// Parses, self-tests and PEM-encodes a PKCS#8 DER key.
    fn from_pkcs8_der(der: &[u8]) -> Result<Self, String> {
        let parsed = ParsedKey::from_pkcs8_der(der)?;
        check_size(parsed.bits as usize).map_err(|e| e.to_string())?;
        let signer = Signer {
            key: parsed.signing,
            jwk: parsed.jwk,
        };
        signer.self_test().map_err(|e| e.to_string())?;
        let pem = pem::encode_config(
            &pem::Pem::new(PKCS8_TAG, der.to_vec()),
            pem::EncodeConfig::new().set_line_ending(pem::LineEnding::LF),
        );
        Ok(Self {
            kid: signer.jwk.kid,
            bits: parsed.bits,
            pem: Zeroizing::new(pem),
        })
    }
}

/// The PEM label of a PKCS#8 private key.
pub(crate) const PKCS8_TAG: &str = "PRIVATE KEY";

/// The sizes `generate` accepts.
pub const GENERATE_BITS: [usize; 3] = [2048, 3072, 4096];

fn check_size(bits: usize) -> Result<(), KeyringError> {
    if (crate::MIN_BITS..=crate::MAX_BITS).contains(&bits) {
        Ok(())
    } else {
        Err(KeyringError::UnsupportedKeySize {
            bits,
            allowed: "keys must have 2048 to 8192 bits",
        })
    }
}

/// Generates a new RSA key with the `rsa` crate.
pub(crate) fn generate(bits: usize) -> Result<NewKey, KeyringError> {
    use rsa::pkcs8::EncodePrivateKey as _;
    if !GENERATE_BITS.contains(&bits) {
        return Err(KeyringError::UnsupportedKeySize {
            bits,
            allowed: "generate makes 2048, 3072 or 4096-bit keys",
        });
    }
    let key = rsa::RsaPrivateKey::new(&mut rsa::rand_core::OsRng, bits)
        .map_err(|e| KeyringError::Generate(e.to_string()))?;
    let der = key
        .to_pkcs8_der()
        .map_err(|e| KeyringError::Generate(e.to_string()))?;
    NewKey::from_pkcs8_der(der.as_bytes()).map_err(KeyringError::Generate)
}

/// Turns an operator's PEM (PKCS#8 or PKCS#1) into a checked PKCS#8 key.
pub(crate) fn normalise_import(pem_text: &[u8]) -> Result<NewKey, String> {
    use rsa::pkcs1::DecodeRsaPrivateKey as _;
    use rsa::pkcs8::{DecodePrivateKey as _, EncodePrivateKey as _};
    let block = pem::parse(pem_text).map_err(|e| format!("not a PEM file ({e})"))?;
    let key = match block.tag() {
        PKCS8_TAG => rsa::RsaPrivateKey::from_pkcs8_der(block.contents())
            .map_err(|e| format!("not an RSA PKCS#8 private key ({e})"))?,
        "RSA PRIVATE KEY" => rsa::RsaPrivateKey::from_pkcs1_der(block.contents())
            .map_err(|e| format!("not an RSA PKCS#1 private key ({e})"))?,
        "ENCRYPTED PRIVATE KEY" => {
            return Err("encrypted keys are not supported; decrypt it first \
                 (e.g. `openssl pkey -in encrypted.pem -out plain.pem`)"
                .to_owned());
        }
        other => {
            return Err(format!(
                "holds a {other:?} block; expected an RSA private key \
                 (\"PRIVATE KEY\" or \"RSA PRIVATE KEY\")"
            ));
        }
    };
    {
        use rsa::traits::PublicKeyParts as _;
        check_size(key.size() * 8).map_err(|e| e.to_string())?;
    }
    let der = Zeroizing::new(
        key.to_pkcs8_der()
            .map_err(|e| format!("cannot convert to PKCS#8 ({e})"))?
            .as_bytes()
            .to_vec(),
    );
    NewKey::from_pkcs8_der(&der)
}

/// Parses a key file's contents (PKCS#8 PEM) into the backend.
pub(crate) fn parse_key_file(pem_text: &[u8]) -> Result<ParsedKey, String> {
    let block = pem::parse(pem_text).map_err(|e| format!("not a PEM file ({e})"))?;
    if block.tag() != PKCS8_TAG {
        return Err(format!(
            "holds a {:?} block; key files must be PKCS#8 (\"{PKCS8_TAG}\")",
            block.tag()
        ));
    }
    let der = Zeroizing::new(block.into_contents());
    ParsedKey::from_pkcs8_der(&der)
}

fn modulus_bits(n: &[u8]) -> u32 {
    match n.first() {
        Some(&first) => (n.len() as u32 - 1) * 8 + (8 - first.leading_zeros()),
        None => 0,
    }
}

/// The active key: it signs access tokens. Parsed once, when the keyring loads.
///
/// Its `Debug` shows the kid and size, never key material.
pub struct Signer {
    key: RsaSigningKey,
    jwk: Jwk,
}

impl Signer {
    pub(crate) fn new(parsed: ParsedKey) -> Self {
        Self {
            key: parsed.signing,
            jwk: parsed.jwk,
        }
    }

    /// The key id that goes in the JWS header.
    pub fn kid(&self) -> &str {
        &self.jwk.kid
    }

    /// The public half, as published.
    pub fn jwk(&self) -> &Jwk {
        &self.jwk
    }

    /// A raw RS256 signature over `message`.
    pub fn sign(&self, message: &[u8]) -> Result<Vec<u8>, SignError> {
        self.key.sign_rs256(message)
    }

    /// A compact JWS (RFC 7515 §7.1): header `{"alg":"RS256","kid":..,"typ":..}`,
    /// the given JSON payload, and the signature, each base64url.
    pub fn sign_jwt(&self, typ: &str, payload_json: &[u8]) -> Result<String, SignError> {
        // `typ` is escaped by serde_json; the kid is base64url and needs no escaping.
        let typ = serde_json::to_string(typ).map_err(|_| SignError)?;
        let header = format!(
            r#"{{"alg":"{}","kid":"{}","typ":{typ}}}"#,
            crate::ALG,
            self.kid()
        );
        let mut token = String::with_capacity(
            (header.len() + payload_json.len()) * 4 / 3 + self.key_len_b64() + 8,
        );
        token.push_str(&b64url(header.as_bytes()));
        token.push('.');
        token.push_str(&b64url(payload_json));
        let signature = self.sign(token.as_bytes())?;
        token.push('.');
        token.push_str(&b64url(&signature));
        Ok(token)
    }

    fn key_len_b64(&self) -> usize {
        self.jwk.n.len()
    }

    /// Signs a fixed message and verifies it with the public JWK: proves the key
    /// pair is whole before it is written or used.
    pub(crate) fn self_test(&self) -> Result<(), KeyringError> {
        use base64::Engine as _;
        let failed = || KeyringError::SelfTestFailed {
            kid: self.kid().to_owned(),
        };
        let decode = |s: &str| {
            base64::engine::general_purpose::URL_SAFE_NO_PAD
                .decode(s)
                .map_err(|_| failed())
        };
        let message = b"tessera keyring self-test";
        let signature = self.sign(message).map_err(|_| failed())?;
        let (n, e) = (decode(&self.jwk.n)?, decode(&self.jwk.e)?);
        if verify_rs256(&n, &e, message, &signature) {
            Ok(())
        } else {
            Err(failed())
        }
    }
}

impl fmt::Debug for Signer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Signer")
            .field("kid", &self.kid())
            .field("alg", &crate::ALG)
            .field("key", &self.key)
            .finish()
    }
}
