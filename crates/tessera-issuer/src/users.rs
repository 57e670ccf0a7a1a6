//! `tessera-issuer users ...`: the operator's user management.

use std::io::{BufRead as _, IsTerminal as _, Write as _};

use anyhow::{Context as _, bail};
use clap::Subcommand;
use std::sync::Arc;

use tessera_issuer::config::Config;
use tessera_issuer::db::Db;
use tessera_issuer::passwords::{Hasher, Password};
use tessera_issuer::service::accounts::Accounts;
use tessera_keyring::SystemClock;

/// The `users` verbs, as parsed from the command line.
#[derive(Debug, Subcommand)]
pub(crate) enum UsersVerb {
    /// Add a user. The password is read from a prompt, or from standard input with
    /// --password-stdin; never from an argument.
    Add {
        /// Login name.
        name: String,
        /// A role (repeat for several), e.g. admin.
        #[arg(long = "role", value_name = "ROLE")]
        roles: Vec<String>,
        /// Read the password from the first line of standard input.
        #[arg(long)]
        password_stdin: bool,
    },
    /// List users (never their password hashes).
    List {
        /// Machine-readable output.
        #[arg(long)]
        json: bool,
    },
    /// Replace a user's roles (none clears them).
    SetRoles {
        /// Login name.
        name: String,
        /// The new roles.
        roles: Vec<String>,
    },
    /// Set a new password.
    ResetPassword {
        /// Login name.
        name: String,
        /// Read the password from the first line of standard input.
        #[arg(long)]
        password_stdin: bool,
    },
    /// Stop a user from logging in or refreshing.
    Disable {
        /// Login name.
        name: String,
    },
    /// Let a disabled user log in again.
    Enable {
        /// Login name.
        name: String,
    },
    /// Delete a user and their sessions.
    Delete {
        /// Login name.
        name: String,
    },
    /// List the third-party clients a user allowed, with the scopes.
    Consents {
        /// Login name.
        name: String,
    },
    /// Withdraw a user's consent to a client: the next sign-in asks again,
    /// and the user's sessions with that client end now.
    WithdrawConsent {
        /// Login name.
        name: String,
        /// The client's id.
        client_id: String,
    },
}

/// Reads a new password: the first line of stdin, or twice from a prompt.
fn read_password(from_stdin: bool) -> anyhow::Result<Password> {
    let password = if from_stdin {
        let mut line = String::new();
        std::io::stdin()
            .lock()
            .read_line(&mut line)
            .context("reading the password from standard input")?;
        let trimmed = line.trim_end_matches(['\n', '\r']).to_owned();
        zeroize::Zeroize::zeroize(&mut line);
        Password::new(trimmed)
    } else {
        if !std::io::stdin().is_terminal() {
            bail!("no terminal to ask for a password on: use --password-stdin");
        }
        let first = rpassword::prompt_password("New password: ").context("reading the password")?;
        let again = rpassword::prompt_password("Repeat it: ").context("reading the password")?;
        if first != again {
            bail!("the two passwords differ");
        }
        Password::new(first)
    };
    password.check_policy().map_err(anyhow::Error::msg)?;
    Ok(password)
}

pub(crate) fn run(config: &Config, verb: UsersVerb) -> anyhow::Result<()> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    runtime.block_on(run_async(config, verb))
}

async fn run_async(config: &Config, verb: UsersVerb) -> anyhow::Result<()> {
    let accounts = accounts(config).await?;
    let mut out = std::io::stdout().lock();
    match verb {
        UsersVerb::Add {
            name,
            roles,
            password_stdin,
        } => {
            // Refuse a bad name or role before asking for a password.
            Accounts::check_new(&name, &roles)?;
            let password = read_password(password_stdin)?;
            let user = accounts
                .add(&name, &roles, &Hasher::new(1)?, &password)
                .await?;
            writeln!(
                out,
                "added user {} (id {}, roles: {})",
                user.username,
                user.id,
                roles_text(&user.roles)
            )?;
        }
        UsersVerb::List { json } => {
            let users = accounts.db().list_users().await?;
            if json {
                serde_json::to_writer_pretty(&mut out, &users)?;
                writeln!(out)?;
            } else {
                writeln!(
                    out,
                    "{:<24}  {:<22}  {:<8}  ROLES",
                    "USERNAME", "ID", "STATE"
                )?;
                for u in users {
                    let state = if u.disabled { "disabled" } else { "active" };
                    writeln!(
                        out,
                        "{:<24}  {:<22}  {:<8}  {}",
                        u.username,
                        u.id,
                        state,
                        roles_text(&u.roles)
                    )?;
                }
            }
        }
        UsersVerb::SetRoles { name, roles } => {
            let removed = accounts.set_roles(&name, &roles).await?;
            writeln!(out, "{name}: roles set to {}", roles_text(&roles))?;
            if !removed.is_empty() {
                writeln!(
                    out,
                    "{name}: tokens issued until now are revoked (roles removed: {})",
                    removed.join(",")
                )?;
            }
        }
        UsersVerb::ResetPassword {
            name,
            password_stdin,
        } => {
            // Fail on an unknown user before asking for a password.
            accounts.user_id(&name).await?;
            let password = read_password(password_stdin)?;
            let ended = accounts
                .reset_password(&name, &Hasher::new(1)?, &password)
                .await?;
            say_ended(&mut out, &name, ended, "password reset")?;
        }
        UsersVerb::Disable { name } => {
            let ended = accounts.disable(&name).await?;
            say_ended(&mut out, &name, ended, "disabled")?;
        }
        UsersVerb::Enable { name } => {
            accounts.enable(&name).await?;
            writeln!(out, "{name}: enabled")?;
        }
        UsersVerb::Delete { name } => {
            accounts.delete(&name).await?;
            writeln!(out, "{name}: deleted")?;
        }
        UsersVerb::Consents { name } => {
            let consents = accounts.consents(&name).await?;
            writeln!(out, "{:<24}  {:<20}  SCOPES", "CLIENT_ID", "GRANTED")?;
            for (client, scopes, at) in consents {
                let at = std::time::UNIX_EPOCH
                    + std::time::Duration::from_secs(u64::try_from(at).unwrap_or(0));
                writeln!(
                    out,
                    "{:<24}  {:<20}  {}",
                    client,
                    tessera_keyring::format_time(at),
                    roles_text(&scopes)
                )?;
            }
        }
        UsersVerb::WithdrawConsent { name, client_id } => {
            let (had, ended) = accounts.withdraw_consent(&name, &client_id).await?;
            if had {
                writeln!(out, "{name}: consent to {client_id} withdrawn")?;
            } else {
                writeln!(out, "{name}: had not allowed {client_id} anything")?;
            }
            writeln!(
                out,
                "{name}: {ended} session(s) with {client_id} ended, their tokens revoked"
            )?;
        }
    }
    Ok(())
}

/// The accounts of the configured database, revoking for the configured
/// access-token lifetime (or the longest any instance recorded).
async fn accounts(config: &Config) -> anyhow::Result<Accounts> {
    let db = Db::connect(&config.database_url).await?;
    Ok(Accounts::new(
        db,
        config.rotation.access_token_lifetime,
        Arc::new(SystemClock),
    ))
}

/// `tessera-issuer audit`: the stored security events, oldest first.
pub(crate) fn audit_list(
    config: &Config,
    user: Option<String>,
    since: std::time::Duration,
    limit: i64,
    json: bool,
) -> anyhow::Result<()> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    runtime.block_on(async {
        let accounts = accounts(config).await?;
        let db = accounts.db();
        let user_id = match &user {
            Some(name) => Some(accounts.user_id(name).await?),
            None => None,
        };
        let now = tessera_issuer::unix_now(&SystemClock);
        let since = now.saturating_sub(tessera_issuer::secs(since));
        let events = db
            .audit_events(since, user_id.as_deref(), limit.clamp(1, 100_000))
            .await?;
        let mut out = std::io::stdout().lock();
        if json {
            serde_json::to_writer_pretty(&mut out, &events)?;
            writeln!(out)?;
            return Ok(());
        }
        writeln!(
            out,
            "{:<20}  {:<22}  {:<22}  {:<22}  {:<15}  DETAIL",
            "TIME", "EVENT", "USER", "SESSION", "CLIENT IP"
        )?;
        for e in events {
            let at = std::time::UNIX_EPOCH
                + std::time::Duration::from_secs(u64::try_from(e.at).unwrap_or(0));
            let dash = |v: &Option<String>| v.clone().unwrap_or_else(|| "-".to_owned());
            writeln!(
                out,
                "{:<20}  {:<22}  {:<22}  {:<22}  {:<15}  {}",
                tessera_keyring::format_time(at),
                e.event,
                dash(&e.user_id),
                dash(&e.session_id),
                dash(&e.client_ip),
                e.detail
            )?;
        }
        Ok(())
    })
}

/// What `revoke-user`, `revoke-client`, `revoke-session` and `revoke-token` name.
#[derive(Debug, Clone, Copy)]
pub(crate) enum RevokeTarget {
    /// A user, by username: every session and every token issued until now.
    User,
    /// A client, by id: disabled, and every token it or its users hold.
    Client,
    /// A session, by `sid`: its refresh family and its access tokens.
    Session,
    /// One access token, by `jti`.
    Token,
}

/// `tessera-issuer revoke-user NAME | revoke-client ID | revoke-session SID |
/// revoke-token JTI`.
pub(crate) fn revoke(config: &Config, target: RevokeTarget, value: &str) -> anyhow::Result<()> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    runtime.block_on(async {
        let accounts = accounts(config).await?;
        let mut out = std::io::stdout().lock();
        match target {
            RevokeTarget::User => {
                let ended = accounts.revoke_user(value).await?;
                writeln!(
                    out,
                    "{value}: {ended} session(s) ended; every token issued to them until now is revoked"
                )?;
            }
            RevokeTarget::Client => {
                let ended = accounts.revoke_client(value).await?;
                writeln!(
                    out,
                    "client {value}: disabled; its tokens and its users' through it ({ended} session(s) ended) are revoked"
                )?;
            }
            RevokeTarget::Session => {
                accounts.revoke_session(value).await?;
                writeln!(out, "session {value}: ended; its tokens are revoked")?;
            }
            RevokeTarget::Token => {
                accounts.revoke_token(value).await?;
                writeln!(out, "token {value}: revoked")?;
            }
        }
        out.flush()?;
        Ok(())
    })
}

fn roles_text(roles: &[String]) -> String {
    if roles.is_empty() {
        "-".to_owned()
    } else {
        roles.join(",")
    }
}

/// The two lines a verb that ends a user's sessions prints.
fn say_ended(
    out: &mut impl std::io::Write,
    name: &str,
    ended: usize,
    what: &str,
) -> std::io::Result<()> {
    writeln!(
        out,
        "{name}: {ended} session(s) ended, their tokens revoked"
    )?;
    writeln!(out, "{name}: {what}")
}
