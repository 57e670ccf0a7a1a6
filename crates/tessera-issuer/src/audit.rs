//! Security events, stored in the database as well as logged (target
//! `audit`): every instance's events in one place, on either backend, listed
//! by `tessera-issuer audit`. Stored: logins (success, failure with its
//! reason), refresh-token reuse and replays, revocations, logouts, the first
//! admin, and operators' changes to users and clients. Not stored: each
//! successful refresh (the hot path; it is logged), and throttled attempts
//! (a row each would be the database write throttling exists to spare; the
//! log has them, folded to a line a second with exact counts). Never a
//! secret: no token, password or key appears in an event.
//!
//! One call per event: [`record`] writes the log line and stores the row;
//! [`log`] writes the line alone, for the events that are not stored.

use std::net::IpAddr;

use crate::db::{AuditRow, Db, DbError};

pub use crate::db::AuditRecord as Record;

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
    /// Whether the log line is a warning (an attack, not routine).
    pub warning: bool,
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
            warning: false,
        }
    }

    /// Logged as a warning (an attack, not routine).
    pub fn warn(mut self) -> Self {
        self.warning = true;
        self
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

/// Logs `event` and stores it at `now`. A failure to store is logged, not
/// returned: the request it describes has happened either way (and is in
/// the log).
pub async fn record(db: &Db, now: i64, event: Event<'_>) {
    log(&event);
    let ip = event.client_ip.map(|ip| ip.to_string());
    let detail = event.detail.to_string();
    let row = AuditRow {
        at: now,
        kind: event.kind,
        user_id: event.user_id,
        session_id: event.session_id,
        client_ip: ip.as_deref(),
        detail: &detail,
    };
    if let Err(err) = db.record_audit(&row).await {
        tracing::warn!(error = %err, event = event.kind, "audit event not stored");
    }
}

/// Writes `event`'s log line (target `audit`) without storing it: for the
/// events too frequent to store (each successful refresh, introspection
/// calls, throttled attempts).
pub fn log(event: &Event<'_>) {
    let (user_id, session_id) = (event.user_id, event.session_id);
    let (client_ip, detail) = (event.client_ip, &event.detail);
    if event.warning {
        tracing::warn!(target: "audit", event = event.kind, user_id, session_id, ?client_ip, %detail);
    } else {
        tracing::info!(target: "audit", event = event.kind, user_id, session_id, ?client_ip, %detail);
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
