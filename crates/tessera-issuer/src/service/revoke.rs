//! Revoking: logout, `/revoke` (RFC 7009), and [`Revocations`], the one way
//! sessions and access tokens are revoked, by the service and by operators.

use std::time::Duration;

use crate::audit::{self, Event};
use crate::db::{Db, DbError, Revoked, RevokedAt, SessionsOf};
use crate::feed::Feed;
use crate::revocation::Kind;
use crate::tokens::{check_own_access_token, refresh_token_hash};

use super::{AuthError, Issuer};

/// Where revocations are written, with which clock, and which feed to tell.
/// Every entry lives as long as a token it covers can be valid: the longest
/// access-token lifetime any instance recorded (at least `lifetime`).
#[derive(Debug, Clone, Copy)]
pub struct Revocations<'a> {
    db: &'a Db,
    lifetime: Duration,
    at: RevokedAt,
    feed: Option<&'a Feed>,
    metrics: Option<&'a crate::metrics::Metrics>,
}

impl<'a> Revocations<'a> {
    /// Revocations into `db` at `at`: [`RevokedAt::Clock`] in a running
    /// service, [`RevokedAt::Database`] for operator commands (the one clock
    /// every process shares).
    pub fn new(db: &'a Db, lifetime: Duration, at: RevokedAt) -> Self {
        Self {
            db,
            lifetime,
            at,
            feed: None,
            metrics: None,
        }
    }

    /// The same, marking `feed`'s copy out of date after each new entry.
    pub fn telling(self, feed: &'a Feed) -> Self {
        Self {
            feed: Some(feed),
            ..self
        }
    }

    /// The same, counting each new entry in `metrics`.
    pub fn counting(self, metrics: &'a crate::metrics::Metrics) -> Self {
        Self {
            metrics: Some(metrics),
            ..self
        }
    }

    /// Revokes the tokens `value` names (unless a live entry covers them).
    pub async fn tokens(&self, kind: Kind, value: &str, why: &str) -> Result<(), DbError> {
        let revoked = self
            .db
            .add_revocation(kind, value, self.at, self.lifetime, why)
            .await?;
        if let Revoked::Added(_) = revoked {
            if let Some(feed) = self.feed {
                feed.touch();
            }
            if let Some(metrics) = self.metrics {
                metrics.revoked(kind);
            }
        }
        Ok(())
    }

    /// Ends a session (its refresh family) and revokes its access tokens.
    pub async fn session(&self, session_id: &str, now: i64, why: &str) -> Result<(), DbError> {
        self.db.revoke_session(session_id, now, why).await?;
        self.tokens(Kind::Sid, session_id, why).await
    }

    /// Ends every session of a user and revokes every token issued to them
    /// until now, and each ended session's tokens by `sid` (which needs no
    /// clock at all); returns how many sessions ended.
    pub async fn user(&self, user_id: &str, now: i64, why: &str) -> Result<usize, DbError> {
        self.owner(SessionsOf::User(user_id), user_id, now, why)
            .await
    }

    /// Revokes every token of a client: its own (client credentials: `sub`
    /// is the client id) issued until now, and its users' through it (each
    /// of its sessions ends, by `sid`); returns how many sessions ended.
    pub async fn client(&self, client_id: &str, now: i64, why: &str) -> Result<usize, DbError> {
        self.owner(SessionsOf::Client(client_id), client_id, now, why)
            .await
    }

    /// Ends `owner`'s sessions and revokes each one's access tokens by
    /// `sid` (and nothing else of their user's); returns their ids.
    pub async fn sessions(
        &self,
        owner: SessionsOf<'_>,
        now: i64,
        why: &str,
    ) -> Result<Vec<String>, DbError> {
        let ended = self.db.revoke_sessions_of(owner, now, why).await?;
        for sid in &ended {
            self.tokens(Kind::Sid, sid, why).await?;
        }
        Ok(ended)
    }

    /// Ends `owner`'s sessions, revokes the tokens whose `sub` is `sub` up to
    /// now, and each ended session's by `sid`.
    async fn owner(
        &self,
        owner: SessionsOf<'_>,
        sub: &str,
        now: i64,
        why: &str,
    ) -> Result<usize, DbError> {
        let ended = self.db.revoke_sessions_of(owner, now, why).await?;
        self.tokens(Kind::Sub, sub, why).await?;
        for sid in &ended {
            self.tokens(Kind::Sid, sid, why).await?;
        }
        Ok(ended.len())
    }
}

impl Issuer {
    /// Revocations as this instance makes them: "now" by its clock, and the
    /// feed told at once.
    pub fn revocations(&self) -> Revocations<'_> {
        Revocations::new(
            self.db(),
            self.inner.settings.access_token_lifetime,
            crate::db::RevokedAt::Clock(self.now()),
        )
        .telling(&self.inner.feed)
        .counting(&self.inner.metrics)
    }

    /// Logout with an access token this issuer signed: ends its session, and
    /// revokes the session's access tokens (this one included) wherever
    /// resource servers follow the feed.
    pub async fn logout(&self, access_token: &str) -> Result<(), AuthError> {
        let snapshot = self.snapshot()?;
        let now = self.now();
        let own = check_own_access_token(
            snapshot.keyring().jwks(),
            self.issuer_url(),
            access_token,
            now,
        )
        .map_err(AuthError::InvalidToken)?;
        self.revocations().session(&own.sid, now, "logout").await?;
        let event = Event::new("logout").user(&own.sub).session(&own.sid);
        audit::record(self.db(), now, event).await;
        Ok(())
    }

    /// Logout with a refresh token (a cookie session's): ends its session and
    /// revokes the session's access tokens, as [`Issuer::logout`] does.
    /// [`AuthError::InvalidGrant`] when the token is unknown or its session
    /// is over already (revoked, idle or past its absolute lifetime, its user
    /// disabled). A token already rotated still ends its live session: ending
    /// a session is never a privilege worth refusing.
    pub async fn end_session(&self, refresh_token: &str) -> Result<(), AuthError> {
        if refresh_token.len() > 512 {
            return Err(AuthError::InvalidGrant);
        }
        let now = self.now();
        let found = self
            .db()
            .find_refresh(&refresh_token_hash(refresh_token))
            .await?
            .ok_or(AuthError::InvalidGrant)?;
        let settings = self.settings();
        let over = found.revoked
            || found.user.disabled
            || now
                >= found
                    .last_used_at
                    .saturating_add(crate::secs(settings.refresh_idle_lifetime))
            || now
                >= found
                    .created_at
                    .saturating_add(crate::secs(settings.refresh_absolute_lifetime));
        if over {
            return Err(AuthError::InvalidGrant);
        }
        let session_id = &found.session.id;
        self.revocations()
            .session(session_id, now, "logout")
            .await?;
        let event = Event::new("logout")
            .user(&found.user.id)
            .session(session_id)
            .with("via", "refresh_token");
        audit::record(self.db(), now, event).await;
        Ok(())
    }

    /// `/revoke` (RFC 7009): a refresh token revokes its whole family; an
    /// access token this issuer signed (still valid) revokes itself, by
    /// `jti`. Unknown tokens change nothing and are not an error, so the
    /// answer reveals nothing.
    pub async fn revoke_token(&self, token: &str) -> Result<(), AuthError> {
        let now = self.now();
        // Refresh tokens are opaque (no dots); access tokens are JWTs.
        if token.contains('.') {
            let snapshot = self.snapshot()?;
            let jwks = snapshot.keyring().jwks();
            if let Ok(own) = check_own_access_token(jwks, self.issuer_url(), token, now) {
                self.revocations()
                    .tokens(Kind::Jti, &own.jti, "revoked")
                    .await?;
                let event = Event::new("token_revoked")
                    .user(&own.sub)
                    .session(&own.sid)
                    .with("jti", own.jti.as_str());
                audit::record(self.db(), now, event).await;
            }
        } else if token.len() <= 512 {
            let hash = refresh_token_hash(token);
            if let Some(session_id) = self.db().refresh_token_session(&hash).await? {
                self.revocations()
                    .session(&session_id, now, "revoked")
                    .await?;
                audit::record(self.db(), now, Event::new("revoke").session(&session_id)).await;
            }
        }
        Ok(())
    }
}
