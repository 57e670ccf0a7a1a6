//! The keyring as the running service sees it: one immutable snapshot (signer +
//! the JWKS bytes served + their ETag), swapped atomically when the CLI changes
//! the keyring on disk.
//!
//! Requests take one snapshot and use only it, so no request can see a signer
//! whose key is missing from the JWKS it serves. Reloads run on a blocking
//! thread; requests never wait for one.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use arc_swap::ArcSwap;
use axum::body::Bytes;
use tessera_keyring::{KeyDir, Keyring, KeyringError, Signer, b64url, sha256};

/// One published state of the keyring.
#[derive(Debug)]
pub struct KeySnapshot {
    keyring: Keyring,
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
        Ok(Self {
            keyring,
            jwks_json: Bytes::from(json),
            etag,
            etag_header,
        })
    }

    /// The active key.
    pub fn signer(&self) -> &Signer {
        self.keyring.signer()
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

/// The live keyring: the current snapshot, and what is needed to reload it.
#[derive(Debug)]
pub struct KeyHandle {
    dir: KeyDir,
    current: ArcSwap<KeySnapshot>,
    reload: Mutex<ReloadState>,
}

#[derive(Debug, Default)]
struct ReloadState {
    /// The manifest bytes last acted on (loaded, or failed to load).
    manifest: Vec<u8>,
    /// The error of the last failed reload, if the keyring on disk is still broken.
    error: Option<String>,
}

impl KeyHandle {
    /// Loads the keyring once. Fails if it cannot sign.
    pub fn load(dir: KeyDir) -> Result<Self, KeyringError> {
        let manifest = read_manifest(&dir);
        let snapshot = KeySnapshot::new(dir.load()?)?;
        Ok(Self {
            dir,
            current: ArcSwap::from_pointee(snapshot),
            reload: Mutex::new(ReloadState {
                manifest,
                error: None,
            }),
        })
    }

    /// The current snapshot. Cheap: no lock, no copy.
    pub fn current(&self) -> Arc<KeySnapshot> {
        self.current.load_full()
    }

    /// The current snapshot, borrowed for the span of a request.
    pub fn current_guard(&self) -> arc_swap::Guard<Arc<KeySnapshot>> {
        self.current.load()
    }

    /// Why the last reload failed, while the keyring on disk stays broken.
    pub fn reload_error(&self) -> Option<String> {
        self.reload.lock().ok().and_then(|s| s.error.clone())
    }

    /// Reloads if the manifest changed since the last look, or if the last reload
    /// failed (a `chmod` fixes a key file without touching the manifest). On
    /// failure the current snapshot stays in service and the error is kept for
    /// `/readyz`; the same error is logged once, not on every poll.
    ///
    /// Returns whether a new snapshot was installed.
    pub fn reload_if_changed(&self) -> Result<bool, KeyringError> {
        let Ok(mut state) = self.reload.lock() else {
            return Ok(false);
        };
        let manifest = read_manifest(&self.dir);
        if manifest == state.manifest && state.error.is_none() {
            return Ok(false);
        }
        state.manifest = manifest;
        match self.dir.load().and_then(KeySnapshot::new) {
            Ok(snapshot) => {
                let old = self.current();
                let changed =
                    snapshot.etag != old.etag || snapshot.signer().kid() != old.signer().kid();
                if changed {
                    tracing::info!(
                        target: "audit",
                        event = "key_reload",
                        active_kid = snapshot.signer().kid(),
                        published = snapshot.keyring.jwks().keys.len(),
                        "keyring reloaded"
                    );
                }
                self.current.store(Arc::new(snapshot));
                state.error = None;
                Ok(changed)
            }
            Err(err) => {
                let message = err.to_string();
                if state.error.as_deref() != Some(message.as_str()) {
                    tracing::error!(
                        target: "audit",
                        event = "key_reload_failed",
                        error = %message,
                        "keyring reload failed; still serving the last good keyring"
                    );
                }
                state.error = Some(message);
                Err(err)
            }
        }
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
                    let handle = Arc::clone(&self);
                    // Key parsing and file I/O: off the async workers. Errors are
                    // logged and kept inside `reload_if_changed`.
                    let _ = tokio::task::spawn_blocking(move || handle.reload_if_changed()).await;
                }
            }
        }
    }
}

/// The manifest's bytes, or empty if it cannot be read (the load reports why).
fn read_manifest(dir: &KeyDir) -> Vec<u8> {
    std::fs::read(dir.manifest_path()).unwrap_or_default()
}
