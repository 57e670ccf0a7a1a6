//! The OAuth 2.0 endpoints: `/token` (RFC 6749: refresh and password grants),
//! `/revoke` (RFC 7009) and `/logout`.

use axum::Form;
use axum::Json;
use axum::body::Bytes;
use axum::extract::State;
use axum::extract::rejection::FormRejection;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::json;
use tessera_keyring::{open_with_secret, seal_with_secret};

use crate::db::{Issued, Refresh, RefreshRules};
use crate::http::{ApiError, AppState, no_store};
use crate::passwords::Password;
use crate::tokens::{
    AccessGrant, TokenResponse, check_own_access_token, new_refresh_token, refresh_token_hash,
};

/// How long after a rotation the same refresh token gets the same pair back.
pub const RETRY_WINDOW_SECS: i64 = 10;

/// RFC 6749 §5.2 errors, as `400 {"error": …}`.
#[derive(Debug)]
pub enum OAuthError {
    /// `invalid_request`.
    InvalidRequest(&'static str),
    /// `invalid_grant`.
    InvalidGrant,
    /// `unsupported_grant_type`.
    UnsupportedGrantType,
    /// Anything else: mapped like [`ApiError`].
    Api(ApiError),
}

impl From<ApiError> for OAuthError {
    fn from(e: ApiError) -> Self {
        match e {
            ApiError::InvalidCredentials => Self::InvalidGrant,
            other => Self::Api(other),
        }
    }
}

impl From<crate::db::DbError> for OAuthError {
    fn from(e: crate::db::DbError) -> Self {
        Self::Api(e.into())
    }
}

impl IntoResponse for OAuthError {
    fn into_response(self) -> Response {
        let body = match self {
            Self::InvalidRequest(why) => {
                json!({"error": "invalid_request", "error_description": why})
            }
            Self::InvalidGrant => json!({"error": "invalid_grant"}),
            Self::UnsupportedGrantType => json!({"error": "unsupported_grant_type"}),
            Self::Api(e) => return e.into_response(),
        };
        (StatusCode::BAD_REQUEST, no_store(), Json(body)).into_response()
    }
}

/// Form parameters, each at most once (RFC 6749 §3.2).
fn params(
    form: Result<Form<Vec<(String, String)>>, FormRejection>,
) -> Result<std::collections::HashMap<String, String>, OAuthError> {
    let Form(pairs) = form.map_err(|_| {
        OAuthError::InvalidRequest("expected an application/x-www-form-urlencoded body")
    })?;
    let mut map = std::collections::HashMap::new();
    for (k, v) in pairs {
        if map.insert(k, v).is_some() {
            return Err(OAuthError::InvalidRequest(
                "a parameter appears more than once",
            ));
        }
    }
    Ok(map)
}

fn required<'a>(
    params: &'a std::collections::HashMap<String, String>,
    name: &'static str,
) -> Result<&'a str, OAuthError> {
    params
        .get(name)
        .map(String::as_str)
        .filter(|v| !v.is_empty())
        .ok_or(OAuthError::InvalidRequest(name))
}

/// `POST /token`.
pub(crate) async fn token(
    State(state): State<AppState>,
    extensions: axum::http::Extensions,
    form: Result<Form<Vec<(String, String)>>, FormRejection>,
) -> Result<Response, OAuthError> {
    let params = params(form)?;
    let grant_type = params
        .get("grant_type")
        .ok_or(OAuthError::InvalidRequest("grant_type"))?;
    let response = match grant_type.as_str() {
        "refresh_token" => state.refresh(required(&params, "refresh_token")?).await?,
        "password" => {
            let username = required(&params, "username")?;
            let password = params.get("password").cloned().unwrap_or_default();
            let client_id = params.get("client_id").map_or("tessera", String::as_str);
            let scope = params.get("scope").map_or("profile", String::as_str);
            if crate::validate::client_id(client_id).is_err()
                || crate::validate::scope(scope).is_err()
            {
                return Err(OAuthError::InvalidRequest("client_id or scope"));
            }
            let login = crate::http::Login {
                username,
                client_ip: crate::http::client_ip(&extensions),
                client_id,
                scope,
            };
            let tokens = state
                .password_login(&login, Password::new(password))
                .await?;
            serde_json::to_vec(&tokens)
                .map_err(|e| OAuthError::Api(ApiError::Internal(e.to_string())))?
        }
        _ => return Err(OAuthError::UnsupportedGrantType),
    };
    Ok((
        no_store(),
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        )],
        Bytes::from(response),
    )
        .into_response())
}

impl AppState {
    /// Rotates a refresh token; see [`crate::db::Db::refresh`].
    async fn refresh(&self, presented: &str) -> Result<Vec<u8>, OAuthError> {
        if presented.len() > 512 {
            return Err(OAuthError::InvalidGrant);
        }
        let old_hash = refresh_token_hash(presented);
        let settings = self.settings();
        let secs = |d: std::time::Duration| i64::try_from(d.as_secs()).unwrap_or(i64::MAX);
        let rules = RefreshRules {
            now: self.now(),
            idle: secs(settings.refresh_idle_lifetime),
            absolute: secs(settings.refresh_absolute_lifetime),
            retry_window: RETRY_WINDOW_SECS,
        };
        let snapshot = self.snapshot()?;
        let outcome = self
            .db()
            .refresh(
                &old_hash,
                rules,
                |user, session| {
                    let grant = AccessGrant {
                        user,
                        session_id: &session.id,
                        client_id: &session.client_id,
                        scope: &session.scope,
                    };
                    let access_token = settings
                        .sign_access(snapshot.signer(), &grant, rules.now)
                        .map_err(|e| e.to_string())?;
                    let (refresh_token, new_hash) = new_refresh_token();
                    let response = serde_json::to_vec(&TokenResponse {
                        access_token,
                        token_type: "Bearer",
                        expires_in: settings.access_token_lifetime.as_secs(),
                        refresh_token,
                    })
                    .map_err(|e| e.to_string())?;
                    Ok(Issued { response, new_hash })
                },
                |response| seal_with_secret(presented.as_bytes(), response).ok(),
                |sealed| open_with_secret(presented.as_bytes(), sealed),
            )
            .await?;
        match outcome {
            Refresh::Rotated {
                session_id,
                user_id,
                response,
            } => {
                tracing::info!(target: "audit", event = "refresh", %session_id, %user_id);
                Ok(response)
            }
            Refresh::Replayed {
                session_id,
                response,
            } => {
                tracing::info!(target: "audit", event = "refresh_retry", %session_id);
                Ok(response)
            }
            Refresh::Reused {
                session_id,
                user_id,
            } => {
                tracing::warn!(
                    target: "audit",
                    event = "refresh_token_reuse",
                    %session_id,
                    %user_id,
                    "a used refresh token was presented again: session revoked"
                );
                let event = crate::audit::Event::new("refresh_token_reuse")
                    .user(&user_id)
                    .session(&session_id);
                crate::audit::record(self.db(), self.now(), event).await;
                // The thief's access tokens too, not only the refresh family.
                self.add_revocation(
                    crate::revocation::Kind::Sid,
                    &session_id,
                    "refresh_token_reuse",
                )
                .await?;
                Err(OAuthError::InvalidGrant)
            }
            Refresh::Refused(reason) => {
                tracing::info!(target: "audit", event = "refresh_refused", reason);
                Err(OAuthError::InvalidGrant)
            }
        }
    }
}

/// `POST /revoke` (RFC 7009): revokes a refresh token's whole family. `200` for
/// unknown tokens too, so it reveals nothing.
pub(crate) async fn revoke(
    State(state): State<AppState>,
    form: Result<Form<Vec<(String, String)>>, FormRejection>,
) -> Result<Response, OAuthError> {
    let params = params(form)?;
    let token = required(&params, "token")?;
    if token.len() <= 512 {
        let hash = refresh_token_hash(token);
        if let Some(session_id) = state
            .db()
            .revoke_by_refresh_token(&hash, state.now(), "revoked")
            .await?
        {
            tracing::info!(target: "audit", event = "revoke", %session_id);
            state
                .add_revocation(crate::revocation::Kind::Sid, &session_id, "revoked")
                .await?;
            let event = crate::audit::Event::new("revoke").session(&session_id);
            crate::audit::record(state.db(), state.now(), event).await;
        }
    }
    Ok((StatusCode::OK, no_store()).into_response())
}

/// `POST /logout` with `Authorization: Bearer <access token>`: ends that
/// token's session. `204`; `401` with `WWW-Authenticate` for a bad token.
pub(crate) async fn logout(State(state): State<AppState>, headers: HeaderMap) -> Response {
    let unauthorized = |error: &str, description: &str| {
        let challenge = if error.is_empty() {
            "Bearer".to_owned()
        } else {
            format!("Bearer error=\"{error}\", error_description=\"{description}\"")
        };
        (
            StatusCode::UNAUTHORIZED,
            [(
                header::WWW_AUTHENTICATE,
                HeaderValue::from_str(&challenge).unwrap_or(HeaderValue::from_static("Bearer")),
            )],
            Json(json!({"error": if error.is_empty() { "invalid_request" } else { error }})),
        )
            .into_response()
    };
    let Some(value) = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
    else {
        return unauthorized("", "");
    };
    let Some(token) = value
        .strip_prefix("Bearer ")
        .or_else(|| value.strip_prefix("bearer "))
    else {
        return unauthorized("invalid_request", "expected a Bearer token");
    };
    let snapshot = match state.snapshot() {
        Ok(snapshot) => snapshot,
        Err(err) => return err.into_response(),
    };
    let own = match check_own_access_token(
        snapshot.keyring().jwks(),
        state.issuer(),
        token.trim(),
        state.now(),
    ) {
        Ok(own) => own,
        Err(why) => return unauthorized("invalid_token", why),
    };
    if let Err(err) = state
        .db()
        .revoke_session(&own.sid, state.now(), "logout")
        .await
    {
        return ApiError::from(err).into_response();
    }
    // The session's access tokens too, this one included, wherever they are.
    if let Err(err) = state
        .add_revocation(crate::revocation::Kind::Sid, &own.sid, "logout")
        .await
    {
        return ApiError::from(err).into_response();
    }
    tracing::info!(target: "audit", event = "logout", session_id = %own.sid, user_id = %own.sub);
    let event = crate::audit::Event::new("logout")
        .user(&own.sub)
        .session(&own.sid);
    crate::audit::record(state.db(), state.now(), event).await;
    StatusCode::NO_CONTENT.into_response()
}
