//! Security events, stored in the database as well as logged (target
//! `audit`): every instance's events in one place, on either backend, listed
//! by `tessera-issuer audit`. Stored: logins (success, failure with its
//! reason), refresh-token reuse and replays, revocations, logouts, the first
//! admin, and operators' changes to users and clients. Not stored: each
//! successful refresh (the hot path; it is logged), and throttled attempts
//! (a row each would be the database write throttling exists to spare; the
//! log has them, folded to a line a second with exact counts). Never a
//! secret: no token, password or key appears in an event.

use std::net::IpAddr;

use crate::db::{Db, DbError};

/// One event to record.
#[derive(Debug, Clone)]
pub struct Event<'a> {
    /// What happened, e.g. `login_failure`.
    pub kind: &'static str,
    /// The user concerned, if known.
    pub user_id: Option<&'a str>,
    /// The session concerned, if any.
    pub session_id: Option<&'a str>,
    /// The client's address, if known.
    pub client_ip: Option<IpAddr>,
    /// More, as JSON (e.g. `{"reason": "wrong_password"}`).
    pub detail: serde_json::Value,
}

impl<'a> Event<'a> {
    /// An event with nothing but its kind.
    pub fn new(kind: &'static str) -> Self {
        Self {
            kind,
            user_id: None,
            session_id: None,
            client_ip: None,
            detail: serde_json::Value::Object(serde_json::Map::new()),
        }
    }

    /// The user concerned.
    pub fn user(mut self, user_id: &'a str) -> Self {
        self.user_id = Some(user_id);
        self
    }

    /// The session concerned.
    pub fn session(mut self, session_id: &'a str) -> Self {
        self.session_id = Some(session_id);
        self
    }

    /// The client's address.
    pub fn ip(mut self, ip: Option<IpAddr>) -> Self {
        self.client_ip = ip;
        self
    }

    /// One more detail.
    pub fn with(mut self, key: &str, value: impl Into<serde_json::Value>) -> Self {
        if let serde_json::Value::Object(map) = &mut self.detail {
            map.insert(key.to_owned(), value.into());
        }
        self
    }
}

/// A stored event.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct Record {
    /// Increasing: later events have larger ids.
    pub id: i64,
    /// Unix seconds.
    pub at: i64,
    /// What happened.
    pub event: String,
    /// The user concerned.
    pub user_id: Option<String>,
    /// The session concerned.
    pub session_id: Option<String>,
    /// The client's address.
    pub client_ip: Option<String>,
    /// More.
    pub detail: serde_json::Value,
}

/// Records `event` at `now`. A failure is logged, not returned: the request it
/// describes has happened either way (and is in the log).
pub async fn record(db: &Db, now: i64, event: Event<'_>) {
    if let Err(err) = db.record_audit(now, &event).await {
        tracing::warn!(error = %err, event = event.kind, "audit event not stored");
    }
}

/// How long events are kept unless configured otherwise: 90 days.
pub const DEFAULT_RETENTION_SECS: i64 = 90 * 86_400;

/// Deletes events older than `retention` seconds; returns how many.
pub async fn forget_old(db: &Db, now: i64, retention: i64) -> Result<u64, DbError> {
    db.forget_audit_before(now.saturating_sub(retention)).await
}

/// Folds a repeated log line: [`Folded::tick`] says whether to write one now
/// (at most one a second) and how many were folded into it since the last.
#[derive(Debug, Default)]
pub struct Folded {
    state: std::sync::Mutex<(i64, u64)>,
}

impl Folded {
    /// One more occurrence at `now` (Unix seconds): `Some(folded)` if a line
    /// is due (`folded` earlier occurrences had none), else `None`.
    pub fn tick(&self, now: i64) -> Option<u64> {
        let mut state = self.state.lock().ok()?;
        let (last_line, folded) = &mut *state;
        if now > *last_line {
            let was = std::mem::take(folded);
            *last_line = now;
            Some(was)
        } else {
            *folded += 1;
            None
        }
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn repeated_lines_fold_to_one_a_second_and_keep_the_count() {
        let f = super::Folded::default();
        assert_eq!(f.tick(100), Some(0));
        for _ in 0..999 {
            assert_eq!(f.tick(100), None);
        }
        assert_eq!(f.tick(101), Some(999), "every occurrence is counted");
        assert_eq!(f.tick(105), Some(0));
    }
}
