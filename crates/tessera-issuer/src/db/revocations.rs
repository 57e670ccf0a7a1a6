//! The `revocations` table (see [`crate::revocation`]) and the facts its
//! entries are computed from: the longest access-token lifetime any instance
//! has issued with, and, for operator commands, the database server's clock.

use std::time::Duration;

use super::{Backend, Db, DbError, sql};
use crate::revocation::{Entry, Kind, MAX_LEEWAY};

/// The advisory lock revocation inserts take on PostgreSQL, so that entries
/// commit in id order and a feed cursor never skips one ("revokes").
const REVOCATIONS_LOCK: i64 = 0x72_65_76_6f_6b_65_73;

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
    /// A live entry already covered it (at most its expiry was extended):
    /// nothing new to publish.
    Covered(i64),
}

impl Db {
    /// Records that this instance issues access tokens living `lifetime`. The
    /// database keeps the largest ever recorded: every entry lives at least
    /// that long, whoever adds it.
    pub async fn record_token_lifetime(&self, lifetime: Duration) -> Result<(), DbError> {
        let secs = i64::try_from(lifetime.as_secs()).unwrap_or(i64::MAX);
        on_writer!(self, |conn| sqlx::query(
            "UPDATE token_lifetimes SET max_access_secs = $1 WHERE id = 1 AND max_access_secs < $1"
        )
        .bind(secs)
        .execute(conn)
        .await
        .map(|_| ())
        .map_err(sql("recording the access-token lifetime")))
    }

    /// The database server's clock (Unix seconds).
    pub async fn database_now(&self) -> Result<i64, DbError> {
        match &self.backend {
            Backend::Sqlite(backend) => {
                sqlx::query_scalar("SELECT CAST(strftime('%s', 'now') AS INTEGER)")
                    .fetch_one(&backend.pool)
                    .await
            }
            Backend::Postgres(backend) => {
                sqlx::query_scalar("SELECT CAST(EXTRACT(EPOCH FROM clock_timestamp()) AS BIGINT)")
                    .fetch_one(&backend.pool)
                    .await
            }
        }
        .map_err(sql("reading the database clock"))
    }

    /// Revokes `value` (a `jti`, `sid` or `sub`) from `at`, for as long as a
    /// token it covers can be valid: the longest lifetime recorded (at least
    /// `lifetime`) plus [`MAX_LEEWAY`].
    ///
    /// One live entry per kind and value: a repeat (the same logout twice, a
    /// `/revoke` of a used token) adds nothing and at most extends the
    /// entry's expiry. Only a `sub` entry covering later tokens than the live
    /// one replaces it, under a new id so the feed publishes it.
    pub async fn add_revocation(
        &self,
        kind: Kind,
        value: &str,
        at: RevokedAt,
        lifetime: Duration,
        why: &str,
    ) -> Result<Revoked, DbError> {
        let now = match at {
            RevokedAt::Clock(now) => now,
            RevokedAt::Database => self.database_now().await?,
        };
        let floor = i64::try_from(lifetime.as_secs()).unwrap_or(i64::MAX);
        let leeway = i64::try_from(MAX_LEEWAY.as_secs()).unwrap_or(i64::MAX);
        let issued_before = (kind == Kind::Sub).then_some(now);
        macro_rules! upsert {
            ($tx:ident) => {{
                let recorded: i64 =
                    sqlx::query_scalar("SELECT max_access_secs FROM token_lifetimes WHERE id = 1")
                        .fetch_one(&mut *$tx)
                        .await
                        .map_err(sql("reading the access-token lifetime"))?;
                let expires_at = now
                    .saturating_add(recorded.max(floor))
                    .saturating_add(leeway);
                let live: Option<(i64, Option<i64>, i64)> = sqlx::query_as(
                    "SELECT id, issued_before, expires_at FROM revocations
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
                    Some((id, live_before, live_expires)) if live_before >= issued_before => {
                        if live_expires < expires_at {
                            sqlx::query("UPDATE revocations SET expires_at = $1 WHERE id = $2")
                                .bind(expires_at)
                                .bind(id)
                                .execute(&mut *$tx)
                                .await
                                .map_err(sql("extending a revocation"))?;
                        }
                        Revoked::Covered(id)
                    }
                    live => {
                        if live.is_some() {
                            // A `sub` entry covering fewer tokens: replaced.
                            sqlx::query("DELETE FROM revocations WHERE kind = $1 AND value = $2")
                                .bind(kind.name())
                                .bind(value)
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
        Ok(in_locked_transaction!(
            self,
            REVOCATIONS_LOCK,
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

    /// Drops entries expired at `now`; returns how many.
    pub async fn purge_revocations(&self, now: i64) -> Result<u64, DbError> {
        on_writer!(self, |conn| sqlx::query(
            "DELETE FROM revocations WHERE expires_at <= $1"
        )
        .bind(now)
        .execute(conn)
        .await
        .map(|done| done.rows_affected())
        .map_err(sql("dropping expired revocations")))
    }
}
