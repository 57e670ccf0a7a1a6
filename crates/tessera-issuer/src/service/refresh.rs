//! Refresh-token rotation (RFC 6749 §6 with OAuth 2.1's rotation): the rules
//! a refresh is decided by, applied to the atomic operations of the data
//! layer ([`Db::find_refresh`], [`Db::rotate`], [`Db::settle_used`]).

use crate::metrics::{Grant, RefreshOutcome};
use tessera_keyring::{open_with_secret, seal_with_secret};

use crate::audit::{self, Event};
use crate::clients::ClientKind;
use crate::db::{Db, Rotation, SessionInfo, Settle, Settled, User};
use crate::revocation::Kind;
use crate::tokens::{AccessGrant, TokenResponse, new_refresh_token, refresh_token_hash};

use super::clients::Offered;
use super::{AuthError, Issuer};

/// Why a refresh was refused for its client (see [`Issuer::refresh`]).
const CLIENT_UNAUTHENTICATED: &str = "client_unauthenticated";

/// The lifetimes a refresh is checked against, in seconds.
#[derive(Debug, Clone, Copy)]
pub struct RefreshRules {
    /// Now, Unix seconds.
    pub now: i64,
    /// Session idle lifetime.
    pub idle: i64,
    /// Session absolute lifetime.
    pub absolute: i64,
    /// How long after a rotation the same token is answered with the same pair.
    pub retry_window: i64,
}

/// What a refresh request came to.
#[derive(Debug)]
pub enum Refresh {
    /// The token was current: here is the new pair (response JSON).
    Rotated {
        /// The session (refresh-token family).
        session_id: String,
        /// The user.
        user_id: String,
        /// The token response, ready to send.
        response: Vec<u8>,
    },
    /// The same token again within the retry window: the same response as before.
    Replayed {
        /// The session.
        session_id: String,
        /// The token response first sent.
        response: Vec<u8>,
    },
    /// An already used token, outside the retry window: the family is revoked.
    Reused {
        /// The revoked session.
        session_id: String,
        /// Its user.
        user_id: String,
    },
    /// Unknown token, revoked or expired session, or disabled user.
    Refused(&'static str),
}

/// A freshly issued pair, built before the rotation's write.
#[derive(Debug)]
pub struct Issued {
    /// The token response JSON.
    pub response: Vec<u8>,
    /// The hash of the new refresh token.
    pub new_hash: [u8; 32],
}

/// Rotates a refresh token. Exactly one of any number of concurrent uses, in
/// this process or any other sharing the database, wins ([`Db::rotate`]); the
/// others see it used and get the replay (within the retry window) or revoke
/// the family (reuse), decided under the lock of [`Db::settle_used`].
///
/// The new pair is built and signed *before* the write, so no database lock
/// is ever held during RSA signing; a use that loses the race discards its
/// pair unsent.
///
/// `admit` refuses a session (by its client) before anything else, replays
/// included; `issue` builds the new pair for the session's user; `seal` and
/// `open` protect the stored response for a replay.
pub async fn rotate(
    db: &Db,
    old_hash: &[u8; 32],
    rules: RefreshRules,
    admit: impl FnOnce(&SessionInfo) -> Result<(), &'static str>,
    issue: impl FnOnce(&User, &SessionInfo) -> Result<Issued, AuthError>,
    seal: impl FnOnce(&[u8]) -> Option<Vec<u8>>,
    open: impl FnOnce(&[u8]) -> Option<Vec<u8>>,
) -> Result<Refresh, AuthError> {
    let Some(found) = db.find_refresh(old_hash).await? else {
        return Ok(Refresh::Refused("unknown_token"));
    };
    if let Err(reason) = admit(&found.session) {
        return Ok(Refresh::Refused(reason));
    }
    if found.revoked {
        return Ok(Refresh::Refused("session_revoked"));
    }
    if found.used {
        return settle(db, old_hash, rules, open).await;
    }
    if rules.now >= found.created_at.saturating_add(rules.absolute) {
        return Ok(Refresh::Refused("session_expired"));
    }
    if rules.now >= found.last_used_at.saturating_add(rules.idle) {
        return Ok(Refresh::Refused("session_idle"));
    }
    if found.user.disabled {
        return Ok(Refresh::Refused("user_disabled"));
    }
    let issued = issue(&found.user, &found.session)?;
    let rotation = Rotation {
        old_hash: *old_hash,
        new_hash: issued.new_hash,
        session_id: found.session.id.clone(),
        sealed: seal(&issued.response),
        now: rules.now,
    };
    if !db.rotate(rotation).await? {
        // Another use won between our read and our write, or the session
        // was revoked (logout, reuse elsewhere) since we looked.
        return settle(db, old_hash, rules, open).await;
    }
    Ok(Refresh::Rotated {
        session_id: found.session.id,
        user_id: found.user.id,
        response: issued.response,
    })
}

/// A token that is already used: the same response again within the retry
/// window (if its sealed copy opens), otherwise reuse, and the family is
/// revoked.
async fn settle(
    db: &Db,
    hash: &[u8; 32],
    rules: RefreshRules,
    open: impl FnOnce(&[u8]) -> Option<Vec<u8>>,
) -> Result<Refresh, AuthError> {
    let settled = db
        .settle_used(hash, rules.now, |used| {
            let in_window = used.used_at.is_some_and(|used_at| {
                rules.retry_window > 0 && rules.now - used_at <= rules.retry_window
            });
            match used.sealed.as_deref().filter(|_| in_window).and_then(open) {
                Some(response) => Settle::Replay(response),
                None => Settle::Revoke,
            }
        })
        .await?;
    Ok(match settled {
        Settled::Unknown => Refresh::Refused("unknown_token"),
        Settled::SessionRevoked => Refresh::Refused("session_revoked"),
        Settled::Replayed {
            session_id,
            response,
        } => Refresh::Replayed {
            session_id,
            response,
        },
        Settled::Reused {
            session_id,
            user_id,
        } => Refresh::Reused {
            session_id,
            user_id,
        },
    })
}

impl Issuer {
    /// The refresh grant: rotates `presented` (see [`rotate`]). The session's
    /// client must still be registered, enabled and allowed to refresh; a
    /// confidential one must authenticate, and a client that names itself
    /// must be the session's. The new access token's scope is the session's
    /// less what the client may no longer have. Returns the token response.
    pub async fn refresh(&self, presented: &str, offered: &Offered) -> Result<Vec<u8>, AuthError> {
        if presented.len() > 512 {
            return Err(AuthError::InvalidGrant);
        }
        let names_client = offered.id.is_some() || offered.proof.method().is_some();
        let authenticated = match names_client {
            true => Some(self.authenticate_client(offered, "refresh_token").await?),
            false => None,
        };
        let registry = self.clients().current(self.db()).await?;
        let old_hash = refresh_token_hash(presented);
        let settings = self.settings();
        let rules = RefreshRules {
            now: self.now(),
            idle: crate::secs(settings.refresh_idle_lifetime),
            absolute: crate::secs(settings.refresh_absolute_lifetime),
            retry_window: crate::secs(settings.refresh_retry_window),
        };
        let snapshot = self.snapshot()?;
        let client_of = |session: &SessionInfo| {
            registry
                .get(&session.client_id)
                .filter(|c| !c.disabled && c.allows_grant("refresh_token"))
        };
        let admit = |session: &SessionInfo| {
            let Some(client) = client_of(session) else {
                return Err("client_not_allowed");
            };
            match &authenticated {
                Some(a) if a.client_id != session.client_id => Err("other_client"),
                None if client.kind == ClientKind::Confidential => Err(CLIENT_UNAUTHENTICATED),
                _ => Ok(()),
            }
        };
        // The client the new token is for, for the count once it is handed out.
        let issued_for = std::sync::OnceLock::new();
        let issue = |user: &User, session: &SessionInfo| {
            let client = client_of(session).ok_or(AuthError::InvalidGrant)?;
            let _ = issued_for.set(session.client_id.clone());
            let scope = client.narrow_scope(&session.scope);
            let grant = AccessGrant {
                user,
                session_id: &session.id,
                client_id: &session.client_id,
                scope: &scope,
                audiences: &client.audiences,
                third_party: client.third_party,
            };
            let access_token = settings
                .sign_access(snapshot.signer(), &grant, rules.now)
                .map_err(|e| AuthError::Issuing(e.to_string()))?;
            let (refresh_token, new_hash) = new_refresh_token();
            let response = serde_json::to_vec(&TokenResponse {
                access_token,
                token_type: "Bearer",
                expires_in: settings.access_token_lifetime.as_secs(),
                refresh_token: Some(refresh_token),
                scope,
                id_token: None,
            })
            .map_err(|e| AuthError::Issuing(e.to_string()))?;
            Ok(Issued { response, new_hash })
        };
        let outcome = rotate(
            self.db(),
            &old_hash,
            rules,
            admit,
            issue,
            |response| seal_with_secret(presented.as_bytes(), response).ok(),
            |sealed| open_with_secret(presented.as_bytes(), sealed),
        )
        .await?;
        match outcome {
            Refresh::Rotated {
                session_id,
                user_id,
                response,
            } => {
                // Logged, not stored: the hot path.
                audit::log(&Event::new("refresh").session(&session_id).user(&user_id));
                let metrics = self.metrics();
                metrics.refresh(RefreshOutcome::rotated);
                if let Some(client) = issued_for.get() {
                    metrics.issued(Grant::refresh_token, client);
                }
                Ok(response)
            }
            Refresh::Replayed {
                session_id,
                response,
            } => {
                // Whoever presented the used token got the next pair: the
                // client retrying a lost answer, or someone who has the token.
                self.metrics().refresh(RefreshOutcome::replayed);
                let event = Event::new("refresh_token_replay").session(&session_id);
                audit::record(self.db(), self.now(), event).await;
                Ok(response)
            }
            Refresh::Reused {
                session_id,
                user_id,
            } => {
                self.metrics().refresh(RefreshOutcome::reuse_detected);
                let event = Event::new("refresh_token_reuse")
                    .user(&user_id)
                    .session(&session_id)
                    .warn();
                audit::record(self.db(), self.now(), event).await;
                // The thief's access tokens too, not only the refresh family.
                self.revocations()
                    .tokens(Kind::Sid, &session_id, "refresh_token_reuse")
                    .await?;
                Err(AuthError::InvalidGrant)
            }
            Refresh::Refused(reason) => {
                self.metrics().refresh(RefreshOutcome::refused);
                audit::log(&Event::new("refresh_refused").with("reason", reason));
                if reason == CLIENT_UNAUTHENTICATED {
                    return Err(AuthError::InvalidClient {
                        challenge: false,
                        description: "a confidential client must authenticate",
                    });
                }
                Err(AuthError::InvalidGrant)
            }
        }
    }
}

/// The refresh rules on every backend, against the atomic operations of the
/// data layer (two handles on one database stand for two instances).
#[cfg(test)]
pub(crate) mod tests {
    #![allow(clippy::unwrap_used, clippy::panic)]

    use super::*;
    use crate::db::tests::{OLD, with_session};

    /// What one `refresh` call came to, reduced to what the client sees.
    #[derive(Debug, PartialEq, Eq)]
    pub(crate) enum Outcome {
        Rotated(Vec<u8>),
        Replayed(Vec<u8>),
        Other(String),
    }

    pub(crate) async fn refresh_once(db: &Db, n: u8, now: i64, retry_window: i64) -> Outcome {
        let rules = RefreshRules {
            now,
            idle: 1_000,
            absolute: 10_000,
            retry_window,
        };
        let issue = |_: &User, _: &SessionInfo| {
            Ok(Issued {
                response: format!("pair {n}").into_bytes(),
                new_hash: [n + 10; 32],
            })
        };
        // The "sealing" is the identity here: what is under test is which
        // response comes back, not the encryption (see the issuer's oauth tests).
        let seal = |r: &[u8]| Some(r.to_vec());
        let open = |r: &[u8]| Some(r.to_vec());
        match rotate(db, &OLD, rules, |_| Ok(()), issue, seal, open)
            .await
            .unwrap()
        {
            Refresh::Rotated { response, .. } => Outcome::Rotated(response),
            Refresh::Replayed { response, .. } => Outcome::Replayed(response),
            other => Outcome::Other(format!("{other:?}")),
        }
    }

    /// Two handles on one database stand for two issuer instances (on SQLite, two
    /// processes on one file). Twenty uses of one token at once, split between
    /// them: exactly one rotation, and every other use gets that same pair back.
    #[tokio::test]
    async fn concurrent_uses_across_instances_rotate_exactly_once() {
        for t in with_session().await {
            let name = t.db.backend_name();
            let other = Db::connect(&t.url).await.unwrap();
            let uses = (0..20u8).map(|n| {
                let db = if n % 2 == 0 {
                    t.db.clone()
                } else {
                    other.clone()
                };
                tokio::spawn(async move { refresh_once(&db, n, 200, 10).await })
            });
            let mut outcomes = Vec::new();
            for task in uses.collect::<Vec<_>>() {
                outcomes.push(task.await.unwrap());
            }
            let rotated: Vec<_> = outcomes
                .iter()
                .filter_map(|o| match o {
                    Outcome::Rotated(r) => Some(r.clone()),
                    _ => None,
                })
                .collect();
            assert_eq!(rotated.len(), 1, "{name}: {outcomes:?}");
            for outcome in &outcomes {
                match outcome {
                    Outcome::Rotated(_) => {}
                    Outcome::Replayed(r) => assert_eq!(r, &rotated[0], "{name}"),
                    Outcome::Other(o) => panic!("{name}: a concurrent use got {o}"),
                }
            }
            // One successor stored, one session, still live.
            assert_eq!(t.db.count_sessions().await.unwrap(), (1, 2), "{name}");
            assert!(other.session_active("s1").await.unwrap(), "{name}");
        }
    }

    /// A retry window of 0 turns replays off: the same token again, even in the
    /// same second, is reuse.
    #[tokio::test]
    async fn a_retry_window_of_zero_makes_every_second_use_reuse() {
        for t in with_session().await {
            let name = t.db.backend_name();
            assert!(matches!(
                refresh_once(&t.db, 1, 200, 0).await,
                Outcome::Rotated(_)
            ));
            let again = refresh_once(&t.db, 2, 200, 0).await;
            assert!(
                matches!(&again, Outcome::Other(o) if o.starts_with("Reused")),
                "{name}: {again:?}"
            );
        }
    }

    /// Outside the retry window a second use is reuse: the family is revoked,
    /// through either instance, and stays revoked.
    #[tokio::test]
    async fn reuse_after_the_window_revokes_the_family_on_every_instance() {
        for t in with_session().await {
            let name = t.db.backend_name();
            let other = Db::connect(&t.url).await.unwrap();
            assert!(matches!(
                refresh_once(&t.db, 1, 200, 10).await,
                Outcome::Rotated(_)
            ));
            let reused = refresh_once(&other, 2, 300, 10).await;
            assert!(
                matches!(&reused, Outcome::Other(o) if o.starts_with("Reused")),
                "{name}: {reused:?}"
            );
            assert!(!t.db.session_active("s1").await.unwrap(), "{name}");
            let again = refresh_once(&t.db, 3, 301, 10).await;
            assert_eq!(
                again,
                Outcome::Other("Refused(\"session_revoked\")".to_owned()),
                "{name}"
            );
        }
    }
}
