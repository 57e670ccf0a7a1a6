//! Operators' changes to users (`tessera-issuer users ...`, `revoke-*`), with
//! their side effects: a disabled, reset or deleted user's sessions end and
//! their tokens are revoked; a role taken away revokes the tokens that carry
//! it. Revocations take "now" from the database's clock, which every
//! process shares.

use std::sync::Arc;
use std::time::Duration;

use tessera_keyring::Clock;

use crate::audit::{self, Event};
use crate::db::{Db, RevokedAt, SessionsOf, User};
use crate::passwords::{Hasher, Password, random_token};
use crate::revocation::Kind;
use crate::validate;

use super::AuthError;
use super::revoke::Revocations;

/// User administration on one database.
#[derive(Debug)]
pub struct Accounts {
    db: Db,
    access_token_lifetime: Duration,
    clock: Arc<dyn Clock>,
}

impl Accounts {
    /// Accounts in `db`; revocations last at least `access_token_lifetime`
    /// (the longest any instance recorded, if longer).
    pub fn new(db: Db, access_token_lifetime: Duration, clock: Arc<dyn Clock>) -> Self {
        Self {
            db,
            access_token_lifetime,
            clock,
        }
    }

    /// The database.
    pub fn db(&self) -> &Db {
        &self.db
    }

    fn now(&self) -> i64 {
        crate::unix_now(self.clock.as_ref())
    }

    fn revocations(&self) -> Revocations<'_> {
        Revocations::new(&self.db, self.access_token_lifetime, RevokedAt::Database)
    }

    /// A user's stable id.
    pub async fn user_id(&self, name: &str) -> Result<String, AuthError> {
        match self.db.credentials(name).await? {
            Some(c) => Ok(c.user.id),
            None => Err(AuthError::NoSuchUser(name.to_owned())),
        }
    }

    /// Whether `name` and `roles` are acceptable for a new user (checked
    /// again by [`Accounts::add`]; callers ask first, before prompting for a
    /// password).
    pub fn check_new(name: &str, roles: &[String]) -> Result<(), AuthError> {
        validate::username(name).map_err(AuthError::Invalid)?;
        check_roles(roles)
    }

    /// Adds a user with this password (already checked against the policy).
    pub async fn add(
        &self,
        name: &str,
        roles: &[String],
        hasher: &Hasher,
        password: &Password,
    ) -> Result<User, AuthError> {
        Self::check_new(name, roles)?;
        let hash = hasher.hash(password)?;
        let now = self.now();
        let user = self
            .db
            .add_user(&random_token(16), name, &hash, roles, now)
            .await?;
        let event = Event::new("user_added")
            .user(&user.id)
            .with("username", name)
            .with("roles", roles.to_vec());
        audit::record(&self.db, now, event).await;
        Ok(user)
    }

    /// Replaces a user's roles; returns the roles taken away. A token
    /// carrying a role taken away stops working (every token issued to the
    /// user until now is revoked); sessions go on, and their next refresh
    /// carries the new roles.
    pub async fn set_roles(&self, name: &str, roles: &[String]) -> Result<Vec<String>, AuthError> {
        check_roles(roles)?;
        let Some(before) = self.db.credentials(name).await? else {
            return Err(AuthError::NoSuchUser(name.to_owned()));
        };
        let id = before.user.id;
        let now = self.now();
        self.db.set_roles(name, roles, now).await?;
        let event = Event::new("user_roles_set")
            .user(&id)
            .with("roles", roles.to_vec());
        audit::record(&self.db, now, event).await;
        let removed: Vec<String> = before
            .user
            .roles
            .into_iter()
            .filter(|role| !roles.contains(role))
            .collect();
        if !removed.is_empty() {
            self.revocations()
                .tokens(Kind::Sub, &id, "roles_removed")
                .await?;
        }
        Ok(removed)
    }

    /// Sets a new password (already checked against the policy); ends the
    /// user's sessions and revokes their tokens. Returns how many sessions
    /// ended.
    pub async fn reset_password(
        &self,
        name: &str,
        hasher: &Hasher,
        password: &Password,
    ) -> Result<usize, AuthError> {
        let id = self.user_id(name).await?;
        let hash = hasher.hash(password)?;
        let now = self.now();
        self.db.set_password_hash(name, &hash, now).await?;
        audit::record(&self.db, now, Event::new("user_password_reset").user(&id)).await;
        Ok(self.revocations().user(&id, now, "password_reset").await?)
    }

    /// Stops a user from logging in or refreshing; ends their sessions and
    /// revokes their tokens. Returns how many sessions ended.
    pub async fn disable(&self, name: &str) -> Result<usize, AuthError> {
        let now = self.now();
        self.db.set_disabled(name, true, now).await?;
        let id = self.user_id(name).await?;
        audit::record(&self.db, now, Event::new("user_disabled").user(&id)).await;
        Ok(self.revocations().user(&id, now, "user_disabled").await?)
    }

    /// Lets a disabled user log in again.
    pub async fn enable(&self, name: &str) -> Result<(), AuthError> {
        let now = self.now();
        self.db.set_disabled(name, false, now).await?;
        let id = self.user_id(name).await?;
        audit::record(&self.db, now, Event::new("user_enabled").user(&id)).await;
        Ok(())
    }

    /// Deletes a user: disabled first, so no login slips in between; then
    /// revoked (the entries outlive the user, so the deleted user's tokens
    /// stop working at resource servers too); then deleted.
    pub async fn delete(&self, name: &str) -> Result<(), AuthError> {
        let id = self.user_id(name).await?;
        let now = self.now();
        self.db.set_disabled(name, true, now).await?;
        self.revocations().user(&id, now, "user_deleted").await?;
        self.db.delete_user(name).await?;
        let event = Event::new("user_deleted").user(&id).with("username", name);
        audit::record(&self.db, now, event).await;
        Ok(())
    }

    /// Ends every session of a user and revokes every token issued to them
    /// until now. Returns how many sessions ended.
    pub async fn revoke_user(&self, name: &str) -> Result<usize, AuthError> {
        let id = self.user_id(name).await?;
        let now = self.now();
        let ended = self.revocations().user(&id, now, "operator").await?;
        audit::record(&self.db, now, Event::new("user_revoked").user(&id)).await;
        Ok(ended)
    }

    /// Stops a client at once: disables it (no new tokens, no refresh) and
    /// revokes every token it holds or its users got through it, at every
    /// resource server following the feed. Returns how many sessions ended.
    /// `clients update ID --enable` lets it in again; tokens it gets after
    /// that are new and valid.
    pub async fn revoke_client(&self, client_id: &str) -> Result<usize, AuthError> {
        let now = self.now();
        let mut client = self
            .db
            .client(client_id)
            .await?
            .ok_or_else(|| AuthError::Invalid(format!("no client with id {client_id:?}")))?;
        if !client.disabled {
            client.disabled = true;
            client.updated_at = now;
            self.db.update_client(&client).await?;
        }
        let ended = self
            .revocations()
            .client(client_id, now, "operator")
            .await?;
        let event = Event::new("client_revoked")
            .with("client_id", client_id)
            .with("sessions_ended", ended);
        audit::record(&self.db, now, event).await;
        Ok(ended)
    }

    /// Ends a session (by `sid`) and revokes its access tokens.
    pub async fn revoke_session(&self, session_id: &str) -> Result<(), AuthError> {
        if session_id.is_empty() || session_id.len() > 128 {
            return Err(AuthError::Invalid(format!(
                "not a session id: {session_id:?}"
            )));
        }
        let now = self.now();
        self.revocations()
            .session(session_id, now, "operator")
            .await?;
        audit::record(
            &self.db,
            now,
            Event::new("session_revoked").session(session_id),
        )
        .await;
        Ok(())
    }

    /// The consents a user gave third-party clients: `(client_id, scopes,
    /// granted_at)`.
    pub async fn consents(&self, name: &str) -> Result<Vec<(String, Vec<String>, i64)>, AuthError> {
        let id = self.user_id(name).await?;
        Ok(self.db.consents_of(&id).await?)
    }

    /// Withdraws a user's consent to a client: the next sign-in asks again,
    /// and the user's sessions with that client end now (their tokens
    /// revoked). Returns whether there was a consent, and how many sessions
    /// ended.
    pub async fn withdraw_consent(
        &self,
        name: &str,
        client_id: &str,
    ) -> Result<(bool, usize), AuthError> {
        let id = self.user_id(name).await?;
        let now = self.now();
        let had = self.db.withdraw_consent(&id, client_id).await?;
        let ended = self
            .revocations()
            .sessions(
                SessionsOf::UserClient(&id, client_id),
                now,
                "consent_withdrawn",
            )
            .await?;
        let event = Event::new("consent_withdrawn")
            .user(&id)
            .with("client_id", client_id)
            .with("sessions_ended", ended.len());
        audit::record(&self.db, now, event).await;
        Ok((had, ended.len()))
    }

    /// Revokes one access token (by `jti`).
    pub async fn revoke_token(&self, jti: &str) -> Result<(), AuthError> {
        if jti.is_empty() || jti.len() > 128 {
            return Err(AuthError::Invalid(format!("not a token id: {jti:?}")));
        }
        self.revocations()
            .tokens(Kind::Jti, jti, "operator")
            .await?;
        let event = Event::new("token_revoked").with("jti", jti);
        audit::record(&self.db, self.now(), event).await;
        Ok(())
    }
}

fn check_roles(roles: &[String]) -> Result<(), AuthError> {
    roles
        .iter()
        .try_for_each(|role| validate::role(role))
        .map_err(AuthError::Invalid)
}
