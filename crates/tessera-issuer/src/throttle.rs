//! Failed-login throttling per username and per client IP, with growing delays.
//!
//! A key (a username, or an IP address) may fail `free` times; every further
//! failure blocks it for 1, 2, 4 … seconds, capped at 15 minutes. While blocked,
//! login attempts are answered 429 without any password work. A quiet hour
//! forgets a key; the table is bounded, oldest entries evicted first.
//!
//! Several instances behind a load balancer share the counts through the
//! database (`login_failures`), or an attacker would get as many attempts as
//! there are instances: every check also asks the database, every failure is
//! counted there. The in-memory tables stay as this instance's fast path (a
//! key it knows is blocked costs no query).

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Mutex;

use crate::db::{Db, DbError};

/// Longest block.
const MAX_DELAY_SECS: i64 = 15 * 60;
/// A key with no failure for this long starts over.
pub const FORGET_AFTER_SECS: i64 = 60 * 60;
/// Most keys remembered per table.
const MAX_ENTRIES: usize = 100_000;

#[derive(Debug, Clone, Copy)]
struct Entry {
    failures: u32,
    last_failure: i64,
    blocked_until: i64,
}

#[derive(Debug)]
struct Table<K> {
    free: u32,
    entries: Mutex<HashMap<K, Entry>>,
}

impl<K: std::hash::Hash + Eq + Clone> Table<K> {
    fn new(free: u32) -> Self {
        Self {
            free,
            entries: Mutex::new(HashMap::new()),
        }
    }

    fn blocked_for(&self, key: &K, now: i64) -> Option<i64> {
        let entries = self.entries.lock().ok()?;
        let entry = entries.get(key)?;
        (entry.blocked_until > now).then(|| entry.blocked_until - now)
    }

    fn fail(&self, key: &K, now: i64) {
        let Ok(mut entries) = self.entries.lock() else {
            return;
        };
        if entries.len() >= MAX_ENTRIES && !entries.contains_key(key) {
            entries.retain(|_, e| now - e.last_failure < FORGET_AFTER_SECS);
            if entries.len() >= MAX_ENTRIES {
                // Still full of recent entries: drop the oldest tenth.
                let mut ages: Vec<i64> = entries.values().map(|e| e.last_failure).collect();
                ages.sort_unstable();
                let cutoff = ages[ages.len() / 10];
                entries.retain(|_, e| e.last_failure > cutoff);
            }
        }
        let entry = entries.entry(key.clone()).or_insert(Entry {
            failures: 0,
            last_failure: now,
            blocked_until: 0,
        });
        if now - entry.last_failure >= FORGET_AFTER_SECS {
            entry.failures = 0;
        }
        entry.failures = entry.failures.saturating_add(1);
        entry.last_failure = now;
        if let Some(delay) = delay_after(entry.failures, self.free) {
            entry.blocked_until = now + delay;
        }
    }

    fn reset(&self, key: &K) {
        if let Ok(mut entries) = self.entries.lock() {
            entries.remove(key);
        }
    }

    fn len(&self) -> usize {
        self.entries.lock().map(|e| e.len()).unwrap_or(0)
    }
}

/// The block after the `failures`th failure of a key allowed `free` ones.
fn delay_after(failures: u32, free: u32) -> Option<i64> {
    (failures > free).then(|| {
        let over = (failures - free - 1).min(20);
        (1_i64 << over).min(MAX_DELAY_SECS)
    })
}

/// Login throttling state.
#[derive(Debug)]
pub struct Throttle {
    users: Table<String>,
    ips: Table<IpAddr>,
}

impl Default for Throttle {
    fn default() -> Self {
        Self::new(5, 20)
    }
}

impl Throttle {
    /// `free_per_user` failures per username and `free_per_ip` per client IP
    /// before delays start (an IP is often shared, so it gets more).
    pub fn new(free_per_user: u32, free_per_ip: u32) -> Self {
        Self {
            users: Table::new(free_per_user),
            ips: Table::new(free_per_ip),
        }
    }

    fn user_key(username: &str) -> String {
        // Bounded: a megabyte of username must not become a megabyte of key.
        username.chars().take(128).collect()
    }

    /// Seconds to wait, if this username or IP is blocked now.
    pub fn check(&self, username: &str, ip: Option<IpAddr>, now: i64) -> Option<i64> {
        let user = self.users.blocked_for(&Self::user_key(username), now);
        let ip = ip.and_then(|ip| self.ips.blocked_for(&ip, now));
        user.max(ip)
    }

    /// Records a failed login.
    pub fn failed(&self, username: &str, ip: Option<IpAddr>, now: i64) {
        self.users.fail(&Self::user_key(username), now);
        if let Some(ip) = ip {
            self.ips.fail(&ip, now);
        }
    }

    /// A successful login clears the username's failures (not the IP's).
    pub fn succeeded(&self, username: &str) {
        self.users.reset(&Self::user_key(username));
    }

    /// [`Throttle::check`], then the counts every instance shares in `db`.
    pub async fn check_shared(
        &self,
        db: &Db,
        username: &str,
        ip: Option<IpAddr>,
        now: i64,
    ) -> Result<Option<i64>, DbError> {
        if let Some(wait) = self.check(username, ip, now) {
            return Ok(Some(wait));
        }
        let user = shared_user_key(username);
        let ip = ip.map(shared_ip_key);
        let until = db
            .throttle_blocked_until(&user, ip.as_deref().unwrap_or(&user))
            .await?;
        Ok((until > now).then(|| until - now))
    }

    /// [`Throttle::failed`], and the same failure counted in `db` for every
    /// instance (the database's count decides the shared block).
    pub async fn failed_shared(
        &self,
        db: &Db,
        username: &str,
        ip: Option<IpAddr>,
        now: i64,
    ) -> Result<(), DbError> {
        self.failed(username, ip, now);
        let mut keys = vec![(shared_user_key(username), self.users.free)];
        if let Some(ip) = ip {
            keys.push((shared_ip_key(ip), self.ips.free));
        }
        for (key, free) in keys {
            let failures = db.throttle_failure(&key, now, FORGET_AFTER_SECS).await?;
            let failures = u32::try_from(failures).unwrap_or(u32::MAX);
            if let Some(delay) = delay_after(failures, free) {
                db.throttle_block(&key, now + delay).await?;
            }
        }
        // Keys quiet for an hour are dropped by `serve`'s hourly housekeeping.
        Ok(())
    }

    /// [`Throttle::succeeded`], here and in `db`.
    pub async fn succeeded_shared(&self, db: &Db, username: &str) -> Result<(), DbError> {
        self.succeeded(username);
        db.throttle_reset(&shared_user_key(username)).await
    }

    /// How many usernames and IPs are remembered.
    pub fn sizes(&self) -> (usize, usize) {
        (self.users.len(), self.ips.len())
    }
}

/// A username's key in the shared table: a hash, so that whatever a client
/// sends as a username (any length, NUL bytes, which PostgreSQL's text refuses)
/// becomes a short, plain key.
fn shared_user_key(username: &str) -> String {
    let hash = tessera_keyring::sha256(username.as_bytes());
    format!("user:{}", tessera_keyring::b64url(&hash[..18]))
}

fn shared_ip_key(ip: IpAddr) -> String {
    format!("ip:{ip}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn delays_grow_after_the_free_attempts_and_success_resets() {
        let t = Throttle::new(2, 100);
        let now = 1000;
        for _ in 0..2 {
            t.failed("alice", None, now);
        }
        assert_eq!(t.check("alice", None, now), None, "two free failures");
        t.failed("alice", None, now);
        assert_eq!(t.check("alice", None, now), Some(1));
        t.failed("alice", None, now + 1);
        assert_eq!(t.check("alice", None, now + 1), Some(2));
        t.failed("alice", None, now + 3);
        assert_eq!(t.check("alice", None, now + 3), Some(4));
        assert_eq!(t.check("bob", None, now + 3), None, "per username");
        t.succeeded("alice");
        assert_eq!(t.check("alice", None, now + 3), None);
    }

    #[test]
    fn delays_are_capped_and_forgotten_after_a_quiet_hour() {
        let t = Throttle::new(0, 100);
        for i in 0..40 {
            t.failed("alice", None, i);
        }
        assert_eq!(t.check("alice", None, 40), Some(MAX_DELAY_SECS - 1));
        t.failed("alice", None, 40 + FORGET_AFTER_SECS);
        assert_eq!(
            t.check("alice", None, 40 + FORGET_AFTER_SECS),
            Some(1),
            "started over"
        );
    }

    #[test]
    fn an_ip_is_throttled_across_usernames() {
        let t = Throttle::new(100, 3);
        let ip: IpAddr = "192.0.2.7".parse().unwrap();
        for (i, name) in ["a", "b", "c", "d"].iter().enumerate() {
            t.failed(name, Some(ip), i as i64);
        }
        assert_eq!(t.check("e", Some(ip), 3), Some(1));
        assert_eq!(t.check("e", Some("192.0.2.8".parse().unwrap()), 3), None);
    }

    #[test]
    fn the_tables_stay_bounded() {
        let t = Throttle::new(5, 5);
        for i in 0..(MAX_ENTRIES + 10) {
            t.failed(&format!("user{i}"), None, i as i64);
        }
        assert!(t.sizes().0 <= MAX_ENTRIES);
    }
}
