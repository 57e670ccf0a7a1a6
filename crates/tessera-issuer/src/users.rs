//! `tessera-issuer users ...`: the operator's user management.

use std::io::{BufRead as _, IsTerminal as _, Write as _};

use anyhow::{Context as _, bail};
use clap::Subcommand;
use tessera_issuer::config::Config;
use tessera_issuer::db::Db;
use tessera_issuer::passwords::{Hasher, Password, random_token};
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
            db.set_roles(&name, &roles, now).await?;
            writeln!(out, "{name}: roles set to {}", roles_text(&roles))?;
        }
        UsersVerb::ResetPassword {
            name,
            password_stdin,
        } => {
            // Fail on an unknown user before asking for a password.
            if db.credentials(&name).await?.is_none() {
                bail!("no user named {name:?}");
            }
            let password = read_password(password_stdin)?;
            let hash = Hasher::new(1)?.hash(&password)?;
            db.set_password_hash(&name, &hash, now).await?;
            writeln!(out, "{name}: password reset")?;
        }
        UsersVerb::Disable { name } => {
            db.set_disabled(&name, true, now).await?;
            writeln!(out, "{name}: disabled")?;
        }
        UsersVerb::Enable { name } => {
            db.set_disabled(&name, false, now).await?;
            writeln!(out, "{name}: enabled")?;
        }
        UsersVerb::Delete { name } => {
            db.delete_user(&name).await?;
            writeln!(out, "{name}: deleted")?;
        }
    }
    Ok(())
}

fn roles_text(roles: &[String]) -> String {
    if roles.is_empty() {
        "-".to_owned()
    } else {
        roles.join(",")
    }
}
