//! The compact JWS layer: size, segments, base64url, header, signature. No
//! claim is looked at here, and nothing cryptographic runs on input that fails
//! a cheaper check first.

use serde::Deserialize;

use crate::VerifyError;
use crate::crypto::{Algorithm, VerifyingKey};

/// A compact JWS, parsed and checked up to (not including) its signature.
///
/// Its header passed the structural checks: a JSON object without duplicate
/// members, a string `alg`, and no `crit`. Key-source members (`jku`, `x5u`,
/// `jwk`, `x5c`) are ignored: keys come only from the configured JWKS.
#[derive(Debug)]
pub struct Jws<'a> {
    header: Header,
    parts: Parts<'a>,
}

impl std::fmt::Debug for Parts<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Parts")
            .field("payload_len", &self.payload.len())
            .field("signature_len", &self.signature_len)
            .finish_non_exhaustive()
    }
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
struct RawHeader<'a> {
    // Borrowed from the decoded header unless escaped: no allocation per token.
    #[serde(borrow)]
    alg: std::borrow::Cow<'a, str>,
    #[serde(borrow, default)]
    kid: Option<std::borrow::Cow<'a, str>>,
    #[serde(borrow, default)]
    typ: Option<std::borrow::Cow<'a, str>>,
    /// Present at all (whatever its value) means refused.
    #[serde(default, deserialize_with = "present")]
    crit: bool,
    /// Key sources of the token's own: present at all means refused (see
    /// [`VerifyError::KeySourceHeader`]). Found by the differential fuzz
    /// target: a `jwk` that is not even a JWK was read past, while an
    /// independent implementation refuses the token.
    #[serde(default, deserialize_with = "present")]
    jwk: bool,
    #[serde(default, deserialize_with = "present")]
    jku: bool,
    #[serde(default, deserialize_with = "present")]
    x5u: bool,
    #[serde(default, deserialize_with = "present")]
    x5c: bool,
}

fn present<'de, D: serde::Deserializer<'de>>(d: D) -> Result<bool, D::Error> {
    serde::de::IgnoredAny::deserialize(d).map(|_| true)
}

/// Strict base64url: the URL-safe alphabet, no padding, canonical trailing bits.
fn b64(segment: &str, what: &'static str) -> Result<Vec<u8>, VerifyError> {
    crate::b64::decode(segment.as_bytes()).ok_or(VerifyError::Malformed(what))
}

/// The deepest JSON nesting accepted in a header or payload. serde_json skips
/// unknown members without recursion, but a deeply nested token is never
/// legitimate, and callers may type claims as `serde_json::Value`.
pub(crate) const MAX_JSON_DEPTH: usize = 32;

/// Whether the JSON text nests arrays and objects deeper than [`MAX_JSON_DEPTH`]
/// (brackets inside strings do not count).
pub(crate) fn too_deep(json: &[u8]) -> bool {
    // Fast path: too few brackets to nest that deep (a vectorised count).
    if json.iter().filter(|&&b| b == b'[' || b == b'{').count() <= MAX_JSON_DEPTH {
        return false;
    }
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

/// The largest RSA signature accepted (an 8192-bit key).
const MAX_SIGNATURE: usize = crate::MAX_RSA_BITS / 8;

/// The segments of a compact JWS after decoding, borrowed from the token where
/// possible; the signature sits in a fixed buffer (no allocation).
pub(crate) struct Parts<'t> {
    pub(crate) signing_input: &'t str,
    pub(crate) payload: Vec<u8>,
    signature: [u8; MAX_SIGNATURE],
    signature_len: usize,
}

impl Parts<'_> {
    /// Verifies the signature as `alg` (the header's, already allowed) under
    /// `key`, which must be a key of that algorithm.
    pub(crate) fn verify(&self, alg: Algorithm, key: &VerifyingKey) -> Result<(), VerifyError> {
        if key.alg() != alg {
            return Err(VerifyError::KeyAlgorithmMismatch(alg.name()));
        }
        let signature = &self.signature[..self.signature_len];
        if key.verify(alg, self.signing_input.as_bytes(), signature) {
            Ok(())
        } else {
            Err(VerifyError::BadSignature)
        }
    }
}

/// The header as parsed, borrowed.
pub(crate) struct HeaderRef<'h> {
    pub(crate) alg: &'h str,
    pub(crate) kid: Option<&'h str>,
    pub(crate) typ: Option<&'h str>,
}

/// The structural parse shared by [`Jws::parse`] and the verifier: size,
/// segments, header (a JSON object, not too deep, no duplicates, no `crit`).
/// `inspect` sees the borrowed header before the payload and signature are
/// decoded, so a refused header costs nothing more.
pub(crate) fn parse_with<'t, T>(
    token: &'t str,
    max_len: usize,
    inspect: impl FnOnce(&HeaderRef<'_>) -> Result<T, VerifyError>,
) -> Result<(T, Parts<'t>), VerifyError> {
    parse_with_known(token, max_len, |_| None, inspect)
}

/// [`parse_with`], where `known` may answer for a header segment already
/// inspected before (the same bytes always give the same answer), skipping its
/// decoding and parsing.
pub(crate) fn parse_with_known<'t, T>(
    token: &'t str,
    max_len: usize,
    known: impl FnOnce(&str) -> Option<T>,
    inspect: impl FnOnce(&HeaderRef<'_>) -> Result<T, VerifyError>,
) -> Result<(T, Parts<'t>), VerifyError> {
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
    let inspected = match known(h) {
        Some(known) => known,
        None => inspect_header(h, inspect)?,
    };
    let payload = b64(p, "payload is not base64url")?;
    let mut signature = [0u8; MAX_SIGNATURE];
    let signature_len = match crate::b64::decoded_len(s.len()) {
        // Longer than any accepted key's signature: it cannot verify.
        Some(len) if len > MAX_SIGNATURE => return Err(VerifyError::BadSignature),
        _ => crate::b64::decode_into(s.as_bytes(), &mut signature)
            .ok_or(VerifyError::Malformed("signature is not base64url"))?,
    };
    Ok((
        inspected,
        Parts {
            signing_input: &token[..h.len() + 1 + p.len()],
            payload,
            signature,
            signature_len,
        },
    ))
}

fn inspect_header<T>(
    h: &str,
    inspect: impl FnOnce(&HeaderRef<'_>) -> Result<T, VerifyError>,
) -> Result<T, VerifyError> {
    // Headers are small: decoded on the stack unless unusually large.
    let mut header_buf = [0u8; 256];
    let header_vec;
    let header_json: &[u8] = match crate::b64::decoded_len(h.len()) {
        Some(len) if len <= header_buf.len() => {
            match crate::b64::decode_into(h.as_bytes(), &mut header_buf) {
                Some(n) => &header_buf[..n],
                None => return Err(VerifyError::Malformed("header is not base64url")),
            }
        }
        _ => {
            header_vec = b64(h, "header is not base64url")?;
            &header_vec
        }
    };
    if !is_json_object(header_json) {
        return Err(VerifyError::Malformed("header is not a JSON object"));
    }
    if too_deep(header_json) {
        return Err(VerifyError::Malformed("header nests too deeply"));
    }
    // UTF-8 checked once (vectorised), then parsed as text.
    let header_text = std::str::from_utf8(header_json)
        .map_err(|_| VerifyError::Malformed("header is not valid"))?;
    let raw: RawHeader<'_> = serde_json::from_str(header_text)
        .map_err(|_| VerifyError::Malformed("header is not valid"))?;
    if raw.crit {
        return Err(VerifyError::CriticalHeader);
    }
    if raw.jwk || raw.jku || raw.x5u || raw.x5c {
        return Err(VerifyError::KeySourceHeader);
    }
    inspect(&HeaderRef {
        alg: &raw.alg,
        kid: raw.kid.as_deref(),
        typ: raw.typ.as_deref(),
    })
}

/// `alg` against an allowlist from configuration: the token's own `alg` can
/// only be refused by it, never widen it. Compared exactly (`es256` is not
/// `ES256`).
pub(crate) fn check_alg(alg: &str, allowed: &[String]) -> Result<Algorithm, VerifyError> {
    if let Some(known) = Algorithm::from_name(alg)
        && allowed.iter().any(|a| a == alg)
    {
        return Ok(known);
    }
    // Bounded: the untrusted value only goes to logs and errors.
    Err(VerifyError::AlgorithmNotAllowed(
        alg.chars().take(16).collect(),
    ))
}

/// `typ`, case-insensitively, with or without `application/` (RFC 7515 §4.1.9).
pub(crate) fn check_typ(typ: Option<&str>, required: &str) -> Result<(), VerifyError> {
    let typ = typ.ok_or(VerifyError::WrongType)?;
    let typ = match typ.get(..12) {
        Some(prefix) if typ.len() > 12 && prefix.eq_ignore_ascii_case("application/") => &typ[12..],
        _ => typ,
    };
    if typ.eq_ignore_ascii_case(required) {
        Ok(())
    } else {
        Err(VerifyError::WrongType)
    }
}

impl<'a> Jws<'a> {
    /// Parses `token`, refusing anything over `max_len` bytes before looking at it.
    pub fn parse(token: &'a str, max_len: usize) -> Result<Self, VerifyError> {
        let (header, parts) = parse_with(token, max_len, |h| {
            Ok(Header {
                alg: h.alg.to_owned(),
                kid: h.kid.map(str::to_owned),
                typ: h.typ.map(str::to_owned),
            })
        })?;
        Ok(Self { header, parts })
    }

    /// The checked header.
    pub fn header(&self) -> &Header {
        &self.header
    }

    /// Checks `alg` against an allowlist that comes from configuration: the
    /// token's own `alg` can only be refused by it, never widen it.
    pub fn check_alg(&self, allowed: &[String]) -> Result<Algorithm, VerifyError> {
        check_alg(&self.header.alg, allowed)
    }

    /// Checks `typ` case-insensitively, with or without `application/`
    /// (RFC 7515 §4.1.9).
    pub fn check_typ(&self, required: &str) -> Result<(), VerifyError> {
        check_typ(self.header.typ.as_deref(), required)
    }

    /// Verifies the signature under `key`, with the header's `alg`, which
    /// must be the key's own algorithm (refused otherwise, whatever the
    /// signature).
    pub fn verify_signature(&self, key: &VerifyingKey) -> Result<(), VerifyError> {
        let alg = Algorithm::from_name(&self.header.alg).ok_or_else(|| {
            VerifyError::AlgorithmNotAllowed(self.header.alg.chars().take(16).collect())
        })?;
        self.parts.verify(alg, key)
    }

    /// The decoded payload. Unauthenticated until [`Jws::verify_signature`]
    /// succeeded.
    pub fn payload(&self) -> &[u8] {
        &self.parts.payload
    }
}
