//! The keyring as the running service sees it: one immutable snapshot (signer +
//! the JWKS bytes served + their ETag), swapped atomically when the CLI changes
//! the keyring on disk.
//!
//! Requests take one snapshot and use only it, so no request can see a signer
//! whose key is missing from the JWKS it serves. Reloads run off the request
//! path (file I/O and key parsing on a blocking thread); requests never wait
//! for one.
//!
//! The keyring lives in a keys directory (the default) or in the database
//! (several instances): [`KeyStore`] gives both the same operations, and the
//! CLI and the service use nothing else.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use arc_swap::ArcSwapOption;
use axum::body::Bytes;
use tessera_keyring::{Inspection, KeyDir, Keyring, KeyringError, Op, Signer, b64url, ops, sha256};

use crate::db::keyring::DbKeyring;

/// One published state of the keyring.
#[derive(Debug)]
pub struct KeySnapshot {
    keyring: Keyring,
    algorithms: Vec<tessera_keyring::Algorithm>,
    jwks_json: Bytes,
    etag: String,
    etag_header: axum::http::HeaderValue,
}

impl KeySnapshot {
    fn new(keyring: Keyring) -> Result<Self, KeyringError> {
        let json = serde_json::to_vec(keyring.jwks()).map_err(|e| KeyringError::Io {
            action: "serialising the JWKS of",
            path: std::path::PathBuf::from("keyring"),
            source: std::io::Error::other(e),
        })?;
        // A strong validator: it changes exactly when the served bytes change.
        let etag = format!("\"{}\"", b64url(&sha256(&json)[..16]));
        // base64url and quotes: always a valid header value.
        let etag_header = axum::http::HeaderValue::from_str(&etag)
            .unwrap_or(axum::http::HeaderValue::from_static("\"\""));
        // The JWKS lists the active key first.
        let mut algorithms: Vec<tessera_keyring::Algorithm> = Vec::new();
        for alg in keyring.jwks().keys.iter().filter_map(|k| k.algorithm()) {
            if !algorithms.contains(&alg) {
                algorithms.push(alg);
            }
        }
        Ok(Self {
            keyring,
            algorithms,
            jwks_json: Bytes::from(json),
            etag,
            etag_header,
        })
    }

    /// The active key.
    pub fn signer(&self) -> &Signer {
        self.keyring.signer()
    }

    /// The algorithms of the published keys, the active key's first: what
    /// verifiers must accept from this issuer now.
    pub fn algorithms(&self) -> &[tessera_keyring::Algorithm] {
        &self.algorithms
    }

    /// The keyring this snapshot was built from.
    pub fn keyring(&self) -> &Keyring {
        &self.keyring
    }

    /// The JWKS document, exactly as served.
    pub fn jwks_json(&self) -> &Bytes {
        &self.jwks_json
    }

    /// The JWKS document's strong ETag, quotes included.
    pub fn etag(&self) -> &str {
        &self.etag
    }

    /// The same ETag, ready to send.
    pub fn etag_header(&self) -> &axum::http::HeaderValue {
        &self.etag_header
    }
}

/// Where the keyring lives.
#[derive(Debug, Clone)]
pub enum KeyStore {
    /// A keys directory: PEM files and a manifest (the default).
    Files(KeyDir),
    /// The issuer's database, keys sealed under a key-encryption key.
    Database(DbKeyring),
}

/// Runs a [`KeyDir`] operation on a blocking thread (file I/O, locks, key
/// generation), or the same [`DbKeyring`] operation.
macro_rules! on_store {
    ($store:expr, |$dir:ident| $files:expr, |$db:ident| $database:expr) => {
        match $store {
            KeyStore::Files(dir) => {
                let $dir = dir.clone();
                tokio::task::spawn_blocking(move || $files)
                    .await
                    .map_err(|e| KeyringError::Generate(e.to_string()))?
            }
            KeyStore::Database($db) => $database.await,
        }
    };
}

impl KeyStore {
    /// Where it is, for messages: the directory, or "the database keyring".
    pub fn location(&self) -> String {
        match self {
            Self::Files(dir) => dir.path().display().to_string(),
            Self::Database(_) => crate::db::keyring::LOCATION.to_owned(),
        }
    }

    /// Applies a keyring change (see [`tessera_keyring::ops`]): on a blocking
    /// thread for a keys directory (file I/O, locks, key generation), or in a
    /// transaction for the database keyring.
    pub async fn apply<O: Op>(&self, op: O) -> Result<O::Outcome, KeyringError> {
        on_store!(self, |dir| dir.apply(op), |db| db.apply(op))
    }

    /// Reads and checks the whole keyring.
    pub async fn inspect(&self) -> Result<Inspection, KeyringError> {
        on_store!(self, |dir| dir.inspect(), |db| db.inspect())
    }

    /// What changes whenever the keyring does (the manifest's bytes, or the
    /// database keyring's version): cheap, polled by every instance.
    async fn marker(&self) -> Result<Vec<u8>, KeyringError> {
        on_store!(self, |dir| Ok(read_manifest(&dir)), |db| async {
            Ok(db.version().await?.unwrap_or(0).to_le_bytes().to_vec())
        })
    }

    /// The keyring for signing, and the marker it was loaded at.
    async fn load(&self) -> Result<(Keyring, Vec<u8>), KeyringError> {
        on_store!(
            self,
            |dir| {
                let marker = read_manifest(&dir);
                dir.load().map(|keyring| (keyring, marker))
            },
            |db| async {
                let (keyring, version) = db.load().await?;
                Ok((keyring, version.to_le_bytes().to_vec()))
            }
        )
    }
}

/// The live keyring: the current snapshot, and what is needed to reload it.
#[derive(Debug)]
pub struct KeyHandle {
    store: KeyStore,
    /// Create the keyring if the store holds none when the handle first
    /// loads (the service's first start); never after.
    init_spec: Option<tessera_keyring::KeySpec>,
    /// `None` only while a database keyring could not be read yet.
    current: ArcSwapOption<KeySnapshot>,
    reload: tokio::sync::Mutex<Vec<u8>>,
    /// The error of the last failed reload, while the keyring stays broken.
    error: Mutex<Option<String>>,
    /// Reloads that failed, since start (exported as a metric).
    reload_errors: std::sync::atomic::AtomicU64,
}

impl KeyHandle {
    /// Loads a keys directory once. Fails if it cannot sign.
    pub fn load(dir: KeyDir) -> Result<Self, KeyringError> {
        let marker = read_manifest(&dir);
        let snapshot = KeySnapshot::new(dir.load()?)?;
        Ok(Self {
            store: KeyStore::Files(dir),
            init_spec: None,
            current: ArcSwapOption::from_pointee(snapshot),
            reload: tokio::sync::Mutex::new(marker),
            error: Mutex::new(None),
            reload_errors: std::sync::atomic::AtomicU64::new(0),
        })
    }

    /// Loads the keyring from `store`, creating it first if `init_spec` is set
    /// and the store holds none (several instances starting at once create
    /// one). A database keyring that cannot be reached yet is not an error:
    /// the handle starts empty (the service is not ready) and [`Self::watch`]
    /// loads it when the database answers. Any other failure is.
    pub async fn start(
        store: KeyStore,
        init_spec: Option<tessera_keyring::KeySpec>,
    ) -> Result<Self, KeyringError> {
        let handle = Self {
            store,
            init_spec,
            current: ArcSwapOption::empty(),
            reload: tokio::sync::Mutex::new(Vec::new()),
            error: Mutex::new(None),
            reload_errors: std::sync::atomic::AtomicU64::new(0),
        };
        match handle.reload_if_changed().await {
            Ok(_) => Ok(handle),
            Err(err) if matches!(handle.store, KeyStore::Database(_)) && is_unreachable(&err) => {
                tracing::warn!(error = %err, "the database keyring is unreachable: starting not ready");
                Ok(handle)
            }
            Err(err) => Err(err),
        }
    }

    /// The current snapshot, if a keyring is loaded. Cheap: no lock, no copy.
    pub fn current(&self) -> Option<Arc<KeySnapshot>> {
        self.current.load_full()
    }

    /// The current snapshot, borrowed for the span of a request.
    pub fn current_guard(&self) -> arc_swap::Guard<Option<Arc<KeySnapshot>>> {
        self.current.load()
    }

    /// Why the last reload failed, while the keyring stays broken.
    pub fn reload_error(&self) -> Option<String> {
        self.error.lock().ok().and_then(|e| e.clone())
    }

    /// How many reloads have failed since start.
    pub fn reload_errors(&self) -> u64 {
        self.reload_errors
            .load(std::sync::atomic::Ordering::Relaxed)
    }

    fn set_error(&self, error: Option<String>) {
        if error.is_some() {
            self.reload_errors
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        }
        if let Ok(mut slot) = self.error.lock() {
            *slot = error;
        }
    }

    /// Reloads if the keyring changed since the last look (its marker), or if
    /// the last reload failed (a `chmod` fixes a key file without touching the
    /// manifest). On failure the current snapshot stays in service and the
    /// error is kept for `/readyz`; the same error is logged once, not on
    /// every poll.
    ///
    /// Returns whether a new snapshot was installed.
    pub async fn reload_if_changed(&self) -> Result<bool, KeyringError> {
        let mut last = self.reload.lock().await;
        let unchanged = match self.store.marker().await {
            Ok(marker) => marker == *last,
            Err(_) => false,
        };
        if unchanged && self.reload_error().is_none() && self.current.load().is_some() {
            return Ok(false);
        }
        match self.load_snapshot().await {
            Ok((snapshot, marker)) => {
                *last = marker;
                let old = self.current();
                let changed = old.as_ref().is_none_or(|old| {
                    snapshot.etag != old.etag || snapshot.signer().kid() != old.signer().kid()
                });
                if changed {
                    tracing::info!(
                        target: "audit",
                        event = "key_reload",
                        active_kid = snapshot.signer().kid(),
                        published = snapshot.keyring.jwks().keys.len(),
                        "keyring reloaded"
                    );
                }
                self.current.store(Some(Arc::new(snapshot)));
                self.set_error(None);
                Ok(changed)
            }
            Err(err) => {
                let message = err.to_string();
                if self.reload_error().as_deref() != Some(message.as_str()) {
                    tracing::error!(
                        target: "audit",
                        event = "key_reload_failed",
                        error = %message,
                        "keyring reload failed; still serving the last good keyring"
                    );
                }
                self.set_error(Some(message));
                Err(err)
            }
        }
    }

    async fn load_snapshot(&self) -> Result<(KeySnapshot, Vec<u8>), KeyringError> {
        // Only a start that has never loaded a keyring creates one: a keyring
        // that vanishes later (a cleanup, an unmounted volume) is an error,
        // not a reason to sign with keys no verifier has fetched.
        let first_load = self.current.load().is_none();
        let loaded = match (self.store.load().await, self.init_spec) {
            (Err(KeyringError::NotInitialised { .. }), Some(spec)) if first_load => {
                match self.store.apply(ops::Init::new(spec)).await {
                    Ok(o) => tracing::info!(
                        target: "audit",
                        event = "keyring_initialised",
                        keyring = %self.store.location(),
                        active_kid = %o.active,
                        pending_kid = %o.pending,
                        "created a new keyring"
                    ),
                    // Another instance created it meanwhile.
                    Err(KeyringError::AlreadyInitialised { .. }) => {}
                    Err(other) => return Err(other),
                }
                self.store.load().await
            }
            (loaded, _) => loaded,
        };
        let (keyring, marker) = loaded?;
        Ok((KeySnapshot::new(keyring)?, marker))
    }

    /// Polls the keyring every `interval` until `shutdown` resolves.
    pub async fn watch(self: Arc<Self>, interval: Duration, shutdown: impl Future<Output = ()>) {
        let mut ticker = tokio::time::interval(interval);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        tokio::pin!(shutdown);
        loop {
            tokio::select! {
                () = &mut shutdown => return,
                _ = ticker.tick() => {
                    // Errors are logged and kept inside `reload_if_changed`.
                    let _ = self.reload_if_changed().await;
                }
            }
        }
    }
}

/// Whether a keyring error means "the database cannot be reached now".
fn is_unreachable(err: &KeyringError) -> bool {
    matches!(err, KeyringError::Io { source, .. } if source.kind() == std::io::ErrorKind::NotConnected)
}

/// The manifest's bytes, or empty if it cannot be read (the load reports why).
fn read_manifest(dir: &KeyDir) -> Vec<u8> {
    std::fs::read(dir.manifest_path()).unwrap_or_default()
}
