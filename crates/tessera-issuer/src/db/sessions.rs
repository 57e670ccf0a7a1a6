//! The `sessions` and `refresh_tokens` tables: a session is a refresh-token
//! family; the rotation and the reuse check are the writes where each
//! backend's concurrency control differs ([`super::sqlite`],
//! [`super::postgres`]).

use super::error::{DbError, sql};
use super::rotation::Rotation;
use super::users::{User, user_from_row};
use super::{Backend, Db};

/// A session to start.
#[derive(Debug, Clone, Copy)]
pub struct NewSession<'a> {
    /// The session id (`sid`).
    pub id: &'a str,
    /// The user.
    pub user_id: &'a str,
    /// The client that logged in.
    pub client_id: &'a str,
    /// The scope granted.
    pub scope: &'a str,
    /// The browser sign-in (SSO session) it came from, if any.
    pub sso: Option<SsoLink<'a>>,
}

/// The SSO session a session was started from (browser sign-in).
#[derive(Debug, Clone, Copy)]
pub struct SsoLink<'a> {
    /// The SSO session's id.
    pub id: &'a str,
    /// When the user's password was checked (Unix seconds).
    pub auth_time: i64,
}

/// The session a refresh belongs to, as `issue` sees it.
#[derive(Debug, Clone)]
pub struct SessionInfo {
    /// The session id (`sid`).
    pub id: String,
    /// The client that logged in.
    pub client_id: String,
    /// The scope granted.
    pub scope: String,
}

/// A refresh token row with its session and user, read before any lock.
#[derive(Debug)]
pub struct FoundRefresh {
    /// The token was used already.
    pub used: bool,
    /// Its session is revoked.
    pub revoked: bool,
    /// When the session started (Unix seconds).
    pub created_at: i64,
    /// When the session last refreshed (Unix seconds).
    pub last_used_at: i64,
    /// The session.
    pub session: SessionInfo,
    /// Its user.
    pub user: User,
}

/// A used token's row, read under the lock that decides replay or reuse.
#[derive(Debug)]
pub struct UsedToken {
    /// Its session.
    pub session_id: String,
    /// The session's user.
    pub user_id: String,
    /// When it was used (Unix seconds).
    pub used_at: Option<i64>,
    /// The sealed response of its rotation, if kept.
    pub sealed: Option<Vec<u8>>,
    revoked: bool,
}

/// What the caller of [`Db::settle_used`] decided about a used token.
#[derive(Debug)]
pub enum Settle {
    /// Answer again with this response (the sealed one, opened).
    Replay(Vec<u8>),
    /// Reuse: revoke the session.
    Revoke,
}

/// What [`Db::settle_used`] came to.
#[derive(Debug)]
pub enum Settled {
    /// The token is not stored (any more).
    Unknown,
    /// Its session was revoked already; nothing changed.
    SessionRevoked,
    /// The decision was a replay.
    Replayed {
        /// The session.
        session_id: String,
        /// The response to send again.
        response: Vec<u8>,
    },
    /// The decision was reuse, and the session is revoked now.
    Reused {
        /// The session.
        session_id: String,
        /// Its user.
        user_id: String,
    },
}

impl Db {
    /// Starts a session (a refresh-token family) with its first refresh token
    /// (if its client may refresh), in one transaction. Only the token's hash
    /// is stored.
    pub async fn start_session(
        &self,
        session: &NewSession<'_>,
        refresh_hash: Option<&[u8]>,
        now: i64,
    ) -> Result<(), DbError> {
        in_transaction!(self, "committing a session", |tx| {
            sqlx::query(
                "INSERT INTO sessions (id, user_id, client_id, scope, created_at, last_used_at,
                                       sso_id, auth_time)
                 VALUES ($1, $2, $3, $4, $5, $5, $6, $7)",
            )
            .bind(session.id)
            .bind(session.user_id)
            .bind(session.client_id)
            .bind(session.scope)
            .bind(now)
            .bind(session.sso.map(|s| s.id))
            .bind(session.sso.map(|s| s.auth_time))
            .execute(&mut *tx)
            .await
            .map_err(sql("starting a session"))?;
            if let Some(refresh_hash) = refresh_hash {
                sqlx::query(
                    "INSERT INTO refresh_tokens (hash, session_id, issued_at) VALUES ($1, $2, $3)",
                )
                .bind(refresh_hash)
                .bind(session.id)
                .bind(now)
                .execute(&mut *tx)
                .await
                .map_err(sql("storing a refresh token"))?;
            }
        });
        Ok(())
    }

    /// How many sessions and refresh tokens exist (for tests and operators).
    pub async fn count_sessions(&self) -> Result<(i64, i64), DbError> {
        on_pool!(self, |pool| {
            let sessions = sqlx::query_scalar("SELECT COUNT(*) FROM sessions")
                .fetch_one(pool)
                .await
                .map_err(sql("counting sessions"))?;
            let tokens = sqlx::query_scalar("SELECT COUNT(*) FROM refresh_tokens")
                .fetch_one(pool)
                .await
                .map_err(sql("counting refresh tokens"))?;
            Ok((sessions, tokens))
        })
    }

    /// The session a refresh token hash belongs to, if it is stored.
    pub async fn refresh_token_session(&self, hash: &[u8]) -> Result<Option<String>, DbError> {
        on_pool!(self, |pool| sqlx::query_scalar(
            "SELECT session_id FROM refresh_tokens WHERE hash = $1"
        )
        .bind(hash)
        .fetch_optional(pool)
        .await
        .map_err(sql("reading a refresh token")))
    }
}

/// Whose sessions [`Db::revoke_sessions_of`] ends.
#[derive(Debug, Clone, Copy)]
pub enum SessionsOf<'a> {
    /// A user's, by user id.
    User(&'a str),
    /// A client's (its users' logins through it), by client id.
    Client(&'a str),
    /// One user's through one client (consent withdrawn): user id, client id.
    UserClient(&'a str, &'a str),
    /// Those a browser sign-in (SSO session) started, by its id.
    Sso(&'a str),
}

impl Db {
    /// Revokes every live session of a user or a client; returns their ids
    /// (`sid`s).
    pub async fn revoke_sessions_of(
        &self,
        owner: SessionsOf<'_>,
        now: i64,
        why: &str,
    ) -> Result<Vec<String>, DbError> {
        let (query, id, other, what) = match owner {
            SessionsOf::User(id) => (
                "UPDATE sessions SET revoked_at = $1, revoked_why = $2
                 WHERE user_id = $3 AND revoked_at IS NULL RETURNING id",
                id,
                None,
                "revoking a user's sessions",
            ),
            SessionsOf::Client(id) => (
                "UPDATE sessions SET revoked_at = $1, revoked_why = $2
                 WHERE client_id = $3 AND revoked_at IS NULL RETURNING id",
                id,
                None,
                "revoking a client's sessions",
            ),
            SessionsOf::UserClient(user, client) => (
                "UPDATE sessions SET revoked_at = $1, revoked_why = $2
                 WHERE user_id = $3 AND client_id = $4 AND revoked_at IS NULL RETURNING id",
                user,
                Some(client),
                "revoking a user's sessions with a client",
            ),
            SessionsOf::Sso(id) => (
                "UPDATE sessions SET revoked_at = $1, revoked_why = $2
                 WHERE sso_id = $3 AND revoked_at IS NULL RETURNING id",
                id,
                None,
                "revoking a browser sign-in's sessions",
            ),
        };
        on_writer!(self, |conn| {
            let query = sqlx::query_scalar(query).bind(now).bind(why).bind(id);
            match other {
                Some(other) => query.bind(other),
                None => query,
            }
            .fetch_all(conn)
            .await
            .map_err(sql(what))
        })
    }
}

impl Db {
    /// Marks the token `rotation.old_hash` used and stores its successor, in
    /// one transaction, if the token is still unused and its session live:
    /// `false` when another use won between the caller's read and this
    /// write, or the session was revoked since (a conditional update,
    /// `used_at IS NULL`, so exactly one of any number of concurrent uses, in
    /// any process, wins).
    pub async fn rotate(&self, rotation: Rotation) -> Result<bool, DbError> {
        match &self.backend {
            Backend::Sqlite(backend) => backend.rotate(rotation).await,
            Backend::Postgres(backend) => backend.rotate(&rotation).await,
        }
    }

    /// A refresh token's row with its session and user, if it is stored.
    pub async fn find_refresh(&self, hash: &[u8; 32]) -> Result<Option<FoundRefresh>, DbError> {
        on_pool!(self, |pool| {
            use sqlx::Row as _;
            let row = sqlx::query(
                "SELECT rt.session_id, rt.used_at,
                        s.created_at AS session_created_at, s.last_used_at, s.revoked_at,
                        s.client_id, s.scope,
                        u.id, u.username, u.roles, u.disabled, u.created_at
                 FROM refresh_tokens rt
                 JOIN sessions s ON s.id = rt.session_id
                 JOIN users u ON u.id = s.user_id
                 WHERE rt.hash = $1",
            )
            .bind(&hash[..])
            .fetch_optional(pool)
            .await
            .map_err(sql("reading a refresh token"))?;
            let Some(row) = row else {
                return Ok(None);
            };
            let found = || -> Result<FoundRefresh, sqlx::Error> {
                Ok(FoundRefresh {
                    used: row.try_get::<Option<i64>, _>("used_at")?.is_some(),
                    revoked: row.try_get::<Option<i64>, _>("revoked_at")?.is_some(),
                    created_at: row.try_get("session_created_at")?,
                    last_used_at: row.try_get("last_used_at")?,
                    session: SessionInfo {
                        id: row.try_get("session_id")?,
                        client_id: row.try_get("client_id")?,
                        scope: row.try_get("scope")?,
                    },
                    user: user_from_row(&row)?,
                })
            };
            found().map(Some).map_err(sql("reading a refresh token"))
        })
    }

    /// Settles a token that is already used: reads its row under a lock
    /// (SQLite: `BEGIN IMMEDIATE`; PostgreSQL: `FOR UPDATE` on the session),
    /// lets `decide` choose replay or reuse, and on reuse revokes the session
    /// in the same transaction; so two reuses revoke once and a replay never
    /// races a revoke.
    pub async fn settle_used(
        &self,
        hash: &[u8; 32],
        now: i64,
        decide: impl FnOnce(&UsedToken) -> Settle,
    ) -> Result<Settled, DbError> {
        macro_rules! settle {
            ($tx:ident, $lock_suffix:literal) => {{
                use sqlx::Row as _;
                let row = sqlx::query(concat!(
                    "SELECT rt.session_id, rt.used_at, rt.retry_sealed, s.revoked_at, s.user_id
                     FROM refresh_tokens rt JOIN sessions s ON s.id = rt.session_id
                     WHERE rt.hash = $1",
                    $lock_suffix
                ))
                .bind(&hash[..])
                .fetch_optional(&mut *$tx)
                .await
                .map_err(sql("reading a refresh token"))?;
                let Some(row) = row else {
                    return Ok(Settled::Unknown);
                };
                let used = (|| -> Result<UsedToken, sqlx::Error> {
                    Ok(UsedToken {
                        session_id: row.try_get("session_id")?,
                        user_id: row.try_get("user_id")?,
                        used_at: row.try_get("used_at")?,
                        sealed: row.try_get("retry_sealed")?,
                        revoked: row.try_get::<Option<i64>, _>("revoked_at")?.is_some(),
                    })
                })()
                .map_err(sql("reading a refresh token"))?;
                if used.revoked {
                    return Ok(Settled::SessionRevoked);
                }
                if let Settle::Replay(response) = decide(&used) {
                    return Ok(Settled::Replayed {
                        session_id: used.session_id,
                        response,
                    });
                }
                sqlx::query(
                    "UPDATE sessions SET revoked_at = $1, revoked_why = 'refresh_token_reuse'
                     WHERE id = $2 AND revoked_at IS NULL",
                )
                .bind(now)
                .bind(&used.session_id)
                .execute(&mut *$tx)
                .await
                .map_err(sql("revoking a session"))?;
                used
            }};
        }
        let used = match &self.backend {
            Backend::Sqlite(backend) => {
                use sqlx::Connection as _;
                let mut writer = backend
                    .writer
                    .lock()
                    .await
                    .map_err(sql("starting a refresh transaction"))?;
                let mut tx = writer
                    .begin_with("BEGIN IMMEDIATE")
                    .await
                    .map_err(sql("starting a refresh transaction"))?;
                let used = settle!(tx, "");
                tx.commit().await.map_err(sql("committing a revocation"))?;
                used
            }
            Backend::Postgres(backend) => {
                let mut tx = backend
                    .pool
                    .begin()
                    .await
                    .map_err(sql("starting a refresh transaction"))?;
                let used = settle!(tx, " FOR UPDATE OF s");
                tx.commit().await.map_err(sql("committing a revocation"))?;
                used
            }
        };
        Ok(Settled::Reused {
            session_id: used.session_id,
            user_id: used.user_id,
        })
    }

    /// Revokes a session (its whole refresh-token family). Idempotent.
    pub async fn revoke_session(
        &self,
        session_id: &str,
        now: i64,
        why: &str,
    ) -> Result<(), DbError> {
        on_writer!(self, |conn| sqlx::query(
            "UPDATE sessions SET revoked_at = $1, revoked_why = $2
             WHERE id = $3 AND revoked_at IS NULL",
        )
        .bind(now)
        .bind(why)
        .bind(session_id)
        .execute(conn)
        .await
        .map(|_| ())
        .map_err(sql("revoking a session")))?;
        Ok(())
    }

    /// Whether a session exists and is not revoked.
    pub async fn session_active(&self, session_id: &str) -> Result<bool, DbError> {
        let revoked: Option<Option<i64>> = on_pool!(self, |pool| sqlx::query_scalar(
            "SELECT revoked_at FROM sessions WHERE id = $1"
        )
        .bind(session_id)
        .fetch_optional(pool)
        .await
        .map_err(sql("reading a session")))?;
        Ok(matches!(revoked, Some(None)))
    }
}
