//! `POST /login`: a JSON username and password for the first-party client.

use axum::Json;
use axum::extract::State;
use axum::extract::rejection::JsonRejection;
use axum::response::{IntoResponse, Response};

use super::address::client_ip;
use super::error::ApiError;
use super::error::no_store;
use super::state::AppState;
use crate::passwords::Password;

/// `POST /login` body.
#[derive(serde::Deserialize)]
pub(super) struct LoginRequest {
    username: String,
    password: String,
}

/// Password → access token + refresh token, for the configured first-party
/// client (`login_client`) and its default scope.
pub(super) async fn login(
    State(state): State<AppState>,
    extensions: axum::http::Extensions,
    body: Result<Json<LoginRequest>, JsonRejection>,
) -> Result<Response, ApiError> {
    let Json(request) = body?;
    let tokens = state
        .service()
        .login(
            request.username,
            Password::new(request.password),
            client_ip(&extensions),
        )
        .await?;
    Ok((no_store(), Json(tokens)).into_response())
}
