//! The HTTP edge: routes, and the one place errors become status codes.

use std::sync::Arc;
use std::time::Duration;

use axum::Json;
use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use serde_json::json;
use tower_http::sensitive_headers::SetSensitiveRequestHeadersLayer;
use tower_http::trace::TraceLayer;

use crate::db::Db;
use crate::keys::KeyHandle;

/// What every handler can reach.
#[derive(Debug, Clone)]
pub struct AppState {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    keys: Arc<KeyHandle>,
    db: Db,
    issuer: String,
    jwks_cache_control: HeaderValue,
    discovery: Bytes,
}

impl AppState {
    /// The state for an issuer whose public URL is `issuer` (no trailing slash).
    /// The discovery document is prepared here, once.
    pub fn new(
        keys: Arc<KeyHandle>,
        db: Db,
        issuer: String,
        jwks_cache_lifetime: Duration,
    ) -> Self {
        let discovery = json!({
            "issuer": issuer,
            "jwks_uri": format!("{issuer}/.well-known/jwks.json"),
            "token_endpoint": format!("{issuer}/token"),
            "revocation_endpoint": format!("{issuer}/revoke"),
            "grant_types_supported": ["password", "refresh_token"],
            "response_types_supported": [],
            "token_endpoint_auth_methods_supported": ["none"],
            "revocation_endpoint_auth_methods_supported": ["none"],
            // Not an RFC 8414 field: the algorithm of the access tokens (RFC 9068).
            "access_token_signing_alg_values_supported": [tessera_keyring::ALG],
        });
        let jwks_cache_control = HeaderValue::from_str(&format!(
            "public, max-age={}",
            jwks_cache_lifetime.as_secs()
        ))
        .unwrap_or(HeaderValue::from_static("public, max-age=300"));
        Self {
            inner: Arc::new(Inner {
                keys,
                db,
                issuer,
                jwks_cache_control,
                discovery: Bytes::from(discovery.to_string()),
            }),
        }
    }

    /// The live keyring.
    pub fn keys(&self) -> &Arc<KeyHandle> {
        &self.inner.keys
    }

    /// The issuer URL (`iss`).
    pub fn issuer(&self) -> &str {
        &self.inner.issuer
    }
}

/// All routes, with the layers every request passes.
pub fn router(state: AppState) -> Router {
    Router::new()
        .route("/.well-known/jwks.json", get(jwks))
        .route("/.well-known/oauth-authorization-server", get(discovery))
        .route("/.well-known/openid-configuration", get(discovery))
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .fallback(not_found)
        .with_state(state)
        .layer(TraceLayer::new_for_http())
        // Before tracing sees the request: bearer tokens never reach a log.
        .layer(SetSensitiveRequestHeadersLayer::new([
            header::AUTHORIZATION,
        ]))
}

/// `GET /.well-known/jwks.json`: bytes prepared at (re)load, a strong ETag, 304
/// on `If-None-Match`.
async fn jwks(State(state): State<AppState>, headers: HeaderMap) -> Response {
    let snapshot = state.keys().current();
    let etag = snapshot.etag();
    let cache = [
        (
            header::CACHE_CONTROL,
            state.inner.jwks_cache_control.clone(),
        ),
        (
            header::ETAG,
            HeaderValue::from_str(etag).unwrap_or(HeaderValue::from_static("\"\"")),
        ),
    ];
    if if_none_match(&headers, etag) {
        return (StatusCode::NOT_MODIFIED, cache).into_response();
    }
    (
        cache,
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        )],
        snapshot.jwks_json().clone(),
    )
        .into_response()
}

/// RFC 9110 §13.1.2: `*`, or any listed tag equal under weak comparison.
fn if_none_match(headers: &HeaderMap, etag: &str) -> bool {
    headers
        .get_all(header::IF_NONE_MATCH)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(str::trim)
        .any(|tag| tag == "*" || tag.strip_prefix("W/").unwrap_or(tag) == etag)
}

async fn discovery(State(state): State<AppState>) -> Response {
    (
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        )],
        state.inner.discovery.clone(),
    )
        .into_response()
}

async fn healthz() -> Json<serde_json::Value> {
    Json(json!({"status": "ok"}))
}

/// Ready when the database answers and a keyring that can sign is loaded. A
/// failed keyring reload is reported but does not make the service unready: it
/// keeps signing with the last good keys.
async fn readyz(State(state): State<AppState>) -> Response {
    let snapshot = state.keys().current();
    let database = state.inner.db.ping().await;
    if let Err(err) = &database {
        tracing::error!(error = %err, "readiness: database unavailable");
    }
    let status = if database.is_ok() {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    let body = json!({
        "status": if database.is_ok() { "ready" } else { "unavailable" },
        "database": if database.is_ok() { "ok" } else { "unavailable" },
        "active_kid": snapshot.signer().kid(),
        "published_keys": snapshot.keyring().jwks().keys.len(),
        "keyring_reload_error": state.keys().reload_error(),
    });
    (status, Json(body)).into_response()
}

async fn not_found() -> Response {
    (StatusCode::NOT_FOUND, Json(json!({"error": "not_found"}))).into_response()
}
