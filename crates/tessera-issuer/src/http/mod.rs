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
//! - [`health`]: `/healthz`, `/readyz`, and the fallback.
//! - [`address`]: the client's address, past trusted proxies.

mod address;
mod cookies;
pub mod error;
mod feed;
mod health;
mod introspect;
mod keys;
mod login;
mod logout;
mod oauth;
mod session;
pub mod state;

pub use error::ApiError;
pub use state::AppState;

use address::client_address;

use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::http::header;
use axum::routing::{get, post};
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
/// `Authorization`, `Cookie` and `Set-Cookie` marked sensitive first so a bearer token never reaches a log.
/// Applied once, here, to every route (the fallback included).
pub fn with_edge_layers(routes: Router, state: AppState) -> Router {
    routes
        .layer(axum::middleware::from_fn_with_state(state, client_address))
        .layer(DefaultBodyLimit::max(MAX_BODY_BYTES))
        // Inside the trace layer, so a response's cookies are marked before
        // it sees them; the request's headers are marked before, outside.
        .layer(SetSensitiveResponseHeadersLayer::new([header::SET_COOKIE]))
        .layer(TraceLayer::new_for_http().make_span_with(request_span))
        .layer(SetSensitiveRequestHeadersLayer::new([
            header::AUTHORIZATION,
            header::COOKIE,
        ]))
}

/// The routes and their state, without the edge layers (benchmarks add a
/// baseline route before layering, so both pay for exactly the same layers).
pub fn routes(state: AppState) -> Router {
    Router::new()
        .route("/.well-known/jwks.json", get(keys::jwks))
        .route(
            "/.well-known/oauth-authorization-server",
            get(keys::discovery),
        )
        .route("/.well-known/openid-configuration", get(keys::discovery))
        .route("/login", post(login::login))
        .route("/token", post(oauth::token))
        .route("/revoke", post(oauth::revoke))
        .route("/logout", post(logout::logout))
        .route("/revocations", get(feed::revocations))
        .route("/introspect", post(introspect::introspect))
        .merge(session::routes(&state))
        .route("/healthz", get(health::healthz))
        .route("/readyz", get(health::readyz))
        .fallback(health::not_found)
        .with_state(state)
}

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
