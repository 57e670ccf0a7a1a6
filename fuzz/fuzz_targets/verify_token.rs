//! The verifier's whole `verify` on arbitrary input, with the three fixed
//! keys trusted. Checks, beyond "never panics":
//! - differential: every token Tessera accepts, the `jsonwebtoken` crate
//!   verifies too (its own base64url, header, signature and JSON parsing),
//!   with the same claims;
//! - the verified-token cache never changes an answer: the same token twice
//!   through a caching verifier gets the uncached verifier's answer both
//!   times.
#![no_main]

use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use serde_json::Value;
use tessera_fuzz::{independent_claims, runtime, token_from_input, verifier};
use tessera_verifier::Verifier;

struct Verifiers {
    plain: Verifier,
    cached: Verifier,
}

fuzz_target!(|data: &[u8]| {
    static VERIFIERS: OnceLock<Verifiers> = OnceLock::new();
    let Some(token) = token_from_input(data) else {
        return;
    };
    let v = VERIFIERS.get_or_init(|| Verifiers {
        plain: verifier(false),
        cached: verifier(true),
    });
    let rt = runtime();
    let answer = |verifier: &Verifier| {
        rt.block_on(verifier.verify::<Value>(&token))
            .map(|verified| (verified.claims().clone(), verified.kid().to_owned()))
            .map_err(|e| e.to_string())
    };
    let plain = answer(&v.plain);
    for round in 0..2 {
        assert_eq!(
            answer(&v.cached),
            plain,
            "cached answer, round {round}: {token}"
        );
    }
    if let Ok((claims, _)) = &plain {
        let theirs = independent_claims(&token).unwrap_or_else(|e| {
            panic!("Tessera accepted a token jsonwebtoken refuses ({e}): {token}")
        });
        assert_eq!(&theirs, claims, "the claims differ: {token}");
    }
});
