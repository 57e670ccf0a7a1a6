//! The `revocations` table (see [`crate::revocation`]) and the facts its
//! entries are computed from: the longest access-token lifetime any instance
//! has issued with, and, for operator commands, the database server's clock.

use std::time::Duration;

use super::error::{DbError, sql};
use super::{Backend, Db};
use crate::revocation::{Entry, Kind, MAX_LEEWAY};

/// The advisory lock revocation inserts take on PostgreSQL, so that entries
/// commit in id order and a feed cursor never skips one ("revokes").
const REVOCATIONS_LOCK: i64 = 0x72_65_76_6f_6b_65_73;

const SQLITE_NOW: &str = "SELECT CAST(strftime('%s', 'now') AS INTEGER)";
const POSTGRES_NOW: &str = "SELECT CAST(FLOOR(EXTRACT(EPOCH FROM clock_timestamp())) AS BIGINT)";

/// When a revocation takes effect, and so which tokens a `sub` entry covers
/// (those issued until then).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RevokedAt {
    /// This time on the caller's clock: a service instance, whose clock also
    /// stamped the tokens it issued.
    Clock(i64),
    /// The database server's clock: operator commands, which may run on
    /// another machine with another clock.
    Database,
}

/// What [`Db::add_revocation`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Revoked {
    /// A new entry, with this id (the feed publishes it).
    Added(i64),
    /// A live entry already covered it: nothing changed.
    Covered(i64),
}

impl Db {
    /// Records the lifetimes this instance issues with (access tokens,
    /// sessions idle and absolute). The database keeps the largest of each
    /// ever recorded: every revocation entry lives at least that long,
    /// whoever adds it, and housekeeping keeps every session some instance
    /// could still refresh.
    pub async fn record_lifetimes(
        &self,
        access: Duration,
        refresh_idle: Duration,
        refresh_absolute: Duration,
    ) -> Result<(), DbError> {
        on_writer!(self, |conn| sqlx::query(
            "UPDATE token_lifetimes SET
                 max_access_secs = CASE WHEN max_access_secs < $1 THEN $1 ELSE max_access_secs END,
                 max_refresh_idle_secs =
                     CASE WHEN max_refresh_idle_secs < $2 THEN $2 ELSE max_refresh_idle_secs END,
                 max_refresh_absolute_secs =
                     CASE WHEN max_refresh_absolute_secs < $3 THEN $3
                          ELSE max_refresh_absolute_secs END
             WHERE id = 1"
        )
        .bind(crate::secs(access))
        .bind(crate::secs(refresh_idle))
        .bind(crate::secs(refresh_absolute))
        .execute(conn)
        .await
        .map(|_| ())
        .map_err(sql("recording the token lifetimes")))
    }

    /// The largest session lifetimes recorded (idle, absolute), in seconds.
    pub async fn recorded_session_lifetimes(&self) -> Result<(i64, i64), DbError> {
        on_pool!(self, |pool| sqlx::query_as(
            "SELECT max_refresh_idle_secs, max_refresh_absolute_secs FROM token_lifetimes
             WHERE id = 1"
        )
        .fetch_one(pool)
        .await
        .map_err(sql("reading the session lifetimes")))
    }

    /// The database server's clock (Unix seconds).
    pub async fn database_now(&self) -> Result<i64, DbError> {
        let now_sql = self.now_sql();
        on_pool!(self, |pool| sqlx::query_scalar(now_sql)
            .fetch_one(pool)
            .await
            .map_err(sql("reading the database clock")))
    }

    /// How this backend reads its own clock, in whole seconds (truncated on
    /// both, as `strftime('%s')` does).
    fn now_sql(&self) -> &'static str {
        match &self.backend {
            Backend::Sqlite(_) => SQLITE_NOW,
            Backend::Postgres(_) => POSTGRES_NOW,
        }
    }

    /// Revokes `value` (a `jti`, `sid` or `sub`) from `at`, for as long as a
    /// token it covers can be valid: the longest lifetime recorded (at least
    /// `lifetime`) plus [`MAX_LEEWAY`].
    ///
    /// One live entry per kind and value: a repeat (the same logout twice, a
    /// `/revoke` of a used token) changes nothing. Only a `sub` entry
    /// covering later tokens than the live one replaces it, under a new id so
    /// the feed publishes it.
    pub async fn add_revocation(
        &self,
        kind: Kind,
        value: &str,
        at: RevokedAt,
        lifetime: Duration,
        why: &str,
    ) -> Result<Revoked, DbError> {
        let floor = crate::secs(lifetime);
        let leeway = crate::secs(MAX_LEEWAY);
        let now_sql = self.now_sql();
        macro_rules! upsert {
            ($tx:ident) => {{
                // The database's clock is read under the lock: waiting for
                // it does not make an operator's entry older than its commit.
                let now = match at {
                    RevokedAt::Clock(now) => now,
                    RevokedAt::Database => sqlx::query_scalar::<_, i64>(now_sql)
                        .fetch_one(&mut *$tx)
                        .await
                        .map_err(sql("reading the database clock"))?,
                };
                let issued_before = (kind == Kind::Sub).then_some(now);
                let recorded: i64 =
                    sqlx::query_scalar("SELECT max_access_secs FROM token_lifetimes WHERE id = 1")
                        .fetch_one(&mut *$tx)
                        .await
                        .map_err(sql("reading the access-token lifetime"))?;
                let expires_at = now
                    .saturating_add(recorded.max(floor))
                    .saturating_add(leeway);
                let live: Option<(i64, Option<i64>)> = sqlx::query_as(
                    "SELECT id, issued_before FROM revocations
                     WHERE kind = $1 AND value = $2 AND expires_at > $3
                     ORDER BY id DESC LIMIT 1",
                )
                .bind(kind.name())
                .bind(value)
                .bind(now)
                .fetch_optional(&mut *$tx)
                .await
                .map_err(sql("reading a revocation"))?;
                match live {
                    // Its expiry already outlives every token it covers: the
                    // lifetime it was computed from was recorded before any
                    // of them was issued.
                    Some((id, live_before)) if live_before >= issued_before => Revoked::Covered(id),
                    live => {
                        if live.is_some() {
                            // `sub` entries covering fewer tokens: replaced.
                            sqlx::query(
                                "DELETE FROM revocations
                                 WHERE kind = $1 AND value = $2 AND issued_before <= $3",
                            )
                            .bind(kind.name())
                            .bind(value)
                            .bind(issued_before)
                            .execute(&mut *$tx)
                            .await
                            .map_err(sql("replacing a revocation"))?;
                        }
                        let id: i64 = sqlx::query_scalar(
                            "INSERT INTO revocations
                                 (kind, value, issued_before, created_at, expires_at, why)
                             VALUES ($1, $2, $3, $4, $5, $6) RETURNING id",
                        )
                        .bind(kind.name())
                        .bind(value)
                        .bind(issued_before)
                        .bind(now)
                        .bind(expires_at)
                        .bind(why)
                        .fetch_one(&mut *$tx)
                        .await
                        .map_err(sql("adding a revocation"))?;
                        Revoked::Added(id)
                    }
                }
            }};
        }
        Ok(in_transaction!(
            self,
            lock REVOCATIONS_LOCK,
            sql,
            "adding a revocation",
            |tx| upsert!(tx)
        ))
    }

    /// Live entries (not expired at `now`) after `cursor`, in id order.
    pub async fn revocations_since(&self, cursor: i64, now: i64) -> Result<Vec<Entry>, DbError> {
        type Row = (i64, String, String, Option<i64>, i64, i64, String);
        let rows: Vec<Row> = on_pool!(self, |pool| sqlx::query_as(
            "SELECT id, kind, value, issued_before, created_at, expires_at, why
             FROM revocations WHERE id > $1 AND expires_at > $2 ORDER BY id"
        )
        .bind(cursor)
        .bind(now)
        .fetch_all(pool)
        .await
        .map_err(sql("reading revocations")))?;
        Ok(rows
            .into_iter()
            .filter_map(
                |(id, kind, value, issued_before, created_at, expires_at, why)| {
                    Some(Entry {
                        id,
                        kind: Kind::from_name(&kind)?,
                        value,
                        issued_before,
                        created_at,
                        expires_at,
                        why,
                    })
                },
            )
            .collect())
    }

    /// The random name of this database's revocation list (the feed's
    /// cursors carry it, so a cursor from another database is recognised).
    pub async fn revocation_epoch(&self) -> Result<String, DbError> {
        on_pool!(self, |pool| sqlx::query_scalar(
            "SELECT epoch FROM revocation_epoch"
        )
        .fetch_one(pool)
        .await
        .map_err(sql("reading the revocation list's epoch")))
    }

    /// Whether a live entry (at `now`) revokes a token with this `jti`,
    /// `sid`, `sub` and `iat` (introspection; resource servers use the feed).
    pub async fn is_revoked(
        &self,
        jti: &str,
        sid: &str,
        sub: &str,
        iat: i64,
        now: i64,
    ) -> Result<bool, DbError> {
        let hit: Option<i64> = on_pool!(self, |pool| sqlx::query_scalar(
            "SELECT id FROM revocations WHERE expires_at > $1 AND (
                 (kind = 'jti' AND value = $2) OR (kind = 'sid' AND value = $3)
                 OR (kind = 'sub' AND value = $4 AND issued_before >= $5)
             ) LIMIT 1"
        )
        .bind(now)
        .bind(jti)
        .bind(sid)
        .bind(sub)
        .bind(iat)
        .fetch_optional(pool)
        .await
        .map_err(sql("looking up revocations")))?;
        Ok(hit.is_some())
    }

    /// The newest entry's id (0 for none), expired or not.
    pub async fn revocation_newest_id(&self) -> Result<i64, DbError> {
        let newest: Option<i64> = on_pool!(self, |pool| sqlx::query_scalar(
            "SELECT MAX(id) FROM revocations"
        )
        .fetch_one(pool)
        .await
        .map_err(sql("reading the newest revocation")))?;
        Ok(newest.unwrap_or(0))
    }

    /// The entry with this id, expired or not: its kind, value and expiry.
    pub async fn revocation_at(&self, id: i64) -> Result<Option<(Kind, String, i64)>, DbError> {
        let row: Option<(String, String, i64)> = on_pool!(self, |pool| sqlx::query_as(
            "SELECT kind, value, expires_at FROM revocations WHERE id = $1"
        )
        .bind(id)
        .fetch_optional(pool)
        .await
        .map_err(sql("reading a revocation")))?;
        Ok(row.and_then(|(kind, value, expires_at)| {
            Some((Kind::from_name(&kind)?, value, expires_at))
        }))
    }

    /// Drops entries expired at `now`, except the newest (so the newest id,
    /// which feed cursors follow, never goes back); returns how many.
    pub async fn purge_revocations(&self, now: i64) -> Result<u64, DbError> {
        on_writer!(self, |conn| sqlx::query(
            "DELETE FROM revocations
             WHERE expires_at <= $1 AND id < (SELECT MAX(id) FROM revocations)"
        )
        .bind(now)
        .execute(conn)
        .await
        .map(|done| done.rows_affected())
        .map_err(sql("dropping expired revocations")))
    }
}
