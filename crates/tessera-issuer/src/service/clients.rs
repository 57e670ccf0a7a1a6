//! The client registry as this instance holds it, and client
//! authentication: which registered client a request proves to be, and
//! which callers may introspect. The rules of what a client is and may have
//! are [`crate::clients`]'s.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use arc_swap::ArcSwapOption;
use zeroize::Zeroizing;

use crate::clients::{Client, ClientKind, FRESH_FOR, MISS_RELOAD_EVERY, login_client};
use crate::config::IntrospectionClient;
use crate::db::{Db, DbError};

use super::{AuthError, Issuer};

/// Creates the login client on a first start (`first_start`: no user yet),
/// or whenever the registry holds no client (the first start after an
/// upgrade); returns whether it did. Several instances starting at once
/// create it once.
pub async fn bootstrap(
    db: &Db,
    client_id: &str,
    now: i64,
    first_start: bool,
) -> Result<bool, DbError> {
    if !first_start && db.count_clients().await? != 0 {
        return Ok(false);
    }
    match db.add_client(&login_client(client_id, now)).await {
        Ok(()) => Ok(true),
        Err(DbError::ClientExists(_)) => Ok(false),
        Err(other) => Err(other),
    }
}

/// One load of the registry.
#[derive(Debug, Default)]
pub struct Snapshot {
    clients: HashMap<String, Arc<Client>>,
}

impl Snapshot {
    /// The client with this id, if registered.
    pub fn get(&self, client_id: &str) -> Option<&Arc<Client>> {
        self.clients.get(client_id)
    }
}

#[derive(Debug)]
struct Loaded {
    snapshot: Arc<Snapshot>,
    at: tokio::time::Instant,
}

/// This instance's copy of the registry.
#[derive(Debug, Default)]
pub struct Registry {
    loaded: ArcSwapOption<Loaded>,
    /// Single flight for reloads.
    reloading: tokio::sync::Mutex<()>,
    last_miss_reload: Mutex<Option<tokio::time::Instant>>,
}

impl Registry {
    /// The registry, reloaded first if it is older than [`FRESH_FOR`].
    pub async fn current(&self, db: &Db) -> Result<Arc<Snapshot>, DbError> {
        if let Some(loaded) = self.loaded.load_full()
            && loaded.at.elapsed() < FRESH_FOR
        {
            return Ok(Arc::clone(&loaded.snapshot));
        }
        self.reload(db, false).await
    }

    /// `client_id`'s entry: from the copy, or, if the copy lacks it and has
    /// not been reloaded for a miss lately, from a reload (a client added a
    /// moment ago works at once).
    pub async fn client(&self, db: &Db, client_id: &str) -> Result<Option<Arc<Client>>, DbError> {
        let snapshot = self.current(db).await?;
        if let Some(client) = snapshot.get(client_id) {
            return Ok(Some(Arc::clone(client)));
        }
        let due = self
            .last_miss_reload
            .lock()
            .map(|mut last| {
                let due = last.is_none_or(|at| at.elapsed() >= MISS_RELOAD_EVERY);
                if due {
                    *last = Some(tokio::time::Instant::now());
                }
                due
            })
            .unwrap_or(false);
        if !due {
            return Ok(None);
        }
        let snapshot = self.reload(db, true).await?;
        Ok(snapshot.get(client_id).cloned())
    }

    /// Forgets the copy: the next request reloads (after a change made
    /// through this process, which need not wait for [`FRESH_FOR`]).
    pub fn forget(&self) {
        self.loaded.store(None);
    }

    /// Reloads, unless a reload finished while this one waited for the
    /// flight (or, when not `forced`, the copy is fresh by now).
    async fn reload(&self, db: &Db, forced: bool) -> Result<Arc<Snapshot>, DbError> {
        let started = tokio::time::Instant::now();
        let _flight = self.reloading.lock().await;
        if let Some(loaded) = self.loaded.load_full()
            && (loaded.at >= started || (!forced && loaded.at.elapsed() < FRESH_FOR))
        {
            return Ok(Arc::clone(&loaded.snapshot));
        }
        let clients = db.list_clients().await?;
        let snapshot = Arc::new(Snapshot {
            clients: clients
                .into_iter()
                .map(|c| (c.client_id.clone(), Arc::new(c)))
                .collect(),
        });
        self.loaded.store(Some(Arc::new(Loaded {
            snapshot: Arc::clone(&snapshot),
            at: tokio::time::Instant::now(),
        })));
        Ok(snapshot)
    }
}

/// The client credentials a request offers (RFC 6749 §2.3.1), however the
/// request carried them.
#[derive(Debug, Default)]
pub struct Offered {
    /// The client id, if the request names one.
    pub id: Option<String>,
    /// The secret, if it offers one (an attempt to authenticate).
    pub secret: Option<Zeroizing<String>>,
}

impl Issuer {
    /// The registry (this instance's copy).
    pub(crate) fn clients(&self) -> &Registry {
        &self.inner.clients
    }

    /// The registered client `offered` proves, allowed `grant`.
    pub async fn authenticate_client(
        &self,
        offered: &Offered,
        grant: &str,
    ) -> Result<Arc<Client>, AuthError> {
        let challenge = offered.secret.is_some();
        let Some(id) = offered.id.as_deref() else {
            return Err(AuthError::InvalidClient {
                challenge: false,
                description: "the client must identify itself (client_id, or HTTP Basic)",
            });
        };
        let client = if crate::clients::check_client_id(id).is_ok() {
            self.clients().client(self.db(), id).await?
        } else {
            None
        };
        let unknown = AuthError::InvalidClient {
            challenge,
            description: "unknown or disabled client, or wrong credentials",
        };
        let Some(client) = client.filter(|c| !c.disabled) else {
            if let Some(secret) = &offered.secret {
                // The same work as checking a registered client's secret.
                let _ = crate::clients::spend_secret_check(secret);
            }
            return Err(unknown);
        };
        match (&offered.secret, client.kind) {
            (Some(secret), _) if !client.secret_matches(secret) => return Err(unknown),
            (None, ClientKind::Confidential) => {
                return Err(AuthError::InvalidClient {
                    challenge: false,
                    description: "a confidential client must authenticate",
                });
            }
            _ => {}
        }
        if !client.allows_grant(grant) {
            return Err(AuthError::UnauthorizedClient);
        }
        Ok(client)
    }

    /// The caller of `/introspect`, given its HTTP Basic credentials: a
    /// registered confidential client allowed to introspect, or an entry of
    /// the deprecated configuration table. Every legacy entry is compared,
    /// and an unknown id costs what a wrong secret does.
    pub async fn introspection_caller(
        &self,
        id: &str,
        secret: &Zeroizing<String>,
    ) -> Result<Option<String>, AuthError> {
        if let Some(id) = legacy_caller(&self.inner.introspection_clients, id, secret) {
            return Ok(Some(id.to_owned()));
        }
        let client = if crate::clients::check_client_id(id).is_ok() {
            self.clients().client(self.db(), id).await?
        } else {
            None
        };
        Ok(match client {
            Some(c) if !c.disabled && c.introspect && c.secret_matches(secret) => {
                Some(id.to_owned())
            }
            Some(_) => None,
            None => {
                let _ = crate::clients::spend_secret_check(secret);
                None
            }
        })
    }
}

/// The deprecated `[[introspection_clients]]` entry `id` and `secret` prove,
/// if any. Every entry is compared, whatever the id.
pub(crate) fn legacy_caller<'c>(
    entries: &'c [IntrospectionClient],
    id: &str,
    secret: &str,
) -> Option<&'c str> {
    let offered = tessera_keyring::sha256(secret.as_bytes());
    let mut found = None;
    for entry in entries {
        let matches = crate::clients::same(&offered, &entry.secret_sha256);
        if matches && entry.client_id == id {
            found = Some(entry.client_id.as_str());
        }
    }
    found
}

/// A new client secret (256 random bits, base64url) and the `secret_sha256`
/// the configuration holds for it.
pub fn new_client_secret() -> (String, String) {
    let secret = crate::passwords::random_token(32);
    let hash = tessera_keyring::b64url(&tessera_keyring::sha256(secret.as_bytes()));
    (secret, hash)
}
