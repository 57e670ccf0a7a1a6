//! The verifier's revocation-feed reader on arbitrary documents: up to
//! three polls in turn into a fresh list (header, key, signature, issuer,
//! cursor, the delta's `since`, then the list's own rules), raw or signed
//! here with one of the fixed keys so the fuzzer reaches the document
//! itself. Never panics, whatever the documents.
#![no_main]

use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use tessera_fuzz::{ALGS, ISSUER, Keys, NOW, feed_documents_from_input};
use tessera_verifier::KeySet;

fuzz_target!(|data: &[u8]| {
    static KEYS: OnceLock<KeySet> = OnceLock::new();
    let Some(documents) = feed_documents_from_input(data) else {
        return;
    };
    let keys = KEYS.get_or_init(|| Keys::get().key_set());
    let algorithms: Vec<String> = ALGS.iter().map(|a| (*a).to_owned()).collect();
    let _ = tessera_verifier::fuzzing::feed_documents(
        keys,
        &algorithms,
        ISSUER,
        documents.iter().map(String::as_str),
        NOW,
    );
});
