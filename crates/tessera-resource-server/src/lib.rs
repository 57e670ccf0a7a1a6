//! Tessera's demo resource server: two protected routes and a health check,
//! built on nothing but the verifier.
//!
//! - `GET /profile`: any valid access token; the caller's `sub`,
//!   `preferred_username`, `roles`, `scope` and `exp`.
//! - `GET /admin`: role `admin` only (`403 insufficient_scope` otherwise).
//! - `GET /healthz`: liveness, with the state of the verification keys.
//! - `GET /readyz`: `200` once keys are usable, `503` before.
//! - `GET /metrics`: the verifier's counters, as JSON.
//! - `GET /reports`: scope `reports:read` (a user's token or a service's
//!   own, from client credentials); `403 insufficient_scope` otherwise.
//! - `GET /me/optional`: works without a token; says who the caller is with
//!   one (a bad token is still `401`).
//! - `GET /welcome`: `Welcome <username>!` (the classic cookie tutorial's
//!   page); `POST /notes`: a toy state-changing route (`{"text": "…"}`).
//! - `GET /app`: a small web page that signs in with the issuer's cookie
//!   session, greets, refreshes and signs out (no framework, no CDN).
//! - `GET /spa`: a small web page that signs in through the issuer's login
//!   page (authorization code + PKCE, as the public client
//!   [`SPA_CLIENT`]), shows `/profile`'s answer, refreshes and signs out.
//!
//! Every protected route takes the token from the `Authorization` header or,
//! when the verifier has a cookie source, from the access cookie; see
//! [`tessera_verifier::axum`] for the rules (two tokens: `400`; a cookie on
//! an unsafe method from an origin not allowed: `403`).

mod web;

use std::sync::Arc;

use axum::extract::{DefaultBodyLimit, FromRef, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde_json::json;
use tessera_verifier::Verifier;
use tessera_verifier::axum::{Authenticated, RequireRole, RequireScope, Role, Scope};
use tower_http::sensitive_headers::SetSensitiveRequestHeadersLayer;
use tower_http::trace::TraceLayer;

pub use web::SPA_CLIENT;

/// The scope `/reports` requires.
#[derive(Debug)]
pub struct ReportsRead;

impl Scope for ReportsRead {
    const NAME: &'static str = "reports:read";
}

/// The role `/admin` requires.
#[derive(Debug)]
pub struct Admin;

impl Role for Admin {
    const NAME: &'static str = "admin";
}

/// What the handlers share.
#[derive(Debug, Clone)]
struct AppState {
    verifier: Verifier,
    notes: Arc<web::Notes>,
    page: Arc<web::Page>,
}

impl FromRef<AppState> for Verifier {
    fn from_ref(state: &AppState) -> Self {
        state.verifier.clone()
    }
}

impl FromRef<AppState> for Arc<web::Notes> {
    fn from_ref(state: &AppState) -> Self {
        state.notes.clone()
    }
}

impl FromRef<AppState> for Arc<web::Page> {
    fn from_ref(state: &AppState) -> Self {
        state.page.clone()
    }
}

/// The routes, with `Authorization` and `Cookie` marked sensitive before
/// tracing sees them.
pub fn app(verifier: Verifier) -> Router {
    routes(verifier)
        .layer(TraceLayer::new_for_http())
        .layer(SetSensitiveRequestHeadersLayer::new([
            header::AUTHORIZATION,
            header::COOKIE,
        ]))
}

/// The routes without the edge layers.
pub fn routes(verifier: Verifier) -> Router {
    let state = AppState {
        page: Arc::new(web::Page::new(&verifier)),
        verifier,
        notes: Arc::default(),
    };
    Router::new()
        .route("/profile", get(profile))
        .route("/admin", get(admin))
        .route("/reports", get(reports))
        .route("/me/optional", get(me_optional))
        .route("/welcome", get(web::welcome))
        .route(
            "/notes",
            post(web::add_note).layer(DefaultBodyLimit::max(4 * 1024)),
        )
        .route("/app", get(web::app_page))
        .route("/app/app.js", get(web::app_script))
        .route("/app/app.css", get(web::app_style))
        .route("/app/config.json", get(web::app_config))
        .route("/spa", get(web::spa_page))
        .route("/spa/spa.js", get(web::spa_script))
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
        .fallback(|| async { (StatusCode::NOT_FOUND, Json(json!({"error": "not_found"}))) })
        .with_state(state)
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

async fn reports(reader: RequireScope<ReportsRead>) -> Json<serde_json::Value> {
    let token = reader.token();
    Json(json!({
        "for": token.subject(),
        "client_id": token.claims().client_id,
        "reports": [
            {"name": "logins-by-day", "rows": 7},
            {"name": "active-sessions", "rows": 1},
        ],
    }))
}

async fn me_optional(who: Option<Authenticated>) -> Json<serde_json::Value> {
    Json(match who {
        None => json!({"signed_in": false}),
        Some(Authenticated(token)) => json!({
            "signed_in": true,
            "sub": token.subject(),
            "preferred_username": token.claims().preferred_username,
            "user": token.is_user(),
        }),
    })
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
