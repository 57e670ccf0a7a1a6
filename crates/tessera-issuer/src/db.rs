//! The issuer's database: users now; sessions and refresh tokens with the token
//! endpoints. SQLite by default (a file, created with its schema on first start).
//!
//! Migrations are embedded SQL files applied in order inside one transaction each,
//! recorded in `schema_migrations`.

use std::str::FromStr as _;
use std::time::Duration;

use sqlx::sqlite::{
    SqliteConnectOptions, SqliteConnection, SqliteJournalMode, SqlitePool, SqlitePoolOptions,
};
use sqlx::{ConnectOptions as _, Connection as _, Row as _, Sqlite, Transaction};

/// The embedded migrations, in order.
const MIGRATIONS: &[(i64, &str, &str)] = &[
    (
        1,
        "users_sessions",
        include_str!("../migrations/0001_users_sessions.sql"),
    ),
    (
        2,
        "refresh_retry",
        include_str!("../migrations/0002_refresh_retry.sql"),
    ),
];

/// A database error, with what was being done.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum DbError {
    /// The database URL is not one this build supports.
    #[error(
        "unsupported database URL {0:?} (expected sqlite://PATH; an in-memory database would lose every session at exit)"
    )]
    UnsupportedUrl(String),
    /// No user has this name.
    #[error("no user named {0:?}")]
    NoSuchUser(String),
    /// A user with this name exists already.
    #[error("a user named {0:?} exists already")]
    UserExists(String),
    /// The database failed.
    #[error("{action}: {source}")]
    Sqlx {
        /// What was being done.
        action: &'static str,
        /// The driver's error.
        source: sqlx::Error,
    },
}

fn sql(action: &'static str) -> impl FnOnce(sqlx::Error) -> DbError {
    move |source| DbError::Sqlx { action, source }
}

/// A user as operators and tokens see it (no password hash).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct User {
    /// Stable id: the `sub` claim. Never the username, which may change.
    pub id: String,
    /// The login name.
    pub username: String,
    /// Role names, e.g. `admin`.
    pub roles: Vec<String>,
    /// Disabled users cannot log in or refresh.
    pub disabled: bool,
    /// When the user was added (Unix seconds).
    pub created_at: i64,
}

/// A user with the password hash, for login only.
#[derive(Clone)]
pub struct Credentials {
    /// The user.
    pub user: User,
    /// The Argon2id PHC string.
    pub password_hash: String,
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Credentials")
            .field("user", &self.user)
            .finish_non_exhaustive()
    }
}

/// A connection pool to the issuer's database.
#[derive(Debug, Clone)]
pub struct Db {
    pool: SqlitePool,
    /// The one connection this process writes through (SQLite has one writer
    /// at a time anyway). Holding it serialises this process's writes before
    /// they reach SQLite, whose own busy handler sleeps for milliseconds at a
    /// time; and, unlike a pool checkout, it costs no ping on release. Reads
    /// go through the pool, in parallel.
    writer: std::sync::Arc<tokio::sync::Mutex<SqliteConnection>>,
    /// Where the refresh path's locked work runs: see [`WriterThread`].
    writer_thread: std::sync::Arc<WriterThread>,
}

/// A thread of its own on which write transactions hold the writer lock.
///
/// A task holding the lock releases it only when it is polled again after its
/// statement returns. On a request worker that poll can wait behind whatever
/// the worker runs meanwhile (an RSA signature takes up to a millisecond), and
/// every other writer waits with it: that coupling held refreshes at two
/// thirds of the signing rate. This thread runs nothing but database futures,
/// so the lock is released as soon as the database answers.
#[derive(Debug)]
struct WriterThread {
    handle: tokio::runtime::Handle,
    /// Dropped with the last `Db` clone: the thread then ends.
    _stop: tokio::sync::oneshot::Sender<()>,
}

impl WriterThread {
    fn start() -> Result<Self, DbError> {
        let failed = |e| DbError::Sqlx {
            action: "starting the database writer thread",
            source: sqlx::Error::Io(e),
        };
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(failed)?;
        let handle = runtime.handle().clone();
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        std::thread::Builder::new()
            .name("tessera-db-writer".into())
            .spawn(move || {
                // Ends when every `Db` clone is gone (the sender is dropped).
                let _ = runtime.block_on(stopped);
            })
            .map_err(failed)?;
        Ok(Self {
            handle,
            _stop: stop,
        })
    }

    /// Runs `work` on the writer thread and waits for its result.
    async fn run<T: Send + 'static>(
        &self,
        work: impl Future<Output = Result<T, DbError>> + Send + 'static,
    ) -> Result<T, DbError> {
        self.handle.spawn(work).await.map_err(|e| DbError::Sqlx {
            action: "running a write transaction",
            source: sqlx::Error::Protocol(e.to_string()),
        })?
    }
}

impl Db {
    /// Opens (creating if needed) the database and applies pending migrations.
    pub async fn connect(url: &str) -> Result<Self, DbError> {
        if !url.starts_with("sqlite:") || url.contains(":memory:") || url.contains("mode=memory") {
            return Err(DbError::UnsupportedUrl(url.to_owned()));
        }
        let options = SqliteConnectOptions::from_str(url)
            .map_err(sql("parsing the database URL"))?
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            // WAL + NORMAL: never corrupt, durable across process crashes
            // (SIGKILL); a power cut may lose the last commits. FULL fsyncs every
            // commit, which capped refreshes at a third of the signing rate.
            .synchronous(sqlx::sqlite::SqliteSynchronous::Normal)
            .foreign_keys(true)
            .busy_timeout(Duration::from_secs(5));
        let pool = SqlitePoolOptions::new()
            .max_connections(8)
            // A local file does not go stale: no ping round trip per checkout.
            .test_before_acquire(false)
            .connect_with(options.clone())
            .await
            .map_err(sql("opening the database"))?;
        let writer = options
            .connect()
            .await
            .map_err(sql("opening the database"))?;
        let db = Self {
            pool,
            writer: std::sync::Arc::new(tokio::sync::Mutex::new(writer)),
            writer_thread: std::sync::Arc::new(WriterThread::start()?),
        };
        db.migrate().await?;
        Ok(db)
    }

    async fn migrate(&self) -> Result<(), DbError> {
        sqlx::query(
            "CREATE TABLE IF NOT EXISTS schema_migrations (
                 version INTEGER PRIMARY KEY, name TEXT NOT NULL, applied_at INTEGER NOT NULL)",
        )
        .execute(&self.pool)
        .await
        .map_err(sql("creating schema_migrations"))?;
        for (version, name, script) in MIGRATIONS {
            let mut tx = self.begin().await?;
            let applied: Option<i64> =
                sqlx::query_scalar("SELECT version FROM schema_migrations WHERE version = ?")
                    .bind(version)
                    .fetch_optional(&mut *tx)
                    .await
                    .map_err(sql("reading schema_migrations"))?;
            if applied.is_some() {
                continue;
            }
            sqlx::raw_sql(script)
                .execute(&mut *tx)
                .await
                .map_err(sql("applying a migration"))?;
            sqlx::query(
                "INSERT INTO schema_migrations (version, name, applied_at)
                 VALUES (?, ?, CAST(strftime('%s', 'now') AS INTEGER))",
            )
            .bind(version)
            .bind(name)
            .execute(&mut *tx)
            .await
            .map_err(sql("recording a migration"))?;
            tx.commit().await.map_err(sql("committing a migration"))?;
        }
        Ok(())
    }

    async fn begin(&self) -> Result<Transaction<'static, Sqlite>, DbError> {
        self.pool
            .begin()
            .await
            .map_err(sql("starting a transaction"))
    }

    /// Checks the database answers (for `/readyz`).
    pub async fn ping(&self) -> Result<(), DbError> {
        sqlx::query("SELECT 1")
            .execute(&self.pool)
            .await
            .map(|_| ())
            .map_err(sql("pinging the database"))
    }

    /// How many users exist.
    pub async fn count_users(&self) -> Result<i64, DbError> {
        sqlx::query_scalar("SELECT COUNT(*) FROM users")
            .fetch_one(&self.pool)
            .await
            .map_err(sql("counting users"))
    }

    /// Adds a user with an already computed password hash.
    pub async fn add_user(
        &self,
        id: &str,
        username: &str,
        password_hash: &str,
        roles: &[String],
        now: i64,
    ) -> Result<User, DbError> {
        let roles_json = serde_json::to_string(roles).unwrap_or_else(|_| "[]".to_owned());
        let result = sqlx::query(
            "INSERT INTO users (id, username, password_hash, roles, disabled, created_at, updated_at)
             VALUES (?, ?, ?, ?, 0, ?, ?)",
        )
        .bind(id)
        .bind(username)
        .bind(password_hash)
        .bind(&roles_json)
        .bind(now)
        .bind(now)
        .execute(&self.pool)
        .await;
        match result {
            Ok(_) => Ok(User {
                id: id.to_owned(),
                username: username.to_owned(),
                roles: roles.to_vec(),
                disabled: false,
                created_at: now,
            }),
            Err(sqlx::Error::Database(e)) if e.is_unique_violation() => {
                Err(DbError::UserExists(username.to_owned()))
            }
            Err(e) => Err(sql("adding a user")(e)),
        }
    }

    /// Every user, by name.
    pub async fn list_users(&self) -> Result<Vec<User>, DbError> {
        let rows = sqlx::query(
            "SELECT id, username, roles, disabled, created_at FROM users ORDER BY username",
        )
        .fetch_all(&self.pool)
        .await
        .map_err(sql("listing users"))?;
        rows.iter()
            .map(user_from_row)
            .collect::<Result<_, _>>()
            .map_err(sql("reading users"))
    }

    /// The user and password hash for a login name, if it exists.
    pub async fn credentials(&self, username: &str) -> Result<Option<Credentials>, DbError> {
        let row = sqlx::query(
            "SELECT id, username, roles, disabled, created_at, password_hash
             FROM users WHERE username = ?",
        )
        .bind(username)
        .fetch_optional(&self.pool)
        .await
        .map_err(sql("reading a user"))?;
        row.map(|row| {
            Ok(Credentials {
                user: user_from_row(&row)?,
                password_hash: row.try_get("password_hash")?,
            })
        })
        .transpose()
        .map_err(sql("reading a user"))
    }

    /// Replaces a user's roles.
    pub async fn set_roles(
        &self,
        username: &str,
        roles: &[String],
        now: i64,
    ) -> Result<(), DbError> {
        let roles_json = serde_json::to_string(roles).unwrap_or_else(|_| "[]".to_owned());
        self.update(
            username,
            sqlx::query("UPDATE users SET roles = ?, updated_at = ? WHERE username = ?")
                .bind(roles_json)
                .bind(now)
                .bind(username),
        )
        .await
    }

    /// Replaces a user's password hash (password reset, or a rehash on login).
    pub async fn set_password_hash(
        &self,
        username: &str,
        hash: &str,
        now: i64,
    ) -> Result<(), DbError> {
        self.update(
            username,
            sqlx::query("UPDATE users SET password_hash = ?, updated_at = ? WHERE username = ?")
                .bind(hash)
                .bind(now)
                .bind(username),
        )
        .await
    }

    /// Disables or re-enables a user.
    pub async fn set_disabled(
        &self,
        username: &str,
        disabled: bool,
        now: i64,
    ) -> Result<(), DbError> {
        self.update(
            username,
            sqlx::query("UPDATE users SET disabled = ?, updated_at = ? WHERE username = ?")
                .bind(disabled)
                .bind(now)
                .bind(username),
        )
        .await
    }

    /// Deletes a user (and, by cascade, their sessions and refresh tokens).
    pub async fn delete_user(&self, username: &str) -> Result<(), DbError> {
        self.update(
            username,
            sqlx::query("DELETE FROM users WHERE username = ?").bind(username),
        )
        .await
    }

    async fn update<'q>(
        &self,
        username: &str,
        query: sqlx::query::Query<'q, Sqlite, sqlx::sqlite::SqliteArguments<'q>>,
    ) -> Result<(), DbError> {
        let done = query
            .execute(&self.pool)
            .await
            .map_err(sql("updating a user"))?;
        if done.rows_affected() == 0 {
            return Err(DbError::NoSuchUser(username.to_owned()));
        }
        Ok(())
    }
}

impl Db {
    /// Starts a session (a refresh-token family) with its first refresh token,
    /// in one transaction. Only the token's hash is stored.
    pub async fn start_session(
        &self,
        session: &NewSession<'_>,
        refresh_hash: &[u8],
        now: i64,
    ) -> Result<(), DbError> {
        let session_id = session.id;
        let mut writer = self.writer.lock().await;
        let mut tx = writer
            .begin()
            .await
            .map_err(sql("starting a transaction"))?;
        sqlx::query(
            "INSERT INTO sessions (id, user_id, client_id, scope, created_at, last_used_at)
             VALUES (?, ?, ?, ?, ?, ?)",
        )
        .bind(session.id)
        .bind(session.user_id)
        .bind(session.client_id)
        .bind(session.scope)
        .bind(now)
        .bind(now)
        .execute(&mut *tx)
        .await
        .map_err(sql("starting a session"))?;
        sqlx::query("INSERT INTO refresh_tokens (hash, session_id, issued_at) VALUES (?, ?, ?)")
            .bind(refresh_hash)
            .bind(session_id)
            .bind(now)
            .execute(&mut *tx)
            .await
            .map_err(sql("storing a refresh token"))?;
        tx.commit().await.map_err(sql("committing a session"))
    }

    /// How many sessions and refresh tokens exist (for tests and operators).
    pub async fn count_sessions(&self) -> Result<(i64, i64), DbError> {
        let sessions = sqlx::query_scalar("SELECT COUNT(*) FROM sessions")
            .fetch_one(&self.pool)
            .await
            .map_err(sql("counting sessions"))?;
        let tokens = sqlx::query_scalar("SELECT COUNT(*) FROM refresh_tokens")
            .fetch_one(&self.pool)
            .await
            .map_err(sql("counting refresh tokens"))?;
        Ok((sessions, tokens))
    }

    /// The session a refresh token hash belongs to, if it is stored.
    pub async fn refresh_token_session(&self, hash: &[u8]) -> Result<Option<String>, DbError> {
        sqlx::query_scalar("SELECT session_id FROM refresh_tokens WHERE hash = ?")
            .bind(hash)
            .fetch_optional(&self.pool)
            .await
            .map_err(sql("reading a refresh token"))
    }
}

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

impl Db {
    /// Rotates a refresh token. Exactly one of any number of concurrent uses
    /// wins: the old token is marked used by a conditional update inside a
    /// `BEGIN IMMEDIATE` transaction, and only the use that flips it commits a
    /// successor. The others see it used and get the replay (within the retry
    /// window) or revoke the family (reuse).
    ///
    /// The new pair is built and signed *before* the write transaction, so the
    /// database's write lock is never held during RSA signing; a use that loses
    /// the race discards its pair unsent.
    ///
    /// `issue` builds the new pair for the session's user; `seal` and `open`
    /// protect the stored response for a replay.
    pub async fn refresh(
        &self,
        old_hash: &[u8; 32],
        rules: RefreshRules,
        issue: impl FnOnce(&User, &SessionInfo) -> Result<Issued, String>,
        seal: impl FnOnce(&[u8]) -> Option<Vec<u8>>,
        open: impl FnOnce(&[u8]) -> Option<Vec<u8>>,
    ) -> Result<Refresh, DbError> {
        let found = {
            let mut conn = self
                .pool
                .acquire()
                .await
                .map_err(sql("reading a refresh token"))?;
            Db::find_refresh(&mut conn, old_hash).await?
        };
        let Some(found) = found else {
            return Ok(Refresh::Refused("unknown_token"));
        };
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
        let sealed = seal(&issued.response);

        let rotated = {
            let db = self.clone();
            let (old_hash, new_hash) = (*old_hash, issued.new_hash);
            let session_id = found.session.id.clone();
            self.writer_thread
                .run(async move {
                    let mut writer = db.writer.lock().await;
                    Db::rotate(
                        &mut writer,
                        &old_hash,
                        &new_hash,
                        &session_id,
                        sealed,
                        rules.now,
                    )
                    .await
                })
                .await?
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

    /// The write half of a rotation, as one transaction in one round trip to
    /// the SQLite worker: mark the old token used (only if it is unused and its
    /// session live), touch the session, store the successor. Each statement
    /// runs only if the one before changed exactly one row, so the transaction
    /// either does all three or nothing. Returns whether it rotated.
    ///
    /// One round trip matters: the caller holds the writer lock across it, and
    /// every hand-off to sqlx's worker thread and back is a pair of context
    /// switches (eight per refresh before, capping refreshes at a third of the
    /// signing rate).
    async fn rotate(
        conn: &mut SqliteConnection,
        old_hash: &[u8; 32],
        new_hash: &[u8; 32],
        session_id: &str,
        sealed: Option<Vec<u8>>,
        now: i64,
    ) -> Result<bool, DbError> {
        let result = sqlx::query(
            "BEGIN IMMEDIATE;
             UPDATE refresh_tokens SET used_at = ?1, retry_sealed = ?2
              WHERE hash = ?3 AND used_at IS NULL
                AND EXISTS (SELECT 1 FROM sessions WHERE id = ?4 AND revoked_at IS NULL);
             UPDATE sessions SET last_used_at = ?1 WHERE id = ?4 AND changes() = 1;
             INSERT INTO refresh_tokens (hash, session_id, issued_at)
              SELECT ?5, ?4, ?1 WHERE changes() = 1
              RETURNING 1;
             COMMIT;",
        )
        .bind(now)
        .bind(sealed)
        .bind(&old_hash[..])
        .bind(session_id)
        .bind(&new_hash[..])
        .fetch_all(&mut *conn)
        .await;
        match result {
            Ok(rows) => Ok(rows.len() == 1),
            Err(err) => {
                // A statement failed after BEGIN: nothing may stay half done on
                // the writer connection. The rollback fails harmlessly when
                // SQLite has rolled back already, or BEGIN itself failed.
                let _ = sqlx::query("ROLLBACK").execute(&mut *conn).await;
                Err(sql("rotating a refresh token")(err))
            }
        }
    }

    async fn find_refresh(
        conn: &mut SqliteConnection,
        hash: &[u8; 32],
    ) -> Result<Option<FoundRefresh>, DbError> {
        let row = sqlx::query(
            "SELECT rt.session_id, rt.used_at,
                    s.created_at AS session_created_at, s.last_used_at, s.revoked_at,
                    s.client_id, s.scope,
                    u.id, u.username, u.roles, u.disabled, u.created_at
             FROM refresh_tokens rt
             JOIN sessions s ON s.id = rt.session_id
             JOIN users u ON u.id = s.user_id
             WHERE rt.hash = ?",
        )
        .bind(&hash[..])
        .fetch_optional(&mut *conn)
        .await
        .map_err(sql("reading a refresh token"))?;
        let Some(row) = row else {
            return Ok(None);
        };
        let read = |e| sql("reading a refresh token")(e);
        Ok(Some(FoundRefresh {
            used: row
                .try_get::<Option<i64>, _>("used_at")
                .map_err(read)?
                .is_some(),
            revoked: row
                .try_get::<Option<i64>, _>("revoked_at")
                .map_err(read)?
                .is_some(),
            created_at: row.try_get("session_created_at").map_err(read)?,
            last_used_at: row.try_get("last_used_at").map_err(read)?,
            session: SessionInfo {
                id: row.try_get("session_id").map_err(read)?,
                client_id: row.try_get("client_id").map_err(read)?,
                scope: row.try_get("scope").map_err(read)?,
            },
            user: user_from_row(&row).map_err(read)?,
        }))
    }

    /// A token that is already used: the same response again within the retry
    /// window, otherwise reuse, and the family is revoked.
    async fn used_refresh(
        &self,
        hash: &[u8; 32],
        rules: RefreshRules,
        open: impl FnOnce(&[u8]) -> Option<Vec<u8>>,
    ) -> Result<Refresh, DbError> {
        let mut writer = self.writer.lock().await;
        let mut tx = writer
            .begin_with("BEGIN IMMEDIATE")
            .await
            .map_err(sql("starting a refresh transaction"))?;
        let row = sqlx::query(
            "SELECT rt.session_id, rt.used_at, rt.retry_sealed, s.revoked_at, s.user_id
             FROM refresh_tokens rt JOIN sessions s ON s.id = rt.session_id
             WHERE rt.hash = ?",
        )
        .bind(&hash[..])
        .fetch_optional(&mut *tx)
        .await
        .map_err(sql("reading a refresh token"))?;
        let Some(row) = row else {
            return Ok(Refresh::Refused("unknown_token"));
        };
        let read = |e| sql("reading a refresh token")(e);
        let session_id: String = row.try_get("session_id").map_err(read)?;
        let user_id: String = row.try_get("user_id").map_err(read)?;
        let used_at: Option<i64> = row.try_get("used_at").map_err(read)?;
        let sealed: Option<Vec<u8>> = row.try_get("retry_sealed").map_err(read)?;
        if row
            .try_get::<Option<i64>, _>("revoked_at")
            .map_err(read)?
            .is_some()
        {
            return Ok(Refresh::Refused("session_revoked"));
        }
        if let Some(used_at) = used_at
            && rules.now - used_at <= rules.retry_window
            && let Some(response) = sealed.as_deref().and_then(open)
        {
            return Ok(Refresh::Replayed {
                session_id,
                response,
            });
        }
        sqlx::query(
            "UPDATE sessions SET revoked_at = ?, revoked_why = 'refresh_token_reuse'
             WHERE id = ? AND revoked_at IS NULL",
        )
        .bind(rules.now)
        .bind(&session_id)
        .execute(&mut *tx)
        .await
        .map_err(sql("revoking a session"))?;
        tx.commit().await.map_err(sql("committing a revocation"))?;
        Ok(Refresh::Reused {
            session_id,
            user_id,
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
        sqlx::query(
            "UPDATE sessions SET revoked_at = ?, revoked_why = ? WHERE id = ? AND revoked_at IS NULL",
        )
        .bind(now)
        .bind(why)
        .bind(session_id)
        .execute(&mut *self.writer.lock().await)
        .await
        .map_err(sql("revoking a session"))?;
        Ok(())
    }

    /// Whether a session exists and is not revoked.
    pub async fn session_active(&self, session_id: &str) -> Result<bool, DbError> {
        let revoked: Option<Option<i64>> =
            sqlx::query_scalar("SELECT revoked_at FROM sessions WHERE id = ?")
                .bind(session_id)
                .fetch_optional(&self.pool)
                .await
                .map_err(sql("reading a session"))?;
        Ok(matches!(revoked, Some(None)))
    }
}

fn user_from_row(row: &sqlx::sqlite::SqliteRow) -> Result<User, sqlx::Error> {
    let roles: String = row.try_get("roles")?;
    Ok(User {
        id: row.try_get("id")?,
        username: row.try_get("username")?,
        // Unreadable roles grant nothing: the safe direction.
        roles: serde_json::from_str(&roles).unwrap_or_default(),
        disabled: row.try_get("disabled")?,
        created_at: row.try_get("created_at")?,
    })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    /// A database with one user and one session whose refresh token is `old`.
    async fn with_session() -> (Db, [u8; 32], tempfile::TempDir) {
        let dir = tempfile::tempdir().unwrap();
        let url = format!("sqlite://{}", dir.path().join("t.db").display());
        let db = Db::connect(&url).await.unwrap();
        db.add_user("u1", "alice", "$argon2id$x", &[], 100)
            .await
            .unwrap();
        let old = [1u8; 32];
        let session = NewSession {
            id: "s1",
            user_id: "u1",
            client_id: "tessera",
            scope: "profile",
        };
        db.start_session(&session, &old, 100).await.unwrap();
        (db, old, dir)
    }

    async fn rotate(
        db: &Db,
        old: &[u8; 32],
        new: &[u8; 32],
        session: &str,
        sealed: Option<Vec<u8>>,
        now: i64,
    ) -> Result<bool, DbError> {
        Db::rotate(&mut *db.writer.lock().await, old, new, session, sealed, now).await
    }

    async fn used_at(db: &Db, hash: &[u8; 32]) -> Option<i64> {
        sqlx::query_scalar("SELECT used_at FROM refresh_tokens WHERE hash = ?")
            .bind(&hash[..])
            .fetch_one(&db.pool)
            .await
            .unwrap()
    }

    #[tokio::test]
    async fn in_memory_and_foreign_urls_are_refused() {
        for url in [
            "sqlite::memory:",
            "sqlite://file:x?mode=memory",
            "mysql://db/x",
        ] {
            assert!(
                matches!(Db::connect(url).await, Err(DbError::UnsupportedUrl(_))),
                "{url}"
            );
        }
    }

    #[tokio::test]
    async fn a_token_rotates_once_and_only_once() {
        let (db, old, _dir) = with_session().await;
        assert!(rotate(&db, &old, &[2; 32], "s1", None, 200).await.unwrap());
        assert_eq!(used_at(&db, &old).await, Some(200));
        assert_eq!(
            db.refresh_token_session(&[2; 32]).await.unwrap().as_deref(),
            Some("s1")
        );
        // The same token again: nothing changes, no second successor.
        assert!(!rotate(&db, &old, &[3; 32], "s1", None, 201).await.unwrap());
        assert_eq!(used_at(&db, &old).await, Some(200));
        assert_eq!(db.refresh_token_session(&[3; 32]).await.unwrap(), None);
        assert_eq!(db.count_sessions().await.unwrap(), (1, 2));
    }

    #[tokio::test]
    async fn a_session_revoked_before_the_write_rotates_nothing() {
        let (db, old, _dir) = with_session().await;
        db.revoke_session("s1", 150, "logout").await.unwrap();
        assert!(!rotate(&db, &old, &[2; 32], "s1", None, 200).await.unwrap());
        // The old token is not marked used and no successor exists.
        assert_eq!(used_at(&db, &old).await, None);
        assert_eq!(db.count_sessions().await.unwrap(), (1, 1));
    }

    #[tokio::test]
    async fn a_failing_rotation_leaves_nothing_half_done() {
        let (db, old, _dir) = with_session().await;
        // The successor's hash collides with an existing token: the INSERT
        // fails after the old token was marked used, inside the transaction.
        let err = rotate(&db, &old, &old, "s1", None, 200).await;
        assert!(err.is_err());
        assert_eq!(used_at(&db, &old).await, None, "the mark was rolled back");
        // The connection went back to the pool usable, outside any transaction.
        assert!(rotate(&db, &old, &[2; 32], "s1", None, 201).await.unwrap());
        assert_eq!(used_at(&db, &old).await, Some(201));
    }
}
