//! The keys directory on disk, and every operation that changes it.
//!
//! Invariants kept here:
//! - every write is a temp file in the same directory, fsync, rename, fsync of the
//!   directory: a crash leaves the old file or the new one, never half of one;
//! - a new key file is written before the manifest that names it, and a pruned
//!   key's file is deleted after the manifest that forgot it: a crash can leave an
//!   unused key file behind, never a manifest entry without its key;
//! - writers hold an exclusive lock and re-read the manifest under it; readers hold
//!   a shared lock, so nobody reads a keyring half-way through a prune;
//! - key files are 0600 and the directory 0700, checked on every load.

use std::fs::{self, File, OpenOptions};
use std::io::Write as _;
use std::os::unix::fs::{DirBuilderExt as _, OpenOptionsExt as _, PermissionsExt as _};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use crate::error::KeyringError;
use crate::jwk::JwkSet;
use crate::keys::{self, KeySpec, Signer};
use crate::lifecycle::{Change, InitOutcome, Now, PruneOutcome, RevokeOutcome, RotateOutcome};
use crate::manifest::{KeyRecord, KeyState, Manifest};
use crate::ops::{self, Op};
use crate::policy::{Clock, RotationPolicy, SystemClock};
use std::sync::Arc;

const LOCK_FILE: &str = ".lock";
const KEY_MODE: u32 = 0o600;
const DIR_MODE: u32 = 0o700;
const LOCK_POLL: Duration = Duration::from_millis(50);

/// A keys directory: where private keys and the manifest live.
#[derive(Debug, Clone)]
pub struct KeyDir {
    dir: PathBuf,
    lock_wait: Duration,
    clock: Arc<dyn Clock>,
}

/// A keyring loaded for use: the one active signer and the public JWK set.
#[derive(Debug)]
pub struct Keyring {
    manifest: Manifest,
    signer: Signer,
    jwks: JwkSet,
}

impl Keyring {
    /// The active key, parsed once at load.
    pub fn signer(&self) -> &Signer {
        &self.signer
    }

    /// The published keys: active first, then pending, then retired; never revoked.
    pub fn jwks(&self) -> &JwkSet {
        &self.jwks
    }

    /// Every key and its state, as the manifest records them.
    pub fn manifest(&self) -> &Manifest {
        &self.manifest
    }
}

/// The checked contents of a keyring, whether or not it has an active key.
#[derive(Debug)]
pub struct Inspection {
    /// Every key and its state.
    pub manifest: Manifest,
    /// The published public keys.
    pub jwks: JwkSet,
    active: Option<Signer>,
}

impl Inspection {
    /// Checks a keyring from any store: every published key's PKCS#8 PEM, from
    /// `key_text` (which also names where it came from, for errors), is parsed
    /// once, must be the key its record names (kid and size), and the active
    /// one must sign. The JWKS lists the active key first, then the others in
    /// manifest order: the same manifest and keys give the same bytes.
    pub fn assemble(
        manifest: Manifest,
        mut key_text: impl FnMut(
            &KeyRecord,
        )
            -> Result<(PathBuf, zeroize::Zeroizing<Vec<u8>>), KeyringError>,
    ) -> Result<Self, KeyringError> {
        let mut active = None;
        let mut published = Vec::new();
        for record in manifest.keys.iter().filter(|k| k.state.is_published()) {
            let (path, text) = key_text(record)?;
            let invalid = |problem: String| KeyringError::KeyFileInvalid {
                path: path.clone(),
                problem,
            };
            let parsed = keys::parse_key_file(&text).map_err(invalid)?;
            if parsed.jwk.kid != record.kid {
                return Err(invalid(format!(
                    "holds key {} but the manifest lists it as {}; the key was replaced or renamed",
                    parsed.jwk.kid, record.kid
                )));
            }
            if parsed.alg() != record.alg {
                return Err(invalid(format!(
                    "is an {} key but the manifest says {}",
                    parsed.alg(),
                    record.alg
                )));
            }
            if parsed.bits != record.bits {
                return Err(invalid(format!(
                    "is a {}-bit key but the manifest says {} bits",
                    parsed.bits, record.bits
                )));
            }
            if matches!(record.state, KeyState::Active { .. }) {
                published.insert(0, parsed.jwk.clone());
                let signer = Signer::new(parsed);
                signer.self_test()?;
                active = Some(signer);
            } else {
                published.push(parsed.jwk);
            }
        }
        Ok(Self {
            manifest,
            jwks: JwkSet { keys: published },
            active,
        })
    }

    /// The keyring for signing; fails without an active key (`location` names
    /// the keyring in the error).
    pub fn into_keyring(self, location: &Path) -> Result<Keyring, KeyringError> {
        let signer = self.active.ok_or_else(|| KeyringError::NoActiveKey {
            dir: location.to_owned(),
        })?;
        Ok(Keyring {
            manifest: self.manifest,
            signer,
            jwks: self.jwks,
        })
    }
}

static TEMP_COUNTER: AtomicU64 = AtomicU64::new(0);

impl KeyDir {
    /// A keyring in `dir`. Nothing is read or written until an operation runs.
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        Self {
            dir: dir.into(),
            lock_wait: Duration::from_secs(30),
            clock: Arc::new(SystemClock),
        }
    }

    /// Reads time from `clock` instead of the system clock (tests of the rules).
    pub fn with_clock(mut self, clock: Arc<dyn Clock>) -> Self {
        self.clock = clock;
        self
    }

    /// How long an operation waits for another process's lock before failing.
    pub fn with_lock_wait(mut self, wait: Duration) -> Self {
        self.lock_wait = wait;
        self
    }

    /// The directory.
    pub fn path(&self) -> &Path {
        &self.dir
    }

    /// Where the manifest lives.
    pub fn manifest_path(&self) -> PathBuf {
        self.dir.join(crate::MANIFEST_FILE)
    }

    /// Where the private key with this kid lives.
    pub fn key_path(&self, kid: &str) -> PathBuf {
        self.dir.join(format!("{kid}.pem"))
    }

    // ---- reading ----------------------------------------------------------

    /// Loads the keyring for signing: checks permissions, parses every published
    /// key once, verifies each kid, and requires exactly one active key.
    pub fn load(&self) -> Result<Keyring, KeyringError> {
        self.inspect()?.into_keyring(&self.dir)
    }

    /// Reads and checks the whole keyring without requiring an active key (for
    /// `list` and for operations that repair a keyring).
    pub fn inspect(&self) -> Result<Inspection, KeyringError> {
        self.require_manifest()?;
        let _lock = self.lock(false)?;
        self.inspect_locked()
    }

    fn require_manifest(&self) -> Result<(), KeyringError> {
        let path = self.manifest_path();
        match fs::symlink_metadata(&path) {
            Ok(_) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                Err(KeyringError::NotInitialised {
                    dir: self.dir.clone(),
                })
            }
            Err(e) => Err(KeyringError::io("reading", path)(e)),
        }
    }

    fn read_manifest(&self) -> Result<Option<Manifest>, KeyringError> {
        let path = self.manifest_path();
        match fs::read(&path) {
            Ok(bytes) => Manifest::parse(&path, &bytes).map(Some),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(KeyringError::io("reading", path)(e)),
        }
    }

    fn inspect_locked(&self) -> Result<Inspection, KeyringError> {
        check_mode(&self.dir, DIR_MODE)?;
        let manifest = self
            .read_manifest()?
            .ok_or_else(|| KeyringError::NotInitialised {
                dir: self.dir.clone(),
            })?;
        Inspection::assemble(manifest, |record| self.read_key(record))
    }

    /// A key file's contents, once its type and mode are checked.
    fn read_key(
        &self,
        record: &KeyRecord,
    ) -> Result<(PathBuf, zeroize::Zeroizing<Vec<u8>>), KeyringError> {
        let path = self.key_path(&record.kid);
        let invalid = |problem: String| KeyringError::KeyFileInvalid {
            path: path.clone(),
            problem,
        };
        let meta = match fs::symlink_metadata(&path) {
            Ok(meta) => meta,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Err(KeyringError::KeyFileMissing {
                    path,
                    kid: record.kid.clone(),
                    state: record.state.name(),
                });
            }
            Err(e) => return Err(KeyringError::io("reading", path)(e)),
        };
        if !meta.file_type().is_file() {
            return Err(invalid(
                "not a regular file (symlinks are refused)".to_owned(),
            ));
        }
        check_mode(&path, KEY_MODE)?;
        let text = zeroize::Zeroizing::new(
            fs::read(&path).map_err(KeyringError::io("reading", path.clone()))?,
        );
        Ok((path, text))
    }

    // ---- locking and writing ----------------------------------------------

    fn lock(&self, exclusive: bool) -> Result<File, KeyringError> {
        let path = self.dir.join(LOCK_FILE);
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .mode(KEY_MODE)
            .open(&path)
            .map_err(KeyringError::io("opening lock file", path.clone()))?;
        let tries = (self.lock_wait.as_millis() / LOCK_POLL.as_millis()).max(1);
        for attempt in 0..=tries {
            let result = if exclusive {
                file.try_lock()
            } else {
                file.try_lock_shared()
            };
            match result {
                Ok(()) => return Ok(file),
                Err(fs::TryLockError::WouldBlock) if attempt < tries => {
                    std::thread::sleep(LOCK_POLL);
                }
                Err(fs::TryLockError::WouldBlock) => break,
                Err(fs::TryLockError::Error(e)) => {
                    return Err(KeyringError::io("locking", path)(e));
                }
            }
        }
        Err(KeyringError::Locked {
            path,
            waited: self.lock_wait,
        })
    }

    /// Creates the directory (0700) if needed, tightens its mode if it is open to
    /// others (a fresh `git clone` makes `keys/` 0755), and takes the write lock.
    fn lock_for_writing(&self) -> Result<File, KeyringError> {
        // `metadata` follows a symlink: a keys directory may be a link (e.g. into a
        // mounted secrets volume). Key files themselves may not be links.
        match fs::metadata(&self.dir) {
            Ok(meta) if meta.is_dir() => {
                if meta.permissions().mode() & 0o077 != 0 {
                    fs::set_permissions(&self.dir, fs::Permissions::from_mode(DIR_MODE))
                        .map_err(KeyringError::io("setting permissions of", self.dir.clone()))?;
                }
            }
            Ok(_) => {
                return Err(KeyringError::io(
                    "using as keys directory",
                    self.dir.clone(),
                )(std::io::Error::other("not a directory")));
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                fs::DirBuilder::new()
                    .recursive(true)
                    .mode(DIR_MODE)
                    .create(&self.dir)
                    .map_err(KeyringError::io("creating", self.dir.clone()))?;
            }
            Err(e) => return Err(KeyringError::io("reading", self.dir.clone())(e)),
        }
        self.lock(true)
    }

    /// Runs `change` on the manifest under the write lock and saves the result.
    /// The closure sees the keyring as it is now (re-read and fully checked under
    /// the lock) and the time, read after the lock was taken, and returns the keys
    /// to add and to delete. Keys are generated before calling this, so the time
    /// recorded for a new key is no earlier than the moment it is written.
    fn modify<T>(
        &self,
        change: impl FnOnce(&mut Manifest, Now) -> Result<Change<T>, KeyringError>,
    ) -> Result<T, KeyringError> {
        let _lock = self.lock_for_writing()?;
        let mut manifest = match self.read_manifest()? {
            Some(_) => self.inspect_locked()?.manifest,
            None => Manifest::default(),
        };
        let change = change(&mut manifest, Now::read(self.clock.as_ref()))?;
        for key in &change.new_keys {
            self.write_atomic(&self.key_path(&key.kid), key.pem.as_bytes())?;
        }
        let manifest_json = manifest.to_json().map_err(|e| {
            KeyringError::io("serialising", self.manifest_path())(std::io::Error::other(e))
        })?;
        self.write_atomic(&self.manifest_path(), &manifest_json)?;
        for kid in &change.delete_keys {
            let path = self.key_path(kid);
            match fs::remove_file(&path) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => return Err(KeyringError::io("deleting", path)(e)),
            }
        }
        if !change.delete_keys.is_empty() {
            sync_dir(&self.dir)?;
        }
        Ok(change.outcome)
    }

    /// Temp file + fsync + rename + fsync of the directory, mode 0600.
    fn write_atomic(&self, path: &Path, bytes: &[u8]) -> Result<(), KeyringError> {
        let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("file");
        let tmp = self.dir.join(format!(
            ".{name}.{}.{}.tmp",
            std::process::id(),
            TEMP_COUNTER.fetch_add(1, Ordering::Relaxed)
        ));
        let result = (|| {
            let mut file = OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(KEY_MODE)
                .open(&tmp)
                .map_err(KeyringError::io("creating", tmp.clone()))?;
            file.write_all(bytes)
                .map_err(KeyringError::io("writing", tmp.clone()))?;
            file.sync_all()
                .map_err(KeyringError::io("syncing", tmp.clone()))?;
            drop(file);
            fs::rename(&tmp, path).map_err(KeyringError::io("renaming into place", path))
        })();
        if result.is_err() {
            let _ = fs::remove_file(&tmp);
        }
        result?;
        sync_dir(&self.dir)
    }

    // ---- operations -------------------------------------------------------

    /// Applies `op` (see [`crate::ops`]): prepared outside the lock, then
    /// run under it on the keyring as stored now.
    pub fn apply<O: Op>(&self, mut op: O) -> Result<O::Outcome, KeyringError> {
        let stored = if O::READS_FIRST {
            self.read_manifest()?
        } else {
            None
        };
        op.prepare(stored.as_ref(), &self.dir)?;
        self.modify(|manifest, now| op.apply(manifest, &self.dir, self.clock.as_ref(), now))
    }

    /// Starts an empty keyring: one active key and one pending key, made as
    /// `spec` says (a number alone: RSA keys of that size).
    pub fn init(&self, spec: impl Into<KeySpec>) -> Result<InitOutcome, KeyringError> {
        self.apply(ops::Init::new(spec))
    }

    /// Adds a freshly generated pending key and returns its record.
    pub fn generate(&self, spec: impl Into<KeySpec>) -> Result<KeyRecord, KeyringError> {
        self.apply(ops::Generate::new(spec))
    }

    /// Imports an existing private key (RSA as PKCS#8 or PKCS#1 PEM, EC
    /// P-256 or Ed25519 as PKCS#8 PEM) as a pending key.
    /// It is stored as PKCS#8, whatever the input was.
    pub fn import(&self, pem_path: &Path) -> Result<KeyRecord, KeyringError> {
        self.apply(ops::Import::new(pem_path))
    }

    /// The scheduled rotation: see [`lifecycle::rotate`].
    pub fn rotate(
        &self,
        policy: &RotationPolicy,
        force: bool,
        spec: impl Into<KeySpec>,
    ) -> Result<RotateOutcome, KeyringError> {
        self.apply(ops::Rotate::new(*policy, force, spec))
    }

    /// Withdraws a pending key: see [`lifecycle::retire`].
    pub fn retire(&self, kid: &str) -> Result<KeyRecord, KeyringError> {
        self.apply(ops::Retire::new(kid))
    }

    /// Emergency revocation: see [`lifecycle::revoke`].
    pub fn revoke(
        &self,
        kid: &str,
        policy: &RotationPolicy,
        spec: impl Into<KeySpec>,
    ) -> Result<RevokeOutcome, KeyringError> {
        self.apply(ops::Revoke::new(kid, *policy, spec))
    }

    /// Deletes what may go: see [`lifecycle::prune`].
    pub fn prune(
        &self,
        policy: &RotationPolicy,
        force: bool,
    ) -> Result<PruneOutcome, KeyringError> {
        self.apply(ops::Prune::new(*policy, force))
    }
}

fn check_mode(path: &Path, expected: u32) -> Result<(), KeyringError> {
    let meta = fs::metadata(path).map_err(KeyringError::io("reading", path))?;
    let mode = meta.permissions().mode() & 0o7777;
    if mode & 0o077 != 0 {
        return Err(KeyringError::InsecurePermissions {
            path: path.to_owned(),
            mode,
            expected,
        });
    }
    Ok(())
}

fn sync_dir(dir: &Path) -> Result<(), KeyringError> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(KeyringError::io("syncing", dir))
}
