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

/// How the test JWKS server answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// The JWKS, with `max-age` and an ETag (304 on a match).
    Up,
    /// 500 to everything.
    Error,
    /// 200 with a body that is not a JWK set.
    Garbage,
    /// 200 with a set that has no usable key.
    NoUsableKeys,
    /// Like `Up`, after a delay.
    Slow(std::time::Duration),
}

#[derive(Debug)]
struct ServerState {
    jwks: std::sync::Mutex<Value>,
    mode: std::sync::Mutex<Mode>,
    max_age: std::sync::atomic::AtomicU64,
    jwks_requests: std::sync::atomic::AtomicUsize,
    not_modified: std::sync::atomic::AtomicUsize,
    metadata_requests: std::sync::atomic::AtomicUsize,
    metadata_issuer: std::sync::Mutex<Option<String>>,
}

/// A local JWKS (and RFC 8414 metadata) server on 127.0.0.1:0 that counts
/// requests. Dropping it stops it.
pub struct JwksServer {
    pub addr: std::net::SocketAddr,
    state: Arc<ServerState>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for JwksServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

fn etag_of(jwks: &Value) -> String {
    use std::hash::{Hash as _, Hasher as _};
    let mut h = std::collections::hash_map::DefaultHasher::new();
    jwks.to_string().hash(&mut h);
    format!("\"{:016x}\"", h.finish())
}

async fn serve_jwks(
    axum::extract::State(state): axum::extract::State<Arc<ServerState>>,
    headers: axum::http::HeaderMap,
) -> axum::response::Response {
    use axum::http::{StatusCode, header};
    use axum::response::IntoResponse as _;
    use std::sync::atomic::Ordering::SeqCst;
    state.jwks_requests.fetch_add(1, SeqCst);
    let mode = *state.mode.lock().unwrap();
    match mode {
        Mode::Error => return StatusCode::INTERNAL_SERVER_ERROR.into_response(),
        Mode::Garbage => return "<html>oops</html>".into_response(),
        Mode::NoUsableKeys => {
            return axum::Json(json!({"keys": [{"kty": "oct", "kid": "x", "k": "c2VjcmV0"}]}))
                .into_response();
        }
        Mode::Slow(delay) => tokio::time::sleep(delay).await,
        Mode::Up => {}
    }
    let jwks = state.jwks.lock().unwrap().clone();
    let etag = etag_of(&jwks);
    let cache = format!("public, max-age={}", state.max_age.load(SeqCst));
    let matches = headers
        .get(header::IF_NONE_MATCH)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v == etag);
    if matches {
        state.not_modified.fetch_add(1, SeqCst);
        return (
            StatusCode::NOT_MODIFIED,
            [(header::ETAG, etag), (header::CACHE_CONTROL, cache)],
        )
            .into_response();
    }
    (
        [(header::ETAG, etag), (header::CACHE_CONTROL, cache)],
        axum::Json(jwks),
    )
        .into_response()
}

async fn serve_metadata(
    axum::extract::State(state): axum::extract::State<Arc<ServerState>>,
    headers: axum::http::HeaderMap,
) -> axum::Json<Value> {
    let host = headers[axum::http::header::HOST]
        .to_str()
        .unwrap()
        .to_owned();
    state
        .metadata_requests
        .fetch_add(1, std::sync::atomic::Ordering::SeqCst);
    let issuer = state
        .metadata_issuer
        .lock()
        .unwrap()
        .clone()
        .unwrap_or(format!("http://{host}"));
    axum::Json(json!({"issuer": issuer, "jwks_uri": format!("http://{host}/jwks.json")}))
}

impl JwksServer {
    pub async fn start(jwks: Value) -> Self {
        let state = Arc::new(ServerState {
            jwks: std::sync::Mutex::new(jwks),
            mode: std::sync::Mutex::new(Mode::Up),
            max_age: std::sync::atomic::AtomicU64::new(300),
            jwks_requests: Default::default(),
            not_modified: Default::default(),
            metadata_requests: Default::default(),
            metadata_issuer: std::sync::Mutex::new(None),
        });
        let app = axum::Router::new()
            .route("/jwks.json", axum::routing::get(serve_jwks))
            .route(
                "/.well-known/oauth-authorization-server",
                axum::routing::get(serve_metadata),
            )
            .with_state(Arc::clone(&state));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let task = tokio::spawn(async move {
            axum::serve(listener, app).await.unwrap();
        });
        Self { addr, state, task }
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }
    pub fn jwks_url(&self) -> String {
        format!("http://{}/jwks.json", self.addr)
    }
    pub fn set_jwks(&self, jwks: Value) {
        *self.state.jwks.lock().unwrap() = jwks;
    }
    pub fn set_mode(&self, mode: Mode) {
        *self.state.mode.lock().unwrap() = mode;
    }
    pub fn set_max_age(&self, secs: u64) {
        self.state
            .max_age
            .store(secs, std::sync::atomic::Ordering::SeqCst);
    }
    pub fn set_metadata_issuer(&self, issuer: &str) {
        *self.state.metadata_issuer.lock().unwrap() = Some(issuer.to_owned());
    }
    pub fn jwks_requests(&self) -> usize {
        self.state
            .jwks_requests
            .load(std::sync::atomic::Ordering::SeqCst)
    }
    pub fn not_modified(&self) -> usize {
        self.state
            .not_modified
            .load(std::sync::atomic::Ordering::SeqCst)
    }
    pub fn metadata_requests(&self) -> usize {
        self.state
            .metadata_requests
            .load(std::sync::atomic::Ordering::SeqCst)
    }
}

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
