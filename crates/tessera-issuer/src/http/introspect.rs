//! `POST /introspect` (RFC 7662) for resource servers that prefer asking the
//! issuer to following the revocation feed.
//!
//! Callers authenticate with HTTP Basic (`client_secret_basic`) as a
//! registered client allowed to introspect (or an entry of the deprecated
//! `introspection_clients` table); anyone else gets `401 invalid_client`, so
//! the endpoint cannot be used to probe tokens. What is active is the
//! service's to say ([`crate::service::introspect`]).

use axum::Form;
use axum::Json;
use axum::extract::State;
use axum::extract::rejection::FormRejection;
use axum::http::{HeaderMap, header};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

use super::error::ApiError;
use super::error::no_store;
use super::oauth::basic_credentials;
use super::state::AppState;
use crate::audit::{self, Event};

/// The claims an active answer carries, besides `active`, `token_type` and
/// `username`.
const CLAIMS: [&str; 11] = [
    "scope",
    "client_id",
    "sub",
    "aud",
    "iss",
    "exp",
    "iat",
    "nbf",
    "jti",
    "sid",
    "roles",
];

/// `POST /introspect`.
pub(super) async fn introspect(
    State(state): State<AppState>,
    headers: HeaderMap,
    form: Result<Form<Vec<(String, String)>>, FormRejection>,
) -> Result<Response, ApiError> {
    let service = state.service();
    let caller = match headers
        .get(header::AUTHORIZATION)
        .and_then(basic_credentials)
    {
        Some((id, secret)) => service.introspection_caller(&id, &secret).await?,
        None => None,
    };
    let Some(caller) = caller else {
        return Err(ApiError::InvalidClient {
            challenge: true,
            description: "introspection needs the credentials of a registered client allowed to introspect",
        });
    };
    let Form(pairs) = form?;
    let mut tokens = pairs.iter().filter(|(k, _)| k == "token").map(|(_, v)| v);
    let (Some(token), None) = (tokens.next(), tokens.next()) else {
        return Err(ApiError::InvalidRequest(
            "exactly one `token` parameter is required".to_owned(),
        ));
    };
    let answer = match service.active_claims(token).await? {
        None => json!({"active": false}),
        Some(claims) => {
            let mut answer = json!({
                "active": true,
                "token_type": "Bearer",
                "username": claims["preferred_username"],
            });
            for name in CLAIMS {
                if let Some(value) = claims.get(name) {
                    answer[name] = value.clone();
                }
            }
            answer
        }
    };
    let event = Event::new("introspection")
        .with("client_id", caller.as_str())
        .with("active", answer["active"].as_bool().unwrap_or(false));
    audit::log(&event);
    Ok((no_store(), Json::<Value>(answer)).into_response())
}

#[cfg(test)]
mod tests {
    use axum::http::HeaderValue;
    use base64::Engine as _;

    use super::basic_credentials;
    use crate::config::IntrospectionClient;
    use crate::service::clients::{legacy_caller, new_client_secret};

    #[test]
    fn basic_credentials_must_name_a_configured_client_and_its_secret() {
        let (secret, hash) = new_client_secret();
        let mut secret_sha256 = [0u8; 32];
        base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode_slice(&hash, &mut secret_sha256)
            .unwrap();
        let clients = [IntrospectionClient {
            client_id: "orders api".to_owned(),
            secret_sha256,
        }];
        let with = |value: String| {
            let (id, secret) = basic_credentials(&HeaderValue::from_str(&value).unwrap())?;
            legacy_caller(&clients, &id, &secret)
        };
        let basic = |id: &str, secret: &str| {
            let encoded =
                base64::engine::general_purpose::STANDARD.encode(format!("{id}:{secret}"));
            format!("Basic {encoded}")
        };
        // The id is form-urlencoded (a space as `+`).
        assert_eq!(with(basic("orders+api", &secret)), Some("orders api"));
        assert_eq!(
            with(basic("orders+api", &secret).replace("Basic", "basic")),
            Some("orders api")
        );
        assert_eq!(with(basic("orders+api", "wrong")), None);
        assert_eq!(with(basic("someone", &secret)), None);
        assert_eq!(with(format!("Bearer {secret}")), None);
        assert_eq!(with("Basic !!!".to_owned()), None);
    }
}
