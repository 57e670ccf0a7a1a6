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

pub(super) fn sql(action: &'static str) -> impl FnOnce(sqlx::Error) -> DbError {
    move |source| DbError::Sqlx { action, source }
}
