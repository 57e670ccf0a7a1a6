//! Start-up: configuration in, a bound, running service out.

use std::net::SocketAddr;
use std::sync::Arc;

use tessera_keyring::{KeyDir, KeyringError};

use crate::config::KeyringKind;
use crate::db::keyring::{DbKeyring, Kek, KekError};
use crate::keys::KeyStore;
use tokio::net::TcpListener;

use crate::config::Config;
use crate::db::{Db, DbError};
use crate::http::{AppState, MetricsAt, router};
use crate::keys::KeyHandle;
use crate::passwords::{HashError, Hasher, Password, random_token};
use crate::service::Issuer;

/// Why the service could not start or stopped with an error.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ServeError {
    /// The keyring cannot be created or loaded.
    #[error(transparent)]
    Keyring(#[from] KeyringError),
    /// The database cannot be opened or migrated.
    #[error(transparent)]
    Db(#[from] DbError),
    /// The database keyring's key-encryption key is missing or unusable.
    #[error(transparent)]
    Kek(#[from] KekError),
    /// Hashing the first admin's password failed.
    #[error(transparent)]
    Hash(#[from] HashError),
    /// Binding or serving failed.
    #[error("{action}: {source}")]
    Io {
        /// What was being done.
        action: String,
        /// Why it failed.
        source: std::io::Error,
    },
}

/// A service ready to accept connections: keyring loaded, socket bound.
#[derive(Debug)]
pub struct Prepared {
    listener: TcpListener,
    addr: SocketAddr,
    /// `/metrics` on a listener of its own (`metrics_listen`).
    metrics: Option<(TcpListener, SocketAddr)>,
    state: AppState,
    config: Config,
    first_admin: Option<FirstAdmin>,
    /// The database was unreachable at start: `run` keeps trying to migrate
    /// it, and sends the first admin here if it creates one then.
    late_bootstrap: Option<tokio::sync::oneshot::Sender<FirstAdmin>>,
    late_first_admin: Option<tokio::sync::oneshot::Receiver<FirstAdmin>>,
}

/// The `admin` user created on a first start with an empty database.
pub struct FirstAdmin {
    /// Its login name.
    pub username: String,
    /// Its random password: shown once to the operator, never logged.
    pub password: String,
}

impl std::fmt::Debug for FirstAdmin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FirstAdmin")
            .field("username", &self.username)
            .finish_non_exhaustive()
    }
}

impl Prepared {
    /// Opens the database (creating it and its schema on first start, and an
    /// `admin` user if there is none), loads the keyring (creating it on first
    /// start if the directory holds none) and binds the listen address.
    ///
    /// A PostgreSQL server that cannot be reached does not stop the start: the
    /// service comes up not ready (`/readyz` 503, requests that need the
    /// database 503) and [`Prepared::run`] migrates as soon as it answers.
    pub async fn new(config: Config) -> Result<Self, ServeError> {
        let db = Db::open(&config.database_url, config.database_pool).await?;
        // Argon2 is CPU-bound: one thread per core (at most 4) is all the
        // cores sustain; more would only queue inside the CPU, starve other
        // requests and hold another 19 MiB work area each.
        let cores = std::thread::available_parallelism().map_or(1, usize::from);
        let hasher = Hasher::new(cores.min(4))?.with_queue(config.password_check_queue);
        let (mut late_bootstrap, mut late_first_admin) = (None, None);
        let lifetimes = Lifetimes::of(&config);
        let first_admin = match bootstrap(&db, &hasher, &config.login_client, lifetimes).await {
            Ok(admin) => admin,
            Err(ServeError::Db(err)) if err.is_unavailable() => {
                tracing::warn!(
                    error = %err,
                    "the database is unreachable: starting not ready, retrying in the background"
                );
                let (tx, rx) = tokio::sync::oneshot::channel();
                (late_bootstrap, late_first_admin) = (Some(tx), Some(rx));
                None
            }
            Err(other) => return Err(other),
        };
        let store = key_store(&config, &db)?;
        let keys = KeyHandle::start(store, Some(config.key_spec())).await?;
        let listener = TcpListener::bind(config.listen)
            .await
            .map_err(|source| ServeError::Io {
                action: format!("binding {}", config.listen),
                source,
            })?;
        let addr = listener.local_addr().map_err(|source| ServeError::Io {
            action: "reading the bound address".to_owned(),
            source,
        })?;
        let metrics = match config.metrics_listen {
            None => None,
            Some(at) => {
                let listener = TcpListener::bind(at)
                    .await
                    .map_err(|source| ServeError::Io {
                        action: format!("binding {at} (metrics_listen)"),
                        source,
                    })?;
                let bound = listener.local_addr().map_err(|source| ServeError::Io {
                    action: "reading the metrics listener's address".to_owned(),
                    source,
                })?;
                Some((listener, bound))
            }
        };
        let issuer = config
            .issuer_url
            .clone()
            .unwrap_or_else(|| format!("http://{addr}"));
        let settings = crate::tokens::TokenSettings {
            issuer,
            audiences: config.audiences.clone(),
            access_token_lifetime: config.rotation.access_token_lifetime,
            refresh_idle_lifetime: config.refresh_idle_lifetime,
            refresh_absolute_lifetime: config.refresh_absolute_lifetime,
            jwks_cache_lifetime: config.rotation.jwks_cache_lifetime,
            login_client: config.login_client.clone(),
            refresh_retry_window: config.refresh_retry_window,
        };
        if !config.introspection_clients.is_empty() {
            tracing::warn!(
                count = config.introspection_clients.len(),
                "[[introspection_clients]] in the configuration is deprecated: register each as a \
                 client (`tessera-issuer clients add ID --confidential --introspect`) and remove \
                 the table; it is still honoured"
            );
        }
        let issuer = Issuer::new(
            Arc::new(keys),
            db,
            hasher,
            Arc::new(tessera_keyring::SystemClock),
            settings,
        )
        .with_introspection_clients(config.introspection_clients.clone());
        let metrics_at = match metrics {
            Some(_) => MetricsAt::OwnListener,
            None => MetricsAt::Loopback,
        };
        let state = AppState::new(issuer)
            .with_trusted_proxies(config.trusted_proxies.clone())
            .with_cookie_sessions(&config.cookie_sessions)
            .with_metrics(metrics_at, config.rotation);
        Ok(Self {
            listener,
            addr,
            metrics,
            state,
            config,
            first_admin,
            late_bootstrap,
            late_first_admin,
        })
    }

    /// The admin created on this first start, if any: print its password once.
    pub fn take_first_admin(&mut self) -> Option<FirstAdmin> {
        self.first_admin.take()
    }

    /// When the database was unreachable at start: where the first admin
    /// arrives if `run` creates one once the database answers (print it then).
    pub fn take_late_first_admin(&mut self) -> Option<tokio::sync::oneshot::Receiver<FirstAdmin>> {
        self.late_first_admin.take()
    }

    /// The bound address (useful with port 0).
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The metrics listener's bound address, when `metrics_listen` is set.
    pub fn metrics_addr(&self) -> Option<SocketAddr> {
        self.metrics.as_ref().map(|(_, addr)| *addr)
    }

    /// The issuer URL in force.
    pub fn issuer(&self) -> &str {
        self.state.service().issuer_url()
    }

    /// Serves until `shutdown` resolves, then lets in-flight requests finish
    /// for at most the configured `shutdown_grace`.
    pub async fn run(
        self,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> Result<(), ServeError> {
        let (stop_tx, mut stop_rx) = tokio::sync::watch::channel(false);
        let keys = Arc::clone(self.state.service().keys());
        let mut watch_stop = stop_tx.subscribe();
        let watcher = tokio::spawn(keys.watch(self.config.keys_reload_interval, async move {
            let _ = watch_stop.wait_for(|stop| *stop).await;
        }));
        let late = self.late_bootstrap.map(|admin_tx| {
            let service = self.state.service();
            let (db, hasher) = (service.db().clone(), service.hasher().clone());
            let login_client = self.config.login_client.clone();
            let lifetimes = Lifetimes::of(&self.config);
            let mut stop = stop_tx.subscribe();
            tokio::spawn(async move {
                tokio::select! {
                    () = bootstrap_until_done(&db, &hasher, &login_client, lifetimes, admin_tx) => {}
                    _ = stop.wait_for(|stop| *stop) => {}
                }
            })
        });
        let maintenance = {
            let issuer = self.state.service().clone();
            let retention = crate::secs(self.config.audit_retention);
            let mut stop = stop_tx.subscribe();
            tokio::spawn(async move {
                tokio::select! {
                    () = maintain(&issuer, retention) => {}
                    _ = stop.wait_for(|stop| *stop) => {}
                }
            })
        };
        let metrics = self.metrics.map(|(listener, _)| {
            let routes = crate::http::metrics_router(self.state.clone());
            let limits = self.config.http_limits;
            let mut stop = stop_tx.subscribe();
            tokio::spawn(async move {
                let stopped = async move {
                    let _ = stop.wait_for(|stop| *stop).await;
                };
                if let Err(err) = tessera_serve::serve(listener, routes, limits, stopped).await {
                    tracing::error!(error = %err, "the metrics listener failed");
                }
            })
        });
        let result = tessera_serve::serve(
            self.listener,
            router(self.state),
            self.config.http_limits,
            async move {
                tokio::select! {
                    () = shutdown => {}
                    _ = stop_rx.wait_for(|stop| *stop) => {}
                }
                tracing::info!("shutting down: finishing in-flight requests");
            },
        )
        .await;
        let _ = stop_tx.send(true);
        let _ = watcher.await;
        if let Some(late) = late {
            let _ = late.await;
        }
        let _ = maintenance.await;
        if let Some(metrics) = metrics {
            let _ = metrics.await;
        }
        result.map_err(|source| ServeError::Io {
            action: "serving".to_owned(),
            source,
        })
    }
}

/// How often (in minutes) expired revocation entries and ended sessions are
/// deleted: half the shorter of the access-token and refresh idle lifetimes,
/// between every minute and hourly. Hourly whatever the lifetimes let, on a
/// 2-core soak with 5-minute tokens (issue 21), the revocation list, the
/// feed's snapshot and every resource server's copy held twelve times the
/// live entries, and the session tables grew for the whole hour.
fn purge_every_minutes(access_secs: i64, refresh_idle_secs: i64) -> u64 {
    let half = access_secs.min(refresh_idle_secs) / 2;
    u64::try_from(half / 60).unwrap_or(0).clamp(1, 60)
}

/// Housekeeping, once at start and then every minute: replay copies of
/// refresh tokens past twice the longest retry window; every
/// [`purge_every_minutes`]: expired revocation entries and sessions past
/// their lifetimes; and hourly: audit events past their retention and
/// login-failure counts quiet for an hour. Every instance may run it; the
/// deletes are idempotent. Ends with the service.
async fn maintain(issuer: &Issuer, audit_retention: i64) {
    let db = issuer.db();
    let settings = issuer.settings();
    let (idle, absolute) = (
        crate::secs(settings.refresh_idle_lifetime),
        crate::secs(settings.refresh_absolute_lifetime),
    );
    let purge_every = purge_every_minutes(crate::secs(settings.access_token_lifetime), idle);
    let mut every_minute = tokio::time::interval(std::time::Duration::from_secs(60));
    every_minute.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    for minute in 0u64.. {
        every_minute.tick().await;
        let now = issuer.now();
        // Whatever window another instance runs with (the configuration caps
        // it at 60 s), with as much again for clocks that disagree.
        match db
            .forget_replay_copies(now - 2 * crate::config::MAX_RETRY_WINDOW_SECS)
            .await
        {
            Ok(0) => {}
            Ok(n) => tracing::debug!(cleared = n, "refresh replay copies dropped"),
            // Not migrated yet, or the database is down: next time.
            Err(err) => tracing::debug!(error = %err, "replay-copy cleanup skipped"),
        }
        // Kept a minute past their expiry: a replay is refused for its `exp`
        // first, and a leeway later by this table.
        if let Err(err) = db.forget_assertions(now - 60).await {
            tracing::debug!(error = %err, "client-assertion cleanup skipped");
        }
        // Codes are kept a day past their expiry so a late replay still
        // revokes what the first use issued; ended SSO sessions a day too.
        if let Err(err) = db.forget_sign_ins(now - 24 * 3600).await {
            tracing::debug!(error = %err, "sign-in cleanup skipped");
        }
        if minute % purge_every == 0 {
            if let Err(err) = db.purge_revocations(now).await {
                tracing::debug!(error = %err, "revocation cleanup skipped");
            }
            match db.forget_sessions(now, idle, absolute).await {
                Ok(0) => {}
                Ok(n) => tracing::info!(deleted = n, "ended sessions deleted"),
                Err(err) => tracing::debug!(error = %err, "session cleanup skipped"),
            }
        }
        if minute % 60 != 0 {
            continue;
        }
        match crate::audit::forget_old(db, now, audit_retention).await {
            Ok(0) => {}
            Ok(n) => tracing::info!(deleted = n, "old audit events deleted"),
            Err(err) => tracing::debug!(error = %err, "audit retention skipped"),
        }
        if let Err(err) = db
            .throttle_forget(
                now - crate::throttle::FORGET_AFTER_SECS,
                now - crate::throttle::KNOWN_FOR_SECS,
            )
            .await
        {
            tracing::debug!(error = %err, "login-failure cleanup skipped");
        }
    }
}

/// The lifetimes an instance issues with, recorded in the database at start.
#[derive(Debug, Clone, Copy)]
struct Lifetimes {
    access: std::time::Duration,
    refresh_idle: std::time::Duration,
    refresh_absolute: std::time::Duration,
}

impl Lifetimes {
    fn of(config: &Config) -> Self {
        Self {
            access: config.rotation.access_token_lifetime,
            refresh_idle: config.refresh_idle_lifetime,
            refresh_absolute: config.refresh_absolute_lifetime,
        }
    }
}

/// Operators' revocations take the time from the database, tokens their
/// `iat` from the instance: warns when the two clocks disagree by more than
/// a couple of seconds (a user revoked then could keep tokens issued in the
/// difference).
async fn warn_on_clock_skew(db: &Db) {
    let here = crate::unix_now(&tessera_keyring::SystemClock);
    if let Ok(there) = db.database_now().await
        && (here - there).abs() > 2
    {
        tracing::warn!(
            skew_secs = here - there,
            "this machine's clock and the database's disagree: keep both on NTP"
        );
    }
}

/// Migrates the database, registers the login client if no client is
/// registered, and, if it holds no user, creates the first admin. Several
/// instances starting on one empty database create one admin and one client:
/// the others find the name taken and create none.
async fn bootstrap(
    db: &Db,
    hasher: &Hasher,
    login_client: &str,
    lifetimes: Lifetimes,
) -> Result<Option<FirstAdmin>, ServeError> {
    db.migrate().await?;
    // Before any token is issued: revocations made from now on, by any
    // process, outlive this instance's tokens, and no instance's housekeeping
    // deletes a session this one could still refresh.
    db.record_lifetimes(
        lifetimes.access,
        lifetimes.refresh_idle,
        lifetimes.refresh_absolute,
    )
    .await?;
    warn_on_clock_skew(db).await;
    let now = crate::unix_now(&tessera_keyring::SystemClock);
    let first_start = db.count_users().await? == 0;
    if crate::service::clients::bootstrap(db, login_client, now, first_start).await? {
        // The login client: public, password and refresh grants, scope
        // `profile`. `record` writes the log line too.
        let event = crate::audit::Event::new("client_added").with("client_id", login_client);
        crate::audit::record(db, now, event).await;
    }
    if !first_start {
        return Ok(None);
    }
    match create_first_admin(db, hasher).await {
        Ok(admin) => Ok(Some(admin)),
        Err(ServeError::Db(DbError::UserExists(_))) => Ok(None),
        Err(other) => Err(other),
    }
}

/// [`bootstrap`] until it succeeds, waiting between tries (0.25 s doubling to
/// 5 s). Ends with the service (the caller selects on its stop signal).
async fn bootstrap_until_done(
    db: &Db,
    hasher: &Hasher,
    login_client: &str,
    lifetimes: Lifetimes,
    admin_tx: tokio::sync::oneshot::Sender<FirstAdmin>,
) {
    let mut wait = std::time::Duration::from_millis(250);
    loop {
        tokio::time::sleep(wait).await;
        match bootstrap(db, hasher, login_client, lifetimes).await {
            Ok(admin) => {
                tracing::info!(
                    backend = db.backend_name(),
                    "database reachable and migrated: ready"
                );
                if let Some(admin) = admin {
                    let _ = admin_tx.send(admin);
                }
                return;
            }
            Err(err) => {
                tracing::warn!(error = %err, retry_in = ?wait, "database still not ready");
            }
        }
        wait = (wait * 2).min(std::time::Duration::from_secs(5));
    }
}

async fn create_first_admin(db: &Db, hasher: &Hasher) -> Result<FirstAdmin, ServeError> {
    let password = random_token(18);
    let secret = Password::new(password.clone());
    let hasher = hasher.clone();
    let hash = tokio::task::spawn_blocking(move || hasher.hash(&secret))
        .await
        .map_err(|e| ServeError::Io {
            action: "hashing the first admin's password".to_owned(),
            source: std::io::Error::other(e),
        })??;
    let now = crate::unix_now(&tessera_keyring::SystemClock);
    db.add_user(
        &random_token(16),
        "admin",
        &hash,
        &["admin".to_owned()],
        now,
    )
    .await?;
    let event = crate::audit::Event::new("first_admin_created").with("username", "admin");
    crate::audit::record(db, now, event).await;
    Ok(FirstAdmin {
        username: "admin".to_owned(),
        password,
    })
}

/// The environment variable that may hold the database keyring's
/// key-encryption key (base64url, 32 bytes). It wins over the file.
pub const KEK_VAR: &str = "TESSERA_KEY_ENCRYPTION_KEY";

/// The database keyring's key-encryption key: [`KEK_VAR`], else the file
/// `key_encryption_key_file`.
pub fn load_kek(config: &Config) -> Result<Kek, KekError> {
    if let Ok(text) = std::env::var(KEK_VAR) {
        return Kek::from_text(&text);
    }
    match &config.key_encryption_key_file {
        Some(path) => Kek::from_file(path),
        None => Err(KekError::Missing),
    }
}

/// The keyring store the configuration names: the keys directory, or the
/// database keyring in `db` (sealed under [`load_kek`]'s key).
pub fn key_store(config: &Config, db: &Db) -> Result<KeyStore, KekError> {
    Ok(match config.keyring {
        KeyringKind::Files => KeyStore::Files(KeyDir::new(&config.keys_dir)),
        KeyringKind::Database => KeyStore::Database(DbKeyring::new(db.clone(), load_kek(config)?)),
    })
}

/// Resolves on Ctrl-C or SIGTERM.
pub async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    tokio::select! {
        () = ctrl_c => {}
        () = term => {}
    }
}

#[cfg(test)]
mod tests {
    use super::purge_every_minutes;

    #[test]
    fn expired_entries_are_purged_within_half_a_lifetime() {
        // The defaults: 15-minute access tokens, 14-day refresh idle.
        assert_eq!(purge_every_minutes(900, 14 * 86_400), 7);
        // Short lifetimes: every minute, never more often.
        assert_eq!(purge_every_minutes(300, 120), 1);
        assert_eq!(purge_every_minutes(30, 30), 1);
        // Long ones: hourly at least.
        assert_eq!(purge_every_minutes(86_400, 86_400), 60);
    }
}
