//! Passwords: Argon2id hashing and verification, off the async runtime, with a
//! bound on how many run at once, and the same cost for unknown users.

use std::sync::Arc;

use argon2::password_hash::{PasswordHash, PasswordHasher as _, SaltString};
use argon2::{Algorithm, Argon2, Block, Params, Version};
use rand_core::{OsRng, RngCore as _};

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
///
/// Request-path checks run on a fixed set of `tessera-argon2` threads, each with
/// one Argon2 work area it keeps and reuses. Before this, each check ran on a
/// `spawn_blocking` thread and allocated its 19 MiB afresh: the blocking pool
/// grows threads on demand and glibc gives each thread its own arena that keeps
/// freed memory, so a login flood pushed the issuer's RSS to ~800 MiB. Now the
/// peak is `concurrency` × m plus the rest.
#[derive(Debug, Clone)]
pub struct Hasher {
    inner: Arc<Inner>,
    pool: Arc<Pool>,
    /// Admission: one permit per check queued or running.
    admission: Arc<tokio::sync::Semaphore>,
    /// Checks run (for tests and metrics).
    checks: Arc<std::sync::atomic::AtomicU64>,
    /// Places in the queue (the admission semaphore's size).
    queue: usize,
    /// How long checks waited for an Argon2 thread (exported as metrics).
    wait: prometheus_client::metrics::histogram::Histogram,
}

/// The most password checks queued or running at once unless configured:
/// beyond it a login is answered 503 before any work. With OWASP parameters
/// a check takes ~25 ms of a core, so 64 is about a second of work queued on
/// a two-core machine.
pub const DEFAULT_QUEUE: usize = 64;

/// A place in the password-check queue, taken before any other login work
/// and held until the check is done.
#[derive(Debug)]
pub struct Admitted {
    _permit: tokio::sync::OwnedSemaphorePermit,
}

#[derive(Debug)]
struct Inner {
    argon2: Argon2<'static>,
    /// A hash of a random password, verified when the user does not exist so
    /// that unknown users cost the same time as wrong passwords.
    dummy: String,
}

/// A check queued for the Argon2 threads; it gets the thread's work area.
type Job = Box<dyn FnOnce(&mut Vec<Block>) + Send>;

/// The Argon2 threads: they take jobs from one queue and end when the last
/// [`Hasher`] clone is gone.
#[derive(Debug)]
struct Pool {
    jobs: std::sync::mpsc::Sender<Job>,
}

impl Pool {
    fn start(threads: usize) -> Result<Self, HashError> {
        let (jobs, queue) = std::sync::mpsc::channel::<Job>();
        let queue = Arc::new(std::sync::Mutex::new(queue));
        for _ in 0..threads.max(1) {
            let queue = Arc::clone(&queue);
            std::thread::Builder::new()
                .name("tessera-argon2".into())
                .spawn(move || {
                    let mut memory = Vec::new();
                    loop {
                        // The lock is held only while waiting for the next job.
                        let job = match queue.lock() {
                            Ok(queue) => queue.recv(),
                            Err(_) => return,
                        };
                        match job {
                            Ok(job) => job(&mut memory),
                            Err(_) => return,
                        }
                    }
                })
                .map_err(|e| HashError(format!("starting an Argon2 thread: {e}")))?;
        }
        Ok(Self { jobs })
    }
}

/// Hashing failed (bad parameters or an internal Argon2 error).
#[derive(Debug, thiserror::Error)]
#[error("password hashing failed: {0}")]
#[non_exhaustive]
pub struct HashError(String);

/// The largest Argon2 work area a stored hash may ask for (m = 256 MiB); a hash
/// asking for more is treated as unreadable.
const MAX_BLOCKS: usize = 256 * 1024;

impl Hasher {
    /// A hasher with OWASP parameters running up to `concurrency` checks at once.
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
            inner: Arc::new(Inner { argon2, dummy }),
            pool: Arc::new(Pool::start(concurrency)?),
            admission: Arc::new(tokio::sync::Semaphore::new(DEFAULT_QUEUE)),
            checks: Arc::default(),
            queue: DEFAULT_QUEUE,
            // 1 ms to about 16 s, doubling.
            wait: prometheus_client::metrics::histogram::Histogram::new(
                prometheus_client::metrics::histogram::exponential_buckets(0.001, 2.0, 15),
            ),
        })
    }

    /// The same hasher with at most `queue` checks queued or running (at
    /// least 1).
    pub fn with_queue(mut self, queue: usize) -> Self {
        self.queue = queue.max(1);
        self.admission = Arc::new(tokio::sync::Semaphore::new(self.queue));
        self
    }

    /// Checks queued or running now.
    pub fn queue_depth(&self) -> usize {
        self.queue
            .saturating_sub(self.admission.available_permits())
    }

    /// The histogram of how long checks waited for an Argon2 thread.
    pub fn wait_histogram(&self) -> &prometheus_client::metrics::histogram::Histogram {
        &self.wait
    }

    /// A place in the queue, or `None` when it is full (answer 503).
    pub fn try_admit(&self) -> Option<Admitted> {
        Arc::clone(&self.admission)
            .try_acquire_owned()
            .ok()
            .map(|permit| Admitted { _permit: permit })
    }

    /// How many checks have run on the Argon2 threads.
    pub fn checks_run(&self) -> u64 {
        self.checks.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Hashes a password (blocking; call from `spawn_blocking` or a CLI).
    pub fn hash(&self, password: &Password) -> Result<String, HashError> {
        self.inner.hash(password)
    }

    /// Verifies a password against a stored hash, or against the dummy hash when
    /// there is none (unknown user): same work either way. Blocking.
    pub fn check(&self, password: &Password, stored: Option<&str>) -> Checked {
        self.inner.check(password, stored, &mut Vec::new())
    }

    /// [`Hasher::check`] on one of the Argon2 threads, so a login flood cannot
    /// starve the async workers that serve the JWKS, nor grow memory.
    /// The place in the queue is held until the check is done.
    pub async fn check_async(
        &self,
        admitted: Admitted,
        password: Password,
        stored: Option<String>,
    ) -> Checked {
        let (answer, answered) = tokio::sync::oneshot::channel();
        let inner = Arc::clone(&self.inner);
        let checks = Arc::clone(&self.checks);
        let wait = self.wait.clone();
        let queued = tokio::time::Instant::now();
        let job: Job = Box::new(move |memory| {
            wait.observe(queued.elapsed().as_secs_f64());
            let checked = inner.check(&password, stored.as_deref(), memory);
            checks.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            drop(admitted);
            let _ = answer.send(checked);
        });
        if self.pool.jobs.send(job).is_err() {
            return Checked::Mismatch;
        }
        answered.await.unwrap_or(Checked::Mismatch)
    }
}

impl Inner {
    fn hash(&self, password: &Password) -> Result<String, HashError> {
        let salt = SaltString::generate(&mut OsRng);
        self.argon2
            .hash_password(password.bytes(), &salt)
            .map(|h| h.to_string())
            .map_err(|e| HashError(e.to_string()))
    }

    fn check(&self, password: &Password, stored: Option<&str>, memory: &mut Vec<Block>) -> Checked {
        let target = stored.unwrap_or(&self.dummy);
        let Ok(parsed) = PasswordHash::new(target) else {
            // Unreadable stored hash: spend the same time, then refuse.
            let _ = self.check(password, None, memory);
            return Checked::Mismatch;
        };
        let ok = password.bytes().len() <= MAX_PASSWORD_BYTES
            && verify(&parsed, password.bytes(), memory);
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
}

/// `PasswordHash::verify_password` for Argon2, computed in `memory` (grown as
/// needed, kept by the caller) instead of a fresh allocation; the comparison is
/// `Output`'s constant-time one.
fn verify(parsed: &PasswordHash<'_>, password: &[u8], memory: &mut Vec<Block>) -> bool {
    let (Ok(algorithm), Ok(params), Some(salt), Some(expected)) = (
        Algorithm::try_from(parsed.algorithm),
        Params::try_from(parsed),
        parsed.salt,
        parsed.hash,
    ) else {
        return false;
    };
    let version = match parsed.version.map(Version::try_from).transpose() {
        Ok(v) => v.unwrap_or_default(),
        Err(_) => return false,
    };
    let blocks = params.block_count();
    if blocks > MAX_BLOCKS {
        return false;
    }
    if memory.len() < blocks {
        memory.resize(blocks, Block::new());
    }
    let mut salt_bytes = [0u8; 64];
    let Ok(salt) = salt.decode_b64(&mut salt_bytes) else {
        return false;
    };
    let mut out = [0u8; 64];
    let Some(out) = out.get_mut(..expected.len()) else {
        return false;
    };
    let argon2 = Argon2::new(algorithm, version, params);
    argon2
        .hash_password_into_with_memory(password, salt, out, &mut memory[..blocks])
        .is_ok()
        && argon2::password_hash::Output::new(out).is_ok_and(|computed| computed == expected)
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

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn checks_on_the_argon2_threads_match_the_blocking_ones() {
        let h = cheap();
        let hash = h.hash(&Password::new("correct horse".into())).unwrap();
        let mut checks = Vec::new();
        for i in 0..8 {
            let (h, hash) = (h.clone(), hash.clone());
            checks.push(tokio::spawn(async move {
                let password = if i % 2 == 0 {
                    "correct horse"
                } else {
                    "wrong horse"
                };
                let stored = (i % 4 != 3).then_some(hash);
                let admitted = h.try_admit().unwrap();
                (
                    i,
                    h.check_async(admitted, Password::new(password.into()), stored)
                        .await,
                )
            }));
        }
        for check in checks {
            let (i, checked) = check.await.unwrap();
            assert!(i < 8);
            let expected = if i % 2 == 0 && i % 4 != 3 {
                Checked::Match { rehash: None }
            } else {
                Checked::Mismatch
            };
            assert_eq!(checked, expected, "check {i}");
        }
    }

    #[tokio::test]
    async fn the_queue_is_bounded_and_a_place_is_held_until_the_check_is_done() {
        let h = cheap().with_queue(2);
        let (a, b) = (h.try_admit().unwrap(), h.try_admit().unwrap());
        assert!(h.try_admit().is_none(), "full: two queued or running");
        drop(a);
        let c = h.try_admit().unwrap();
        let checked = h.check_async(c, Password::new("x".into()), None).await;
        assert_eq!(checked, Checked::Mismatch);
        assert_eq!(h.checks_run(), 1);
        assert!(h.try_admit().is_some(), "the check gave its place back");
        drop(b);
    }

    #[test]
    fn a_stored_hash_asking_for_too_much_memory_is_refused() {
        let h = cheap();
        // m = 1 GiB: over MAX_BLOCKS, refused without allocating it.
        let huge = "$argon2id$v=19$m=1048576,t=1,p=1$c29tZXNhbHQ$CTFhFdXPJO1aFaMaO6Mm5c8y7cJHAph8ArZWb2GRPPc";
        assert_eq!(
            h.check(&Password::new("password".into()), Some(huge)),
            Checked::Mismatch
        );
    }

    #[test]
    fn the_production_parameters_are_owasps() {
        let h = Hasher::new(1).unwrap();
        assert!(
            h.inner.dummy.starts_with("$argon2id$v=19$m=19456,t=2,p=1$"),
            "{}",
            h.inner.dummy
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
