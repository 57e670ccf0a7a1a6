//! The database keyring on every backend.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use tessera_keyring::{FixedClock, KeyState, KeyringError, Refusal, RotationPolicy, ops};

use super::super::keyring::{DbKeyring, Kek};
use super::*;

const BITS: usize = 2048;

fn kek(byte: u8) -> Kek {
    use base64::Engine as _;
    Kek::from_text(&base64::engine::general_purpose::URL_SAFE_NO_PAD.encode([byte; 32])).unwrap()
}

fn at(secs: u64) -> Arc<FixedClock> {
    Arc::new(FixedClock(
        SystemTime::UNIX_EPOCH + Duration::from_secs(secs),
    ))
}

async fn sealed_rows(db: &Db) -> Vec<(String, Vec<u8>)> {
    on_pool!(db, |pool| sqlx::query_as(
        "SELECT kid, sealed FROM keyring_keys"
    )
    .fetch_all(pool)
    .await
    .unwrap())
}

#[tokio::test]
async fn keys_are_sealed_and_open_only_with_their_kek_and_row() {
    for t in backends().await {
        let name = t.db.backend_name();
        let keyring = DbKeyring::new(t.db.clone(), kek(7)).with_clock(at(1_000));
        let init = keyring.apply(ops::Init::new(BITS)).await.unwrap();
        let (loaded, version) = keyring.load().await.unwrap();
        assert_eq!(loaded.signer().kid(), init.active, "{name}");
        assert_eq!(loaded.jwks().keys.len(), 2, "{name}");
        assert_eq!(version, 1, "{name}");

        // No key material in clear anywhere in the database.
        let rows = sealed_rows(&t.db).await;
        assert_eq!(rows.len(), 2, "{name}");
        for (_, sealed) in &rows {
            let text = String::from_utf8_lossy(sealed);
            assert!(
                !text.contains("PRIVATE KEY"),
                "{name}: a key stored in clear"
            );
        }
        let manifest: String = on_pool!(t.db, |pool| sqlx::query_scalar(
            "SELECT manifest FROM keyring"
        )
        .fetch_one(pool)
        .await
        .unwrap());
        assert!(!manifest.contains("PRIVATE"), "{name}");

        // Another KEK opens nothing, and says why.
        let wrong = DbKeyring::new(t.db.clone(), kek(8));
        let err = wrong.load().await.unwrap_err().to_string();
        assert!(err.contains("cannot be decrypted"), "{name}: {err}");

        // A sealed key moved to another kid's row does not open either.
        let (a, b) = (&rows[0], &rows[1]);
        on_pool!(t.db, |pool| {
            for (kid, sealed) in [(&a.0, &b.1), (&b.0, &a.1)] {
                sqlx::query("UPDATE keyring_keys SET sealed = $1 WHERE kid = $2")
                    .bind(sealed)
                    .bind(kid)
                    .execute(pool)
                    .await
                    .unwrap();
            }
        });
        let err = keyring.load().await.unwrap_err().to_string();
        assert!(err.contains("cannot be decrypted"), "{name}: {err}");
    }
}

#[tokio::test]
async fn the_lifecycle_runs_on_the_database_as_on_files() {
    for t in backends().await {
        let name = t.db.backend_name();
        let policy = RotationPolicy::default();
        let keyring = DbKeyring::new(t.db.clone(), kek(1)).with_clock(at(1_000));
        assert!(matches!(
            keyring.load().await,
            Err(KeyringError::NotInitialised { .. })
        ));
        let init = keyring.apply(ops::Init::new(BITS)).await.unwrap();
        assert!(matches!(
            keyring.apply(ops::Init::new(BITS)).await,
            Err(KeyringError::AlreadyInitialised { count: 2, .. })
        ));
        // Too early to activate the pending key; the refusal changes nothing.
        let early = keyring
            .apply(ops::Rotate::new(policy, false, BITS))
            .await
            .unwrap_err();
        assert!(
            matches!(
                early,
                KeyringError::Refused(Refusal::ActivationTooEarly { .. })
            ),
            "{name}: {early}"
        );
        assert_eq!(keyring.version().await.unwrap(), Some(1), "{name}");
        // An hour later it rotates; the old active key is retired, still published.
        let later = keyring.clone().with_clock(at(1_000 + 3_600));
        let rotated = later
            .apply(ops::Rotate::new(policy, false, BITS))
            .await
            .unwrap();
        assert_eq!(rotated.activated, init.pending, "{name}");
        assert_eq!(rotated.retired.as_deref(), Some(init.active.as_str()));
        let (loaded, version) = later.load().await.unwrap();
        assert_eq!(version, 2, "{name}");
        assert_eq!(loaded.signer().kid(), init.pending, "{name}");
        assert_eq!(loaded.jwks().keys.len(), 3, "{name}");
        // Revoking the active key promotes the pending one at once.
        let revoked = later
            .apply(ops::Revoke::new(&init.pending, policy, BITS))
            .await
            .unwrap();
        assert_eq!(
            revoked.promoted.as_ref().map(|p| p.kid.as_str()),
            Some(rotated.new_pending.as_str()),
            "{name}"
        );
        // A day later, prune drops the revoked and the retired key, rows too.
        let pruned = keyring
            .clone()
            .with_clock(at(1_000 + 86_400))
            .apply(ops::Prune::new(policy, false))
            .await
            .unwrap();
        let mut removed = pruned.removed.clone();
        removed.sort();
        let mut expected = vec![init.active.clone(), init.pending.clone()];
        expected.sort();
        assert_eq!(removed, expected, "{name}");
        let inspection = keyring.inspect().await.unwrap();
        assert_eq!(inspection.manifest.keys.len(), 2, "{name}");
        assert!(
            inspection
                .manifest
                .keys
                .iter()
                .all(|k| !matches!(k.state, KeyState::Revoked { .. } | KeyState::Retired { .. })),
            "{name}"
        );
        assert_eq!(
            sealed_rows(&t.db).await.len(),
            2,
            "{name}: pruned rows deleted"
        );
    }
}

/// Operators (or schedulers) rotating at once, through two handles (two
/// processes): exactly one rotation happens; the others are refused by
/// the activation rule, because each runs after the first under the
/// keyring lock. Their new keys are made first, so that the transactions
/// really overlap (key generation times would otherwise spread them out).
#[tokio::test]
async fn rotations_at_once_rotate_once() {
    for t in backends().await {
        let name = t.db.backend_name();
        let policy = RotationPolicy::default();
        DbKeyring::new(t.db.clone(), kek(3))
            .with_clock(at(1_000))
            .apply(ops::Init::new(BITS))
            .await
            .unwrap();
        let other = Db::connect(&t.url).await.unwrap();
        let mut fresh = Vec::new();
        for _ in 0..6 {
            fresh.push(tessera_keyring::NewKey::generate(BITS).unwrap());
        }
        let rotations: Vec<_> = fresh
            .into_iter()
            .enumerate()
            .map(|(i, key)| {
                let db = if i % 2 == 0 {
                    t.db.clone()
                } else {
                    other.clone()
                };
                let keyring = DbKeyring::new(db, kek(3)).with_clock(at(10_000));
                tokio::spawn(async move {
                    keyring
                        .apply(ops::Rotate::with_key(policy, false, key))
                        .await
                })
            })
            .collect();
        let mut results = Vec::new();
        for rotation in rotations {
            results.push(rotation.await.unwrap());
        }
        let done = results.iter().filter(|r| r.is_ok()).count();
        assert_eq!(done, 1, "{name}: {results:?}");
        assert!(
            results.iter().all(|r| r.is_ok()
                || matches!(
                    r,
                    Err(KeyringError::Refused(Refusal::ActivationTooEarly { .. }))
                )),
            "{name}: {results:?}"
        );
        let keyring = DbKeyring::new(t.db.clone(), kek(3));
        assert_eq!(keyring.version().await.unwrap(), Some(2), "{name}");
        let inspection = keyring.inspect().await.unwrap();
        let states: Vec<_> = inspection
            .manifest
            .keys
            .iter()
            .map(|k| k.state.name())
            .collect();
        assert_eq!(states, ["retired", "active", "pending"], "{name}");
    }
}

#[test]
fn a_kek_is_32_bytes_of_base64_and_its_file_is_private() {
    use std::os::unix::fs::PermissionsExt as _;
    assert!(Kek::from_text(&Kek::generate_text()).is_ok());
    // Standard base64 with padding, and surrounding whitespace, are fine.
    assert!(Kek::from_text(&format!(" {}= \n", "A".repeat(43))).is_ok());
    for bad in ["", "short", &"A".repeat(42), &"A".repeat(50)] {
        assert!(Kek::from_text(bad).is_err(), "{bad:?}");
    }
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("kek");
    std::fs::write(&path, Kek::generate_text()).unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
    let err = Kek::from_file(&path).unwrap_err().to_string();
    assert!(err.contains("chmod 600"), "{err}");
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
    assert!(Kek::from_file(&path).is_ok());
    assert_eq!(format!("{:?}", Kek::from_file(&path).unwrap()), "Kek(..)");
}
