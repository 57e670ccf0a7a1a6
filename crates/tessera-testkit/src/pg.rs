//! Throwaway PostgreSQL databases for tests and benchmarks: each gets an empty
//! database of its own on a shared server, dropped when it is dropped, so
//! tests running in parallel never see each other's rows.

use std::path::Path;

use sqlx::Connection as _;
use sqlx::postgres::PgConnection;

/// Why a scratch database could not be made or dropped.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ScratchError {
    /// The server's URL, or the backend asked for, is not usable.
    #[error("{0}")]
    Config(String),
    /// The server failed.
    #[error("{action}: {source}")]
    Sqlx {
        /// What was being done.
        action: &'static str,
        /// The driver's error.
        source: sqlx::Error,
    },
}

fn sql(action: &'static str) -> impl FnOnce(sqlx::Error) -> ScratchError {
    move |source| ScratchError::Sqlx { action, source }
}

/// A name no other scratch database of this process has (a counter), and
/// unlikely for a later process of the same id (std's random hash keys).
fn unique_suffix() -> String {
    use std::hash::BuildHasher as _;
    static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let noise = std::collections::hash_map::RandomState::new().hash_one(n);
    format!("{n}x{noise:x}")
}

/// The variable naming a PostgreSQL server tests may create databases on,
/// e.g. `postgres://127.0.0.1:5432/test`. Tests that need PostgreSQL skip
/// without it (and fail under `TESSERA_REQUIRE_POSTGRES=1`, as in CI).
pub const POSTGRES_URL_VAR: &str = "TESSERA_TEST_POSTGRES_URL";

/// The variable choosing the backend of the whole issuer test-suite:
/// `sqlite` (the default) or `postgres` (on the server [`POSTGRES_URL_VAR`] names).
pub const BACKEND_VAR: &str = "TESSERA_TEST_BACKEND";

/// The PostgreSQL server for tests, if one is configured.
pub fn postgres_url() -> Option<String> {
    std::env::var(POSTGRES_URL_VAR)
        .ok()
        .filter(|url| !url.is_empty())
}

/// Whether a missing PostgreSQL server must fail the PostgreSQL tests rather
/// than skip them (`TESSERA_REQUIRE_POSTGRES=1`, set by CI).
pub fn postgres_required() -> bool {
    std::env::var("TESSERA_REQUIRE_POSTGRES").is_ok_and(|v| v == "1")
}

/// An empty database on a PostgreSQL server, dropped (with its connections)
/// when this value is.
#[derive(Debug)]
pub struct ScratchDatabase {
    admin_url: String,
    name: String,
    url: String,
}

impl ScratchDatabase {
    /// Creates a database with a fresh random name on the server `admin_url`
    /// points at (its database is used only to run `CREATE DATABASE`).
    ///
    /// Names carry the creating process's id: databases of processes that
    /// are gone (killed before they could drop theirs) are dropped here first.
    pub async fn create(admin_url: &str) -> Result<Self, ScratchError> {
        let name = format!("tessera_scratch_{}_{}", std::process::id(), unique_suffix());
        let url = with_database(admin_url, &name)
            .ok_or_else(|| ScratchError::Config(format!("not a PostgreSQL URL: {admin_url:?}")))?;
        let mut conn = PgConnection::connect(admin_url)
            .await
            .map_err(sql("connecting to the PostgreSQL server for tests"))?;
        drop_orphans(&mut conn).await?;
        sqlx::raw_sql(&format!("CREATE DATABASE \"{name}\""))
            .execute(&mut conn)
            .await
            .map_err(sql("creating a scratch database"))?;
        let _ = conn.close().await;
        Ok(Self {
            admin_url: admin_url.to_owned(),
            name,
            url,
        })
    }

    /// [`ScratchDatabase::create`] for code outside an async runtime.
    pub fn create_blocking(admin_url: &str) -> Result<Self, ScratchError> {
        let admin_url = admin_url.to_owned();
        on_own_runtime(move || async move { Self::create(&admin_url).await })
    }

    /// The database's URL.
    pub fn url(&self) -> &str {
        &self.url
    }
}

impl Drop for ScratchDatabase {
    fn drop(&mut self) {
        let admin_url = self.admin_url.clone();
        let drop_sql = format!("DROP DATABASE IF EXISTS \"{}\" WITH (FORCE)", self.name);
        let dropped = on_own_runtime(move || async move {
            let mut conn = PgConnection::connect(&admin_url)
                .await
                .map_err(sql("connecting to drop a scratch database"))?;
            sqlx::raw_sql(&drop_sql)
                .execute(&mut conn)
                .await
                .map_err(sql("dropping a scratch database"))?;
            let _ = conn.close().await;
            Ok(())
        });
        if let Err(err) = dropped {
            #[allow(clippy::print_stderr)]
            {
                eprintln!("scratch database {} left behind: {err}", self.name);
            }
        }
    }
}

/// Drops the scratch databases of processes that no longer run.
async fn drop_orphans(conn: &mut PgConnection) -> Result<(), ScratchError> {
    let names: Vec<String> = sqlx::query_scalar(
        "SELECT datname FROM pg_database WHERE datname LIKE 'tessera\\_scratch\\_%'",
    )
    .fetch_all(&mut *conn)
    .await
    .map_err(sql("listing scratch databases"))?;
    for name in names {
        let pid = name
            .strip_prefix("tessera_scratch_")
            .and_then(|rest| rest.split('_').next())
            .and_then(|pid| pid.parse::<u32>().ok());
        let Some(pid) = pid else { continue };
        if Path::new(&format!("/proc/{pid}")).exists() {
            continue;
        }
        // Another process may be dropping it too: IF EXISTS, errors ignored.
        let _ = sqlx::Executor::execute(
            &mut *conn,
            sqlx::raw_sql(&format!("DROP DATABASE IF EXISTS \"{name}\" WITH (FORCE)")),
        )
        .await;
    }
    Ok(())
}

/// Runs `work` to completion on a runtime of its own, on a thread of its own,
/// so it works from `Drop` and from inside or outside another runtime.
fn on_own_runtime<T: Send + 'static, F: Future<Output = Result<T, ScratchError>>>(
    work: impl FnOnce() -> F + Send + 'static,
) -> Result<T, ScratchError> {
    let failed = |e: std::io::Error| ScratchError::Sqlx {
        action: "starting a runtime for a scratch database",
        source: sqlx::Error::Io(e),
    };
    std::thread::spawn(move || {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(failed)?
            .block_on(work())
    })
    .join()
    .unwrap_or_else(|_| {
        Err(failed(std::io::Error::other(
            "the scratch-database thread panicked",
        )))
    })
}

/// `url` with its database name replaced by `name` (query parameters kept).
pub fn with_database(url: &str, name: &str) -> Option<String> {
    let (scheme, rest) = url.split_once("://")?;
    let (address, query) = match rest.split_once('?') {
        Some((address, query)) => (address, Some(query)),
        None => (rest, None),
    };
    let host = address.split_once('/').map_or(address, |(host, _)| host);
    let query = query.map(|q| format!("?{q}")).unwrap_or_default();
    Some(format!("{scheme}://{host}/{name}{query}"))
}

/// The database URL a test of the issuer uses for the work directory `dir`:
/// a SQLite file in `dir` by default, or, when `TESSERA_TEST_BACKEND` is
/// `postgres`, a scratch database on the server `TESSERA_TEST_POSTGRES_URL`
/// names, the same one for every call with the same `dir` (a test that
/// restarts its issuer finds its data again).
///
/// The scratch databases live as long as the test process; the next test
/// process drops those whose process is gone (see [`ScratchDatabase::create`]).
pub fn test_database_url(dir: &Path) -> Result<String, ScratchError> {
    static DATABASES: std::sync::Mutex<Vec<(std::path::PathBuf, ScratchDatabase)>> =
        std::sync::Mutex::new(Vec::new());
    let backend = std::env::var(BACKEND_VAR).unwrap_or_default();
    match backend.as_str() {
        "" | "sqlite" => Ok(format!("sqlite://{}", dir.join("issuer.db").display())),
        "postgres" => {
            let admin = postgres_url().ok_or_else(|| {
                ScratchError::Config(format!("{BACKEND_VAR}=postgres needs {POSTGRES_URL_VAR}"))
            })?;
            let mut databases = DATABASES
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            if let Some((_, db)) = databases.iter().find(|(d, _)| d == dir) {
                return Ok(db.url().to_owned());
            }
            let db = ScratchDatabase::create_blocking(&admin)?;
            let url = db.url().to_owned();
            databases.push((dir.to_owned(), db));
            Ok(url)
        }
        other => Err(ScratchError::Config(format!(
            "unknown {BACKEND_VAR}={other}"
        ))),
    }
}
