//! The client-credentials grant (RFC 6749 §4.4): a confidential client's
//! token for itself. `sub` is the client id; no session, no refresh token, no
//! roles. Scope and audience come from the registry: what the request asks
//! for is checked against it, never signed as given.

use crate::audit::{self, Event};
use crate::clients::{Client, ClientKind};
use crate::tokens::{TokenResponse, TokenSettings};

use super::clients::Offered;
use super::{AuthError, Issuer};

impl Issuer {
    /// A token for the client `offered` proves: `requested_scope` within
    /// its scopes (its default when none), `aud` narrowed to `resources`
    /// (RFC 8707) when it names any, each one the client's.
    pub async fn client_credentials(
        &self,
        offered: &Offered,
        requested_scope: Option<&str>,
        resources: &[String],
    ) -> Result<TokenResponse, AuthError> {
        let client = self
            .authenticate_client(offered, "client_credentials")
            .await?;
        if client.kind != ClientKind::Confidential {
            // The registry refuses this combination; a token for a caller
            // that proved nothing is never issued.
            return Err(AuthError::UnauthorizedClient);
        }
        if requested_scope
            .is_some_and(|s| !s.trim().is_empty() && crate::validate::scope(s.trim()).is_err())
        {
            return Err(AuthError::Invalid("scope".to_owned()));
        }
        let scope = client
            .grant_scope(requested_scope)
            .ok_or(AuthError::InvalidScope)?;
        let settings = self.settings();
        let audiences = audiences_for(&client, resources, settings)?;
        let now = self.now();
        let lifetime = client.token_lifetime(settings.access_token_lifetime);
        let snapshot = self.snapshot()?;
        let access_token = settings
            .sign_service(
                snapshot.signer(),
                &client.client_id,
                &scope,
                &audiences,
                (now, lifetime),
            )
            .map_err(|e| AuthError::Issuing(e.to_string()))?;
        // Logged, not stored, like each refresh: a service may fetch a token
        // per call, and a stored row per token put a database commit on
        // every request (0.72 of the signing rate instead of 0.88; see
        // docs/benchmarks.md). Logins, failures and revocations are stored.
        let event = Event::new("client_token_issued")
            .with("client_id", client.client_id.as_str())
            .with("scope", scope.as_str())
            .with("kid", snapshot.signer().kid());
        audit::log(&event);
        self.metrics()
            .issued(crate::metrics::Grant::client_credentials, &client.client_id);
        Ok(TokenResponse {
            access_token,
            token_type: "Bearer",
            expires_in: lifetime.as_secs(),
            refresh_token: None,
            scope,
            id_token: None,
        })
    }
}

/// The `aud` of a client's token: its own audiences (empty: the issuer's
/// configured ones), or the `resource`s it asked for, each of which must be
/// among them.
fn audiences_for(
    client: &Client,
    resources: &[String],
    settings: &TokenSettings,
) -> Result<Vec<String>, AuthError> {
    if resources.is_empty() {
        return Ok(client.audiences.clone());
    }
    let allowed = if client.audiences.is_empty() {
        &settings.audiences
    } else {
        &client.audiences
    };
    let mut audiences: Vec<String> = Vec::new();
    for resource in resources {
        if !allowed.contains(resource) {
            return Err(AuthError::InvalidTarget);
        }
        if !audiences.contains(resource) {
            audiences.push(resource.clone());
        }
    }
    Ok(audiences)
}
