//! Browser sign-in's tables: SSO sessions, authorization codes and consents
//! (see `crate::service::authorize`). Codes and SSO cookies are stored only
//! as SHA-256; the rules (lifetimes, bindings, PKCE) are the service's.

use super::Db;
use super::error::{DbError, sql};
use super::users::{User, user_from_row};

/// A live SSO session, with its user.
#[derive(Debug, Clone)]
pub struct SsoSession {
    /// Its id (never the cookie).
    pub id: String,
    /// When the password was checked (Unix seconds).
    pub auth_time: i64,
    /// The user.
    pub user: User,
}

/// An authorization code to store.
#[derive(Debug, Clone, Copy)]
pub struct NewCode<'a> {
    /// SHA-256 of the code.
    pub hash: &'a [u8; 32],
    /// The client it was issued to.
    pub client_id: &'a str,
    /// The redirect URI of the request, as given.
    pub redirect_uri: &'a str,
    /// The PKCE S256 challenge.
    pub code_challenge: &'a str,
    /// The scope granted.
    pub scope: &'a str,
    /// The OpenID Connect nonce, if the request had one.
    pub nonce: Option<&'a str>,
    /// The user.
    pub user_id: &'a str,
    /// The SSO session it was issued under.
    pub sso_id: &'a str,
    /// When the user's password was checked.
    pub auth_time: i64,
    /// The id the session its redemption starts will have.
    pub session_id: &'a str,
    /// When it stops being redeemable.
    pub expires_at: i64,
}

/// A code taken for redemption: what it was bound to.
#[derive(Debug, Clone)]
pub struct TakenCode {
    /// The client it was issued to.
    pub client_id: String,
    /// The redirect URI it was issued for.
    pub redirect_uri: String,
    /// The PKCE S256 challenge.
    pub code_challenge: String,
    /// The scope granted.
    pub scope: String,
    /// The nonce.
    pub nonce: Option<String>,
    /// The user.
    pub user_id: String,
    /// Its SSO session.
    pub sso_id: String,
    /// When the password was checked.
    pub auth_time: i64,
    /// The session to start.
    pub session_id: String,
    /// When it expires.
    pub expires_at: i64,
}

impl Db {
    /// Starts an SSO session for `user_id`, named by the cookie whose hash is
    /// `token_hash`.
    pub async fn start_sso(
        &self,
        id: &str,
        token_hash: &[u8; 32],
        user_id: &str,
        auth_time: i64,
        expires_at: i64,
    ) -> Result<(), DbError> {
        on_writer!(self, |conn| sqlx::query(
            "INSERT INTO sso_sessions (id, token_hash, user_id, auth_time, expires_at)
             VALUES ($1, $2, $3, $4, $5)"
        )
        .bind(id)
        .bind(&token_hash[..])
        .bind(user_id)
        .bind(auth_time)
        .bind(expires_at)
        .execute(conn)
        .await
        .map(|_| ())
        .map_err(sql("starting an SSO session")))
    }

    /// The SSO session the cookie hash names, if it is live at `now` and its
    /// user enabled.
    pub async fn sso_session(
        &self,
        token_hash: &[u8; 32],
        now: i64,
    ) -> Result<Option<SsoSession>, DbError> {
        on_pool!(self, |pool| {
            let row = sqlx::query(
                "SELECT s.id AS sso_id, s.auth_time,
                        u.id, u.username, u.roles, u.disabled, u.created_at
                 FROM sso_sessions s JOIN users u ON u.id = s.user_id
                 WHERE s.token_hash = $1 AND s.ended_at IS NULL AND s.expires_at > $2
                   AND NOT u.disabled",
            )
            .bind(&token_hash[..])
            .bind(now)
            .fetch_optional(pool)
            .await
            .map_err(sql("reading an SSO session"))?;
            row.map(|row| {
                use sqlx::Row as _;
                Ok(SsoSession {
                    id: row.try_get("sso_id")?,
                    auth_time: row.try_get("auth_time")?,
                    user: user_from_row(&row)?,
                })
            })
            .transpose()
            .map_err(sql("reading an SSO session"))
        })
    }

    /// The SSO session a session (`sid`) was started from, if any.
    pub async fn sso_of_session(&self, session_id: &str) -> Result<Option<String>, DbError> {
        let found: Option<Option<String>> = on_pool!(self, |pool| sqlx::query_scalar(
            "SELECT sso_id FROM sessions WHERE id = $1"
        )
        .bind(session_id)
        .fetch_optional(pool)
        .await
        .map_err(sql("reading a session")))?;
        Ok(found.flatten())
    }

    /// Ends an SSO session (idempotent); `true` if it was live.
    pub async fn end_sso(&self, id: &str, now: i64) -> Result<bool, DbError> {
        on_writer!(self, |conn| sqlx::query(
            "UPDATE sso_sessions SET ended_at = $2 WHERE id = $1 AND ended_at IS NULL"
        )
        .bind(id)
        .bind(now)
        .execute(conn)
        .await
        .map(|done| done.rows_affected() > 0)
        .map_err(sql("ending an SSO session")))
    }

    /// Ends SSO session `old` (its cookie was replaced) and, with `new`,
    /// moves the sessions and unredeemed codes it started to `new`.
    pub async fn supersede_sso(
        &self,
        old: &str,
        new: Option<&str>,
        now: i64,
    ) -> Result<(), DbError> {
        in_transaction!(self, "superseding an SSO session", |tx| {
            if let Some(new) = new {
                sqlx::query("UPDATE sessions SET sso_id = $2 WHERE sso_id = $1")
                    .bind(old)
                    .bind(new)
                    .execute(&mut *tx)
                    .await
                    .map_err(sql("moving sessions to a new SSO session"))?;
                sqlx::query("UPDATE authorization_codes SET sso_id = $2 WHERE sso_id = $1")
                    .bind(old)
                    .bind(new)
                    .execute(&mut *tx)
                    .await
                    .map_err(sql("moving codes to a new SSO session"))?;
            }
            sqlx::query("UPDATE sso_sessions SET ended_at = $2 WHERE id = $1 AND ended_at IS NULL")
                .bind(old)
                .bind(now)
                .execute(&mut *tx)
                .await
                .map_err(sql("ending an SSO session"))?;
        });
        Ok(())
    }

    /// Stores an authorization code.
    pub async fn store_code(&self, code: &NewCode<'_>) -> Result<(), DbError> {
        on_writer!(self, |conn| sqlx::query(
            "INSERT INTO authorization_codes (hash, client_id, redirect_uri, code_challenge,
                 scope, nonce, user_id, sso_id, auth_time, session_id, expires_at)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)"
        )
        .bind(&code.hash[..])
        .bind(code.client_id)
        .bind(code.redirect_uri)
        .bind(code.code_challenge)
        .bind(code.scope)
        .bind(code.nonce)
        .bind(code.user_id)
        .bind(code.sso_id)
        .bind(code.auth_time)
        .bind(code.session_id)
        .bind(code.expires_at)
        .execute(conn)
        .await
        .map(|_| ())
        .map_err(sql("storing an authorization code")))
    }

    /// Whether a code with this hash was issued (and not yet forgotten):
    /// a read, so that made-up codes cost no write.
    pub async fn code_issued(&self, hash: &[u8; 32]) -> Result<bool, DbError> {
        let found: Option<i64> = on_pool!(self, |pool| sqlx::query_scalar(
            "SELECT expires_at FROM authorization_codes WHERE hash = $1"
        )
        .bind(&hash[..])
        .fetch_optional(pool)
        .await
        .map_err(sql("reading an authorization code")))?;
        Ok(found.is_some())
    }

    /// Marks a code used, if it is stored and unused: exactly one of any
    /// number of concurrent redemptions, on any instance, gets it (a
    /// conditional update). `None`: unknown or used before.
    pub async fn take_code(&self, hash: &[u8; 32], now: i64) -> Result<Option<TakenCode>, DbError> {
        on_writer!(self, |conn| {
            let row = sqlx::query(
                "UPDATE authorization_codes SET used_at = $2
                 WHERE hash = $1 AND used_at IS NULL
                 RETURNING client_id, redirect_uri, code_challenge, scope, nonce, user_id,
                           sso_id, auth_time, session_id, expires_at",
            )
            .bind(&hash[..])
            .bind(now)
            .fetch_optional(conn)
            .await
            .map_err(sql("redeeming an authorization code"))?;
            row.map(|row| {
                use sqlx::Row as _;
                Ok(TakenCode {
                    client_id: row.try_get("client_id")?,
                    redirect_uri: row.try_get("redirect_uri")?,
                    code_challenge: row.try_get("code_challenge")?,
                    scope: row.try_get("scope")?,
                    nonce: row.try_get("nonce")?,
                    user_id: row.try_get("user_id")?,
                    sso_id: row.try_get("sso_id")?,
                    auth_time: row.try_get("auth_time")?,
                    session_id: row.try_get("session_id")?,
                    expires_at: row.try_get("expires_at")?,
                })
            })
            .transpose()
            .map_err(sql("redeeming an authorization code"))
        })
    }

    /// A used code was presented again: marks it so (the first redemption,
    /// if still running, sees the mark) and returns the session its first
    /// use started (or is starting). `None`: no such code, or marked
    /// already (only the first replay writes).
    pub async fn code_replayed(
        &self,
        hash: &[u8; 32],
        now: i64,
    ) -> Result<Option<String>, DbError> {
        on_writer!(self, |conn| sqlx::query_scalar(
            "UPDATE authorization_codes SET replayed_at = $2
             WHERE hash = $1 AND used_at IS NOT NULL AND replayed_at IS NULL
             RETURNING session_id"
        )
        .bind(&hash[..])
        .bind(now)
        .fetch_optional(conn)
        .await
        .map_err(sql("marking a replayed authorization code")))
    }

    /// Whether a taken code was not presented again and its SSO session
    /// has not ended (read after its session was started: see
    /// `crate::service::code`).
    pub async fn code_still_good(&self, hash: &[u8; 32]) -> Result<bool, DbError> {
        let good: Option<i64> = on_writer!(self, |conn| {
            sqlx::query_scalar(
            "SELECT c.expires_at FROM authorization_codes c JOIN sso_sessions s ON s.id = c.sso_id
             WHERE c.hash = $1 AND c.replayed_at IS NULL AND s.ended_at IS NULL"
        )
        .bind(&hash[..])
        .fetch_optional(conn)
        .await
        .map_err(sql("reading an authorization code"))
        })?;
        Ok(good.is_some())
    }

    /// The scopes `user_id` allowed `client_id`; `None`: never asked (or
    /// withdrawn).
    pub async fn consent(
        &self,
        user_id: &str,
        client_id: &str,
    ) -> Result<Option<Vec<String>>, DbError> {
        let text: Option<String> = on_pool!(self, |pool| sqlx::query_scalar(
            "SELECT scopes FROM consents WHERE user_id = $1 AND client_id = $2"
        )
        .bind(user_id)
        .bind(client_id)
        .fetch_optional(pool)
        .await
        .map_err(sql("reading a consent")))?;
        // An unreadable consent allows nothing: the page asks again.
        Ok(text.and_then(|t| serde_json::from_str(&t).ok()))
    }

    /// Records that `user_id` allowed `client_id` `scopes` (replacing what
    /// was recorded).
    pub async fn grant_consent(
        &self,
        user_id: &str,
        client_id: &str,
        scopes: &[String],
        now: i64,
    ) -> Result<(), DbError> {
        let scopes = serde_json::to_string(scopes).unwrap_or_else(|_| "[]".to_owned());
        on_writer!(self, |conn| sqlx::query(
            "INSERT INTO consents (user_id, client_id, scopes, granted_at) VALUES ($1, $2, $3, $4)
             ON CONFLICT (user_id, client_id)
             DO UPDATE SET scopes = excluded.scopes, granted_at = excluded.granted_at"
        )
        .bind(user_id)
        .bind(client_id)
        .bind(scopes)
        .bind(now)
        .execute(conn)
        .await
        .map(|_| ())
        .map_err(sql("recording a consent")))
    }

    /// Forgets a consent; `true` if there was one.
    pub async fn withdraw_consent(&self, user_id: &str, client_id: &str) -> Result<bool, DbError> {
        on_writer!(self, |conn| sqlx::query(
            "DELETE FROM consents WHERE user_id = $1 AND client_id = $2"
        )
        .bind(user_id)
        .bind(client_id)
        .execute(conn)
        .await
        .map(|done| done.rows_affected() > 0)
        .map_err(sql("withdrawing a consent")))
    }

    /// Every consent of a user: `(client_id, scopes, granted_at)`.
    pub async fn consents_of(
        &self,
        user_id: &str,
    ) -> Result<Vec<(String, Vec<String>, i64)>, DbError> {
        let rows: Vec<(String, String, i64)> = on_pool!(self, |pool| sqlx::query_as(
            "SELECT client_id, scopes, granted_at FROM consents WHERE user_id = $1
             ORDER BY client_id"
        )
        .bind(user_id)
        .fetch_all(pool)
        .await
        .map_err(sql("listing consents")))?;
        Ok(rows
            .into_iter()
            .map(|(c, s, at)| (c, serde_json::from_str(&s).unwrap_or_default(), at))
            .collect())
    }

    /// Deletes codes that expired before `before` and SSO sessions that
    /// ended or expired before it.
    pub async fn forget_sign_ins(&self, before: i64) -> Result<u64, DbError> {
        let codes = on_writer!(self, |conn| sqlx::query(
            "DELETE FROM authorization_codes WHERE expires_at < $1"
        )
        .bind(before)
        .execute(conn)
        .await
        .map(|done| done.rows_affected())
        .map_err(sql("forgetting authorization codes")))?;
        let sso = on_writer!(self, |conn| sqlx::query(
            "DELETE FROM sso_sessions WHERE expires_at < $1 OR ended_at < $1"
        )
        .bind(before)
        .execute(conn)
        .await
        .map(|done| done.rows_affected())
        .map_err(sql("forgetting SSO sessions")))?;
        Ok(codes + sso)
    }

    /// A user by id.
    pub async fn user_by_id(&self, user_id: &str) -> Result<Option<User>, DbError> {
        on_pool!(self, |pool| {
            let row = sqlx::query(
                "SELECT id, username, roles, disabled, created_at FROM users WHERE id = $1",
            )
            .bind(user_id)
            .fetch_optional(pool)
            .await
            .map_err(sql("reading a user"))?;
            row.as_ref()
                .map(user_from_row)
                .transpose()
                .map_err(sql("reading a user"))
        })
    }
}
