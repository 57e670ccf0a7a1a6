//! The client registry as this instance holds it: a copy of the `clients`
//! table, reloaded when it is more than [`FRESH_FOR`] old (and at once, at
//! most every [`MISS_RELOAD_EVERY`], when a request names an id it does not
//! hold).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use arc_swap::ArcSwapOption;

use crate::clients::{Client, FRESH_FOR, MISS_RELOAD_EVERY};
use crate::db::{Db, DbError};

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
