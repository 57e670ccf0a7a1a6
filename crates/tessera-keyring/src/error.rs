//! The keyring's one error type.

use std::path::PathBuf;
use std::time::{Duration, SystemTime};

use crate::policy::format_time;

/// Everything that can go wrong with a keyring. Each variant names the file or key
/// involved and what to do about it, because an operator reads these at 3 a.m.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum KeyringError {
    /// A file-system operation failed.
    #[error("{action} {path}: {source}")]
    Io {
        /// What was being done, e.g. "reading".
        action: &'static str,
        /// The file or directory.
        path: PathBuf,
        /// The operating system's error.
        source: std::io::Error,
    },
    /// The directory holds no manifest: the keyring was never initialised.
    #[error(
        "no keyring in {}: {} is missing (run `tessera-issuer keys init`)",
        dir.display(),
        crate::MANIFEST_FILE
    )]
    NotInitialised {
        /// The keys directory.
        dir: PathBuf,
    },
    /// `init` on a keyring that already holds keys.
    #[error("the keyring in {} already holds {count} key(s); `init` only starts an empty one", dir.display())]
    AlreadyInitialised {
        /// The keys directory.
        dir: PathBuf,
        /// How many keys it holds.
        count: usize,
    },
    /// The manifest is not valid JSON of the expected shape.
    #[error("{}: not a valid keyring manifest: {source}", path.display())]
    ManifestSyntax {
        /// The manifest file.
        path: PathBuf,
        /// Where and why parsing failed.
        source: serde_json::Error,
    },
    /// The manifest parses but says something impossible.
    #[error("{}: {problem}", path.display())]
    ManifestInvalid {
        /// The manifest file.
        path: PathBuf,
        /// What is wrong, naming the key.
        problem: String,
    },
    /// A key listed in the manifest has no private key file.
    #[error("{}: missing private key file for key {kid} (listed in the manifest as {state})", path.display())]
    KeyFileMissing {
        /// The expected key file.
        path: PathBuf,
        /// The key's id.
        kid: String,
        /// The key's state.
        state: &'static str,
    },
    /// A private key file cannot be used.
    #[error("{}: {problem}", path.display())]
    KeyFileInvalid {
        /// The key file.
        path: PathBuf,
        /// What is wrong with it.
        problem: String,
    },
    /// A key file or the keys directory is open to other users.
    #[error(
        "{}: permissions are {mode:04o}, which lets other users read private keys; \
         expected {expected:04o} (run `chmod {expected:o} {}`)",
        path.display(),
        path.display()
    )]
    InsecurePermissions {
        /// The file or directory.
        path: PathBuf,
        /// Its permission bits.
        mode: u32,
        /// What they should be.
        expected: u32,
    },
    /// The keyring has no active key, so nothing can sign.
    #[error("the keyring in {} has no active key (run `tessera-issuer keys rotate` to activate a pending key)", dir.display())]
    NoActiveKey {
        /// The keys directory.
        dir: PathBuf,
    },
    /// No key has this id.
    #[error("no key with kid {kid} in the keyring")]
    UnknownKey {
        /// The id asked for.
        kid: String,
    },
    /// The key exists but is in the wrong state for the operation.
    #[error("cannot {operation} key {kid}: it is {state}{hint}")]
    WrongState {
        /// The key.
        kid: String,
        /// Its state.
        state: &'static str,
        /// What was asked.
        operation: &'static str,
        /// What to do instead, with a leading separator, or empty.
        hint: &'static str,
    },
    /// `rotate` with no pending key to promote.
    #[error("no pending key to activate (run `tessera-issuer keys generate` first)")]
    NoPendingKey,
    /// The key is already in the keyring.
    #[error("key {kid} is already in the keyring (as {state})")]
    DuplicateKey {
        /// The key.
        kid: String,
        /// Its state.
        state: &'static str,
    },
    /// An RSA key size outside what Tessera accepts.
    #[error("{bits}-bit RSA keys are not accepted: {allowed}")]
    UnsupportedKeySize {
        /// The size asked for or found.
        bits: usize,
        /// The sizes that are accepted.
        allowed: &'static str,
    },
    /// Key generation or conversion failed.
    #[error("key generation failed: {0}")]
    Generate(String),
    /// A PEM file given to `import` cannot be used.
    #[error("{}: {problem}", path.display())]
    Import {
        /// The file given.
        path: PathBuf,
        /// Why it was refused.
        problem: String,
    },
    /// A change would break a rotation rule; `--force` overrides.
    #[error("refusing: {0} (use --force to override)")]
    Refused(Refusal),
    /// Another process holds the keyring lock.
    #[error(
        "{}: the keyring is locked by another process (a rotation in progress?); \
         gave up after {}s",
        path.display(),
        waited.as_secs()
    )]
    Locked {
        /// The lock file.
        path: PathBuf,
        /// How long we waited.
        waited: Duration,
    },
    /// A signature made with a freshly loaded key did not verify.
    #[error("key {kid} failed its sign-and-verify self-test; refusing to use it")]
    SelfTestFailed {
        /// The key.
        kid: String,
    },
}

/// Why a change was refused, and when it would be safe.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Refusal {
    /// The pending key has not been published for a JWKS cache lifetime yet.
    ActivationTooEarly {
        /// The pending key.
        kid: String,
        /// When it was published.
        published: SystemTime,
        /// The earliest safe activation time.
        safe_at: SystemTime,
    },
    /// The retired key may still verify live tokens.
    PruneTooEarly {
        /// The retired key.
        kid: String,
        /// When it was retired.
        retired: SystemTime,
        /// The earliest safe removal time.
        safe_at: SystemTime,
    },
}

impl Refusal {
    /// The earliest time the refused change would be safe.
    pub fn safe_at(&self) -> SystemTime {
        match self {
            Self::ActivationTooEarly { safe_at, .. } | Self::PruneTooEarly { safe_at, .. } => {
                *safe_at
            }
        }
    }
}

impl std::fmt::Display for Refusal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::ActivationTooEarly {
                kid,
                published,
                safe_at,
            } => write!(
                f,
                "pending key {kid} was published at {} and verifiers may cache a JWKS \
                 without it for one JWKS cache lifetime: activating it is safe from {}",
                format_time(*published),
                format_time(*safe_at),
            ),
            Self::PruneTooEarly {
                kid,
                retired,
                safe_at,
            } => write!(
                f,
                "retired key {kid} was retired at {} and tokens it signed may be verified \
                 for access-token lifetime + JWKS cache lifetime + leeway: pruning it is \
                 safe from {}",
                format_time(*retired),
                format_time(*safe_at),
            ),
        }
    }
}

impl KeyringError {
    pub(crate) fn io(
        action: &'static str,
        path: impl Into<PathBuf>,
    ) -> impl FnOnce(std::io::Error) -> Self {
        let path = path.into();
        move |source| Self::Io {
            action,
            path,
            source,
        }
    }
}
