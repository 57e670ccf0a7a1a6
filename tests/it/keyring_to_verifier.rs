//! The keyring's published JWKS, read by the verifier crate as a resource server
//! would read it over HTTP: every key usable, every token verifiable through a
//! whole rotation, and nothing verifiable once its key is pruned or revoked.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::time::{Duration, SystemTime};

use crate::support::verify_signature;
use tessera_keyring::{DEFAULT_BITS, FixedClock, KeyDir, RotationPolicy};
use tessera_verifier::KeySet;

const MIN: Duration = Duration::from_secs(60);

/// The keyring as seen by an operation running at `t`.
fn at(dir: &KeyDir, t: SystemTime) -> KeyDir {
    dir.clone().with_clock(std::sync::Arc::new(FixedClock(t)))
}

fn t0() -> SystemTime {
    SystemTime::UNIX_EPOCH + Duration::from_secs(1_767_225_600)
}

/// What a resource server would hold after fetching the JWKS now.
fn fetch_jwks(dir: &KeyDir) -> KeySet {
    let json = serde_json::to_vec(&dir.inspect().unwrap().jwks).unwrap();
    let (set, skipped) = KeySet::from_jwks_json(&json, &["RS256"]).unwrap();
    assert!(
        skipped.is_empty(),
        "the verifier skipped published keys: {skipped:?}"
    );
    set
}

fn sign(dir: &KeyDir, sub: &str) -> String {
    let ring = dir.load().unwrap();
    let claims = serde_json::json!({"sub": sub, "iss": "https://issuer.test"});
    ring.signer()
        .sign_jwt("at+jwt", &serde_json::to_vec(&claims).unwrap())
        .unwrap()
}

#[test]
fn tokens_verify_across_rotations_until_their_key_is_pruned() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = KeyDir::new(tmp.path().join("keys"));
    at(&dir, t0()).init(DEFAULT_BITS).unwrap();
    let policy = RotationPolicy::default();

    let first = sign(&dir, "first");
    assert_eq!(fetch_jwks(&dir).len(), 2);
    assert_eq!(
        verify_signature(&fetch_jwks(&dir), &first).unwrap()["sub"],
        "first"
    );

    // Rotate at the earliest safe time: the old token still verifies with the new JWKS.
    let rotated_at = t0() + 5 * MIN;
    at(&dir, rotated_at)
        .rotate(&policy, false, DEFAULT_BITS)
        .unwrap();
    let second = sign(&dir, "second");
    let set = fetch_jwks(&dir);
    assert_eq!(set.len(), 3);
    for (token, sub) in [(&first, "first"), (&second, "second")] {
        assert_eq!(verify_signature(&set, token).unwrap()["sub"], sub);
    }

    // After the retention period the old key is pruned: its tokens no longer verify.
    at(&dir, rotated_at + 21 * MIN)
        .prune(&policy, false)
        .unwrap();
    let set = fetch_jwks(&dir);
    assert_eq!(set.len(), 2);
    assert!(
        verify_signature(&set, &first)
            .unwrap_err()
            .contains("unknown kid")
    );
    assert!(verify_signature(&set, &second).is_ok());
}

#[test]
fn the_next_signing_key_is_published_before_it_signs() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = KeyDir::new(tmp.path().join("keys"));
    at(&dir, t0()).init(DEFAULT_BITS).unwrap();
    // A verifier caches the JWKS right after init...
    let cached = fetch_jwks(&dir);
    // ...and the rotation happens one cache lifetime later: the cached set already
    // verifies tokens from the newly active key, with no refetch.
    at(&dir, t0() + 5 * MIN)
        .rotate(&RotationPolicy::default(), false, DEFAULT_BITS)
        .unwrap();
    let token = sign(&dir, "after-rotation");
    assert_eq!(
        verify_signature(&cached, &token).unwrap()["sub"],
        "after-rotation"
    );
}

#[test]
fn a_revoked_key_disappears_from_the_jwks_and_its_tokens_fail() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = KeyDir::new(tmp.path().join("keys"));
    at(&dir, t0()).init(DEFAULT_BITS).unwrap();
    let policy = RotationPolicy::default();
    let stolen = sign(&dir, "before-compromise");
    let active = dir.load().unwrap().signer().kid().to_owned();

    at(&dir, t0() + MIN)
        .revoke(&active, &policy, DEFAULT_BITS)
        .unwrap();
    let set = fetch_jwks(&dir);
    assert!(set.get(&active).is_none());
    assert!(
        verify_signature(&set, &stolen)
            .unwrap_err()
            .contains("unknown kid")
    );
    let fresh = sign(&dir, "after");
    assert!(verify_signature(&set, &fresh).is_ok());
}
