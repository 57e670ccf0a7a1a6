//! The issuer's database: users now; sessions and refresh tokens with the token
//! endpoints. SQLite by default (a file, created with its schema on first start).
//!
//! Migrations are embedded SQL files applied in order inside one transaction each,
//! recorded in `schema_migrations`.

use std::str::FromStr as _;
use std::time::Duration;

use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions};
use sqlx::{Row as _, Sqlite, Transaction};

/// The embedded migrations, in order.
const MIGRATIONS: &[(i64, &str, &str)] = &[(
    1,
    "users_sessions",
    include_str!("../migrations/0001_users_sessions.sql"),
)];

/// A database error, with what was being done.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum DbError {
    /// The database URL is not one this build supports.
    #[error("unsupported database URL {0:?} (expected sqlite://PATH or sqlite::memory:)")]
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
}

impl Db {
    /// Opens (creating if needed) the database and applies pending migrations.
    pub async fn connect(url: &str) -> Result<Self, DbError> {
        if !url.starts_with("sqlite:") {
            return Err(DbError::UnsupportedUrl(url.to_owned()));
        }
        let options = SqliteConnectOptions::from_str(url)
            .map_err(sql("parsing the database URL"))?
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .foreign_keys(true)
            .busy_timeout(Duration::from_secs(5));
        let pool = SqlitePoolOptions::new()
            // An in-memory database exists once per connection: keep exactly one.
            .max_connections(if url.contains(":memory:") { 1 } else { 8 })
            .connect_with(options)
            .await
            .map_err(sql("opening the database"))?;
        let db = Self { pool };
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
        session_id: &str,
        user_id: &str,
        refresh_hash: &[u8],
        now: i64,
    ) -> Result<(), DbError> {
        let mut tx = self.begin().await?;
        sqlx::query(
            "INSERT INTO sessions (id, user_id, created_at, last_used_at) VALUES (?, ?, ?, ?)",
        )
        .bind(session_id)
        .bind(user_id)
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
