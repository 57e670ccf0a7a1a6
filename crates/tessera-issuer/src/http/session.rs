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

use std::time::Duration;

use axum::extract::{FromRequest, Request, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::{Form, Json, Router};
use base64::Engine as _;
use cookie::{Cookie, SameSite};
use tower_http::cors::{AllowOrigin, CorsLayer};

use super::address::client_ip;
use super::error::{ApiError, no_store};
use super::state::AppState;
use crate::config::CookieSessions;
use crate::passwords::Password;
use crate::service::AuthError;
use crate::service::clients::Offered;
use crate::tokens::TokenSettings;

/// How long a browser may keep a preflight answer.
const PREFLIGHT_MAX_AGE: Duration = Duration::from_secs(600);

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

/// The cookie-session settings, prepared once from the configuration.
#[derive(Debug, Clone)]
pub(super) struct Sessions {
    access_name: String,
    refresh_name: String,
    domain: Option<String>,
    secure: bool,
    refresh_path: String,
    access_max_age: i64,
    refresh_max_age: i64,
    own_origin: Option<String>,
    allowed_origins: Vec<String>,
    login_client: String,
}

impl Sessions {
    /// For an issuer with `settings`: `Secure` cookies unless its URL is
    /// plain HTTP on loopback; the refresh cookie's path is `/session` under
    /// the issuer URL's path.
    pub(super) fn new(settings: &TokenSettings, config: &CookieSessions) -> Self {
        let url = settings.issuer.as_str();
        let path = url
            .find("://")
            .and_then(|i| url[i + 3..].find('/').map(|j| &url[i + 3 + j..]))
            .unwrap_or("")
            .trim_end_matches('/');
        Self {
            access_name: config.access_cookie.clone(),
            refresh_name: config.refresh_cookie.clone(),
            domain: config.cookie_domain.clone(),
            secure: !crate::validate::is_loopback_http(url),
            refresh_path: format!("{path}/session"),
            access_max_age: crate::secs(settings.access_token_lifetime),
            refresh_max_age: crate::secs(settings.refresh_idle_lifetime),
            own_origin: crate::validate::origin_of(url),
            allowed_origins: config.allowed_origins.clone(),
            login_client: settings.login_client.clone(),
        }
    }

    fn cors(&self) -> Option<CorsLayer> {
        let origins: Vec<HeaderValue> = self
            .allowed_origins
            .iter()
            .filter_map(|o| HeaderValue::from_str(o).ok())
            .collect();
        if origins.is_empty() {
            return None;
        }
        Some(
            CorsLayer::new()
                .allow_origin(AllowOrigin::list(origins))
                .allow_methods([Method::POST])
                .allow_headers([header::CONTENT_TYPE])
                .allow_credentials(true)
                .max_age(PREFLIGHT_MAX_AGE),
        )
    }

    /// The CSRF rule: exactly one `Origin`, ours or an allowed one.
    fn check_origin(&self, headers: &HeaderMap) -> Result<(), ApiError> {
        let mut values = headers.get_all(header::ORIGIN).iter();
        let (Some(origin), None) = (values.next(), values.next()) else {
            return Err(ApiError::ForbiddenOrigin);
        };
        let origin = origin.as_bytes();
        let allowed = self.own_origin.as_deref().map(str::as_bytes) == Some(origin)
            || self.allowed_origins.iter().any(|a| a.as_bytes() == origin);
        if allowed {
            Ok(())
        } else {
            Err(ApiError::ForbiddenOrigin)
        }
    }

    /// The refresh cookie's value, if the request carries it once (twice is
    /// refused: a sibling host may have planted the second).
    fn refresh_cookie(&self, headers: &HeaderMap) -> Result<Option<String>, ApiError> {
        let mut found = None;
        let texts = headers
            .get_all(header::COOKIE)
            .iter()
            .filter_map(|v| v.to_str().ok());
        for text in texts {
            for cookie in Cookie::split_parse(text).flatten() {
                if cookie.name() != self.refresh_name {
                    continue;
                }
                if found.is_some() {
                    return Err(ApiError::InvalidRequest(format!(
                        "more than one {} cookie",
                        self.refresh_name
                    )));
                }
                found = Some(cookie.value().to_owned());
            }
        }
        Ok(found.filter(|v| !v.is_empty()))
    }

    fn access_cookie(&self, value: &str, max_age: i64) -> Cookie<'static> {
        let mut cookie = Cookie::build((self.access_name.clone(), value.to_owned()))
            .http_only(true)
            .secure(self.secure)
            .same_site(SameSite::Lax)
            .path("/")
            .max_age(cookie::time::Duration::seconds(max_age));
        if let Some(domain) = &self.domain {
            cookie = cookie.domain(domain.clone());
        }
        cookie.build()
    }

    /// Host-only whatever `cookie_domain` says: only the issuer reads it.
    fn refresh_cookie_to_set(&self, value: &str, max_age: i64) -> Cookie<'static> {
        Cookie::build((self.refresh_name.clone(), value.to_owned()))
            .http_only(true)
            .secure(self.secure)
            .same_site(SameSite::Strict)
            .path(self.refresh_path.clone())
            .max_age(cookie::time::Duration::seconds(max_age))
            .build()
    }

    /// `Set-Cookie` values that remove both cookies (`Max-Age=0`, the same
    /// name, path and domain they were set with).
    fn clearing(&self) -> [HeaderValue; 2] {
        [
            set_cookie(&self.access_cookie("", 0)),
            set_cookie(&self.refresh_cookie_to_set("", 0)),
        ]
    }

    /// `200` with the session's public facts and both cookies.
    fn established(&self, fresh: &Fresh) -> Result<Response, ApiError> {
        let facts = public_facts(&fresh.access_token)?;
        let mut response = (
            no_store(),
            Json(serde_json::json!({
                "username": facts.preferred_username,
                "roles": facts.roles,
                "expires_in": fresh.expires_in,
            })),
        )
            .into_response();
        let age = i64::try_from(fresh.expires_in).unwrap_or(self.access_max_age);
        let headers = response.headers_mut();
        headers.append(
            header::SET_COOKIE,
            set_cookie(&self.access_cookie(&fresh.access_token, age)),
        );
        if let Some(refresh) = &fresh.refresh_token {
            headers.append(
                header::SET_COOKIE,
                set_cookie(&self.refresh_cookie_to_set(refresh, self.refresh_max_age)),
            );
        }
        Ok(response)
    }

    /// `401`: there is no live session; both cookies cleared.
    fn ended(&self) -> ApiError {
        ApiError::SessionEnded {
            clear: self.clearing(),
        }
    }
}

fn set_cookie(cookie: &Cookie<'_>) -> HeaderValue {
    // Names are checked tokens and values base64url and dots: always valid.
    HeaderValue::from_str(&cookie.to_string()).unwrap_or(HeaderValue::from_static(""))
}

/// A fresh token pair, from a login or a rotation.
#[derive(serde::Deserialize)]
struct Fresh {
    access_token: String,
    expires_in: u64,
    refresh_token: Option<String>,
}

/// What the page may know of its session, read from the access token the
/// issuer has just signed.
#[derive(serde::Deserialize)]
struct Facts {
    preferred_username: String,
    #[serde(default)]
    roles: Vec<String>,
}

fn public_facts(access_token: &str) -> Result<Facts, ApiError> {
    let payload = access_token
        .split('.')
        .nth(1)
        .and_then(|p| {
            base64::engine::general_purpose::URL_SAFE_NO_PAD
                .decode(p)
                .ok()
        })
        .ok_or_else(|| ApiError::Internal("a fresh access token without a payload".to_owned()))?;
    serde_json::from_slice(&payload).map_err(|e| ApiError::Internal(e.to_string()))
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
    let Some(token) = sessions.refresh_cookie(&headers)? else {
        return Err(sessions.ended());
    };
    let offered = Offered {
        id: Some(sessions.login_client.clone()),
        secret: None,
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
/// revocation feed, as with `/logout`) and clears both cookies: `204`.
async fn logout(State(state): State<AppState>, headers: HeaderMap) -> Result<Response, ApiError> {
    let sessions = state.sessions();
    sessions.check_origin(&headers)?;
    let Some(token) = sessions.refresh_cookie(&headers)? else {
        return Err(sessions.ended());
    };
    match state.service().end_session(&token).await {
        Ok(()) => {
            let mut response = (StatusCode::NO_CONTENT, no_store()).into_response();
            for value in sessions.clearing() {
                response.headers_mut().append(header::SET_COOKIE, value);
            }
            Ok(response)
        }
        Err(AuthError::InvalidGrant) => Err(sessions.ended()),
        Err(other) => Err(other.into()),
    }
}
