//! `POST /introspect` (RFC 7662) for resource servers that prefer asking the
//! issuer to following the revocation feed.
//!
//! Callers authenticate with HTTP Basic (`client_secret_basic`) as one of the
//! configured `introspection_clients`; anyone else gets `401 invalid_client`,
//! so the endpoint cannot be used to probe tokens. Access tokens this issuer
//! signed are `active` while their signature, issuer and lifetime hold and no
//! revocation covers them (its `jti`, `sid`, or its `sub` up to its `iat`).
//! Everything else (refresh tokens included) is `{"active": false}`.

use axum::Form;
use axum::Json;
use axum::extract::State;
use axum::extract::rejection::FormRejection;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use base64::Engine as _;
use serde_json::{Value, json};
use tessera_keyring::{b64url, sha256};

use crate::config::IntrospectionClient;
use crate::http::{ApiError, AppState, no_store};

/// A new client secret (256 random bits, base64url) and the `secret_sha256`
/// the configuration holds for it.
pub fn new_client_secret() -> (String, String) {
    let secret = crate::passwords::random_token(32);
    let hash = b64url(&sha256(secret.as_bytes()));
    (secret, hash)
}

/// The `(client_id, secret)` of an `Authorization: Basic` value, each
/// form-urlencoded as RFC 6749 §2.3.1 says.
pub(crate) fn basic_credentials(value: &HeaderValue) -> Option<(String, String)> {
    let value = value.to_str().ok()?;
    let (scheme, encoded) = value.split_once(' ')?;
    if !scheme.eq_ignore_ascii_case("basic") {
        return None;
    }
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(encoded.trim())
        .ok()?;
    let text = zeroize::Zeroizing::new(String::from_utf8(decoded).ok()?);
    let (id, secret) = text.split_once(':')?;
    Some((form_decode(id)?, form_decode(secret)?))
}

/// The deprecated `[[introspection_clients]]` entry the `Authorization:
/// Basic` header proves, if any. Every entry is compared, and an unknown id
/// costs the same as a wrong secret.
fn authenticate_legacy<'c>(
    clients: &'c [IntrospectionClient],
    headers: &HeaderMap,
) -> Option<&'c str> {
    let (id, secret) = basic_credentials(headers.get(header::AUTHORIZATION)?)?;
    let offered = sha256(secret.as_bytes());
    let mut found = None;
    for client in clients {
        let matches = crate::clients::same(&offered, &client.secret_sha256);
        if matches && client.client_id == id {
            found = Some(client.client_id.as_str());
        }
    }
    found
}

impl AppState {
    /// The caller of `/introspect`: a registered confidential client allowed
    /// to introspect, authenticated with HTTP Basic, or an entry of the
    /// deprecated configuration table.
    async fn introspection_caller(&self, headers: &HeaderMap) -> Result<Option<String>, ApiError> {
        if let Some(id) = authenticate_legacy(self.introspection_clients(), headers) {
            return Ok(Some(id.to_owned()));
        }
        let Some((id, secret)) = headers
            .get(header::AUTHORIZATION)
            .and_then(basic_credentials)
        else {
            return Ok(None);
        };
        let secret = zeroize::Zeroizing::new(secret);
        let client = if crate::clients::check_client_id(&id).is_ok() {
            self.clients().client(self.db(), &id).await?
        } else {
            None
        };
        Ok(match client {
            Some(c) if !c.disabled && c.introspect && c.secret_matches(&secret) => Some(id),
            Some(_) => None,
            None => {
                let _ = crate::clients::spend_secret_check(&secret);
                None
            }
        })
    }
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

/// `POST /introspect`.
pub(crate) async fn introspect(
    State(state): State<AppState>,
    headers: HeaderMap,
    form: Result<Form<Vec<(String, String)>>, FormRejection>,
) -> Result<Response, ApiError> {
    let Some(caller) = state.introspection_caller(&headers).await? else {
        let body = json!({
            "error": "invalid_client",
            "error_description": "introspection needs the credentials of a registered client allowed to introspect",
        });
        return Ok((
            StatusCode::UNAUTHORIZED,
            no_store(),
            [(
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static("Basic realm=\"tessera\""),
            )],
            Json(body),
        )
            .into_response());
    };
    let Form(pairs) = form.map_err(ApiError::from)?;
    let mut tokens = pairs.iter().filter(|(k, _)| k == "token").map(|(_, v)| v);
    let (Some(token), None) = (tokens.next(), tokens.next()) else {
        return Err(ApiError::InvalidRequest(
            "exactly one `token` parameter is required".to_owned(),
        ));
    };
    let answer = state.introspection(token).await?;
    tracing::info!(
        target: "audit",
        event = "introspection",
        client_id = %caller,
        active = answer["active"].as_bool().unwrap_or(false),
    );
    Ok((no_store(), Json(answer)).into_response())
}

impl AppState {
    /// What `/introspect` says about `token`.
    async fn introspection(&self, token: &str) -> Result<Value, ApiError> {
        let inactive = json!({"active": false});
        let snapshot = self.snapshot()?;
        let now = self.now();
        let Ok(claims) = crate::tokens::own_access_token_claims(
            snapshot.keyring().jwks(),
            self.issuer(),
            token,
            now,
            0,
        ) else {
            return Ok(inactive);
        };
        let text = |name: &str| claims[name].as_str().unwrap_or_default();
        let iat = claims["iat"].as_i64().unwrap_or(i64::MIN);
        if self
            .db()
            .is_revoked(text("jti"), text("sid"), text("sub"), iat, now)
            .await?
        {
            return Ok(inactive);
        }
        let mut answer = json!({
            "active": true,
            "token_type": "Bearer",
            "username": claims["preferred_username"],
        });
        for name in [
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
        ] {
            if let Some(value) = claims.get(name) {
                answer[name] = value.clone();
            }
        }
        Ok(answer)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
            let mut headers = HeaderMap::new();
            headers.insert(header::AUTHORIZATION, value.parse().unwrap());
            authenticate_legacy(&clients, &headers)
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
