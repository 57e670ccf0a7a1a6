//! The one error of the service layer.

use crate::db::DbError;

/// Why the service refused or failed a request. Each HTTP endpoint maps it
/// once, at the edge (`crate::http::error`); the CLI prints it.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum AuthError {
    /// Wrong password, unknown or disabled user alike (never says which).
    #[error("invalid credentials")]
    InvalidCredentials,
    /// Too many failed logins for this username or address.
    #[error("too many failed logins; retry in {retry_after} s")]
    Throttled {
        /// Seconds to wait.
        retry_after: i64,
    },
    /// The password-check queue is full.
    #[error("too many logins in progress")]
    Overloaded,
    /// The client is unknown, disabled, or failed to authenticate.
    #[error("invalid client: {description}")]
    InvalidClient {
        /// Whether the client offered credentials (and so gets a challenge).
        challenge: bool,
        /// Why, for the client's developer.
        description: &'static str,
    },
    /// A registered client asked for a grant it may not use.
    #[error("this client may not use this grant type")]
    UnauthorizedClient,
    /// A scope the client may not have.
    #[error("a requested scope is not one this client may have")]
    InvalidScope,
    /// An RFC 8707 `resource` the client's tokens may not be for.
    #[error("a requested resource is not one this client's tokens may be for")]
    InvalidTarget,
    /// A refresh token that is unknown, used, revoked or expired, or a
    /// session whose user or client may no longer have tokens.
    #[error("invalid grant")]
    InvalidGrant,
    /// A bearer token that is not a valid access token of this issuer.
    #[error("invalid token: {0}")]
    InvalidToken(&'static str),
    /// A valid access token without the scope an endpoint needs.
    #[error("the access token lacks the scope {0}")]
    InsufficientScope(&'static str),
    /// A request that is malformed in a way the caller can fix (an
    /// operator's role name, a scope string).
    #[error("{0}")]
    Invalid(String),
    /// No user has this name (operator commands).
    #[error("no user named {0:?}")]
    NoSuchUser(String),
    /// No keyring is loaded yet (a database keyring whose database has not
    /// answered).
    #[error("no keyring loaded yet")]
    NoKeys,
    /// Hashing a new password failed (operator commands).
    #[error(transparent)]
    Hashing(#[from] crate::passwords::HashError),
    /// Building or signing a token failed.
    #[error("issuing tokens: {0}")]
    Issuing(String),
    /// The database failed (unreachable: see [`DbError::is_unavailable`]).
    #[error(transparent)]
    Db(DbError),
}

impl From<DbError> for AuthError {
    fn from(err: DbError) -> Self {
        match err {
            DbError::NoSuchUser(name) => Self::NoSuchUser(name),
            other => Self::Db(other),
        }
    }
}
