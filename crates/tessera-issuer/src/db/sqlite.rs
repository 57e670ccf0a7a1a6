//! SQLite: one file, one machine. Reads go through a pool, in parallel; writes
//! through one connection this process holds (SQLite has one writer at a time
//! anyway), so they queue here rather than in SQLite's sleeping busy handler.

use std::str::FromStr as _;
use std::sync::Arc;
use std::time::Duration;

use sqlx::ConnectOptions as _;
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteConnection, SqliteJournalMode, SqlitePool, SqlitePoolOptions,
};

use super::error::{DbError, sql};
use super::rotation::Rotation;

/// The embedded migrations, in order.
pub(super) const MIGRATIONS: &[(i64, &str, &str)] = &[
    (
        1,
        "users_sessions",
        include_str!("../../migrations/sqlite/0001_users_sessions.sql"),
    ),
    (
        2,
        "refresh_retry",
        include_str!("../../migrations/sqlite/0002_refresh_retry.sql"),
    ),
    (
        3,
        "keyring",
        include_str!("../../migrations/sqlite/0003_keyring.sql"),
    ),
    (
        4,
        "login_failures",
        include_str!("../../migrations/sqlite/0004_login_failures.sql"),
    ),
    (
        5,
        "audit_events",
        include_str!("../../migrations/sqlite/0005_audit_events.sql"),
    ),
    (
        6,
        "revocations",
        include_str!("../../migrations/sqlite/0006_revocations.sql"),
    ),
    (
        7,
        "revocation_feed",
        include_str!("../../migrations/sqlite/0007_revocation_feed.sql"),
    ),
    (
        8,
        "clients",
        include_str!("../../migrations/sqlite/0008_clients.sql"),
    ),
    (
        9,
        "revocation_facts",
        include_str!("../../migrations/sqlite/0009_revocation_facts.sql"),
    ),
    (
        10,
        "client_auth",
        include_str!("../../migrations/sqlite/0010_client_auth.sql"),
    ),
    (
        11,
        "browser_sign_in",
        include_str!("../../migrations/sqlite/0011_browser_sign_in.sql"),
    ),
];

/// Creates the database file 0600 if it does not exist yet, whoever (the
/// service or an operator command) opens it first. SQLite creates the `-wal`
/// and `-shm` files with the main file's permissions, so they are 0600 too.
fn create_private(path: &std::path::Path) -> Result<(), DbError> {
    use std::os::unix::fs::OpenOptionsExt as _;
    match std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
    {
        Ok(_) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Ok(()),
        Err(e) => Err(DbError::Sqlx {
            action: "creating the database file",
            source: sqlx::Error::Io(e),
        }),
    }
}

/// Whether `url` names a SQLite database this build accepts (a file: an
/// in-memory database would lose every session at exit).
pub(super) fn handles(url: &str) -> bool {
    url.starts_with("sqlite:") && !url.contains(":memory:") && !url.contains("mode=memory")
}

#[derive(Debug, Clone)]
pub(super) struct Sqlite {
    pub(super) pool: SqlitePool,
    /// The one connection this process writes through: see [`Writer`].
    pub(super) writer: Arc<Writer>,
    /// Where the refresh path's locked work runs: see [`WriterThread`].
    writer_thread: Arc<WriterThread>,
}

impl Sqlite {
    pub(super) async fn open(url: &str) -> Result<Self, DbError> {
        let options =
            SqliteConnectOptions::from_str(url).map_err(sql("parsing the database URL"))?;
        create_private(options.get_filename())?;
        let options = options
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
        Ok(Self {
            pool,
            writer: Arc::new(Writer {
                conn: tokio::sync::Mutex::new(writer),
                options,
            }),
            writer_thread: Arc::new(WriterThread::start()?),
        })
    }

    /// Each migration in a transaction of its own on the writer connection
    /// (SQLite serialises writers, so two processes cannot both apply one).
    pub(super) async fn migrate(&self) -> Result<(), DbError> {
        use sqlx::Connection as _;
        let mut writer = self
            .writer
            .lock()
            .await
            .map_err(sql("reopening the database writer"))?;
        sqlx::query(
            "CREATE TABLE IF NOT EXISTS schema_migrations (
                 version INTEGER PRIMARY KEY, name TEXT NOT NULL, applied_at INTEGER NOT NULL)",
        )
        .execute(&mut *writer)
        .await
        .map_err(sql("creating schema_migrations"))?;
        for (version, name, script) in MIGRATIONS {
            let mut tx = writer
                .begin_with("BEGIN IMMEDIATE")
                .await
                .map_err(sql("starting a migration"))?;
            apply_migration!(tx, version, name, script);
            tx.commit().await.map_err(sql("committing a migration"))?;
        }
        Ok(())
    }

    /// Runs [`rotate_on`] on the writer thread, holding the writer connection.
    pub(super) async fn rotate(&self, rotation: Rotation) -> Result<bool, DbError> {
        let writer = Arc::clone(&self.writer);
        self.writer_thread
            .run(async move {
                let mut conn = writer
                    .lock()
                    .await
                    .map_err(sql("reopening the database writer"))?;
                rotate_on(&mut conn, &rotation).await
            })
            .await
    }
}

/// The one connection this process writes through. Holding it serialises
/// this process's writes before they reach SQLite, whose own busy handler
/// sleeps for milliseconds at a time; and, unlike a pool checkout, it costs
/// no ping on release. Reads go through the pool, in parallel.
#[derive(Debug)]
pub(super) struct Writer {
    conn: tokio::sync::Mutex<SqliteConnection>,
    /// To open it again (see [`Writer::lock`]).
    options: SqliteConnectOptions,
}

impl Writer {
    /// The writer connection, fit to start a transaction.
    ///
    /// Found by the soak (issue 21): when a `COMMIT` fails (a full disk),
    /// SQLite rolls the transaction back itself, so the rollback sqlx then
    /// sends fails too and sqlx counts the connection as inside a
    /// transaction for ever: every later `BEGIN IMMEDIATE` was refused
    /// ("non-zero transaction depth") and the service answered 500 to every
    /// write long after the disk was freed. The lock holder is the only user
    /// of the connection, so at this point no transaction may be open: if
    /// one still is once any queued rollback has run, the connection is
    /// replaced by a fresh one (closing the old rolls back whatever it had).
    pub(super) async fn lock(
        &self,
    ) -> Result<tokio::sync::MutexGuard<'_, SqliteConnection>, sqlx::Error> {
        use sqlx::{Connection as _, TransactionManager as _};
        let depth =
            |c: &SqliteConnection| sqlx::sqlite::SqliteTransactionManager::get_transaction_depth(c);
        let mut conn = self.conn.lock().await;
        if depth(&conn) > 0 {
            // A rollback queued by a dropped transaction runs before this.
            let _ = conn.ping().await;
            if depth(&conn) > 0 {
                tracing::warn!(
                    "the database writer was left inside a failed transaction (a full or failing disk?): reopening it"
                );
                let fresh = self.options.connect().await?;
                let stale = std::mem::replace(&mut *conn, fresh);
                let _ = stale.close().await;
            }
        }
        Ok(conn)
    }
}

/// The write half of a rotation, as one transaction in one round trip to the
/// SQLite worker: mark the old token used (only if it is unused and its session
/// live), touch the session, store the successor. Each statement runs only if
/// the one before changed exactly one row, so the transaction either does all
/// three or nothing. Returns whether it rotated.
///
/// One round trip matters: the caller holds the writer lock across it, and
/// every hand-off to sqlx's worker thread and back is a pair of context
/// switches (eight per refresh before, capping refreshes at a third of the
/// signing rate).
async fn rotate_on(conn: &mut SqliteConnection, rotation: &Rotation) -> Result<bool, DbError> {
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
    .bind(rotation.now)
    .bind(rotation.sealed.as_deref())
    .bind(&rotation.old_hash[..])
    .bind(&rotation.session_id)
    .bind(&rotation.new_hash[..])
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
