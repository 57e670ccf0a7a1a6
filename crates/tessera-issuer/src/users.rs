//! `tessera-issuer users ...`: the operator's user management.

use std::io::{BufRead as _, IsTerminal as _, Write as _};

use anyhow::{Context as _, bail};
use clap::Subcommand;
use tessera_issuer::audit::{self, Event};
use tessera_issuer::config::Config;
use tessera_issuer::db::{Db, RevokedAt};
use tessera_issuer::passwords::{Hasher, Password, random_token};
use tessera_issuer::revocation;
use tessera_issuer::validate;
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
    let db = Db::connect(&config.database_url).await?;
    let mut out = std::io::stdout().lock();
    let now = tessera_issuer::unix_now(&SystemClock);
    match verb {
        UsersVerb::Add {
            name,
            roles,
            password_stdin,
        } => {
            validate::username(&name).map_err(anyhow::Error::msg)?;
            for role in &roles {
                validate::role(role).map_err(anyhow::Error::msg)?;
            }
            let password = read_password(password_stdin)?;
            let hash = Hasher::new(1)?.hash(&password)?;
            let user = db
                .add_user(&random_token(16), &name, &hash, &roles, now)
                .await?;
            let event = Event::new("user_added")
                .user(&user.id)
                .with("username", name.as_str())
                .with("roles", roles.clone());
            audit::record(&db, now, event).await;
            writeln!(
                out,
                "added user {} (id {}, roles: {})",
                user.username,
                user.id,
                roles_text(&user.roles)
            )?;
        }
        UsersVerb::List { json } => {
            let users = db.list_users().await?;
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
            for role in &roles {
                validate::role(role).map_err(anyhow::Error::msg)?;
            }
            let Some(before) = db.credentials(&name).await? else {
                bail!("no user named {name:?}");
            };
            let id = before.user.id;
            db.set_roles(&name, &roles, now).await?;
            let event = Event::new("user_roles_set")
                .user(&id)
                .with("roles", roles.clone());
            audit::record(&db, now, event).await;
            writeln!(out, "{name}: roles set to {}", roles_text(&roles))?;
            // A token carrying a role taken away must stop working; sessions
            // go on, and their next refresh carries the new roles.
            let removed: Vec<&String> = before
                .user
                .roles
                .iter()
                .filter(|role| !roles.contains(role))
                .collect();
            if !removed.is_empty() {
                revoke_tokens(&db, config, revocation::Kind::Sub, &id, "roles_removed").await?;
                writeln!(
                    out,
                    "{name}: tokens issued until now are revoked (roles removed: {})",
                    removed
                        .iter()
                        .map(|r| r.as_str())
                        .collect::<Vec<_>>()
                        .join(",")
                )?;
            }
        }
        UsersVerb::ResetPassword {
            name,
            password_stdin,
        } => {
            // Fail on an unknown user before asking for a password.
            let id = user_id(&db, &name).await?;
            let password = read_password(password_stdin)?;
            let hash = Hasher::new(1)?.hash(&password)?;
            db.set_password_hash(&name, &hash, now).await?;
            audit::record(&db, now, Event::new("user_password_reset").user(&id)).await;
            let ended = revoke_user(&db, config, &id, now, "password_reset").await?;
            writeln!(
                out,
                "{name}: {ended} session(s) ended, their tokens revoked"
            )?;
            writeln!(out, "{name}: password reset")?;
        }
        UsersVerb::Disable { name } => {
            db.set_disabled(&name, true, now).await?;
            let id = user_id(&db, &name).await?;
            audit::record(&db, now, Event::new("user_disabled").user(&id)).await;
            let ended = revoke_user(&db, config, &id, now, "user_disabled").await?;
            writeln!(
                out,
                "{name}: {ended} session(s) ended, their tokens revoked"
            )?;
            writeln!(out, "{name}: disabled")?;
        }
        UsersVerb::Enable { name } => {
            db.set_disabled(&name, false, now).await?;
            let id = user_id(&db, &name).await?;
            audit::record(&db, now, Event::new("user_enabled").user(&id)).await;
            writeln!(out, "{name}: enabled")?;
        }
        UsersVerb::Delete { name } => {
            let id = user_id(&db, &name).await?;
            // Disabled first, so no login slips in between; then revoked
            // (the entries outlive the user, so the deleted user's tokens
            // stop working at resource servers too); then deleted.
            db.set_disabled(&name, true, now).await?;
            revoke_user(&db, config, &id, now, "user_deleted").await?;
            db.delete_user(&name).await?;
            let event = Event::new("user_deleted")
                .user(&id)
                .with("username", name.as_str());
            audit::record(&db, now, event).await;
            writeln!(out, "{name}: deleted")?;
        }
    }
    Ok(())
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
        let db = Db::connect(&config.database_url).await?;
        let user_id = match &user {
            Some(name) => Some(user_id(&db, name).await?),
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

/// Ends every session of a user and revokes every token issued to them
/// until now (by the database's clock, which every process shares), and each
/// ended session's tokens by `sid` (which needs no clock at all); returns how
/// many sessions ended.
async fn revoke_user(
    db: &Db,
    config: &Config,
    user_id: &str,
    now: i64,
    why: &str,
) -> anyhow::Result<usize> {
    let ended = db.revoke_user_sessions(user_id, now, why).await?;
    revoke_tokens(db, config, revocation::Kind::Sub, user_id, why).await?;
    for sid in &ended {
        revoke_tokens(db, config, revocation::Kind::Sid, sid, why).await?;
    }
    Ok(ended.len())
}

/// Revokes the tokens `value` names from now by the database's clock, for
/// the longest token lifetime recorded in the database (at least this
/// configuration's).
async fn revoke_tokens(
    db: &Db,
    config: &Config,
    kind: revocation::Kind,
    value: &str,
    why: &str,
) -> anyhow::Result<()> {
    let lifetime = config.rotation.access_token_lifetime;
    db.add_revocation(kind, value, RevokedAt::Database, lifetime, why)
        .await?;
    Ok(())
}

/// What `revoke-user`, `revoke-session` and `revoke-token` name.
#[derive(Debug, Clone, Copy)]
pub(crate) enum RevokeTarget {
    /// A user, by username: every session and every token issued until now.
    User,
    /// A session, by `sid`: its refresh family and its access tokens.
    Session,
    /// One access token, by `jti`.
    Token,
}

/// `tessera-issuer revoke-user NAME | revoke-session SID | revoke-token JTI`.
pub(crate) fn revoke(config: &Config, target: RevokeTarget, value: &str) -> anyhow::Result<()> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    runtime.block_on(async {
        let db = Db::connect(&config.database_url).await?;
        let now = tessera_issuer::unix_now(&SystemClock);
        let mut out = std::io::stdout().lock();
        match target {
            RevokeTarget::User => {
                let id = user_id(&db, value).await?;
                let ended = revoke_user(&db, config, &id, now, "operator").await?;
                audit::record(&db, now, Event::new("user_revoked").user(&id)).await;
                writeln!(
                    out,
                    "{value}: {ended} session(s) ended; every token issued to them until now is revoked"
                )?;
            }
            RevokeTarget::Session => {
                if value.is_empty() || value.len() > 128 {
                    bail!("not a session id: {value:?}");
                }
                db.revoke_session(value, now, "operator").await?;
                revoke_tokens(&db, config, revocation::Kind::Sid, value, "operator").await?;
                audit::record(&db, now, Event::new("session_revoked").session(value)).await;
                writeln!(out, "session {value}: ended; its tokens are revoked")?;
            }
            RevokeTarget::Token => {
                if value.is_empty() || value.len() > 128 {
                    bail!("not a token id: {value:?}");
                }
                revoke_tokens(&db, config, revocation::Kind::Jti, value, "operator").await?;
                audit::record(&db, now, Event::new("token_revoked").with("jti", value)).await;
                writeln!(out, "token {value}: revoked")?;
            }
        }
        out.flush()?;
        Ok(())
    })
}

/// A user's stable id, for audit events.
async fn user_id(db: &Db, name: &str) -> anyhow::Result<String> {
    match db.credentials(name).await? {
        Some(c) => Ok(c.user.id),
        None => bail!("no user named {name:?}"),
    }
}

fn roles_text(roles: &[String]) -> String {
    if roles.is_empty() {
        "-".to_owned()
    } else {
        roles.join(",")
    }
}
