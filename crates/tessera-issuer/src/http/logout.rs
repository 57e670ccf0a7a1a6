//! `POST /logout` with `Authorization: Bearer <access token>`, and how a
//! request's bearer token is read (here and at `/userinfo`).

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};

use super::error::ApiError;
use super::state::AppState;

/// The bearer token of `Authorization` (RFC 6750 §2.1); `401` with a
/// challenge when there is none or it is not a bearer token.
pub(super) fn bearer(headers: &HeaderMap) -> Result<&str, ApiError> {
    let Some(value) = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
    else {
        return Err(ApiError::Bearer {
            error: None,
            description: "",
        });
    };
    value
        .strip_prefix("Bearer ")
        .or_else(|| value.strip_prefix("bearer "))
        .map(str::trim)
        .ok_or(ApiError::Bearer {
            error: Some("invalid_request"),
            description: "expected a Bearer token",
        })
}

/// Ends the token's session: `204`; `401` with an RFC 6750 challenge for a
/// missing or bad token.
pub(super) async fn logout(
    State(state): State<AppState>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    state.service().logout(bearer(&headers)?).await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

/// `GET|POST /userinfo` (OpenID Connect Core §5.3): the claims the access
/// token's scopes allow, `403 insufficient_scope` without `openid`.
pub(super) async fn userinfo(
    State(state): State<AppState>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let claims = state.service().userinfo(bearer(&headers)?).await?;
    Ok((super::error::no_store(), axum::Json(claims)).into_response())
}
