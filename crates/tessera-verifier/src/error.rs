//! Why a token was refused.

/// A token that did not verify, and why. Callers can match on it, log it, and
/// map it to an RFC 6750 response ([`VerifyError::reason`] is a stable short
/// code; [`Display`](std::fmt::Display) a short description that reveals
/// nothing the token's holder does not know).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum VerifyError {
    /// Longer than the configured limit: refused before any parsing.
    #[error("token longer than {max} bytes")]
    TooLarge {
        /// The limit.
        max: usize,
    },
    /// Not a compact JWS with a JSON header and payload: wrong number of
    /// segments, non-canonical base64url, padding, bad JSON, duplicate members.
    #[error("malformed token: {0}")]
    Malformed(&'static str),
    /// The header's `alg` is not in the configured allowlist (`none` never is).
    #[error("algorithm {0:?} not allowed")]
    AlgorithmNotAllowed(String),
    /// The header has a `crit` member: no extension is understood, so none may
    /// be critical (RFC 7515 §4.1.11).
    #[error("unsupported critical header parameter")]
    CriticalHeader,
    /// The header's `typ` is not the required one (`at+jwt`, RFC 9068).
    #[error("wrong token type")]
    WrongType,
    /// No key with the token's `kid` is published (or the token has no `kid`).
    #[error("unknown signing key")]
    UnknownKey,
    /// The signature does not verify under the key named by `kid`.
    #[error("bad signature")]
    BadSignature,
    /// `exp` has passed (beyond the leeway).
    #[error("token expired")]
    Expired {
        /// The token's `exp` (Unix seconds).
        exp: i64,
    },
    /// `nbf` is still ahead (beyond the leeway).
    #[error("token not yet valid")]
    NotYetValid {
        /// The token's `nbf` (Unix seconds).
        nbf: i64,
    },
    /// `iat` is in the future (beyond the leeway).
    #[error("token issued in the future")]
    IssuedInFuture {
        /// The token's `iat` (Unix seconds).
        iat: i64,
    },
    /// `iss` is not the configured issuer.
    #[error("wrong issuer")]
    WrongIssuer,
    /// `aud` does not contain any configured audience.
    #[error("wrong audience")]
    WrongAudience,
    /// A required claim is absent.
    #[error("missing claim {0}")]
    MissingClaim(&'static str),
    /// A claim has the wrong JSON type (e.g. `exp` as a string).
    #[error("invalid claim {0}")]
    InvalidClaim(&'static str),
    /// No verification keys are usable: none fetched yet, or the last good set
    /// is older than the stale-if-error limit. Not the token's fault.
    #[error("verification keys unavailable")]
    KeysUnavailable,
    /// The token, its session or its user is on the issuer's revocation list.
    #[error("token revoked")]
    Revoked,
    /// The revocation feed has gone unanswered longer than its bound and the
    /// verifier is configured to fail closed. Not the token's fault.
    #[error("revocation list unavailable")]
    RevocationsUnavailable,
    /// The header's `alg` is allowed, but the key its `kid` names is of
    /// another type (an `ES256` token naming an RSA key, say): the signature
    /// is never checked with it.
    #[error("the {0} token names a key of another algorithm")]
    KeyAlgorithmMismatch(&'static str),
    /// The header carries a key, or says where to fetch one (`jwk`, `jku`,
    /// `x5u`, `x5c`). Keys come from the configured JWKS only, so these are
    /// never used; a token carrying one is refused rather than read past
    /// (no issuer of ours sends them, and what they hold is unchecked).
    #[error("the header names a key source of its own")]
    KeySourceHeader,
}

impl VerifyError {
    /// A stable short code for metrics and logs, e.g. `"expired"`.
    pub fn reason(&self) -> &'static str {
        REASONS[self.index()]
    }

    pub(crate) fn index(&self) -> usize {
        match self {
            Self::TooLarge { .. } => 0,
            Self::Malformed(_) => 1,
            Self::AlgorithmNotAllowed(_) => 2,
            Self::CriticalHeader => 3,
            Self::WrongType => 4,
            Self::UnknownKey => 5,
            Self::BadSignature => 6,
            Self::Expired { .. } => 7,
            Self::NotYetValid { .. } => 8,
            Self::IssuedInFuture { .. } => 9,
            Self::WrongIssuer => 10,
            Self::WrongAudience => 11,
            Self::MissingClaim(_) => 12,
            Self::InvalidClaim(_) => 13,
            Self::KeysUnavailable => 14,
            Self::Revoked => 15,
            Self::RevocationsUnavailable => 16,
            Self::KeyAlgorithmMismatch(_) => 17,
            Self::KeySourceHeader => 18,
        }
    }
}

/// Every [`VerifyError::reason`], in index order.
pub(crate) const REASONS: [&str; 19] = [
    "too_large",
    "malformed",
    "algorithm_not_allowed",
    "critical_header",
    "wrong_type",
    "unknown_key",
    "bad_signature",
    "expired",
    "not_yet_valid",
    "issued_in_future",
    "wrong_issuer",
    "wrong_audience",
    "missing_claim",
    "invalid_claim",
    "keys_unavailable",
    "revoked",
    "revocations_unavailable",
    "key_algorithm_mismatch",
    "key_source_header",
];

/// A configuration the verifier refuses to start with.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    /// A setting is missing or out of range.
    #[error("invalid verifier setting `{key}`: {problem}")]
    Invalid {
        /// The setting.
        key: &'static str,
        /// Why.
        problem: String,
    },
}

pub(crate) fn invalid(key: &'static str, problem: impl Into<String>) -> ConfigError {
    ConfigError::Invalid {
        key,
        problem: problem.into(),
    }
}
