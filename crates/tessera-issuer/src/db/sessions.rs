//! The `sessions` and `refresh_tokens` tables: a session is a refresh-token
//! family; the rotation and the reuse check are the writes where each
//! backend's concurrency control differs ([`super::sqlite`],
//! [`super::postgres`]).

use super::users::{User, user_from_row};
use super::{Backend, Db, DbError, sql};

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

/// What a refresh request came to.
#[derive(Debug)]
pub enum Refresh {
    /// The token was current: here is the new pair (response JSON).
    Rotated {
        /// The session (refresh-token family).
        session_id: String,
        /// The user.
        user_id: String,
        /// The token response, ready to send.
        response: Vec<u8>,
    },
    /// The same token again within the retry window: the same response as before.
    Replayed {
        /// The session.
        session_id: String,
        /// The token response first sent.
        response: Vec<u8>,
    },
    /// An already used token, outside the retry window: the family is revoked.
    Reused {
        /// The revoked session.
        session_id: String,
        /// Its user.
        user_id: String,
    },
    /// Unknown token, revoked or expired session, or disabled user.
    Refused(&'static str),
}

/// The lifetimes a refresh is checked against, in seconds.
#[derive(Debug, Clone, Copy)]
pub struct RefreshRules {
    /// Now, Unix seconds.
    pub now: i64,
    /// Session idle lifetime.
    pub idle: i64,
    /// Session absolute lifetime.
    pub absolute: i64,
    /// How long after a rotation the same token is answered with the same pair.
    pub retry_window: i64,
}

/// A refresh token row with its session and user, read before any lock.
struct FoundRefresh {
    used: bool,
    revoked: bool,
    created_at: i64,
    last_used_at: i64,
    session: SessionInfo,
    user: User,
}

/// A freshly issued pair, built before the refresh transaction.
pub struct Issued {
    /// The token response JSON.
    pub response: Vec<u8>,
    /// The hash of the new refresh token.
    pub new_hash: [u8; 32],
}

/// The write half of a rotation; see [`Db::refresh`].
pub(super) struct Rotation {
    pub(super) old_hash: [u8; 32],
    pub(super) new_hash: [u8; 32],
    pub(super) session_id: String,
    pub(super) sealed: Option<Vec<u8>>,
    pub(super) now: i64,
}

/// A used token's row, read under the lock that decides replay or reuse.
struct UsedToken {
    session_id: String,
    user_id: String,
    used_at: Option<i64>,
    sealed: Option<Vec<u8>>,
    revoked: bool,
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
                "INSERT INTO sessions (id, user_id, client_id, scope, created_at, last_used_at)
                 VALUES ($1, $2, $3, $4, $5, $5)",
            )
            .bind(session.id)
            .bind(session.user_id)
            .bind(session.client_id)
            .bind(session.scope)
            .bind(now)
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

impl Db {
    /// Revokes every live session of a user; returns their ids (`sid`s).
    pub async fn revoke_user_sessions(
        &self,
        user_id: &str,
        now: i64,
        why: &str,
    ) -> Result<Vec<String>, DbError> {
        on_writer!(self, |conn| sqlx::query_scalar(
            "UPDATE sessions SET revoked_at = $1, revoked_why = $2
             WHERE user_id = $3 AND revoked_at IS NULL RETURNING id"
        )
        .bind(now)
        .bind(why)
        .bind(user_id)
        .fetch_all(conn)
        .await
        .map_err(sql("revoking a user's sessions")))
    }
}

impl Db {
    /// Rotates a refresh token. Exactly one of any number of concurrent uses,
    /// in this process or any other sharing the database, wins: the old token
    /// is marked used by a conditional update (`used_at IS NULL`) in one
    /// transaction with its successor, and only the use that flips it commits.
    /// The others see it used and get the replay (within the retry window) or
    /// revoke the family (reuse).
    ///
    /// The new pair is built and signed *before* the write transaction, so no
    /// database lock is ever held during RSA signing; a use that loses the race
    /// discards its pair unsent.
    ///
    /// `admit` refuses a session (by its client) before anything else,
    /// replays included; `issue` builds the new pair for the session's user;
    /// `seal` and `open` protect the stored response for a replay.
    pub async fn refresh(
        &self,
        old_hash: &[u8; 32],
        rules: RefreshRules,
        admit: impl FnOnce(&SessionInfo) -> Result<(), &'static str>,
        issue: impl FnOnce(&User, &SessionInfo) -> Result<Issued, String>,
        seal: impl FnOnce(&[u8]) -> Option<Vec<u8>>,
        open: impl FnOnce(&[u8]) -> Option<Vec<u8>>,
    ) -> Result<Refresh, DbError> {
        let Some(found) = self.find_refresh(old_hash).await? else {
            return Ok(Refresh::Refused("unknown_token"));
        };
        if let Err(reason) = admit(&found.session) {
            return Ok(Refresh::Refused(reason));
        }
        if found.revoked {
            return Ok(Refresh::Refused("session_revoked"));
        }
        if found.used {
            return self.used_refresh(old_hash, rules, open).await;
        }
        if rules.now >= found.created_at.saturating_add(rules.absolute) {
            return Ok(Refresh::Refused("session_expired"));
        }
        if rules.now >= found.last_used_at.saturating_add(rules.idle) {
            return Ok(Refresh::Refused("session_idle"));
        }
        if found.user.disabled {
            return Ok(Refresh::Refused("user_disabled"));
        }
        let issued = issue(&found.user, &found.session).map_err(|e| DbError::Sqlx {
            action: "issuing tokens",
            source: sqlx::Error::Protocol(e),
        })?;
        let rotation = Rotation {
            old_hash: *old_hash,
            new_hash: issued.new_hash,
            session_id: found.session.id.clone(),
            sealed: seal(&issued.response),
            now: rules.now,
        };
        let rotated = match &self.backend {
            Backend::Sqlite(backend) => backend.rotate(rotation).await?,
            Backend::Postgres(backend) => backend.rotate(&rotation).await?,
        };
        if !rotated {
            // Another use won between our read and our write, or the session
            // was revoked (logout, reuse elsewhere) since we looked.
            return self.used_refresh(old_hash, rules, open).await;
        }
        Ok(Refresh::Rotated {
            session_id: found.session.id,
            user_id: found.user.id,
            response: issued.response,
        })
    }

    async fn find_refresh(&self, hash: &[u8; 32]) -> Result<Option<FoundRefresh>, DbError> {
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

    /// A token that is already used: the same response again within the retry
    /// window, otherwise reuse, and the family is revoked. The row is read
    /// under a lock (SQLite: `BEGIN IMMEDIATE`; PostgreSQL: `FOR UPDATE` on the
    /// session), so two reuses revoke once and a replay never races a revoke.
    async fn used_refresh(
        &self,
        hash: &[u8; 32],
        rules: RefreshRules,
        open: impl FnOnce(&[u8]) -> Option<Vec<u8>>,
    ) -> Result<Refresh, DbError> {
        macro_rules! decide {
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
                    return Ok(Refresh::Refused("unknown_token"));
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
                    return Ok(Refresh::Refused("session_revoked"));
                }
                if let Some(used_at) = used.used_at
                    && rules.retry_window > 0
                    && rules.now - used_at <= rules.retry_window
                    && let Some(response) = used.sealed.as_deref().and_then(open)
                {
                    return Ok(Refresh::Replayed {
                        session_id: used.session_id,
                        response,
                    });
                }
                sqlx::query(
                    "UPDATE sessions SET revoked_at = $1, revoked_why = 'refresh_token_reuse'
                     WHERE id = $2 AND revoked_at IS NULL",
                )
                .bind(rules.now)
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
                let mut writer = backend.writer.lock().await;
                let mut tx = writer
                    .begin_with("BEGIN IMMEDIATE")
                    .await
                    .map_err(sql("starting a refresh transaction"))?;
                let used = decide!(tx, "");
                tx.commit().await.map_err(sql("committing a revocation"))?;
                used
            }
            Backend::Postgres(backend) => {
                let mut tx = backend
                    .pool
                    .begin()
                    .await
                    .map_err(sql("starting a refresh transaction"))?;
                let used = decide!(tx, " FOR UPDATE OF s");
                tx.commit().await.map_err(sql("committing a revocation"))?;
                used
            }
        };
        Ok(Refresh::Reused {
            session_id: used.session_id,
            user_id: used.user_id,
        })
    }

    /// Revokes the session a refresh token belongs to. Returns the session id, or
    /// `None` for an unknown token.
    pub async fn revoke_by_refresh_token(
        &self,
        hash: &[u8; 32],
        now: i64,
        why: &str,
    ) -> Result<Option<String>, DbError> {
        let Some(session_id) = self.refresh_token_session(hash).await? else {
            return Ok(None);
        };
        self.revoke_session(&session_id, now, why).await?;
        Ok(Some(session_id))
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
