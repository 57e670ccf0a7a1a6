//! A stand-in issuer for verifiers: a JWKS (and RFC 8414 metadata) server on
//! a free loopback port that counts its requests and can be made to fail.

use std::sync::Arc;

use serde_json::{Value, json};

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
    /// Where it listens.
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
    /// Starts serving `jwks` (its cache lifetime 300 s).
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

    /// The server's base URL (the issuer URL its metadata names by default).
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }
    /// The JWKS URL.
    pub fn jwks_url(&self) -> String {
        format!("http://{}/jwks.json", self.addr)
    }
    /// Serves `jwks` from now on.
    pub fn set_jwks(&self, jwks: Value) {
        *self.state.jwks.lock().unwrap() = jwks;
    }
    /// Answers this way from now on.
    pub fn set_mode(&self, mode: Mode) {
        *self.state.mode.lock().unwrap() = mode;
    }
    /// The `max-age` of the answers from now on.
    pub fn set_max_age(&self, secs: u64) {
        self.state
            .max_age
            .store(secs, std::sync::atomic::Ordering::SeqCst);
    }
    /// The `issuer` the metadata names from now on.
    pub fn set_metadata_issuer(&self, issuer: &str) {
        *self.state.metadata_issuer.lock().unwrap() = Some(issuer.to_owned());
    }
    /// How many JWKS requests came.
    pub fn jwks_requests(&self) -> usize {
        self.state
            .jwks_requests
            .load(std::sync::atomic::Ordering::SeqCst)
    }
    /// How many of them got a 304.
    pub fn not_modified(&self) -> usize {
        self.state
            .not_modified
            .load(std::sync::atomic::Ordering::SeqCst)
    }
    /// How many metadata requests came.
    pub fn metadata_requests(&self) -> usize {
        self.state
            .metadata_requests
            .load(std::sync::atomic::Ordering::SeqCst)
    }
}
