//! The revocation list (issue 7): what must be refused before it expires.
//! An entry names a token (`jti`), a session (`sid`) or a user (`sub`: every
//! token issued before a time), and lives exactly as long as a token it covers
//! can still be accepted somewhere: the access-token lifetime plus the most
//! clock leeway a verifier may allow. Then it is dropped; the list stays
//! bounded by the revocations of one token lifetime.
//!
//! Entries are numbered in commit order (the feed's cursor): PostgreSQL
//! inserts hold an advisory lock, SQLite has one writer.

use std::time::Duration;

/// The most clock leeway a verifier is allowed (the issuer's configuration
/// caps `clock_leeway` at this too), added to every entry's lifetime.
pub const MAX_LEEWAY: Duration = Duration::from_secs(300);

/// What an entry revokes (the feed's contract: [`tessera_feed::Kind`]).
pub use tessera_feed::Kind;

/// An entry of the list.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Entry {
    /// Increasing in commit order: the feed's cursor.
    pub id: i64,
    /// What it revokes.
    pub kind: Kind,
    /// The `jti`, `sid` or `sub`.
    pub value: String,
    /// For `sub`: tokens issued (`iat`) before this are revoked.
    pub issued_before: Option<i64>,
    /// When it was added (Unix seconds).
    pub created_at: i64,
    /// When no token it covers can be valid any more: then it is dropped.
    pub expires_at: i64,
    /// Why (`logout`, `refresh_token_reuse`, `user_disabled`, an operator's …).
    pub why: String,
}
