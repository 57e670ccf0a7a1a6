//! The compact JWS layer: size, segments, base64url, header, signature. No
//! claim is looked at here, and nothing cryptographic runs on input that fails
//! a cheaper check first.

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde::Deserialize;

use crate::VerifyError;
use crate::crypto::VerifyingKey;

/// A compact JWS, parsed and checked up to (not including) its signature.
///
/// Its header passed the structural checks: a JSON object without duplicate
/// members, a string `alg`, and no `crit`. Key-source members (`jku`, `x5u`,
/// `jwk`, `x5c`) are ignored: keys come only from the configured JWKS.
#[derive(Debug)]
pub struct Jws<'a> {
    header: Header,
    signing_input: &'a str,
    payload: Vec<u8>,
    signature: Vec<u8>,
}

/// The header members the verifier reads.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Header {
    /// `alg`, as written (compared exactly with the allowlist).
    pub alg: String,
    /// `kid`, if present.
    pub kid: Option<String>,
    /// `typ`, if present.
    pub typ: Option<String>,
}

#[derive(Deserialize)]
struct RawHeader {
    alg: String,
    #[serde(default)]
    kid: Option<String>,
    #[serde(default)]
    typ: Option<String>,
    /// Present at all (whatever its value) means refused.
    #[serde(default, deserialize_with = "present")]
    crit: bool,
}

fn present<'de, D: serde::Deserializer<'de>>(d: D) -> Result<bool, D::Error> {
    serde::de::IgnoredAny::deserialize(d).map(|_| true)
}

/// Strict base64url: the URL-safe alphabet, no padding, canonical trailing bits.
fn b64(segment: &str, what: &'static str) -> Result<Vec<u8>, VerifyError> {
    URL_SAFE_NO_PAD
        .decode(segment)
        .map_err(|_| VerifyError::Malformed(what))
}

/// The deepest JSON nesting accepted in a header or payload. serde_json skips
/// unknown members without recursion, but a deeply nested token is never
/// legitimate, and callers may type claims as `serde_json::Value`.
pub(crate) const MAX_JSON_DEPTH: usize = 32;

/// Whether the JSON text nests arrays and objects deeper than [`MAX_JSON_DEPTH`]
/// (brackets inside strings do not count).
pub(crate) fn too_deep(json: &[u8]) -> bool {
    let (mut depth, mut in_string, mut escaped) = (0usize, false, false);
    for &b in json {
        if in_string {
            if escaped {
                escaped = false;
            } else if b == b'\\' {
                escaped = true;
            } else if b == b'"' {
                in_string = false;
            }
            continue;
        }
        match b {
            b'"' => in_string = true,
            b'[' | b'{' => {
                depth += 1;
                if depth > MAX_JSON_DEPTH {
                    return true;
                }
            }
            b']' | b'}' => depth = depth.saturating_sub(1),
            _ => {}
        }
    }
    false
}

/// Whether `bytes` is a JSON object (serde would also read a struct from an array).
pub(crate) fn is_json_object(bytes: &[u8]) -> bool {
    bytes
        .iter()
        .find(|b| !b.is_ascii_whitespace())
        .is_some_and(|&b| b == b'{')
}

impl<'a> Jws<'a> {
    /// Parses `token`, refusing anything over `max_len` bytes before looking at it.
    pub fn parse(token: &'a str, max_len: usize) -> Result<Self, VerifyError> {
        if token.len() > max_len {
            return Err(VerifyError::TooLarge { max: max_len });
        }
        let mut parts = token.split('.');
        let (Some(h), Some(p), Some(s), None) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return Err(VerifyError::Malformed("not three segments"));
        };
        // An empty signature parses (and then fails as a bad signature): so that
        // `alg: none` tokens are refused for their `alg`, which says more.
        if h.is_empty() || p.is_empty() {
            return Err(VerifyError::Malformed("empty segment"));
        }
        let header_json = b64(h, "header is not base64url")?;
        if !is_json_object(&header_json) {
            return Err(VerifyError::Malformed("header is not a JSON object"));
        }
        if too_deep(&header_json) {
            return Err(VerifyError::Malformed("header nests too deeply"));
        }
        let raw: RawHeader = serde_json::from_slice(&header_json)
            .map_err(|_| VerifyError::Malformed("header is not valid"))?;
        if raw.crit {
            return Err(VerifyError::CriticalHeader);
        }
        let payload = b64(p, "payload is not base64url")?;
        let signature = b64(s, "signature is not base64url")?;
        Ok(Self {
            header: Header {
                alg: raw.alg,
                kid: raw.kid,
                typ: raw.typ,
            },
            signing_input: &token[..h.len() + 1 + p.len()],
            payload,
            signature,
        })
    }

    /// The checked header.
    pub fn header(&self) -> &Header {
        &self.header
    }

    /// Checks `alg` against an allowlist that comes from configuration: the
    /// token's own `alg` can only be refused by it, never widen it. Only RS256
    /// is implemented.
    pub fn check_alg(&self, allowed: &[String]) -> Result<(), VerifyError> {
        let alg = &self.header.alg;
        if alg == crate::RS256 && allowed.iter().any(|a| a == alg) {
            return Ok(());
        }
        // Bounded: the untrusted value only goes to logs and errors.
        Err(VerifyError::AlgorithmNotAllowed(
            alg.chars().take(16).collect(),
        ))
    }

    /// Checks `typ` case-insensitively, with or without `application/`
    /// (RFC 7515 §4.1.9).
    pub fn check_typ(&self, required: &str) -> Result<(), VerifyError> {
        let typ = self.header.typ.as_deref().ok_or(VerifyError::WrongType)?;
        let typ = if typ.len() > 12 && typ[..12].eq_ignore_ascii_case("application/") {
            &typ[12..]
        } else {
            typ
        };
        if typ.eq_ignore_ascii_case(required) {
            Ok(())
        } else {
            Err(VerifyError::WrongType)
        }
    }

    /// Verifies the RS256 signature under `key`.
    pub fn verify_signature(&self, key: &VerifyingKey) -> Result<(), VerifyError> {
        if key.verify_rs256(self.signing_input.as_bytes(), &self.signature) {
            Ok(())
        } else {
            Err(VerifyError::BadSignature)
        }
    }

    /// The decoded payload. Unauthenticated until [`Jws::verify_signature`]
    /// succeeded.
    pub fn payload(&self) -> &[u8] {
        &self.payload
    }

    /// The decoded payload, taken.
    pub(crate) fn into_payload(self) -> Vec<u8> {
        self.payload
    }
}
