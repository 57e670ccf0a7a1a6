//! `POST /logout` with `Authorization: Bearer <access token>`.

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};

use super::error::ApiError;
use super::state::AppState;

/// Ends the token's session: `204`; `401` with an RFC 6750 challenge for a
/// missing or bad token.
pub(super) async fn logout(
    State(state): State<AppState>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let Some(value) = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
    else {
        return Err(ApiError::Bearer {
            error: None,
            description: "",
        });
    };
    let Some(token) = value
        .strip_prefix("Bearer ")
        .or_else(|| value.strip_prefix("bearer "))
    else {
        return Err(ApiError::Bearer {
            error: Some("invalid_request"),
            description: "expected a Bearer token",
        });
    };
    state.service().logout(token.trim()).await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}
