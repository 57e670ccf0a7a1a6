//! The keyring in the database, for several issuer instances: the manifest (key
//! states and times, no key material) in one row with a version number every
//! change increments, and each private key sealed with AES-256-GCM under a key
//! derived from the key-encryption key (KEK) and the key's kid. The KEK comes
//! from a file or an environment variable and is never written anywhere.
//!
//! Every operation runs the keyring crate's [`lifecycle`] rules, exactly as the
//! file keyring does, inside one transaction that holds the keyring lock (an
//! advisory lock on PostgreSQL, `BEGIN IMMEDIATE` on SQLite): two operators
//! or schedulers rotating at once rotate once, since the second finds only the
//! pending key the first just added, too young to activate.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use tessera_keyring::lifecycle::{Change, Now};
use tessera_keyring::{
    Clock, Inspection, KeyRecord, Keyring, KeyringError, Manifest, NewKey, Op, SystemClock,
};
use zeroize::Zeroizing;

use super::{Backend, Db, DbError};

/// The advisory lock keyring changes take on PostgreSQL ("keyring" in ASCII).
const KEYRING_LOCK: i64 = 0x6b_65_79_72_69_6e_67;

/// A key-encryption key: 32 random bytes. Its `Debug` shows nothing.
#[derive(Clone)]
pub struct Kek(Arc<Zeroizing<[u8; 32]>>);

impl std::fmt::Debug for Kek {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Kek(..)")
    }
}

/// Why a KEK cannot be used.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum KekError {
    /// A database keyring, but no key-encryption key configured.
    #[error(
        "keyring = \"database\" needs a key-encryption key: set TESSERA_KEY_ENCRYPTION_KEY or key_encryption_key_file (`tessera-issuer keys new-kek` makes one)"
    )]
    Missing,
    /// Not 32 bytes in base64 or base64url.
    #[error(
        "the key-encryption key must be 32 random bytes in base64url (43 characters; `tessera-issuer keys new-kek` makes one)"
    )]
    Malformed,
    /// The file cannot be read.
    #[error("reading the key-encryption key file {}: {source}", path.display())]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The file is readable by other users.
    #[error("the key-encryption key file {} is open to other users (mode {mode:o}); chmod 600 it", path.display())]
    Insecure {
        /// The file.
        path: PathBuf,
        /// Its mode.
        mode: u32,
    },
}

impl Kek {
    /// A fresh random KEK, base64url-encoded, for an operator to store.
    pub fn generate_text() -> String {
        crate::passwords::random_token(32)
    }

    /// Parses 32 bytes in base64url or standard base64 (padding optional),
    /// surrounding whitespace ignored.
    pub fn from_text(text: &str) -> Result<Self, KekError> {
        use base64::Engine as _;
        let text = text.trim();
        let engines = [
            base64::engine::general_purpose::URL_SAFE_NO_PAD,
            base64::engine::general_purpose::STANDARD_NO_PAD,
        ];
        let trimmed = text.trim_end_matches('=');
        for engine in engines {
            if let Ok(bytes) = engine.decode(trimmed).map(Zeroizing::new)
                && let Ok(key) = <[u8; 32]>::try_from(bytes.as_slice())
            {
                return Ok(Self(Arc::new(Zeroizing::new(key))));
            }
        }
        Err(KekError::Malformed)
    }

    /// Reads a KEK file, which must not be open to other users.
    pub fn from_file(path: &Path) -> Result<Self, KekError> {
        use std::os::unix::fs::PermissionsExt as _;
        let read = |source| KekError::Read {
            path: path.to_owned(),
            source,
        };
        let mode = std::fs::metadata(path).map_err(read)?.permissions().mode() & 0o7777;
        if mode & 0o077 != 0 {
            return Err(KekError::Insecure {
                path: path.to_owned(),
                mode,
            });
        }
        let text = Zeroizing::new(std::fs::read_to_string(path).map_err(read)?);
        Self::from_text(&text)
    }

    /// The secret a key's seal is derived from: label, KEK and kid, so a
    /// sealed key moved to another kid's row does not open.
    fn secret(&self, kid: &str) -> Zeroizing<Vec<u8>> {
        let mut secret = Zeroizing::new(b"tessera/keyring/v1\0".to_vec());
        secret.extend_from_slice(&self.0[..]);
        secret.extend_from_slice(kid.as_bytes());
        secret
    }

    fn seal(&self, key: &NewKey) -> Result<Vec<u8>, KeyringError> {
        tessera_keyring::seal_with_secret(&self.secret(key.kid()), key.pem().as_bytes()).map_err(
            |_| store_error("sealing a private key")(std::io::Error::other("AES-GCM failed")),
        )
    }

    fn open(&self, kid: &str, sealed: &[u8]) -> Result<Zeroizing<Vec<u8>>, KeyringError> {
        tessera_keyring::open_with_secret(&self.secret(kid), sealed)
            .map(Zeroizing::new)
            .ok_or_else(|| KeyringError::KeyFileInvalid {
                path: key_location(kid),
                problem: "cannot be decrypted: the key-encryption key is not the one it was \
                          sealed with, or the row was altered"
                    .to_owned(),
            })
    }
}

/// How errors name the database keyring.
pub const LOCATION: &str = "the database keyring";

fn key_location(kid: &str) -> PathBuf {
    PathBuf::from(format!("{LOCATION} (key {kid})"))
}

fn store_error(action: &'static str) -> impl FnOnce(std::io::Error) -> KeyringError {
    move |source| KeyringError::Io {
        action,
        path: PathBuf::from(LOCATION),
        source,
    }
}

/// A database error as a keyring error; an unreachable database keeps its
/// meaning as `NotConnected`, so the service can start not ready and retry.
fn db_error(action: &'static str) -> impl FnOnce(DbError) -> KeyringError {
    move |e| {
        let kind = if e.is_unavailable() {
            std::io::ErrorKind::NotConnected
        } else {
            std::io::ErrorKind::Other
        };
        store_error(action)(std::io::Error::new(kind, e.to_string()))
    }
}

fn sqlx_error(action: &'static str) -> impl FnOnce(sqlx::Error) -> KeyringError {
    move |e| db_error(action)(super::sql(action)(e))
}

/// The keyring stored in the issuer's database.
#[derive(Debug, Clone)]
pub struct DbKeyring {
    db: Db,
    kek: Kek,
    clock: Arc<dyn Clock>,
}

/// `SELECT` the manifest row on `$conn` (a transaction or a connection).
macro_rules! read_manifest {
    ($conn:ident) => {{
        use sqlx::Row as _;
        let row = sqlx::query("SELECT manifest, version FROM keyring WHERE id = 1")
            .fetch_optional(&mut *$conn)
            .await
            .map_err(sqlx_error("reading the keyring"));
        match row {
            Err(e) => Err(e),
            Ok(None) => Ok(None),
            Ok(Some(row)) => {
                let parsed = (|| -> Result<Stored, KeyringError> {
                    let json: String = row
                        .try_get("manifest")
                        .map_err(sqlx_error("reading the keyring"))?;
                    let version: i64 = row
                        .try_get("version")
                        .map_err(sqlx_error("reading the keyring"))?;
                    Ok(Stored {
                        manifest: Manifest::parse(Path::new(LOCATION), json.as_bytes())?,
                        version,
                    })
                })();
                parsed.map(Some)
            }
        }
    }};
}

/// `SELECT` every sealed key on `$conn`.
macro_rules! read_keys {
    ($conn:ident) => {{
        sqlx::query_as::<_, (String, Vec<u8>)>("SELECT kid, sealed FROM keyring_keys")
            .fetch_all(&mut *$conn)
            .await
            .map_err(sqlx_error("reading the private keys"))
    }};
}

/// The stored manifest and its version.
struct Stored {
    manifest: Manifest,
    version: i64,
}

impl DbKeyring {
    /// The keyring in `db`, its keys sealed under `kek`.
    pub fn new(db: Db, kek: Kek) -> Self {
        Self {
            db,
            kek,
            clock: Arc::new(SystemClock),
        }
    }

    /// Reads time from `clock` (tests of the rules).
    pub fn with_clock(mut self, clock: Arc<dyn Clock>) -> Self {
        self.clock = clock;
        self
    }

    /// The version of the stored keyring, `None` if there is none yet: cheap,
    /// for instances polling for a change.
    pub async fn version(&self) -> Result<Option<i64>, KeyringError> {
        on_pool!(self.db, |pool| sqlx::query_scalar(
            "SELECT version FROM keyring WHERE id = 1"
        )
        .fetch_optional(pool)
        .await
        .map_err(sqlx_error("reading the keyring version")))
    }

    /// Reads and checks the whole keyring (every published key decrypted,
    /// parsed and matched to its record).
    pub async fn inspect(&self) -> Result<Inspection, KeyringError> {
        Ok(self.inspect_versioned().await?.0)
    }

    /// [`DbKeyring::inspect`], with the version it read. The manifest and keys
    /// are read in one transaction, so they belong together.
    pub async fn inspect_versioned(&self) -> Result<(Inspection, i64), KeyringError> {
        macro_rules! read {
            ($tx:ident) => {{
                let stored = read_manifest!($tx)?.ok_or_else(not_initialised)?;
                let keys = read_keys!($tx)?;
                (stored, keys)
            }};
        }
        let (stored, keys) = match &self.db.backend {
            Backend::Sqlite(backend) => {
                let mut tx = backend
                    .pool
                    .begin()
                    .await
                    .map_err(sqlx_error("reading the keyring"))?;
                read!(tx)
            }
            Backend::Postgres(backend) => {
                let mut tx = backend
                    .pool
                    .begin()
                    .await
                    .map_err(sqlx_error("reading the keyring"))?;
                // One snapshot for the manifest and the keys.
                sqlx::query("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ")
                    .execute(&mut *tx)
                    .await
                    .map_err(sqlx_error("reading the keyring"))?;
                read!(tx)
            }
        };
        let inspection = self.assemble(stored.manifest, &keys)?;
        Ok((inspection, stored.version))
    }

    /// The keyring for signing.
    pub async fn load(&self) -> Result<(Keyring, i64), KeyringError> {
        let (inspection, version) = self.inspect_versioned().await?;
        Ok((inspection.into_keyring(Path::new(LOCATION))?, version))
    }

    fn assemble(
        &self,
        manifest: Manifest,
        keys: &[(String, Vec<u8>)],
    ) -> Result<Inspection, KeyringError> {
        Inspection::assemble(manifest, |record: &KeyRecord| {
            let sealed = keys
                .iter()
                .find(|(kid, _)| *kid == record.kid)
                .map(|(_, sealed)| sealed)
                .ok_or_else(|| KeyringError::KeyFileMissing {
                    path: key_location(&record.kid),
                    kid: record.kid.clone(),
                    state: record.state.name(),
                })?;
            Ok((
                key_location(&record.kid),
                self.kek.open(&record.kid, sealed)?,
            ))
        })
    }

    /// Runs `change` under the keyring lock on the keyring as stored now
    /// (fully checked), then stores its new keys, the new manifest with the
    /// next version, and deletes the keys it drops, in the same transaction.
    async fn modify<T>(
        &self,
        change: impl FnOnce(&mut Manifest, Now) -> Result<Change<T>, KeyringError>,
    ) -> Result<T, KeyringError> {
        macro_rules! apply {
            ($tx:ident) => {{
                let stored = read_manifest!($tx)?;
                let version = stored.as_ref().map_or(0, |s| s.version);
                let mut manifest = match stored {
                    Some(stored) => {
                        let keys = read_keys!($tx)?;
                        self.assemble(stored.manifest, &keys)?.manifest
                    }
                    None => Manifest::default(),
                };
                let change = change(&mut manifest, Now::read(self.clock.as_ref()))?;
                let now = crate::unix_now(self.clock.as_ref());
                for key in &change.new_keys {
                    sqlx::query(
                        "INSERT INTO keyring_keys (kid, sealed, created_at) VALUES ($1, $2, $3)",
                    )
                    .bind(key.kid())
                    .bind(self.kek.seal(key)?)
                    .bind(now)
                    .execute(&mut *$tx)
                    .await
                    .map_err(sqlx_error("storing a private key"))?;
                }
                let json = manifest.to_json().map_err(|e| {
                    store_error("serialising the manifest")(std::io::Error::other(e))
                })?;
                let json = String::from_utf8(json).map_err(|e| {
                    store_error("serialising the manifest")(std::io::Error::other(e))
                })?;
                sqlx::query(
                    "INSERT INTO keyring (id, manifest, version) VALUES (1, $1, $2)
                     ON CONFLICT (id) DO UPDATE SET manifest = excluded.manifest,
                                                    version = excluded.version",
                )
                .bind(json)
                .bind(version + 1)
                .execute(&mut *$tx)
                .await
                .map_err(sqlx_error("storing the manifest"))?;
                for kid in &change.delete_keys {
                    sqlx::query("DELETE FROM keyring_keys WHERE kid = $1")
                        .bind(kid)
                        .execute(&mut *$tx)
                        .await
                        .map_err(sqlx_error("deleting a private key"))?;
                }
                change.outcome
            }};
        }
        let outcome = in_transaction!(
            self.db,
            lock KEYRING_LOCK,
            sqlx_error,
            "changing the keyring",
            |tx| apply!(tx)
        );
        Ok(outcome)
    }

    /// Applies `op` (see [`tessera_keyring::ops`]): prepared on a blocking
    /// thread (RSA key generation takes up to seconds of CPU), then run in one
    /// transaction under the keyring lock on the keyring as stored now.
    pub async fn apply<O: Op>(&self, mut op: O) -> Result<O::Outcome, KeyringError> {
        let stored = if O::READS_FIRST {
            self.stored_manifest().await?
        } else {
            None
        };
        let op = tokio::task::spawn_blocking(move || {
            op.prepare(stored.as_ref(), Path::new(LOCATION))?;
            Ok::<_, KeyringError>(op)
        })
        .await
        .map_err(|e| KeyringError::Generate(e.to_string()))??;
        let clock = Arc::clone(&self.clock);
        self.modify(move |manifest, now| {
            op.apply(manifest, Path::new(LOCATION), clock.as_ref(), now)
        })
        .await
    }

    /// The stored manifest, unchecked (to refuse early, before generating keys).
    async fn stored_manifest(&self) -> Result<Option<Manifest>, KeyringError> {
        on_pool!(self.db, |pool| {
            let mut conn = pool
                .acquire()
                .await
                .map_err(sqlx_error("reading the keyring"))?;
            let stored = read_manifest!(conn)?;
            Ok(stored.map(|s| s.manifest))
        })
    }
}

fn not_initialised() -> KeyringError {
    KeyringError::NotInitialised {
        dir: PathBuf::from(LOCATION),
    }
}
