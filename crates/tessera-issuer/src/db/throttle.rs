//! The `login_failures` and `login_known` tables (see `crate::throttle`).

use super::Db;
use super::error::{DbError, sql};

/// The throttle's rules a reservation applies (`crate::throttle` decides
/// them; this layer applies them atomically).
#[derive(Debug, Clone, Copy)]
pub struct ReserveRules {
    /// Now, Unix seconds.
    pub now: i64,
    /// A key with no failure for this many seconds starts over.
    pub forget_after: i64,
    /// A successful login makes its address known for the user this long.
    pub known_for: i64,
    /// The block (seconds) after a key's `failures`th failure when it is
    /// allowed `free` ones, if any.
    pub delay: fn(i64, u32) -> Option<i64>,
}

/// What [`Db::throttle_reserve`] came to.
#[derive(Debug)]
pub enum Reserve {
    /// Counted; these keys were blocked by this attempt (until when).
    Granted {
        /// Whether the address was counted (not known for the user).
        ip_counted: bool,
        /// Keys this attempt blocked, and until when.
        blocks: Vec<(String, i64)>,
    },
    /// `key` is blocked until `until`; nothing was counted.
    Blocked {
        /// The blocked key.
        key: String,
        /// Until when (Unix seconds).
        until: i64,
    },
}

impl Db {
    /// Reserves a login attempt on `user` and, unless the address is known
    /// for that user, on `ip`: each key's count goes up by one unless the key
    /// is blocked, and a key whose count passes its free failures is blocked
    /// for `rules.delay(failures, free)`. One transaction: if any key is
    /// blocked, nothing is counted. The upsert is conditional (`WHERE
    /// blocked_until <= now`), so concurrent reservations, in any process,
    /// are counted one by one against the committed row.
    pub async fn throttle_reserve(
        &self,
        user: (&str, u32),
        ip: Option<(&str, u32)>,
        rules: &ReserveRules,
    ) -> Result<Reserve, DbError> {
        let now = rules.now;
        let forget_after = rules.forget_after;
        let known_since = now.saturating_sub(rules.known_for);
        Ok(in_transaction!(self, "reserving a login attempt", |tx| {
            let known = match ip {
                Some((ip_key, _)) => sqlx::query_scalar::<_, i64>(
                    "SELECT last_success FROM login_known
                     WHERE user_key = $1 AND ip_key = $2 AND last_success > $3",
                )
                .bind(user.0)
                .bind(ip_key)
                .bind(known_since)
                .fetch_optional(&mut *tx)
                .await
                .map_err(sql("reading known addresses"))?
                .is_some(),
                None => false,
            };
            let counted = ip.filter(|_| !known);
            let mut blocks = Vec::new();
            let mut outcome = None;
            for (key, free) in std::iter::once(user).chain(counted) {
                let failures: Option<i64> = sqlx::query_scalar(
                    "INSERT INTO login_failures (key, failures, last_failure, blocked_until)
                     VALUES ($1, 1, $2, 0)
                     ON CONFLICT (key) DO UPDATE SET
                         failures = CASE WHEN $2 - login_failures.last_failure >= $3 THEN 1
                                         ELSE login_failures.failures + 1 END,
                         last_failure = $2
                     WHERE login_failures.blocked_until <= $2
                     RETURNING failures",
                )
                .bind(key)
                .bind(now)
                .bind(forget_after)
                .fetch_optional(&mut *tx)
                .await
                .map_err(sql("counting a login attempt"))?;
                let Some(failures) = failures else {
                    let until: i64 = sqlx::query_scalar(
                        "SELECT blocked_until FROM login_failures WHERE key = $1",
                    )
                    .bind(key)
                    .fetch_one(&mut *tx)
                    .await
                    .map_err(sql("reading a login block"))?;
                    outcome = Some(Reserve::Blocked {
                        key: key.to_owned(),
                        until,
                    });
                    break;
                };
                if let Some(delay) = (rules.delay)(failures, free) {
                    let until = now.saturating_add(delay);
                    sqlx::query("UPDATE login_failures SET blocked_until = $2 WHERE key = $1")
                        .bind(key)
                        .bind(until)
                        .execute(&mut *tx)
                        .await
                        .map_err(sql("blocking a login key"))?;
                    blocks.push((key.to_owned(), until));
                }
            }
            if let Some(blocked) = outcome {
                // Dropping the transaction rolls back what was counted.
                return Ok(blocked);
            }
            Reserve::Granted {
                ip_counted: counted.is_some(),
                blocks,
            }
        }))
    }

    /// A reserved attempt had the right password: clears the username's
    /// count, hands the address's reservation back, and records the address
    /// as known for the user.
    pub async fn throttle_release(
        &self,
        user_key: &str,
        counted_ip_key: Option<&str>,
        seen_ip_key: Option<&str>,
        now: i64,
    ) -> Result<(), DbError> {
        in_transaction!(self, "releasing a login attempt", |tx| {
            sqlx::query("DELETE FROM login_failures WHERE key = $1")
                .bind(user_key)
                .execute(&mut *tx)
                .await
                .map_err(sql("clearing login failures"))?;
            if let Some(ip_key) = counted_ip_key {
                sqlx::query(
                    "UPDATE login_failures
                     SET failures = CASE WHEN failures > 0 THEN failures - 1 ELSE 0 END
                     WHERE key = $1",
                )
                .bind(ip_key)
                .execute(&mut *tx)
                .await
                .map_err(sql("releasing a login attempt"))?;
            }
            if let Some(ip_key) = seen_ip_key {
                sqlx::query(
                    "INSERT INTO login_known (user_key, ip_key, last_success) VALUES ($1, $2, $3)
                     ON CONFLICT (user_key, ip_key) DO UPDATE SET last_success = $3",
                )
                .bind(user_key)
                .bind(ip_key)
                .bind(now)
                .execute(&mut *tx)
                .await
                .map_err(sql("recording a known address"))?;
            }
        });
        Ok(())
    }

    /// Drops keys whose last failure is before `before`, and known
    /// addresses not used since `known_before`.
    pub async fn throttle_forget(&self, before: i64, known_before: i64) -> Result<(), DbError> {
        on_writer!(self, |conn| sqlx::query(
            "DELETE FROM login_failures WHERE last_failure < $1"
        )
        .bind(before)
        .execute(conn)
        .await
        .map(|_| ())
        .map_err(sql("forgetting login failures")))?;
        on_writer!(self, |conn| sqlx::query(
            "DELETE FROM login_known WHERE last_success < $1"
        )
        .bind(known_before)
        .execute(conn)
        .await
        .map(|_| ())
        .map_err(sql("forgetting known addresses")))
    }
}
