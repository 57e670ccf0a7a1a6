//! Passwords: Argon2id hashing and verification, off the async runtime, with a
//! bound on how many run at once, and the same cost for unknown users.

use std::sync::Arc;

use argon2::password_hash::{PasswordHash, PasswordHasher as _, PasswordVerifier as _, SaltString};
use argon2::{Algorithm, Argon2, Params, Version};
use rand_core::{OsRng, RngCore as _};
use tokio::sync::Semaphore;

/// OWASP's Argon2id parameters: m = 19 MiB, t = 2, p = 1.
pub const OWASP_PARAMS: (u32, u32, u32) = (19 * 1024, 2, 1);

/// Longest password accepted, in bytes (longer is an attempt to waste CPU).
pub const MAX_PASSWORD_BYTES: usize = 1024;
/// Shortest password accepted when one is set.
pub const MIN_PASSWORD_CHARS: usize = 8;

/// A password, wiped on drop, never printed.
pub struct Password(zeroize::Zeroizing<String>);

impl Password {
    /// Wraps a password.
    pub fn new(text: String) -> Self {
        Self(zeroize::Zeroizing::new(text))
    }

    fn bytes(&self) -> &[u8] {
        self.0.as_bytes()
    }

    /// Checks a new password against the policy (length only, as NIST 800-63B asks).
    pub fn check_policy(&self) -> Result<(), String> {
        let chars = self.0.chars().count();
        if chars < MIN_PASSWORD_CHARS {
            return Err(format!(
                "a password needs at least {MIN_PASSWORD_CHARS} characters"
            ));
        }
        if self.0.len() > MAX_PASSWORD_BYTES {
            return Err(format!(
                "a password may have at most {MAX_PASSWORD_BYTES} bytes"
            ));
        }
        Ok(())
    }
}

impl std::fmt::Debug for Password {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Password(..)")
    }
}

/// The outcome of checking a password.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Checked {
    /// Wrong password, unknown user, or an unreadable stored hash.
    Mismatch,
    /// Right password; `rehash` holds a new hash when the stored one used other
    /// parameters than today's.
    Match {
        /// The upgraded hash to store, if the parameters changed.
        rehash: Option<String>,
    },
}

/// Hashes and verifies passwords.
#[derive(Debug, Clone)]
pub struct Hasher {
    argon2: Argon2<'static>,
    /// A hash of a random password, verified when the user does not exist so
    /// that unknown users cost the same time as wrong passwords.
    dummy: Arc<str>,
    permits: Arc<Semaphore>,
}

/// Hashing failed (bad parameters or an internal Argon2 error).
#[derive(Debug, thiserror::Error)]
#[error("password hashing failed: {0}")]
#[non_exhaustive]
pub struct HashError(String);

impl Hasher {
    /// A hasher with OWASP parameters allowing `concurrency` hashes at once.
    pub fn new(concurrency: usize) -> Result<Self, HashError> {
        let (m, t, p) = OWASP_PARAMS;
        Self::with_params(m, t, p, concurrency)
    }

    /// A hasher with explicit parameters (tests use cheap ones).
    pub fn with_params(m_kib: u32, t: u32, p: u32, concurrency: usize) -> Result<Self, HashError> {
        let params = Params::new(m_kib, t, p, None).map_err(|e| HashError(e.to_string()))?;
        let argon2 = Argon2::new(Algorithm::Argon2id, Version::V0x13, params);
        let mut random = [0u8; 32];
        OsRng.fill_bytes(&mut random);
        let salt = SaltString::generate(&mut OsRng);
        let dummy = argon2
            .hash_password(&random, &salt)
            .map_err(|e| HashError(e.to_string()))?
            .to_string();
        Ok(Self {
            argon2,
            dummy: dummy.into(),
            permits: Arc::new(Semaphore::new(concurrency.max(1))),
        })
    }

    /// Hashes a password (blocking; call from `spawn_blocking` or a CLI).
    pub fn hash(&self, password: &Password) -> Result<String, HashError> {
        let salt = SaltString::generate(&mut OsRng);
        self.argon2
            .hash_password(password.bytes(), &salt)
            .map(|h| h.to_string())
            .map_err(|e| HashError(e.to_string()))
    }

    /// Verifies a password against a stored hash, or against the dummy hash when
    /// there is none (unknown user): same work either way. Blocking.
    pub fn check(&self, password: &Password, stored: Option<&str>) -> Checked {
        let target = stored.unwrap_or(&self.dummy);
        let Ok(parsed) = PasswordHash::new(target) else {
            // Unreadable stored hash: spend the same time, then refuse.
            let _ = self.check(password, None);
            return Checked::Mismatch;
        };
        let ok = password.bytes().len() <= MAX_PASSWORD_BYTES
            && self
                .argon2
                .verify_password(password.bytes(), &parsed)
                .is_ok();
        if !ok || stored.is_none() {
            return Checked::Mismatch;
        }
        let rehash = if self.is_current(&parsed) {
            None
        } else {
            self.hash(password).ok()
        };
        Checked::Match { rehash }
    }

    fn is_current(&self, parsed: &PasswordHash<'_>) -> bool {
        let Ok(params) = Params::try_from(parsed) else {
            return false;
        };
        let current = self.argon2.params();
        parsed.algorithm.as_str() == Algorithm::Argon2id.as_str()
            && parsed.version == Some(Version::V0x13.into())
            && params.m_cost() == current.m_cost()
            && params.t_cost() == current.t_cost()
            && params.p_cost() == current.p_cost()
    }

    /// [`Hasher::check`] on a blocking thread, at most `concurrency` at a time,
    /// so a login flood cannot starve the async workers that serve the JWKS.
    pub async fn check_async(&self, password: Password, stored: Option<String>) -> Checked {
        let Ok(_permit) = self.permits.clone().acquire_owned().await else {
            return Checked::Mismatch;
        };
        let hasher = self.clone();
        tokio::task::spawn_blocking(move || hasher.check(&password, stored.as_deref()))
            .await
            .unwrap_or(Checked::Mismatch)
    }
}

/// A random identifier or secret: `bytes` random bytes, base64url.
pub fn random_token(bytes: usize) -> String {
    let mut buf = zeroize::Zeroizing::new(vec![0u8; bytes]);
    OsRng.fill_bytes(&mut buf);
    tessera_keyring::b64url(&buf)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cheap() -> Hasher {
        Hasher::with_params(64, 1, 1, 2).unwrap()
    }

    #[test]
    fn right_wrong_and_unknown() {
        let h = cheap();
        let hash = h.hash(&Password::new("correct horse".into())).unwrap();
        assert!(hash.starts_with("$argon2id$v=19$m=64,t=1,p=1$"), "{hash}");
        assert_eq!(
            h.check(&Password::new("correct horse".into()), Some(&hash)),
            Checked::Match { rehash: None }
        );
        assert_eq!(
            h.check(&Password::new("wrong horse".into()), Some(&hash)),
            Checked::Mismatch
        );
        assert_eq!(
            h.check(&Password::new("correct horse".into()), None),
            Checked::Mismatch
        );
        assert_eq!(
            h.check(&Password::new("x".into()), Some("not a hash")),
            Checked::Mismatch
        );
    }

    #[test]
    fn old_parameters_are_upgraded_on_a_successful_check() {
        let old = Hasher::with_params(32, 1, 1, 1).unwrap();
        let hash = old.hash(&Password::new("correct horse".into())).unwrap();
        let new = cheap();
        let Checked::Match {
            rehash: Some(upgraded),
        } = new.check(&Password::new("correct horse".into()), Some(&hash))
        else {
            panic!("expected a rehash");
        };
        assert!(
            upgraded.starts_with("$argon2id$v=19$m=64,t=1,p=1$"),
            "{upgraded}"
        );
        assert_eq!(
            new.check(&Password::new("wrong horse".into()), Some(&hash)),
            Checked::Mismatch
        );
    }

    #[test]
    fn the_production_parameters_are_owasps() {
        let h = Hasher::new(1).unwrap();
        assert!(
            h.dummy.starts_with("$argon2id$v=19$m=19456,t=2,p=1$"),
            "{}",
            h.dummy
        );
    }

    #[test]
    fn policy_and_debug() {
        assert!(Password::new("short".into()).check_policy().is_err());
        assert!(Password::new("x".repeat(2000)).check_policy().is_err());
        assert!(Password::new("long enough".into()).check_policy().is_ok());
        assert_eq!(
            format!("{:?}", Password::new("secret123".into())),
            "Password(..)"
        );
        assert_eq!(random_token(32).len(), 43);
        assert_ne!(random_token(16), random_token(16));
    }
}
