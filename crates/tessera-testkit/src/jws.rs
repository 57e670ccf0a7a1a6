//! A compact JWS's parts as JSON, read without any check (the tests compare
//! them with what was issued; the verifier is what checks).

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde_json::Value;

/// Segment `i` of a compact JWS (0: header, 1: payload), decoded as JSON.
///
/// # Panics
/// If the token has no such segment or it is not base64url JSON.
pub fn segment(token: &str, i: usize) -> Value {
    let part = token
        .split('.')
        .nth(i)
        .unwrap_or_else(|| panic!("a token without segment {i}"));
    let bytes = URL_SAFE_NO_PAD
        .decode(part)
        .unwrap_or_else(|e| panic!("segment {i} is not base64url: {e}"));
    serde_json::from_slice(&bytes).unwrap_or_else(|e| panic!("segment {i} is not JSON: {e}"))
}

/// The header.
pub fn header_of(token: &str) -> Value {
    segment(token, 0)
}

/// The claims.
pub fn claims_of(token: &str) -> Value {
    segment(token, 1)
}

/// The header's `kid`.
pub fn kid_of(token: &str) -> String {
    header_of(token)["kid"]
        .as_str()
        .unwrap_or_else(|| panic!("a token without kid"))
        .to_owned()
}
