//! Deletes what no request can need any more (the service's maintenance task
//! runs these; every instance may, the deletes are idempotent).

use super::Db;
use super::error::{DbError, sql};

impl Db {
    /// Deletes sessions (and, by cascade, their refresh tokens) past their
    /// idle or absolute lifetime at `now`, revoked or not: no refresh can
    /// succeed on them, and a token of theirs presented again is refused as
    /// unknown just as it was refused as expired. The lifetimes are the
    /// longest of these and of those any instance recorded. Returns how many.
    pub async fn forget_sessions(
        &self,
        now: i64,
        idle_secs: i64,
        absolute_secs: i64,
    ) -> Result<u64, DbError> {
        let (recorded_idle, recorded_absolute) = self.recorded_session_lifetimes().await?;
        let (idle_secs, absolute_secs) = (
            idle_secs.max(recorded_idle),
            absolute_secs.max(recorded_absolute),
        );
        on_writer!(self, |conn| sqlx::query(
            "DELETE FROM sessions WHERE last_used_at <= $1 OR created_at <= $2"
        )
        .bind(now.saturating_sub(idle_secs))
        .bind(now.saturating_sub(absolute_secs))
        .execute(conn)
        .await
        .map(|done| done.rows_affected())
        .map_err(sql("deleting ended sessions")))
    }

    /// Drops the sealed replay copies of refresh tokens used at or before
    /// `used_before` (the retry window is over: a second use is reuse now).
    /// Returns how many.
    pub async fn forget_replay_copies(&self, used_before: i64) -> Result<u64, DbError> {
        on_writer!(self, |conn| sqlx::query(
            "UPDATE refresh_tokens SET retry_sealed = NULL
             WHERE retry_sealed IS NOT NULL AND used_at <= $1"
        )
        .bind(used_before)
        .execute(conn)
        .await
        .map(|done| done.rows_affected())
        .map_err(sql("dropping replay copies")))
    }
}
