//! The keyring's lifecycle as a state machine, under proptest: any sequence
//! of operations (generate, rotate, retire, revoke, prune, each forced or
//! not where that exists) at any times, on a real key directory. After every
//! step, succeeded or refused:
//! - exactly one key is active (never none, never two), and it is the key
//!   the keyring signs with;
//! - the key it signs with is published (in the JWKS), as is every other
//!   key that is not revoked, and no revoked key is;
//! - an unforced rotation activates only a key published for at least one
//!   JWKS cache lifetime, and refuses otherwise;
//! - an unforced prune removes a retired key only once its tokens have
//!   expired everywhere (retired + token lifetime + cache lifetime + leeway),
//!   and a pending or active key never.

use std::collections::BTreeSet;
use std::time::{Duration, SystemTime};

use proptest::prelude::*;
use tessera_keyring::{Algorithm, KeyDir, KeyState, KeyringError, Manifest, Refusal};

use super::{at, policy, t0};

#[derive(Debug, Clone)]
enum Op {
    Generate,
    Rotate {
        force: bool,
    },
    /// The n-th key of the manifest (modulo its length).
    Retire(usize),
    Revoke(usize),
    Prune {
        force: bool,
    },
    Wait(Duration),
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        2 => Just(Op::Generate),
        4 => any::<bool>().prop_map(|force| Op::Rotate { force }),
        1 => (0..8usize).prop_map(Op::Retire),
        1 => (0..8usize).prop_map(Op::Revoke),
        2 => any::<bool>().prop_map(|force| Op::Prune { force }),
        // Around the rules' windows (5 min to publish, 21 min to prune).
        4 => (0u64..1600).prop_map(|s| Op::Wait(Duration::from_secs(s))),
    ]
}

fn kid_at(manifest: &Manifest, n: usize) -> String {
    manifest.keys[n % manifest.keys.len()].kid.clone()
}

fn check_invariants(dir: &KeyDir, step: &str) {
    let manifest = dir.inspect().unwrap().manifest;
    let active: Vec<&str> = manifest
        .keys
        .iter()
        .filter(|k| matches!(k.state, KeyState::Active { .. }))
        .map(|k| k.kid.as_str())
        .collect();
    assert_eq!(active.len(), 1, "{step}: active keys {active:?}");
    let keyring = dir.load().unwrap();
    assert_eq!(
        keyring.signer().kid(),
        active[0],
        "{step}: signs with another key"
    );
    let published: BTreeSet<&str> = keyring.jwks().keys.iter().map(|k| k.kid.as_str()).collect();
    let expected: BTreeSet<&str> = manifest
        .keys
        .iter()
        .filter(|k| k.state.is_published())
        .map(|k| k.kid.as_str())
        .collect();
    assert_eq!(published, expected, "{step}: the JWKS");
    assert!(published.contains(active[0]), "{step}: signer unpublished");
}

fn run(ops: Vec<Op>) {
    let tmp = tempfile::tempdir().unwrap();
    let dir = KeyDir::new(tmp.path().join("keys"));
    let policy = policy();
    let prune_window =
        policy.access_token_lifetime + policy.jwks_cache_lifetime + policy.clock_leeway;
    let mut now: SystemTime = t0();
    at(&dir, now).init(Algorithm::EdDsa).unwrap();
    check_invariants(&dir, "init");
    for (i, op) in ops.into_iter().enumerate() {
        let step = format!("step {i} ({op:?})");
        let before = dir.inspect().unwrap().manifest;
        let d = at(&dir, now);
        match op {
            Op::Generate => {
                d.generate(Algorithm::EdDsa).unwrap();
            }
            Op::Rotate { force } => {
                let pending = before.next_pending().cloned();
                match d.rotate(&policy, force, Algorithm::EdDsa) {
                    Ok(outcome) => {
                        let pending = pending.expect("rotated without a pending key");
                        assert_eq!(
                            outcome.activated, pending.kid,
                            "{step}: not the oldest pending"
                        );
                        let published_for = now.duration_since(pending.created).unwrap_or_default();
                        assert!(
                            force || published_for >= policy.jwks_cache_lifetime,
                            "{step}: activated after {published_for:?} published"
                        );
                        assert_eq!(
                            outcome.forced.is_some(),
                            published_for < policy.jwks_cache_lifetime,
                            "{step}: forced is reported exactly when a rule was overridden"
                        );
                    }
                    Err(KeyringError::Refused(Refusal::ActivationTooEarly { .. })) => {
                        assert!(!force, "{step}: a forced rotation was refused");
                        let pending = pending.unwrap();
                        assert!(now < pending.created + policy.jwks_cache_lifetime, "{step}");
                    }
                    Err(KeyringError::NoPendingKey) => {
                        assert!(pending.is_none(), "{step}: a pending key was there");
                    }
                    Err(e) => panic!("{step}: {e}"),
                }
            }
            Op::Retire(n) => {
                let kid = kid_at(&before, n);
                let was_pending = matches!(before.get(&kid).unwrap().state, KeyState::Pending);
                assert_eq!(d.retire(&kid).is_ok(), was_pending, "{step}: retire {kid}");
            }
            Op::Revoke(n) => {
                let kid = kid_at(&before, n);
                let was_revoked =
                    matches!(before.get(&kid).unwrap().state, KeyState::Revoked { .. });
                let result = d.revoke(&kid, &policy, Algorithm::EdDsa);
                assert_eq!(result.is_ok(), !was_revoked, "{step}: revoke {kid}");
            }
            Op::Prune { force } => {
                let outcome = d.prune(&policy, force).unwrap();
                for kid in &outcome.removed {
                    let record = before.get(kid).unwrap();
                    match record.state {
                        KeyState::Revoked { .. } => {}
                        KeyState::Retired { retired, .. } => assert!(
                            force || now >= retired + prune_window,
                            "{step}: pruned {kid}, retired at {retired:?}, before its safe time"
                        ),
                        KeyState::Pending | KeyState::Active { .. } => {
                            panic!("{step}: pruned a {} key", record.state.name())
                        }
                    }
                }
                // Whatever it kept is kept for a reason.
                for refusal in &outcome.kept {
                    assert!(!force, "{step}: a forced prune kept {refusal:?}");
                }
            }
            Op::Wait(d) => now += d,
        }
        check_invariants(&dir, &step);
    }
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: 32,
        // Every case is a real key directory: keep shrinking short.
        max_shrink_iters: 256,
        ..ProptestConfig::default()
    })]

    #[test]
    fn any_sequence_of_operations_at_any_times_keeps_the_rules(
        ops in prop::collection::vec(op(), 1..28)
    ) {
        run(ops);
    }
}
