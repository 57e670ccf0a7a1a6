//! Tessera's demo resource server: two protected routes and a health check,
//! built on nothing but the verifier.
//!
//! - `GET /profile`: any valid access token; the caller's `sub`,
//!   `preferred_username`, `roles`, `scope` and `exp`.
//! - `GET /admin`: role `admin` only (`403 insufficient_scope` otherwise).
//! - `GET /healthz`: liveness, with the state of the verification keys.
//! - `GET /readyz`: `200` once keys are usable, `503` before.
//! - `GET /metrics`: the verifier's metrics in the Prometheus text format
//!   ([`tessera_verifier::prometheus`]), to loopback clients only (another
//!   listener with [`metrics_app`], for a scraper elsewhere);
//!   `GET /metrics.json`: the same counters as JSON, likewise.
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

use std::net::SocketAddr;
use std::sync::Arc;

use axum::extract::{ConnectInfo, DefaultBodyLimit, FromRef, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use prometheus_client::encoding::prometheus_text;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;
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
    metrics: Arc<Metrics>,
}

/// The metrics registry, built once: the verifier's collector and the
/// build's description.
#[derive(Debug)]
struct Metrics {
    registry: Registry,
    /// For `/metrics.json`.
    verifier: Verifier,
    /// Whether any client may scrape (a listener of its own), or loopback
    /// clients only (the main listener).
    open: bool,
}

impl Metrics {
    fn new(verifier: &Verifier, open: bool) -> Self {
        let mut registry = Registry::default();
        let info = Family::<[(&'static str, &'static str); 2], Gauge>::default();
        info.get_or_create(&[
            ("version", env!("CARGO_PKG_VERSION")),
            ("backend", tessera_verifier::BACKEND),
        ])
        .set(1);
        registry.register(
            "tessera_build_info",
            "The running build: version and crypto backend (always 1)",
            info,
        );
        registry.register_collector(Box::new(tessera_verifier::prometheus::Collector::new(
            verifier.clone(),
        )));
        Self {
            registry,
            verifier: verifier.clone(),
            open,
        }
    }

    /// Whether this request may read the metrics.
    fn allows(&self, peer: Option<&ConnectInfo<SocketAddr>>) -> bool {
        self.open || peer.is_some_and(|ConnectInfo(addr)| addr.ip().is_loopback())
    }
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

impl FromRef<AppState> for Arc<Metrics> {
    fn from_ref(state: &AppState) -> Self {
        state.metrics.clone()
    }
}

impl FromRef<AppState> for Arc<web::Page> {
    fn from_ref(state: &AppState) -> Self {
        state.page.clone()
    }
}

/// The routes, with `Authorization` and `Cookie` marked sensitive before
/// tracing sees them; `/metrics` answers loopback clients only.
pub fn app(verifier: Verifier) -> Router {
    with_edge_layers(routes(verifier))
}

/// The routes without `/metrics` (served by [`metrics_app`] elsewhere).
pub fn app_without_metrics(verifier: Verifier) -> Router {
    with_edge_layers(build(verifier, false))
}

/// `/metrics` and `/metrics.json` alone, for any client: a listener of its
/// own (`--metrics-listen`), where the operator decides who reaches it.
pub fn metrics_app(verifier: Verifier) -> Router {
    metrics_routes()
        .fallback(not_found)
        .with_state(Arc::new(Metrics::new(&verifier, true)))
}

/// `/metrics` and `/metrics.json`, on whichever listener serves them.
fn metrics_routes<S>() -> Router<S>
where
    Arc<Metrics>: FromRef<S>,
    S: Clone + Send + Sync + 'static,
{
    Router::new()
        .route("/metrics", get(metrics_text))
        .route("/metrics.json", get(metrics_json))
}

async fn not_found() -> Response {
    (StatusCode::NOT_FOUND, Json(json!({"error": "not_found"}))).into_response()
}

fn with_edge_layers(routes: Router) -> Router {
    routes
        .layer(TraceLayer::new_for_http())
        .layer(SetSensitiveRequestHeadersLayer::new([
            header::AUTHORIZATION,
            header::COOKIE,
        ]))
}

/// The routes without the edge layers.
pub fn routes(verifier: Verifier) -> Router {
    build(verifier, true)
}

/// The routes, `/metrics` and `/metrics.json` among them or not.
fn build(verifier: Verifier, with_metrics: bool) -> Router {
    let state = AppState {
        page: Arc::new(web::Page::new(&verifier)),
        metrics: Arc::new(Metrics::new(&verifier, false)),
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
        .merge(if with_metrics {
            metrics_routes()
        } else {
            Router::new()
        })
        .fallback(not_found)
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

async fn metrics_text(
    State(metrics): State<Arc<Metrics>>,
    request: axum::extract::Request,
) -> Response {
    if !metrics.allows(request.extensions().get()) {
        return not_found().await;
    }
    let mut text = String::new();
    if prometheus_text::encode(&mut text, &metrics.registry).is_err() {
        return StatusCode::INTERNAL_SERVER_ERROR.into_response();
    }
    (
        [(header::CONTENT_TYPE, prometheus_text::CONTENT_TYPE)],
        text,
    )
        .into_response()
}

async fn metrics_json(
    State(metrics): State<Arc<Metrics>>,
    request: axum::extract::Request,
) -> Response {
    if !metrics.allows(request.extensions().get()) {
        return not_found().await;
    }
    Json(metrics.verifier.metrics()).into_response()
}
