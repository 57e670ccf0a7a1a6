//! The `jsonwebtoken` bridge (feature `jsonwebtoken`); see [`crate::jsonwebtoken`].

use std::sync::Arc;

use ::jsonwebtoken as jwt;
use serde::de::DeserializeOwned;

use super::Verifier;
use crate::VerifyError;
use crate::claims::Claim;
use crate::revocation::TokenKeys;

/// Why [`Verifier::decode_with_jsonwebtoken`] refused a token.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum BridgeError {
    /// Refused by this crate: header (`alg`, `typ`), unknown key, keys
    /// unavailable, `iat` in the future, a required claim missing, revoked.
    #[error(transparent)]
    Verify(#[from] VerifyError),
    /// Refused by `jsonwebtoken::decode` (signature, `exp`, `nbf`, `iss`,
    /// `aud`, claim types).
    #[error("jsonwebtoken: {0}")]
    Jsonwebtoken(#[from] jwt::errors::Error),
}

impl Verifier {
    /// The `jsonwebtoken::Validation` that checks what this verifier
    /// checks, from its configuration: the algorithms it allows (with more
    /// than one key type allowed, see
    /// [`Verifier::jsonwebtoken_key_and_validation`]),
    /// its issuer and audiences, its leeway, `exp` and `nbf`, and of its
    /// required claims those `jsonwebtoken` can require (`iss`, `sub`,
    /// `aud`, `exp`, `nbf`). [`Verifier::check_decoded`] does the rest. A
    /// set's: its first member's (see [`Verifier::members`]).
    pub fn jsonwebtoken_validation(&self) -> jwt::Validation {
        let inner = &*self.inner;
        let mut validation = jwt::Validation::new(jwt::Algorithm::RS256);
        validation.algorithms = inner
            .algorithms
            .iter()
            .filter_map(|a| crate::Algorithm::from_name(a).map(jwt_algorithm))
            .collect();
        validation.set_issuer(&[&inner.validation.issuer]);
        validation.set_audience(&inner.validation.audiences);
        validation.leeway = u64::try_from(inner.validation.leeway).unwrap_or(0);
        validation.validate_exp = true;
        validation.validate_nbf = true;
        validation.validate_aud = true;
        let spec: Vec<&str> = inner
            .validation
            .required
            .iter()
            .map(|c| c.name())
            .filter(|n| ["iss", "sub", "aud", "exp", "nbf"].contains(n))
            .collect();
        validation.set_required_spec_claims(&spec);
        validation
    }

    /// The `jsonwebtoken::DecodingKey` for `token`'s `kid`, from this
    /// verifier's JWKS cache: with its rotation (an unknown `kid` refetches
    /// the JWKS, at most once per cooldown) and its stale-if-error limit.
    /// The header is checked first as [`Verifier::verify`] checks it: `alg`
    /// in the configured list, no `crit`, and the required `typ`
    /// (`jsonwebtoken::decode` never looks at `typ`).
    pub async fn jsonwebtoken_key(&self, token: &str) -> Result<jwt::DecodingKey, VerifyError> {
        let single = match &self.routes {
            None => self,
            Some(routes) => routes.choose(token)?,
        };
        Ok(single.key_for(token).await?.1)
    }

    /// [`Verifier::jsonwebtoken_key`] and a [`Verifier::jsonwebtoken_validation`]
    /// narrowed to the token's algorithm (already allowed, and its key's own).
    /// Use this when more than one algorithm is allowed: `jsonwebtoken::decode`
    /// refuses a `Validation` listing an algorithm of another family than the
    /// key's (`InvalidAlgorithm`), so an allowlist of RS256 and ES256 cannot
    /// be handed to it whole.
    pub async fn jsonwebtoken_key_and_validation(
        &self,
        token: &str,
    ) -> Result<(jwt::DecodingKey, jwt::Validation), VerifyError> {
        let single = match &self.routes {
            None => self,
            Some(routes) => routes.choose(token)?,
        };
        let (alg, key) = single.key_for(token).await?;
        let mut validation = single.jsonwebtoken_validation();
        validation.algorithms = vec![jwt_algorithm(alg)];
        Ok((key, validation))
    }

    async fn key_for(
        &self,
        token: &str,
    ) -> Result<(crate::Algorithm, jwt::DecodingKey), VerifyError> {
        let inner = &*self.inner;
        let (found, _) = crate::jws::parse_with(token, inner.max_token_bytes, |h| {
            let alg = crate::jws::check_alg(h.alg, &inner.algorithms)?;
            if let Some(typ) = &inner.required_typ {
                crate::jws::check_typ(h.typ, typ)?;
            }
            Ok((
                alg,
                h.kid.map(str::to_owned).ok_or(VerifyError::UnknownKey)?,
            ))
        })?;
        let (alg, kid) = found;
        // jsonwebtoken would check the key's family too; the binding of
        // algorithm to key type is this crate's rule, so it is checked here.
        let of_alg = |key: &crate::crypto::VerifyingKey| {
            if key.alg() == alg {
                Ok((alg, key.decoding_key()))
            } else {
                Err(VerifyError::KeyAlgorithmMismatch(alg.name()))
            }
        };
        let now = inner.clock.now();
        let generation = {
            let guard = inner.keys.load();
            let state = inner.usable(guard.as_deref(), now)?;
            if let Some(key) = state.keys.get(&kid) {
                return of_alg(key);
            }
            state.generation
        };
        self.refetch_for_unknown_kid(&kid, generation, now).await;
        let guard = inner.keys.load();
        let state = inner.usable(guard.as_deref(), now)?;
        match state.keys.get(&kid) {
            Some(key) => of_alg(key),
            None => {
                inner.remember_miss(&kid, now);
                Err(VerifyError::UnknownKey)
            }
        }
    }

    /// What a `jsonwebtoken::decode` with [`Verifier::jsonwebtoken_validation`]
    /// leaves unchecked, on the claims it returned: the required claims it
    /// cannot require (`iat`, `jti`), `iat` not in the future (beyond the
    /// leeway, on this verifier's clock), and the revocation feed (the
    /// token's `jti`, `sid` and `sub`), when one is followed.
    pub fn check_decoded(&self, claims: &serde_json::Value) -> Result<(), VerifyError> {
        let inner = &*self.inner;
        let now = inner.clock.now();
        for claim in &inner.validation.required {
            if claims.get(claim.name()).is_none() {
                return Err(VerifyError::MissingClaim(claim.name()));
            }
        }
        let number = |claim: Claim| match claims.get(claim.name()) {
            None => Ok(None),
            Some(v) => v
                .as_i64()
                .map(Some)
                .ok_or(VerifyError::InvalidClaim(claim.name())),
        };
        let text = |name: &'static str| match claims.get(name) {
            None => Ok(None),
            Some(v) => v.as_str().map(Some).ok_or(VerifyError::InvalidClaim(name)),
        };
        let iat = number(Claim::Iat)?;
        if let Some(iat) = iat
            && iat > now.saturating_add(inner.validation.leeway)
        {
            return Err(VerifyError::IssuedInFuture { iat });
        }
        if let Some((list, _)) = &inner.revocations {
            let keys = TokenKeys::of(text("jti")?, text("sid")?, text("sub")?, iat);
            list.check(&keys, now)?;
        }
        Ok(())
    }

    /// The whole bridge in one call, for code that wants `jsonwebtoken`'s
    /// `TokenData`: the key and validation
    /// ([`Verifier::jsonwebtoken_key_and_validation`]), `jsonwebtoken::decode`,
    /// then [`Verifier::check_decoded`]. A set picks its member by `iss`.
    pub async fn decode_with_jsonwebtoken<C: DeserializeOwned>(
        &self,
        token: &str,
    ) -> Result<jwt::TokenData<C>, BridgeError> {
        let single = match &self.routes {
            None => self,
            Some(routes) => routes.choose(token)?,
        };
        let (alg, key) = single.key_for(token).await?;
        let mut validation = single.jsonwebtoken_validation();
        validation.algorithms = vec![jwt_algorithm(alg)];
        let data = jwt::decode::<serde_json::Value>(token, &key, &validation)?;
        single.check_decoded(&data.claims)?;
        let claims = serde_json::from_value(data.claims).map_err(|e| {
            BridgeError::Jsonwebtoken(jwt::errors::ErrorKind::Json(Arc::new(e)).into())
        })?;
        Ok(jwt::TokenData {
            header: data.header,
            claims,
        })
    }
}

/// `jsonwebtoken`'s name for an algorithm.
fn jwt_algorithm(alg: crate::Algorithm) -> jwt::Algorithm {
    match alg {
        crate::Algorithm::Rs256 => jwt::Algorithm::RS256,
        crate::Algorithm::Es256 => jwt::Algorithm::ES256,
        crate::Algorithm::EdDsa => jwt::Algorithm::EdDSA,
    }
}
