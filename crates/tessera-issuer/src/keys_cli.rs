//! `tessera-issuer keys ...`: the operator's keyring verbs, on a keys
//! directory or the database keyring.

use std::io::Write as _;
use std::path::PathBuf;
use std::time::SystemTime;

use anyhow::Context as _;
use clap::Subcommand;
use tessera_issuer::config::Config;
use tessera_issuer::keys::KeyStore;
use tessera_keyring::{Algorithm, KeyRecord, KeySpec, KeyState, KeyringError, format_time, ops};

#[derive(Debug, Subcommand)]
pub(crate) enum KeysVerb {
    /// Start a keyring: one active key and one pending key.
    Init {
        /// Succeed without changes if the keyring already holds keys.
        #[arg(long)]
        if_empty: bool,
        /// The keys' algorithm: RS256, ES256 or EdDSA [default: the
        /// `signing_alg` setting].
        #[arg(long, value_name = "ALG")]
        alg: Option<String>,
    },
    /// Add a new pending key.
    Generate {
        /// Its algorithm: RS256, ES256 or EdDSA [default: the `signing_alg`
        /// setting].
        #[arg(long, value_name = "ALG")]
        alg: Option<String>,
    },
    /// Pending → active, active → retired, and a new pending key. The oldest
    /// pending key activates, whatever its algorithm: after a change of
    /// `signing_alg`, the first rotation publishes a key of the new
    /// algorithm and the next one makes it sign.
    Rotate {
        /// Activate even if the pending key has not been published for a JWKS
        /// cache lifetime (verifiers may reject tokens until they refetch).
        #[arg(long)]
        force: bool,
        /// The new pending key's algorithm: RS256, ES256 or EdDSA [default:
        /// the `signing_alg` setting].
        #[arg(long, value_name = "ALG")]
        alg: Option<String>,
    },
    /// Show every key, its state, its times, and when it may be pruned.
    List {
        /// Machine-readable output.
        #[arg(long)]
        json: bool,
    },
    /// Withdraw a pending key; it stays published until it is safe to prune.
    Retire {
        /// The key id. Base64url: it may start with `-`, and is taken as a
        /// kid, not a flag.
        #[arg(allow_hyphen_values = true)]
        kid: String,
    },
    /// Emergency: unpublish a key at once. Revoking the active key promotes the
    /// pending key immediately.
    Revoke {
        /// The key id. Base64url: it may start with `-`, and is taken as a
        /// kid, not a flag.
        #[arg(allow_hyphen_values = true)]
        kid: String,
    },
    /// Delete revoked keys and retired keys no token can need any more.
    Prune {
        /// Also delete retired keys that may still verify live tokens.
        #[arg(long)]
        force: bool,
    },
    /// Print the public JWKS (pending, active and retired keys).
    Jwks,
    /// Print a new random key-encryption key for a database keyring (stores nothing).
    NewKek,
    /// Import a private key as a pending key: RSA (PKCS#8 or PKCS#1 PEM),
    /// EC P-256 or Ed25519 (PKCS#8 PEM).
    Import {
        /// The PEM file.
        pem: PathBuf,
    },
}

/// Runs one `keys` verb. The keyring reads the clock itself (after taking its
/// lock and generating keys); the times printed come from what it recorded.
pub(crate) async fn keys(store: &KeyStore, config: &Config, verb: KeysVerb) -> anyhow::Result<()> {
    let policy = &config.rotation;
    let spec = |alg: Option<String>| -> anyhow::Result<KeySpec> {
        Ok(match alg {
            None => config.key_spec(),
            Some(name) => KeySpec::new(name.parse::<Algorithm>()?, config.key_bits),
        })
    };
    let mut out = std::io::stdout().lock();
    let warn = |text: String| writeln!(std::io::stderr(), "WARNING: {text}");
    match verb {
        KeysVerb::Init { if_empty, alg } => match store.apply(ops::Init::new(spec(alg)?)).await {
            Ok(o) => writeln!(
                out,
                "initialised keyring in {}\nactive key:  {}\npending key: {} (may become active from {})",
                store.location(),
                o.active,
                o.pending,
                format_time(policy.activation_safe_at(o.at)),
            )?,
            Err(KeyringError::AlreadyInitialised { count, .. }) if if_empty => writeln!(
                out,
                "keyring in {} already holds {count} key(s); nothing to do",
                store.location()
            )?,
            Err(e) => return Err(e.into()),
        },
        KeysVerb::Generate { alg } => {
            let key = store.apply(ops::Generate::new(spec(alg)?)).await?;
            writeln!(
                out,
                "generated pending key {} ({}); it may become active from {}",
                key.kid,
                describe(&key),
                format_time(policy.activation_safe_at(key.created))
            )?;
        }
        KeysVerb::Import { pem } => {
            let key = store.apply(ops::Import::new(&pem)).await?;
            writeln!(
                out,
                "imported {} as pending key {} ({}); it may become active from {}",
                pem.display(),
                key.kid,
                describe(&key),
                format_time(policy.activation_safe_at(key.created))
            )?;
        }
        KeysVerb::Rotate { force, alg } => {
            let o = store
                .apply(ops::Rotate::new(*policy, force, spec(alg)?))
                .await?;
            if let Some(rule) = &o.forced {
                warn(format!("--force overrode a rotation rule: {rule}"))?;
            }
            writeln!(out, "activated key {}", o.activated)?;
            if let Some(retired) = &o.retired {
                writeln!(
                    out,
                    "retired key   {retired} (stays published until {})",
                    format_time(policy.prune_safe_at(o.at))
                )?;
            }
            writeln!(
                out,
                "pending key   {} (may become active from {})",
                o.new_pending,
                format_time(policy.activation_safe_at(o.at))
            )?;
            // Say where a switch of algorithm stands: the operator changed
            // `signing_alg` and expects it to take effect.
            if o.activated_alg != o.new_pending_alg {
                writeln!(
                    out,
                    "the active key signs {}; the pending key is {} and signs from \
                     the next rotation (from {}); verifiers must accept both until then",
                    o.activated_alg,
                    o.new_pending_alg,
                    format_time(policy.activation_safe_at(o.at))
                )?;
            }
        }
        KeysVerb::Retire { kid } => {
            let key = store.apply(ops::Retire::new(kid.as_str())).await?;
            let until = key.retired().map(|t| format_time(policy.prune_safe_at(t)));
            writeln!(
                out,
                "retired pending key {kid}; it stays published until {}",
                until.unwrap_or_default()
            )?;
        }
        KeysVerb::Revoke { kid } => {
            let o = store
                .apply(ops::Revoke::new(kid.as_str(), *policy, config.key_spec()))
                .await?;
            writeln!(out, "revoked key {}: removed from the JWKS", o.revoked)?;
            if let Some(p) = &o.promoted {
                warn(format!(
                    "revoked the ACTIVE key {}: every token it signed is now unverifiable. \
                     Key {} signs from now on{}",
                    o.revoked,
                    p.kid,
                    match p.early {
                        Some(safe_at) => format!(
                            ", although verifiers may not have it cached until {}: they will \
                             refetch the JWKS when they first see its kid",
                            format_time(safe_at)
                        ),
                        None => String::new(),
                    }
                ))?;
                writeln!(out, "activated key {}", p.kid)?;
            }
            if let Some(next) = &o.new_pending {
                writeln!(out, "pending key   {next}")?;
            }
        }
        KeysVerb::Prune { force } => {
            let o = store.apply(ops::Prune::new(*policy, force)).await?;
            for rule in &o.forced {
                warn(format!("--force overrode a rotation rule: {rule}"))?;
            }
            for kid in &o.removed {
                writeln!(out, "pruned key {kid}")?;
            }
            for rule in &o.kept {
                writeln!(out, "kept: {rule}")?;
            }
            if o.removed.is_empty() && o.kept.is_empty() {
                writeln!(out, "nothing to prune")?;
            }
        }
        KeysVerb::NewKek => print_new_kek(&mut out)?,
        KeysVerb::Jwks => {
            let inspection = store.inspect().await?;
            serde_json::to_writer_pretty(&mut out, &inspection.jwks)?;
            writeln!(out)?;
        }
        KeysVerb::List { json } => {
            let inspection = store.inspect().await?;
            let rows: Vec<Row> = inspection
                .manifest
                .keys
                .iter()
                .map(|k| Row::new(k, policy))
                .collect();
            if json {
                serde_json::to_writer_pretty(&mut out, &rows)?;
                writeln!(out)?;
            } else {
                write_table(&mut out, &rows)?;
            }
        }
    }
    out.flush().context("writing output")?;
    Ok(())
}

/// How a key is described in messages: "2048-bit RS256", "ES256, P-256", "EdDSA, Ed25519".
fn describe(key: &KeyRecord) -> String {
    match key.alg {
        Algorithm::Es256 => "ES256, P-256".to_owned(),
        Algorithm::EdDsa => "EdDSA, Ed25519".to_owned(),
        alg => format!("{}-bit {alg}", key.bits),
    }
}

/// `keys new-kek`: a fresh key-encryption key. Nothing is stored: the
/// operator keeps it where secrets go, never beside the database.
pub(crate) fn print_new_kek(out: &mut impl std::io::Write) -> anyhow::Result<()> {
    writeln!(out, "{}", tessera_issuer::db::keyring::Kek::generate_text())?;
    Ok(())
}

/// One line of `keys list`.
#[derive(Debug, serde::Serialize)]
struct Row {
    kid: String,
    state: &'static str,
    alg: &'static str,
    bits: u32,
    created: String,
    activated: Option<String>,
    retired: Option<String>,
    revoked: Option<String>,
    safe_to_activate_at: Option<String>,
    safe_to_prune_at: Option<String>,
}

impl Row {
    fn new(k: &KeyRecord, policy: &tessera_keyring::RotationPolicy) -> Self {
        let t = |v: Option<SystemTime>| v.map(format_time);
        let (activate, prune) = match k.state {
            KeyState::Pending => (Some(policy.activation_safe_at(k.created)), None),
            KeyState::Active { .. } => (None, None),
            KeyState::Retired { retired, .. } => (None, Some(policy.prune_safe_at(retired))),
            KeyState::Revoked { revoked, .. } => (None, Some(revoked)),
        };
        Self {
            kid: k.kid.clone(),
            state: k.state.name(),
            alg: k.alg.name(),
            bits: k.bits,
            created: format_time(k.created),
            activated: t(k.activated()),
            retired: t(k.retired()),
            revoked: t(k.revoked()),
            safe_to_activate_at: t(activate),
            safe_to_prune_at: t(prune),
        }
    }
}

fn write_table(out: &mut impl std::io::Write, rows: &[Row]) -> std::io::Result<()> {
    let header = [
        "KID",
        "STATE",
        "ALG",
        "BITS",
        "CREATED",
        "ACTIVATED",
        "RETIRED",
        "REVOKED",
        "SAFE-TO-ACTIVATE-AT",
        "SAFE-TO-PRUNE-AT",
    ];
    let dash = |v: &Option<String>| v.clone().unwrap_or_else(|| "-".to_owned());
    let cells: Vec<[String; 10]> = rows
        .iter()
        .map(|r| {
            [
                r.kid.clone(),
                r.state.to_owned(),
                r.alg.to_owned(),
                r.bits.to_string(),
                r.created.clone(),
                dash(&r.activated),
                dash(&r.retired),
                dash(&r.revoked),
                dash(&r.safe_to_activate_at),
                dash(&r.safe_to_prune_at),
            ]
        })
        .collect();
    let mut widths = header.map(str::len);
    for row in &cells {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.len());
        }
    }
    let line = |cols: Vec<&str>| {
        cols.iter()
            .zip(widths)
            .map(|(c, w)| format!("{c:<w$}"))
            .collect::<Vec<_>>()
            .join("  ")
            .trim_end()
            .to_owned()
    };
    writeln!(out, "{}", line(header.to_vec()))?;
    for row in &cells {
        writeln!(out, "{}", line(row.iter().map(String::as_str).collect()))?;
    }
    Ok(())
}
