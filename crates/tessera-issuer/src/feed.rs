//! The revocation feed: `GET /revocations?since=<cursor>`, what resource
//! servers follow so that a revoked access token is refused long before it
//! expires, without asking the issuer about every request.
//!
//! **Authenticated by signature, not by caller.** The response is a compact JWS
//! (`typ: revocations+jwt`) signed with the issuer's active key: a verifier
//! checks it with the JWKS it already holds, so thousands of resource servers
//! need no extra secret, and no cache, proxy or sidecar between them and the
//! issuer can add, drop or alter an entry undetected. The entries name no one:
//! each carries `SHA-256("<kind>:<value>")` of the `jti`, `sid` or `sub`, which
//! a resource server computes from the token in front of it, so reading the
//! feed reveals how many revocations there were and when, never whose.
//!
//! **Cheap to poll.** Each instance keeps the live list in memory, refreshed
//! from the database at most once per [`REFRESH_EVERY`] (at once after a
//! revocation made here), so polls cost no database work. The cursor
//! `<epoch>.<id>.<tag>` is also the ETag: a poller that is up to date gets `304`
//! with no body and no signature. A 200 is signed once per distinct answer and
//! then served from a small cache to every poller at the same cursor.
//!
//! **Cursors.** Entry ids never go back (identity / `AUTOINCREMENT`) and are
//! committed in order, so "entries after my cursor" misses nothing. A cursor
//! from another database (another epoch) or none at all gets a full snapshot,
//! which replaces the poller's list. A cursor ahead of this instance's copy
//! makes it read the database (another instance may be further on); a cursor
//! ahead of the database's newest entry (forged, or from before a restore of
//! an older backup) gets a snapshot: the issuer never signs a cursor beyond
//! its newest entry. The tag names the entry at the cursor's id: after a
//! restore, new entries reuse ids pollers already passed, and a cursor whose
//! tag does not name what the list now holds there gets a snapshot too.
//!
//! **Bound to the request.** A delta echoes the `since` it answers and every
//! document carries its `iat`; a verifier accepts a delta only for the cursor
//! it asked with, and no document older than it allows or older than the last
//! one it accepted. Cached answers are re-signed every [`RESIGN_EVERY_SECS`].

use std::collections::VecDeque;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use arc_swap::ArcSwapOption;
use axum::body::Bytes;
use serde::Serialize;
use std::sync::Arc;
use tessera_keyring::{b64url, sha256};

use crate::db::{Db, DbError};
use crate::revocation::{Entry, Kind};

/// The most an instance's copy of the list lags the database (when nothing
/// was revoked through this instance, which refreshes at once).
pub const REFRESH_EVERY: Duration = Duration::from_secs(1);

/// The `typ` of the feed's JWS (the contract's): never `at+jwt`, so a feed
/// document can never pass as an access token.
pub use tessera_feed::TYP as FEED_TYP;

/// Distinct signed answers kept (most pollers share one cursor), and the most
/// bytes they may hold together (a snapshot of 100,000 entries is ~13 MB).
const SIGNED_KEPT: usize = 16;
const SIGNED_KEPT_BYTES: usize = 32 << 20;

/// How an entry's value is published: `base64url(SHA-256("<kind>:<value>"))`.
pub fn published_hash(kind: Kind, value: &str) -> String {
    b64url(&sha256(
        &tessera_feed::hash_parts(kind.name(), value).concat(),
    ))
}

/// One entry as published: its id, and its wire form, shared, so the list a
/// change rebuilds copies pointers, not tens of thousands of hash strings
/// (that churn grew the heap in the soak, issue 21).
#[derive(Debug, Clone)]
struct Published {
    id: i64,
    wire: std::sync::Arc<tessera_feed::Entry>,
}

impl Serialize for Published {
    /// The wire form alone (the id is the database's, never published).
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        self.wire.serialize(serializer)
    }
}

impl From<&Entry> for Published {
    fn from(entry: &Entry) -> Self {
        Self {
            id: entry.id,
            wire: std::sync::Arc::new(tessera_feed::Entry {
                kind: std::borrow::Cow::Borrowed(entry.kind.name()),
                hash: published_hash(entry.kind, &entry.value),
                exp: entry.expires_at,
                iat_before: entry.issued_before,
            }),
        }
    }
}

/// This instance's copy of the live list.
#[derive(Debug)]
struct List {
    epoch: String,
    /// The highest id seen (entries may have expired since).
    latest: i64,
    /// Live entries, by id.
    entries: Vec<Published>,
    /// The earliest `exp` among them: a poll at or after it refreshes first,
    /// so expired entries leave the feed as soon as they expire.
    next_expiry: Option<i64>,
    /// Bumped on every change (additions or expiries): part of what a
    /// signed answer is cached under.
    generation: u64,
    /// The cursor naming `latest`, computed once: every poll hands it out
    /// (and most polls are up to date, so they compare with it and stop).
    newest_cursor: String,
}

impl List {
    fn new(epoch: String, latest: i64, entries: Vec<Published>, generation: u64) -> Self {
        let next_expiry = entries.iter().map(|e| e.wire.exp).min();
        let mut list = Self {
            epoch,
            latest,
            entries,
            next_expiry,
            generation,
            newest_cursor: String::new(),
        };
        list.newest_cursor = list.cursor_at(latest);
        list
    }

    /// The live entry with this id, if the list holds one.
    fn entry(&self, id: i64) -> Option<&Published> {
        let at = self.entries.binary_search_by_key(&id, |e| e.id).ok()?;
        self.entries.get(at)
    }

    fn tag_at(&self, id: i64) -> String {
        self.entry(id)
            .map_or_else(|| NO_ENTRY.to_owned(), entry_tag)
    }

    /// The cursor that names this list's entry at `id`.
    fn cursor_at(&self, id: i64) -> String {
        format!("{}.{id}.{}", self.epoch, self.tag_at(id))
    }

    /// Whether `tag` names what this list holds at `id`. A cursor whose
    /// entry is gone is trusted only at the newest id (nothing to miss
    /// after it) or at 0 (nothing seen, so nothing a restore could have
    /// replaced); elsewhere, what came after it cannot be told from what a
    /// restore put there, and the poller gets a snapshot (a small one: the
    /// entry it names has expired, and so, mostly, have those before it).
    fn names(&self, id: i64, tag: &str) -> bool {
        if id == self.latest {
            // The newest id: its tag is the end of the cursor handed out.
            return self.newest_cursor.rsplit('.').next() == Some(tag);
        }
        tag == self.tag_at(id) && (tag != NO_ENTRY || id == 0)
    }
}

/// What a poll asked for, once its cursor is read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Ask {
    /// Everything live (no cursor, or one from another epoch).
    Snapshot,
    /// Entries after this id.
    After(i64),
}

/// One answer, signed: the list's generation and the ask determine the
/// entries and the cursor (the epoch never changes within a process).
#[derive(Debug, Clone, PartialEq, Eq)]
struct AnswerKey {
    generation: u64,
    ask: Ask,
    kid: String,
    /// Answers are signed afresh this often, so their `iat` stays recent
    /// (verifiers refuse old documents).
    iat_bucket: i64,
}

/// How long a signed answer is served before it is signed again.
pub const RESIGN_EVERY_SECS: i64 = 30;

/// What the handler sends.
#[derive(Debug)]
pub enum Answer {
    /// `304`: the poller is up to date.
    NotModified {
        /// The ETag.
        etag: String,
    },
    /// `200` with a signed document.
    Document {
        /// The ETag.
        etag: String,
        /// The compact JWS.
        body: Bytes,
        /// Everything live (else: the entries after the poller's cursor).
        snapshot: bool,
    },
}

/// Why a poll could not be answered.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum FeedError {
    /// The cursor is not one this feed hands out.
    #[error("`since` is not a cursor from this feed")]
    BadCursor,
    /// The database could not be read.
    #[error(transparent)]
    Db(#[from] DbError),
    /// Signing failed.
    #[error("signing the revocation feed failed")]
    Sign,
    /// No keyring is loaded yet to sign with.
    #[error("no keyring loaded yet")]
    NoKeys,
}

/// The feed of one issuer instance.
#[derive(Debug, Default)]
pub struct Feed {
    list: ArcSwapOption<List>,
    /// Single flight for refreshes.
    refreshing: tokio::sync::Mutex<()>,
    refreshed_at: Mutex<Option<tokio::time::Instant>>,
    /// Revocations made through this instance (a counter), and how many of
    /// them the copy is known to include.
    touched: AtomicU64,
    covered: AtomicU64,
    signed: Mutex<VecDeque<(AnswerKey, Bytes)>>,
    budget: SignBudget,
}

/// The most deltas signed afresh per second by one instance. Pollers that
/// are up to date share one cursor (one signature per change); an attacker
/// cycling through every live entry's cursor gets the snapshot beyond this.
pub const DELTA_SIGNATURES_PER_SEC: u32 = 16;

/// A fixed one-second window of fresh delta signatures.
#[derive(Debug, Default)]
struct SignBudget {
    window: std::sync::atomic::AtomicI64,
    used: std::sync::atomic::AtomicU32,
}

impl SignBudget {
    /// Takes one signature from the budget of second `now`, if any is left.
    fn spend(&self, now: i64) -> bool {
        if self.window.swap(now, Ordering::Relaxed) != now {
            self.used.store(0, Ordering::Relaxed);
        }
        self.used.fetch_add(1, Ordering::Relaxed) < DELTA_SIGNATURES_PER_SEC
    }
}

/// A poller's `since`: `<epoch>.<id>.<tag>`, the tag naming the entry at
/// `id` ([`entry_tag`]) or `-` when no live entry has it. `<epoch>.<id>`
/// (before tags) parses with no tag.
#[derive(Debug)]
struct Cursor {
    epoch: String,
    id: i64,
    tag: Option<String>,
}

impl Cursor {
    fn parse(text: &str) -> Result<Self, FeedError> {
        let mut parts = text.split('.');
        let (Some(epoch), Some(id), tag, None) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return Err(FeedError::BadCursor);
        };
        let id: i64 = id.parse().map_err(|_| FeedError::BadCursor)?;
        let tag_ok = |t: &str| {
            (1..=16).contains(&t.len())
                && t.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"-_".contains(&b))
        };
        if id < 0 || epoch.is_empty() || tag.is_some_and(|t| !tag_ok(t)) {
            return Err(FeedError::BadCursor);
        }
        Ok(Self {
            epoch: epoch.to_owned(),
            id,
            tag: tag.map(str::to_owned),
        })
    }
}

/// What names an entry in a cursor: 66 bits of `SHA-256("<id>:<hash>")`.
/// A new entry that reuses an id (after a restore) has another value, so
/// another tag.
fn entry_tag(entry: &Published) -> String {
    let digest = sha256(format!("{}:{}", entry.id, entry.wire.hash).as_bytes());
    let mut tag = b64url(&digest);
    tag.truncate(11);
    tag
}

/// The tag of a cursor whose entry no live entry has (expired, or none yet).
const NO_ENTRY: &str = "-";

impl Feed {
    /// Live entries in this instance's copy of the list (`None` before the
    /// first poll loaded it).
    pub fn live_entries(&self) -> Option<usize> {
        self.list.load().as_ref().map(|list| list.entries.len())
    }

    /// Marks the copy out of date (a revocation was just made here).
    pub fn touch(&self) {
        self.touched.fetch_add(1, Ordering::SeqCst);
    }

    /// Answers a poll with cursor `since` and `If-None-Match` tags.
    pub async fn answer(
        &self,
        db: &Db,
        signer: &tessera_keyring::Signer,
        issuer: &str,
        since: Option<&str>,
        if_none_match: impl Fn(&str) -> bool,
        now: i64,
    ) -> Result<Answer, FeedError> {
        let mut list = self.current(db, now).await?;
        let asked = since.map(Cursor::parse).transpose()?;
        let mut ask = match &asked {
            // No cursor, one from another database, or one from before
            // cursors named their entry: everything, as a snapshot.
            None => Ask::Snapshot,
            Some(cursor) if cursor.epoch != list.epoch || cursor.tag.is_none() => Ask::Snapshot,
            Some(cursor) => Ask::After(cursor.id),
        };
        if let Ask::After(id) = ask
            && id > list.latest
        {
            // Ahead of this copy: another instance may be further on, so the
            // database is asked. Still ahead of the database's newest entry:
            // never signed as given (it would move pollers past entries still
            // to come, e.g. after a restore from an older backup); the poller
            // gets a snapshot and converges on the list as it is.
            self.touch();
            list = self.current(db, now).await?;
            if id > list.latest {
                ask = Ask::Snapshot;
            }
        }
        // The cursor must name the entry this list holds at its id: after a
        // restore from an older backup, new entries reuse the ids pollers
        // already passed, and only the tag tells them apart.
        if let (Ask::After(id), Some(cursor)) = (ask, &asked)
            && !list.names(id, cursor.tag.as_deref().unwrap_or_default())
        {
            ask = Ask::Snapshot;
        }
        // Never beyond this list's newest entry.
        let cursor = list.newest_cursor.clone();
        let etag = format!("\"{cursor}\"");
        if if_none_match(&etag) {
            return Ok(Answer::NotModified { etag });
        }
        let mut key = Self::key(&list, ask, signer, now);
        if let Some(body) = self.signed_answer(&key) {
            return Ok(Answer::Document {
                etag,
                body,
                snapshot: ask == Ask::Snapshot,
            });
        }
        // A delta to sign afresh: past this second's budget, the one snapshot
        // (signed once per change and re-signing period) answers instead.
        // Only this point spends it: 304s and cached answers cost nothing.
        if matches!(ask, Ask::After(_)) && !self.budget.spend(now) {
            ask = Ask::Snapshot;
            key = Self::key(&list, ask, signer, now);
            if let Some(body) = self.signed_answer(&key) {
                return Ok(Answer::Document {
                    etag,
                    body,
                    snapshot: ask == Ask::Snapshot,
                });
            }
        }
        let entries = match ask {
            Ask::Snapshot => &list.entries[..],
            Ask::After(id) => {
                let from = list.entries.partition_point(|e| e.id <= id);
                &list.entries[from..]
            }
        };
        // The cursor answered, canonical (the caller's text is not signed).
        let since_text = match ask {
            Ask::After(id) => Some(list.cursor_at(id)),
            Ask::Snapshot => None,
        };
        let document = Document {
            iss: issuer,
            iat: now,
            since: since_text.as_deref(),
            cursor: &cursor,
            snapshot: ask == Ask::Snapshot,
            entries,
        };
        let payload = serde_json::to_vec(&document).map_err(|_| FeedError::Sign)?;
        let jws = signer
            .sign_jwt(FEED_TYP, &payload)
            .map_err(|_| FeedError::Sign)?;
        let body = Bytes::from(jws);
        if let Ok(mut signed) = self.signed.lock() {
            signed.push_front((key, body.clone()));
            let mut bytes: usize = signed.iter().map(|(_, b)| b.len()).sum();
            while signed.len() > SIGNED_KEPT || (bytes > SIGNED_KEPT_BYTES && signed.len() > 1) {
                if let Some((_, dropped)) = signed.pop_back() {
                    bytes -= dropped.len();
                }
            }
        }
        Ok(Answer::Document {
            etag,
            body,
            snapshot: ask == Ask::Snapshot,
        })
    }

    fn key(list: &List, ask: Ask, signer: &tessera_keyring::Signer, now: i64) -> AnswerKey {
        AnswerKey {
            generation: list.generation,
            ask,
            kid: signer.kid().to_owned(),
            iat_bucket: now.div_euclid(RESIGN_EVERY_SECS),
        }
    }

    fn signed_answer(&self, key: &AnswerKey) -> Option<Bytes> {
        let signed = self.signed.lock().ok()?;
        signed
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, b)| b.clone())
    }

    /// The copy, refreshed first if due. While one poll refreshes, the others
    /// answer from the copy they find.
    async fn current(&self, db: &Db, now: i64) -> Result<Arc<List>, FeedError> {
        // Missing a revocation made through this instance: such a poll must
        // wait for a refresh (read your writes), never answer from the copy.
        let behind = || self.covered.load(Ordering::SeqCst) < self.touched.load(Ordering::SeqCst);
        let due = |list: &Option<Arc<List>>| {
            list.is_none()
                || behind()
                || list
                    .as_ref()
                    .and_then(|l| l.next_expiry)
                    .is_some_and(|t| t <= now)
                || self
                    .refreshed_at
                    .lock()
                    .ok()
                    .and_then(|at| *at)
                    .is_none_or(|at| at.elapsed() >= REFRESH_EVERY)
        };
        let list = self.list.load_full();
        if let Some(current) = &list
            && !due(&list)
        {
            return Ok(Arc::clone(current));
        }
        let _flight = match (self.refreshing.try_lock(), list) {
            (Ok(guard), _) => guard,
            // Only the timer is due: the copy a refresh in flight replaces
            // is still within its bound.
            (Err(_), Some(list)) if !behind() => return Ok(list),
            (Err(_), _) => self.refreshing.lock().await,
        };
        let list = self.list.load_full();
        if !due(&list)
            && let Some(list) = list
        {
            return Ok(list);
        }
        let touched = self.touched.load(Ordering::SeqCst);
        let refreshed = self.refresh(db, list.as_deref(), now).await?;
        let list = match (refreshed, list) {
            (None, Some(unchanged)) => unchanged,
            (new, _) => {
                // (`refresh` returns None only when given a list.)
                let new = Arc::new(new_or_empty(new));
                self.list.store(Some(Arc::clone(&new)));
                new
            }
        };
        self.covered.fetch_max(touched, Ordering::SeqCst);
        if let Ok(mut at) = self.refreshed_at.lock() {
            *at = Some(tokio::time::Instant::now());
        }
        Ok(list)
    }

    /// The list with what the database added since `old`, less what expired;
    /// `None` if nothing changed.
    async fn refresh(
        &self,
        db: &Db,
        old: Option<&List>,
        now: i64,
    ) -> Result<Option<List>, DbError> {
        // The newest id, expired rows included (the newest row is never
        // purged): every instance agrees on it, whenever it started.
        let newest = db.revocation_newest_id().await?;
        // Generations only go up, whatever happens to the list: a signed
        // answer is cached under one.
        let generation = old.map_or(0, |o| o.generation + 1);
        let old = match old {
            Some(old) if went_back(db, old, newest, now).await? => {
                tracing::warn!(
                    target: "audit",
                    event = "revocation_list_went_back",
                    held = old.latest,
                    newest,
                    "the revocation list in the database is not the one this instance \
                     followed (restored from a backup?): reloading it whole"
                );
                None
            }
            old => old,
        };
        let (epoch, latest) = match old {
            Some(old) => (old.epoch.clone(), old.latest),
            None => (db.revocation_epoch().await?, 0),
        };
        let added = db.revocations_since(latest, now).await?;
        let expired = old.and_then(|o| o.next_expiry).is_some_and(|t| t <= now);
        let latest_now = added
            .last()
            .map_or(latest, |e| e.id)
            .max(latest)
            .max(newest);
        if old.is_some() && added.is_empty() && !expired && latest_now == latest {
            return Ok(None);
        }
        let kept = old.map_or(0, |o| o.entries.len());
        let mut entries = Vec::with_capacity(kept + added.len());
        if let Some(old) = old {
            entries.extend(old.entries.iter().filter(|e| e.wire.exp > now).cloned());
        }
        entries.extend(added.iter().map(Published::from));
        Ok(Some(List::new(epoch, latest_now, entries, generation)))
    }
}

/// Whether the database no longer holds the list `old` was built from: its
/// newest id is below `old`'s, or the row at `old`'s newest id is another
/// entry than the one `old` holds there (a restore from an older backup,
/// then new entries reusing the ids). Then the list is read whole again.
async fn went_back(db: &Db, old: &List, newest: i64, now: i64) -> Result<bool, DbError> {
    if newest < old.latest {
        return Ok(true);
    }
    if old.latest == 0 {
        return Ok(false);
    }
    let held = old.entry(old.latest);
    let there = db.revocation_at(old.latest).await?;
    Ok(match (held, there) {
        (Some(held), Some((kind, value, _))) => held.wire.hash != published_hash(kind, &value),
        // Deleted by a `sub` entry that replaced it (a newer id covers it).
        (Some(_), None) => false,
        // Not held: it had expired, so a live row there is another entry.
        (None, Some((_, _, expires_at))) => expires_at > now,
        (None, None) => false,
    })
}

fn new_or_empty(list: Option<List>) -> List {
    list.unwrap_or_else(|| List::new(String::new(), 0, Vec::new(), 0))
}

/// The signed payload (the contract's shape).
type Document<'a> = tessera_feed::Document<&'a str, &'a [Published]>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn published_hashes_separate_kinds_and_hide_values() {
        let sid = published_hash(Kind::Sid, "abc");
        assert_ne!(sid, published_hash(Kind::Jti, "abc"));
        assert_ne!(sid, published_hash(Kind::Sid, "abd"));
        assert!(!sid.contains("abc"));
        // SHA-256("sid:abc"), as a verifier computes it.
        assert_eq!(sid, b64url(&sha256(b"sid:abc")));
        assert_eq!(sid.len(), 43);
    }
}
