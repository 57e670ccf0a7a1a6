//! The cookie-session settings and what they do to a request or a
//! response: the Origin check, reading the refresh cookie, and the
//! `Set-Cookie` values that start, renew and end a session. The handlers are
//! in [`super::session`].

use std::time::Duration;

use axum::Json;
use axum::http::{HeaderMap, HeaderValue, Method, header};
use axum::response::{IntoResponse, Response};
use base64::Engine as _;
use cookie::{Cookie, SameSite};
use tower_http::cors::{AllowOrigin, CorsLayer};

use super::error::{ApiError, no_store};
use crate::config::CookieSessions;
use crate::tokens::TokenSettings;

/// The most refresh cookies a request is read for (each costs a lookup).
const MAX_REFRESH_COOKIES: usize = 4;

/// How long a browser may keep a preflight answer.
const PREFLIGHT_MAX_AGE: Duration = Duration::from_secs(600);

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
    pub(super) login_client: String,
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

    pub(super) fn cors(&self) -> Option<CorsLayer> {
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
                // A throttled or overloaded sign-in says when to retry.
                .expose_headers([header::RETRY_AFTER])
                .max_age(PREFLIGHT_MAX_AGE),
        )
    }

    /// The CSRF rule: exactly one `Origin`, ours or an allowed one.
    pub(super) fn check_origin(&self, headers: &HeaderMap) -> Result<(), ApiError> {
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

    /// The values of the refresh cookie in the request, at most
    /// [`MAX_REFRESH_COOKIES`]. More than one means another host of the
    /// domain planted one (cookie tossing): refresh then refuses to guess,
    /// and logout ends every session they name.
    pub(super) fn refresh_cookies(&self, headers: &HeaderMap) -> Vec<String> {
        cookie_values(headers, &self.refresh_name, MAX_REFRESH_COOKIES)
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
    /// name, path and domain they were set with) and, with a cookie domain, a
    /// refresh cookie some other host of it may have set there.
    pub(super) fn clearing(&self) -> Vec<HeaderValue> {
        let mut values = vec![
            set_cookie(&self.access_cookie("", 0)),
            set_cookie(&self.refresh_cookie_to_set("", 0)),
        ];
        if let Some(domain) = &self.domain {
            let mut planted = self.refresh_cookie_to_set("", 0);
            planted.set_domain(domain.clone());
            values.push(set_cookie(&planted));
        }
        values
    }

    /// `200` with the session's public facts and both cookies.
    pub(super) fn established(&self, fresh: &Fresh) -> Result<Response, ApiError> {
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
    pub(super) fn ended(&self) -> ApiError {
        ApiError::SessionEnded {
            clear: self.clearing(),
        }
    }
}

/// The non-empty values of cookie `name` in a request, at most `most`.
fn cookie_values(headers: &HeaderMap, name: &str, most: usize) -> Vec<String> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|text| Cookie::split_parse(text).flatten())
        .filter(|c| c.name() == name && !c.value().is_empty())
        .map(|c| c.value().to_owned())
        .take(most)
        .collect()
}

fn set_cookie(cookie: &Cookie<'_>) -> HeaderValue {
    // Names are checked tokens and values base64url and dots: always valid.
    HeaderValue::from_str(&cookie.to_string()).unwrap_or(HeaderValue::from_static(""))
}

/// A fresh token pair, from a login or a rotation.
#[derive(serde::Deserialize)]
pub(super) struct Fresh {
    pub(super) access_token: String,
    pub(super) expires_in: u64,
    pub(super) refresh_token: Option<String>,
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

/// Browser sign-in's two cookies, both `HttpOnly` and `SameSite=Lax`: the
/// SSO session (a client's link back to `/authorize` must carry it) and the
/// pre-login cookie the login form's CSRF token is bound to (a form posted
/// from another site arrives without it; a second tab's cross-site link to
/// `/authorize` brings it, so both tabs' forms stay good).
/// Both `Secure` and `__Host-` prefixed unless the issuer is plain HTTP on
/// loopback; both host-only, path `/`.
#[derive(Debug, Clone)]
pub(super) struct SignInCookies {
    secure: bool,
    sso_name: &'static str,
    login_name: &'static str,
    sso_max_age: i64,
    own_origin: Option<String>,
}

/// How long a login form may wait for its answer.
const LOGIN_FORM_MAX_AGE: i64 = 1800;

impl SignInCookies {
    pub(super) fn new(settings: &TokenSettings) -> Self {
        let secure = !crate::validate::is_loopback_http(&settings.issuer);
        let (sso_name, login_name) = if secure {
            ("__Host-tessera_sso", "__Host-tessera_login")
        } else {
            ("tessera_sso", "tessera_login")
        };
        Self {
            secure,
            sso_name,
            login_name,
            sso_max_age: crate::secs(settings.refresh_absolute_lifetime),
            own_origin: crate::validate::origin_of(&settings.issuer),
        }
    }

    fn values(headers: &HeaderMap, name: &str) -> Vec<String> {
        cookie_values(headers, name, crate::service::authorize::MAX_SSO_COOKIES)
    }

    /// The SSO cookie's values in the request (more than one: planted).
    pub(super) fn sso_values(&self, headers: &HeaderMap) -> Vec<String> {
        Self::values(headers, self.sso_name)
    }

    /// The pre-login cookie's values in the request.
    pub(super) fn login_values(&self, headers: &HeaderMap) -> Vec<String> {
        Self::values(headers, self.login_name)
    }

    fn cookie(&self, name: &'static str, value: &str, max_age: i64) -> HeaderValue {
        let cookie = Cookie::build((name, value.to_owned()))
            .http_only(true)
            .secure(self.secure)
            .same_site(SameSite::Lax)
            .path("/")
            .max_age(cookie::time::Duration::seconds(max_age))
            .build();
        set_cookie(&cookie)
    }

    /// Starts the SSO session in the browser.
    pub(super) fn set_sso(&self, value: &str) -> HeaderValue {
        self.cookie(self.sso_name, value, self.sso_max_age)
    }

    /// Removes the SSO cookie.
    pub(super) fn clear_sso(&self) -> HeaderValue {
        self.cookie(self.sso_name, "", 0)
    }

    /// The pre-login cookie.
    pub(super) fn set_login(&self, value: &str) -> HeaderValue {
        self.cookie(self.login_name, value, LOGIN_FORM_MAX_AGE)
    }

    /// Removes the pre-login cookie.
    pub(super) fn clear_login(&self) -> HeaderValue {
        self.cookie(self.login_name, "", 0)
    }

    /// Whether a form post may come from where its `Origin` says: the
    /// issuer's own origin, or `null` / none (what a browser sends for a
    /// page with `Referrer-Policy: no-referrer`). Any other origin is
    /// another site. The CSRF token, bound to a cookie that site cannot read
    /// or send, is the check that decides.
    pub(super) fn form_origin_ok(&self, headers: &HeaderMap) -> bool {
        let mut values = headers.get_all(header::ORIGIN).iter();
        match (values.next(), values.next()) {
            (None, _) => true,
            (Some(origin), None) => {
                origin.as_bytes() == b"null"
                    || self.own_origin.as_deref().map(str::as_bytes) == Some(origin.as_bytes())
            }
            _ => false,
        }
    }
}

/// The CSRF token of a form bound to `cookie` for `purpose` (the cookie's
/// value never appears in the page).
pub(super) fn csrf_token(purpose: &str, cookie: &str) -> String {
    tessera_keyring::b64url(&tessera_keyring::sha256(
        format!("tessera {purpose} csrf\n{cookie}").as_bytes(),
    ))
}

/// The cookie among `cookies` whose CSRF token for `purpose` is `token`
/// (compared in constant time).
pub(super) fn csrf_cookie<'a>(
    purpose: &str,
    cookies: &'a [String],
    token: &str,
) -> Option<&'a str> {
    let offered = tessera_keyring::sha256(token.as_bytes());
    cookies
        .iter()
        .find(|c| {
            let expected = tessera_keyring::sha256(csrf_token(purpose, c).as_bytes());
            crate::clients::same(&expected, &offered)
        })
        .map(String::as_str)
}
