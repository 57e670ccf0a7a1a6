//! axum integration: the [`Authenticated`] extractor (and
//! `Option<Authenticated>` for routes that work with or without a user), the
//! [`RequireRole`], [`RequireScope`] and [`RequireUser`] guards, the
//! [`require_token`] layer for a whole router, and RFC 6750 error responses.
//!
//! The router's state must give a [`Verifier`] through `FromRef` (a `Verifier`
//! as the state itself works).
//!
//! | request | answer |
//! | --- | --- |
//! | no `Authorization` header | `401`, `WWW-Authenticate: Bearer realm="…"` |
//! | two `Authorization` headers, a token in the query string, a scheme other than `Bearer` | `400`, `error="invalid_request"` |
//! | a token that fails verification | `401`, `error="invalid_token"` and a short `error_description` |
//! | a valid token without the required role | `403`, `error="insufficient_scope"` |
//! | a valid token without the required scope ([`RequireScope`]) | `403`, `error="insufficient_scope", scope="…"` |
//! | a client's own token where [`RequireUser`] wants a user's | `403`, `error="insufficient_scope"` |
//! | `Option<Authenticated>` and no token at all | `None` (any token present must verify) |
//! | a token in more than one of: the header, a configured forwarded header, the cookie | `400`, `error="invalid_request"` |
//! | no usable keys (issuer never reached, or stale past the limit) | `503` with `Retry-After` |
//! | a cookie-borne token on an unsafe method from an origin not allowed (or no `Origin`) | `403`, `"error": "invalid_origin"` |
//!
//! With a cookie source configured, a request without an `Authorization`
//! header is authenticated by the cookie instead (a web app's, set by the
//! issuer's `POST /session`).
//!
//! A resource server with one route for any signed-in user and one for
//! admins (compiled with the docs; `no_run` because it would fetch the
//! issuer's JWKS):
//!
//! ```no_run
//! use std::sync::Arc;
//!
//! use axum::{Router, routing::get};
//! use tessera_verifier::axum::{Authenticated, RequireRole, Role};
//! use tessera_verifier::{SystemClock, Verifier, VerifierConfig};
//!
//! struct Admin;
//! impl Role for Admin {
//!     const NAME: &'static str = "admin";
//! }
//!
//! async fn me(Authenticated(token): Authenticated) -> String {
//!     format!("hello, {}", token.subject())
//! }
//!
//! # async fn run() -> Result<(), Box<dyn std::error::Error>> {
//! let config = VerifierConfig::new("https://auth.example.com", ["https://api.example.com"]);
//! // Starts fetching the JWKS; requests wait for the first answer.
//! let verifier = Verifier::start(config, Arc::new(SystemClock))?;
//! let app: Router = Router::new()
//!     .route("/me", get(me))
//!     .route("/admin", get(|_: RequireRole<Admin>| async { "hello, admin" }))
//!     .with_state(verifier);
//! let listener = tokio::net::TcpListener::bind("127.0.0.1:8081").await?;
//! axum::serve(listener, app).await?;
//! # Ok(())
//! # }
//! ```
//!
//! (Serve it with `tessera_serve::serve` in production: it adds header,
//! body and idle timeouts and a bounded shutdown.)

use std::marker::PhantomData;

use ::axum::Json;
use ::axum::extract::{FromRef, FromRequestParts, OptionalFromRequestParts};
use ::axum::http::request::Parts;
use ::axum::http::{HeaderValue, Method, StatusCode, header};
use ::axum::response::{IntoResponse, Response};
use serde::de::DeserializeOwned;

use crate::{AccessClaims, Verified, Verifier, VerifyError};

/// A request whose bearer token verified. Use it as a handler argument.
#[derive(Debug, Clone)]
pub struct Authenticated<C = AccessClaims>(pub Verified<C>);

/// A role a [`RequireRole`] guard demands: declare one type per role.
///
/// ```
/// struct Admin;
/// impl tessera_verifier::axum::Role for Admin {
///     const NAME: &'static str = "admin";
/// }
/// ```
pub trait Role: Send + Sync + 'static {
    /// The role's name in the token's `roles` claim.
    const NAME: &'static str;
}

/// A request whose bearer token verified and carries role `R`; `403
/// insufficient_scope` otherwise.
#[derive(Debug, Clone)]
pub struct RequireRole<R: Role>(pub Verified<AccessClaims>, PhantomData<R>);

impl<R: Role> RequireRole<R> {
    /// The verified token.
    pub fn token(&self) -> &Verified<AccessClaims> {
        &self.0
    }
}

/// Why a request was refused, as an RFC 6750 response.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum AuthError {
    /// No credentials: `401` with a bare challenge.
    Missing {
        /// The challenge's realm.
        realm: String,
    },
    /// A malformed request: `400 invalid_request`.
    InvalidRequest {
        /// The challenge's realm.
        realm: String,
        /// What is wrong.
        description: &'static str,
    },
    /// The token did not verify: `401 invalid_token` (or `503` when no keys are
    /// usable, which is not the token's fault).
    InvalidToken {
        /// The challenge's realm.
        realm: String,
        /// Why.
        error: VerifyError,
    },
    /// The token is valid but lacks a role: `403 insufficient_scope`.
    InsufficientScope {
        /// The challenge's realm.
        realm: String,
        /// The role required.
        role: &'static str,
    },
    /// The token is valid but lacks a scope: `403 insufficient_scope` with
    /// the scope named in the challenge (RFC 6750 §3.1).
    MissingScope {
        /// The challenge's realm.
        realm: String,
        /// The scope required.
        scope: &'static str,
    },
    /// The route needs a user's token and this one is a client's own
    /// (client credentials): `403 insufficient_scope`.
    UserRequired {
        /// The challenge's realm.
        realm: String,
    },
    /// A state-changing request authenticated by a cookie, from an origin
    /// the [`CookieSource`](crate::CookieSource) does not allow (CSRF):
    /// `403 invalid_origin`.
    ForbiddenOrigin,
}

impl IntoResponse for AuthError {
    fn into_response(self) -> Response {
        let (status, challenge, error, description) = match &self {
            Self::Missing { realm } => (
                StatusCode::UNAUTHORIZED,
                format!("Bearer realm=\"{realm}\""),
                "invalid_request",
                "a bearer token is required".to_owned(),
            ),
            Self::InvalidRequest { realm, description } => (
                StatusCode::BAD_REQUEST,
                format!(
                    "Bearer realm=\"{realm}\", error=\"invalid_request\", error_description=\"{description}\""
                ),
                "invalid_request",
                (*description).to_owned(),
            ),
            Self::InvalidToken {
                error: error @ (VerifyError::KeysUnavailable | VerifyError::RevocationsUnavailable),
                ..
            } => {
                let description = if *error == VerifyError::KeysUnavailable {
                    "token verification keys are unavailable"
                } else {
                    "the revocation list is unavailable"
                };
                let body = serde_json::json!({
                    "error": "temporarily_unavailable",
                    "error_description": description,
                });
                return (
                    StatusCode::SERVICE_UNAVAILABLE,
                    [(header::RETRY_AFTER, HeaderValue::from_static("5"))],
                    Json(body),
                )
                    .into_response();
            }
            Self::InvalidToken { realm, error } => (
                StatusCode::UNAUTHORIZED,
                format!(
                    "Bearer realm=\"{realm}\", error=\"invalid_token\", error_description=\"{error}\""
                ),
                "invalid_token",
                error.to_string(),
            ),
            Self::InsufficientScope { realm, role } => (
                StatusCode::FORBIDDEN,
                format!(
                    "Bearer realm=\"{realm}\", error=\"insufficient_scope\", error_description=\"role {role} required\""
                ),
                "insufficient_scope",
                format!("role {role} required"),
            ),
            Self::MissingScope { realm, scope } => (
                StatusCode::FORBIDDEN,
                format!(
                    "Bearer realm=\"{realm}\", error=\"insufficient_scope\", scope=\"{scope}\", error_description=\"scope {scope} required\""
                ),
                "insufficient_scope",
                format!("scope {scope} required"),
            ),
            Self::UserRequired { realm } => (
                StatusCode::FORBIDDEN,
                format!(
                    "Bearer realm=\"{realm}\", error=\"insufficient_scope\", error_description=\"a user's token is required\""
                ),
                "insufficient_scope",
                "a user's token is required, not a client's own".to_owned(),
            ),
            Self::ForbiddenOrigin => {
                let body = serde_json::json!({
                    "error": "invalid_origin",
                    "error_description": "a cookie authenticates state-changing requests from allowed origins only",
                });
                return (StatusCode::FORBIDDEN, Json(body)).into_response();
            }
        };
        let challenge =
            HeaderValue::from_str(&challenge).unwrap_or(HeaderValue::from_static("Bearer"));
        let body = serde_json::json!({"error": error, "error_description": description});
        (status, [(header::WWW_AUTHENTICATE, challenge)], Json(body)).into_response()
    }
}

/// The token of a request, from where `verifier` looks: the `Authorization`
/// header ([`bearer_token`]); with a configured
/// [`token_header`](crate::VerifierConfig::token_header), that header (the raw
/// token, as gateways forward it); with a [`CookieSource`](crate::CookieSource),
/// the cookie, which on an unsafe method needs an allowed `Origin`. A request
/// carrying a token in more than one of them is refused (`400`): there is no
/// telling which one was meant.
pub fn request_token<'a>(parts: &'a Parts, verifier: &Verifier) -> Result<&'a str, AuthError> {
    let realm = verifier.realm();
    let invalid = |description| AuthError::InvalidRequest {
        realm: realm.to_owned(),
        description,
    };
    let forwarded = match verifier.token_header() {
        Some(name) => forwarded_token(parts, name).map_err(invalid)?,
        None => None,
    };
    let cookie = match verifier.cookie_source() {
        Some(source) => cookie_token(parts, &source.name)
            .map_err(invalid)?
            .map(|token| (token, source)),
        None => None,
    };
    let authorization = parts.headers.contains_key(header::AUTHORIZATION);
    let sources = usize::from(authorization)
        + usize::from(forwarded.is_some())
        + usize::from(cookie.is_some());
    if sources > 1 {
        return Err(invalid(
            "a token in more than one place (Authorization header, forwarded header, cookie)",
        ));
    }
    if let Some(token) = forwarded {
        refuse_query_token(parts, realm)?;
        return Ok(token);
    }
    let Some((token, source)) = cookie else {
        return bearer_token(parts, realm);
    };
    refuse_query_token(parts, realm)?;
    let safe = matches!(
        parts.method,
        Method::GET | Method::HEAD | Method::OPTIONS | Method::TRACE
    );
    if !safe && !origin_allowed(parts, &source.allowed_origins) {
        return Err(AuthError::ForbiddenOrigin);
    }
    Ok(token)
}

/// The raw token in header `name`, if present (once, and shaped like a
/// token: base64url and dots).
fn forwarded_token<'a>(parts: &'a Parts, name: &str) -> Result<Option<&'a str>, &'static str> {
    let mut values = parts.headers.get_all(name).iter();
    let Some(value) = values.next() else {
        return Ok(None);
    };
    if values.next().is_some() {
        return Err("the forwarded token header appears more than once");
    }
    let token = value
        .to_str()
        .map_err(|_| "malformed forwarded token")?
        .trim();
    let shaped = !token.is_empty()
        && token
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_' || b == b'.');
    if shaped {
        Ok(Some(token))
    } else {
        Err("malformed forwarded token")
    }
}

/// The value of cookie `name`, if the request has it (once: a second, which a
/// sibling host may have planted, makes the request ambiguous).
fn cookie_token<'a>(parts: &'a Parts, name: &str) -> Result<Option<&'a str>, &'static str> {
    let mut found = None;
    let texts = parts
        .headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok());
    for text in texts {
        for cookie in cookie::Cookie::split_parse(text).flatten() {
            if cookie.name() != name {
                continue;
            }
            if found.is_some() {
                return Err("the token cookie appears more than once");
            }
            found = cookie.value_raw();
        }
    }
    Ok(found.filter(|v| !v.is_empty()))
}

/// One `Origin` header, one of `allowed`.
fn origin_allowed(parts: &Parts, allowed: &[String]) -> bool {
    let mut values = parts.headers.get_all(header::ORIGIN).iter();
    match (values.next(), values.next()) {
        (Some(origin), None) => origin
            .to_str()
            .is_ok_and(|o| allowed.iter().any(|a| a.eq_ignore_ascii_case(o))),
        _ => false,
    }
}

/// RFC 6750 §2.3 tokens are refused: they end up in logs and browser
/// histories.
fn refuse_query_token(parts: &Parts, realm: &str) -> Result<(), AuthError> {
    if parts.uri.query().is_some_and(|q| {
        q.split('&')
            .any(|p| p == "access_token" || p.starts_with("access_token="))
    }) {
        return Err(AuthError::InvalidRequest {
            realm: realm.to_owned(),
            description: "tokens in the query string are not accepted",
        });
    }
    Ok(())
}

/// The bearer token of a request (RFC 6750 §2.1): exactly one `Authorization`
/// header, scheme `Bearer` in any case, a `b64token`. Tokens in the query
/// string (§2.3) are refused: they end up in logs and browser histories.
pub fn bearer_token<'a>(parts: &'a Parts, realm: &str) -> Result<&'a str, AuthError> {
    let invalid = |description| AuthError::InvalidRequest {
        realm: realm.to_owned(),
        description,
    };
    refuse_query_token(parts, realm)?;
    let mut values = parts.headers.get_all(header::AUTHORIZATION).iter();
    let Some(value) = values.next() else {
        return Err(AuthError::Missing {
            realm: realm.to_owned(),
        });
    };
    if values.next().is_some() {
        return Err(invalid("more than one Authorization header"));
    }
    // Validated as bytes in one branch-free pass (it vectorises; a token is
    // ~1 KiB), instead of `to_str` and a second scan.
    let value = value.as_bytes();
    let space = value
        .iter()
        .position(|&b| b == b' ')
        .ok_or_else(|| invalid("expected: Authorization: Bearer <token>"))?;
    if !value[..space].eq_ignore_ascii_case(b"bearer") {
        return Err(invalid("expected the Bearer scheme"));
    }
    let mut token = &value[space..];
    while let [b' ', rest @ ..] = token {
        token = rest;
    }
    while let [rest @ .., b' '] = token {
        token = rest;
    }
    let mut body = token;
    while let [rest @ .., b'='] = body {
        body = rest;
    }
    let b64token = |b: u8| {
        b.is_ascii_alphanumeric()
            | (b == b'-')
            | (b == b'.')
            | (b == b'_')
            | (b == b'~')
            | (b == b'+')
            | (b == b'/')
    };
    if body.is_empty() || !body.iter().fold(true, |ok, &b| ok & b64token(b)) {
        return Err(invalid("malformed bearer token"));
    }
    // All ASCII now: this cannot fail.
    std::str::from_utf8(token).map_err(|_| invalid("malformed bearer token"))
}

impl<S, C> FromRequestParts<S> for Authenticated<C>
where
    Verifier: FromRef<S>,
    S: Send + Sync,
    C: DeserializeOwned + Send + Sync + 'static,
{
    type Rejection = AuthError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        // Verified already by the [`require_token`] layer.
        if let Some(verified) = parts.extensions.get::<Verified<C>>() {
            return Ok(Self(verified.clone()));
        }
        let verifier = Verifier::from_ref(state);
        let token = request_token(parts, &verifier)?;
        match verifier.verify::<C>(token).await {
            Ok(verified) => Ok(Self(verified)),
            Err(error) => {
                tracing::debug!(reason = error.reason(), "bearer token refused");
                Err(AuthError::InvalidToken {
                    realm: verifier.realm().to_owned(),
                    error,
                })
            }
        }
    }
}

impl<S, R> FromRequestParts<S> for RequireRole<R>
where
    Verifier: FromRef<S>,
    S: Send + Sync,
    R: Role,
{
    type Rejection = AuthError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        let Authenticated(verified) =
            <Authenticated as FromRequestParts<_>>::from_request_parts(parts, state).await?;
        if verified.has_role(R::NAME) {
            Ok(Self(verified, PhantomData))
        } else {
            Err(AuthError::InsufficientScope {
                realm: Verifier::from_ref(state).realm().to_owned(),
                role: R::NAME,
            })
        }
    }
}

/// A scope a [`RequireScope`] guard demands: declare one type per scope.
///
/// ```
/// struct ReportsRead;
/// impl tessera_verifier::axum::Scope for ReportsRead {
///     const NAME: &'static str = "reports:read";
/// }
/// ```
pub trait Scope: Send + Sync + 'static {
    /// The scope's name in the token's `scope` claim.
    const NAME: &'static str;
}

/// A request whose token verified and carries scope `S` (a user's or a
/// client's own); `403 insufficient_scope` with `scope="…"` otherwise.
#[derive(Debug, Clone)]
pub struct RequireScope<S: Scope>(pub Verified<AccessClaims>, PhantomData<S>);

impl<S: Scope> RequireScope<S> {
    /// The verified token.
    pub fn token(&self) -> &Verified<AccessClaims> {
        &self.0
    }
}

impl<St, S> FromRequestParts<St> for RequireScope<S>
where
    Verifier: FromRef<St>,
    St: Send + Sync,
    S: Scope,
{
    type Rejection = AuthError;

    async fn from_request_parts(parts: &mut Parts, state: &St) -> Result<Self, Self::Rejection> {
        let Authenticated(verified) =
            <Authenticated as FromRequestParts<_>>::from_request_parts(parts, state).await?;
        if verified.has_scope(S::NAME) {
            Ok(Self(verified, PhantomData))
        } else {
            Err(AuthError::MissingScope {
                realm: Verifier::from_ref(state).realm().to_owned(),
                scope: S::NAME,
            })
        }
    }
}

/// A request whose token verified and was issued to a user (not a client's
/// token for itself, from client credentials); `403` otherwise.
#[derive(Debug, Clone)]
pub struct RequireUser(pub Verified<AccessClaims>);

impl<S> FromRequestParts<S> for RequireUser
where
    Verifier: FromRef<S>,
    S: Send + Sync,
{
    type Rejection = AuthError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        let Authenticated(verified) =
            <Authenticated as FromRequestParts<_>>::from_request_parts(parts, state).await?;
        if verified.is_user() {
            Ok(Self(verified))
        } else {
            Err(AuthError::UserRequired {
                realm: Verifier::from_ref(state).realm().to_owned(),
            })
        }
    }
}

/// `Option<Authenticated>`: `None` when the request carries no token at all;
/// a token that fails is still refused (`401`), never taken as anonymous.
impl<S, C> OptionalFromRequestParts<S> for Authenticated<C>
where
    Verifier: FromRef<S>,
    S: Send + Sync,
    C: DeserializeOwned + Send + Sync + 'static,
{
    type Rejection = AuthError;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &S,
    ) -> Result<Option<Self>, Self::Rejection> {
        match <Self as FromRequestParts<S>>::from_request_parts(parts, state).await {
            Ok(authenticated) => Ok(Some(authenticated)),
            Err(AuthError::Missing { .. }) => Ok(None),
            Err(other) => Err(other),
        }
    }
}

/// A layer for a whole router, for those who prefer layers to extractors:
/// every request must carry a token that verifies (the same sources and
/// answers as [`Authenticated`]), and the [`Verified`] token goes into the
/// request's extensions, where `Authenticated` (and the guards) find it
/// without verifying again.
///
/// ```no_run
/// # use axum::{Router, Extension, routing::get};
/// # use tessera_verifier::{Verified, Verifier};
/// # fn protect(verifier: Verifier) -> Router {
/// Router::new()
///     .route("/a", get(|Extension(t): Extension<Verified>| async move { t.subject().to_owned() }))
///     .layer(axum::middleware::from_fn_with_state(
///         verifier,
///         tessera_verifier::axum::require_token,
///     ))
/// # }
/// ```
pub async fn require_token(
    ::axum::extract::State(verifier): ::axum::extract::State<Verifier>,
    request: ::axum::extract::Request,
    next: ::axum::middleware::Next,
) -> Response {
    let (mut parts, body) = request.into_parts();
    match <Authenticated as FromRequestParts<_>>::from_request_parts(&mut parts, &verifier).await {
        Ok(Authenticated(verified)) => {
            parts.extensions.insert(verified);
            next.run(::axum::extract::Request::from_parts(parts, body))
                .await
        }
        Err(rejection) => rejection.into_response(),
    }
}
