//! Private keys: generation, import, parsing, and the signer.
//!
//! The `rsa` crate appears only in [`generate`], [`normalise_import`] and
//! [`pkcs8_algorithm`]: it makes new RSA keys, converts PKCS#1 to PKCS#8, and
//! reads which algorithm a PKCS#8 document is for. P-256 and Ed25519 keys are
//! made by the crypto backend. Once a key is PKCS#8 it is parsed by the
//! backend and never touched by `rsa` again.

use std::fmt;

use zeroize::Zeroizing;

use crate::alg::Algorithm;
use crate::crypto::{SignError, SigningKey};
use crate::error::KeyringError;
use crate::jwk::{Jwk, b64url};

/// A private key parsed once into the crypto backend, with its public JWK.
pub(crate) struct ParsedKey {
    pub(crate) signing: SigningKey,
    pub(crate) jwk: Jwk,
    pub(crate) bits: u32,
}

impl ParsedKey {
    /// Parses PKCS#8 DER through the backend and derives the kid and size.
    pub(crate) fn from_pkcs8_der(der: &[u8]) -> Result<Self, String> {
        let alg = pkcs8_algorithm(der)?;
        let signing = SigningKey::from_pkcs8_der(alg, der).map_err(|e| {
            format!(
                "not a {} private key the crypto backend accepts ({e})",
                alg.key_type()
            )
        })?;
        let public = signing.public()?;
        let bits = match &public {
            crate::crypto::PublicKey::Rsa { n, .. } => modulus_bits(n),
            _ => alg.fixed_bits().unwrap_or(256),
        };
        let jwk = Jwk::of(&public);
        Ok(Self { signing, jwk, bits })
    }

    pub(crate) fn alg(&self) -> Algorithm {
        self.signing.alg()
    }
}

/// Which algorithm a PKCS#8 private key is for, from its algorithm
/// identifier: `rsaEncryption`, `id-ecPublicKey` on P-256, or `id-Ed25519`.
pub(crate) fn pkcs8_algorithm(der: &[u8]) -> Result<Algorithm, String> {
    use rsa::pkcs8::{ObjectIdentifier, PrivateKeyInfo};
    const RSA: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.113549.1.1.1");
    const EC: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.10045.2.1");
    const P256: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.10045.3.1.7");
    const ED25519: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.3.101.112");
    let info =
        PrivateKeyInfo::try_from(der).map_err(|e| format!("not a PKCS#8 private key ({e})"))?;
    let oid = info.algorithm.oid;
    if oid == RSA {
        Ok(Algorithm::Rs256)
    } else if oid == ED25519 {
        Ok(Algorithm::EdDsa)
    } else if oid == EC {
        match info.algorithm.parameters_oid() {
            Ok(curve) if curve == P256 => Ok(Algorithm::Es256),
            Ok(curve) => Err(format!(
                "an EC key on curve {curve}; only P-256 (ES256) is supported"
            )),
            Err(_) => {
                Err("an EC key without a named curve; only P-256 (ES256) is supported".to_owned())
            }
        }
    } else {
        Err(format!(
            "a key of algorithm {oid}; supported are RSA (RS256), EC P-256 (ES256) and Ed25519 (EdDSA)"
        ))
    }
}

/// What to make a new key as: an algorithm, and for RSA its size.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KeySpec {
    alg: Algorithm,
    bits: usize,
}

impl KeySpec {
    /// A key of `alg`; `rsa_bits` is the size of an RSA key and is ignored
    /// for the others.
    pub fn new(alg: Algorithm, rsa_bits: usize) -> Self {
        Self {
            alg,
            bits: rsa_bits,
        }
    }

    /// An RS256 key of `bits` bits.
    pub fn rsa(bits: usize) -> Self {
        Self::new(Algorithm::Rs256, bits)
    }

    /// The algorithm.
    pub fn alg(&self) -> Algorithm {
        self.alg
    }

    /// The size: the RSA size asked for, or the algorithm's fixed size.
    pub fn bits(&self) -> usize {
        self.alg.fixed_bits().map_or(self.bits, |b| b as usize)
    }
}

/// A number alone is an RSA size, as before keys had other algorithms.
impl From<usize> for KeySpec {
    fn from(bits: usize) -> Self {
        Self::rsa(bits)
    }
}

/// An algorithm alone: for RSA, the default size.
impl From<Algorithm> for KeySpec {
    fn from(alg: Algorithm) -> Self {
        Self::new(alg, crate::DEFAULT_BITS)
    }
}

/// A key ready to be stored in a keyring: generated, or imported and checked
/// (parsed by the crypto backend and self-tested). Its `Debug` shows the kid
/// and size only.
pub struct NewKey {
    pub(crate) kid: String,
    pub(crate) alg: Algorithm,
    pub(crate) bits: u32,
    /// PKCS#8 PEM, wiped from memory on drop.
    pub(crate) pem: Zeroizing<String>,
}

impl fmt::Debug for NewKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("NewKey")
            .field("kid", &self.kid)
            .field("alg", &self.alg)
            .field("bits", &self.bits)
            .finish_non_exhaustive()
    }
}

impl NewKey {
    /// Generates a new key: RSA (2048, 3072 or 4096 bits), P-256 or Ed25519.
    pub fn generate(spec: impl Into<KeySpec>) -> Result<Self, KeyringError> {
        generate(spec.into())
    }

    /// Reads an operator's private key: RSA (PKCS#8 or PKCS#1 PEM), EC P-256
    /// or Ed25519 (PKCS#8 PEM), converted to PKCS#8.
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

    /// The key's algorithm.
    pub fn alg(&self) -> Algorithm {
        self.alg
    }

    /// The size: the RSA modulus, or 256 for P-256 and Ed25519.
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
        if parsed.alg() == Algorithm::Rs256 {
            check_size(parsed.bits as usize).map_err(|e| e.to_string())?;
        }
        let (alg, bits) = (parsed.alg(), parsed.bits);
        let signer = Signer::new(parsed);
        signer.self_test().map_err(|e| e.to_string())?;
        let block = pem::Pem::new(PKCS8_TAG, der.to_vec());
        let pem = pem::encode_config(
            &block,
            pem::EncodeConfig::new().set_line_ending(pem::LineEnding::LF),
        );
        // The block's copy of the key is wiped too, not only the PEM text.
        drop(Zeroizing::new(block.into_contents()));
        Ok(Self {
            kid: signer.jwk.kid,
            alg,
            bits,
            pem: Zeroizing::new(pem),
        })
    }
}

/// The `typ` of access tokens (RFC 9068), whose header a signer keeps made.
const ACCESS_TYP: &str = "at+jwt";
/// The same, as a JSON string.
const ACCESS_TYP_JSON: &str = "\"at+jwt\"";

/// The base64url JWS header `{"alg":..,"kid":..,"typ":..}`; `typ_json` is
/// the `typ` as a JSON string, quotes included.
fn encoded_header(alg: Algorithm, kid: &str, typ_json: &str) -> String {
    let header = format!(
        r#"{{"alg":"{}","kid":"{kid}","typ":{typ_json}}}"#,
        alg.name()
    );
    b64url(header.as_bytes())
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

/// Generates a new key: RSA with the `rsa` crate, P-256 and Ed25519 with the
/// crypto backend.
pub(crate) fn generate(spec: KeySpec) -> Result<NewKey, KeyringError> {
    use rsa::pkcs8::EncodePrivateKey as _;
    if spec.alg() != Algorithm::Rs256 {
        let der = SigningKey::generate_pkcs8(spec.alg()).map_err(KeyringError::Generate)?;
        return NewKey::from_pkcs8_der(&der).map_err(KeyringError::Generate);
    }
    let bits = spec.bits();
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

/// Turns an operator's PEM (PKCS#8, or PKCS#1 for RSA) into a checked PKCS#8
/// key.
pub(crate) fn normalise_import(pem_text: &[u8]) -> Result<NewKey, String> {
    use rsa::pkcs1::DecodeRsaPrivateKey as _;
    use rsa::pkcs8::{DecodePrivateKey as _, EncodePrivateKey as _};
    let block = pem::parse(pem_text).map_err(|e| format!("not a PEM file ({e})"))?;
    let tag = block.tag().to_owned();
    // The decoded key, wiped from memory when this returns.
    let der = Zeroizing::new(block.into_contents());
    let key = match tag.as_str() {
        PKCS8_TAG if pkcs8_algorithm(&der)? != Algorithm::Rs256 => {
            // Already the form the keyring stores; the backend checks it.
            return NewKey::from_pkcs8_der(&der);
        }
        PKCS8_TAG => rsa::RsaPrivateKey::from_pkcs8_der(&der)
            .map_err(|e| format!("not an RSA PKCS#8 private key ({e})"))?,
        "EC PRIVATE KEY" => {
            return Err(
                "holds a SEC1 \"EC PRIVATE KEY\"; convert it to PKCS#8 first \
                 (`openssl pkcs8 -topk8 -nocrypt -in ec.pem -out key.pem`)"
                    .to_owned(),
            );
        }
        "RSA PRIVATE KEY" => rsa::RsaPrivateKey::from_pkcs1_der(&der)
            .map_err(|e| format!("not an RSA PKCS#1 private key ({e})"))?,
        "ENCRYPTED PRIVATE KEY" => {
            return Err("encrypted keys are not supported; decrypt it first \
                 (e.g. `openssl pkey -in encrypted.pem -out plain.pem`)"
                .to_owned());
        }
        other => {
            return Err(format!(
                "holds a {other:?} block; expected a private key \
                 (\"PRIVATE KEY\", or \"RSA PRIVATE KEY\" for RSA)"
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

/// The active key: it signs access tokens, ID tokens and the revocation
/// feed, with its own algorithm. Parsed once, when the keyring loads.
///
/// Its `Debug` shows the kid and algorithm, never key material.
pub struct Signer {
    key: SigningKey,
    jwk: Jwk,
    /// The base64url header of an access token (`typ` `at+jwt`), made once:
    /// the hot path's header never changes for a key.
    access_header: String,
}

impl Signer {
    pub(crate) fn new(parsed: ParsedKey) -> Self {
        let access_header = encoded_header(parsed.signing.alg(), &parsed.jwk.kid, ACCESS_TYP_JSON);
        Self {
            key: parsed.signing,
            jwk: parsed.jwk,
            access_header,
        }
    }

    /// The key id that goes in the JWS header.
    pub fn kid(&self) -> &str {
        &self.jwk.kid
    }

    /// The algorithm that goes in the JWS header.
    pub fn alg(&self) -> Algorithm {
        self.key.alg()
    }

    /// The public half, as published.
    pub fn jwk(&self) -> &Jwk {
        &self.jwk
    }

    /// A raw signature over `message`, with the key's algorithm.
    pub fn sign(&self, message: &[u8]) -> Result<Vec<u8>, SignError> {
        self.key.sign(message)
    }

    /// A compact JWS (RFC 7515 §7.1): header `{"alg":..,"kid":..,"typ":..}`,
    /// the given JSON payload, and the signature, each base64url.
    pub fn sign_jwt(&self, typ: &str, payload_json: &[u8]) -> Result<String, SignError> {
        use base64::Engine as _;
        let engine = &base64::engine::general_purpose::URL_SAFE_NO_PAD;
        let other;
        let header = if typ == ACCESS_TYP {
            &self.access_header
        } else {
            // `typ` escaped by serde_json; alg and kid (base64url) need none.
            let typ_json = serde_json::to_string(typ).map_err(|_| SignError)?;
            other = encoded_header(self.alg(), self.kid(), &typ_json);
            &other
        };
        // Exact: header, payload and signature in base64url, two dots.
        let b64_len = |n: usize| (4 * n).div_ceil(3);
        let mut token = String::with_capacity(
            header.len() + b64_len(payload_json.len()) + b64_len(self.key.signature_len()) + 2,
        );
        token.push_str(header);
        token.push('.');
        engine.encode_string(payload_json, &mut token);
        let signature = self.key.sign_with(token.as_bytes(), |s| engine.encode(s))?;
        token.push('.');
        token.push_str(&signature);
        Ok(token)
    }

    /// Signs a fixed message and verifies it with the public JWK: proves the key
    /// pair is whole before it is written or used.
    pub(crate) fn self_test(&self) -> Result<(), KeyringError> {
        let message = b"tessera keyring self-test";
        let whole = self
            .sign(message)
            .is_ok_and(|signature| self.jwk.verifies(message, &signature));
        if whole {
            Ok(())
        } else {
            Err(KeyringError::SelfTestFailed {
                kid: self.kid().to_owned(),
            })
        }
    }
}

impl fmt::Debug for Signer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Signer")
            .field("kid", &self.kid())
            .field("alg", &self.alg())
            .field("key", &self.key)
            .finish()
    }
}
