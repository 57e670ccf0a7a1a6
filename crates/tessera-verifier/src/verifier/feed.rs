//! One poll of the revocation feed (the loop that repeats it is
//! `follow_feed`, beside the verifier it belongs to).

use super::Verifier;
use crate::VerifyError;
use crate::fetch;

impl Verifier {
    /// One poll of the revocation feed: `304` (nothing new), or a document
    /// that must be a JWS signed by a key of the issuer's JWKS, with `typ`
    /// `revocations+jwt` and the configured issuer.
    pub(super) async fn poll_feed(&self) -> Result<(), String> {
        let inner = &*self.inner;
        let Some((list, base)) = &inner.revocations else {
            return Ok(());
        };
        let (cursor, etag) = list.position();
        let uri = match &cursor {
            None => base.clone(),
            Some(cursor) => {
                let joiner = if base.query().is_some() { '&' } else { '?' };
                fetch::parse_url(&format!("{base}{joiner}since={cursor}"))
                    .map_err(|e| e.to_string())?
            }
        };
        let fetched = fetch::get_limited(
            &inner.connector,
            &uri,
            etag.as_deref().filter(|_| cursor.is_some()),
            inner.timing.fetch_timeout,
            crate::revocation::MAX_FEED_BYTES,
        )
        .await
        .map_err(|e| e.to_string())?;
        let now = inner.clock.now();
        match fetched.status.as_u16() {
            304 if cursor.is_some() => {
                list.unchanged(now);
                return Ok(());
            }
            200 => {}
            status => return Err(format!("revocation feed {uri} answered {status}")),
        }
        let text = std::str::from_utf8(&fetched.body)
            .map_err(|_| "revocation feed document is not UTF-8".to_owned())?
            .trim();
        let ((alg, kid), parts) = feed_header(text, &inner.algorithms).map_err(refused)?;
        let lookup = || -> Result<Option<crate::crypto::VerifyingKey>, VerifyError> {
            let guard = inner.keys.load();
            let state = inner.usable(guard.as_deref(), now)?;
            Ok(state.keys.get(&kid).cloned())
        };
        let key = match lookup().map_err(refused)? {
            Some(key) => key,
            None => {
                let generation = inner.keys.load().as_ref().map_or(0, |s| s.generation);
                self.refetch_for_unknown_kid(&kid, generation, now).await;
                lookup()
                    .map_err(refused)?
                    .ok_or_else(|| refused(VerifyError::UnknownKey))?
            }
        };
        let document = read_document(
            &parts,
            alg,
            &key,
            &inner.validation.issuer,
            cursor.as_deref(),
        )?;
        list.apply(document, fetched.etag, now)
            .map_err(|e| e.to_string())
    }
}

/// Why a feed document was refused, as the feed's health reports it.
fn refused(e: VerifyError) -> String {
    format!("revocation feed document refused: {e}")
}

/// A feed document's structure and header: an allowed `alg`, `typ`
/// `revocations+jwt`, and the `kid` its key is looked up by.
pub(crate) fn feed_header<'t>(
    text: &'t str,
    algorithms: &[String],
) -> Result<((crate::Algorithm, String), crate::jws::Parts<'t>), VerifyError> {
    crate::jws::parse_with(text, crate::revocation::MAX_FEED_BYTES, |h| {
        let alg = crate::jws::check_alg(h.alg, algorithms)?;
        crate::jws::check_typ(h.typ, crate::revocation::FEED_TYP)?;
        Ok((
            alg,
            h.kid.map(str::to_owned).ok_or(VerifyError::UnknownKey)?,
        ))
    })
}

/// A feed document whose header passed [`feed_header`], checked against its
/// key and what was asked: the signature, the issuer, a plain cursor, and (a
/// delta) the cursor it answers, which must be `asked`.
pub(crate) fn read_document(
    parts: &crate::jws::Parts<'_>,
    alg: crate::Algorithm,
    key: &crate::crypto::VerifyingKey,
    issuer: &str,
    asked: Option<&str>,
) -> Result<crate::revocation::Document, String> {
    parts.verify(alg, key).map_err(refused)?;
    let document: crate::revocation::Document = serde_json::from_slice(&parts.payload)
        .map_err(|e| format!("revocation feed document unreadable: {e}"))?;
    if document.iss != issuer {
        return Err(refused(VerifyError::WrongIssuer));
    }
    let cursor_ok = !document.cursor.is_empty()
        && document.cursor.len() <= 128
        && document
            .cursor
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b));
    if !cursor_ok {
        return Err("revocation feed cursor is not a plain token".to_owned());
    }
    // A delta counts only for the cursor it was asked for: a genuine delta
    // for another request (replayed, or injected) is refused.
    if !document.snapshot && document.since.as_deref() != asked {
        return Err("revocation feed delta answers another cursor than the one asked".to_owned());
    }
    Ok(document)
}
