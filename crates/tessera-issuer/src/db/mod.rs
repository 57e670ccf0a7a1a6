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
mod browser;
mod clients;
mod error;
mod housekeeping;
pub mod keyring;
mod postgres;
mod revocations;
mod rotation;
mod sessions;
mod sqlite;
mod throttle;
mod users;

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
pub use browser::{NewCode, SsoSession, TakenCode};
pub use error::DbError;
use error::sql;
pub use postgres::PoolSettings;
pub use revocations::{Revoked, RevokedAt};
pub use rotation::Rotation;
pub use sessions::{
    FoundRefresh, NewSession, SessionInfo, SessionsOf, Settle, Settled, SsoLink, UsedToken,
};
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

    /// The read pool's connections now: (open, of which idle). SQLite's
    /// writer connection is not counted: it is one, always open.
    pub fn pool_connections(&self) -> (u32, usize) {
        on_pool!(self, |pool| (pool.size(), pool.num_idle()))
    }

    /// How long checking a connection out of the read pool takes now (a
    /// scrape's probe of pool contention; the connection goes straight back).
    pub async fn pool_acquire_time(&self) -> Result<std::time::Duration, DbError> {
        let started = tokio::time::Instant::now();
        on_pool!(self, |pool| pool
            .acquire()
            .await
            .map(drop)
            .map_err(sql("checking out a connection")))?;
        Ok(started.elapsed())
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
