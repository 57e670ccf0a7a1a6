//! Entry points for the fuzz targets in `fuzz/` (feature `fuzzing`): the
//! crate's internal readers on arbitrary input, exactly as the verifier runs
//! them. Not an API: nothing outside `fuzz/` enables the feature.

use crate::KeySet;
use crate::revocation::{RevocationConfig, RevocationList, TokenKeys};
use crate::verifier::feed::{feed_header, read_document};

/// Feeds `documents` (compact JWS, in turn) to a fresh revocation list as
/// polls would: each document's header, key (from `keys`, by `kid`),
/// signature, issuer and cursor are checked, the delta must answer the
/// cursor the previous document gave, and the list applies it. After each
/// accepted document a token is looked up in the list. Returns how many
/// documents were accepted, or why the first refused one was.
pub fn feed_documents<'d>(
    keys: &KeySet,
    algorithms: &[String],
    issuer: &str,
    documents: impl IntoIterator<Item = &'d str>,
    now: i64,
) -> Result<usize, String> {
    let list = RevocationList::new(RevocationConfig::default(), now);
    let mut accepted = 0;
    for text in documents {
        let ((alg, kid), parts) = feed_header(text, algorithms).map_err(|e| e.to_string())?;
        let key = keys.get(&kid).ok_or("no key has this kid")?;
        let (asked, _) = list.position();
        let document = read_document(&parts, alg, key, issuer, asked.as_deref())?;
        list.apply(document, None, now).map_err(|e| e.to_string())?;
        // Whatever the list now holds, a lookup answers without panicking.
        let token = TokenKeys::of(Some("jti-1"), Some("sid-1"), Some("user-1"), Some(now));
        let _ = list.check(&token, now);
        accepted += 1;
    }
    Ok(accepted)
}
