//! Test helpers: sign test tokens (and forgeries) with the fixture keys through
//! whichever crypto backend this build uses.

#![allow(
    dead_code,
    unreachable_pub,
    missing_docs,
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic
)]

use std::sync::Arc;

#[cfg(feature = "aws-lc-rs")]
use aws_lc_rs as backend;
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
#[cfg(all(feature = "ring", not(feature = "aws-lc-rs")))]
use ring as backend;
use serde_json::{Value, json};
use tessera_verifier::{JwksSource, KeySet, ManualClock, Verifier, VerifierConfig};

pub const ISSUER: &str = "https://issuer.test";
pub const AUDIENCE: &str = "api";
/// 2026-01-01T00:00:00Z
pub const NOW: i64 = 1_767_225_600;

pub fn fixture(name: &str) -> Vec<u8> {
    std::fs::read(format!(
        "{}/tests/fixtures/{name}",
        env!("CARGO_MANIFEST_DIR")
    ))
    .unwrap()
}

pub fn fixture_json(name: &str) -> Value {
    serde_json::from_slice(&fixture(name)).unwrap()
}

/// A fixture private key and its public JWK.
pub struct TestKey {
    pair: backend::signature::RsaKeyPair,
    pub jwk: Value,
}

impl TestKey {
    pub fn load(name: &str) -> Self {
        let der = fixture(&format!("test_{name}.pk8.der"));
        let pair = backend::signature::RsaKeyPair::from_pkcs8(&der).unwrap();
        let jwk = fixture_json("test_keys.jwk.json")[name].clone();
        Self { pair, jwk }
    }

    pub fn kid(&self) -> &str {
        self.jwk["kid"].as_str().unwrap()
    }

    fn rsa(&self, alg: &'static dyn backend::signature::RsaEncoding, input: &[u8]) -> Vec<u8> {
        // The modulus length, from the JWK (the backends spell it differently).
        let n = URL_SAFE_NO_PAD
            .decode(self.jwk["n"].as_str().unwrap())
            .unwrap();
        let mut sig = vec![0u8; n.len()];
        self.pair
            .sign(alg, &backend::rand::SystemRandom::new(), input, &mut sig)
            .unwrap();
        sig
    }

    /// A compact JWS over the exact header and payload bytes given.
    pub fn sign_bytes(&self, header: &[u8], payload: &[u8]) -> String {
        self.sign_bytes_with(&backend::signature::RSA_PKCS1_SHA256, header, payload)
    }

    pub fn sign_bytes_with(
        &self,
        alg: &'static dyn backend::signature::RsaEncoding,
        header: &[u8],
        payload: &[u8],
    ) -> String {
        let input = format!("{}.{}", b64(header), b64(payload));
        let sig = self.rsa(alg, input.as_bytes());
        format!("{input}.{}", b64(&sig))
    }

    pub fn sign(&self, header: &Value, claims: &Value) -> String {
        self.sign_bytes(header.to_string().as_bytes(), claims.to_string().as_bytes())
    }

    pub fn sign_rs384(&self, header: &Value, claims: &Value) -> String {
        self.sign_bytes_with(
            &backend::signature::RSA_PKCS1_SHA384,
            header.to_string().as_bytes(),
            claims.to_string().as_bytes(),
        )
    }

    pub fn sign_ps256(&self, header: &Value, claims: &Value) -> String {
        self.sign_bytes_with(
            &backend::signature::RSA_PSS_SHA256,
            header.to_string().as_bytes(),
            claims.to_string().as_bytes(),
        )
    }
}

/// A P-256 or Ed25519 test key and its public JWK (kid `es-test` or
/// `ed-test`): the ES256 vector's key, and RFC 8037 A.2's published key.
pub enum CurveKey {
    Es256(backend::signature::EcdsaKeyPair, Value),
    EdDsa(backend::signature::Ed25519KeyPair, Value),
}

impl CurveKey {
    pub fn es256() -> Self {
        let vector = fixture_json("es256_tessera.json");
        let der = URL_SAFE_NO_PAD
            .decode(vector["private_key_pkcs8_base64url"].as_str().unwrap())
            .unwrap();
        let alg = &backend::signature::ECDSA_P256_SHA256_FIXED_SIGNING;
        #[cfg(feature = "aws-lc-rs")]
        let pair = backend::signature::EcdsaKeyPair::from_pkcs8(alg, &der).unwrap();
        #[cfg(all(feature = "ring", not(feature = "aws-lc-rs")))]
        let pair = backend::signature::EcdsaKeyPair::from_pkcs8(
            alg,
            &der,
            &backend::rand::SystemRandom::new(),
        )
        .unwrap();
        Self::Es256(pair, vector["jwk"].clone())
    }

    pub fn eddsa() -> Self {
        let vector = fixture_json("rfc8037_A4.json");
        let private = &vector["jwk_private_published_test_key"];
        let seed = URL_SAFE_NO_PAD
            .decode(private["d"].as_str().unwrap())
            .unwrap();
        let public = URL_SAFE_NO_PAD
            .decode(private["x"].as_str().unwrap())
            .unwrap();
        let pair =
            backend::signature::Ed25519KeyPair::from_seed_and_public_key(&seed, &public).unwrap();
        let mut jwk = vector["jwk"].clone();
        jwk["kid"] = json!("ed-test");
        Self::EdDsa(pair, jwk)
    }

    pub fn jwk(&self) -> &Value {
        match self {
            Self::Es256(_, jwk) | Self::EdDsa(_, jwk) => jwk,
        }
    }

    pub fn kid(&self) -> &str {
        self.jwk()["kid"].as_str().unwrap()
    }

    pub fn alg(&self) -> &'static str {
        match self {
            Self::Es256(..) => "ES256",
            Self::EdDsa(..) => "EdDSA",
        }
    }

    /// The raw signature over `input` (ES256: the 64-byte `r || s`).
    pub fn signature(&self, input: &[u8]) -> Vec<u8> {
        match self {
            Self::Es256(pair, _) => pair
                .sign(&backend::rand::SystemRandom::new(), input)
                .unwrap()
                .as_ref()
                .to_vec(),
            Self::EdDsa(pair, _) => pair.sign(input).as_ref().to_vec(),
        }
    }

    /// A compact JWS over `header` and `claims`.
    pub fn sign(&self, header: &Value, claims: &Value) -> String {
        let input = format!(
            "{}.{}",
            b64(header.to_string().as_bytes()),
            b64(claims.to_string().as_bytes())
        );
        let sig = self.signature(input.as_bytes());
        format!("{input}.{}", b64(&sig))
    }

    /// The usual access-token header with this key's alg and kid.
    pub fn header(&self) -> Value {
        json!({"alg": self.alg(), "typ": "at+jwt", "kid": self.kid()})
    }
}

pub fn b64(bytes: &[u8]) -> String {
    URL_SAFE_NO_PAD.encode(bytes)
}

/// An HMAC-signed token with `secret` as the key (the classic public-key-as-
/// HMAC-secret forgery).
pub fn hmac_token(bits: u16, secret: &[u8], header: &Value, claims: &Value) -> String {
    let alg = match bits {
        256 => backend::hmac::HMAC_SHA256,
        384 => backend::hmac::HMAC_SHA384,
        _ => backend::hmac::HMAC_SHA512,
    };
    let input = format!(
        "{}.{}",
        b64(header.to_string().as_bytes()),
        b64(claims.to_string().as_bytes())
    );
    let tag = backend::hmac::sign(&backend::hmac::Key::new(alg, secret), input.as_bytes());
    format!("{input}.{}", b64(tag.as_ref()))
}

pub fn header(kid: &str) -> Value {
    json!({"alg": "RS256", "typ": "at+jwt", "kid": kid})
}

/// Typical Tessera access-token claims, valid at [`NOW`].
pub fn claims() -> Value {
    json!({
        "iss": ISSUER,
        "sub": "u-1234",
        "aud": AUDIENCE,
        "exp": NOW + 900,
        "iat": NOW,
        "nbf": NOW,
        "jti": "j-1",
        "client_id": "tessera",
        "sid": "s-1",
        "scope": "profile",
        "roles": ["user"],
        "preferred_username": "alice",
    })
}

/// `claims()` with some members replaced (`null` removes one).
pub fn claims_with(changes: Value) -> Value {
    let mut c = claims();
    for (k, v) in changes.as_object().unwrap() {
        if v.is_null() {
            c.as_object_mut().unwrap().remove(k);
        } else {
            c[k] = v.clone();
        }
    }
    c
}

pub fn jwks_of(keys: &[&TestKey]) -> Value {
    json!({"keys": keys.iter().map(|k| k.jwk.clone()).collect::<Vec<_>>()})
}

/// A verifier with static keys (ours only) and a manual clock at [`NOW`].
pub fn static_verifier(config: impl FnOnce(&mut VerifierConfig)) -> (Verifier, Arc<ManualClock>) {
    let ours = TestKey::load("ours");
    let (set, _) =
        KeySet::from_jwks_json(jwks_of(&[&ours]).to_string().as_bytes(), &["RS256"]).unwrap();
    let mut cfg = VerifierConfig::new(ISSUER, [AUDIENCE]).with_jwks(JwksSource::Static(set));
    config(&mut cfg);
    let clock = Arc::new(ManualClock::new(NOW));
    (Verifier::start(cfg, clock.clone()).unwrap(), clock)
}

pub use tessera_testkit::jwks::{JwksServer, Mode};

/// A verifier fetching from `url` (JWKS URL), checking every 20 ms whether a
/// refresh is due, on a manual clock at [`NOW`].
pub fn fetching_verifier(
    jwks_url: &str,
    config: impl FnOnce(&mut VerifierConfig),
) -> (Verifier, Arc<ManualClock>) {
    let mut cfg =
        VerifierConfig::new(ISSUER, [AUDIENCE]).with_jwks(JwksSource::Url(jwks_url.to_owned()));
    cfg.refresh_check_interval = std::time::Duration::from_millis(20);
    cfg.fetch_timeout = std::time::Duration::from_secs(3);
    config(&mut cfg);
    let clock = Arc::new(ManualClock::new(NOW));
    (Verifier::start(cfg, clock.clone()).unwrap(), clock)
}

/// Polls `f` every 10 ms for up to 5 s.
pub async fn eventually(what: &str, mut f: impl FnMut() -> bool) {
    for _ in 0..500 {
        if f() {
            return;
        }
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    panic!("timed out waiting for: {what}");
}
