//! Client authentication: which registered client a request proves to be, and
//! which callers may introspect. The rules of what a client is and may have
//! are [`crate::clients`]'s.

use std::net::IpAddr;
use std::sync::Arc;

use zeroize::Zeroizing;

use crate::audit::{self, Event};

use crate::clients::{Client, ClientKind, login_client};
use crate::config::IntrospectionClient;
use crate::db::{Db, DbError};

use super::registry::Registry;
use super::{AuthError, Issuer};

/// Creates the login client on a first start (`first_start`: no user yet),
/// or whenever the registry holds no client (the first start after an
/// upgrade); returns whether it did. Several instances starting at once
/// create it once.
pub async fn bootstrap(
    db: &Db,
    client_id: &str,
    now: i64,
    first_start: bool,
) -> Result<bool, DbError> {
    if !first_start && db.count_clients().await? != 0 {
        return Ok(false);
    }
    match db.add_client(&login_client(client_id, now)).await {
        Ok(()) => Ok(true),
        Err(DbError::ClientExists(_)) => Ok(false),
        Err(other) => Err(other),
    }
}

/// The client credentials a request offers (RFC 6749 §2.3.1, RFC 7523
/// §2.2), however the request carried them.
#[derive(Debug, Default)]
pub struct Offered {
    /// The client id, if the request names one.
    pub id: Option<String>,
    /// What proves it, if anything.
    pub proof: Proof,
    /// The caller's address (the throttle counts failures per client and
    /// address).
    pub ip: Option<IpAddr>,
}

/// How a request proves which client it is.
#[derive(Default)]
#[non_exhaustive]
pub enum Proof {
    /// Nothing: a public client, or a confidential one that forgot.
    #[default]
    None,
    /// The secret in HTTP Basic (`client_secret_basic`).
    Basic(Zeroizing<String>),
    /// The secret in the form body (`client_secret_post`).
    Post(Zeroizing<String>),
    /// A signed JWT (`private_key_jwt`).
    Assertion(Zeroizing<String>),
}

impl Proof {
    /// The authentication method's registered name; `None` for no proof.
    pub fn method(&self) -> Option<&'static str> {
        match self {
            Self::None => None,
            Self::Basic(_) => Some(crate::clients::SECRET_BASIC),
            Self::Post(_) => Some(crate::clients::SECRET_POST),
            Self::Assertion(_) => Some(crate::clients::PRIVATE_KEY_JWT),
        }
    }
}

/// The method only: a secret or an assertion never reaches a log.
impl std::fmt::Debug for Proof {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.method().unwrap_or("none"))
    }
}

impl Issuer {
    /// The registry (this instance's copy).
    pub(crate) fn clients(&self) -> &Registry {
        &self.inner.clients
    }

    /// The registered client `offered` proves, allowed `grant`.
    ///
    /// A client this instance knows is blocked for failures from this
    /// address is refused first, with no work. A failed proof is stored in
    /// the audit log and counted by the throttle; unknown and disabled
    /// clients cost what a wrong secret does and get the same answer.
    pub async fn authenticate_client(
        &self,
        offered: &Offered,
        grant: &str,
    ) -> Result<Arc<Client>, AuthError> {
        let now = self.now();
        let challenge = offered.proof.method().is_some();
        let id = match (&offered.id, &offered.proof) {
            (Some(id), _) => id.clone(),
            (None, Proof::Assertion(assertion)) => super::assertion::claimed_client(assertion)
                .ok_or(AuthError::InvalidClient {
                    challenge,
                    description: "the client assertion names no client (iss)",
                })?,
            (None, _) => {
                return Err(AuthError::InvalidClient {
                    challenge: false,
                    description: "the client must identify itself (client_id, or HTTP Basic)",
                });
            }
        };
        if offered.proof.method().is_some()
            && let Some(retry_after) = self.inner.throttle.client_block(&id, offered.ip, now)
        {
            let lines = &self.inner.client_throttled_lines;
            self.log_folded(lines, "client_auth_throttled", offered.ip, retry_after);
            return Err(AuthError::Throttled { retry_after });
        }
        let client = match self.proven_client(&id, offered, now).await? {
            Ok(client) => client,
            Err(reason) => return Err(self.client_auth_failed(&id, offered, reason, now).await),
        };
        if !client.allows_grant(grant) {
            return Err(AuthError::UnauthorizedClient);
        }
        Ok(client)
    }

    /// The client `id` if `offered` proves it, else why not (a reason for
    /// the audit log).
    async fn proven_client(
        &self,
        id: &str,
        offered: &Offered,
        now: i64,
    ) -> Result<Result<Arc<Client>, &'static str>, AuthError> {
        let client = if crate::clients::check_client_id(id).is_ok() {
            self.clients().client(self.db(), id).await?
        } else {
            None
        };
        let spend = || {
            if let Proof::Basic(secret) | Proof::Post(secret) = &offered.proof {
                // The same work as checking a registered client's secret.
                let _ = crate::clients::spend_secret_check(secret);
            }
        };
        let Some(client) = client else {
            spend();
            return Ok(Err("unknown_client"));
        };
        if client.disabled {
            spend();
            return Ok(Err("disabled_client"));
        }
        match &offered.proof {
            Proof::None if client.kind == ClientKind::Confidential => {
                return Err(AuthError::InvalidClient {
                    challenge: false,
                    description: "a confidential client must authenticate",
                });
            }
            Proof::None => {}
            Proof::Basic(secret) | Proof::Post(secret) => {
                if !client.secret_matches(secret, now) {
                    return Ok(Err("wrong_secret"));
                }
                // After the secret, so a wrong one is audited as such.
                if offered
                    .proof
                    .method()
                    .is_some_and(|m| !client.allows_auth(m))
                {
                    return Ok(Err("method_not_registered"));
                }
            }
            Proof::Assertion(assertion) => {
                if !client.allows_auth(crate::clients::PRIVATE_KEY_JWT) {
                    return Ok(Err("method_not_registered"));
                }
                let Some(keys) = self.clients().keys_of(&client) else {
                    return Ok(Err("no_registered_keys"));
                };
                let issuer = self.settings().issuer.as_str();
                let endpoint = format!("{issuer}/token");
                let accepted = match super::assertion::check(
                    assertion,
                    &keys,
                    &client.client_id,
                    &[issuer, endpoint.as_str()],
                    now,
                ) {
                    Ok(accepted) => accepted,
                    Err(reason) => return Ok(Err(reason)),
                };
                let first = self
                    .db()
                    .accept_assertion(&client.client_id, &accepted.jti, accepted.remember_until)
                    .await?;
                if !first {
                    return Ok(Err("replayed_assertion"));
                }
            }
        }
        Ok(Ok(client))
    }

    /// A failed client authentication: counted by the throttle and stored
    /// in the audit log; the error to answer with (`401`, or `429` if a key
    /// is blocked: then nothing is stored, and the line is folded).
    async fn client_auth_failed(
        &self,
        id: &str,
        offered: &Offered,
        reason: &'static str,
        now: i64,
    ) -> AuthError {
        let counted = self
            .inner
            .throttle
            .client_failed(self.db(), id, offered.ip, now)
            .await;
        match counted {
            Ok(None) => {}
            Ok(Some(retry_after)) => {
                let lines = &self.inner.client_throttled_lines;
                self.log_folded(lines, "client_auth_throttled", offered.ip, retry_after);
                return AuthError::Throttled { retry_after };
            }
            Err(err) => return err.into(),
        }
        let mut event = Event::new("client_auth_failure")
            .warn()
            .ip(offered.ip)
            .with("reason", reason)
            .with("method", offered.proof.method().unwrap_or("none"));
        if crate::clients::check_client_id(id).is_ok() {
            event = event.with("client_id", id);
        }
        audit::record(self.db(), now, event).await;
        AuthError::InvalidClient {
            challenge: offered.proof.method().is_some(),
            description: "unknown or disabled client, or wrong credentials",
        }
    }

    /// The caller of `/introspect`, given its HTTP Basic credentials: a
    /// registered confidential client allowed to introspect, or an entry of
    /// the deprecated configuration table. Every legacy entry is compared,
    /// and an unknown id costs what a wrong secret does.
    pub async fn introspection_caller(
        &self,
        id: &str,
        secret: &Zeroizing<String>,
    ) -> Result<Option<String>, AuthError> {
        if let Some(id) = legacy_caller(&self.inner.introspection_clients, id, secret) {
            return Ok(Some(id.to_owned()));
        }
        let client = if crate::clients::check_client_id(id).is_ok() {
            self.clients().client(self.db(), id).await?
        } else {
            None
        };
        Ok(match client {
            Some(c) if !c.disabled && c.introspect && c.secret_matches(secret, self.now()) => {
                Some(id.to_owned())
            }
            Some(_) => None,
            None => {
                let _ = crate::clients::spend_secret_check(secret);
                None
            }
        })
    }
}

/// The deprecated `[[introspection_clients]]` entry `id` and `secret` prove,
/// if any. Every entry is compared, whatever the id.
pub(crate) fn legacy_caller<'c>(
    entries: &'c [IntrospectionClient],
    id: &str,
    secret: &str,
) -> Option<&'c str> {
    let offered = tessera_keyring::sha256(secret.as_bytes());
    let mut found = None;
    for entry in entries {
        let matches = crate::clients::same(&offered, &entry.secret_sha256);
        if matches && entry.client_id == id {
            found = Some(entry.client_id.as_str());
        }
    }
    found
}

/// A new client secret (256 random bits, base64url) and the `secret_sha256`
/// the configuration holds for it.
pub fn new_client_secret() -> (String, String) {
    let secret = crate::passwords::random_token(32);
    let hash = tessera_keyring::b64url(&tessera_keyring::sha256(secret.as_bytes()));
    (secret, hash)
}
