//! Browser sign-in, the rules (RFC 6749 §4.1, OAuth 2.1, RFC 7636, OpenID
//! Connect Core): checking an authorization request against the registry,
//! the SSO session at the issuer, consent, and authorization codes. The
//! pages and cookies are the edge's (`crate::http::authorize`); the code's
//! redemption at `/token` is [`super::code`]'s.
//!
//! An authorization request is checked in two stages (§4.1.2.1). The
//! client and its redirect URI first: when either is wrong the user is shown
//! an error and never sent anywhere ([`AuthorizeError::Shown`]). Everything
//! after goes back to the client ([`AuthorizeError::Redirect`]), with `error`
//! and the request's `state`.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Arc;

use tessera_keyring::sha256;

use crate::audit::{self, Event};
use crate::clients::Client;
use crate::db::{NewCode, SessionsOf, SsoSession};
use crate::passwords::{Password, random_token};

use super::{AuthError, Issuer};

/// How long an authorization code may be redeemed.
pub const CODE_LIFETIME_SECS: i64 = 60;
/// The longest `state` echoed back.
pub const MAX_STATE_BYTES: usize = 1024;
/// The longest `nonce` put into an ID token.
pub const MAX_NONCE_BYTES: usize = 512;
/// The longest `login_hint` put into the login form.
pub const MAX_LOGIN_HINT_BYTES: usize = 256;
/// The most SSO cookies a request is read for (each costs a lookup).
pub const MAX_SSO_COOKIES: usize = 4;

/// What `prompt` asked for (OpenID Connect Core §3.1.2.1).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Prompt {
    /// Show nothing: answer from the SSO session or fail.
    pub none: bool,
    /// Ask for the password even within an SSO session.
    pub login: bool,
    /// Ask a third-party client's consent again.
    pub consent: bool,
}

/// An authorization request, checked against the registry.
#[derive(Debug, Clone)]
pub struct AuthorizeRequest {
    /// The registered client (enabled, allowed the code grant).
    pub client: Arc<Client>,
    /// One of its redirect URIs, as the request gave it.
    pub redirect_uri: String,
    /// The scope to grant (the client's default when none was asked).
    pub scope: String,
    /// Echoed back to the client.
    pub state: Option<String>,
    /// Put into the ID token.
    pub nonce: Option<String>,
    /// The PKCE S256 challenge.
    pub code_challenge: String,
    /// What `prompt` asked.
    pub prompt: Prompt,
    /// A username to offer in the form.
    pub login_hint: Option<String>,
    /// The longest time since the password was checked that the client
    /// accepts, in seconds (OpenID Connect `max_age`).
    pub max_age: Option<u32>,
}

/// An error sent back to the client's redirect URI (§4.1.2.1).
#[derive(Debug, Clone)]
pub struct ErrorRedirect {
    /// The checked redirect URI.
    pub redirect_uri: String,
    /// The `error` code.
    pub error: &'static str,
    /// The `error_description`.
    pub description: &'static str,
    /// The request's `state`.
    pub state: Option<String>,
}

impl ErrorRedirect {
    /// The `Location` to send the browser to (with `iss`, RFC 9207).
    pub fn location(&self, issuer: &str) -> String {
        let mut pairs = vec![
            ("error", self.error),
            ("error_description", self.description),
        ];
        if let Some(state) = &self.state {
            pairs.push(("state", state));
        }
        pairs.push(("iss", issuer));
        with_query(&self.redirect_uri, &pairs)
    }
}

/// Why an authorization request cannot go on.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub enum AuthorizeError {
    /// Unknown or disabled client, or a redirect URI it did not register:
    /// shown to the user, never redirected to.
    Shown(&'static str),
    /// Anything else: back to the client.
    Redirect(ErrorRedirect),
}

/// What the browser sees next.
#[derive(Debug)]
pub enum Next {
    /// The login page.
    Login,
    /// The consent page, asking for these scopes.
    Consent(Vec<String>),
    /// Back to the client with a code: the `Location`.
    Redirect(String),
}

/// Whether `origin` (as a browser sends it) is the origin of the redirect
/// URI `uri`; for an `http` loopback IP literal, with any port.
fn redirect_origin_matches(uri: &str, origin: &str) -> bool {
    let (Ok(uri), Ok(origin)) = (
        uri.parse::<axum::http::Uri>(),
        origin.parse::<axum::http::Uri>(),
    ) else {
        return false;
    };
    if uri.scheme() != origin.scheme() || uri.host() != origin.host() {
        return false;
    }
    let loopback =
        uri.scheme_str() == Some("http") && uri.host().is_some_and(crate::validate::is_loopback_ip);
    loopback || uri.port_u16() == origin.port_u16()
}

/// Printable ASCII (RFC 6749 Appendix A's VSCHAR, %x20-7E).
fn is_vschar(text: &str) -> bool {
    text.bytes().all(|b| (0x20..=0x7e).contains(&b))
}

/// `uri` with `pairs` added to its query.
pub fn with_query(uri: &str, pairs: &[(&str, &str)]) -> String {
    let mut query = form_urlencoded::Serializer::new(String::new());
    for (name, value) in pairs {
        query.append_pair(name, value);
    }
    let separator = if uri.contains('?') { '&' } else { '?' };
    format!("{uri}{separator}{}", query.finish())
}

/// The PKCE S256 challenge of `verifier` (RFC 7636 §4.2).
pub fn s256(verifier: &str) -> String {
    tessera_keyring::b64url(&sha256(verifier.as_bytes()))
}

/// A code verifier's shape: 43 to 128 unreserved characters (RFC 7636 §4.1).
pub fn verifier_is_well_formed(verifier: &str) -> bool {
    (43..=128).contains(&verifier.len())
        && verifier
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-._~".contains(&b))
}

fn parse_prompt(text: &str) -> Option<Prompt> {
    let mut prompt = Prompt::default();
    for value in text.split(' ').filter(|v| !v.is_empty()) {
        match value {
            "none" => prompt.none = true,
            "login" => prompt.login = true,
            "consent" => prompt.consent = true,
            // One account per browser: there is nothing to select.
            "select_account" => {}
            _ => return None,
        }
    }
    let interactive = prompt.login || prompt.consent;
    (!(prompt.none && interactive)).then_some(prompt)
}

impl Issuer {
    /// Checks an authorization request's parameters (each at most once).
    pub async fn authorize_request(
        &self,
        pairs: Vec<(String, String)>,
    ) -> Result<AuthorizeRequest, AuthorizeError> {
        let mut params: HashMap<String, String> = HashMap::new();
        let mut repeated: Vec<String> = Vec::new();
        for (name, value) in pairs {
            match params.entry(name) {
                std::collections::hash_map::Entry::Occupied(seen) => {
                    repeated.push(seen.key().clone());
                }
                std::collections::hash_map::Entry::Vacant(slot) => {
                    slot.insert(value);
                }
            }
        }
        let once = |name: &str| {
            if repeated.iter().any(|r| r == name) {
                None
            } else {
                params
                    .get(name)
                    .map(String::as_str)
                    .filter(|v| !v.is_empty())
            }
        };
        let client_id = once("client_id").ok_or(AuthorizeError::Shown(
            "The request does not say which application it is for.",
        ))?;
        let client = self
            .clients()
            .client(self.db(), client_id)
            .await
            .map_err(|_| AuthorizeError::Shown("Sign-in is not available right now."))?
            .filter(|c| !c.disabled)
            .ok_or(AuthorizeError::Shown(
                "The application asking you to sign in is not registered here.",
            ))?;
        let redirect_uri = once("redirect_uri")
            .filter(|uri| client.redirect_matches(uri))
            .ok_or(AuthorizeError::Shown(
                "The application asked to send you to an address it has not registered.",
            ))?
            .to_owned();
        let state = once("state").map(str::to_owned);
        // RFC 6749's VSCHAR: printable ASCII. Anything else may not survive
        // the login form's round trip as sent (browsers rewrite line breaks).
        let oversized_state = state
            .as_ref()
            .is_some_and(|s| s.len() > MAX_STATE_BYTES || !is_vschar(s));
        let back = |error: &'static str, description: &'static str| {
            AuthorizeError::Redirect(ErrorRedirect {
                redirect_uri: redirect_uri.clone(),
                error,
                description,
                state: state.clone().filter(|_| !oversized_state),
            })
        };
        if oversized_state {
            return Err(back(
                "invalid_request",
                "state is too long or not printable ASCII",
            ));
        }
        if !repeated.is_empty() {
            return Err(back(
                "invalid_request",
                "a parameter appears more than once",
            ));
        }
        if params.contains_key("request") {
            return Err(back(
                "request_not_supported",
                "request objects are not supported",
            ));
        }
        if params.contains_key("request_uri") {
            return Err(back(
                "request_uri_not_supported",
                "request_uri is not supported",
            ));
        }
        match once("response_type") {
            None => return Err(back("invalid_request", "response_type is missing")),
            Some("code") => {}
            Some(_) => {
                return Err(back(
                    "unsupported_response_type",
                    "only response_type=code is supported",
                ));
            }
        }
        if once("response_mode").is_some_and(|m| m != "query") {
            return Err(back(
                "invalid_request",
                "only response_mode=query is supported",
            ));
        }
        if !client.allows_grant("authorization_code") {
            return Err(back(
                "unauthorized_client",
                "this client may not use the authorization code grant",
            ));
        }
        if once("code_challenge_method") != Some("S256") {
            return Err(back(
                "invalid_request",
                "PKCE is required: code_challenge_method=S256 (plain is refused)",
            ));
        }
        let code_challenge = once("code_challenge")
            .filter(|c| c.len() == 43 && crate::validate::is_b64url(c))
            .ok_or_else(|| {
                back(
                    "invalid_request",
                    "code_challenge must be a base64url SHA-256 (43 characters)",
                )
            })?
            .to_owned();
        let asked = once("scope");
        if asked.is_some_and(|s| crate::validate::scope(s).is_err()) {
            return Err(back("invalid_scope", "the scope is malformed"));
        }
        let scope = client.grant_scope(asked).ok_or_else(|| {
            back(
                "invalid_scope",
                "a requested scope is not one this client may have",
            )
        })?;
        let nonce = once("nonce").map(str::to_owned);
        if nonce
            .as_ref()
            .is_some_and(|n| n.len() > MAX_NONCE_BYTES || !is_vschar(n))
        {
            return Err(back(
                "invalid_request",
                "nonce is too long or not printable ASCII",
            ));
        }
        let max_age = match once("max_age") {
            None => None,
            Some(text) => Some(
                text.parse::<u32>()
                    .map_err(|_| back("invalid_request", "max_age is a number of seconds"))?,
            ),
        };
        let prompt = match once("prompt") {
            None => Prompt::default(),
            Some(text) => parse_prompt(text).ok_or_else(|| {
                back(
                    "invalid_request",
                    "prompt is none, login, consent or select_account (none alone)",
                )
            })?,
        };
        let login_hint = once("login_hint")
            .filter(|h| h.len() <= MAX_LOGIN_HINT_BYTES && crate::validate::username(h).is_ok())
            .map(str::to_owned);
        Ok(AuthorizeRequest {
            client,
            redirect_uri,
            scope,
            state,
            nonce,
            code_challenge,
            prompt,
            login_hint,
            max_age,
        })
    }

    /// Whether a web page at `origin` may call `/token`, `/revoke` and
    /// `/userinfo` (CORS): the origin of a redirect URI of an enabled
    /// client allowed the code grant (a loopback IP's with any port).
    pub async fn browser_origin_allowed(&self, origin: &str) -> bool {
        let Ok(snapshot) = self.clients().current(self.db()).await else {
            return false;
        };
        snapshot
            .clients()
            .filter(|c| !c.disabled && c.allows_grant("authorization_code"))
            .flat_map(|c| c.redirect_uris.iter())
            .any(|uri| redirect_origin_matches(uri, origin))
    }

    /// The live SSO session an SSO cookie's value names.
    pub async fn sso_session(&self, cookie: &str) -> Result<Option<SsoSession>, AuthError> {
        if cookie.len() > 64 {
            return Ok(None);
        }
        Ok(self
            .db()
            .sso_session(&sha256(cookie.as_bytes()), self.now())
            .await?)
    }

    /// What to show for `request`: `sso` is the browser's SSO session,
    /// `fresh` says its password was checked in this very request.
    pub async fn authorize(
        &self,
        request: &AuthorizeRequest,
        sso: Option<&SsoSession>,
        fresh: bool,
    ) -> Result<Next, Refusal> {
        let refuse = |error, description| {
            Refusal::Redirect(ErrorRedirect {
                redirect_uri: request.redirect_uri.clone(),
                error,
                description,
                state: request.state.clone(),
            })
        };
        let recent = |sso: &SsoSession| {
            request
                .max_age
                .is_none_or(|age| self.now() <= sso.auth_time.saturating_add(i64::from(age)))
        };
        let sso = match sso {
            Some(sso) if fresh || (!request.prompt.login && recent(sso)) => sso,
            _ if request.prompt.none => {
                return Err(refuse("login_required", "the user is not signed in"));
            }
            _ => return Ok(Next::Login),
        };
        if request.client.third_party
            && let Some(asked) = self.consent_missing(request, &sso.user.id).await?
        {
            {
                if request.prompt.none {
                    return Err(refuse(
                        "consent_required",
                        "the user has not allowed this client these scopes",
                    ));
                }
                return Ok(Next::Consent(asked));
            }
        }
        Ok(Next::Redirect(self.issue_code(request, sso).await?))
    }

    /// The scopes of `request` to ask the user for (`None`: nothing to ask):
    /// all of them with `prompt=consent` or when the user never allowed this
    /// client anything, else those not allowed before.
    async fn consent_missing(
        &self,
        request: &AuthorizeRequest,
        user_id: &str,
    ) -> Result<Option<Vec<String>>, AuthError> {
        let asked: Vec<String> = request
            .scope
            .split(' ')
            .filter(|s| !s.is_empty())
            .map(str::to_owned)
            .collect();
        let allowed = self
            .db()
            .consent(user_id, &request.client.client_id)
            .await?;
        if request.prompt.consent || allowed.is_none() {
            return Ok(Some(asked));
        }
        let allowed = allowed.unwrap_or_default();
        let missing: Vec<String> = asked.into_iter().filter(|s| !allowed.contains(s)).collect();
        Ok((!missing.is_empty()).then_some(missing))
    }

    /// The user said yes to `request`'s scopes: recorded (added to what they
    /// allowed before), then the code.
    pub async fn consent_given(
        &self,
        request: &AuthorizeRequest,
        sso: &SsoSession,
    ) -> Result<String, AuthError> {
        let client_id = &request.client.client_id;
        let mut allowed = self
            .db()
            .consent(&sso.user.id, client_id)
            .await?
            .unwrap_or_default();
        for scope in request.scope.split(' ').filter(|s| !s.is_empty()) {
            if !allowed.iter().any(|a| a == scope) {
                allowed.push(scope.to_owned());
            }
        }
        let now = self.now();
        self.db()
            .grant_consent(&sso.user.id, client_id, &allowed, now)
            .await?;
        let event = Event::new("consent_given")
            .user(&sso.user.id)
            .with("client_id", client_id.as_str())
            .with("scope", request.scope.as_str());
        audit::record(self.db(), now, event).await;
        self.issue_code(request, sso).await
    }

    /// Stores a new code for `request` under `sso`; returns the `Location`.
    async fn issue_code(
        &self,
        request: &AuthorizeRequest,
        sso: &SsoSession,
    ) -> Result<String, AuthError> {
        let code = random_token(32);
        let session_id = random_token(16);
        let now = self.now();
        self.db()
            .store_code(&NewCode {
                hash: &sha256(code.as_bytes()),
                client_id: &request.client.client_id,
                redirect_uri: &request.redirect_uri,
                code_challenge: &request.code_challenge,
                scope: &request.scope,
                nonce: request.nonce.as_deref(),
                user_id: &sso.user.id,
                sso_id: &sso.id,
                auth_time: sso.auth_time,
                session_id: &session_id,
                expires_at: now + CODE_LIFETIME_SECS,
            })
            .await?;
        let mut pairs = vec![("code", code.as_str())];
        if let Some(state) = &request.state {
            pairs.push(("state", state));
        }
        pairs.push(("iss", self.issuer_url()));
        Ok(with_query(&request.redirect_uri, &pairs))
    }

    /// Checks a password at the login page and starts an SSO session: its
    /// cookie value (shown once) and the session. The same throttle, work
    /// and answer as `/login`.
    ///
    /// `previous` is the SSO session the browser held until now (a sign-in
    /// again with `prompt=login`, or as someone else). It ends, since its
    /// cookie is replaced. If it was the same user's, the sessions it
    /// started move to the new one, so that signing out of the new one ends
    /// them too; another user's keep theirs, which their own ID tokens can
    /// still sign out of.
    pub async fn sign_in(
        &self,
        username: &str,
        password: Password,
        client_ip: Option<IpAddr>,
        previous: Option<&SsoSession>,
    ) -> Result<(String, SsoSession), AuthError> {
        let user = self.check_password(username, client_ip, password).await?;
        let now = self.now();
        let cookie = random_token(32);
        let id = random_token(16);
        let lifetime = crate::secs(self.settings().refresh_absolute_lifetime);
        self.db()
            .start_sso(
                &id,
                &sha256(cookie.as_bytes()),
                &user.id,
                now,
                now + lifetime,
            )
            .await?;
        if let Some(previous) = previous {
            let same_user = previous.user.id == user.id;
            self.db()
                .supersede_sso(&previous.id, same_user.then_some(id.as_str()), now)
                .await?;
        }
        let event = Event::new("sign_in")
            .user(&user.id)
            .ip(client_ip)
            .with("sso", id.as_str());
        audit::record(self.db(), now, event).await;
        Ok((
            cookie,
            SsoSession {
                id,
                auth_time: now,
                user,
            },
        ))
    }

    /// Ends an SSO session and every session it started (their access
    /// tokens go into the revocation feed by `sid`); returns how many
    /// sessions ended.
    pub async fn sign_out(&self, sso_id: &str, why: &str) -> Result<usize, AuthError> {
        let now = self.now();
        let live = self.db().end_sso(sso_id, now).await?;
        let ended = self
            .revocations()
            .sessions(SessionsOf::Sso(sso_id), now, why)
            .await?;
        if !live && ended.is_empty() {
            // Over already: nothing to record.
            return Ok(0);
        }
        let event = Event::new("sign_out")
            .with("sso", sso_id)
            .with("sessions", ended.len());
        audit::record(self.db(), now, event).await;
        Ok(ended.len())
    }
}

/// Why [`Issuer::authorize`] did not go on.
#[derive(Debug)]
#[non_exhaustive]
pub enum Refusal {
    /// Back to the client with an error.
    Redirect(ErrorRedirect),
    /// The service failed.
    Failed(AuthError),
}

impl From<AuthError> for Refusal {
    fn from(err: AuthError) -> Self {
        Self::Failed(err)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prompt_values() {
        assert_eq!(parse_prompt(""), Some(Prompt::default()));
        assert!(parse_prompt("none").unwrap().none);
        let both = parse_prompt("login consent").unwrap();
        assert!(both.login && both.consent);
        assert_eq!(parse_prompt("none login"), None);
        assert_eq!(parse_prompt("sideways"), None);
    }

    #[test]
    fn pkce_and_queries() {
        // RFC 7636 Appendix B.
        assert_eq!(
            s256("dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk"),
            "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM"
        );
        assert!(verifier_is_well_formed(&"a".repeat(43)));
        assert!(!verifier_is_well_formed(&"a".repeat(42)));
        assert!(!verifier_is_well_formed(&format!("{}+", "a".repeat(43))));
        assert_eq!(
            with_query(
                "https://a.example/cb?x=1",
                &[("code", "c d"), ("state", "&")]
            ),
            "https://a.example/cb?x=1&code=c+d&state=%26"
        );
    }
}
