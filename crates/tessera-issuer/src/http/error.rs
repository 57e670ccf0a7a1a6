//! The one place errors become HTTP answers: RFC 6749 §5.2 bodies on the
//! OAuth endpoints, RFC 6750 challenges for bad bearer tokens, `429`/`503`
//! with `Retry-After`, and `500` without internals (the cause goes to the
//! log only).

use axum::Json;
use axum::extract::rejection::{FormRejection, JsonRejection};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::json;

use crate::db::DbError;
use crate::service::AuthError;

/// Every error a client can see.
#[derive(Debug)]
#[non_exhaustive]
pub enum ApiError {
    /// 400 `invalid_request`.
    InvalidRequest(String),
    /// 401 `invalid_credentials` (`/login`): wrong password, unknown or
    /// disabled user alike.
    InvalidCredentials,
    /// `invalid_client`: unknown, disabled, not allowed, or failed
    /// authentication. `challenge`: the client tried to authenticate (`401`
    /// with `WWW-Authenticate: Basic`); otherwise `400`.
    InvalidClient {
        /// Whether the client offered credentials.
        challenge: bool,
        /// Why, for the client's developer.
        description: &'static str,
    },
    /// 400 `unauthorized_client`: registered, but not for this grant type.
    UnauthorizedClient,
    /// 400 `invalid_scope`.
    InvalidScope,
    /// 400 `invalid_target` (RFC 8707 §2): a `resource` the client may not
    /// have tokens for.
    InvalidTarget,
    /// 400 `invalid_grant`.
    InvalidGrant,
    /// 400 `unsupported_grant_type`.
    UnsupportedGrantType,
    /// 401 with an RFC 6750 `WWW-Authenticate: Bearer` challenge: no token
    /// (`error` `None`), or a bad one.
    Bearer {
        /// `invalid_request` or `invalid_token`; `None` when no token came.
        error: Option<&'static str>,
        /// Why, for the client's developer.
        description: &'static str,
    },
    /// 403 with an RFC 6750 `insufficient_scope` challenge naming the scope
    /// the endpoint needs.
    InsufficientScope(&'static str),
    /// 429 with `Retry-After`: too many failed logins for this username or IP.
    Throttled {
        /// Seconds to wait.
        retry_after: i64,
    },
    /// 503 with `Retry-After`: the password-check queue is full.
    Overloaded,
    /// 413: the body is over [`super::MAX_BODY_BYTES`].
    PayloadTooLarge,
    /// 408: the body did not arrive within the server's `body_read_timeout`.
    RequestTimeout,
    /// 415: not `application/json`.
    UnsupportedMediaType,
    /// 503 `temporarily_unavailable` with `Retry-After`: the database cannot
    /// be reached, or no keyring is loaded yet. The cause goes to the log.
    Unavailable(String),
    /// 403 `invalid_origin`: a cookie-session request from an origin that is
    /// neither the issuer's nor allowed (or with no `Origin`).
    ForbiddenOrigin,
    /// 401 `invalid_session`: no live cookie session; the `Set-Cookie`
    /// values that clear its cookies go with it.
    SessionEnded {
        /// `Set-Cookie` values (`Max-Age=0`).
        clear: Vec<HeaderValue>,
    },
    /// 500 `server_error`; the cause goes to the log only.
    Internal(String),
    /// The database failed: answered as [`ApiError::Unavailable`] when it
    /// cannot be reached (or is full), else as [`ApiError::Internal`]; the
    /// response carries [`DatabaseFailed`] for the request counter.
    Database {
        /// What failed, for the log.
        cause: String,
        /// Unreachable or full (503), rather than an error (500).
        unavailable: bool,
    },
}

/// Marks a response as a database failure (a response extension; the
/// request counter's `tessera_db_errors_total` reads it).
#[derive(Debug, Clone, Copy)]
pub struct DatabaseFailed;

impl From<DbError> for ApiError {
    fn from(err: DbError) -> Self {
        Self::Database {
            unavailable: err.is_unavailable(),
            cause: err.to_string(),
        }
    }
}

impl From<AuthError> for ApiError {
    fn from(err: AuthError) -> Self {
        match err {
            AuthError::InvalidCredentials => Self::InvalidCredentials,
            AuthError::Throttled { retry_after } => Self::Throttled { retry_after },
            AuthError::Overloaded => Self::Overloaded,
            AuthError::InvalidClient {
                challenge,
                description,
            } => Self::InvalidClient {
                challenge,
                description,
            },
            AuthError::UnauthorizedClient => Self::UnauthorizedClient,
            AuthError::InvalidScope => Self::InvalidScope,
            AuthError::InvalidTarget => Self::InvalidTarget,
            AuthError::InvalidGrant => Self::InvalidGrant,
            AuthError::InvalidToken(why) => Self::Bearer {
                error: Some("invalid_token"),
                description: why,
            },
            AuthError::InsufficientScope(scope) => Self::InsufficientScope(scope),
            AuthError::Invalid(why) => Self::InvalidRequest(why),
            AuthError::NoKeys => Self::Unavailable(err.to_string()),
            AuthError::Db(db) => db.into(),
            other => Self::Internal(other.to_string()),
        }
    }
}

impl From<JsonRejection> for ApiError {
    fn from(rejection: JsonRejection) -> Self {
        if tessera_serve::is_body_timeout(&rejection) {
            return Self::RequestTimeout;
        }
        match rejection.status() {
            StatusCode::PAYLOAD_TOO_LARGE => Self::PayloadTooLarge,
            StatusCode::UNSUPPORTED_MEDIA_TYPE => Self::UnsupportedMediaType,
            _ => Self::InvalidRequest(rejection.body_text()),
        }
    }
}

impl From<FormRejection> for ApiError {
    fn from(rejection: FormRejection) -> Self {
        if tessera_serve::is_body_timeout(&rejection) {
            Self::RequestTimeout
        } else if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE {
            Self::PayloadTooLarge
        } else {
            Self::InvalidRequest("expected an application/x-www-form-urlencoded body".to_owned())
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let bad_request = |body| (StatusCode::BAD_REQUEST, body);
        let (status, body) = match self {
            Self::InvalidRequest(description) => {
                bad_request(json!({"error": "invalid_request", "error_description": description}))
            }
            Self::InvalidCredentials => (
                StatusCode::UNAUTHORIZED,
                json!({"error": "invalid_credentials"}),
            ),
            Self::InvalidClient {
                challenge,
                description,
            } => {
                let body = json!({"error": "invalid_client", "error_description": description});
                if challenge {
                    return challenged(HeaderValue::from_static("Basic realm=\"tessera\""), body);
                }
                bad_request(body)
            }
            Self::UnauthorizedClient => bad_request(json!({
                "error": "unauthorized_client",
                "error_description": "this client may not use this grant type",
            })),
            Self::InvalidScope => bad_request(json!({
                "error": "invalid_scope",
                "error_description": "a requested scope is not one this client may have",
            })),
            Self::InvalidTarget => bad_request(json!({
                "error": "invalid_target",
                "error_description": "a requested resource is not one this client's tokens may be for",
            })),
            Self::InvalidGrant => bad_request(json!({"error": "invalid_grant"})),
            Self::UnsupportedGrantType => bad_request(json!({"error": "unsupported_grant_type"})),
            Self::Bearer { error, description } => {
                let challenge = match error {
                    None => HeaderValue::from_static("Bearer"),
                    Some(error) => HeaderValue::from_str(&format!(
                        "Bearer error=\"{error}\", error_description=\"{description}\""
                    ))
                    .unwrap_or(HeaderValue::from_static("Bearer")),
                };
                let body = json!({"error": error.unwrap_or("invalid_request")});
                return challenged(challenge, body);
            }
            Self::InsufficientScope(scope) => {
                let challenge = HeaderValue::from_str(&format!(
                    "Bearer error=\"insufficient_scope\", scope=\"{scope}\""
                ))
                .unwrap_or(HeaderValue::from_static("Bearer"));
                return (
                    StatusCode::FORBIDDEN,
                    no_store(),
                    [(header::WWW_AUTHENTICATE, challenge)],
                    Json(json!({"error": "insufficient_scope"})),
                )
                    .into_response();
            }
            Self::Throttled { retry_after } => {
                return retry_later(
                    StatusCode::TOO_MANY_REQUESTS,
                    retry_after,
                    "too_many_attempts",
                    "too many failed logins; retry later",
                );
            }
            Self::PayloadTooLarge => (
                StatusCode::PAYLOAD_TOO_LARGE,
                json!({"error": "invalid_request", "error_description": "request body too large"}),
            ),
            Self::RequestTimeout => (
                StatusCode::REQUEST_TIMEOUT,
                json!({"error": "invalid_request", "error_description": "the request body did not arrive in time"}),
            ),
            Self::UnsupportedMediaType => (
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                json!({"error": "invalid_request", "error_description": "expected application/json"}),
            ),
            Self::Overloaded => {
                return retry_later(
                    StatusCode::SERVICE_UNAVAILABLE,
                    1,
                    "temporarily_unavailable",
                    "too many logins in progress; retry later",
                );
            }
            Self::Unavailable(cause) => {
                tracing::error!(error = %cause, "request failed: service unavailable");
                return retry_later(
                    StatusCode::SERVICE_UNAVAILABLE,
                    1,
                    "temporarily_unavailable",
                    "the service cannot reach its database; retry later",
                );
            }
            Self::ForbiddenOrigin => (
                StatusCode::FORBIDDEN,
                json!({
                    "error": "invalid_origin",
                    "error_description": "cookie sessions are open to the issuer's own origin and its allowed_origins only",
                }),
            ),
            Self::SessionEnded { clear } => {
                let mut response = (
                    StatusCode::UNAUTHORIZED,
                    no_store(),
                    Json(json!({
                        "error": "invalid_session",
                        "error_description": "no live session: sign in again",
                    })),
                )
                    .into_response();
                for value in clear {
                    response.headers_mut().append(header::SET_COOKIE, value);
                }
                return response;
            }
            Self::Database { cause, unavailable } => {
                let as_answered = if unavailable {
                    Self::Unavailable(cause)
                } else {
                    Self::Internal(cause)
                };
                let mut response = as_answered.into_response();
                response.extensions_mut().insert(DatabaseFailed);
                return response;
            }
            Self::Internal(cause) => {
                tracing::error!(error = %cause, "request failed");
                (
                    StatusCode::INTERNAL_SERVER_ERROR,
                    json!({"error": "server_error"}),
                )
            }
        };
        (status, no_store(), Json(body)).into_response()
    }
}

/// `401` with a `WWW-Authenticate` challenge and an error body.
fn challenged(challenge: HeaderValue, body: serde_json::Value) -> Response {
    (
        StatusCode::UNAUTHORIZED,
        no_store(),
        [(header::WWW_AUTHENTICATE, challenge)],
        Json(body),
    )
        .into_response()
}

/// `status` with `Retry-After` (at least 1 s) and an error body: 429 and 503.
fn retry_later(status: StatusCode, after: i64, error: &str, description: &str) -> Response {
    (
        status,
        no_store(),
        [(header::RETRY_AFTER, HeaderValue::from(after.max(1)))],
        Json(json!({"error": error, "error_description": description})),
    )
        .into_response()
}

/// RFC 6749 §5.1: token responses must not be cached.
pub(crate) fn no_store() -> [(header::HeaderName, HeaderValue); 2] {
    [
        (header::CACHE_CONTROL, HeaderValue::from_static("no-store")),
        (header::PRAGMA, HeaderValue::from_static("no-cache")),
    ]
}
