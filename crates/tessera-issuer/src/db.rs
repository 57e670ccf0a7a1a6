//! The issuer's database: users, sessions (refresh-token families) and refresh
//! tokens. SQLite by default (a file, created with its schema on first start);
//! PostgreSQL when the URL says `postgres://`, for several issuer instances
//! sharing one database.
//!
//! One data-access layer for both: every query is written once, with `$N`
//! placeholders (which sqlx's SQLite driver reads as numbered parameters), and
//! the [`on_pool!`] / [`in_transaction!`] macros expand it once per backend.
//! What differs lives in [`sqlite`] and [`postgres`]: connecting, migrations
//! (each backend has its own embedded SQL, since types differ), and the two
//! writes where concurrency control is engine-specific: the refresh rotation
//! and the reuse check.

/// Applies one embedded migration inside the transaction `$tx` unless
/// `schema_migrations` already records it. The same steps on both backends;
/// how transactions and locks wrap them is each backend's own.
macro_rules! apply_migration {
    ($tx:ident, $version:expr, $name:expr, $script:expr) => {{
        let applied: Option<i64> =
            sqlx::query_scalar("SELECT version FROM schema_migrations WHERE version = $1")
                .bind($version)
                .fetch_optional(&mut *$tx)
                .await
                .map_err(sql("reading schema_migrations"))?;
        if applied.is_none() {
            // Not `raw_sql(..).execute(..)`, whose future is not `Send` (its
            // executor bound is not general enough), which would make every
            // caller's future un-spawnable.
            sqlx::Executor::execute(&mut *$tx, sqlx::raw_sql($script))
                .await
                .map_err(sql("applying a migration"))?;
            sqlx::query(
                "INSERT INTO schema_migrations (version, name, applied_at) VALUES ($1, $2, $3)",
            )
            .bind($version)
            .bind($name)
            .bind($crate::unix_now(&tessera_keyring::SystemClock))
            .execute(&mut *$tx)
            .await
            .map_err(sql("recording a migration"))?;
        }
    }};
}

/// Runs `$body` in a write transaction `$tx` that excludes every other
/// holder of the same lock, committing if `$body` returns: on SQLite,
/// `BEGIN IMMEDIATE` on the writer connection (SQLite's one write lock, which
/// holds across processes); on PostgreSQL, the transaction-scoped advisory
/// lock `$lock`. `$err(action)` maps sqlx errors to the caller's error type.
macro_rules! in_locked_transaction {
    ($db:expr, $lock:expr, $err:path, $action:literal, |$tx:ident| $body:expr) => {
        match &$db.backend {
            Backend::Sqlite(backend) => {
                use sqlx::Connection as _;
                let mut writer = backend.writer.lock().await;
                let mut $tx = writer
                    .begin_with("BEGIN IMMEDIATE")
                    .await
                    .map_err($err($action))?;
                let value = $body;
                $tx.commit().await.map_err($err($action))?;
                value
            }
            Backend::Postgres(backend) => {
                let mut $tx = backend.pool.begin().await.map_err($err($action))?;
                sqlx::query("SELECT pg_advisory_xact_lock($1)")
                    .bind($lock)
                    .execute(&mut *$tx)
                    .await
                    .map_err($err($action))?;
                let value = $body;
                $tx.commit().await.map_err($err($action))?;
                value
            }
        }
    };
}

mod postgres;
pub mod scratch;
mod sqlite;

use std::time::Duration;

/// A database error, with what was being done.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum DbError {
    /// The database URL is not one this build supports.
    #[error(
        "unsupported database URL {0:?} (expected sqlite://PATH or postgres://...; an in-memory database would lose every session at exit)"
    )]
    UnsupportedUrl(String),
    /// No user has this name.
    #[error("no user named {0:?}")]
    NoSuchUser(String),
    /// A user with this name exists already.
    #[error("a user named {0:?} exists already")]
    UserExists(String),
    /// No client has this id.
    #[error("no client with id {0:?}")]
    NoSuchClient(String),
    /// A client with this id exists already.
    #[error("a client with id {0:?} exists already")]
    ClientExists(String),
    /// The schema has not been migrated yet (the database was unreachable
    /// when the service started).
    #[error("the database schema is not migrated yet")]
    NotMigrated,
    /// The database failed.
    #[error("{action}: {source}")]
    Sqlx {
        /// What was being done.
        action: &'static str,
        /// The driver's error.
        source: sqlx::Error,
    },
}

impl DbError {
    /// Whether the database could not be reached (down, restarting, pool
    /// exhausted) rather than refusing what was asked: worth a 503 and a retry.
    pub fn is_unavailable(&self) -> bool {
        match self {
            Self::Sqlx { source, .. } => {
                matches!(
                    source,
                    sqlx::Error::Io(_)
                        | sqlx::Error::Tls(_)
                        | sqlx::Error::PoolTimedOut
                        | sqlx::Error::PoolClosed
                        | sqlx::Error::WorkerCrashed
                ) || matches!(source, sqlx::Error::Database(e)
                // PostgreSQL shutting down or restarting: admin_shutdown,
                // crash_shutdown, cannot_connect_now.
                if matches!(e.code().as_deref(), Some("57P01" | "57P02" | "57P03")))
            }
            Self::NotMigrated => true,
            _ => false,
        }
    }
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

/// Connection settings that matter only for a server database.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PoolSettings {
    /// The most connections this process opens to PostgreSQL. Default 10.
    pub max_connections: u32,
    /// How long a request waits for a connection before it is answered 503
    /// (the database is down, or every connection is busy). Default 3 s.
    pub acquire_timeout: Duration,
}

impl Default for PoolSettings {
    fn default() -> Self {
        Self {
            max_connections: 10,
            acquire_timeout: Duration::from_secs(3),
        }
    }
}

/// A connection pool to the issuer's database.
#[derive(Debug, Clone)]
pub struct Db {
    backend: Backend,
    /// Set once this process has seen the schema migrated: until then the
    /// service is not ready (its database may have been down at start).
    migrated: std::sync::Arc<std::sync::atomic::AtomicBool>,
}

#[derive(Debug, Clone)]
enum Backend {
    Sqlite(sqlite::Sqlite),
    Postgres(postgres::Postgres),
}

/// Runs `$body` with `$pool` bound to the backend's connection pool (a
/// different type in each arm, so the body is type-checked once per backend).
macro_rules! on_pool {
    ($db:expr, |$pool:ident| $body:expr) => {
        match &$db.backend {
            Backend::Sqlite(backend) => {
                let $pool = &backend.pool;
                $body
            }
            Backend::Postgres(backend) => {
                let $pool = &backend.pool;
                $body
            }
        }
    };
}

/// Runs `$body` inside a write transaction `$tx` (on SQLite, through the one
/// writer connection), committing if it returns `Ok`.
macro_rules! in_transaction {
    ($db:expr, $action:literal, |$tx:ident| $body:expr) => {
        match &$db.backend {
            Backend::Sqlite(backend) => {
                use sqlx::Connection as _;
                let mut writer = backend.writer.lock().await;
                let mut $tx = writer.begin().await.map_err(sql($action))?;
                let value = $body;
                $tx.commit().await.map_err(sql($action))?;
                value
            }
            Backend::Postgres(backend) => {
                let mut $tx = backend.pool.begin().await.map_err(sql($action))?;
                let value = $body;
                $tx.commit().await.map_err(sql($action))?;
                value
            }
        }
    };
}

/// Runs `$body` with `$conn` bound to a connection that writes (on SQLite, the
/// writer connection; on PostgreSQL, the pool).
macro_rules! on_writer {
    ($db:expr, |$conn:ident| $body:expr) => {
        match &$db.backend {
            Backend::Sqlite(backend) => {
                let mut writer = backend.writer.lock().await;
                let $conn = &mut *writer;
                $body
            }
            Backend::Postgres(backend) => {
                let $conn = &backend.pool;
                $body
            }
        }
    };
}

mod clients;
mod housekeeping;
pub mod keyring;
mod revocations;

pub use revocations::{Revoked, RevokedAt};

impl Db {
    /// Opens the database and applies pending migrations (creating a SQLite
    /// file if needed). For operator commands and tests; the service uses
    /// [`Db::open`] and [`Db::migrate`] so that it can start while PostgreSQL
    /// is down.
    pub async fn connect(url: &str) -> Result<Self, DbError> {
        let db = Self::open(url, PoolSettings::default()).await?;
        db.migrate().await?;
        Ok(db)
    }

    /// Opens the database without migrating. SQLite: opens (creating) the
    /// file. PostgreSQL: a pool that connects on first use, so this succeeds
    /// while the server is unreachable.
    pub async fn open(url: &str, settings: PoolSettings) -> Result<Self, DbError> {
        let backend = if postgres::handles(url) {
            Backend::Postgres(postgres::Postgres::open(url, settings)?)
        } else if sqlite::handles(url) {
            Backend::Sqlite(sqlite::Sqlite::open(url).await?)
        } else {
            return Err(DbError::UnsupportedUrl(url.to_owned()));
        };
        Ok(Self {
            backend,
            migrated: std::sync::Arc::default(),
        })
    }

    /// Applies the embedded migrations this database has not seen. Safe to run
    /// from several instances at once.
    pub async fn migrate(&self) -> Result<(), DbError> {
        match &self.backend {
            Backend::Sqlite(backend) => backend.migrate().await?,
            Backend::Postgres(backend) => backend.migrate().await?,
        }
        self.migrated
            .store(true, std::sync::atomic::Ordering::Release);
        Ok(())
    }

    /// Ready to serve: migrated, and answering now (for `/readyz`).
    pub async fn ready(&self) -> Result<(), DbError> {
        if !self.migrated.load(std::sync::atomic::Ordering::Acquire) {
            return Err(DbError::NotMigrated);
        }
        self.ping().await
    }

    /// `sqlite` or `postgres`.
    pub fn backend_name(&self) -> &'static str {
        match &self.backend {
            Backend::Sqlite(_) => "sqlite",
            Backend::Postgres(_) => "postgres",
        }
    }

    /// Checks the database answers (for `/readyz`).
    pub async fn ping(&self) -> Result<(), DbError> {
        on_pool!(self, |pool| sqlx::query("SELECT 1")
            .execute(pool)
            .await
            .map(|_| ())
            .map_err(sql("pinging the database")))
    }

    /// How many users exist.
    pub async fn count_users(&self) -> Result<i64, DbError> {
        on_pool!(self, |pool| sqlx::query_scalar(
            "SELECT COUNT(*) FROM users"
        )
        .fetch_one(pool)
        .await
        .map_err(sql("counting users")))
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
        let result = on_pool!(self, |pool| {
            sqlx::query(
            "INSERT INTO users (id, username, password_hash, roles, disabled, created_at, updated_at)
             VALUES ($1, $2, $3, $4, $5, $6, $6)",
        )
        .bind(id)
        .bind(username)
        .bind(password_hash)
        .bind(&roles_json)
        .bind(false)
        .bind(now)
        .execute(pool)
        .await
        .map(|_| ())
        });
        match result {
            Ok(()) => Ok(User {
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
        on_pool!(self, |pool| {
            let rows = sqlx::query(
                "SELECT id, username, roles, disabled, created_at FROM users ORDER BY username",
            )
            .fetch_all(pool)
            .await
            .map_err(sql("listing users"))?;
            rows.iter()
                .map(user_from_row)
                .collect::<Result<_, _>>()
                .map_err(sql("reading users"))
        })
    }

    /// The user and password hash for a login name, if it exists.
    pub async fn credentials(&self, username: &str) -> Result<Option<Credentials>, DbError> {
        on_pool!(self, |pool| {
            use sqlx::Row as _;
            let row = sqlx::query(
                "SELECT id, username, roles, disabled, created_at, password_hash
                 FROM users WHERE username = $1",
            )
            .bind(username)
            .fetch_optional(pool)
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
        })
    }

    /// Replaces a user's roles.
    pub async fn set_roles(
        &self,
        username: &str,
        roles: &[String],
        now: i64,
    ) -> Result<(), DbError> {
        let roles_json = serde_json::to_string(roles).unwrap_or_else(|_| "[]".to_owned());
        let changed = on_pool!(self, |pool| sqlx::query(
            "UPDATE users SET roles = $1, updated_at = $2 WHERE username = $3"
        )
        .bind(&roles_json)
        .bind(now)
        .bind(username)
        .execute(pool)
        .await
        .map(|done| done.rows_affected()));
        user_changed(username, changed)
    }

    /// Replaces a user's password hash (password reset, or a rehash on login).
    pub async fn set_password_hash(
        &self,
        username: &str,
        hash: &str,
        now: i64,
    ) -> Result<(), DbError> {
        let changed = on_pool!(self, |pool| sqlx::query(
            "UPDATE users SET password_hash = $1, updated_at = $2 WHERE username = $3"
        )
        .bind(hash)
        .bind(now)
        .bind(username)
        .execute(pool)
        .await
        .map(|done| done.rows_affected()));
        user_changed(username, changed)
    }

    /// Disables or re-enables a user.
    pub async fn set_disabled(
        &self,
        username: &str,
        disabled: bool,
        now: i64,
    ) -> Result<(), DbError> {
        let changed = on_pool!(self, |pool| sqlx::query(
            "UPDATE users SET disabled = $1, updated_at = $2 WHERE username = $3"
        )
        .bind(disabled)
        .bind(now)
        .bind(username)
        .execute(pool)
        .await
        .map(|done| done.rows_affected()));
        user_changed(username, changed)
    }

    /// Deletes a user (and, by cascade, their sessions and refresh tokens).
    pub async fn delete_user(&self, username: &str) -> Result<(), DbError> {
        let changed = on_pool!(self, |pool| sqlx::query(
            "DELETE FROM users WHERE username = $1"
        )
        .bind(username)
        .execute(pool)
        .await
        .map(|done| done.rows_affected()));
        user_changed(username, changed)
    }
}

fn user_changed(username: &str, changed: Result<u64, sqlx::Error>) -> Result<(), DbError> {
    match changed.map_err(sql("updating a user"))? {
        0 => Err(DbError::NoSuchUser(username.to_owned())),
        _ => Ok(()),
    }
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
    /// Reserves a login attempt on `user` and, unless the address is known
    /// for that user, on `ip`: each key's count goes up by one unless the key
    /// is blocked, and a key whose count passes its free failures is blocked
    /// for [`crate::throttle::delay_after`]. One transaction: if any key is
    /// blocked, nothing is counted. The upsert is conditional (`WHERE
    /// blocked_until <= now`), so concurrent reservations, in any process,
    /// are counted one by one against the committed row.
    pub async fn throttle_reserve(
        &self,
        user: (&str, u32),
        ip: Option<(&str, u32)>,
        now: i64,
    ) -> Result<Reserve, DbError> {
        let forget_after = crate::throttle::FORGET_AFTER_SECS;
        let known_since = now.saturating_sub(crate::throttle::KNOWN_FOR_SECS);
        Ok(in_transaction!(self, "reserving a login attempt", |tx| {
            let known = match ip {
                Some((ip_key, _)) => sqlx::query_scalar::<_, i64>(
                    "SELECT last_success FROM login_known
                     WHERE user_key = $1 AND ip_key = $2 AND last_success > $3",
                )
                .bind(user.0)
                .bind(ip_key)
                .bind(known_since)
                .fetch_optional(&mut *tx)
                .await
                .map_err(sql("reading known addresses"))?
                .is_some(),
                None => false,
            };
            let counted = ip.filter(|_| !known);
            let mut blocks = Vec::new();
            let mut outcome = None;
            for (key, free) in std::iter::once(user).chain(counted) {
                let failures: Option<i64> = sqlx::query_scalar(
                    "INSERT INTO login_failures (key, failures, last_failure, blocked_until)
                     VALUES ($1, 1, $2, 0)
                     ON CONFLICT (key) DO UPDATE SET
                         failures = CASE WHEN $2 - login_failures.last_failure >= $3 THEN 1
                                         ELSE login_failures.failures + 1 END,
                         last_failure = $2
                     WHERE login_failures.blocked_until <= $2
                     RETURNING failures",
                )
                .bind(key)
                .bind(now)
                .bind(forget_after)
                .fetch_optional(&mut *tx)
                .await
                .map_err(sql("counting a login attempt"))?;
                let Some(failures) = failures else {
                    let until: i64 = sqlx::query_scalar(
                        "SELECT blocked_until FROM login_failures WHERE key = $1",
                    )
                    .bind(key)
                    .fetch_one(&mut *tx)
                    .await
                    .map_err(sql("reading a login block"))?;
                    outcome = Some(Reserve::Blocked {
                        key: key.to_owned(),
                        until,
                    });
                    break;
                };
                if let Some(delay) = crate::throttle::delay_after(failures, free) {
                    let until = now.saturating_add(delay);
                    sqlx::query("UPDATE login_failures SET blocked_until = $2 WHERE key = $1")
                        .bind(key)
                        .bind(until)
                        .execute(&mut *tx)
                        .await
                        .map_err(sql("blocking a login key"))?;
                    blocks.push((key.to_owned(), until));
                }
            }
            if let Some(blocked) = outcome {
                // Dropping the transaction rolls back what was counted.
                return Ok(blocked);
            }
            Reserve::Granted {
                ip_counted: counted.is_some(),
                blocks,
            }
        }))
    }

    /// A reserved attempt had the right password: clears the username's
    /// count, hands the address's reservation back, and records the address
    /// as known for the user.
    pub async fn throttle_release(
        &self,
        user_key: &str,
        counted_ip_key: Option<&str>,
        seen_ip_key: Option<&str>,
        now: i64,
    ) -> Result<(), DbError> {
        in_transaction!(self, "releasing a login attempt", |tx| {
            sqlx::query("DELETE FROM login_failures WHERE key = $1")
                .bind(user_key)
                .execute(&mut *tx)
                .await
                .map_err(sql("clearing login failures"))?;
            if let Some(ip_key) = counted_ip_key {
                sqlx::query(
                    "UPDATE login_failures
                     SET failures = CASE WHEN failures > 0 THEN failures - 1 ELSE 0 END
                     WHERE key = $1",
                )
                .bind(ip_key)
                .execute(&mut *tx)
                .await
                .map_err(sql("releasing a login attempt"))?;
            }
            if let Some(ip_key) = seen_ip_key {
                sqlx::query(
                    "INSERT INTO login_known (user_key, ip_key, last_success) VALUES ($1, $2, $3)
                     ON CONFLICT (user_key, ip_key) DO UPDATE SET last_success = $3",
                )
                .bind(user_key)
                .bind(ip_key)
                .bind(now)
                .execute(&mut *tx)
                .await
                .map_err(sql("recording a known address"))?;
            }
        });
        Ok(())
    }

    /// Drops keys whose last failure is before `before`, and known
    /// addresses not used since `known_before`.
    pub async fn throttle_forget(&self, before: i64, known_before: i64) -> Result<(), DbError> {
        on_writer!(self, |conn| sqlx::query(
            "DELETE FROM login_failures WHERE last_failure < $1"
        )
        .bind(before)
        .execute(conn)
        .await
        .map(|_| ())
        .map_err(sql("forgetting login failures")))?;
        on_writer!(self, |conn| sqlx::query(
            "DELETE FROM login_known WHERE last_success < $1"
        )
        .bind(known_before)
        .execute(conn)
        .await
        .map(|_| ())
        .map_err(sql("forgetting known addresses")))
    }
}

impl Db {
    /// Stores an audit event (see [`crate::audit`]).
    pub async fn record_audit(
        &self,
        now: i64,
        event: &crate::audit::Event<'_>,
    ) -> Result<(), DbError> {
        let ip = event.client_ip.map(|ip| ip.to_string());
        let detail = event.detail.to_string();
        on_writer!(self, |conn| sqlx::query(
            "INSERT INTO audit_events (at, event, user_id, session_id, client_ip, detail)
             VALUES ($1, $2, $3, $4, $5, $6)"
        )
        .bind(now)
        .bind(event.kind)
        .bind(event.user_id)
        .bind(event.session_id)
        .bind(ip.as_deref())
        .bind(&detail)
        .execute(conn)
        .await
        .map(|_| ())
        .map_err(sql("storing an audit event")))
    }

    /// Audit events at or after `since` (Unix seconds), of one user if given,
    /// oldest first, at most `limit` (the latest ones).
    pub async fn audit_events(
        &self,
        since: i64,
        user_id: Option<&str>,
        limit: i64,
    ) -> Result<Vec<crate::audit::Record>, DbError> {
        type Row = (
            i64,
            i64,
            String,
            Option<String>,
            Option<String>,
            Option<String>,
            String,
        );
        let rows: Vec<Row> = on_pool!(self, |pool| sqlx::query_as(
            "SELECT id, at, event, user_id, session_id, client_ip, detail FROM (
                 SELECT * FROM audit_events
                 WHERE at >= $1 AND ($2 IS NULL OR user_id = $2)
                 ORDER BY id DESC LIMIT $3) latest
             ORDER BY id"
        )
        .bind(since)
        .bind(user_id)
        .bind(limit)
        .fetch_all(pool)
        .await
        .map_err(sql("reading audit events")))?;
        Ok(rows
            .into_iter()
            .map(
                |(id, at, event, user_id, session_id, client_ip, detail)| crate::audit::Record {
                    id,
                    at,
                    event,
                    user_id,
                    session_id,
                    client_ip,
                    detail: serde_json::from_str(&detail).unwrap_or(serde_json::Value::Null),
                },
            )
            .collect())
    }

    /// Deletes audit events before `before`; returns how many.
    pub async fn forget_audit_before(&self, before: i64) -> Result<u64, DbError> {
        on_writer!(self, |conn| sqlx::query(
            "DELETE FROM audit_events WHERE at < $1"
        )
        .bind(before)
        .execute(conn)
        .await
        .map(|done| done.rows_affected())
        .map_err(sql("deleting old audit events")))
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

/// What [`Db::throttle_reserve`] came to.
#[derive(Debug)]
pub enum Reserve {
    /// Counted; these keys were blocked by this attempt (until when).
    Granted {
        /// Whether the address was counted (not known for the user).
        ip_counted: bool,
        /// Keys this attempt blocked, and until when.
        blocks: Vec<(String, i64)>,
    },
    /// `key` is blocked until `until`; nothing was counted.
    Blocked {
        /// The blocked key.
        key: String,
        /// Until when (Unix seconds).
        until: i64,
    },
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

/// The write half of a rotation; see [`Db::refresh`].
struct Rotation {
    old_hash: [u8; 32],
    new_hash: [u8; 32],
    session_id: String,
    sealed: Option<Vec<u8>>,
    now: i64,
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

fn user_from_row<'r, R>(row: &'r R) -> Result<User, sqlx::Error>
where
    R: sqlx::Row,
    &'static str: sqlx::ColumnIndex<R>,
    String: sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
    bool: sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
    i64: sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
{
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
mod tests;
