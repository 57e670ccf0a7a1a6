//! The OAuth 2.0 endpoints: `/token` (RFC 6749: authorization code with
//! PKCE, refresh, client credentials and password grants; RFC 8707
//! `resource`)
//! and `/revoke` (RFC 7009), and how a request offers client credentials.

use std::collections::HashMap;

use axum::Form;
use axum::body::Bytes;
use axum::extract::State;
use axum::extract::rejection::FormRejection;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use base64::Engine as _;
use zeroize::Zeroizing;

use super::address::client_ip;
use super::error::ApiError;
use super::error::no_store;
use super::state::AppState;
use crate::passwords::Password;
use crate::service::AuthError;
use crate::service::assertion::{ASSERTION_TYPE, MAX_ASSERTION_BYTES};
use crate::service::clients::{Offered, Proof};

/// Form parameters, each at most once (RFC 6749 §3.2).
pub(super) fn params(
    form: Result<Form<Vec<(String, String)>>, FormRejection>,
) -> Result<HashMap<String, String>, ApiError> {
    let Form(pairs) = form?;
    unique(pairs)
}

/// Form parameters, each at most once, but `resource`, which RFC 8707 lets a
/// request repeat: returned apart, in order.
fn token_params(
    form: Result<Form<Vec<(String, String)>>, FormRejection>,
) -> Result<(HashMap<String, String>, Vec<String>), ApiError> {
    let Form(pairs) = form?;
    let (resources, rest): (Vec<_>, Vec<_>) = pairs.into_iter().partition(|(k, _)| k == "resource");
    Ok((
        unique(rest)?,
        resources.into_iter().map(|(_, v)| v).collect(),
    ))
}

/// Parameters, each at most once (else `400 invalid_request`).
pub(super) fn unique(pairs: Vec<(String, String)>) -> Result<HashMap<String, String>, ApiError> {
    let mut map = HashMap::new();
    for (k, v) in pairs {
        if map.insert(k, v).is_some() {
            return Err(ApiError::InvalidRequest(
                "a parameter appears more than once".to_owned(),
            ));
        }
    }
    Ok(map)
}

fn required<'a>(params: &'a HashMap<String, String>, name: &str) -> Result<&'a str, ApiError> {
    params
        .get(name)
        .map(String::as_str)
        .filter(|v| !v.is_empty())
        .ok_or_else(|| ApiError::InvalidRequest(name.to_owned()))
}

/// The client credentials a request offers: HTTP Basic, `client_id` (and
/// `client_secret`) in the body (RFC 6749 §2.3.1), or a signed assertion
/// (RFC 7523 §2.2); one way only.
fn offered(
    headers: &HeaderMap,
    params: &HashMap<String, String>,
    ip: Option<std::net::IpAddr>,
) -> Result<Offered, ApiError> {
    let present = |name: &str| params.get(name).filter(|v| !v.is_empty());
    let body_id = present("client_id");
    let body_secret = present("client_secret");
    let assertion = present("client_assertion");
    let assertion_type = present("client_assertion_type");
    let basic = headers.get(header::AUTHORIZATION);
    if assertion.is_some() || assertion_type.is_some() {
        if basic.is_some() || body_secret.is_some() {
            return Err(ApiError::InvalidRequest(
                "more than one client authentication method".to_owned(),
            ));
        }
        if assertion_type.map(String::as_str) != Some(ASSERTION_TYPE) {
            return Err(ApiError::InvalidClient {
                challenge: false,
                description: "client_assertion_type is not urn:ietf:params:oauth:client-assertion-type:jwt-bearer",
            });
        }
        let assertion =
            assertion.ok_or_else(|| ApiError::InvalidRequest("client_assertion".to_owned()))?;
        if assertion.len() > MAX_ASSERTION_BYTES {
            return Err(ApiError::InvalidClient {
                challenge: false,
                description: "the client assertion is too large",
            });
        }
        return Ok(Offered {
            id: body_id.cloned(),
            proof: Proof::Assertion(Zeroizing::new(assertion.clone())),
            ip,
        });
    }
    if let Some(value) = basic {
        let (id, secret) = basic_credentials(value).ok_or(ApiError::InvalidClient {
            challenge: true,
            description: "unreadable HTTP Basic credentials",
        })?;
        if body_secret.is_some() || body_id.is_some_and(|b| *b != id) {
            return Err(ApiError::InvalidRequest(
                "client credentials in both the Authorization header and the body".to_owned(),
            ));
        }
        return Ok(Offered {
            id: Some(id),
            proof: Proof::Basic(secret),
            ip,
        });
    }
    Ok(Offered {
        id: body_id.cloned(),
        proof: body_secret.map_or(Proof::None, |s| Proof::Post(Zeroizing::new(s.clone()))),
        ip,
    })
}

/// The `(client_id, secret)` of an `Authorization: Basic` value, each
/// form-urlencoded as RFC 6749 §2.3.1 says.
pub(super) fn basic_credentials(value: &HeaderValue) -> Option<(String, Zeroizing<String>)> {
    let value = value.to_str().ok()?;
    let (scheme, encoded) = value.split_once(' ')?;
    if !scheme.eq_ignore_ascii_case("basic") {
        return None;
    }
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(encoded.trim())
        .ok()?;
    let text = Zeroizing::new(String::from_utf8(decoded).ok()?);
    let (id, secret) = text.split_once(':')?;
    Some((form_decode(id)?, Zeroizing::new(form_decode(secret)?)))
}

/// One form-urlencoded value (`+` is a space, `%XX` a byte).
fn form_decode(text: &str) -> Option<String> {
    let uri = format!("/?v={text}").parse().ok()?;
    let axum::extract::Query(pairs) =
        axum::extract::Query::<Vec<(String, String)>>::try_from_uri(&uri).ok()?;
    match pairs.as_slice() {
        [(_, value)] => Some(value.clone()),
        _ => None,
    }
}

/// `POST /token`.
pub(super) async fn token(
    State(state): State<AppState>,
    extensions: axum::http::Extensions,
    headers: HeaderMap,
    form: Result<Form<Vec<(String, String)>>, FormRejection>,
) -> Result<Response, ApiError> {
    let (params, resources) = token_params(form)?;
    let grant_type = params
        .get("grant_type")
        .ok_or_else(|| ApiError::InvalidRequest("grant_type".to_owned()))?;
    let offered = offered(&headers, &params, client_ip(&extensions))?;
    let service = state.service();
    let response = match grant_type.as_str() {
        "refresh_token" => {
            service
                .refresh(required(&params, "refresh_token")?, &offered)
                .await?
        }
        "password" => {
            let password = params.get("password").cloned().unwrap_or_default();
            let tokens = service
                .password_grant(
                    &offered,
                    params.get("username").map(String::as_str),
                    Password::new(password),
                    params.get("scope").map(String::as_str),
                    client_ip(&extensions),
                )
                .await
                .map_err(|err| match err {
                    // RFC 6749 §5.2: wrong resource-owner credentials are
                    // an invalid grant here (`/login` says 401).
                    AuthError::InvalidCredentials => ApiError::InvalidGrant,
                    other => other.into(),
                })?;
            serde_json::to_vec(&tokens).map_err(|e| ApiError::Internal(e.to_string()))?
        }
        "authorization_code" => {
            let tokens = service
                .authorization_code(
                    &offered,
                    required(&params, "code")?,
                    params.get("redirect_uri").map(String::as_str),
                    params.get("code_verifier").map(String::as_str),
                )
                .await?;
            serde_json::to_vec(&tokens).map_err(|e| ApiError::Internal(e.to_string()))?
        }
        "client_credentials" => {
            let tokens = service
                .client_credentials(
                    &offered,
                    params.get("scope").map(String::as_str),
                    &resources,
                )
                .await?;
            serde_json::to_vec(&tokens).map_err(|e| ApiError::Internal(e.to_string()))?
        }
        _ => return Err(ApiError::UnsupportedGrantType),
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

/// `POST /revoke` (RFC 7009): `200` for unknown tokens too, so it reveals
/// nothing.
pub(super) async fn revoke(
    State(state): State<AppState>,
    form: Result<Form<Vec<(String, String)>>, FormRejection>,
) -> Result<Response, ApiError> {
    let params = params(form)?;
    state
        .service()
        .revoke_token(required(&params, "token")?)
        .await?;
    Ok((StatusCode::OK, no_store()).into_response())
}
