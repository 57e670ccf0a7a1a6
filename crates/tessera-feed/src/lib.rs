//! The revocation feed's contract: what the issuer signs and every verifier
//! reads, in one place, so the two cannot drift apart. No crypto and no I/O:
//! each side hashes with its own backend and signs or checks the JWS itself.
//!
//! A feed document is a compact JWS whose header `typ` is [`TYP`] (never
//! `at+jwt`, so a document can never pass as an access token) and whose
//! payload is a [`Document`]: the issuer, when it was signed, the cursor a
//! delta answers, the cursor to poll with next, whether the entries replace
//! the poller's list or add to it, and the entries. An entry publishes no
//! token, session or user id, only `base64url(SHA-256("<kind>:<value>"))`
//! (see [`hash_parts`]).
//!
//! ```
//! let json = r#"{"iss":"https://auth.example","iat":1,"cursor":"e.2.t",
//!     "snapshot":true,"entries":[{"kind":"sid","hash":"…","exp":9}]}"#;
//! let doc: tessera_feed::Document<String, Vec<tessera_feed::Entry>> =
//!     serde_json::from_str(json).unwrap();
//! assert_eq!(doc.entries[0].known_kind(), Some(tessera_feed::Kind::Sid));
//! assert_eq!(doc.since, None);
//! ```

use std::borrow::Cow;

use serde::{Deserialize, Serialize};

/// The `typ` of a feed document's JWS header.
pub const TYP: &str = "revocations+jwt";

/// What an entry revokes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Kind {
    /// One access token, by its `jti`.
    Jti,
    /// Every token of a session, by its `sid`.
    Sid,
    /// Every token of a user issued up to `iat_before`, by its `sub`.
    Sub,
}

impl Kind {
    /// The name stored and sent.
    pub fn name(self) -> &'static str {
        match self {
            Self::Jti => "jti",
            Self::Sid => "sid",
            Self::Sub => "sub",
        }
    }

    /// The kind a name stands for.
    pub fn from_name(name: &str) -> Option<Self> {
        match name {
            "jti" => Some(Self::Jti),
            "sid" => Some(Self::Sid),
            "sub" => Some(Self::Sub),
            _ => None,
        }
    }
}

/// The bytes an entry's hash is taken over, in order: `<kind>`, `:`,
/// `<value>` (SHA-256 over their concatenation, published as base64url
/// without padding). Parts rather than one buffer, so a verifier hashes a
/// token's claims without allocating.
pub fn hash_parts<'a>(kind: &'a str, value: &'a str) -> [&'a [u8]; 3] {
    [kind.as_bytes(), b":", value.as_bytes()]
}

/// One entry as published.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Entry {
    /// `jti`, `sid` or `sub`; a verifier skips a kind it does not know (one
    /// from a newer issuer) rather than refuse the document.
    pub kind: Cow<'static, str>,
    /// `base64url(SHA-256("<kind>:<value>"))`.
    pub hash: String,
    /// When the entry may be forgotten (Unix seconds).
    pub exp: i64,
    /// For `sub`: tokens with `iat` at or before this are revoked.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub iat_before: Option<i64>,
}

impl Entry {
    /// The kind, if it is one this version knows.
    pub fn known_kind(&self) -> Option<Kind> {
        Kind::from_name(&self.kind)
    }
}

/// A feed document's payload. `S` is the text type (`&str` to sign, `String`
/// to read) and `E` the entries (`&[E]` to sign, `Vec<Entry>` to read).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Document<S, E> {
    /// The issuer.
    pub iss: S,
    /// When it was signed (Unix seconds).
    pub iat: i64,
    /// The cursor this delta answers (the request it is bound to); absent
    /// for a snapshot, which answers any request.
    #[serde(default = "none", skip_serializing_if = "Option::is_none")]
    pub since: Option<S>,
    /// Where the next poll starts (`since`).
    pub cursor: S,
    /// The entries replace the poller's list (else they add to it).
    pub snapshot: bool,
    /// The entries.
    pub entries: E,
}

fn none<S>() -> Option<S> {
    None
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    /// What the issuer writes is what a verifier reads, absent fields and all.
    #[test]
    fn a_signed_shape_reads_back_the_same() {
        let entries = [Entry {
            kind: Cow::Borrowed(Kind::Sub.name()),
            hash: "h".to_owned(),
            exp: 9,
            iat_before: Some(5),
        }];
        let written = Document {
            iss: "https://auth.example",
            iat: 1,
            since: None,
            cursor: "e.2.t",
            snapshot: false,
            entries: &entries[..],
        };
        let json = serde_json::to_string(&written).unwrap();
        assert!(!json.contains("since"), "{json}");
        let read: Document<String, Vec<Entry>> = serde_json::from_str(&json).unwrap();
        assert_eq!(read.entries, entries);
        assert_eq!(read.entries[0].known_kind(), Some(Kind::Sub));
        assert_eq!(
            (read.iss.as_str(), read.cursor.as_str()),
            ("https://auth.example", "e.2.t")
        );
        let unknown: Entry =
            serde_json::from_str(r#"{"kind":"device","hash":"h","exp":1}"#).unwrap();
        assert_eq!(unknown.known_kind(), None);
        assert_eq!(unknown.iat_before, None);
    }
}
