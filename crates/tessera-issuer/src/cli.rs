//! The command line: parsing, dispatch to the verbs (`keys_cli`, `users`,
//! `clients_cli`), and turning errors into one line
//! and an exit code. This is the edge where the clock is read and `anyhow` lives.

use std::io::Write as _;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context as _;
use clap::{Args, Parser, Subcommand};
use tessera_issuer::config::{Config, KeyringKind, RawConfig, parse_duration};
use tessera_issuer::db::Db;
use tessera_issuer::keys::KeyStore;

use crate::keys_cli::{self, KeysVerb};
use tessera_keyring::{KeyDir, KeyringError};

/// Exit code when a rotation rule refused the change (`--force` overrides).
const EXIT_REFUSED: u8 = 3;
/// Exit code when another process held the keyring lock for too long.
const EXIT_LOCKED: u8 = 4;

#[derive(Debug, Parser)]
#[command(
    name = "tessera-issuer",
    version,
    about = "Tessera's JWT issuer and its operator tools"
)]
struct Cli {
    #[command(flatten)]
    global: GlobalArgs,
    /// What to do; `serve` when omitted.
    #[command(subcommand)]
    command: Option<Command>,
}

/// Settings every subcommand accepts; each also has an environment variable and
/// a config-file key. Flags win over the environment, which wins over the file.
#[derive(Debug, Args)]
struct GlobalArgs {
    /// TOML configuration file.
    #[arg(long, global = true, env = "TESSERA_CONFIG", value_name = "FILE")]
    config: Option<PathBuf>,
    /// The keyring directory [default: keys].
    #[arg(long, global = true, env = "TESSERA_KEYS_DIR", value_name = "DIR")]
    keys_dir: Option<PathBuf>,
    /// Longest access-token lifetime [default: 15m].
    #[arg(long, global = true, env = "TESSERA_ACCESS_TOKEN_LIFETIME", value_name = "DURATION", value_parser = parse_duration)]
    access_token_lifetime: Option<Duration>,
    /// How long verifiers may cache the JWKS [default: 5m].
    #[arg(long, global = true, env = "TESSERA_JWKS_CACHE_LIFETIME", value_name = "DURATION", value_parser = parse_duration)]
    jwks_cache_lifetime: Option<Duration>,
    /// Clock skew verifiers tolerate [default: 60s].
    #[arg(long, global = true, env = "TESSERA_CLOCK_LEEWAY", value_name = "DURATION", value_parser = parse_duration)]
    clock_leeway: Option<Duration>,
    /// RSA size of generated keys: 2048, 3072 or 4096 [default: 2048].
    #[arg(long, global = true, env = "TESSERA_KEY_BITS", value_name = "BITS")]
    key_bits: Option<usize>,
    /// Algorithm of generated keys: RS256, ES256 or EdDSA [default: RS256].
    #[arg(long, global = true, env = "TESSERA_SIGNING_ALG", value_name = "ALG")]
    signing_alg: Option<String>,
    /// Address to listen on (port 0 picks a free port) [default: 127.0.0.1:8080].
    #[arg(long, global = true, env = "TESSERA_LISTEN", value_name = "ADDR")]
    listen: Option<std::net::SocketAddr>,
    /// Serve /metrics on this address of its own, to any client that reaches
    /// it [default: on --listen, to loopback clients only].
    #[arg(
        long,
        global = true,
        env = "TESSERA_METRICS_LISTEN",
        value_name = "ADDR"
    )]
    metrics_listen: Option<std::net::SocketAddr>,
    /// Public issuer URL, the `iss` claim [default: http://<bound address>].
    #[arg(long, global = true, env = "TESSERA_ISSUER_URL", value_name = "URL")]
    issuer_url: Option<String>,
    /// Audience of issued tokens; repeat or comma-separate for several [default: tessera].
    #[arg(
        long = "audience",
        global = true,
        env = "TESSERA_AUDIENCE",
        value_name = "AUD",
        value_delimiter = ','
    )]
    audiences: Option<Vec<String>>,
    /// How often the service checks the keyring for CLI changes [default: 1s].
    #[arg(long, global = true, env = "TESSERA_KEYS_RELOAD_INTERVAL", value_name = "DURATION", value_parser = parse_duration)]
    keys_reload_interval: Option<Duration>,
    /// Database URL: sqlite://path/issuer.db or postgres://user@host/db [default: sqlite://issuer.db].
    #[arg(
        long = "database",
        global = true,
        env = "TESSERA_DATABASE",
        value_name = "URL"
    )]
    database_url: Option<String>,
    /// Where the keyring lives: files in --keys-dir, or the database (several instances) [default: files].
    #[arg(long, global = true, env = "TESSERA_KEYRING", value_name = "WHERE")]
    keyring: Option<tessera_issuer::config::KeyringKind>,
    /// File holding the database keyring's key-encryption key (or set TESSERA_KEY_ENCRYPTION_KEY).
    #[arg(
        long,
        global = true,
        env = "TESSERA_KEY_ENCRYPTION_KEY_FILE",
        value_name = "PATH"
    )]
    key_encryption_key_file: Option<PathBuf>,
    /// How long stored audit events are kept [default: 90days].
    #[arg(long, global = true, env = "TESSERA_AUDIT_RETENTION", value_name = "DURATION", value_parser = parse_duration)]
    audit_retention: Option<Duration>,
    /// Most connections to PostgreSQL per process [default: 10].
    #[arg(
        long,
        global = true,
        env = "TESSERA_DATABASE_MAX_CONNECTIONS",
        value_name = "N"
    )]
    database_max_connections: Option<u32>,
    /// A session ends after this long without a refresh [default: 14days].
    #[arg(long, global = true, env = "TESSERA_REFRESH_IDLE_LIFETIME", value_name = "DURATION", value_parser = parse_duration)]
    refresh_idle_lifetime: Option<Duration>,
    /// A session ends this long after login, however active [default: 30days].
    #[arg(long, global = true, env = "TESSERA_REFRESH_ABSOLUTE_LIFETIME", value_name = "DURATION", value_parser = parse_duration)]
    refresh_absolute_lifetime: Option<Duration>,
    /// The registered client `/login` issues tokens for [default: tessera-web].
    #[arg(long, global = true, env = "TESSERA_LOGIN_CLIENT", value_name = "ID")]
    login_client: Option<String>,
    /// Most password checks queued or running; beyond it logins get 503 [default: 64].
    #[arg(
        long,
        global = true,
        env = "TESSERA_PASSWORD_CHECK_QUEUE",
        value_name = "N"
    )]
    password_check_queue: Option<usize>,
    /// A reverse proxy (address or CIDR) whose Forwarded / X-Forwarded-For is
    /// believed; repeat or comma-separate [default: none, both ignored].
    #[arg(
        long = "trusted-proxy",
        global = true,
        env = "TESSERA_TRUSTED_PROXIES",
        value_name = "CIDR",
        value_delimiter = ','
    )]
    trusted_proxies: Option<Vec<String>>,
    /// How long a retried refresh gets the same pair; 0 turns it off [default: 10s].
    #[arg(long, global = true, env = "TESSERA_REFRESH_RETRY_WINDOW", value_name = "DURATION", value_parser = parse_duration)]
    refresh_retry_window: Option<Duration>,
    /// A request's headers must arrive within this; also the keep-alive idle wait [default: 10s].
    #[arg(long, global = true, env = "TESSERA_HEADER_READ_TIMEOUT", value_name = "DURATION", value_parser = parse_duration)]
    header_read_timeout: Option<Duration>,
    /// A request body must arrive whole within this of its headers [default: 10s].
    #[arg(long, global = true, env = "TESSERA_BODY_READ_TIMEOUT", value_name = "DURATION", value_parser = parse_duration)]
    body_read_timeout: Option<Duration>,
    /// A connection moving no byte for this long is closed [default: 60s].
    #[arg(long, global = true, env = "TESSERA_IDLE_TIMEOUT", value_name = "DURATION", value_parser = parse_duration)]
    idle_timeout: Option<Duration>,
    /// The most connections served at once [default: 1024].
    #[arg(long, global = true, env = "TESSERA_MAX_CONNECTIONS", value_name = "N")]
    max_connections: Option<usize>,
    /// A connection closes this long after it opened [default: 5m].
    #[arg(long, global = true, env = "TESSERA_MAX_CONNECTION_AGE", value_name = "DURATION", value_parser = parse_duration)]
    max_connection_age: Option<Duration>,
    /// How long requests in flight may finish after SIGTERM [default: 10s].
    #[arg(long, global = true, env = "TESSERA_SHUTDOWN_GRACE", value_name = "DURATION", value_parser = parse_duration)]
    shutdown_grace: Option<Duration>,
    /// A browser origin (`https://app.example.com`) whose pages may use the
    /// cookie sessions at /session, with CORS; repeat or comma-separate
    /// [default: none; the issuer's own origin always may].
    #[arg(
        long = "allowed-origin",
        global = true,
        env = "TESSERA_ALLOWED_ORIGINS",
        value_name = "ORIGIN",
        value_delimiter = ','
    )]
    allowed_origins: Option<Vec<String>>,
    /// The access cookie's Domain, e.g. example.com [default: none, host-only].
    #[arg(
        long,
        global = true,
        env = "TESSERA_COOKIE_DOMAIN",
        value_name = "DOMAIN"
    )]
    cookie_domain: Option<String>,
    /// The access token's cookie name [default: tessera_access].
    #[arg(
        long,
        global = true,
        env = "TESSERA_ACCESS_COOKIE_NAME",
        value_name = "NAME"
    )]
    access_cookie_name: Option<String>,
    /// The refresh token's cookie name [default: tessera_refresh].
    #[arg(
        long,
        global = true,
        env = "TESSERA_REFRESH_COOKIE_NAME",
        value_name = "NAME"
    )]
    refresh_cookie_name: Option<String>,
    /// How long to wait for another process's keyring lock.
    #[arg(long, global = true, env = "TESSERA_LOCK_TIMEOUT", value_name = "DURATION", value_parser = parse_duration, default_value = "30s")]
    lock_timeout: Duration,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the issuer's HTTP service (the default).
    Serve,
    /// Manage signing keys: generate, rotate, retire, revoke, prune.
    Keys {
        #[command(subcommand)]
        verb: KeysVerb,
    },
    /// Manage users: add, list, set roles, reset passwords, disable, delete.
    Users {
        #[command(subcommand)]
        verb: crate::users::UsersVerb,
    },
    /// Manage the OAuth clients tokens may be issued to: add, list, show,
    /// update, remove, rotate-secret.
    Clients {
        #[command(subcommand)]
        verb: crate::clients_cli::ClientsVerb,
    },
    /// End every session of a user and revoke every token issued to them until
    /// now (resource servers following the revocation feed refuse them).
    RevokeUser {
        /// The username.
        name: String,
    },
    /// Stop a client at once: disable it and revoke every token it holds
    /// (client credentials) or its users got through it, at every resource
    /// server following the revocation feed (`clients update ID --enable`
    /// lets it in again).
    RevokeClient {
        /// The client id.
        #[arg(allow_hyphen_values = true)]
        client_id: String,
    },
    /// End a session (its refresh tokens) and revoke its access tokens.
    RevokeSession {
        /// The session id (`sid`).
        #[arg(allow_hyphen_values = true)]
        sid: String,
    },
    /// Revoke one access token.
    RevokeToken {
        /// The token id (`jti`).
        #[arg(allow_hyphen_values = true)]
        jti: String,
    },
    /// Deprecated: register callers of `/introspect` with `clients add ID
    /// --confidential --introspect`. Creates credentials for the old
    /// `[[introspection_clients]]` table: prints the secret
    /// (give it to the caller) and the `[[introspection_clients]]` entry for
    /// the configuration file, which holds only its hash. Nothing is stored.
    IntrospectionClient {
        /// The caller's `client_id`.
        client_id: String,
    },
    /// Show the stored security events: logins, refresh-token reuse,
    /// revocations, logouts, changes to users (oldest first).
    Audit {
        /// Only this user's events (by username).
        #[arg(long, value_name = "NAME")]
        user: Option<String>,
        /// How far back.
        #[arg(long, value_name = "DURATION", value_parser = parse_duration, default_value = "24h")]
        since: Duration,
        /// At most this many, the latest.
        #[arg(long, value_name = "N", default_value_t = 100)]
        limit: i64,
        /// Machine-readable output.
        #[arg(long)]
        json: bool,
    },
}

pub(crate) fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) if is_broken_pipe(&err) => ExitCode::SUCCESS,
        Err(err) => {
            let code = match err.downcast_ref::<KeyringError>() {
                Some(KeyringError::Refused(_)) => EXIT_REFUSED,
                Some(KeyringError::Locked { .. }) => EXIT_LOCKED,
                _ => 1,
            };
            let _ = writeln!(
                std::io::stderr(),
                "error: {}",
                one_line(&format!("{err:#}"))
            );
            ExitCode::from(code)
        }
    }
}

/// `tessera-issuer keys list | head` is not an error.
fn is_broken_pipe(err: &anyhow::Error) -> bool {
    let pipe = Some(std::io::ErrorKind::BrokenPipe);
    err.chain().any(|cause| {
        cause.downcast_ref::<std::io::Error>().map(|e| e.kind()) == pipe
            || cause
                .downcast_ref::<serde_json::Error>()
                .and_then(|e| e.io_error_kind())
                == pipe
    })
}

/// Operators and scripts get one line per error, whatever the source printed.
fn one_line(text: &str) -> String {
    text.lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .collect::<Vec<_>>()
        .join(" ")
}

fn load_config(global: &GlobalArgs) -> anyhow::Result<Config> {
    let file = match &global.config {
        Some(path) => RawConfig::from_file(path)?,
        None => RawConfig::default(),
    };
    let flags = RawConfig {
        keys_dir: global.keys_dir.clone(),
        access_token_lifetime: global.access_token_lifetime,
        jwks_cache_lifetime: global.jwks_cache_lifetime,
        clock_leeway: global.clock_leeway,
        key_bits: global.key_bits,
        signing_alg: global.signing_alg.clone(),
        listen: global.listen,
        metrics_listen: global.metrics_listen,
        issuer_url: global.issuer_url.clone(),
        audiences: global.audiences.clone(),
        keys_reload_interval: global.keys_reload_interval,
        database_url: global.database_url.clone(),
        database_max_connections: global.database_max_connections,
        keyring: global.keyring,
        audit_retention: global.audit_retention,
        key_encryption_key_file: global.key_encryption_key_file.clone(),
        refresh_idle_lifetime: global.refresh_idle_lifetime,
        refresh_absolute_lifetime: global.refresh_absolute_lifetime,
        // Only in the file: secrets' hashes do not belong on a command line.
        introspection_clients: None,
        login_client: global.login_client.clone(),
        password_check_queue: global.password_check_queue,
        trusted_proxies: global.trusted_proxies.clone(),
        refresh_retry_window: global.refresh_retry_window,
        header_read_timeout: global.header_read_timeout,
        body_read_timeout: global.body_read_timeout,
        idle_timeout: global.idle_timeout,
        max_connections: global.max_connections,
        max_connection_age: global.max_connection_age,
        shutdown_grace: global.shutdown_grace,
        allowed_origins: global.allowed_origins.clone(),
        cookie_domain: global.cookie_domain.clone(),
        access_cookie_name: global.access_cookie_name.clone(),
        refresh_cookie_name: global.refresh_cookie_name.clone(),
    };
    Ok(file.overlay(flags).validate()?)
}

fn run(cli: Cli) -> anyhow::Result<()> {
    let config = load_config(&cli.global)?;
    match cli.command.unwrap_or(Command::Serve) {
        Command::Serve => serve(config),
        Command::Users { verb } => crate::users::run(&config, verb),
        Command::Clients { verb } => crate::clients_cli::run(&config, verb),
        Command::RevokeUser { name } => {
            crate::users::revoke(&config, crate::users::RevokeTarget::User, &name)
        }
        Command::RevokeClient { client_id } => {
            crate::users::revoke(&config, crate::users::RevokeTarget::Client, &client_id)
        }
        Command::RevokeSession { sid } => {
            crate::users::revoke(&config, crate::users::RevokeTarget::Session, &sid)
        }
        Command::RevokeToken { jti } => {
            crate::users::revoke(&config, crate::users::RevokeTarget::Token, &jti)
        }
        Command::Audit {
            user,
            since,
            limit,
            json,
        } => crate::users::audit_list(&config, user, since, limit, json),
        Command::IntrospectionClient { client_id } => {
            print_introspection_client(&mut std::io::stdout().lock(), &client_id)
        }
        Command::Keys {
            verb: KeysVerb::NewKek,
        } => {
            // Before any keyring is opened: a database keyring's settings
            // cannot be complete before its key exists.
            keys_cli::print_new_kek(&mut std::io::stdout().lock())
        }
        Command::Keys { verb } => {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .context("starting the async runtime")?;
            runtime.block_on(async {
                let store = match config.keyring {
                    KeyringKind::Files => KeyStore::Files(
                        KeyDir::new(&config.keys_dir).with_lock_wait(cli.global.lock_timeout),
                    ),
                    KeyringKind::Database => {
                        let db = Db::connect(&config.database_url).await?;
                        tessera_issuer::serve::key_store(&config, &db)?
                    }
                };
                keys_cli::keys(&store, &config, verb).await
            })
        }
    }
}

/// Runs the HTTP service until Ctrl-C or SIGTERM.
fn serve(config: Config) -> anyhow::Result<()> {
    init_logging();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    runtime.block_on(async {
        let mut prepared = tessera_issuer::serve::Prepared::new(config).await?;
        // Scripts and tests read the first line to learn the bound port.
        let mut out = std::io::stdout().lock();
        writeln!(
            out,
            "tessera-issuer listening on http://{}",
            prepared.addr()
        )?;
        writeln!(out, "issuer: {}", prepared.issuer())?;
        if let Some(metrics) = prepared.metrics_addr() {
            writeln!(out, "metrics: http://{metrics}/metrics")?;
        }
        if let Some(admin) = prepared.take_first_admin() {
            print_first_admin_to(&mut out, &admin)?;
        }
        out.flush()?;
        drop(out);
        if let Some(late) = prepared.take_late_first_admin() {
            // The database was down at start; the admin is created (and shown)
            // once it answers, if it holds no user by then.
            tokio::spawn(async move {
                if let Ok(admin) = late.await {
                    let _ = print_first_admin(&admin);
                }
            });
        }
        prepared
            .run(tessera_issuer::serve::shutdown_signal())
            .await?;
        anyhow::Ok(())
    })
}

/// Printed once, to the terminal only: the one time this password exists
/// outside its hash. Never logged.
fn print_first_admin_to(
    out: &mut impl std::io::Write,
    admin: &tessera_issuer::serve::FirstAdmin,
) -> std::io::Result<()> {
    writeln!(
        out,
        "first start: created user {:?} with role admin and password {}",
        admin.username, admin.password
    )?;
    writeln!(
        out,
        "(shown once; change it with `tessera-issuer users reset-password {}`)",
        admin.username
    )?;
    out.flush()
}

fn print_first_admin(admin: &tessera_issuer::serve::FirstAdmin) -> std::io::Result<()> {
    print_first_admin_to(&mut std::io::stdout().lock(), admin)
}

/// Structured logs on stderr; `RUST_LOG` (e.g. `info`, `warn,audit=info`) filters.
fn init_logging() {
    use tracing_subscriber::filter::Targets;
    use tracing_subscriber::prelude::*;
    let filter = std::env::var("RUST_LOG")
        .ok()
        .and_then(|v| v.parse::<Targets>().ok())
        .unwrap_or_else(|| Targets::new().with_default(tracing::Level::INFO));
    let _ = tracing_subscriber::registry()
        .with(
            tracing_subscriber::fmt::layer()
                .with_writer(std::io::stderr)
                .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr())),
        )
        .with(filter)
        .try_init();
}

/// `introspection-client ID`: a secret for the caller, and the entry for the
/// configuration.
fn print_introspection_client(
    out: &mut impl std::io::Write,
    client_id: &str,
) -> anyhow::Result<()> {
    if tessera_issuer::validate::client_id(client_id).is_err() || client_id.contains(':') {
        anyhow::bail!(
            "{client_id:?} is not a client id (1 to 64 visible ASCII characters, no colon)"
        );
    }
    let (secret, hash) = tessera_issuer::service::clients::new_client_secret();
    writeln!(
        out,
        "client secret (give it to the caller; shown once): {secret}"
    )?;
    writeln!(out)?;
    writeln!(out, "[[introspection_clients]]")?;
    writeln!(out, "client_id = {}", toml_string(client_id))?;
    writeln!(out, "secret_sha256 = \"{hash}\"")?;
    Ok(())
}

/// A TOML basic string.
fn toml_string(text: &str) -> String {
    serde_json::to_string(text).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::panic)]

    use clap::Parser as _;

    use super::{Cli, Command};
    use crate::keys_cli::KeysVerb;

    /// A kid is base64url and one in 32 starts with `-`: it must reach the
    /// verb as a kid (a flag-looking kid once failed with "unexpected argument").
    #[test]
    fn a_kid_starting_with_a_dash_is_a_kid() {
        let kid = "-wXk3mF9yQ2TgJ7zN0aBcDeFgHiJkLmNoPqRsTuVwXy";
        for verb in ["retire", "revoke"] {
            let cli = Cli::try_parse_from(["tessera-issuer", "keys", verb, kid]).unwrap();
            match cli.command {
                Some(Command::Keys {
                    verb: KeysVerb::Retire { kid: parsed } | KeysVerb::Revoke { kid: parsed },
                }) => assert_eq!(parsed, kid),
                other => panic!("{verb}: parsed as {other:?}"),
            }
        }
        // Flags after it still work.
        let cli =
            Cli::try_parse_from(["tessera-issuer", "keys", "revoke", kid, "--keys-dir", "/k"])
                .unwrap();
        assert_eq!(
            cli.global.keys_dir.as_deref(),
            Some(std::path::Path::new("/k"))
        );
    }
}
