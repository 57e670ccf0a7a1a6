//! The macros every query of the data layer goes through: each expands its
//! body once per backend, so one `$N`-placeholder query is type-checked
//! against both drivers. Defined here, first, so every table's file can use
//! them (`macro_rules!` scope is textual).

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

/// Runs `$body` with `$pool` bound to the backend's connection pool (a
/// different type in each arm, so the body is type-checked once per backend).
macro_rules! on_pool {
    ($db:expr, |$pool:ident| $body:expr) => {
        match &$db.backend {
            $crate::db::Backend::Sqlite(backend) => {
                let $pool = &backend.pool;
                $body
            }
            $crate::db::Backend::Postgres(backend) => {
                let $pool = &backend.pool;
                $body
            }
        }
    };
}

/// Runs `$body` with `$conn` bound to a connection that writes (on SQLite, the
/// writer connection; on PostgreSQL, the pool).
macro_rules! on_writer {
    ($db:expr, |$conn:ident| $body:expr) => {
        match &$db.backend {
            $crate::db::Backend::Sqlite(backend) => {
                let mut writer = backend
                    .writer
                    .lock()
                    .await
                    .map_err($crate::db::sql("reopening the database writer"))?;
                let $conn = &mut *writer;
                $body
            }
            $crate::db::Backend::Postgres(backend) => {
                let $conn = &backend.pool;
                $body
            }
        }
    };
}

/// Runs `$body` inside a write transaction `$tx`, committing if `$body`
/// returns (a `?` or `return` inside it rolls back).
///
/// - `in_transaction!(db, "action", |tx| ...)`: a plain write transaction (on
///   SQLite, through the one writer connection).
/// - `in_transaction!(db, lock L, err, "action", |tx| ...)`: one that excludes
///   every other holder of the same lock, in any process: on SQLite, `BEGIN
///   IMMEDIATE` (SQLite's one write lock, which holds across processes); on
///   PostgreSQL, the transaction-scoped advisory lock `L`. `err(action)` maps
///   sqlx errors to the caller's error type.
macro_rules! in_transaction {
    ($db:expr, $action:literal, |$tx:ident| $body:expr) => {
        in_transaction!(@run $db, "BEGIN", None::<i64>, $crate::db::sql, $action, |$tx| $body)
    };
    ($db:expr, lock $lock:expr, $err:path, $action:literal, |$tx:ident| $body:expr) => {
        in_transaction!(@run $db, "BEGIN IMMEDIATE", Some($lock), $err, $action, |$tx| $body)
    };
    (@run $db:expr, $begin:literal, $lock:expr, $err:path, $action:literal, |$tx:ident| $body:expr) => {
        match &$db.backend {
            $crate::db::Backend::Sqlite(backend) => {
                use sqlx::Connection as _;
                let mut writer = backend.writer.lock().await.map_err($err($action))?;
                let mut $tx = writer.begin_with($begin).await.map_err($err($action))?;
                let value = $body;
                $tx.commit().await.map_err($err($action))?;
                value
            }
            $crate::db::Backend::Postgres(backend) => {
                let mut $tx = backend.pool.begin().await.map_err($err($action))?;
                let lock: Option<i64> = $lock;
                if let Some(lock) = lock {
                    sqlx::query("SELECT pg_advisory_xact_lock($1)")
                        .bind(lock)
                        .execute(&mut *$tx)
                        .await
                        .map_err($err($action))?;
                }
                let value = $body;
                $tx.commit().await.map_err($err($action))?;
                value
            }
        }
    };
}
