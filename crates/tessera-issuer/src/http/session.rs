//! Cookie sessions for same-site web apps: `POST /session` signs in and sets
//! two `HttpOnly` cookies, `POST /session/refresh` rotates them,
//! `POST /session/logout` ends the session and clears them. No token ever
//! reaches the page's JavaScript, so an XSS cannot carry one away.
//!
//! Cookies travel with every request the browser makes, so each of these
//! endpoints first checks where the request comes from (CSRF): one `Origin`
//! header, the issuer's own origin or one of `allowed_origins`; anything else
//! (another origin, `null`, no `Origin` at all) is `403` before any other
//! work. Browsers send `Origin` on every `POST`; a client that does not is
//! not a browser this protects, and has `/login` and `/token`. The allowed
//! origins also get CORS with credentials (preflight answered, `Vary:
//! Origin`); other origins get no CORS headers.

use axum::extract::{FromRequest, Request, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::{Form, Json, Router};

use super::address::client_ip;
use super::cookies::Fresh;
use super::error::{ApiError, no_store};
use super::state::AppState;
use crate::passwords::Password;
use crate::service::AuthError;
use crate::service::clients::Offered;

/// The three routes, with CORS for the allowed origins (none: no CORS layer).
pub(super) fn routes(state: &AppState) -> Router<AppState> {
    let routes = Router::new()
        .route("/session", post(start))
        .route("/session/refresh", post(refresh))
        .route("/session/logout", post(logout));
    match state.sessions().cors() {
        Some(cors) => routes
            .layer(cors)
            .layer(axum::middleware::map_response(only_for_allowed)),
        None => routes,
    }
}

/// tower-http's CORS layer still says `Access-Control-Allow-Credentials` (and
/// on a preflight, the methods and headers) to an origin it does not allow;
/// without `Access-Control-Allow-Origin` none of it means anything, so other
/// origins get none of it.
async fn only_for_allowed(mut response: Response) -> Response {
    let headers = response.headers_mut();
    if !headers.contains_key(header::ACCESS_CONTROL_ALLOW_ORIGIN) {
        for name in [
            header::ACCESS_CONTROL_ALLOW_CREDENTIALS,
            header::ACCESS_CONTROL_ALLOW_METHODS,
            header::ACCESS_CONTROL_ALLOW_HEADERS,
            header::ACCESS_CONTROL_MAX_AGE,
            header::ACCESS_CONTROL_EXPOSE_HEADERS,
        ] {
            headers.remove(name);
        }
    }
    response
}

/// The sign-in body: JSON or a form.
#[derive(serde::Deserialize)]
struct Credentials {
    username: String,
    password: String,
}

/// `POST /session`: the same login as `/login` (same throttling, the same
/// answer for every wrong credential), answered with cookies.
async fn start(State(state): State<AppState>, request: Request) -> Result<Response, ApiError> {
    let sessions = state.sessions();
    sessions.check_origin(request.headers())?;
    let ip = client_ip(request.extensions());
    let form = request
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| {
            v.to_ascii_lowercase()
                .starts_with("application/x-www-form-urlencoded")
        });
    let credentials = if form {
        Form::<Credentials>::from_request(request, &()).await?.0
    } else {
        Json::<Credentials>::from_request(request, &()).await?.0
    };
    let tokens = state
        .service()
        .login(
            credentials.username,
            Password::new(credentials.password),
            ip,
        )
        .await?;
    sessions.established(&Fresh {
        access_token: tokens.access_token,
        expires_in: tokens.expires_in,
        refresh_token: tokens.refresh_token,
    })
}

/// `POST /session/refresh`: rotates the refresh cookie by the rules of the
/// refresh grant (retry window included), for the login client only.
async fn refresh(State(state): State<AppState>, headers: HeaderMap) -> Result<Response, ApiError> {
    let sessions = state.sessions();
    sessions.check_origin(&headers)?;
    let [token] = sessions
        .refresh_cookies(&headers)
        .try_into()
        .map_err(|_| sessions.ended())?;
    let offered = Offered {
        id: Some(sessions.login_client.clone()),
        ..Offered::default()
    };
    match state.service().refresh(&token, &offered).await {
        Ok(response) => {
            let fresh: Fresh =
                serde_json::from_slice(&response).map_err(|e| ApiError::Internal(e.to_string()))?;
            sessions.established(&fresh)
        }
        Err(
            AuthError::InvalidGrant
            | AuthError::InvalidClient { .. }
            | AuthError::UnauthorizedClient,
        ) => Err(sessions.ended()),
        Err(other) => Err(other.into()),
    }
}

/// `POST /session/logout`: ends the session (its access tokens go into the
/// revocation feed, as with `/logout`) and clears both cookies: `204`. With
/// several refresh cookies (one planted), every live session they name ends.
async fn logout(State(state): State<AppState>, headers: HeaderMap) -> Result<Response, ApiError> {
    let sessions = state.sessions();
    sessions.check_origin(&headers)?;
    let mut ended = false;
    for token in sessions.refresh_cookies(&headers) {
        match state.service().end_session(&token).await {
            Ok(()) => ended = true,
            Err(AuthError::InvalidGrant) => {}
            Err(other) => return Err(other.into()),
        }
    }
    if !ended {
        return Err(sessions.ended());
    }
    let mut response = (StatusCode::NO_CONTENT, no_store()).into_response();
    for value in sessions.clearing() {
        response.headers_mut().append(header::SET_COOKIE, value);
    }
    Ok(response)
}
