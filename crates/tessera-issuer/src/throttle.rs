//! Failed-login throttling per username and per client address, with growing
//! delays, decided atomically in the database before any password work.
//!
//! A key (a username, or an address: an IPv4 address or an IPv6 /64) may fail
//! `free` times; every further failure blocks it for 1, 2, 4 … seconds, capped
//! at 15 minutes. A quiet hour forgets a key.
//!
//! **Reserve, then check.** Before Argon2 runs, the attempt is *reserved*: one
//! conditional upsert per key counts it as a failure unless the key is
//! blocked, and blocks the key if this attempt goes past its free ones, all in
//! one transaction. A blocked key gets `429` with no password work. A right
//! password releases the reservation (the username's count is cleared, the
//! address's decremented). Because the count comes before the check, N
//! parallel guesses for one username run at most `free + 1` password checks
//! whatever the number of instances: the database, not a process, decides
//! (the old check-then-record let 40 parallel guesses all be evaluated).
//!
//! **Known addresses.** Per-address limits slow password spraying, but behind
//! a proxy one address is everyone. A user who has logged in successfully
//! from an address (within [`KNOWN_FOR_SECS`]) is not subject to that
//! address's limit: their right password still gets in while the address is
//! blocked for everyone else. Their username's own limit still applies, so an
//! attacker who knows who logs in from where gains no extra guesses for that
//! user. (Keyed by address, not by a device cookie: `/login` and the password
//! grant are APIs whose clients keep no cookies.)
//!
//! Each instance also remembers keys it saw blocked (bounded), so a flood of
//! attempts on a blocked key costs no database work.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Mutex;

use crate::db::{Db, DbError};

/// Longest block.
const MAX_DELAY_SECS: i64 = 15 * 60;
/// A key with no failure for this long starts over.
pub const FORGET_AFTER_SECS: i64 = 60 * 60;
/// A successful login makes its address known for the user this long.
pub const KNOWN_FOR_SECS: i64 = 30 * 24 * 3600;
/// Most blocked keys remembered in memory.
const MAX_ENTRIES: usize = 100_000;

/// The rules every reservation applies at `now`.
fn rules(now: i64) -> crate::db::ReserveRules {
    crate::db::ReserveRules {
        now,
        forget_after: FORGET_AFTER_SECS,
        known_for: KNOWN_FOR_SECS,
        delay: delay_after,
    }
}

/// The block after the `failures`th failure of a key allowed `free` ones.
pub(crate) fn delay_after(failures: i64, free: u32) -> Option<i64> {
    let free = i64::from(free);
    (failures > free).then(|| {
        let over = (failures - free - 1).min(20);
        (1_i64 << over).min(MAX_DELAY_SECS)
    })
}

/// Login throttling: the limits, and this instance's memory of blocked keys.
#[derive(Debug)]
pub struct Throttle {
    free_per_user: u32,
    free_per_ip: u32,
    /// Key → blocked until (Unix seconds), as last learnt here.
    blocked: Mutex<HashMap<String, i64>>,
}

impl Default for Throttle {
    fn default() -> Self {
        Self::new(5, 20)
    }
}

/// An attempt allowed to check a password; hand it back with
/// [`Throttle::release`] when the password was right.
#[derive(Debug)]
#[must_use]
pub struct Reserved {
    user_key: String,
    /// The address's key, if there is an address.
    ip_key: Option<String>,
    /// Whether the address was counted (not known for this user).
    ip_counted: bool,
}

/// What a reservation came to.
#[derive(Debug)]
pub enum Reservation {
    /// Go ahead: the attempt is counted as a failure until released.
    Granted(Reserved),
    /// A key is blocked: answer 429 after this many seconds.
    Blocked {
        /// Seconds to wait.
        retry_after: i64,
    },
}

impl Throttle {
    /// `free_per_user` failures per username and `free_per_ip` per client
    /// address before delays start (an address is often shared, so it gets
    /// more).
    pub fn new(free_per_user: u32, free_per_ip: u32) -> Self {
        Self {
            free_per_user,
            free_per_ip,
            blocked: Mutex::new(HashMap::new()),
        }
    }

    fn remembered(&self, key: &str, now: i64) -> Option<i64> {
        let blocked = self.blocked.lock().ok()?;
        blocked
            .get(key)
            .filter(|until| **until > now)
            .map(|until| until - now)
    }

    fn remember(&self, key: &str, until: i64, now: i64) {
        let Ok(mut blocked) = self.blocked.lock() else {
            return;
        };
        if blocked.len() >= MAX_ENTRIES && !blocked.contains_key(key) {
            blocked.retain(|_, until| *until > now);
            if blocked.len() >= MAX_ENTRIES {
                // Still full of live blocks: forget the tenth ending soonest.
                // Forgetting only costs a query: the database still decides.
                let mut ends: Vec<i64> = blocked.values().copied().collect();
                ends.sort_unstable();
                let cutoff = ends[ends.len() / 10];
                blocked.retain(|_, until| *until > cutoff);
            }
        }
        blocked.insert(key.to_owned(), until);
    }

    fn forget(&self, key: &str) {
        if let Ok(mut blocked) = self.blocked.lock() {
            blocked.remove(key);
        }
    }

    /// Seconds to wait if this instance already knows the username is
    /// blocked; no database work. (Only usernames are remembered: whether an
    /// address's block applies depends on the user, which the database says.)
    pub fn known_block(&self, username: &str, now: i64) -> Option<i64> {
        self.remembered(&shared_user_key(username), now)
    }

    /// Reserves an attempt for `username` from `ip` at `now`: counted as a
    /// failure on every key that applies, atomically and before any password
    /// work, unless one of them is blocked.
    pub async fn reserve(
        &self,
        db: &Db,
        username: &str,
        ip: Option<IpAddr>,
        now: i64,
    ) -> Result<Reservation, DbError> {
        if let Some(retry_after) = self.known_block(username, now) {
            return Ok(Reservation::Blocked { retry_after });
        }
        let user_key = shared_user_key(username);
        let seen_ip_key = ip.map(shared_ip_key);
        let reserved = db
            .throttle_reserve(
                (&user_key, self.free_per_user),
                seen_ip_key.as_deref().map(|k| (k, self.free_per_ip)),
                &rules(now),
            )
            .await?;
        match reserved {
            crate::db::Reserve::Blocked { key, until } => {
                if key == user_key {
                    self.remember(&key, until, now);
                }
                Ok(Reservation::Blocked {
                    retry_after: until - now,
                })
            }
            crate::db::Reserve::Granted { ip_counted, blocks } => {
                for (key, until) in blocks {
                    if key == user_key {
                        self.remember(&key, until, now);
                    }
                }
                Ok(Reservation::Granted(Reserved {
                    user_key,
                    ip_key: seen_ip_key,
                    ip_counted,
                }))
            }
        }
    }

    /// The password was right: the username's failures are cleared, the
    /// address's reservation handed back, and the address becomes known for
    /// this user.
    pub async fn release(&self, db: &Db, reserved: Reserved, now: i64) -> Result<(), DbError> {
        self.forget(&reserved.user_key);
        let counted = reserved.ip_key.as_deref().filter(|_| reserved.ip_counted);
        db.throttle_release(&reserved.user_key, counted, reserved.ip_key.as_deref(), now)
            .await
    }

    /// Seconds to wait if this instance knows `client_id` is blocked from
    /// `ip` for failed authentications; no database work.
    pub fn client_block(&self, client_id: &str, ip: Option<IpAddr>, now: i64) -> Option<i64> {
        let ip_key = ip.map(shared_ip_key);
        self.remembered(&shared_client_key(client_id, ip_key.as_deref()), now)
    }

    /// Counts a failed client authentication of `client_id` from `ip`,
    /// atomically in the database: on the client from that address
    /// (`free_per_user` free failures, then the login delays) and on the
    /// address itself (`free_per_ip`, shared with logins). `Some(seconds)`
    /// if a key is blocked: then nothing is counted or stored, and this
    /// instance remembers the block.
    ///
    /// An address this instance knows is blocked costs no database work at
    /// all: a flood of failures (random client ids, say) from one address
    /// writes nothing once the address is blocked. The address's block
    /// gates the cost of *failures* only: a right secret from that address
    /// still gets in (`client_block` looks at the client's key alone), so a
    /// service sharing an address with an attacker is not locked out.
    ///
    /// Counted after the check, not reserved before it as logins are: the
    /// check (SHA-256, or an RS256 verification) costs less than the
    /// reservation would, and a reservation would put a database write on
    /// every authenticated request. Each instance learns a block at its
    /// next failure, so while blocked a client can be tried at most once
    /// more per instance.
    pub async fn client_failed(
        &self,
        db: &Db,
        client_id: &str,
        ip: Option<IpAddr>,
        now: i64,
    ) -> Result<Option<i64>, DbError> {
        let ip_key = ip.map(shared_ip_key);
        if let Some(retry_after) = ip_key.as_deref().and_then(|k| self.remembered(k, now)) {
            return Ok(Some(retry_after));
        }
        let key = shared_client_key(client_id, ip_key.as_deref());
        let counted = db
            .throttle_reserve(
                (&key, self.free_per_user),
                ip_key.as_deref().map(|k| (k, self.free_per_ip)),
                &rules(now),
            )
            .await?;
        Ok(match counted {
            crate::db::Reserve::Blocked { key, until } => {
                self.remember(&key, until, now);
                Some(until - now)
            }
            crate::db::Reserve::Granted { blocks, .. } => {
                for (key, until) in blocks {
                    self.remember(&key, until, now);
                }
                None
            }
        })
    }

    /// How many blocked keys this instance remembers.
    pub fn remembered_blocks(&self) -> usize {
        self.blocked.lock().map(|b| b.len()).unwrap_or(0)
    }
}

/// A username's key in the shared table: a hash, so that whatever a client
/// sends as a username (any length, NUL bytes, which PostgreSQL's text refuses)
/// becomes a short, plain key.
pub fn shared_user_key(username: &str) -> String {
    let hash = tessera_keyring::sha256(username.as_bytes());
    format!("user:{}", tessera_keyring::b64url(&hash[..18]))
}

/// A client's key from an address: per client *and* address, so that
/// whoever knows a service's client id cannot lock the service out from
/// elsewhere (client secrets have at least 32 characters, generated ones
/// 256 bits: a guessing budget per address is no risk to them).
pub fn shared_client_key(client_id: &str, ip_key: Option<&str>) -> String {
    let ip = ip_key.unwrap_or_default();
    let hash = tessera_keyring::sha256(format!("{client_id}\0{ip}").as_bytes());
    format!("client:{}", tessera_keyring::b64url(&hash[..18]))
}

/// An address's key: IPv4 as is (IPv4-mapped IPv6 too), IPv6 by its /64 (a
/// host gets a /64 to itself; counting per /128 gave each client 2^64 fresh
/// budgets).
pub fn shared_ip_key(ip: IpAddr) -> String {
    match ip {
        IpAddr::V4(v4) => format!("ip:{v4}"),
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => format!("ip:{v4}"),
            None => {
                let prefix = u128::from(v6) & !((1u128 << 64) - 1);
                format!("ip:{}/64", std::net::Ipv6Addr::from(prefix))
            }
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn delays_grow_after_the_free_attempts_and_are_capped() {
        assert_eq!(delay_after(5, 5), None);
        assert_eq!(delay_after(6, 5), Some(1));
        assert_eq!(delay_after(7, 5), Some(2));
        assert_eq!(delay_after(8, 5), Some(4));
        assert_eq!(delay_after(40, 5), Some(MAX_DELAY_SECS));
        assert_eq!(delay_after(i64::MAX, 0), Some(MAX_DELAY_SECS));
    }

    #[test]
    fn ipv6_is_counted_per_64_and_mapped_ipv4_as_ipv4() {
        let a = shared_ip_key("2001:db8:1:2:aaaa::1".parse().unwrap());
        let b = shared_ip_key("2001:db8:1:2:ffff:ffff:ffff:ffff".parse().unwrap());
        let c = shared_ip_key("2001:db8:1:3::1".parse().unwrap());
        assert_eq!(a, b);
        assert_eq!(a, "ip:2001:db8:1:2::/64");
        assert_ne!(a, c);
        assert_eq!(
            shared_ip_key("::ffff:192.0.2.7".parse().unwrap()),
            shared_ip_key("192.0.2.7".parse().unwrap())
        );
    }

    #[test]
    fn the_memory_of_blocks_stays_bounded() {
        let t = Throttle::new(5, 5);
        for i in 0..(MAX_ENTRIES + 10) {
            t.remember(&format!("user:{i}"), 10_000 + i as i64, 0);
        }
        assert!(t.remembered_blocks() <= MAX_ENTRIES);
        assert_eq!(t.remembered("user:5", 0), None, "the soonest-ending went");
        t.remember("user:x", 50, 0);
        assert_eq!(t.remembered("user:x", 10), Some(40));
        assert_eq!(t.remembered("user:x", 50), None, "over");
        let last = format!("user:{}", MAX_ENTRIES + 9);
        assert!(t.remembered(&last, 0).is_some());
    }
}
