//! The issuer's database: users, sessions (refresh-token families) and refresh
//! tokens, login throttling, audit events, clients, the revocation list and
//! (optionally) the keyring. SQLite by default (a file, created with its
//! schema on first start); PostgreSQL when the URL says `postgres://`, for
//! several issuer instances sharing one database.
//!
//! One data-access layer for both: every query is written once, with `$N`
//! placeholders (which sqlx's SQLite driver reads as numbered parameters), and
//! the macros in [`macros`] expand it once per backend. What differs lives in
//! [`sqlite`] and [`postgres`]: connecting, migrations (each backend has its
//! own embedded SQL, since types differ), and the two writes where
//! concurrency control is engine-specific: the refresh rotation and the reuse
//! check.
//!
//! One file per table group: [`users`], [`sessions`] (sessions and their
//! refresh tokens), [`throttle`], [`audit`], [`clients`], [`revocations`]
//! (and [`housekeeping`], which deletes what has run out), [`keyring`]. The
//! rules (who may refresh, what a revocation covers) are the service's
//! (`crate::service`); this layer offers atomic operations and says plainly
//! what failed.

#[macro_use]
mod macros;

mod audit;
mod clients;
mod housekeeping;
pub mod keyring;
mod postgres;
mod revocations;
pub mod scratch;
mod sessions;
mod sqlite;
mod throttle;
mod users;

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

pub use audit::{AuditRecord, AuditRow};
pub use revocations::{Revoked, RevokedAt};
pub use sessions::{FoundRefresh, NewSession, Rotation, SessionInfo, Settle, Settled, UsedToken};
pub use throttle::{Reserve, ReserveRules};
pub use users::{Credentials, User};

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
}

#[cfg(test)]
pub(crate) mod tests;
