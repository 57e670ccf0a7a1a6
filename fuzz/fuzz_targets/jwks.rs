//! The verifier's JWKS parser on arbitrary bytes, with all three algorithms
//! allowed. Beyond "never panics": what it keeps is consistent (every kid
//! listed is found, once) and every key it skips says why.
#![no_main]

use libfuzzer_sys::fuzz_target;
use tessera_fuzz::ALGS;
use tessera_verifier::KeySet;

fuzz_target!(|data: &[u8]| {
    let Ok((set, skipped)) = KeySet::from_jwks_json(data, &ALGS) else {
        return;
    };
    let mut kids: Vec<&str> = set.kids().collect();
    assert_eq!(kids.len(), set.len());
    kids.sort_unstable();
    kids.dedup();
    assert_eq!(kids.len(), set.len(), "a kid listed twice");
    for kid in kids {
        assert!(set.get(kid).is_some(), "kid {kid:?} listed but not found");
    }
    for skip in skipped {
        assert!(!skip.reason.is_empty());
    }
});
