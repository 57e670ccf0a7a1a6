//! PostgreSQL: one database shared by several issuer instances. Concurrency
//! control is the database's: row locks and conditional updates inside
//! transactions, never this process's memory.

use std::str::FromStr as _;

use sqlx::postgres::{PgConnectOptions, PgPool, PgPoolOptions};

use std::time::Duration;

use super::error::{DbError, sql};
use super::rotation::Rotation;

/// The embedded migrations, in order. One script holds what SQLite reached in
/// two: this backend started from the schema SQLite had by then.
pub(super) const MIGRATIONS: &[(i64, &str, &str)] = &[
    (
        1,
        "users_sessions",
        include_str!("../../migrations/postgres/0001_users_sessions.sql"),
    ),
    (
        2,
        "keyring",
        include_str!("../../migrations/postgres/0002_keyring.sql"),
    ),
    (
        3,
        "login_failures",
        include_str!("../../migrations/postgres/0003_login_failures.sql"),
    ),
    (
        4,
        "audit_events",
        include_str!("../../migrations/postgres/0004_audit_events.sql"),
    ),
    (
        5,
        "revocations",
        include_str!("../../migrations/postgres/0005_revocations.sql"),
    ),
    (
        6,
        "revocation_feed",
        include_str!("../../migrations/postgres/0006_revocation_feed.sql"),
    ),
    (
        7,
        "clients",
        include_str!("../../migrations/postgres/0007_clients.sql"),
    ),
    (
        8,
        "revocation_facts",
        include_str!("../../migrations/postgres/0008_revocation_facts.sql"),
    ),
    (
        9,
        "client_auth",
        include_str!("../../migrations/postgres/0009_client_auth.sql"),
    ),
    (
        10,
        "browser_sign_in",
        include_str!("../../migrations/postgres/0010_browser_sign_in.sql"),
    ),
];

/// The advisory lock migrations take, so instances starting together apply
/// each migration once (an arbitrary constant: "tessera" in ASCII).
const MIGRATION_LOCK: i64 = 0x74_65_73_73_65_72_61;

/// How long a pooled connection may sit unused before it is pinged on checkout.
const IDLE_BEFORE_PING: std::time::Duration = std::time::Duration::from_secs(1);

/// Whether `url` names a PostgreSQL database.
pub(super) fn handles(url: &str) -> bool {
    url.starts_with("postgres://") || url.starts_with("postgresql://")
}

#[derive(Debug, Clone)]
pub(super) struct Postgres {
    pub(super) pool: PgPool,
}

impl Postgres {
    /// A bounded pool that connects on first use: opening never waits for the
    /// server, so the issuer starts (not ready) while PostgreSQL is down.
    pub(super) fn open(url: &str, settings: PoolSettings) -> Result<Self, DbError> {
        let options = PgConnectOptions::from_str(url)
            .map_err(sql("parsing the database URL"))?
            .application_name("tessera-issuer");
        let pool = PgPoolOptions::new()
            .max_connections(settings.max_connections.max(1))
            .min_connections(0)
            .acquire_timeout(settings.acquire_timeout)
            // A server connection can die under us (restart, failover). A
            // connection idle for a while is pinged before use, and replaced if
            // dead; a busy one is not: a ping on every checkout was a quarter of
            // the database round trips of a refresh. A busy connection that died
            // fails its one request with 503 (retry) and is dropped.
            .test_before_acquire(false)
            .before_acquire(|conn, meta| {
                Box::pin(async move {
                    if meta.idle_for < IDLE_BEFORE_PING {
                        return Ok(true);
                    }
                    sqlx::Connection::ping(conn).await.map(|()| true)
                })
            })
            .connect_lazy_with(options);
        Ok(Self { pool })
    }

    /// Every pending migration in one transaction, under an advisory lock: a
    /// second instance starting at the same time waits, then finds them done.
    pub(super) async fn migrate(&self) -> Result<(), DbError> {
        let mut tx = self
            .pool
            .begin()
            .await
            .map_err(sql("starting the migrations"))?;
        sqlx::query("SELECT pg_advisory_xact_lock($1)")
            .bind(MIGRATION_LOCK)
            .execute(&mut *tx)
            .await
            .map_err(sql("locking the migrations"))?;
        sqlx::query(
            "CREATE TABLE IF NOT EXISTS schema_migrations (
                 version BIGINT PRIMARY KEY, name TEXT NOT NULL, applied_at BIGINT NOT NULL)",
        )
        .execute(&mut *tx)
        .await
        .map_err(sql("creating schema_migrations"))?;
        for (version, name, script) in MIGRATIONS {
            apply_migration!(tx, version, name, script);
        }
        tx.commit().await.map_err(sql("committing the migrations"))
    }

    /// The write half of a rotation as one statement, so one implicit
    /// transaction: mark the old token used only if it is unused and its
    /// session live, touch the session, insert the successor. Two instances
    /// rotating the same token at once both reach the first `UPDATE`; the
    /// second waits on the row lock and then re-checks `used_at IS NULL`
    /// against the committed row (READ COMMITTED re-evaluation), finds it
    /// false and changes nothing, so nothing after it runs either.
    pub(super) async fn rotate(&self, rotation: &Rotation) -> Result<bool, DbError> {
        let rows = sqlx::query(
            "WITH marked AS (
                 UPDATE refresh_tokens SET used_at = $1, retry_sealed = $2
                  WHERE hash = $3 AND used_at IS NULL
                    AND EXISTS (SELECT 1 FROM sessions WHERE id = $4 AND revoked_at IS NULL)
                 RETURNING session_id),
             touched AS (
                 UPDATE sessions SET last_used_at = $1
                  WHERE id IN (SELECT session_id FROM marked)
                 RETURNING id)
             INSERT INTO refresh_tokens (hash, session_id, issued_at)
             SELECT $5, id, $1 FROM touched
             RETURNING 1",
        )
        .bind(rotation.now)
        .bind(rotation.sealed.as_deref())
        .bind(&rotation.old_hash[..])
        .bind(&rotation.session_id)
        .bind(&rotation.new_hash[..])
        .fetch_all(&self.pool)
        .await
        .map_err(sql("rotating a refresh token"))?;
        Ok(rows.len() == 1)
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
