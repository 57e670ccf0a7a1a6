//! Configuration: a TOML file, then environment variables, then flags; validated
//! once into [`Config`]. Unknown keys in the file are errors, not silently ignored.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::db::PoolSettings;
use serde::Deserialize;
use tessera_keyring::{Algorithm, DEFAULT_BITS, GENERATE_BITS, KeySpec, RotationPolicy};

/// How long after a rotation the same refresh token gets the same pair back,
/// unless configured (`refresh_retry_window`; 0 turns it off).
pub const RETRY_WINDOW_SECS: i64 = 10;

/// The longest `refresh_retry_window` the configuration allows.
pub const MAX_RETRY_WINDOW_SECS: i64 = 60;

/// The validated configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Config {
    /// Where the keyring lives. Default `keys`.
    pub keys_dir: PathBuf,
    /// The lifetimes the rotation rules are computed from.
    pub rotation: RotationPolicy,
    /// The size of newly generated RSA keys. Default 2048.
    pub key_bits: usize,
    /// The algorithm of newly generated keys (`keys init|generate|rotate`
    /// without `--alg`, the first start's keyring, an emergency revocation's
    /// replacements). Default RS256. Changing it changes no existing key: the
    /// next rotation publishes a key of the new algorithm, the one after
    /// makes it sign.
    pub signing_alg: Algorithm,
    /// Where the HTTP service listens. Default `127.0.0.1:8080`; port 0 picks one.
    pub listen: SocketAddr,
    /// Where `/metrics` answers any client, on a listener of its own. `None`
    /// (the default): on `listen`, to loopback clients only.
    pub metrics_listen: Option<SocketAddr>,
    /// The public issuer URL (the `iss` claim), without a trailing slash. `None`:
    /// `http://<bound address>`, which suits loopback demos only.
    pub issuer_url: Option<String>,
    /// The audiences access tokens are issued for (`aud`). Default `["tessera"]`.
    pub audiences: Vec<String>,
    /// How often the service checks the keyring for changes made by the CLI.
    /// Default 1 s; at most 5 s.
    pub keys_reload_interval: Duration,
    /// The database. Default `sqlite://issuer.db` (created on first start);
    /// `postgres://...` for several instances sharing one database.
    pub database_url: String,
    /// PostgreSQL pool bounds (SQLite ignores them).
    pub database_pool: PoolSettings,
    /// Where the keyring lives. Default: files in `keys_dir`.
    pub keyring: KeyringKind,
    /// How long stored audit events are kept. Default 90 days.
    pub audit_retention: Duration,
    /// The file holding the key-encryption key of a database keyring (or the
    /// `TESSERA_KEY_ENCRYPTION_KEY` environment variable). Never in the database.
    pub key_encryption_key_file: Option<PathBuf>,
    /// A session ends after this long without a refresh. Default 14 days.
    pub refresh_idle_lifetime: Duration,
    /// A session ends this long after login, however active. Default 30 days.
    pub refresh_absolute_lifetime: Duration,
    /// Deprecated: callers of `/introspect` from the configuration file.
    /// Register them as clients instead (`clients add ID --confidential
    /// --introspect`); still honoured, with a warning at start.
    pub introspection_clients: Vec<IntrospectionClient>,
    /// The registered client `/login` issues tokens for. Default
    /// `tessera-web`, registered when the registry is empty.
    pub login_client: String,
    /// The most password checks queued or running at once; beyond it logins
    /// get 503 with `Retry-After` before any work. Default 64.
    pub password_check_queue: usize,
    /// Reverse proxies whose `Forwarded` / `X-Forwarded-For` is believed.
    /// Default none: both headers are ignored.
    pub trusted_proxies: Vec<crate::proxies::Cidr>,
    /// How long after a rotation a retry with the used refresh token gets the
    /// same pair (audited as `refresh_token_replay`). Default 10 s; 0 turns
    /// it off (then every second use is reuse and revokes the session).
    pub refresh_retry_window: Duration,
    /// The HTTP server's timeouts, connection cap and shutdown grace.
    pub http_limits: tessera_serve::Limits,
    /// Cookie sessions (`/session`): the cookies and the browser origins
    /// allowed to use them.
    pub cookie_sessions: CookieSessions,
}

impl Config {
    /// What new keys are made as: [`Config::signing_alg`], RSA keys of
    /// [`Config::key_bits`].
    pub fn key_spec(&self) -> KeySpec {
        KeySpec::new(self.signing_alg, self.key_bits)
    }
}

/// Cookie sessions for same-site web apps (`POST /session` and its
/// `/refresh` and `/logout`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CookieSessions {
    /// Origins (`https://app.example.com`) whose pages may use the session
    /// endpoints, with CORS and credentials; the issuer's own origin always
    /// may. Default none.
    pub allowed_origins: Vec<String>,
    /// The access cookie's `Domain` (so sibling hosts' resource servers
    /// receive it). Default none: host-only. The refresh cookie is always
    /// host-only: only the issuer ever reads it.
    pub cookie_domain: Option<String>,
    /// The access token's cookie. Default `tessera_access`.
    pub access_cookie: String,
    /// The refresh token's cookie. Default `tessera_refresh`.
    pub refresh_cookie: String,
}

impl Default for CookieSessions {
    fn default() -> Self {
        Self {
            allowed_origins: Vec::new(),
            cookie_domain: None,
            access_cookie: "tessera_access".to_owned(),
            refresh_cookie: "tessera_refresh".to_owned(),
        }
    }
}

/// A caller allowed to introspect tokens, authenticated with HTTP Basic.
#[derive(Clone, PartialEq, Eq)]
pub struct IntrospectionClient {
    /// Its `client_id`.
    pub client_id: String,
    /// SHA-256 of its secret (the secret itself is never stored; it is 256
    /// random bits, so a fast hash suffices).
    pub secret_sha256: [u8; 32],
}

impl std::fmt::Debug for IntrospectionClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("IntrospectionClient")
            .field("client_id", &self.client_id)
            .finish_non_exhaustive()
    }
}

/// `[[introspection_clients]]` in the file.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawIntrospectionClient {
    /// `client_id = "orders-api"`
    pub client_id: String,
    /// `secret_sha256 = "…"` (base64url), as `tessera-issuer introspection-client` prints it.
    pub secret_sha256: String,
}

/// Where the keyring lives.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum KeyringKind {
    /// PEM files and a manifest in `keys_dir` (one machine).
    #[default]
    Files,
    /// The issuer's database, keys sealed under a key-encryption key (several
    /// instances sharing one database).
    Database,
}

/// The settings as a file or the command line gives them: every one optional.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawConfig {
    /// `keys_dir = "keys"`
    pub keys_dir: Option<PathBuf>,
    /// `access_token_lifetime = "15m"`
    #[serde(default, deserialize_with = "duration")]
    pub access_token_lifetime: Option<Duration>,
    /// `jwks_cache_lifetime = "5m"`
    #[serde(default, deserialize_with = "duration")]
    pub jwks_cache_lifetime: Option<Duration>,
    /// `clock_leeway = "60s"`
    #[serde(default, deserialize_with = "duration")]
    pub clock_leeway: Option<Duration>,
    /// `key_bits = 2048`
    pub key_bits: Option<usize>,
    /// `signing_alg = "ES256"` (RS256, ES256 or EdDSA)
    pub signing_alg: Option<String>,
    /// `listen = "127.0.0.1:8080"`
    pub listen: Option<SocketAddr>,
    /// `metrics_listen = "127.0.0.1:9464"`
    pub metrics_listen: Option<SocketAddr>,
    /// `issuer_url = "https://auth.example.com"`
    pub issuer_url: Option<String>,
    /// `audiences = ["https://api.example.com"]`
    pub audiences: Option<Vec<String>>,
    /// `keys_reload_interval = "1s"`
    #[serde(default, deserialize_with = "duration")]
    pub keys_reload_interval: Option<Duration>,
    /// `database_url = "sqlite://issuer.db"` or `"postgres://host/db"`
    pub database_url: Option<String>,
    /// `database_max_connections = 10` (PostgreSQL only)
    pub database_max_connections: Option<u32>,
    /// `keyring = "files"` or `"database"`
    pub keyring: Option<KeyringKind>,
    /// `audit_retention = "90days"`
    #[serde(default, deserialize_with = "duration")]
    pub audit_retention: Option<Duration>,
    /// `key_encryption_key_file = "/run/secrets/tessera-kek"`
    pub key_encryption_key_file: Option<PathBuf>,
    /// `refresh_idle_lifetime = "14days"`
    #[serde(default, deserialize_with = "duration")]
    pub refresh_idle_lifetime: Option<Duration>,
    /// `refresh_absolute_lifetime = "30days"`
    #[serde(default, deserialize_with = "duration")]
    pub refresh_absolute_lifetime: Option<Duration>,
    /// `[[introspection_clients]]` tables (file only; deprecated).
    pub introspection_clients: Option<Vec<RawIntrospectionClient>>,
    /// `login_client = "tessera-web"`
    pub login_client: Option<String>,
    /// `password_check_queue = 64`
    pub password_check_queue: Option<usize>,
    /// `trusted_proxies = ["10.0.0.0/8"]`
    pub trusted_proxies: Option<Vec<String>>,
    /// `refresh_retry_window = "10s"`
    #[serde(default, deserialize_with = "duration")]
    pub refresh_retry_window: Option<Duration>,
    /// `header_read_timeout = "10s"`
    #[serde(default, deserialize_with = "duration")]
    pub header_read_timeout: Option<Duration>,
    /// `body_read_timeout = "10s"`
    #[serde(default, deserialize_with = "duration")]
    pub body_read_timeout: Option<Duration>,
    /// `idle_timeout = "60s"`
    #[serde(default, deserialize_with = "duration")]
    pub idle_timeout: Option<Duration>,
    /// `max_connections = 1024`
    pub max_connections: Option<usize>,
    /// `max_connection_age = "5m"`
    #[serde(default, deserialize_with = "duration")]
    pub max_connection_age: Option<Duration>,
    /// `shutdown_grace = "10s"`
    #[serde(default, deserialize_with = "duration")]
    pub shutdown_grace: Option<Duration>,
    /// `allowed_origins = ["https://app.example.com"]`
    pub allowed_origins: Option<Vec<String>>,
    /// `cookie_domain = "example.com"`
    pub cookie_domain: Option<String>,
    /// `access_cookie_name = "tessera_access"`
    pub access_cookie_name: Option<String>,
    /// `refresh_cookie_name = "tessera_refresh"`
    pub refresh_cookie_name: Option<String>,
}

/// A configuration that cannot be used.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    /// The file cannot be read.
    #[error("reading config file {}: {source}", path.display())]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The file is not valid TOML or has unknown or mistyped keys.
    #[error("config file {}: {source}", path.display())]
    Parse {
        /// The file.
        path: PathBuf,
        /// Where and why.
        source: Box<toml::de::Error>,
    },
    /// A value is out of range.
    #[error("invalid setting `{key}`: {problem}")]
    Invalid {
        /// The setting.
        key: &'static str,
        /// Why it is refused.
        problem: String,
    },
}

fn duration<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<Duration>, D::Error> {
    let text = String::deserialize(d)?;
    parse_duration(&text)
        .map(Some)
        .map_err(serde::de::Error::custom)
}

/// Parses a duration like `15m`, `90s`, `1h 30m` or `14days`.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    humantime::parse_duration(text)
        .map_err(|e| format!("{text:?} is not a duration like \"15m\" or \"60s\" ({e})"))
}

impl RawConfig {
    /// Reads a TOML config file.
    pub fn from_file(path: &Path) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_owned(),
            source,
        })?;
        toml::from_str(&text).map_err(|source| ConfigError::Parse {
            path: path.to_owned(),
            source: Box::new(source),
        })
    }

    /// Settings from `over` win over settings from `self`.
    pub fn overlay(self, over: RawConfig) -> Self {
        Self {
            keys_dir: over.keys_dir.or(self.keys_dir),
            access_token_lifetime: over.access_token_lifetime.or(self.access_token_lifetime),
            jwks_cache_lifetime: over.jwks_cache_lifetime.or(self.jwks_cache_lifetime),
            clock_leeway: over.clock_leeway.or(self.clock_leeway),
            key_bits: over.key_bits.or(self.key_bits),
            signing_alg: over.signing_alg.or(self.signing_alg),
            listen: over.listen.or(self.listen),
            metrics_listen: over.metrics_listen.or(self.metrics_listen),
            issuer_url: over.issuer_url.or(self.issuer_url),
            audiences: over.audiences.or(self.audiences),
            keys_reload_interval: over.keys_reload_interval.or(self.keys_reload_interval),
            database_url: over.database_url.or(self.database_url),
            database_max_connections: over
                .database_max_connections
                .or(self.database_max_connections),
            keyring: over.keyring.or(self.keyring),
            audit_retention: over.audit_retention.or(self.audit_retention),
            key_encryption_key_file: over
                .key_encryption_key_file
                .or(self.key_encryption_key_file),
            refresh_idle_lifetime: over.refresh_idle_lifetime.or(self.refresh_idle_lifetime),
            refresh_absolute_lifetime: over
                .refresh_absolute_lifetime
                .or(self.refresh_absolute_lifetime),
            introspection_clients: over.introspection_clients.or(self.introspection_clients),
            login_client: over.login_client.or(self.login_client),
            password_check_queue: over.password_check_queue.or(self.password_check_queue),
            trusted_proxies: over.trusted_proxies.or(self.trusted_proxies),
            refresh_retry_window: over.refresh_retry_window.or(self.refresh_retry_window),
            header_read_timeout: over.header_read_timeout.or(self.header_read_timeout),
            body_read_timeout: over.body_read_timeout.or(self.body_read_timeout),
            idle_timeout: over.idle_timeout.or(self.idle_timeout),
            max_connections: over.max_connections.or(self.max_connections),
            max_connection_age: over.max_connection_age.or(self.max_connection_age),
            shutdown_grace: over.shutdown_grace.or(self.shutdown_grace),
            allowed_origins: over.allowed_origins.or(self.allowed_origins),
            cookie_domain: over.cookie_domain.or(self.cookie_domain),
            access_cookie_name: over.access_cookie_name.or(self.access_cookie_name),
            refresh_cookie_name: over.refresh_cookie_name.or(self.refresh_cookie_name),
        }
    }

    /// Fills defaults and checks every value once.
    pub fn validate(self) -> Result<Config, ConfigError> {
        let defaults = RotationPolicy::default();
        let within = |key: &'static str, value: Duration, min: Duration, max: Duration| {
            if value < min || value > max {
                Err(ConfigError::Invalid {
                    key,
                    problem: format!(
                        "{} is outside {} ..= {}",
                        humantime::format_duration(value),
                        humantime::format_duration(min),
                        humantime::format_duration(max)
                    ),
                })
            } else {
                Ok(value)
            }
        };
        const SECOND: Duration = Duration::from_secs(1);
        const DAY: Duration = Duration::from_secs(24 * 3600);
        let rotation = RotationPolicy {
            access_token_lifetime: within(
                "access_token_lifetime",
                self.access_token_lifetime
                    .unwrap_or(defaults.access_token_lifetime),
                SECOND,
                DAY,
            )?,
            jwks_cache_lifetime: within(
                "jwks_cache_lifetime",
                self.jwks_cache_lifetime
                    .unwrap_or(defaults.jwks_cache_lifetime),
                SECOND,
                DAY,
            )?,
            clock_leeway: within(
                "clock_leeway",
                self.clock_leeway.unwrap_or(defaults.clock_leeway),
                Duration::ZERO,
                Duration::from_secs(300),
            )?,
        };
        let key_bits = self.key_bits.unwrap_or(DEFAULT_BITS);
        if !GENERATE_BITS.contains(&key_bits) {
            return Err(ConfigError::Invalid {
                key: "key_bits",
                problem: format!("{key_bits} is not one of 2048, 3072, 4096"),
            });
        }
        let signing_alg = match self.signing_alg.as_deref() {
            None => tessera_keyring::DEFAULT_ALG,
            Some(name) => name
                .parse()
                .map_err(
                    |e: tessera_keyring::UnknownAlgorithm| ConfigError::Invalid {
                        key: "signing_alg",
                        problem: e.to_string(),
                    },
                )?,
        };
        let issuer_url = self.issuer_url.map(validate_issuer_url).transpose()?;
        let audiences = self.audiences.unwrap_or_else(|| vec!["tessera".to_owned()]);
        if audiences.is_empty()
            || audiences
                .iter()
                .any(|a| a.trim().is_empty() || a.trim() != a)
        {
            return Err(ConfigError::Invalid {
                key: "audiences",
                problem: "at least one audience, none empty or with surrounding spaces".to_owned(),
            });
        }
        let refresh_absolute_lifetime = within(
            "refresh_absolute_lifetime",
            self.refresh_absolute_lifetime.unwrap_or(30 * DAY),
            SECOND,
            365 * DAY,
        )?;
        let refresh_idle_lifetime = within(
            "refresh_idle_lifetime",
            self.refresh_idle_lifetime.unwrap_or(14 * DAY),
            SECOND,
            refresh_absolute_lifetime,
        )?;
        let keys_reload_interval = within(
            "keys_reload_interval",
            self.keys_reload_interval.unwrap_or(SECOND),
            Duration::from_millis(10),
            Duration::from_secs(5),
        )?;
        let audit_retention = within(
            "audit_retention",
            self.audit_retention.unwrap_or(90 * DAY),
            DAY,
            3650 * DAY,
        )?;
        let max_connections = self.database_max_connections.unwrap_or(10);
        if !(1..=1000).contains(&max_connections) {
            return Err(ConfigError::Invalid {
                key: "database_max_connections",
                problem: format!("{max_connections} is outside 1 ..= 1000"),
            });
        }
        let database_pool = PoolSettings {
            max_connections,
            ..PoolSettings::default()
        };
        let introspection_clients = introspection_clients(self.introspection_clients)?;
        let refresh_retry_window = within(
            "refresh_retry_window",
            self.refresh_retry_window
                .unwrap_or(Duration::from_secs(RETRY_WINDOW_SECS as u64)),
            Duration::ZERO,
            Duration::from_secs(MAX_RETRY_WINDOW_SECS as u64),
        )?;
        let trusted_proxies = self
            .trusted_proxies
            .unwrap_or_default()
            .iter()
            .map(|text| crate::proxies::Cidr::parse(text))
            .collect::<Result<Vec<_>, _>>()
            .map_err(|problem| ConfigError::Invalid {
                key: "trusted_proxies",
                problem,
            })?;
        let password_check_queue = self
            .password_check_queue
            .unwrap_or(crate::passwords::DEFAULT_QUEUE);
        if !(1..=100_000).contains(&password_check_queue) {
            return Err(ConfigError::Invalid {
                key: "password_check_queue",
                problem: format!("{password_check_queue} is outside 1 ..= 100000"),
            });
        }
        let http_limits = {
            let defaults = tessera_serve::Limits::default();
            let mut limits = defaults;
            let minute = Duration::from_secs(60);
            limits.header_read_timeout = within(
                "header_read_timeout",
                self.header_read_timeout
                    .unwrap_or(defaults.header_read_timeout),
                SECOND,
                minute,
            )?;
            limits.body_read_timeout = within(
                "body_read_timeout",
                self.body_read_timeout.unwrap_or(defaults.body_read_timeout),
                SECOND,
                minute,
            )?;
            limits.idle_timeout = within(
                "idle_timeout",
                self.idle_timeout.unwrap_or(defaults.idle_timeout),
                SECOND,
                10 * minute,
            )?;
            limits.max_connection_age = within(
                "max_connection_age",
                self.max_connection_age
                    .unwrap_or(defaults.max_connection_age),
                SECOND,
                DAY,
            )?;
            limits.shutdown_grace = within(
                "shutdown_grace",
                self.shutdown_grace.unwrap_or(defaults.shutdown_grace),
                Duration::ZERO,
                10 * minute,
            )?;
            limits.max_connections = self.max_connections.unwrap_or(defaults.max_connections);
            if !(1..=1_000_000).contains(&limits.max_connections) {
                return Err(ConfigError::Invalid {
                    key: "max_connections",
                    problem: format!("{} is outside 1 ..= 1000000", limits.max_connections),
                });
            }
            limits
        };
        let login_client = self
            .login_client
            .unwrap_or_else(|| "tessera-web".to_owned());
        crate::clients::check_client_id(&login_client).map_err(|problem| ConfigError::Invalid {
            key: "login_client",
            problem,
        })?;
        let cookie_sessions = cookie_sessions(
            self.allowed_origins,
            self.cookie_domain,
            self.access_cookie_name,
            self.refresh_cookie_name,
            issuer_url.as_deref(),
        )?;
        Ok(Config {
            keys_dir: self.keys_dir.unwrap_or_else(|| PathBuf::from("keys")),
            rotation,
            key_bits,
            signing_alg,
            listen: self
                .listen
                .unwrap_or_else(|| SocketAddr::from(([127, 0, 0, 1], 8080))),
            metrics_listen: self.metrics_listen,
            issuer_url,
            audiences,
            keys_reload_interval,
            database_url: self
                .database_url
                .unwrap_or_else(|| "sqlite://issuer.db".to_owned()),
            database_pool,
            keyring: self.keyring.unwrap_or_default(),
            audit_retention,
            key_encryption_key_file: self.key_encryption_key_file,
            refresh_idle_lifetime,
            refresh_absolute_lifetime,
            introspection_clients,
            login_client,
            password_check_queue,
            trusted_proxies,
            refresh_retry_window,
            http_limits,
            cookie_sessions,
        })
    }
}

/// Checks the cookie-session settings: well-formed origins, cookie names
/// that are RFC 6265 tokens (and differ), and a cookie domain the issuer's
/// host is within (a browser drops a `Set-Cookie` whose `Domain` is not).
fn cookie_sessions(
    origins: Option<Vec<String>>,
    domain: Option<String>,
    access: Option<String>,
    refresh: Option<String>,
    issuer_url: Option<&str>,
) -> Result<CookieSessions, ConfigError> {
    let defaults = CookieSessions::default();
    let mut allowed_origins = Vec::new();
    for origin in origins.unwrap_or_default() {
        let origin =
            crate::validate::origin(origin.trim()).map_err(|problem| ConfigError::Invalid {
                key: "allowed_origins",
                problem,
            })?;
        if !allowed_origins.contains(&origin) {
            allowed_origins.push(origin);
        }
    }
    let name = |key: &'static str, value: Option<String>, default: String| {
        let value = value.unwrap_or(default);
        crate::validate::cookie_name(&value)
            .map(|()| value)
            .map_err(|problem| ConfigError::Invalid { key, problem })
    };
    let access_cookie = name("access_cookie_name", access, defaults.access_cookie)?;
    let refresh_cookie = name("refresh_cookie_name", refresh, defaults.refresh_cookie)?;
    // Browsers drop a prefixed cookie whose attributes break its promise:
    // `__Secure-` needs Secure, `__Host-` also Path=/ and no Domain.
    let secure = issuer_url.is_some_and(|u| !crate::validate::is_loopback_http(u));
    for (key, name, path_is_root, has_domain) in [
        ("access_cookie_name", &access_cookie, true, domain.is_some()),
        ("refresh_cookie_name", &refresh_cookie, false, false),
    ] {
        let lower = name.to_ascii_lowercase();
        let host = lower.starts_with("__host-");
        let problem = if (host || lower.starts_with("__secure-")) && !secure {
            Some("a __Secure- or __Host- cookie needs an https issuer_url (it is Secure only then)")
        } else if host && !path_is_root {
            Some("a __Host- cookie needs Path=/, and the refresh cookie's path is /session")
        } else if host && has_domain {
            Some("a __Host- cookie may not have a Domain: unset cookie_domain")
        } else {
            None
        };
        if let Some(problem) = problem {
            return Err(ConfigError::Invalid {
                key,
                problem: format!("{name:?}: {problem}"),
            });
        }
    }
    if access_cookie == refresh_cookie {
        return Err(ConfigError::Invalid {
            key: "refresh_cookie_name",
            problem: "must differ from access_cookie_name".to_owned(),
        });
    }
    let cookie_domain = match domain.map(|d| d.trim().trim_start_matches('.').to_ascii_lowercase())
    {
        None => None,
        Some(domain) => {
            let invalid = |problem: String| ConfigError::Invalid {
                key: "cookie_domain",
                problem,
            };
            if domain.is_empty()
                || !domain.contains('.')
                || !domain
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.')
            {
                return Err(invalid(format!(
                    "{domain:?} is not a domain name like \"example.com\""
                )));
            }
            let host = issuer_url
                .and_then(crate::validate::url_host)
                .ok_or_else(|| {
                    invalid("needs issuer_url (a domain cookie needs a domain name)".to_owned())
                })?;
            if host != domain && !host.ends_with(&format!(".{domain}")) {
                return Err(invalid(format!(
                    "the issuer's host {host:?} is not within {domain:?}, so browsers would refuse the cookie"
                )));
            }
            Some(domain)
        }
    };
    Ok(CookieSessions {
        allowed_origins,
        cookie_domain,
        access_cookie,
        refresh_cookie,
    })
}

/// Each client: a plain id, once; a hash of 32 bytes in base64url.
fn introspection_clients(
    raw: Option<Vec<RawIntrospectionClient>>,
) -> Result<Vec<IntrospectionClient>, ConfigError> {
    use base64::Engine as _;
    let invalid = |problem: String| ConfigError::Invalid {
        key: "introspection_clients",
        problem,
    };
    let mut clients: Vec<IntrospectionClient> = Vec::new();
    for raw in raw.unwrap_or_default() {
        if crate::validate::client_id(&raw.client_id).is_err() || raw.client_id.contains(':') {
            return Err(invalid(format!(
                "{:?} is not a client id (1 to 64 visible ASCII characters, no colon)",
                raw.client_id
            )));
        }
        if clients.iter().any(|c| c.client_id == raw.client_id) {
            return Err(invalid(format!("{:?} is listed twice", raw.client_id)));
        }
        let mut secret_sha256 = [0u8; 32];
        let decoded = base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode_slice(raw.secret_sha256.trim(), &mut secret_sha256);
        if decoded != Ok(32) {
            return Err(invalid(format!(
                "the secret_sha256 of {:?} is not 32 bytes of base64url",
                raw.client_id
            )));
        }
        clients.push(IntrospectionClient {
            client_id: raw.client_id,
            secret_sha256,
        });
    }
    Ok(clients)
}

/// An issuer URL is compared byte for byte by every verifier: accept only an
/// absolute http(s) URL with no query, fragment or trailing slash.
fn validate_issuer_url(url: String) -> Result<String, ConfigError> {
    let invalid = |problem: &str| ConfigError::Invalid {
        key: "issuer_url",
        problem: format!("{url:?} {problem}"),
    };
    let rest = url
        .strip_prefix("https://")
        .or_else(|| url.strip_prefix("http://"))
        .ok_or_else(|| invalid("must start with https:// (or http:// for loopback)"))?;
    if rest.is_empty() || rest.starts_with('/') {
        return Err(invalid("has no host"));
    }
    if url.contains(['?', '#']) || url.chars().any(char::is_whitespace) {
        return Err(invalid("must not contain a query, a fragment or spaces"));
    }
    if url.ends_with('/') {
        return Err(invalid(
            "must not end with a slash (it is compared byte for byte)",
        ));
    }
    Ok(url)
}

#[cfg(test)]
mod tests;
