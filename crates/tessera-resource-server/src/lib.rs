//! Tessera's demo resource server: two protected routes and a health check,
//! built on nothing but the verifier.
//!
//! - `GET /profile`: any valid access token; the caller's `sub`,
//!   `preferred_username`, `roles`, `scope` and `exp`.
//! - `GET /admin`: role `admin` only (`403 insufficient_scope` otherwise).
//! - `GET /healthz`: liveness, with the state of the verification keys.
//! - `GET /readyz`: `200` once keys are usable, `503` before.
//! - `GET /metrics`: the verifier's counters, as JSON.

use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use serde_json::json;
use tessera_verifier::Verifier;
use tessera_verifier::axum::{Authenticated, RequireRole, Role};
use tower_http::sensitive_headers::SetSensitiveRequestHeadersLayer;
use tower_http::trace::TraceLayer;

/// The role `/admin` requires.
#[derive(Debug)]
pub struct Admin;

impl Role for Admin {
    const NAME: &'static str = "admin";
}

/// The routes, with `Authorization` marked sensitive before tracing sees it.
pub fn app(verifier: Verifier) -> Router {
    routes(verifier)
        .layer(TraceLayer::new_for_http())
        .layer(SetSensitiveRequestHeadersLayer::new([
            header::AUTHORIZATION,
        ]))
}

/// The routes without the edge layers.
pub fn routes(verifier: Verifier) -> Router {
    Router::new()
        .route("/profile", get(profile))
        .route("/admin", get(admin))
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
        .fallback(|| async { (StatusCode::NOT_FOUND, Json(json!({"error": "not_found"}))) })
        .with_state(verifier)
}

/// `GET /profile`'s answer.
#[derive(Debug, serde::Serialize)]
struct Profile<'a> {
    sub: &'a str,
    preferred_username: Option<&'a str>,
    roles: &'a [String],
    scope: Option<&'a str>,
    exp: Option<i64>,
}

async fn profile(Authenticated(token): Authenticated) -> Response {
    let claims = token.claims();
    Json(Profile {
        sub: token.subject(),
        preferred_username: claims.preferred_username.as_deref(),
        roles: &claims.roles,
        scope: claims.scope.as_deref(),
        exp: token.expires_at(),
    })
    .into_response()
}

async fn admin(admin: RequireRole<Admin>) -> Json<serde_json::Value> {
    let token = admin.token();
    Json(json!({
        "sub": token.subject(),
        "preferred_username": token.claims().preferred_username,
        "message": "welcome, administrator",
    }))
}

async fn healthz(State(verifier): State<Verifier>) -> Json<serde_json::Value> {
    Json(json!({
        "status": "ok",
        "keys": verifier.health(),
        "revocations": verifier.revocations(),
    }))
}

async fn readyz(State(verifier): State<Verifier>) -> Response {
    let ready = verifier.is_ready();
    let status = if ready {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    let body = json!({
        "status": if ready { "ready" } else { "unavailable" },
        "keys": verifier.health(),
        "revocations": verifier.revocations(),
    });
    (status, Json(body)).into_response()
}

async fn metrics(State(verifier): State<Verifier>) -> Json<tessera_verifier::MetricsSnapshot> {
    Json(verifier.metrics())
}
