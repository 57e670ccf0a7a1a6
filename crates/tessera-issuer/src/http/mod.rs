//! The HTTP edge: the router and the layers every request passes. Handlers
//! parse the request, call the service ([`crate::service`]) and answer; errors
//! become status codes in one place, [`error`].
//!
//! - [`state`]: [`AppState`], the service plus what the edge prepares once.
//! - [`error`]: [`ApiError`], the mapping of every error to a response.
//! - [`keys`]: JWKS and discovery. [`feed`]: the signed revocation feed.
//! - [`login`]: `/login`. [`oauth`]: `/token`, `/revoke`, client credentials.
//! - [`logout`]: `/logout` (bearer). [`introspect`]: `/introspect`.
//! - [`session`]: cookie sessions, `/session` and its `/refresh` and
//!   `/logout`; [`cookies`]: their settings, the CSRF rule, the cookies.
//! - [`authorize`]: browser sign-in (`/authorize`, the login and consent
//!   forms); [`end_session`]: RP-initiated logout; [`pages`]: their HTML.
//! - [`logout`] also answers `/userinfo`.
//! - [`health`]: `/healthz`, `/readyz`, and the fallback.
//! - [`metrics`]: `/metrics` (Prometheus) and the request counter.
//! - [`address`]: the client's address, past trusted proxies.

mod address;
mod authorize;
mod cookies;
mod end_session;
pub mod error;
mod feed;
mod health;
mod introspect;
mod keys;
mod login;
mod logout;
pub mod metrics;
mod oauth;
mod pages;
mod session;
pub mod state;

pub use error::ApiError;
pub use metrics::MetricsAt;
pub use state::AppState;

use address::client_address;

use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::http::{HeaderValue, Method, header};
use axum::routing::{get, post};
use tower_http::cors::{AllowOrigin, CorsLayer};
use tower_http::sensitive_headers::{
    SetSensitiveRequestHeadersLayer, SetSensitiveResponseHeadersLayer,
};
use tower_http::trace::TraceLayer;

/// The largest request body accepted (login and token requests are tiny).
pub const MAX_BODY_BYTES: usize = 16 * 1024;

/// All routes, with the layers every request passes.
pub fn router(state: AppState) -> Router {
    with_edge_layers(routes(state.clone()), state)
}

/// The layers every request passes: the client's address (past trusted
/// proxies), the body limit, and request tracing with
/// `Authorization`, `Cookie`, `Set-Cookie` and `Location` marked sensitive first so a bearer token or a code never reaches a log.
/// Applied once, here, to every route (the fallback included).
pub fn with_edge_layers(routes: Router, state: AppState) -> Router {
    let track = (state.metrics_at() != MetricsAt::Off)
        .then(|| metrics::Track::new(state.service().metrics_handle()));
    // One `layer` call for them all: each `Router::layer` boxes every route
    // once more, which a request pays for (a box cloned, a future boxed) per
    // call; five calls cost the JWKS route 0.86 µs of its 2.63 µs in the
    // router (docs/benchmarks.md, issue 22). Outermost first.
    routes.layer(
        tower::ServiceBuilder::new()
            .layer(SetSensitiveRequestHeadersLayer::new([
                header::AUTHORIZATION,
                header::COOKIE,
            ]))
            .layer(TraceLayer::new_for_http().make_span_with(request_span))
            // Inside the trace layer, so a response's cookies are marked
            // before it sees them; the request's headers are marked before,
            // outside. `Location` carries authorization codes back to clients.
            .layer(SetSensitiveResponseHeadersLayer::new([
                header::SET_COOKIE,
                header::LOCATION,
            ]))
            .layer(DefaultBodyLimit::max(MAX_BODY_BYTES))
            .layer(axum::middleware::from_fn_with_state(state, client_address))
            .option_layer(track),
    )
}

/// The routes and their state, without the edge layers (benchmarks add a
/// baseline route before layering, so both pay for exactly the same layers).
pub fn routes(state: AppState) -> Router {
    Router::new()
        .route("/.well-known/jwks.json", get(keys::jwks))
        .route("/login", post(login::login))
        .route("/authorize", get(authorize::authorize))
        .route("/authorize/login", post(authorize::login))
        .route("/authorize/consent", post(authorize::consent))
        .route(
            "/end_session",
            get(end_session::end_session).post(end_session::confirmed),
        )
        .route("/assets/tessera.css", get(pages::stylesheet))
        .route(
            "/logout",
            post(logout::logout).get(end_session::end_session),
        )
        .route("/revocations", get(feed::revocations))
        .route("/introspect", post(introspect::introspect))
        .merge(session::routes(&state))
        .merge(public_routes())
        .merge(browser_api_routes(&state))
        .route("/healthz", get(health::healthz))
        .route("/readyz", get(health::readyz))
        .merge(match state.metrics_at() {
            MetricsAt::Loopback => Router::new().route("/metrics", get(metrics::metrics)),
            MetricsAt::OwnListener | MetricsAt::Off => Router::new(),
        })
        .fallback(health::not_found)
        .with_state(state)
}

/// `/metrics` alone, for a listener of its own (`metrics_listen`): any
/// client that reaches it may scrape.
pub fn metrics_router(state: AppState) -> Router {
    Router::new()
        .route("/metrics", get(metrics::metrics))
        .fallback(health::not_found)
        .layer(DefaultBodyLimit::max(MAX_BODY_BYTES))
        .with_state(state)
}

/// The discovery documents: public, any web page may read them (CORS for
/// every origin, no credentials). The JWKS, as public, says the same in its
/// prepared answer instead (`keys::jwks`): the CORS layer's work on every
/// request cost the hot path a measurable share (docs/benchmarks.md).
fn public_routes() -> Router<AppState> {
    Router::new()
        .route(
            "/.well-known/oauth-authorization-server",
            get(keys::discovery),
        )
        .route("/.well-known/openid-configuration", get(keys::discovery))
        .layer(
            CorsLayer::new()
                .allow_origin(AllowOrigin::any())
                .allow_methods([Method::GET])
                .max_age(CORS_MAX_AGE),
        )
}

/// `/token`, `/revoke` and `/userinfo`, with CORS (no credentials: they
/// take none from cookies) for the origins of registered redirect URIs,
/// so a browser app signing in with code + PKCE can call them.
fn browser_api_routes(state: &AppState) -> Router<AppState> {
    let issuer = state.service().clone();
    let allowed = AllowOrigin::async_predicate(move |origin: HeaderValue, _parts| {
        let issuer = issuer.clone();
        async move {
            match origin.to_str() {
                Ok(origin) => issuer.browser_origin_allowed(origin).await,
                Err(_) => false,
            }
        }
    });
    Router::new()
        .route("/token", post(oauth::token))
        .route("/revoke", post(oauth::revoke))
        .route("/userinfo", get(logout::userinfo).post(logout::userinfo))
        .layer(
            CorsLayer::new()
                .allow_origin(allowed)
                .allow_methods([Method::GET, Method::POST])
                .allow_headers([header::AUTHORIZATION, header::CONTENT_TYPE])
                .expose_headers([header::RETRY_AFTER, header::WWW_AUTHENTICATE])
                .max_age(CORS_MAX_AGE),
        )
}

/// How long a browser may keep a preflight answer.
const CORS_MAX_AGE: std::time::Duration = std::time::Duration::from_secs(600);

/// The span of a request: method and path, never the query string (which
/// may carry a token: `POST /logout?access_token=…`), at any level.
fn request_span(request: &axum::http::Request<axum::body::Body>) -> tracing::Span {
    tracing::debug_span!(
        "request",
        method = %request.method(),
        path = %request.uri().path(),
        version = ?request.version(),
    )
}
