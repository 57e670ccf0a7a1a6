//! The claims layer: registered claims checked with strict JSON types, against
//! the configured issuer and audiences and an injected time, then typed.

use serde::Deserialize;
use serde::de::DeserializeOwned;
use serde_json::value::RawValue;

use crate::VerifyError;

/// A registered claim that [`Validation`] can require.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Claim {
    /// `iss`
    Iss,
    /// `sub`
    Sub,
    /// `aud`
    Aud,
    /// `exp`
    Exp,
    /// `nbf`
    Nbf,
    /// `iat`
    Iat,
    /// `jti`
    Jti,
}

impl Claim {
    /// The claim's name.
    pub fn name(self) -> &'static str {
        match self {
            Self::Iss => "iss",
            Self::Sub => "sub",
            Self::Aud => "aud",
            Self::Exp => "exp",
            Self::Nbf => "nbf",
            Self::Iat => "iat",
            Self::Jti => "jti",
        }
    }
}

/// The claims an access token must carry by default (RFC 9068 §2.2).
pub const DEFAULT_REQUIRED: [Claim; 5] =
    [Claim::Iss, Claim::Sub, Claim::Aud, Claim::Exp, Claim::Iat];

/// What claims are checked against. A present claim is always checked, required
/// or not: `required` only decides whether its absence is an error.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Validation {
    /// The exact `iss` expected.
    pub issuer: String,
    /// `aud` must contain at least one of these.
    pub audiences: Vec<String>,
    /// Clock skew tolerated on `exp`, `nbf` and `iat`, in seconds.
    pub leeway: i64,
    /// Claims whose absence is an error.
    pub required: Vec<Claim>,
}

/// The registered claims of a verified token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Registered {
    /// `iss`
    pub iss: Option<String>,
    /// `sub`
    pub sub: Option<String>,
    /// `aud`, always as a list.
    pub aud: Vec<String>,
    /// `exp` (Unix seconds)
    pub exp: Option<i64>,
    /// `nbf` (Unix seconds)
    pub nbf: Option<i64>,
    /// `iat` (Unix seconds)
    pub iat: Option<i64>,
    /// `jti`
    pub jti: Option<String>,
}

/// The registered members as raw JSON: duplicates are refused by serde, and
/// each value's type is checked on its own so the error names the claim.
#[derive(Deserialize)]
struct RawClaims<'a> {
    #[serde(borrow, default)]
    iss: Option<&'a RawValue>,
    #[serde(borrow, default)]
    sub: Option<&'a RawValue>,
    #[serde(borrow, default)]
    aud: Option<&'a RawValue>,
    #[serde(borrow, default)]
    exp: Option<&'a RawValue>,
    #[serde(borrow, default)]
    nbf: Option<&'a RawValue>,
    #[serde(borrow, default)]
    iat: Option<&'a RawValue>,
    #[serde(borrow, default)]
    jti: Option<&'a RawValue>,
}

#[derive(Deserialize)]
#[serde(untagged)]
enum OneOrMany {
    One(String),
    Many(Vec<String>),
}

fn typed<T: DeserializeOwned>(
    raw: Option<&RawValue>,
    claim: Claim,
) -> Result<Option<T>, VerifyError> {
    raw.map(|v| serde_json::from_str(v.get()))
        .transpose()
        .map_err(|_| VerifyError::InvalidClaim(claim.name()))
}

impl Validation {
    /// Checks the registered claims of a payload at time `now` (Unix seconds).
    pub fn validate(&self, payload: &[u8], now: i64) -> Result<Registered, VerifyError> {
        if !crate::jws::is_json_object(payload) {
            return Err(VerifyError::Malformed("payload is not a JSON object"));
        }
        if crate::jws::too_deep(payload) {
            return Err(VerifyError::Malformed("payload nests too deeply"));
        }
        let raw: RawClaims<'_> = serde_json::from_slice(payload)
            .map_err(|_| VerifyError::Malformed("payload is not valid"))?;
        // NumericDate: integers only (a float or a string `exp` is refused).
        let claims = Registered {
            iss: typed(raw.iss, Claim::Iss)?,
            sub: typed(raw.sub, Claim::Sub)?,
            aud: match typed::<OneOrMany>(raw.aud, Claim::Aud)? {
                None => Vec::new(),
                Some(OneOrMany::One(a)) => vec![a],
                Some(OneOrMany::Many(a)) => a,
            },
            exp: typed(raw.exp, Claim::Exp)?,
            nbf: typed(raw.nbf, Claim::Nbf)?,
            iat: typed(raw.iat, Claim::Iat)?,
            jti: typed(raw.jti, Claim::Jti)?,
        };
        for &claim in &self.required {
            let present = match claim {
                Claim::Iss => claims.iss.is_some(),
                Claim::Sub => claims.sub.as_deref().is_some_and(|s| !s.is_empty()),
                Claim::Aud => !claims.aud.is_empty(),
                Claim::Exp => claims.exp.is_some(),
                Claim::Nbf => claims.nbf.is_some(),
                Claim::Iat => claims.iat.is_some(),
                Claim::Jti => claims.jti.is_some(),
            };
            if !present {
                return Err(VerifyError::MissingClaim(claim.name()));
            }
        }
        if let Some(iss) = &claims.iss
            && *iss != self.issuer
        {
            return Err(VerifyError::WrongIssuer);
        }
        if raw.aud.is_some() && !claims.aud.iter().any(|a| self.audiences.contains(a)) {
            return Err(VerifyError::WrongAudience);
        }
        self.check_times(&claims, now)?;
        Ok(claims)
    }

    /// The time checks alone, also run on every token-cache hit.
    pub(crate) fn check_times(&self, claims: &Registered, now: i64) -> Result<(), VerifyError> {
        if let Some(exp) = claims.exp
            && now >= exp.saturating_add(self.leeway)
        {
            return Err(VerifyError::Expired { exp });
        }
        if let Some(nbf) = claims.nbf
            && now.saturating_add(self.leeway) < nbf
        {
            return Err(VerifyError::NotYetValid { nbf });
        }
        if let Some(iat) = claims.iat
            && iat > now.saturating_add(self.leeway)
        {
            return Err(VerifyError::IssuedInFuture { iat });
        }
        Ok(())
    }
}

/// The claims of a Tessera access token beyond the registered ones (RFC 9068
/// and the issuer's own). Missing members are empty; unknown ones ignored.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize, serde::Serialize)]
#[serde(default)]
pub struct AccessClaims {
    /// `client_id`: the OAuth client the token was issued to.
    pub client_id: Option<String>,
    /// `sid`: the session (refresh-token family).
    pub sid: Option<String>,
    /// `scope`: space-separated scopes.
    pub scope: Option<String>,
    /// `roles`
    pub roles: Vec<String>,
    /// `preferred_username`
    pub preferred_username: Option<String>,
}

/// A token that passed every check: only this crate can construct one, so a
/// handler that takes a `Verified` cannot be reached with unchecked claims.
#[derive(Debug, Clone)]
pub struct Verified<C = AccessClaims> {
    claims: C,
    registered: std::sync::Arc<Registered>,
    kid: std::sync::Arc<str>,
}

impl<C> Verified<C> {
    pub(crate) fn new(
        claims: C,
        registered: std::sync::Arc<Registered>,
        kid: std::sync::Arc<str>,
    ) -> Self {
        Self {
            claims,
            registered,
            kid,
        }
    }

    /// The application's claims.
    pub fn claims(&self) -> &C {
        &self.claims
    }

    /// The registered claims.
    pub fn registered(&self) -> &Registered {
        &self.registered
    }

    /// `sub`: who the token is about (empty only if `sub` was not required).
    pub fn subject(&self) -> &str {
        self.registered.sub.as_deref().unwrap_or_default()
    }

    /// `exp` (Unix seconds), if present.
    pub fn expires_at(&self) -> Option<i64> {
        self.registered.exp
    }

    /// The `kid` of the key that signed it.
    pub fn kid(&self) -> &str {
        &self.kid
    }

    /// The claims, taken.
    pub fn into_claims(self) -> C {
        self.claims
    }
}

impl Verified<AccessClaims> {
    /// Whether the token carries `role` in its `roles` claim.
    pub fn has_role(&self, role: &str) -> bool {
        self.claims.roles.iter().any(|r| r == role)
    }

    /// Whether the token's `scope` includes `scope`.
    pub fn has_scope(&self, scope: &str) -> bool {
        self.claims
            .scope
            .as_deref()
            .is_some_and(|s| s.split(' ').any(|x| x == scope))
    }
}
