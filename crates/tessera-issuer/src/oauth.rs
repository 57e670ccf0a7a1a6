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

/// How long after a rotation the same refresh token gets the same pair back,
/// unless configured (`refresh_retry_window`; 0 turns it off).
pub const RETRY_WINDOW_SECS: i64 = 10;

/// The longest `refresh_retry_window` the configuration allows.
pub const MAX_RETRY_WINDOW_SECS: i64 = 60;

/// RFC 6749 §5.2 errors, as `400 {"error": …}` (`401` for a client that
/// tried to authenticate and failed).
#[derive(Debug)]
pub enum OAuthError {
    /// `invalid_request`.
    InvalidRequest(&'static str),
    /// `invalid_client`: unknown, disabled, or failed authentication.
    /// `challenge`: the client tried to authenticate (`401` with
    /// `WWW-Authenticate: Basic`); otherwise `400`.
    InvalidClient {
        /// Whether the client offered credentials.
        challenge: bool,
        /// Why, for the client's developer.
        description: &'static str,
    },
    /// `unauthorized_client`: registered, but not for this grant type.
    UnauthorizedClient,
    /// `invalid_scope`: a scope the client may not have.
    InvalidScope,
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
            Self::InvalidClient {
                challenge,
                description,
            } => {
                let body = json!({"error": "invalid_client", "error_description": description});
                if challenge {
                    return (
                        StatusCode::UNAUTHORIZED,
                        no_store(),
                        [(
                            header::WWW_AUTHENTICATE,
                            HeaderValue::from_static("Basic realm=\"tessera\""),
                        )],
                        Json(body),
                    )
                        .into_response();
                }
                body
            }
            Self::UnauthorizedClient => json!({
                "error": "unauthorized_client",
                "error_description": "this client may not use this grant type",
            }),
            Self::InvalidScope => json!({
                "error": "invalid_scope",
                "error_description": "a requested scope is not one this client may have",
            }),
            Self::InvalidGrant => json!({"error": "invalid_grant"}),
            Self::UnsupportedGrantType => json!({"error": "unsupported_grant_type"}),
            Self::Api(ApiError::InvalidClient(description)) => {
                json!({"error": "invalid_client", "error_description": description})
            }
            Self::Api(e) => return e.into_response(),
        };
        (StatusCode::BAD_REQUEST, no_store(), Json(body)).into_response()
    }
}

/// Form parameters, each at most once (RFC 6749 §3.2).
fn params(
    form: Result<Form<Vec<(String, String)>>, FormRejection>,
) -> Result<std::collections::HashMap<String, String>, OAuthError> {
    let Form(pairs) = form.map_err(|rejection| match ApiError::from(rejection) {
        ApiError::InvalidRequest(_) => {
            OAuthError::InvalidRequest("expected an application/x-www-form-urlencoded body")
        }
        other => OAuthError::Api(other),
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

/// The client credentials a request offers (RFC 6749 §2.3.1): HTTP Basic,
/// or `client_id` (and `client_secret`) in the body; never both.
#[derive(Default)]
pub(crate) struct Offered {
    /// The client id, if the request names one.
    pub(crate) id: Option<String>,
    /// The secret, if it offers one (an attempt to authenticate).
    pub(crate) secret: Option<zeroize::Zeroizing<String>>,
}

impl Offered {
    pub(crate) fn from_request(
        headers: &HeaderMap,
        params: &std::collections::HashMap<String, String>,
    ) -> Result<Self, OAuthError> {
        let body_id = params.get("client_id").filter(|v| !v.is_empty());
        let body_secret = params.get("client_secret").filter(|v| !v.is_empty());
        if let Some(value) = headers.get(header::AUTHORIZATION) {
            let (id, secret) =
                crate::introspect::basic_credentials(value).ok_or(OAuthError::InvalidClient {
                    challenge: true,
                    description: "unreadable HTTP Basic credentials",
                })?;
            if body_secret.is_some() || body_id.is_some_and(|b| *b != id) {
                return Err(OAuthError::InvalidRequest(
                    "client credentials in both the Authorization header and the body",
                ));
            }
            return Ok(Self {
                id: Some(id),
                secret: Some(zeroize::Zeroizing::new(secret)),
            });
        }
        Ok(Self {
            id: body_id.cloned(),
            secret: body_secret.map(|s| zeroize::Zeroizing::new(s.clone())),
        })
    }
}

impl AppState {
    /// The registered client `offered` proves, allowed `grant`.
    pub(crate) async fn authenticate_client(
        &self,
        offered: &Offered,
        grant: &str,
    ) -> Result<std::sync::Arc<crate::clients::Client>, OAuthError> {
        let challenge = offered.secret.is_some();
        let Some(id) = offered.id.as_deref() else {
            return Err(OAuthError::InvalidClient {
                challenge: false,
                description: "the client must identify itself (client_id, or HTTP Basic)",
            });
        };
        let client = if crate::clients::check_client_id(id).is_ok() {
            self.clients().client(self.db(), id).await?
        } else {
            None
        };
        let unknown = OAuthError::InvalidClient {
            challenge,
            description: "unknown or disabled client, or wrong credentials",
        };
        let Some(client) = client.filter(|c| !c.disabled) else {
            if let Some(secret) = &offered.secret {
                // The same work as checking a registered client's secret.
                let _ = crate::clients::spend_secret_check(secret);
            }
            return Err(unknown);
        };
        match (&offered.secret, client.kind) {
            (Some(secret), _) if !client.secret_matches(secret) => return Err(unknown),
            (None, crate::clients::ClientKind::Confidential) => {
                return Err(OAuthError::InvalidClient {
                    challenge: false,
                    description: "a confidential client must authenticate",
                });
            }
            _ => {}
        }
        if !client.allows_grant(grant) {
            return Err(OAuthError::UnauthorizedClient);
        }
        Ok(client)
    }
}

/// `POST /token`.
pub(crate) async fn token(
    State(state): State<AppState>,
    extensions: axum::http::Extensions,
    headers: HeaderMap,
    form: Result<Form<Vec<(String, String)>>, FormRejection>,
) -> Result<Response, OAuthError> {
    let params = params(form)?;
    let grant_type = params
        .get("grant_type")
        .ok_or(OAuthError::InvalidRequest("grant_type"))?;
    let offered = Offered::from_request(&headers, &params)?;
    let response = match grant_type.as_str() {
        "refresh_token" => {
            state
                .refresh(required(&params, "refresh_token")?, &offered)
                .await?
        }
        "password" => {
            let client = state.authenticate_client(&offered, "password").await?;
            let username = required(&params, "username")?;
            let password = params.get("password").cloned().unwrap_or_default();
            let requested = params.get("scope").map(String::as_str);
            if requested
                .is_some_and(|s| crate::validate::scope(s.trim()).is_err() && !s.trim().is_empty())
            {
                return Err(OAuthError::InvalidRequest("scope"));
            }
            let scope = client
                .grant_scope(requested)
                .ok_or(OAuthError::InvalidScope)?;
            let login = crate::http::Login {
                username,
                client_ip: crate::http::client_ip(&extensions),
                client: &client,
                scope: &scope,
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

/// Why a refresh was refused for its client (see `AppState::refresh`).
const CLIENT_UNAUTHENTICATED: &str = "client_unauthenticated";

impl AppState {
    /// Rotates a refresh token; see [`crate::db::Db::refresh`]. The session's
    /// client must still be registered, enabled and allowed to refresh; a
    /// confidential one must authenticate, and a client that names itself
    /// must be the session's. The new access token's scope is the session's
    /// less what the client may no longer have.
    async fn refresh(&self, presented: &str, offered: &Offered) -> Result<Vec<u8>, OAuthError> {
        if presented.len() > 512 {
            return Err(OAuthError::InvalidGrant);
        }
        let authenticated = match offered.id {
            Some(_) => Some(self.authenticate_client(offered, "refresh_token").await?),
            None => None,
        };
        let registry = self.clients().current(self.db()).await?;
        let old_hash = refresh_token_hash(presented);
        let settings = self.settings();
        let rules = RefreshRules {
            now: self.now(),
            idle: crate::secs(settings.refresh_idle_lifetime),
            absolute: crate::secs(settings.refresh_absolute_lifetime),
            retry_window: crate::secs(settings.refresh_retry_window),
        };
        let snapshot = self.snapshot()?;
        let client_of = |session: &crate::db::SessionInfo| {
            registry
                .get(&session.client_id)
                .filter(|c| !c.disabled && c.allows_grant("refresh_token"))
        };
        let outcome = self
            .db()
            .refresh(
                &old_hash,
                rules,
                |session| {
                    let Some(client) = client_of(session) else {
                        return Err("client_not_allowed");
                    };
                    match &authenticated {
                        Some(a) if a.client_id != session.client_id => Err("other_client"),
                        None if client.kind == crate::clients::ClientKind::Confidential => {
                            Err(CLIENT_UNAUTHENTICATED)
                        }
                        _ => Ok(()),
                    }
                },
                |user, session| {
                    let client = client_of(session).ok_or("client_not_allowed".to_owned())?;
                    let scope = client.narrow_scope(&session.scope);
                    let grant = AccessGrant {
                        user,
                        session_id: &session.id,
                        client_id: &session.client_id,
                        scope: &scope,
                        audiences: &client.audiences,
                    };
                    let access_token = settings
                        .sign_access(snapshot.signer(), &grant, rules.now)
                        .map_err(|e| e.to_string())?;
                    let (refresh_token, new_hash) = new_refresh_token();
                    let response = serde_json::to_vec(&TokenResponse {
                        access_token,
                        token_type: "Bearer",
                        expires_in: settings.access_token_lifetime.as_secs(),
                        refresh_token: Some(refresh_token),
                        scope,
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
                // Whoever presented the used token got the next pair: the
                // client retrying a lost answer, or someone who has the token.
                tracing::info!(target: "audit", event = "refresh_token_replay", %session_id);
                let event = crate::audit::Event::new("refresh_token_replay").session(&session_id);
                crate::audit::record(self.db(), self.now(), event).await;
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
                if reason == CLIENT_UNAUTHENTICATED {
                    return Err(OAuthError::InvalidClient {
                        challenge: false,
                        description: "a confidential client must authenticate",
                    });
                }
                Err(OAuthError::InvalidGrant)
            }
        }
    }
}

/// `POST /revoke` (RFC 7009): a refresh token revokes its whole family; an
/// access token this issuer signed (still valid) revokes itself, by `jti`,
/// wherever resource servers follow the feed. `200` for unknown tokens too,
/// so it reveals nothing.
pub(crate) async fn revoke(
    State(state): State<AppState>,
    form: Result<Form<Vec<(String, String)>>, FormRejection>,
) -> Result<Response, OAuthError> {
    let params = params(form)?;
    let token = required(&params, "token")?;
    // Refresh tokens are opaque (no dots); access tokens are JWTs.
    if token.contains('.') {
        let snapshot = state.snapshot()?;
        let jwks = snapshot.keyring().jwks();
        if let Ok(own) = check_own_access_token(jwks, state.issuer(), token, state.now()) {
            state
                .add_revocation(crate::revocation::Kind::Jti, &own.jti, "revoked")
                .await?;
            tracing::info!(target: "audit", event = "token_revoked", jti = %own.jti);
            let event = crate::audit::Event::new("token_revoked")
                .user(&own.sub)
                .session(&own.sid)
                .with("jti", own.jti.as_str());
            crate::audit::record(state.db(), state.now(), event).await;
        }
    } else if token.len() <= 512 {
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
