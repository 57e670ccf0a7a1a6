//! What one refresh-token rotation writes: built by the sessions layer,
//! written by each backend the way its concurrency control needs
//! ([`super::sqlite`], [`super::postgres`]).

/// The write of one rotation; see `Db::rotate`.
#[derive(Debug)]
pub struct Rotation {
    /// The hash of the token presented.
    pub old_hash: [u8; 32],
    /// The hash of its successor.
    pub new_hash: [u8; 32],
    /// The session.
    pub session_id: String,
    /// The response sealed for a replay within the retry window.
    pub sealed: Option<Vec<u8>>,
    /// Now, Unix seconds.
    pub now: i64,
}
