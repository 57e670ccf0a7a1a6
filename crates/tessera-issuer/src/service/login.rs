//! Password logins: `/login` (for the configured first-party client) and
//! the password grant at `/token` (for a client that authenticated).

use std::net::IpAddr;
use std::sync::Arc;

use crate::audit::{self, Event, Folded};
use crate::clients::Client;
use crate::db::User;
use crate::metrics::{Grant, LoginOutcome};
use crate::passwords::{Admitted, Checked, Password};
use crate::throttle::Reservation;
use crate::tokens::{AccessGrant, TokenResponse, new_refresh_token};

use super::clients::Offered;
use super::{AuthError, Issuer};

/// Who is logging in, from where, for which client.
#[derive(Debug, Clone)]
pub struct Login {
    /// The username given.
    pub username: String,
    /// The client's IP address, if known.
    pub client_ip: Option<IpAddr>,
    /// The registered client the tokens are for (already checked: enabled,
    /// allowed the password grant).
    pub client: Arc<Client>,
    /// The scope to grant (already checked against the client's).
    pub scope: String,
}

impl Login {
    /// A login of `username` from `client_ip` for `client`, granting `scope`.
    pub fn new(
        username: String,
        client_ip: Option<IpAddr>,
        client: Arc<Client>,
        scope: String,
    ) -> Self {
        Self {
            username,
            client_ip,
            client,
            scope,
        }
    }
}

impl Issuer {
    /// `/login`: a password login for the configured first-party client
    /// (`login_client`) and its default scope.
    pub async fn login(
        &self,
        username: String,
        password: Password,
        client_ip: Option<IpAddr>,
    ) -> Result<TokenResponse, AuthError> {
        let client = self
            .clients()
            .client(self.db(), &self.settings().login_client)
            .await?
            .filter(|c| !c.disabled && c.allows_grant("password"))
            .ok_or(AuthError::InvalidClient {
                challenge: false,
                description: "the login client is not registered, is disabled, or may not use the password grant",
            })?;
        let scope = client.default_scope.join(" ");
        let login = Login::new(username, client_ip, client, scope);
        self.password_login(login, password).await
    }

    /// The password grant (RFC 6749 §4.3): the client authenticates first
    /// (so a request without a username tells an unauthenticated caller
    /// nothing), then the username must be there and the scope asked for
    /// must be the client's.
    pub async fn password_grant(
        &self,
        offered: &Offered,
        username: Option<&str>,
        password: Password,
        requested_scope: Option<&str>,
        client_ip: Option<IpAddr>,
    ) -> Result<TokenResponse, AuthError> {
        let client = self.authenticate_client(offered, "password").await?;
        let username = username
            .filter(|u| !u.is_empty())
            .ok_or_else(|| AuthError::Invalid("username".to_owned()))?
            .to_owned();
        if requested_scope
            .is_some_and(|s| crate::validate::scope(s.trim()).is_err() && !s.trim().is_empty())
        {
            return Err(AuthError::Invalid("scope".to_owned()));
        }
        let scope = client
            .grant_scope(requested_scope)
            .ok_or(AuthError::InvalidScope)?;
        let login = Login::new(username, client_ip, client, scope);
        self.password_login(login, password).await
    }

    /// Checks a username and password and, if they are right and the user is
    /// enabled, starts a session ([`Issuer::check_password`] says how).
    pub async fn password_login(
        &self,
        login: Login,
        password: Password,
    ) -> Result<TokenResponse, AuthError> {
        let user = self
            .check_password(&login.username, login.client_ip, password)
            .await?;
        self.start_password_session(login, user).await
    }

    /// The user a username and password name, if they are right and the user
    /// is enabled. Unknown users, disabled users and wrong passwords cost the
    /// same Argon2 work and get the same error.
    ///
    /// Before any password work: a username this instance knows is blocked
    /// is throttled; a full password-check queue is overloaded; then the
    /// attempt is reserved in the database (throttled if a key is blocked).
    /// From there the check runs to its end on a task of its own, so a check
    /// that runs is counted and audited even if the client has gone.
    pub async fn check_password(
        &self,
        username: &str,
        client_ip: Option<IpAddr>,
        password: Password,
    ) -> Result<User, AuthError> {
        let now = self.now();
        if let Some(retry_after) = self.inner.throttle.known_block(username, now) {
            self.metrics().login(LoginOutcome::throttled);
            self.log_throttled(client_ip, retry_after);
            return Err(AuthError::Throttled { retry_after });
        }
        let Some(admitted) = self.inner.hasher.try_admit() else {
            self.metrics().login(LoginOutcome::queue_full);
            return Err(AuthError::Overloaded);
        };
        let issuer = self.clone();
        let username = username.to_owned();
        tokio::spawn(async move {
            issuer
                .verify_password(username, client_ip, admitted, password)
                .await
        })
        .await
        .map_err(|e| AuthError::Issuing(format!("login task: {e}")))?
    }

    /// One `login_throttled` line per second at most, with how many were
    /// folded into it (a flood of throttled attempts once wrote 96,000 lines
    /// in 20 s); the counts stay exact.
    fn log_throttled(&self, client_ip: Option<IpAddr>, retry_after: i64) {
        let lines = &self.inner.throttled_lines;
        self.log_folded(lines, "login_throttled", client_ip, retry_after);
    }

    /// A throttled attempt's log line of `kind`, folded by `lines` to one a
    /// second.
    pub(super) fn log_folded(
        &self,
        lines: &Folded,
        kind: &'static str,
        client_ip: Option<IpAddr>,
        retry_after: i64,
    ) {
        if let Some(folded) = lines.tick(self.now()) {
            let event = Event::new(kind)
                .ip(client_ip)
                .with("retry_after", retry_after)
                .with("also_throttled_since_last_line", folded);
            audit::log(&event);
        }
    }

    async fn verify_password(
        &self,
        username: String,
        client_ip: Option<IpAddr>,
        admitted: Admitted,
        password: Password,
    ) -> Result<User, AuthError> {
        let username = username.as_str();
        let throttle = &self.inner.throttle;
        let db = self.db();
        let reserved = match throttle
            .reserve(db, username, client_ip, self.now())
            .await?
        {
            Reservation::Granted(reserved) => reserved,
            Reservation::Blocked { retry_after } => {
                self.metrics().login(LoginOutcome::throttled);
                self.log_throttled(client_ip, retry_after);
                return Err(AuthError::Throttled { retry_after });
            }
        };
        let credentials = if crate::validate::username(username).is_ok() {
            db.credentials(username).await?
        } else {
            None
        };
        let stored = credentials.as_ref().map(|c| c.password_hash.clone());
        let checked = self
            .inner
            .hasher
            .check_async(admitted, password, stored)
            .await;
        let user = match (credentials, checked) {
            (Some(c), Checked::Match { rehash }) if !c.user.disabled => {
                if let Some(hash) = rehash {
                    // Parameters changed since this hash was made: upgrade it now
                    // that the password is at hand. A failure only delays that.
                    if let Err(err) = db.set_password_hash(username, &hash, self.now()).await {
                        tracing::warn!(error = %err, "password rehash failed");
                    }
                }
                c.user
            }
            (credentials, checked) => {
                let (reason, outcome) = match (&credentials, checked) {
                    (None, _) => ("unknown_user", LoginOutcome::unknown_user),
                    (Some(c), Checked::Match { .. }) if c.user.disabled => {
                        ("disabled_user", LoginOutcome::disabled)
                    }
                    _ => ("wrong_password", LoginOutcome::wrong_password),
                };
                self.metrics().login(outcome);
                let mut event = Event::new("login_failure")
                    .ip(client_ip)
                    .with("reason", reason);
                if let Some(c) = &credentials {
                    event = event.user(&c.user.id);
                }
                audit::record(db, self.now(), event).await;
                // The reservation stays: it was this failure, counted.
                return Err(AuthError::InvalidCredentials);
            }
        };
        throttle.release(db, reserved, self.now()).await?;
        self.metrics().login(LoginOutcome::success);
        Ok(user)
    }

    /// A session for `user`, who has just proved their password, with its
    /// tokens.
    async fn start_password_session(
        &self,
        login: Login,
        user: User,
    ) -> Result<TokenResponse, AuthError> {
        let Login {
            client_ip,
            client,
            scope,
            ..
        } = login;
        let scope = scope.as_str();
        let client_id = client.client_id.as_str();
        let db = self.db();
        let now = self.now();
        let session_id = crate::passwords::random_token(16);
        let refresh = client.allows_grant("refresh_token").then(new_refresh_token);
        let session = crate::db::NewSession {
            id: &session_id,
            user_id: &user.id,
            client_id,
            scope,
            sso: None,
        };
        db.start_session(&session, refresh.as_ref().map(|r| &r.1[..]), now)
            .await?;
        let snapshot = self.snapshot()?;
        let grant = AccessGrant {
            user: &user,
            session_id: &session_id,
            client_id,
            scope,
            audiences: &client.audiences,
            third_party: client.third_party,
        };
        let access_token = self
            .settings()
            .sign_access(snapshot.signer(), &grant, now)
            .map_err(|e| AuthError::Issuing(e.to_string()))?;
        let event = Event::new("login_success")
            .user(&user.id)
            .session(&session_id)
            .ip(client_ip)
            .with("client_id", client_id)
            .with("kid", snapshot.signer().kid());
        audit::record(db, now, event).await;
        self.metrics().issued(Grant::password, client_id);
        Ok(TokenResponse {
            access_token,
            token_type: "Bearer",
            expires_in: self.settings().access_token_lifetime.as_secs(),
            refresh_token: refresh.map(|r| r.0),
            scope: scope.to_owned(),
            id_token: None,
        })
    }
}
