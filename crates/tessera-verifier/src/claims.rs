//! The claims layer: registered claims checked with strict JSON types, against
//! the configured issuer and audiences and an injected time, then typed.

use serde::Deserialize;
use std::borrow::Cow;

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

/// A registered member as found: absent (or `null`), a value of the right
/// JSON type, or a value of the wrong type. Read in one pass, strings borrowed
/// from the payload where possible, so a wrong type names its claim without a
/// second parse.
enum Field<T> {
    Absent,
    Value(T),
    WrongType,
}

// By hand: a derive would demand `T: Default`, which the payloads' types lack.
#[allow(clippy::derivable_impls)]
impl<T> Default for Field<T> {
    fn default() -> Self {
        Self::Absent
    }
}

impl<T> Field<T> {
    /// The value, if present; a wrong type is an error naming the claim.
    fn get(self, name: &'static str) -> Result<Option<T>, VerifyError> {
        match self {
            Self::Absent => Ok(None),
            Self::Value(v) => Ok(Some(v)),
            Self::WrongType => Err(VerifyError::InvalidClaim(name)),
        }
    }
}

/// Consumes whatever value a visitor did not want, so parsing goes on.
macro_rules! wrong_type_otherwise {
    () => {
        fn visit_bool<E: serde::de::Error>(self, _: bool) -> Result<Self::Value, E> {
            Ok(Field::WrongType)
        }
        fn visit_f64<E: serde::de::Error>(self, _: f64) -> Result<Self::Value, E> {
            Ok(Field::WrongType)
        }
        fn visit_unit<E: serde::de::Error>(self) -> Result<Self::Value, E> {
            Ok(Field::Absent)
        }
        fn visit_none<E: serde::de::Error>(self) -> Result<Self::Value, E> {
            Ok(Field::Absent)
        }
        fn visit_map<A: serde::de::MapAccess<'de>>(
            self,
            mut map: A,
        ) -> Result<Self::Value, A::Error> {
            while map
                .next_entry::<serde::de::IgnoredAny, serde::de::IgnoredAny>()?
                .is_some()
            {}
            Ok(Field::WrongType)
        }
    };
}

struct StrVisitor<'a>(std::marker::PhantomData<&'a ()>);

impl<'de: 'a, 'a> serde::de::Visitor<'de> for StrVisitor<'a> {
    type Value = Field<Cow<'a, str>>;
    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("a string")
    }
    fn visit_borrowed_str<E: serde::de::Error>(self, v: &'de str) -> Result<Self::Value, E> {
        Ok(Field::Value(Cow::Borrowed(v)))
    }
    fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<Self::Value, E> {
        Ok(Field::Value(Cow::Owned(v.to_owned())))
    }
    fn visit_i64<E: serde::de::Error>(self, _: i64) -> Result<Self::Value, E> {
        Ok(Field::WrongType)
    }
    fn visit_u64<E: serde::de::Error>(self, _: u64) -> Result<Self::Value, E> {
        Ok(Field::WrongType)
    }
    fn visit_seq<A: serde::de::SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
        while seq.next_element::<serde::de::IgnoredAny>()?.is_some() {}
        Ok(Field::WrongType)
    }
    wrong_type_otherwise!();
}

impl<'de: 'a, 'a> Deserialize<'de> for Field<Cow<'a, str>> {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(StrVisitor(std::marker::PhantomData))
    }
}

/// NumericDate: integers only (a float or a string `exp` is refused).
struct DateVisitor;

impl<'de> serde::de::Visitor<'de> for DateVisitor {
    type Value = Field<i64>;
    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("an integer")
    }
    fn visit_i64<E: serde::de::Error>(self, v: i64) -> Result<Self::Value, E> {
        Ok(Field::Value(v))
    }
    fn visit_u64<E: serde::de::Error>(self, v: u64) -> Result<Self::Value, E> {
        Ok(i64::try_from(v).map_or(Field::WrongType, Field::Value))
    }
    fn visit_str<E: serde::de::Error>(self, _: &str) -> Result<Self::Value, E> {
        Ok(Field::WrongType)
    }
    fn visit_seq<A: serde::de::SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
        while seq.next_element::<serde::de::IgnoredAny>()?.is_some() {}
        Ok(Field::WrongType)
    }
    wrong_type_otherwise!();
}

impl<'de> Deserialize<'de> for Field<i64> {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(DateVisitor)
    }
}

/// An array of strings, owned (it is kept); with `SINGLE`, a lone string too
/// (`aud`), otherwise only an array (`roles`).
struct StringList<const SINGLE: bool>(Vec<String>);

struct StringListVisitor<const SINGLE: bool>;

impl<'de, const SINGLE: bool> serde::de::Visitor<'de> for StringListVisitor<SINGLE> {
    type Value = Field<StringList<SINGLE>>;
    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(if SINGLE {
            "a string or an array of strings"
        } else {
            "an array of strings"
        })
    }
    fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<Self::Value, E> {
        Ok(if SINGLE {
            Field::Value(StringList(vec![v.to_owned()]))
        } else {
            Field::WrongType
        })
    }
    fn visit_i64<E: serde::de::Error>(self, _: i64) -> Result<Self::Value, E> {
        Ok(Field::WrongType)
    }
    fn visit_u64<E: serde::de::Error>(self, _: u64) -> Result<Self::Value, E> {
        Ok(Field::WrongType)
    }
    fn visit_seq<A: serde::de::SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
        let mut all = Vec::new();
        let mut wrong = false;
        while let Some(item) = seq.next_element::<Field<Cow<'de, str>>>()? {
            match item {
                Field::Value(a) => all.push(a.into_owned()),
                _ => wrong = true,
            }
        }
        Ok(if wrong {
            Field::WrongType
        } else {
            Field::Value(StringList(all))
        })
    }
    wrong_type_otherwise!();
}

impl<'de, const SINGLE: bool> Deserialize<'de> for Field<StringList<SINGLE>> {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(StringListVisitor::<SINGLE>)
    }
}

/// The registered members, one pass; duplicates are refused by serde.
#[derive(Deserialize)]
struct RawClaims<'a> {
    #[serde(borrow, default)]
    iss: Field<Cow<'a, str>>,
    #[serde(borrow, default)]
    sub: Field<Cow<'a, str>>,
    #[serde(default)]
    aud: Field<StringList<true>>,
    #[serde(default)]
    exp: Field<i64>,
    #[serde(default)]
    nbf: Field<i64>,
    #[serde(default)]
    iat: Field<i64>,
    #[serde(borrow, default)]
    jti: Field<Cow<'a, str>>,
    // The members of [`AccessClaims`], read in the same pass so the default
    // claims type costs no second parse. Their type errors matter only when
    // the caller asked for `AccessClaims`.
    #[serde(borrow, default)]
    client_id: Field<Cow<'a, str>>,
    #[serde(borrow, default)]
    sid: Field<Cow<'a, str>>,
    #[serde(borrow, default)]
    scope: Field<Cow<'a, str>>,
    #[serde(borrow, default)]
    preferred_username: Field<Cow<'a, str>>,
    #[serde(default)]
    roles: Field<StringList<false>>,
}

impl Validation {
    /// Checks the registered claims of a payload at time `now` (Unix seconds).
    pub fn validate(&self, payload: &[u8], now: i64) -> Result<Registered, VerifyError> {
        self.validate_all(payload, now)
            .map(|(registered, ..)| registered)
    }

    /// [`Validation::validate`], also returning the payload as text and the
    /// [`AccessClaims`] read in the same pass (or why they could not be).
    pub(crate) fn validate_all<'p>(
        &self,
        payload: &'p [u8],
        now: i64,
    ) -> Result<(Registered, &'p str, Result<AccessClaims, VerifyError>), VerifyError> {
        if !crate::jws::is_json_object(payload) {
            return Err(VerifyError::Malformed("payload is not a JSON object"));
        }
        if crate::jws::too_deep(payload) {
            return Err(VerifyError::Malformed("payload nests too deeply"));
        }
        // UTF-8 checked once here (vectorised), not string by string by serde.
        let text = std::str::from_utf8(payload)
            .map_err(|_| VerifyError::Malformed("payload is not UTF-8"))?;
        let raw: RawClaims<'_> = serde_json::from_str(text)
            .map_err(|_| VerifyError::Malformed("payload is not valid"))?;
        let access = (|| {
            Ok(AccessClaims {
                client_id: raw.client_id.get("client_id")?.map(Cow::into_owned),
                sid: raw.sid.get("sid")?.map(Cow::into_owned),
                scope: raw.scope.get("scope")?.map(Cow::into_owned),
                preferred_username: raw
                    .preferred_username
                    .get("preferred_username")?
                    .map(Cow::into_owned),
                roles: raw.roles.get("roles")?.map_or_else(Vec::new, |r| r.0),
            })
        })();
        let iss = raw.iss.get(Claim::Iss.name())?;
        let sub = raw.sub.get(Claim::Sub.name())?;
        let aud = raw.aud.get(Claim::Aud.name())?;
        let has_aud = aud.is_some();
        let claims = Registered {
            iss: iss.map(Cow::into_owned),
            sub: sub.map(Cow::into_owned),
            aud: aud.map_or_else(Vec::new, |a| a.0),
            exp: raw.exp.get(Claim::Exp.name())?,
            nbf: raw.nbf.get(Claim::Nbf.name())?,
            iat: raw.iat.get(Claim::Iat.name())?,
            jti: raw.jti.get(Claim::Jti.name())?.map(Cow::into_owned),
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
        if has_aud && !claims.aud.iter().any(|a| self.audiences.contains(a)) {
            return Err(VerifyError::WrongAudience);
        }
        self.check_times(&claims, now)?;
        Ok((claims, text, access))
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
#[derive(Debug)]
pub struct Verified<C = AccessClaims> {
    // Shared: a cached token's claims are handed out without copying.
    claims: std::sync::Arc<C>,
    registered: std::sync::Arc<Registered>,
    kid: std::sync::Arc<str>,
}

impl<C> Clone for Verified<C> {
    fn clone(&self) -> Self {
        Self {
            claims: std::sync::Arc::clone(&self.claims),
            registered: std::sync::Arc::clone(&self.registered),
            kid: std::sync::Arc::clone(&self.kid),
        }
    }
}

impl<C> Verified<C> {
    pub(crate) fn new(
        claims: std::sync::Arc<C>,
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
    pub fn into_claims(self) -> C
    where
        C: Clone,
    {
        std::sync::Arc::unwrap_or_clone(self.claims)
    }
}

impl Verified<AccessClaims> {
    /// Whether the token carries `role` in its `roles` claim.
    pub fn has_role(&self, role: &str) -> bool {
        self.claims.roles.iter().any(|r| r == role)
    }

    /// Whether the token was issued to a user (it belongs to a session), not
    /// to a client for itself (client credentials: `sub` is the client and
    /// there is no `sid`).
    pub fn is_user(&self) -> bool {
        self.claims.sid.is_some() && self.claims.client_id.as_deref() != Some(self.subject())
    }

    /// Whether the token's `scope` includes `scope`.
    pub fn has_scope(&self, scope: &str) -> bool {
        self.claims
            .scope
            .as_deref()
            .is_some_and(|s| s.split(' ').any(|x| x == scope))
    }
}
