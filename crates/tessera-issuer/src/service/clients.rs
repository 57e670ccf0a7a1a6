//! Client authentication: which registered client a request proves to be, and
//! which callers may introspect. The rules of what a client is and may have
//! are [`crate::clients`]'s.

use std::sync::Arc;

use zeroize::Zeroizing;

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

/// The client credentials a request offers (RFC 6749 §2.3.1), however the
/// request carried them.
#[derive(Debug, Default)]
pub struct Offered {
    /// The client id, if the request names one.
    pub id: Option<String>,
    /// The secret, if it offers one (an attempt to authenticate).
    pub secret: Option<Zeroizing<String>>,
}

impl Issuer {
    /// The registry (this instance's copy).
    pub(crate) fn clients(&self) -> &Registry {
        &self.inner.clients
    }

    /// The registered client `offered` proves, allowed `grant`.
    pub async fn authenticate_client(
        &self,
        offered: &Offered,
        grant: &str,
    ) -> Result<Arc<Client>, AuthError> {
        let challenge = offered.secret.is_some();
        let Some(id) = offered.id.as_deref() else {
            return Err(AuthError::InvalidClient {
                challenge: false,
                description: "the client must identify itself (client_id, or HTTP Basic)",
            });
        };
        let client = if crate::clients::check_client_id(id).is_ok() {
            self.clients().client(self.db(), id).await?
        } else {
            None
        };
        let unknown = AuthError::InvalidClient {
            challenge,
            description: "unknown or disabled client, or wrong credentials",
        };
        let Some(client) = client.filter(|c| !c.disabled) else {
            if let Some(secret) = &offered.secret {
                // The same work as checking a registered client's secret.
                let _ = crate::clients::spend_secret_check(secret);
            }
            return Err(unknown);
        };
        match (&offered.secret, client.kind) {
            (Some(secret), _) if !client.secret_matches(secret) => return Err(unknown),
            (None, ClientKind::Confidential) => {
                return Err(AuthError::InvalidClient {
                    challenge: false,
                    description: "a confidential client must authenticate",
                });
            }
            _ => {}
        }
        if !client.allows_grant(grant) {
            return Err(AuthError::UnauthorizedClient);
        }
        Ok(client)
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
            Some(c) if !c.disabled && c.introspect && c.secret_matches(secret) => {
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
