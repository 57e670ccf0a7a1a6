//! `/token` with `grant_type=authorization_code` (RFC 6749 §4.1.3, RFC 7636
//! §4.6), the ID token that comes with scope `openid`, `/userinfo`, and
//! `id_token_hint`s with the logout they ask for.
//!
//! A code is taken by one conditional update, so of any number of
//! concurrent redemptions on any instance exactly one gets it. A code
//! presented again is marked replayed, and the session its first use
//! started (or is starting: its id was chosen with the code) is revoked. The
//! first use checks the mark after it has started its session, and so does
//! the sign-out of its SSO session: whichever comes second sees the other.

use serde_json::{Map, Value, json};
use tessera_keyring::sha256;

use crate::audit::{self, Event};
use crate::clients::same;
use crate::db::{NewSession, SsoLink, SsoSession, TakenCode};
use crate::tokens::{AccessGrant, IdGrant, TokenResponse, new_refresh_token};

use super::authorize::{s256, verifier_is_well_formed};
use super::clients::Offered;
use super::{AuthError, Issuer};

/// The longest code looked up.
const MAX_CODE_BYTES: usize = 128;

/// What an `id_token_hint` this issuer signed says.
#[derive(Debug, Clone)]
pub struct Hint {
    /// The user.
    pub sub: String,
    /// The session (`sid`).
    pub sid: String,
    /// The client it was issued to.
    pub client_id: String,
}

impl Issuer {
    /// Redeems an authorization code: the client authenticates as it must
    /// (a public client: PKCE only), the code is taken, and its bindings
    /// (client, redirect URI, PKCE verifier, lifetime) are checked.
    pub async fn authorization_code(
        &self,
        offered: &Offered,
        code: &str,
        redirect_uri: Option<&str>,
        verifier: Option<&str>,
    ) -> Result<TokenResponse, AuthError> {
        let client = self
            .authenticate_client(offered, "authorization_code")
            .await?;
        if code.len() > MAX_CODE_BYTES {
            return Err(AuthError::InvalidGrant);
        }
        let hash = sha256(code.as_bytes());
        let now = self.now();
        // A public client proves nothing at this grant, so a flood of
        // made-up codes reaches here: a code nobody issued costs one read
        // from the pool, never a write on the database's writer.
        if !self.db().code_issued(&hash).await? {
            return Err(AuthError::InvalidGrant);
        }
        let Some(taken) = self.db().take_code(&hash, now).await? else {
            // Whoever presents it (RFC 6749 §4.1.2: a code used twice has
            // leaked), but only the first time: later replays write nothing.
            if let Some(session_id) = self.db().code_replayed(&hash, now).await? {
                self.revocations()
                    .session(&session_id, now, "code_replayed")
                    .await?;
                let event = Event::new("code_replayed")
                    .session(&session_id)
                    .ip(offered.ip)
                    .with("client_id", client.client_id.as_str());
                audit::record(self.db(), now, event).await;
            }
            return Err(AuthError::InvalidGrant);
        };
        if let Err(reason) = bindings_hold(&taken, &client.client_id, redirect_uri, verifier, now) {
            let event = Event::new("code_refused")
                .user(&taken.user_id)
                .ip(offered.ip)
                .with("client_id", client.client_id.as_str())
                .with("reason", reason);
            audit::record(self.db(), now, event).await;
            return Err(AuthError::InvalidGrant);
        }
        let user = self
            .db()
            .user_by_id(&taken.user_id)
            .await?
            .filter(|u| !u.disabled)
            .ok_or(AuthError::InvalidGrant)?;
        let scope = client.narrow_scope(&taken.scope);
        let refresh = client.allows_grant("refresh_token").then(new_refresh_token);
        let session = NewSession {
            id: &taken.session_id,
            user_id: &user.id,
            client_id: &client.client_id,
            scope: &scope,
            sso: Some(SsoLink {
                id: &taken.sso_id,
                auth_time: taken.auth_time,
            }),
        };
        self.db()
            .start_session(&session, refresh.as_ref().map(|r| &r.1[..]), now)
            .await?;
        if !self.db().code_still_good(&hash).await? {
            // Replayed, or its SSO session ended, while this ran.
            self.revocations()
                .session(&taken.session_id, now, "code_replayed")
                .await?;
            return Err(AuthError::InvalidGrant);
        }
        let snapshot = self.snapshot()?;
        let settings = self.settings();
        let access_token = settings
            .sign_access(
                snapshot.signer(),
                &AccessGrant {
                    user: &user,
                    session_id: &taken.session_id,
                    client_id: &client.client_id,
                    scope: &scope,
                    audiences: &client.audiences,
                    third_party: client.third_party,
                },
                now,
            )
            .map_err(|e| AuthError::Issuing(e.to_string()))?;
        let id_token = if scope.split(' ').any(|s| s == "openid") {
            let grant = IdGrant {
                user_id: &user.id,
                client_id: &client.client_id,
                session_id: &taken.session_id,
                nonce: taken.nonce.as_deref(),
                auth_time: taken.auth_time,
                access_token: &access_token,
            };
            Some(
                settings
                    .sign_id_token(snapshot.signer(), &grant, now)
                    .map_err(|e| AuthError::Issuing(e.to_string()))?,
            )
        } else {
            None
        };
        let event = Event::new("code_redeemed")
            .user(&user.id)
            .session(&taken.session_id)
            .ip(offered.ip)
            .with("client_id", client.client_id.as_str())
            .with("kid", snapshot.signer().kid());
        audit::record(self.db(), now, event).await;
        self.metrics()
            .issued(crate::metrics::Grant::authorization_code, &client.client_id);
        Ok(TokenResponse {
            access_token,
            token_type: "Bearer",
            expires_in: settings.access_token_lifetime.as_secs(),
            refresh_token: refresh.map(|r| r.0),
            scope,
            id_token,
        })
    }

    /// `/userinfo` (OpenID Connect Core §5.3): for an active access token
    /// with scope `openid`, the claims its scopes allow, read fresh: `sub`
    /// always; `preferred_username` with `profile`; `roles` with `roles`.
    pub async fn userinfo(&self, access_token: &str) -> Result<Value, AuthError> {
        let claims = self
            .active_claims(access_token)
            .await?
            .ok_or(AuthError::InvalidToken("not an active access token"))?;
        let scopes: Vec<&str> = claims["scope"].as_str().unwrap_or("").split(' ').collect();
        if !scopes.contains(&"openid") {
            return Err(AuthError::InsufficientScope("openid"));
        }
        let sub = claims["sub"].as_str().unwrap_or_default();
        let sid = claims["sid"].as_str().unwrap_or_default();
        if sid.is_empty() || !self.db().session_active(sid).await? {
            return Err(AuthError::InvalidToken("the session has ended"));
        }
        let user = self
            .db()
            .user_by_id(sub)
            .await?
            .filter(|u| !u.disabled)
            .ok_or(AuthError::InvalidToken("the user can no longer sign in"))?;
        let mut out = Map::new();
        out.insert("sub".to_owned(), json!(user.id));
        if scopes.contains(&"profile") {
            out.insert("preferred_username".to_owned(), json!(user.username));
        }
        if scopes.contains(&"roles") {
            out.insert("roles".to_owned(), json!(user.roles));
        }
        Ok(Value::Object(out))
    }

    /// What an ID token this issuer signed says, expired or not (a hint at
    /// logout may be old), if its signature, `typ` and `iss` hold.
    pub fn id_token_hint(&self, hint: &str) -> Option<Hint> {
        let snapshot = self.snapshot().ok()?;
        let claims = crate::tokens::own_token_claims(
            snapshot.keyring().jwks(),
            self.issuer_url(),
            hint,
            "JWT",
            (self.now(), i64::MAX / 4),
        )
        .ok()?;
        let text = |name: &str| claims[name].as_str().map(str::to_owned);
        Some(Hint {
            sub: text("sub")?,
            sid: text("sid")?,
            client_id: text("aud")?,
        })
    }
}

impl Issuer {
    /// Whether `hint` was issued for a session that the browser's SSO
    /// session `browser` started (or that moved to it).
    pub async fn hint_is_of(&self, hint: &Hint, browser: &SsoSession) -> Result<bool, AuthError> {
        let hinted = self.db().sso_of_session(&hint.sid).await?;
        Ok(hint.sub == browser.user.id && hinted.as_deref() == Some(browser.id.as_str()))
    }
}

/// Whether a taken code may be redeemed by `client_id` with this request:
/// else the reason, for the audit log.
fn bindings_hold(
    taken: &TakenCode,
    client_id: &str,
    redirect_uri: Option<&str>,
    verifier: Option<&str>,
    now: i64,
) -> Result<(), &'static str> {
    if now >= taken.expires_at {
        return Err("expired");
    }
    if taken.client_id != client_id {
        return Err("other_client");
    }
    if redirect_uri != Some(taken.redirect_uri.as_str()) {
        return Err("redirect_uri_mismatch");
    }
    let verifier = verifier
        .filter(|v| verifier_is_well_formed(v))
        .ok_or("malformed_verifier")?;
    let (expected, got) = (
        sha256(taken.code_challenge.as_bytes()),
        sha256(s256(verifier).as_bytes()),
    );
    if !same(&expected, &got) {
        return Err("pkce_mismatch");
    }
    Ok(())
}
