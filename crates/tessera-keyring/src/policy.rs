//! The rotation rules, and the lifetimes they are computed from.

use std::time::{Duration, SystemTime};

/// The lifetimes that decide when a key may change state safely.
///
/// They must match what the issuer and the verifiers really use: the issuer's
/// maximum access-token lifetime, the `max-age` it serves the JWKS with, and the
/// clock leeway verifiers allow. The issuer and the `keys` CLI read them from the
/// same configuration.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RotationPolicy {
    /// The longest lifetime of an access token. Default 15 minutes.
    pub access_token_lifetime: Duration,
    /// How long a verifier may cache the JWKS. Default 5 minutes.
    pub jwks_cache_lifetime: Duration,
    /// The clock skew verifiers tolerate. Default 60 seconds.
    pub clock_leeway: Duration,
}

impl Default for RotationPolicy {
    fn default() -> Self {
        Self {
            access_token_lifetime: Duration::from_secs(15 * 60),
            jwks_cache_lifetime: Duration::from_secs(5 * 60),
            clock_leeway: Duration::from_secs(60),
        }
    }
}

impl RotationPolicy {
    /// Rule 1: a pending key may become active once it has been published for at
    /// least one JWKS cache lifetime, so that every verifier's cached JWKS holds it
    /// before the first token it signs arrives.
    pub fn activation_safe_at(&self, published: SystemTime) -> SystemTime {
        published + self.jwks_cache_lifetime
    }

    /// Rule 2: a retired key stays published until every token it signed has
    /// expired (access-token lifetime), every verifier has had a chance to refetch
    /// (JWKS cache lifetime), and clocks may disagree (leeway). Only then may it go.
    pub fn prune_safe_at(&self, retired: SystemTime) -> SystemTime {
        retired + self.access_token_lifetime + self.jwks_cache_lifetime + self.clock_leeway
    }
}

/// Formats a time for operators: RFC 3339, UTC, whole seconds.
pub fn format_time(t: SystemTime) -> String {
    humantime::format_rfc3339_seconds(t).to_string()
}

/// Rounds a time *up* to whole seconds, the precision the manifest stores.
/// Rounding up is the safe direction for both rules: a key's publication or
/// retirement is recorded no earlier than it happened, so no rule's deadline can
/// come early.
pub(crate) fn stamp(t: SystemTime) -> SystemTime {
    match t.duration_since(SystemTime::UNIX_EPOCH) {
        Ok(d) if d.subsec_nanos() == 0 => t,
        Ok(d) => SystemTime::UNIX_EPOCH + Duration::from_secs(d.as_secs() + 1),
        Err(_) => SystemTime::UNIX_EPOCH,
    }
}

/// Where the keyring reads the time. Tests inject a [`FixedClock`]; everything
/// else uses [`SystemClock`].
pub trait Clock: Send + Sync + std::fmt::Debug {
    /// The current time.
    fn now(&self) -> SystemTime;
}

/// The operating system's clock.
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    #[allow(clippy::disallowed_methods)] // the one place the keyring reads the clock
    fn now(&self) -> SystemTime {
        SystemTime::now()
    }
}

/// A clock stopped at one instant.
#[derive(Debug, Clone, Copy)]
pub struct FixedClock(pub SystemTime);

impl Clock for FixedClock {
    fn now(&self) -> SystemTime {
        self.0
    }
}
