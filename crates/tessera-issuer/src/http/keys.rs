//! `GET /.well-known/jwks.json` and the discovery documents.

use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};

use super::error::ApiError;
use super::state::AppState;

/// `GET /.well-known/jwks.json`: bytes prepared at (re)load, a strong ETag, 304
/// on `If-None-Match`.
pub(super) async fn jwks(
    State(state): State<AppState>,
    request: axum::extract::Request,
) -> Response {
    // Borrowed from the request: a `HeaderMap` extractor would copy every header.
    let headers = request.headers();
    // A guard, not an Arc clone: no reference-count traffic on the hot path.
    let guard = state.service().keys().current_guard();
    let Some(snapshot) = guard.as_deref() else {
        return ApiError::Unavailable("no keyring loaded yet".to_owned()).into_response();
    };
    let etag = snapshot.etag();
    let cache = [
        (header::CACHE_CONTROL, state.jwks_cache_control().clone()),
        (header::ETAG, snapshot.etag_header().clone()),
        // Public keys, readable by any web page (a browser app checking an
        // ID token). A simple GET needs no preflight; the header is all of
        // CORS this document needs, so it is set here rather than by a CORS
        // layer's per-request work on the hottest route.
        (
            header::ACCESS_CONTROL_ALLOW_ORIGIN,
            HeaderValue::from_static("*"),
        ),
    ];
    if if_none_match(headers, etag) {
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
pub(super) fn if_none_match(headers: &HeaderMap, etag: &str) -> bool {
    headers
        .get_all(header::IF_NONE_MATCH)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(str::trim)
        .any(|tag| tag == "*" || tag.strip_prefix("W/").unwrap_or(tag) == etag)
}

/// RFC 8414 metadata (also served as `openid-configuration`): prepared once
/// per set of signing algorithms the keyring holds.
pub(super) async fn discovery(State(state): State<AppState>) -> Response {
    let algorithms = match state.service().keys().current_guard().as_deref() {
        Some(snapshot) => snapshot.algorithms().to_vec(),
        None => return ApiError::Unavailable("no keyring loaded yet".to_owned()).into_response(),
    };
    (
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        )],
        state.discovery(&algorithms),
    )
        .into_response()
}
