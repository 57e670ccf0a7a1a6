//! The keyring's behaviour as an operator and the issuer see it: files on disk,
//! every state transition and refusal under an injected clock, corrupt inputs,
//! and concurrent writers.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::fs;
use std::os::unix::fs::PermissionsExt as _;
use std::path::Path;
use std::time::{Duration, SystemTime};

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use tessera_keyring::{
    DEFAULT_BITS, FixedClock, KeyDir, KeyState, KeyringError, Refusal, RotationPolicy,
};

const MIN: Duration = Duration::from_secs(60);

/// The keyring as seen by an operation running at `t`.
fn at(dir: &KeyDir, t: SystemTime) -> KeyDir {
    dir.clone().with_clock(std::sync::Arc::new(FixedClock(t)))
}

fn t0() -> SystemTime {
    // 2026-01-01T00:00:00Z: a fixed, whole-second clock.
    SystemTime::UNIX_EPOCH + Duration::from_secs(1_767_225_600)
}

fn policy() -> RotationPolicy {
    RotationPolicy::default()
}

fn new_keyring() -> (tempfile::TempDir, KeyDir) {
    let tmp = tempfile::tempdir().unwrap();
    let dir = KeyDir::new(tmp.path().join("keys"));
    at(&dir, t0()).init(DEFAULT_BITS).unwrap();
    (tmp, dir)
}

fn mode(path: &Path) -> u32 {
    fs::metadata(path).unwrap().permissions().mode() & 0o777
}

fn state_of(dir: &KeyDir, kid: &str) -> &'static str {
    dir.inspect()
        .unwrap()
        .manifest
        .get(kid)
        .unwrap()
        .state
        .name()
}

/// Verifies a compact JWS with a JWK from the set, the way a resource server would.
fn verify_with_jwks(dir: &KeyDir, token: &str) -> bool {
    let inspection = dir.inspect().unwrap();
    let mut parts = token.split('.');
    let (h, p, s) = (
        parts.next().unwrap(),
        parts.next().unwrap(),
        parts.next().unwrap(),
    );
    let header: serde_json::Value =
        serde_json::from_slice(&URL_SAFE_NO_PAD.decode(h).unwrap()).unwrap();
    let Some(jwk) = inspection.jwks.find(header["kid"].as_str().unwrap()) else {
        return false;
    };
    if header["alg"] != jwk.alg.as_str() {
        return false;
    }
    let sig = URL_SAFE_NO_PAD.decode(s).unwrap();
    jwk.verifies(format!("{h}.{p}").as_bytes(), &sig)
}

#[test]
fn init_writes_private_files_and_a_readable_manifest() {
    let tmp = tempfile::tempdir().unwrap();
    let path = tmp.path().join("keys");
    let dir = KeyDir::new(&path);
    let out = at(&dir, t0()).init(DEFAULT_BITS).unwrap();

    assert_eq!(mode(&path), 0o700);
    for kid in [&out.active, &out.pending] {
        let key = dir.key_path(kid);
        assert_eq!(mode(&key), 0o600, "{}", key.display());
        let text = fs::read_to_string(&key).unwrap();
        assert!(
            text.starts_with("-----BEGIN PRIVATE KEY-----\n"),
            "PKCS#8 PEM"
        );
    }
    let manifest: serde_json::Value =
        serde_json::from_slice(&fs::read(path.join("manifest.json")).unwrap()).unwrap();
    let keys = manifest["keys"].as_array().unwrap();
    assert_eq!(keys.len(), 2);
    assert_eq!(keys[0]["kid"], out.active.as_str());
    assert_eq!(keys[0]["state"], "active");
    assert_eq!(keys[0]["alg"], "RS256");
    assert_eq!(keys[0]["bits"], 2048);
    assert_eq!(keys[0]["created"], "2026-01-01T00:00:00Z");
    assert_eq!(keys[0]["activated"], "2026-01-01T00:00:00Z");
    assert_eq!(keys[0]["retired"], serde_json::Value::Null);
    assert_eq!(keys[1]["kid"], out.pending.as_str());
    assert_eq!(keys[1]["state"], "pending");
    assert_eq!(keys[1]["activated"], serde_json::Value::Null);
    // No temp files left behind.
    let names: Vec<String> = fs::read_dir(&path)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .filter(|n| n.contains("tmp"))
        .collect();
    assert!(names.is_empty(), "{names:?}");

    let again = at(&dir, t0()).init(DEFAULT_BITS).unwrap_err();
    assert!(
        matches!(again, KeyringError::AlreadyInitialised { count: 2, .. }),
        "{again}"
    );
}

#[test]
fn load_yields_the_active_signer_and_publishes_pending_too() {
    let (_tmp, dir) = new_keyring();
    let ring = dir.load().unwrap();
    let manifest = ring.manifest();
    let active = manifest.active().unwrap();
    let pending = manifest.next_pending().unwrap();
    assert_eq!(ring.signer().kid(), active.kid);
    let kids: Vec<&str> = ring.jwks().keys.iter().map(|k| k.kid.as_str()).collect();
    assert_eq!(kids, [active.kid.as_str(), pending.kid.as_str()]);
    for jwk in &ring.jwks().keys {
        assert_eq!(
            (jwk.kty.as_str(), jwk.use_.as_str(), jwk.alg.as_str()),
            ("RSA", "sig", "RS256")
        );
        assert_eq!(jwk.e.as_deref(), Some("AQAB"));
        // kid is the RFC 7638 thumbprint of the published key.
        let n = URL_SAFE_NO_PAD.decode(jwk.n.as_deref().unwrap()).unwrap();
        assert_eq!(n.len(), 256);
        assert_eq!(jwk.kid, tessera_keyring::rsa_thumbprint(&n, &[1, 0, 1]));
    }
}

#[test]
fn every_key_verifies_tokens_it_signed_while_active() {
    let (_tmp, dir) = new_keyring();
    let mut now = t0();
    let mut tokens = Vec::new();
    for _ in 0..3 {
        let ring = dir.load().unwrap();
        let token = ring
            .signer()
            .sign_jwt("at+jwt", br#"{"sub":"alice","aud":"demo"}"#)
            .unwrap();
        let header: serde_json::Value = serde_json::from_slice(
            &URL_SAFE_NO_PAD
                .decode(token.split('.').next().unwrap())
                .unwrap(),
        )
        .unwrap();
        assert_eq!(header["alg"], "RS256");
        assert_eq!(header["typ"], "at+jwt");
        assert_eq!(header["kid"], ring.signer().kid());
        tokens.push(token);
        now += 5 * MIN;
        at(&dir, now)
            .rotate(&policy(), false, DEFAULT_BITS)
            .unwrap();
    }
    // Retired keys are still published: every earlier token still verifies.
    for token in &tokens {
        assert!(verify_with_jwks(&dir, token));
    }
    // A tampered payload does not.
    let mut parts: Vec<String> = tokens[0].split('.').map(str::to_owned).collect();
    parts[1] = URL_SAFE_NO_PAD.encode(br#"{"sub":"mallory","aud":"demo"}"#);
    assert!(!verify_with_jwks(&dir, &parts.join(".")));
}

#[test]
fn rotate_waits_one_jwks_cache_lifetime_after_publication() {
    let (_tmp, dir) = new_keyring();
    let before = fs::read(dir.manifest_path()).unwrap();
    let old = dir.load().unwrap();
    let pending = old.manifest().next_pending().unwrap().kid.clone();
    let active = old.signer().kid().to_owned();

    // One second before the pending key has been published for 5 minutes.
    let err = at(&dir, t0() + 5 * MIN - Duration::from_secs(1))
        .rotate(&policy(), false, DEFAULT_BITS)
        .unwrap_err();
    match &err {
        KeyringError::Refused(Refusal::ActivationTooEarly { kid, safe_at, .. }) => {
            assert_eq!(kid, &pending);
            assert_eq!(*safe_at, t0() + 5 * MIN);
        }
        other => panic!("expected a refusal, got {other}"),
    }
    let message = err.to_string();
    assert!(message.contains("2026-01-01T00:05:00Z"), "{message}");
    assert!(message.contains("--force"), "{message}");
    assert_eq!(
        fs::read(dir.manifest_path()).unwrap(),
        before,
        "a refusal changes nothing"
    );

    // Exactly at the safe time it goes through.
    let out = at(&dir, t0() + 5 * MIN)
        .rotate(&policy(), false, DEFAULT_BITS)
        .unwrap();
    assert_eq!(out.activated, pending);
    assert_eq!(out.retired.as_deref(), Some(active.as_str()));
    assert_eq!(out.forced, None);
    assert_eq!(state_of(&dir, &pending), "active");
    assert_eq!(state_of(&dir, &active), "retired");
    assert_eq!(state_of(&dir, &out.new_pending), "pending");
    let ring = dir.load().unwrap();
    assert_eq!(ring.signer().kid(), pending);
    assert_eq!(ring.jwks().keys.len(), 3);
    let retired = ring.manifest().get(&active).unwrap();
    assert_eq!(retired.activated(), Some(t0()));
    assert_eq!(retired.retired(), Some(t0() + 5 * MIN));
}

#[test]
fn rotate_force_overrides_the_rule_and_reports_it() {
    let (_tmp, dir) = new_keyring();
    let out = at(&dir, t0())
        .rotate(&policy(), true, DEFAULT_BITS)
        .unwrap();
    let forced = out.forced.expect("the broken rule is reported");
    assert_eq!(forced.safe_at(), t0() + 5 * MIN);
    assert_eq!(dir.load().unwrap().signer().kid(), out.activated);
}

#[test]
fn rotate_without_a_pending_key_is_refused() {
    let (_tmp, dir) = new_keyring();
    let pending = dir
        .inspect()
        .unwrap()
        .manifest
        .next_pending()
        .unwrap()
        .kid
        .clone();
    at(&dir, t0()).retire(&pending).unwrap();
    let err = at(&dir, t0() + MIN * 60)
        .rotate(&policy(), true, DEFAULT_BITS)
        .unwrap_err();
    assert!(matches!(err, KeyringError::NoPendingKey), "{err}");
    // `generate` adds one; it must then wait its own publication period.
    let next = at(&dir, t0() + MIN * 60)
        .generate(DEFAULT_BITS)
        .unwrap()
        .kid;
    let err = at(&dir, t0() + MIN * 61)
        .rotate(&policy(), false, DEFAULT_BITS)
        .unwrap_err();
    assert!(
        matches!(err, KeyringError::Refused(Refusal::ActivationTooEarly { ref kid, .. }) if *kid == next)
    );
    at(&dir, t0() + MIN * 65)
        .rotate(&policy(), false, DEFAULT_BITS)
        .unwrap();
    assert_eq!(dir.load().unwrap().signer().kid(), next);
}

#[test]
fn retire_applies_to_pending_keys_only() {
    let (_tmp, dir) = new_keyring();
    let m = dir.inspect().unwrap().manifest;
    let (active, pending) = (
        m.active().unwrap().kid.clone(),
        m.next_pending().unwrap().kid.clone(),
    );

    let err = at(&dir, t0()).retire(&active).unwrap_err();
    assert!(
        matches!(
            err,
            KeyringError::WrongState {
                state: "active",
                ..
            }
        ),
        "{err}"
    );
    assert!(err.to_string().contains("rotate"), "{err}");

    at(&dir, t0() + MIN).retire(&pending).unwrap();
    let record = dir
        .inspect()
        .unwrap()
        .manifest
        .get(&pending)
        .cloned()
        .unwrap();
    assert_eq!(
        record.state,
        KeyState::Retired {
            activated: None,
            retired: t0() + MIN
        }
    );
    // Still published: it may already sit in verifiers' caches.
    assert!(dir.load().unwrap().jwks().find(&pending).is_some());

    let err = at(&dir, t0() + MIN).retire(&pending).unwrap_err();
    assert!(
        matches!(
            err,
            KeyringError::WrongState {
                state: "retired",
                ..
            }
        ),
        "{err}"
    );
    let err = at(&dir, t0())
        .retire("AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA")
        .unwrap_err();
    assert!(matches!(err, KeyringError::UnknownKey { .. }), "{err}");
}

#[test]
fn prune_keeps_retired_keys_until_tokens_they_signed_have_expired() {
    let (_tmp, dir) = new_keyring();
    let retired_at = t0() + 5 * MIN;
    let out = at(&dir, retired_at)
        .rotate(&policy(), false, DEFAULT_BITS)
        .unwrap();
    let old = out.retired.unwrap();
    // 15 min access token + 5 min JWKS cache + 60 s leeway = 21 min.
    let safe_at = retired_at + 21 * MIN;

    let kept = at(&dir, safe_at - Duration::from_secs(1))
        .prune(&policy(), false)
        .unwrap();
    assert!(kept.removed.is_empty());
    assert_eq!(kept.kept.len(), 1);
    assert_eq!(kept.kept[0].safe_at(), safe_at);
    assert!(
        kept.kept[0].to_string().contains("2026-01-01T00:26:00Z"),
        "{}",
        kept.kept[0]
    );
    assert!(dir.key_path(&old).exists());
    assert!(dir.load().unwrap().jwks().find(&old).is_some());

    let pruned = at(&dir, safe_at).prune(&policy(), false).unwrap();
    assert_eq!(pruned.removed, std::slice::from_ref(&old));
    assert!(
        !dir.key_path(&old).exists(),
        "the private key file is deleted"
    );
    let ring = dir.load().unwrap();
    assert!(ring.jwks().find(&old).is_none());
    assert!(ring.manifest().get(&old).is_none());
    assert_eq!(ring.jwks().keys.len(), 2);
}

#[test]
fn prune_force_removes_retired_keys_early_and_says_so() {
    let (_tmp, dir) = new_keyring();
    let old = at(&dir, t0() + 5 * MIN)
        .rotate(&policy(), false, DEFAULT_BITS)
        .unwrap()
        .retired
        .unwrap();
    let out = at(&dir, t0() + 6 * MIN).prune(&policy(), true).unwrap();
    assert_eq!(out.removed, [old]);
    assert_eq!(out.forced.len(), 1);
    assert!(out.kept.is_empty());
}

#[test]
fn revoking_the_active_key_promotes_the_pending_key_at_once() {
    let (_tmp, dir) = new_keyring();
    let m = dir.inspect().unwrap().manifest;
    let (active, pending) = (
        m.active().unwrap().kid.clone(),
        m.next_pending().unwrap().kid.clone(),
    );

    let out = at(&dir, t0() + MIN)
        .revoke(&active, &policy(), DEFAULT_BITS)
        .unwrap();
    let promoted = out.promoted.unwrap();
    assert_eq!(promoted.kid, pending);
    // Published for one minute only: promoted early, and the outcome says until when.
    assert_eq!(promoted.early, Some(t0() + 5 * MIN));
    let next = out.new_pending.unwrap();

    let ring = dir.load().unwrap();
    assert_eq!(ring.signer().kid(), pending);
    assert!(
        ring.jwks().find(&active).is_none(),
        "revoked keys leave the JWKS at once"
    );
    let kids: Vec<&str> = ring.jwks().keys.iter().map(|k| k.kid.as_str()).collect();
    assert_eq!(kids, [pending.as_str(), next.as_str()]);
    let revoked = ring.manifest().get(&active).unwrap();
    assert_eq!(
        revoked.state,
        KeyState::Revoked {
            activated: Some(t0()),
            retired: None,
            revoked: t0() + MIN
        }
    );

    let err = at(&dir, t0() + MIN)
        .revoke(&active, &policy(), DEFAULT_BITS)
        .unwrap_err();
    assert!(
        matches!(
            err,
            KeyringError::WrongState {
                state: "revoked",
                ..
            }
        ),
        "{err}"
    );

    // prune deletes revoked keys straight away, file and entry.
    let out = at(&dir, t0() + MIN).prune(&policy(), false).unwrap();
    assert_eq!(out.removed, std::slice::from_ref(&active));
    assert!(!dir.key_path(&active).exists());
}

#[test]
fn revoking_the_active_key_without_a_pending_key_generates_a_new_signer() {
    let (_tmp, dir) = new_keyring();
    let m = dir.inspect().unwrap().manifest;
    let (active, pending) = (
        m.active().unwrap().kid.clone(),
        m.next_pending().unwrap().kid.clone(),
    );
    at(&dir, t0())
        .revoke(&pending, &policy(), DEFAULT_BITS)
        .unwrap();
    let out = at(&dir, t0() + MIN)
        .revoke(&active, &policy(), DEFAULT_BITS)
        .unwrap();
    let promoted = out.promoted.unwrap();
    assert_ne!(promoted.kid, active);
    assert_ne!(promoted.kid, pending);
    assert_eq!(promoted.early, Some(t0() + 6 * MIN));
    let ring = dir.load().unwrap();
    assert_eq!(ring.signer().kid(), promoted.kid);
    assert_eq!(
        ring.jwks().keys.len(),
        2,
        "new active + new pending; both revoked keys gone"
    );
}

#[test]
fn revoking_a_retired_or_pending_key_only_unpublishes_it() {
    let (_tmp, dir) = new_keyring();
    let out = at(&dir, t0() + 5 * MIN)
        .rotate(&policy(), false, DEFAULT_BITS)
        .unwrap();
    let old = out.retired.unwrap();
    let r = at(&dir, t0() + 6 * MIN)
        .revoke(&old, &policy(), DEFAULT_BITS)
        .unwrap();
    assert_eq!(r.promoted, None);
    assert_eq!(r.new_pending, None);
    let ring = dir.load().unwrap();
    assert_eq!(ring.signer().kid(), out.activated);
    assert!(ring.jwks().find(&old).is_none());
    let r = at(&dir, t0() + 6 * MIN)
        .revoke(&out.new_pending, &policy(), DEFAULT_BITS)
        .unwrap();
    assert_eq!(r.promoted, None);
    assert_eq!(dir.load().unwrap().jwks().keys.len(), 1);
}

#[test]
fn key_sizes_below_2048_bits_are_refused() {
    let (_tmp, dir) = new_keyring();
    for bits in [512, 1024, 2047, 2560, 8192] {
        let err = at(&dir, t0()).generate(bits).unwrap_err();
        assert!(
            matches!(err, KeyringError::UnsupportedKeySize { .. }),
            "{bits}: {err}"
        );
    }
    let tmp = tempfile::tempdir().unwrap();
    let err = at(&KeyDir::new(tmp.path()), t0()).init(1024).unwrap_err();
    assert!(
        matches!(err, KeyringError::UnsupportedKeySize { bits: 1024, .. }),
        "{err}"
    );
}

#[test]
fn generate_makes_3072_bit_keys() {
    let (_tmp, dir) = new_keyring();
    let kid = at(&dir, t0()).generate(3072).unwrap().kid;
    let record = dir.inspect().unwrap().manifest.get(&kid).cloned().unwrap();
    assert_eq!(record.bits, 3072);
    assert_eq!(record.state, KeyState::Pending);
}

mod import;

mod damage;

mod concurrency;

mod algorithms;

#[test]
fn debug_output_never_contains_key_material() {
    let (_tmp, dir) = new_keyring();
    let ring = dir.load().unwrap();
    let pem = fs::read_to_string(dir.key_path(ring.signer().kid())).unwrap();
    let debug = format!("{ring:?} {:?} {:#?}", ring.signer(), ring.signer());
    for line in pem.lines().filter(|l| !l.starts_with("-----")) {
        assert!(!debug.contains(line), "Debug leaked a PEM line");
    }
    assert!(!debug.contains("PRIVATE KEY"));
    assert!(debug.contains(ring.signer().kid()));
}

#[test]
fn a_keys_directory_may_be_a_symlink_but_a_key_file_may_not() {
    let tmp = tempfile::tempdir().unwrap();
    let real = tmp.path().join("real");
    let link = tmp.path().join("link");
    fs::create_dir(&real).unwrap();
    std::os::unix::fs::symlink(&real, &link).unwrap();
    let dir = KeyDir::new(&link);
    at(&dir, t0()).init(DEFAULT_BITS).unwrap();
    let ring = dir.load().unwrap();
    assert!(real.join("manifest.json").is_file());

    let pending = ring.manifest().next_pending().unwrap().kid.clone();
    let path = dir.key_path(&pending);
    let moved = tmp.path().join("elsewhere.pem");
    fs::rename(&path, &moved).unwrap();
    std::os::unix::fs::symlink(&moved, &path).unwrap();
    let err = dir.load().unwrap_err();
    assert!(err.to_string().contains("symlinks are refused"), "{err}");
}

// Any sequence of operations at any times, against the rules (proptest).
mod model;
