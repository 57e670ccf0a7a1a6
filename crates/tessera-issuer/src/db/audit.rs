//! The `audit_events` table (see `crate::audit`).

use super::Db;
use super::error::{DbError, sql};

/// An audit event to store (see `crate::audit::record`).
#[derive(Debug, Clone, Copy)]
pub struct AuditRow<'a> {
    /// When (Unix seconds).
    pub at: i64,
    /// What happened, e.g. `login_failure`.
    pub kind: &'a str,
    /// The user concerned.
    pub user_id: Option<&'a str>,
    /// The session concerned.
    pub session_id: Option<&'a str>,
    /// The client's address.
    pub client_ip: Option<&'a str>,
    /// More, as JSON text.
    pub detail: &'a str,
}

/// A stored event.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct AuditRecord {
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

impl Db {
    /// Stores an audit event.
    pub async fn record_audit(&self, row: &AuditRow<'_>) -> Result<(), DbError> {
        on_writer!(self, |conn| sqlx::query(
            "INSERT INTO audit_events (at, event, user_id, session_id, client_ip, detail)
             VALUES ($1, $2, $3, $4, $5, $6)"
        )
        .bind(row.at)
        .bind(row.kind)
        .bind(row.user_id)
        .bind(row.session_id)
        .bind(row.client_ip)
        .bind(row.detail)
        .execute(conn)
        .await
        .map(|_| ())
        .map_err(sql("storing an audit event")))
    }

    /// Audit events at or after `since` (Unix seconds), of one user if given,
    /// oldest first, at most `limit` (the latest ones).
    pub async fn audit_events(
        &self,
        since: i64,
        user_id: Option<&str>,
        limit: i64,
    ) -> Result<Vec<AuditRecord>, DbError> {
        type Row = (
            i64,
            i64,
            String,
            Option<String>,
            Option<String>,
            Option<String>,
            String,
        );
        let rows: Vec<Row> = on_pool!(self, |pool| sqlx::query_as(
            "SELECT id, at, event, user_id, session_id, client_ip, detail FROM (
                 SELECT * FROM audit_events
                 WHERE at >= $1 AND ($2 IS NULL OR user_id = $2)
                 ORDER BY id DESC LIMIT $3) latest
             ORDER BY id"
        )
        .bind(since)
        .bind(user_id)
        .bind(limit)
        .fetch_all(pool)
        .await
        .map_err(sql("reading audit events")))?;
        Ok(rows
            .into_iter()
            .map(
                |(id, at, event, user_id, session_id, client_ip, detail)| AuditRecord {
                    id,
                    at,
                    event,
                    user_id,
                    session_id,
                    client_ip,
                    detail: serde_json::from_str(&detail).unwrap_or(serde_json::Value::Null),
                },
            )
            .collect())
    }

    /// Deletes audit events before `before`; returns how many.
    pub async fn forget_audit_before(&self, before: i64) -> Result<u64, DbError> {
        on_writer!(self, |conn| sqlx::query(
            "DELETE FROM audit_events WHERE at < $1"
        )
        .bind(before)
        .execute(conn)
        .await
        .map(|done| done.rows_affected())
        .map_err(sql("deleting old audit events")))
    }
}
