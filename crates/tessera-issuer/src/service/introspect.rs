//! What `/introspect` (RFC 7662) says about a token: access tokens this
//! issuer signed are active while their signature, issuer and lifetime hold
//! and no revocation covers them (its `jti`, `sid`, or its `sub` up to its
//! `iat`). Everything else (refresh tokens included) is inactive.

use serde_json::Value;

use super::{AuthError, Issuer};

impl Issuer {
    /// The claims of `token` if it is active, else `None`.
    pub async fn active_claims(&self, token: &str) -> Result<Option<Value>, AuthError> {
        let snapshot = self.snapshot()?;
        let now = self.now();
        let Ok(claims) = crate::tokens::own_access_token_claims(
            snapshot.keyring().jwks(),
            self.issuer_url(),
            token,
            now,
            0,
        ) else {
            return Ok(None);
        };
        let text = |name: &str| claims[name].as_str().unwrap_or_default();
        let iat = claims["iat"].as_i64().unwrap_or(i64::MIN);
        if self
            .db()
            .is_revoked(text("jti"), text("sid"), text("sub"), iat, now)
            .await?
        {
            return Ok(None);
        }
        Ok(Some(claims))
    }
}
