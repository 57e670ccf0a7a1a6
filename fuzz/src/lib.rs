//! What the fuzz targets share: three fixed key pairs (one per algorithm, the
//! verifier's test fixtures), signing with them, a verifier that trusts
//! exactly them, the independent implementation (`jsonwebtoken`) the
//! differential check asks, and the input encodings the targets and the seed
//! writer agree on.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::sync::{Arc, OnceLock};

use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::signature::{self, EcdsaKeyPair, Ed25519KeyPair, RsaKeyPair};
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde_json::{Value, json};
use tessera_verifier::{JwksSource, KeySet, ManualClock, Verifier, VerifierConfig};

/// The issuer every fixed token names.
pub const ISSUER: &str = "https://issuer.test";
/// The audience every fixed token names.
pub const AUDIENCE: &str = "api";
/// The verifier's clock: every target runs at this instant.
pub const NOW: i64 = 1_800_000_000;
/// The algorithms the verifier allows (all three).
pub const ALGS: [&str; 3] = ["RS256", "ES256", "EdDSA"];

const FIXTURES_RSA_DER: &[u8] =
    include_bytes!("../../crates/tessera-verifier/tests/fixtures/test_ours.pk8.der");
const FIXTURES_RSA_JWKS: &str =
    include_str!("../../crates/tessera-verifier/tests/fixtures/test_keys.jwk.json");
const FIXTURES_ES256: &str =
    include_str!("../../crates/tessera-verifier/tests/fixtures/es256_tessera.json");
const FIXTURES_ED25519: &str =
    include_str!("../../crates/tessera-verifier/tests/fixtures/rfc8037_A4.json");

/// One of the three fixed signing keys.
pub enum Key {
    /// RSA-2048 (`test-ours`).
    Rsa(RsaKeyPair),
    /// P-256 (`es-test`).
    Ec(EcdsaKeyPair),
    /// Ed25519, RFC 8037's published test key (`ed-test` here).
    Ed(Ed25519KeyPair),
}

/// The fixed keys: their algorithm, kid, public JWK and private half.
pub struct Keys {
    /// `(alg, kid, public JWK, key)` for RS256, ES256 and EdDSA, in that order.
    pub keys: Vec<(&'static str, &'static str, Value, Key)>,
}

impl Keys {
    /// The fixed keys, parsed once.
    pub fn get() -> &'static Keys {
        static KEYS: OnceLock<Keys> = OnceLock::new();
        KEYS.get_or_init(|| {
            let rsa_jwk = serde_json::from_str::<Value>(FIXTURES_RSA_JWKS).unwrap()["ours"].clone();
            let es = serde_json::from_str::<Value>(FIXTURES_ES256).unwrap();
            let es_der = URL_SAFE_NO_PAD
                .decode(es["private_key_pkcs8_base64url"].as_str().unwrap())
                .unwrap();
            let ed = serde_json::from_str::<Value>(FIXTURES_ED25519).unwrap();
            let ed_private = &ed["jwk_private_published_test_key"];
            let b = |v: &Value| URL_SAFE_NO_PAD.decode(v.as_str().unwrap()).unwrap();
            let ed_key = Ed25519KeyPair::from_seed_and_public_key(
                &b(&ed_private["d"]),
                &b(&ed_private["x"]),
            )
            .unwrap();
            let mut ed_jwk = ed["jwk"].clone();
            ed_jwk["kid"] = json!("ed-test");
            Keys {
                keys: vec![
                    (
                        "RS256",
                        "test-ours",
                        rsa_jwk,
                        Key::Rsa(RsaKeyPair::from_pkcs8(FIXTURES_RSA_DER).unwrap()),
                    ),
                    (
                        "ES256",
                        "es-test",
                        es["jwk"].clone(),
                        Key::Ec(
                            EcdsaKeyPair::from_pkcs8(
                                &signature::ECDSA_P256_SHA256_FIXED_SIGNING,
                                &es_der,
                            )
                            .unwrap(),
                        ),
                    ),
                    ("EdDSA", "ed-test", ed_jwk, Key::Ed(ed_key)),
                ],
            }
        })
    }

    /// The key for `selector` (any byte: RS256, ES256, EdDSA in turn).
    pub fn pick(&self, selector: u8) -> &(&'static str, &'static str, Value, Key) {
        &self.keys[usize::from(selector) % self.keys.len()]
    }

    /// The JWKS of all three public keys.
    pub fn jwks(&self) -> Value {
        json!({"keys": self.keys.iter().map(|(_, _, jwk, _)| jwk.clone()).collect::<Vec<_>>()})
    }

    /// The verifier's key set of all three.
    pub fn key_set(&self) -> KeySet {
        let (set, skipped) =
            KeySet::from_jwks_json(self.jwks().to_string().as_bytes(), &ALGS).unwrap();
        assert!(skipped.is_empty(), "{skipped:?}");
        set
    }
}

/// `message` signed with `key`, in JWS form (RSA PKCS#1 v1.5, ECDSA `r || s`,
/// Ed25519).
pub fn sign(key: &Key, message: &[u8]) -> Vec<u8> {
    match key {
        Key::Rsa(pair) => {
            let mut sig = vec![0; pair.public_modulus_len()];
            pair.sign(
                &signature::RSA_PKCS1_SHA256,
                &SystemRandom::new(),
                message,
                &mut sig,
            )
            .unwrap();
            sig
        }
        Key::Ec(pair) => pair
            .sign(&SystemRandom::new(), message)
            .unwrap()
            .as_ref()
            .to_vec(),
        Key::Ed(pair) => pair.sign(message).as_ref().to_vec(),
    }
}

/// A compact JWS of `header` and `payload` (raw bytes, base64url-encoded
/// here) signed with `key`.
pub fn compact(key: &Key, header: &[u8], payload: &[u8]) -> String {
    let input = format!(
        "{}.{}",
        URL_SAFE_NO_PAD.encode(header),
        URL_SAFE_NO_PAD.encode(payload)
    );
    let sig = sign(key, input.as_bytes());
    format!("{input}.{}", URL_SAFE_NO_PAD.encode(sig))
}

/// The header Tessera's issuer writes for an access token.
pub fn access_header(alg: &str, kid: &str) -> Vec<u8> {
    json!({"alg": alg, "typ": "at+jwt", "kid": kid})
        .to_string()
        .into_bytes()
}

/// Claims the verifier accepts at [`NOW`].
pub fn good_claims() -> Value {
    json!({
        "iss": ISSUER, "sub": "user-1", "aud": AUDIENCE, "exp": NOW + 600,
        "iat": NOW - 10, "jti": "jti-1", "client_id": "web", "scope": "profile",
        "roles": ["user"], "sid": "sid-1",
    })
}

/// The `verify_token` input encodings (the first byte chooses):
/// - `0`: the rest is the token, as text;
/// - `1`: `[key selector][header length h][h header bytes][payload bytes]`,
///   signed here with the chosen key (an empty header: the issuer's own).
pub fn token_from_input(data: &[u8]) -> Option<String> {
    let (&mode, rest) = data.split_first()?;
    match mode % 2 {
        0 => std::str::from_utf8(rest).ok().map(str::to_owned),
        _ => {
            let (&selector, rest) = rest.split_first()?;
            let (&h, rest) = rest.split_first()?;
            let h = usize::from(h).min(rest.len());
            let (header, payload) = rest.split_at(h);
            let (alg, kid, _, key) = Keys::get().pick(selector);
            let header = if header.is_empty() {
                access_header(alg, kid)
            } else {
                header.to_vec()
            };
            Some(compact(key, &header, payload))
        }
    }
}

/// The inverse of [`token_from_input`]'s signing mode, for seeds.
pub fn signed_input(selector: u8, header: &[u8], payload: &[u8]) -> Vec<u8> {
    let mut out = vec![1, selector, u8::try_from(header.len()).unwrap()];
    out.extend_from_slice(header);
    out.extend_from_slice(payload);
    out
}

/// A verifier for [`ISSUER`] and [`AUDIENCE`] trusting the fixed keys, at
/// [`NOW`]; `cached`: with the verified-token cache.
pub fn verifier(cached: bool) -> Verifier {
    let mut config = VerifierConfig::new(ISSUER, [AUDIENCE])
        .with_jwks(JwksSource::Static(Keys::get().key_set()));
    config.algorithms = ALGS.iter().map(|a| (*a).to_owned()).collect();
    if !cached {
        config.token_cache = None;
    }
    Verifier::start(config, Arc::new(ManualClock::new(NOW))).unwrap()
}

/// A single-threaded runtime for the targets' async calls.
pub fn runtime() -> &'static tokio::runtime::Runtime {
    static RT: OnceLock<tokio::runtime::Runtime> = OnceLock::new();
    RT.get_or_init(|| {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap()
    })
}

/// The independent implementation's verdict on a token Tessera accepted:
/// the `jsonwebtoken` crate verifies its signature with the JWK of its `kid`
/// as its `alg` (its own base64url, header and JSON parsing) and returns the
/// claims it read. Time, issuer and audience are not asked of it: those are
/// Tessera's policy, and its clock is not ours.
pub fn independent_claims(token: &str) -> Result<Value, String> {
    let header = jsonwebtoken::decode_header(token).map_err(|e| format!("header: {e}"))?;
    let kid = header.kid.ok_or("no kid")?;
    let (_, _, jwk, _) = Keys::get()
        .keys
        .iter()
        .find(|(_, k, _, _)| *k == kid)
        .ok_or("unknown kid")?;
    let jwk: jsonwebtoken::jwk::Jwk =
        serde_json::from_value(jwk.clone()).map_err(|e| format!("jwk: {e}"))?;
    let key = jsonwebtoken::DecodingKey::from_jwk(&jwk).map_err(|e| format!("key: {e}"))?;
    let mut validation = jsonwebtoken::Validation::new(header.alg);
    validation.validate_exp = false;
    validation.validate_nbf = false;
    validation.validate_aud = false;
    validation.required_spec_claims.clear();
    jsonwebtoken::decode::<Value>(token, &key, &validation)
        .map(|data| data.claims)
        .map_err(|e| format!("{e:?}"))
}

/// The `feed_document` input encodings (the first byte chooses):
/// - `0`: the rest is up to three documents as text, one per line;
/// - `1`: `[key selector]` then up to three payloads, one per line, each
///   signed here as a feed document (`typ` `revocations+jwt`).
pub fn feed_documents_from_input(data: &[u8]) -> Option<Vec<String>> {
    let (&mode, rest) = data.split_first()?;
    let docs = match mode % 2 {
        0 => std::str::from_utf8(rest)
            .ok()?
            .split('\n')
            .take(3)
            .map(str::to_owned)
            .collect(),
        _ => {
            let (&selector, rest) = rest.split_first()?;
            let (alg, kid, _, key) = Keys::get().pick(selector);
            let header = json!({"alg": alg, "typ": "revocations+jwt", "kid": kid}).to_string();
            rest.split(|b| *b == b'\n')
                .take(3)
                .map(|payload| compact(key, header.as_bytes(), payload))
                .collect()
        }
    };
    Some(docs)
}

/// The confidential service client the issuer targets authenticate as.
pub const SERVICE_CLIENT: &str = "reports-job";
/// Its secret.
pub const SERVICE_SECRET: &str = "fuzz-secret-fuzz-secret-fuzz-secret-0123";
/// The browser app registered for the code flow.
pub const SPA_CLIENT: &str = "fuzz-spa";
/// Its redirect URI.
pub const SPA_REDIRECT: &str = "http://127.0.0.1:9/cb";
/// The user (password `correct horse`).
pub const USER: &str = "alice";

/// An issuer on SQLite in a temporary directory, with a user, a service
/// client and a browser app, a logged-out session (so the feed has entries),
/// and Argon2 at its cheapest (the targets fuzz parsing, not hashing).
pub struct IssuerHarness {
    /// The routes with the service's edge layers.
    pub app: axum::Router,
    _dir: tempfile::TempDir,
}

/// The issuer harness, built once per process.
pub fn issuer() -> &'static IssuerHarness {
    static HARNESS: OnceLock<IssuerHarness> = OnceLock::new();
    HARNESS.get_or_init(|| runtime().block_on(build_issuer()))
}

async fn build_issuer() -> IssuerHarness {
    use tessera_issuer::clients::{self, Client, ClientKind};
    use tessera_issuer::passwords::{Hasher, Password, random_token};

    let dir = tempfile::tempdir().unwrap();
    let keys = tessera_keyring::KeyDir::new(dir.path().join("keys"));
    keys.init(tessera_keyring::Algorithm::Es256).unwrap();
    let url = format!("sqlite://{}", dir.path().join("fuzz.db").display());
    let db = tessera_issuer::db::Db::connect(&url).await.unwrap();
    tessera_issuer::service::clients::bootstrap(&db, "tessera-web", 0, true)
        .await
        .unwrap();
    let hasher = Hasher::with_params(8, 1, 1, 1).unwrap();
    let hash = hasher.hash(&Password::new("correct horse".into())).unwrap();
    db.add_user(&random_token(16), USER, &hash, &["user".into()], 0)
        .await
        .unwrap();
    let service = Client {
        kind: ClientKind::Confidential,
        grant_types: vec!["client_credentials".into()],
        scopes: vec!["reports:read".into()],
        default_scope: vec!["reports:read".into()],
        secret_sha256: clients::decode_hash(&clients::secret_hash_text(SERVICE_SECRET)),
        ..clients::login_client(SERVICE_CLIENT, 0)
    };
    db.add_client(&service).await.unwrap();
    let spa = Client {
        kind: ClientKind::Public,
        grant_types: vec!["authorization_code".into(), "refresh_token".into()],
        scopes: vec!["openid".into(), "profile".into()],
        default_scope: vec!["openid".into()],
        redirect_uris: vec![SPA_REDIRECT.into()],
        ..clients::login_client(SPA_CLIENT, 0)
    };
    clients::check(&spa).unwrap();
    db.add_client(&spa).await.unwrap();
    let settings = tessera_issuer::tokens::TokenSettings {
        issuer: ISSUER.into(),
        audiences: vec![AUDIENCE.into()],
        access_token_lifetime: std::time::Duration::from_secs(900),
        refresh_idle_lifetime: std::time::Duration::from_secs(86400),
        refresh_absolute_lifetime: std::time::Duration::from_secs(86400),
        jwks_cache_lifetime: std::time::Duration::from_secs(300),
        login_client: "tessera-web".to_owned(),
        refresh_retry_window: std::time::Duration::from_secs(10),
    };
    let keys = Arc::new(tessera_issuer::keys::KeyHandle::load(keys).unwrap());
    let service = tessera_issuer::service::Issuer::new(
        keys,
        db,
        hasher,
        Arc::new(tessera_keyring::SystemClock),
        settings,
    )
    .with_throttle(tessera_issuer::throttle::Throttle::new(u32::MAX, u32::MAX));
    let state = tessera_issuer::http::AppState::new(service);
    let app =
        tessera_issuer::http::with_edge_layers(tessera_issuer::http::routes(state.clone()), state);
    // A session logged in and out: the feed then has entries to page through.
    let login = request(
        "POST",
        "/login",
        &[("content-type", "application/json")],
        br#"{"username":"alice","password":"correct horse"}"#.to_vec(),
    );
    let (status, body) = send(&app, login).await;
    assert_eq!(status, 200, "{}", String::from_utf8_lossy(&body));
    let access = serde_json::from_slice::<Value>(&body).unwrap()["access_token"]
        .as_str()
        .unwrap()
        .to_owned();
    let bearer = format!("Bearer {access}");
    let logout = request("POST", "/logout", &[("authorization", &bearer)], Vec::new());
    let (status, body) = send(&app, logout).await;
    assert!(
        status < 300,
        "logout: {status} {}",
        String::from_utf8_lossy(&body)
    );
    IssuerHarness { app, _dir: dir }
}

/// A request from a loopback client (as the listener would mark it).
pub fn request(
    method: &str,
    uri: &str,
    headers: &[(&str, &str)],
    body: Vec<u8>,
) -> axum::http::Request<axum::body::Body> {
    let mut builder = axum::http::Request::builder().method(method).uri(uri);
    for (name, value) in headers {
        builder = builder.header(*name, *value);
    }
    let mut request = builder.body(axum::body::Body::from(body)).unwrap();
    request
        .extensions_mut()
        .insert(axum::extract::ConnectInfo(std::net::SocketAddr::from((
            [127, 0, 0, 1],
            40000,
        ))));
    request
}

/// Sends `request` through `app`; the status and the whole body.
pub async fn send(
    app: &axum::Router,
    request: axum::http::Request<axum::body::Body>,
) -> (u16, Vec<u8>) {
    use http_body_util::BodyExt as _;
    use tower::ServiceExt as _;
    let response = app.clone().oneshot(request).await.unwrap();
    let status = response.status().as_u16();
    let body = response.into_body().collect().await.unwrap().to_bytes();
    (status, body.to_vec())
}

/// `SERVICE_CLIENT`'s HTTP Basic credentials.
pub fn service_basic() -> String {
    format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD
            .encode(format!("{SERVICE_CLIENT}:{SERVICE_SECRET}"))
    )
}
