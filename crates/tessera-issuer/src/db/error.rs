//! The data layer's error.

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
                ) || matches!(source, sqlx::Error::Database(e) if database_unavailable(&**e))
            }
            Self::NotMigrated => true,
            _ => false,
        }
    }
}

/// A database's own error that says it cannot work right now, whatever was
/// asked: PostgreSQL shutting down or restarting (`57P01` admin_shutdown,
/// `57P02` crash_shutdown, `57P03` cannot_connect_now) or out of resources
/// (`53100` disk_full, `53200` out_of_memory, `53300` too_many_connections);
/// SQLite's disk full (`SQLITE_FULL`) or failing (`SQLITE_IOERR`, any of its
/// extended codes). Each passes when the operator frees the disk or the
/// server comes back, so the request is worth retrying: a 503, not a 500.
fn database_unavailable(e: &dyn sqlx::error::DatabaseError) -> bool {
    if e.try_downcast_ref::<sqlx::sqlite::SqliteError>().is_some() {
        // SQLite's codes are its extended result codes, which carry the
        // primary code in the low byte.
        return e
            .code()
            .and_then(|c| c.parse::<i32>().ok())
            .is_some_and(|c| matches!(c & 0xff, SQLITE_IOERR | SQLITE_FULL));
    }
    matches!(
        e.code().as_deref(),
        Some("57P01" | "57P02" | "57P03" | "53100" | "53200" | "53300")
    )
}

/// SQLite's primary result codes for a failing and a full disk.
const SQLITE_IOERR: i32 = 10;
const SQLITE_FULL: i32 = 13;

pub(super) fn sql(action: &'static str) -> impl FnOnce(sqlx::Error) -> DbError {
    move |source| DbError::Sqlx { action, source }
}
