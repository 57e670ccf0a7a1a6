//! `tessera-issuer clients ...`: the operator's client registry.

use std::io::{BufRead as _, IsTerminal as _, Write as _};

use anyhow::{Context as _, bail};
use clap::{Args, Subcommand};
use tessera_issuer::audit::{self, Event};
use tessera_issuer::clients::{self, Client, ClientKind};
use tessera_issuer::config::Config;
use tessera_issuer::db::Db;
use tessera_keyring::SystemClock;

/// The `clients` verbs.
#[derive(Debug, Subcommand)]
pub(crate) enum ClientsVerb {
    /// Register a client. A confidential client's secret is generated and
    /// shown once, or read with --secret-stdin / --secret-prompt.
    Add {
        /// The `client_id`.
        id: String,
        #[command(flatten)]
        settings: Settings,
        #[command(flatten)]
        secret: SecretSource,
    },
    /// List clients (never their secrets).
    List {
        /// Machine-readable output.
        #[arg(long)]
        json: bool,
    },
    /// Show one client.
    Show {
        /// The `client_id`.
        id: String,
        /// Machine-readable output.
        #[arg(long)]
        json: bool,
    },
    /// Change a client: each list given replaces that list (an empty value,
    /// e.g. `--redirect-uri ''`, clears it); what is not given is kept.
    Update {
        /// The `client_id`.
        id: String,
        #[command(flatten)]
        settings: Settings,
        /// Refuse it tokens and refreshes.
        #[arg(long, conflicts_with = "enable")]
        disable: bool,
        /// Let a disabled client in again.
        #[arg(long)]
        enable: bool,
        #[command(flatten)]
        secret: SecretSource,
    },
    /// Remove a client: its sessions can no longer refresh.
    Remove {
        /// The `client_id`.
        id: String,
    },
    /// Give a confidential client a new secret. The old one keeps working
    /// for the grace period, so its services can move to the new one
    /// without downtime.
    RotateSecret {
        /// The `client_id`.
        id: String,
        /// How long the old secret stays valid (`0s`: it stops at once).
        #[arg(long, value_name = "DURATION", default_value = "24h", value_parser = humantime::parse_duration)]
        grace: std::time::Duration,
        #[command(flatten)]
        secret: SecretSource,
    },
}

/// What `add` and `update` set.
#[derive(Debug, Args)]
pub(crate) struct Settings {
    /// No secret (a browser or native app).
    #[arg(long, conflicts_with = "confidential")]
    public: bool,
    /// Has a secret and must authenticate [the default for `add`].
    #[arg(long)]
    confidential: bool,
    /// A grant type it may use: authorization_code (browser sign-in),
    /// refresh_token, client_credentials (confidential clients only),
    /// password (first-party tools only: RFC 9700 §2.4) (repeat).
    #[arg(long = "grant", value_name = "G")]
    grants: Vec<String>,
    /// A scope it may be issued (repeat).
    #[arg(long = "scope", value_name = "S")]
    scopes: Vec<String>,
    /// A scope issued when it asks for none (repeat; each one of --scope).
    #[arg(long = "default-scope", value_name = "S")]
    default_scopes: Vec<String>,
    /// An audience of its tokens (repeat) [default: the issuer's audiences].
    #[arg(long = "audience", value_name = "A")]
    audiences: Vec<String>,
    /// A redirect URI for browser sign-in (repeat; exact match, but a
    /// loopback IP's port may vary, RFC 8252 §7.3).
    #[arg(long = "redirect-uri", value_name = "URI")]
    redirect_uris: Vec<String>,
    /// Where RP-initiated logout may send the browser back to (repeat; exact).
    #[arg(long = "post-logout-redirect-uri", value_name = "URI")]
    post_logout_redirect_uris: Vec<String>,
    /// Not the issuer's own application: browser sign-in asks the user to
    /// allow the scopes it asks for (the answer is remembered).
    #[arg(long, conflicts_with = "first_party")]
    third_party: bool,
    /// The issuer's own application: no consent page.
    #[arg(long)]
    first_party: bool,
    /// May call `/introspect` (confidential clients only).
    #[arg(long, conflicts_with = "no_introspect")]
    introspect: bool,
    /// May not call `/introspect`.
    #[arg(long)]
    no_introspect: bool,
    /// How it may authenticate at /token: client_secret_basic,
    /// client_secret_post, private_key_jwt (repeat) [default: by what it
    /// holds: a secret, both secret methods; keys, private_key_jwt].
    #[arg(long = "auth-method", value_name = "M")]
    auth_methods: Vec<String>,
    /// Its public keys for private_key_jwt: a JWK set file, read now and
    /// stored (`''` removes them). Never a URL.
    #[arg(long, value_name = "FILE")]
    jwks: Option<std::path::PathBuf>,
    /// Its client-credentials tokens' lifetime, e.g. `5m` (`''`: the
    /// issuer's access-token lifetime).
    #[arg(long, value_name = "DURATION")]
    token_lifetime: Option<String>,
}

/// Where a secret comes from: generated and shown once unless one of these.
#[derive(Debug, Args)]
pub(crate) struct SecretSource {
    /// Read the secret from the first line of standard input.
    #[arg(long, conflicts_with = "secret_prompt")]
    secret_stdin: bool,
    /// Ask for the secret on the terminal (twice).
    #[arg(long)]
    secret_prompt: bool,
}

/// A new secret: from stdin, a prompt, or generated (then printed once).
fn new_secret(source: &SecretSource) -> anyhow::Result<(zeroize::Zeroizing<String>, bool)> {
    let secret = if source.secret_stdin {
        let mut line = zeroize::Zeroizing::new(String::new());
        std::io::stdin()
            .lock()
            .read_line(&mut line)
            .context("reading the secret from standard input")?;
        zeroize::Zeroizing::new(line.trim_end_matches(['\n', '\r']).to_owned())
    } else if source.secret_prompt {
        if !std::io::stdin().is_terminal() {
            bail!("no terminal to ask for a secret on: use --secret-stdin");
        }
        let first = zeroize::Zeroizing::new(
            rpassword::prompt_password("Client secret: ").context("reading the secret")?,
        );
        let again = zeroize::Zeroizing::new(
            rpassword::prompt_password("Repeat it: ").context("reading the secret")?,
        );
        if first != again {
            bail!("the two secrets differ");
        }
        first
    } else {
        return Ok((zeroize::Zeroizing::new(clients::new_secret()), true));
    };
    clients::check_secret(&secret).map_err(anyhow::Error::msg)?;
    Ok((secret, false))
}

/// Replaces the lists `settings` gives; `''` alone clears a list.
fn apply(client: &mut Client, settings: &Settings) -> anyhow::Result<()> {
    let replace = |target: &mut Vec<String>, given: &[String]| {
        if !given.is_empty() {
            *target = given.iter().filter(|v| !v.is_empty()).cloned().collect();
        }
    };
    replace(&mut client.grant_types, &settings.grants);
    replace(&mut client.scopes, &settings.scopes);
    replace(&mut client.default_scope, &settings.default_scopes);
    replace(&mut client.audiences, &settings.audiences);
    replace(&mut client.redirect_uris, &settings.redirect_uris);
    replace(
        &mut client.post_logout_redirect_uris,
        &settings.post_logout_redirect_uris,
    );
    if settings.third_party {
        client.third_party = true;
    }
    if settings.first_party {
        client.third_party = false;
    }
    if settings.introspect {
        client.introspect = true;
    }
    if settings.no_introspect {
        client.introspect = false;
    }
    replace(&mut client.auth_methods, &settings.auth_methods);
    if let Some(path) = &settings.jwks {
        client.jwks = if path.as_os_str().is_empty() {
            None
        } else {
            let text = std::fs::read_to_string(path)
                .with_context(|| format!("reading the JWK set {}", path.display()))?;
            let count = clients::check_jwks(&text)
                .map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?;
            tracing::debug!(keys = count, "client JWK set read");
            Some(text)
        };
    }
    if let Some(lifetime) = &settings.token_lifetime {
        client.token_lifetime_secs = if lifetime.is_empty() {
            None
        } else {
            let parsed = humantime::parse_duration(lifetime)
                .with_context(|| format!("--token-lifetime {lifetime:?}"))?;
            Some(parsed.as_secs())
        };
    }
    Ok(())
}

/// Whether a confidential client with these settings needs a secret: it
/// may use a secret method (named, or implied by holding no keys).
fn needs_secret(client: &Client) -> bool {
    if client.auth_methods.is_empty() {
        client.jwks.is_none()
    } else {
        client
            .auth_methods
            .iter()
            .any(|m| m != clients::PRIVATE_KEY_JWT)
    }
}

/// A client's lifetime is recorded before any token is issued with it, so
/// that revocations outlive its tokens.
async fn record_lifetime(db: &Db, client: &Client) -> anyhow::Result<()> {
    if let Some(secs) = client.token_lifetime_secs {
        let none = std::time::Duration::ZERO;
        db.record_lifetimes(std::time::Duration::from_secs(secs), none, none)
            .await?;
    }
    Ok(())
}

pub(crate) fn run(config: &Config, verb: ClientsVerb) -> anyhow::Result<()> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    runtime.block_on(run_async(config, verb))
}

async fn run_async(config: &Config, verb: ClientsVerb) -> anyhow::Result<()> {
    let db = Db::connect(&config.database_url).await?;
    let mut out = std::io::stdout().lock();
    let now = tessera_issuer::unix_now(&SystemClock);
    match verb {
        ClientsVerb::Add {
            id,
            settings,
            secret,
        } => {
            clients::check_client_id(&id).map_err(anyhow::Error::msg)?;
            let kind = if settings.public {
                ClientKind::Public
            } else {
                ClientKind::Confidential
            };
            let mut client = Client {
                kind,
                grant_types: Vec::new(),
                scopes: Vec::new(),
                default_scope: Vec::new(),
                introspect: false,
                ..clients::login_client(&id, now)
            };
            apply(&mut client, &settings)?;
            let with_secret = needs_secret(&client) || secret.secret_stdin || secret.secret_prompt;
            let shown = if kind == ClientKind::Confidential && with_secret {
                let (secret, generated) = new_secret(&secret)?;
                client.secret_sha256 = clients::decode_hash(&clients::secret_hash_text(&secret));
                generated.then_some(secret)
            } else {
                if secret.secret_stdin || secret.secret_prompt {
                    bail!("a public client has no secret");
                }
                None
            };
            clients::check(&client).map_err(anyhow::Error::msg)?;
            record_lifetime(&db, &client).await?;
            db.add_client(&client).await?;
            record(&db, now, "client_added", &client).await;
            writeln!(out, "added {} client {id}", kind.name())?;
            if let Some(secret) = shown {
                writeln!(out, "client secret (shown once): {}", secret.as_str())?;
            }
        }
        ClientsVerb::List { json } => {
            let all = db.list_clients().await?;
            if json {
                serde_json::to_writer_pretty(&mut out, &all)?;
                writeln!(out)?;
            } else {
                writeln!(
                    out,
                    "{:<24}  {:<12}  {:<8}  {:<24}  SCOPES",
                    "CLIENT_ID", "TYPE", "STATE", "GRANTS"
                )?;
                for c in all {
                    writeln!(
                        out,
                        "{:<24}  {:<12}  {:<8}  {:<24}  {}",
                        c.client_id,
                        c.kind.name(),
                        if c.disabled { "disabled" } else { "active" },
                        list_text(&c.grant_types),
                        list_text(&c.scopes)
                    )?;
                }
            }
        }
        ClientsVerb::Show { id, json } => {
            let client = existing(&db, &id).await?;
            let methods: Vec<String> = client
                .auth_methods()
                .into_iter()
                .map(str::to_owned)
                .collect();
            if json {
                serde_json::to_writer_pretty(&mut out, &client)?;
                writeln!(out)?;
            } else {
                let rows = [
                    ("client_id", client.client_id.clone()),
                    ("type", client.kind.name().to_owned()),
                    (
                        "state",
                        if client.disabled {
                            "disabled"
                        } else {
                            "active"
                        }
                        .to_owned(),
                    ),
                    ("grants", list_text(&client.grant_types)),
                    ("scopes", list_text(&client.scopes)),
                    ("default scope", list_text(&client.default_scope)),
                    ("audiences", list_text(&client.audiences)),
                    ("redirect uris", list_text(&client.redirect_uris)),
                    (
                        "post-logout uris",
                        list_text(&client.post_logout_redirect_uris),
                    ),
                    (
                        "party",
                        if client.third_party { "third" } else { "first" }.to_owned(),
                    ),
                    ("introspect", client.introspect.to_string()),
                    ("auth methods", list_text(&methods)),
                    (
                        "keys",
                        list_text(
                            &client
                                .jwks
                                .as_deref()
                                .map(clients::kids_of)
                                .unwrap_or_default(),
                        ),
                    ),
                    (
                        "token lifetime",
                        client
                            .token_lifetime_secs
                            .map_or("the issuer's".to_owned(), |s| format!("{s}s")),
                    ),
                    (
                        "old secret",
                        match client.previous_secret_until {
                            Some(until) if until > now => {
                                format!("valid until {until} (Unix time)")
                            }
                            _ => "-".to_owned(),
                        },
                    ),
                ];
                for (name, value) in rows {
                    writeln!(out, "{name:<14} {value}")?;
                }
            }
        }
        ClientsVerb::Update {
            id,
            settings,
            disable,
            enable,
            secret,
        } => {
            let mut client = existing(&db, &id).await?;
            apply(&mut client, &settings)?;
            client.disabled = (client.disabled || disable) && !enable;
            client.updated_at = now;
            let mut shown = None;
            if settings.public {
                if secret.secret_stdin || secret.secret_prompt {
                    bail!("a public client has no secret");
                }
                client.kind = ClientKind::Public;
                client.secret_sha256 = None;
                client.previous_secret_sha256 = None;
                client.previous_secret_until = None;
            } else if client.kind == ClientKind::Confidential
                && client.secret_sha256.is_none()
                && needs_secret(&client)
            {
                // Keys only until now, and a secret method named.
                let (secret, generated) = new_secret(&secret)?;
                client.secret_sha256 = clients::decode_hash(&clients::secret_hash_text(&secret));
                shown = generated.then_some(secret);
            } else if settings.confidential && client.kind == ClientKind::Public {
                let (secret, generated) = new_secret(&secret)?;
                client.kind = ClientKind::Confidential;
                client.secret_sha256 = clients::decode_hash(&clients::secret_hash_text(&secret));
                shown = generated.then_some(secret);
            } else if secret.secret_stdin || secret.secret_prompt {
                bail!("to change the secret, use `clients rotate-secret {id}`");
            }
            clients::check(&client).map_err(anyhow::Error::msg)?;
            record_lifetime(&db, &client).await?;
            db.update_client(&client).await?;
            record(&db, now, "client_updated", &client).await;
            writeln!(out, "updated client {id}")?;
            if let Some(secret) = shown {
                writeln!(out, "client secret (shown once): {}", secret.as_str())?;
            }
        }
        ClientsVerb::Remove { id } => {
            db.remove_client(&id).await?;
            let event = Event::new("client_removed").with("client_id", id.as_str());
            audit::record(&db, now, event).await;
            writeln!(out, "removed client {id}")?;
        }
        ClientsVerb::RotateSecret { id, grace, secret } => {
            let mut client = existing(&db, &id).await?;
            if client.kind != ClientKind::Confidential {
                bail!("{id} is a public client: it has no secret");
            }
            let Some(old) = client.secret_sha256 else {
                bail!("{id} has no secret (it authenticates with its keys: see --jwks)");
            };
            let grace_secs = i64::try_from(grace.as_secs()).unwrap_or(i64::MAX);
            if grace_secs > clients::MAX_SECRET_GRACE_SECS {
                bail!(
                    "--grace is at most {} days",
                    clients::MAX_SECRET_GRACE_SECS / 86_400
                );
            }
            let (secret, generated) = new_secret(&secret)?;
            client.secret_sha256 = clients::decode_hash(&clients::secret_hash_text(&secret));
            (client.previous_secret_sha256, client.previous_secret_until) = if grace_secs > 0 {
                (Some(old), Some(now.saturating_add(grace_secs)))
            } else {
                (None, None)
            };
            client.updated_at = now;
            db.update_client(&client).await?;
            let event = Event::new("client_secret_rotated")
                .with("client_id", id.as_str())
                .with("grace_secs", grace_secs);
            audit::record(&db, now, event).await;
            writeln!(out, "client {id}: new secret in force")?;
            if grace_secs > 0 {
                writeln!(
                    out,
                    "the old secret stays valid for {} (until {} Unix time); rotating again ends it",
                    humantime::format_duration(grace),
                    now.saturating_add(grace_secs)
                )?;
            } else {
                writeln!(out, "the old secret no longer works")?;
            }
            if generated {
                writeln!(out, "client secret (shown once): {}", secret.as_str())?;
            }
        }
    }
    out.flush()?;
    Ok(())
}

async fn existing(db: &Db, id: &str) -> anyhow::Result<Client> {
    match db.client(id).await? {
        Some(client) => Ok(client),
        None => bail!("no client with id {id:?}"),
    }
}

/// The audit event for a registration or change: the settings, never the secret.
async fn record(db: &Db, now: i64, kind: &'static str, client: &Client) {
    let detail = serde_json::to_value(client).unwrap_or_default();
    let mut event = Event::new(kind);
    event.detail = detail;
    audit::record(db, now, event).await;
}

fn list_text(list: &[String]) -> String {
    if list.is_empty() {
        "-".to_owned()
    } else {
        list.join(",")
    }
}
