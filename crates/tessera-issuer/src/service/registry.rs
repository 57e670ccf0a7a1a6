//! The client registry as this instance holds it: a copy of the `clients`
//! table, reloaded when it is more than [`FRESH_FOR`] old (and at once, at
//! most every [`MISS_RELOAD_EVERY`], when a request names an id it does not
//! hold).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use arc_swap::ArcSwapOption;

use tessera_verifier::KeySet;

use crate::clients::{ASSERTION_ALGS, Client, FRESH_FOR, MISS_RELOAD_EVERY};
use crate::db::{Db, DbError};

/// One load of the registry.
#[derive(Debug, Default)]
pub struct Snapshot {
    clients: HashMap<String, Arc<Client>>,
    /// Each `private_key_jwt` client's keys, parsed once: with the JWK set
    /// they came from, so a reload reuses them while it is unchanged.
    keys: HashMap<String, (Arc<str>, Arc<KeySet>)>,
}

impl Snapshot {
    /// The client with this id, if registered.
    pub fn get(&self, client_id: &str) -> Option<&Arc<Client>> {
        self.clients.get(client_id)
    }

    /// Every registered client.
    pub fn clients(&self) -> impl Iterator<Item = &Arc<Client>> {
        self.clients.values()
    }

    /// `client_id`'s parsed keys, if this snapshot parsed them from `jwks`
    /// (the set as registered now).
    fn keys_from(&self, client_id: &str, jwks: &str) -> Option<&(Arc<str>, Arc<KeySet>)> {
        self.keys
            .get(client_id)
            .filter(|(source, _)| &**source == jwks)
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

    /// `client`'s registered keys, parsed (at the load that read it; parsed
    /// now if the registry changed since `client` was read).
    pub fn keys_of(&self, client: &Client) -> Option<Arc<KeySet>> {
        let jwks = client.jwks.as_deref()?;
        let held = self.loaded.load_full().and_then(|loaded| {
            loaded
                .snapshot
                .keys_from(&client.client_id, jwks)
                .map(|(_, set)| Arc::clone(set))
        });
        held.or_else(|| parse_keys(jwks).map(Arc::new))
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
        let before = self.loaded.load_full();
        let mut keys = HashMap::new();
        for client in &clients {
            let Some(jwks) = client.jwks.as_deref() else {
                continue;
            };
            let kept = before
                .as_ref()
                .and_then(|b| b.snapshot.keys_from(&client.client_id, jwks).cloned());
            let parsed = kept
                .or_else(|| parse_keys(jwks).map(|set| (Arc::<str>::from(jwks), Arc::new(set))));
            if let Some(entry) = parsed {
                keys.insert(client.client_id.clone(), entry);
            }
        }
        let snapshot = Arc::new(Snapshot {
            clients: clients
                .into_iter()
                .map(|c| (c.client_id.clone(), Arc::new(c)))
                .collect(),
            keys,
        });
        self.loaded.store(Some(Arc::new(Loaded {
            snapshot: Arc::clone(&snapshot),
            at: tokio::time::Instant::now(),
        })));
        Ok(snapshot)
    }
}

/// A registered JWK set's keys (checked at registration; a set that no
/// longer parses gives no key, and the client cannot authenticate with one).
fn parse_keys(jwks: &str) -> Option<KeySet> {
    match KeySet::from_jwks_json(jwks.as_bytes(), ASSERTION_ALGS) {
        Ok((set, _)) => Some(set),
        Err(err) => {
            tracing::warn!(error = %err, "a client's registered JWK set is unusable");
            None
        }
    }
}
