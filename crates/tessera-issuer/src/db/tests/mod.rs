//! The data-access layer on every backend: SQLite always, PostgreSQL when
//! `TESSERA_TEST_POSTGRES_URL` names a server (see [`super::scratch`]).

#![allow(clippy::unwrap_used, clippy::print_stderr)]

use super::scratch::{ScratchDatabase, postgres_required, postgres_url};
use super::sessions::Rotation;
use super::users::User;
use super::*;

/// A database, and what keeps it alive.
struct TestDb {
    db: Db,
    url: String,
    _dir: tempfile::TempDir,
    _scratch: Option<ScratchDatabase>,
}

/// A fresh database on each backend available.
async fn backends() -> Vec<TestDb> {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("t.db").display());
    let mut all = vec![TestDb {
        db: Db::connect(&url).await.unwrap(),
        url,
        _dir: dir,
        _scratch: None,
    }];
    match postgres_url() {
        Some(admin) => {
            let scratch = ScratchDatabase::create(&admin).await.unwrap();
            let url = scratch.url().to_owned();
            all.push(TestDb {
                db: Db::connect(&url).await.unwrap(),
                url,
                _dir: tempfile::tempdir().unwrap(),
                _scratch: Some(scratch),
            });
        }
        None => {
            assert!(!postgres_required(), "TESSERA_TEST_POSTGRES_URL is not set");
            eprintln!("TESSERA_TEST_POSTGRES_URL is not set: SQLite only");
        }
    }
    all
}

/// Each backend with one user and one session whose refresh token is `[1; 32]`.
async fn with_session() -> Vec<TestDb> {
    let all = backends().await;
    for t in &all {
        t.db.add_user("u1", "alice", "$argon2id$x", &[], 100)
            .await
            .unwrap();
        let session = NewSession {
            id: "s1",
            user_id: "u1",
            client_id: "tessera",
            scope: "profile",
        };
        t.db.start_session(&session, Some(&OLD), 100).await.unwrap();
    }
    all
}

const OLD: [u8; 32] = [1; 32];

async fn rotate(db: &Db, new: &[u8; 32], now: i64) -> Result<bool, DbError> {
    let rotation = Rotation {
        old_hash: OLD,
        new_hash: *new,
        session_id: "s1".to_owned(),
        sealed: None,
        now,
    };
    match &db.backend {
        Backend::Sqlite(backend) => backend.rotate(rotation).await,
        Backend::Postgres(backend) => backend.rotate(&rotation).await,
    }
}

async fn used_at(db: &Db, hash: &[u8; 32]) -> Option<i64> {
    on_pool!(db, |pool| sqlx::query_scalar(
        "SELECT used_at FROM refresh_tokens WHERE hash = $1"
    )
    .bind(&hash[..])
    .fetch_one(pool)
    .await
    .unwrap())
}

#[tokio::test]
async fn in_memory_and_foreign_urls_are_refused() {
    for url in [
        "sqlite::memory:",
        "sqlite://file:x?mode=memory",
        "mysql://db/x",
        "issuer.db",
    ] {
        assert!(
            matches!(Db::connect(url).await, Err(DbError::UnsupportedUrl(_))),
            "{url}"
        );
    }
}

#[tokio::test]
async fn users_round_trip_on_every_backend() {
    for t in backends().await {
        let db = &t.db;
        let name = db.backend_name();
        db.add_user("u1", "bob", "$h1", &["admin".to_owned()], 10)
            .await
            .unwrap();
        db.add_user("u2", "alice", "$h2", &[], 11).await.unwrap();
        assert!(
            matches!(
                db.add_user("u3", "bob", "$h3", &[], 12).await,
                Err(DbError::UserExists(_))
            ),
            "{name}"
        );
        db.set_disabled("bob", true, 20).await.unwrap();
        db.set_roles("alice", &["ops".to_owned()], 21)
            .await
            .unwrap();
        db.set_password_hash("alice", "$h2b", 22).await.unwrap();
        let users = db.list_users().await.unwrap();
        let summary: Vec<_> = users
            .iter()
            .map(|u| (u.username.as_str(), u.disabled, u.roles.clone()))
            .collect();
        assert_eq!(
            summary,
            [
                ("alice", false, vec!["ops".to_owned()]),
                ("bob", true, vec!["admin".to_owned()])
            ],
            "{name}"
        );
        let alice = db.credentials("alice").await.unwrap().unwrap();
        assert_eq!(alice.password_hash, "$h2b", "{name}");
        assert_eq!(alice.user.created_at, 11, "{name}");
        assert!(db.credentials("carol").await.unwrap().is_none(), "{name}");
        for result in [
            db.set_disabled("carol", true, 1).await,
            db.delete_user("carol").await,
        ] {
            assert!(matches!(result, Err(DbError::NoSuchUser(_))), "{name}");
        }
        db.delete_user("bob").await.unwrap();
        assert_eq!(db.count_users().await.unwrap(), 1, "{name}");
    }
}

#[tokio::test]
async fn a_token_rotates_once_and_only_once() {
    for t in with_session().await {
        let db = &t.db;
        assert!(rotate(db, &[2; 32], 200).await.unwrap());
        assert_eq!(used_at(db, &OLD).await, Some(200));
        assert_eq!(
            db.refresh_token_session(&[2; 32]).await.unwrap().as_deref(),
            Some("s1")
        );
        // The same token again: nothing changes, no second successor.
        assert!(!rotate(db, &[3; 32], 201).await.unwrap());
        assert_eq!(used_at(db, &OLD).await, Some(200));
        assert_eq!(db.refresh_token_session(&[3; 32]).await.unwrap(), None);
        assert_eq!(db.count_sessions().await.unwrap(), (1, 2));
    }
}

#[tokio::test]
async fn a_session_revoked_before_the_write_rotates_nothing() {
    for t in with_session().await {
        let db = &t.db;
        db.revoke_session("s1", 150, "logout").await.unwrap();
        assert!(!db.session_active("s1").await.unwrap());
        assert!(!rotate(db, &[2; 32], 200).await.unwrap());
        // The old token is not marked used and no successor exists.
        assert_eq!(used_at(db, &OLD).await, None);
        assert_eq!(db.count_sessions().await.unwrap(), (1, 1));
    }
}

#[tokio::test]
async fn a_failing_rotation_leaves_nothing_half_done() {
    for t in with_session().await {
        let db = &t.db;
        // The successor's hash collides with an existing token: the INSERT
        // fails after the old token was marked used, inside the transaction.
        assert!(rotate(db, &OLD, 200).await.is_err());
        assert_eq!(used_at(db, &OLD).await, None, "the mark was rolled back");
        // The connection is usable again, outside any transaction.
        assert!(rotate(db, &[2; 32], 201).await.unwrap());
        assert_eq!(used_at(db, &OLD).await, Some(201));
    }
}

/// What one `refresh` call came to, reduced to what the client sees.
#[derive(Debug, PartialEq, Eq)]
enum Outcome {
    Rotated(Vec<u8>),
    Replayed(Vec<u8>),
    Other(String),
}

async fn refresh_once(db: &Db, n: u8, now: i64, retry_window: i64) -> Outcome {
    let rules = RefreshRules {
        now,
        idle: 1_000,
        absolute: 10_000,
        retry_window,
    };
    let issue = |_: &User, _: &SessionInfo| {
        Ok(Issued {
            response: format!("pair {n}").into_bytes(),
            new_hash: [n + 10; 32],
        })
    };
    // The "sealing" is the identity here: what is under test is which
    // response comes back, not the encryption (see oauth's tests).
    let seal = |r: &[u8]| Some(r.to_vec());
    let open = |r: &[u8]| Some(r.to_vec());
    match db
        .refresh(&OLD, rules, |_| Ok(()), issue, seal, open)
        .await
        .unwrap()
    {
        Refresh::Rotated { response, .. } => Outcome::Rotated(response),
        Refresh::Replayed { response, .. } => Outcome::Replayed(response),
        other => Outcome::Other(format!("{other:?}")),
    }
}

/// Two handles on one database stand for two issuer instances (on SQLite, two
/// processes on one file). Twenty uses of one token at once, split between
/// them: exactly one rotation, and every other use gets that same pair back.
#[tokio::test]
async fn concurrent_uses_across_instances_rotate_exactly_once() {
    for t in with_session().await {
        let name = t.db.backend_name();
        let other = Db::connect(&t.url).await.unwrap();
        let uses = (0..20u8).map(|n| {
            let db = if n % 2 == 0 {
                t.db.clone()
            } else {
                other.clone()
            };
            tokio::spawn(async move { refresh_once(&db, n, 200, 10).await })
        });
        let mut outcomes = Vec::new();
        for task in uses.collect::<Vec<_>>() {
            outcomes.push(task.await.unwrap());
        }
        let rotated: Vec<_> = outcomes
            .iter()
            .filter_map(|o| match o {
                Outcome::Rotated(r) => Some(r.clone()),
                _ => None,
            })
            .collect();
        assert_eq!(rotated.len(), 1, "{name}: {outcomes:?}");
        for outcome in &outcomes {
            match outcome {
                Outcome::Rotated(_) => {}
                Outcome::Replayed(r) => assert_eq!(r, &rotated[0], "{name}"),
                Outcome::Other(o) => panic!("{name}: a concurrent use got {o}"),
            }
        }
        // One successor stored, one session, still live.
        assert_eq!(t.db.count_sessions().await.unwrap(), (1, 2), "{name}");
        assert!(other.session_active("s1").await.unwrap(), "{name}");
    }
}

/// A retry window of 0 turns replays off: the same token again, even in the
/// same second, is reuse.
#[tokio::test]
async fn a_retry_window_of_zero_makes_every_second_use_reuse() {
    for t in with_session().await {
        let name = t.db.backend_name();
        assert!(matches!(
            refresh_once(&t.db, 1, 200, 0).await,
            Outcome::Rotated(_)
        ));
        let again = refresh_once(&t.db, 2, 200, 0).await;
        assert!(
            matches!(&again, Outcome::Other(o) if o.starts_with("Reused")),
            "{name}: {again:?}"
        );
    }
}

/// Outside the retry window a second use is reuse: the family is revoked,
/// through either instance, and stays revoked.
#[tokio::test]
async fn reuse_after_the_window_revokes_the_family_on_every_instance() {
    for t in with_session().await {
        let name = t.db.backend_name();
        let other = Db::connect(&t.url).await.unwrap();
        assert!(matches!(
            refresh_once(&t.db, 1, 200, 10).await,
            Outcome::Rotated(_)
        ));
        let reused = refresh_once(&other, 2, 300, 10).await;
        assert!(
            matches!(&reused, Outcome::Other(o) if o.starts_with("Reused")),
            "{name}: {reused:?}"
        );
        assert!(!t.db.session_active("s1").await.unwrap(), "{name}");
        let again = refresh_once(&t.db, 3, 301, 10).await;
        assert_eq!(
            again,
            Outcome::Other("Refused(\"session_revoked\")".to_owned()),
            "{name}"
        );
    }
}

/// Instances starting together migrate one empty database once, without
/// failing each other.
/// The feed's cursor is the entry id: after the newest entries expire and
/// are purged, the next id must still be higher (SQLite reuses max(id) + 1
/// without AUTOINCREMENT), or pollers would skip the new entry.
#[tokio::test]
async fn revocation_ids_never_go_back_after_a_purge() {
    use crate::revocation::Kind;
    for t in backends().await {
        let name = t.db.backend_name();
        let mut last = 0;
        // Lifetime 0: each entry lives the leeway only (300 s).
        for value in ["a", "b"] {
            last = revocations::add(&t.db, Kind::Sid, value, 1, 0).await;
        }
        // Both expired; the newest row stays (feed cursors follow its id).
        assert_eq!(t.db.purge_revocations(301).await.unwrap(), 1, "{name}");
        assert_eq!(t.db.revocation_newest_id().await.unwrap(), last, "{name}");
        let next = revocations::add(&t.db, Kind::Sid, "c", 302, 0).await;
        assert!(next > last, "{name}: id {next} after {last}");
        let epoch = t.db.revocation_epoch().await.unwrap();
        assert_eq!(epoch.len(), 16, "{name}: {epoch}");
    }
}

#[tokio::test]
async fn instances_starting_together_migrate_once() {
    for t in backends().await {
        let name = t.db.backend_name();
        let starts = (0..4).map(|_| {
            let url = t.url.clone();
            tokio::spawn(async move { Db::connect(&url).await.map(|_| ()) })
        });
        for start in starts.collect::<Vec<_>>() {
            start.await.unwrap().unwrap();
        }
        let versions: Vec<i64> = on_pool!(t.db, |pool| sqlx::query_scalar(
            "SELECT version FROM schema_migrations ORDER BY version"
        )
        .fetch_all(pool)
        .await
        .unwrap());
        let expected: Vec<i64> = match name {
            "sqlite" => super::sqlite::MIGRATIONS.iter().map(|m| m.0).collect(),
            _ => super::postgres::MIGRATIONS.iter().map(|m| m.0).collect(),
        };
        assert_eq!(expected, (1..=expected.len() as i64).collect::<Vec<_>>());
        assert_eq!(versions, expected, "{name}");
    }
}

mod keyring {
    //! The database keyring on every backend.

    use std::sync::Arc;
    use std::time::{Duration, SystemTime};

    use tessera_keyring::{FixedClock, KeyState, KeyringError, Refusal, RotationPolicy};

    use super::super::keyring::{DbKeyring, Kek};
    use super::*;

    const BITS: usize = 2048;

    fn kek(byte: u8) -> Kek {
        use base64::Engine as _;
        Kek::from_text(&base64::engine::general_purpose::URL_SAFE_NO_PAD.encode([byte; 32]))
            .unwrap()
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
            let init = keyring.init(BITS).await.unwrap();
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
            let init = keyring.init(BITS).await.unwrap();
            assert!(matches!(
                keyring.init(BITS).await,
                Err(KeyringError::AlreadyInitialised { count: 2, .. })
            ));
            // Too early to activate the pending key; the refusal changes nothing.
            let early = keyring.rotate(&policy, false, BITS).await.unwrap_err();
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
            let rotated = later.rotate(&policy, false, BITS).await.unwrap();
            assert_eq!(rotated.activated, init.pending, "{name}");
            assert_eq!(rotated.retired.as_deref(), Some(init.active.as_str()));
            let (loaded, version) = later.load().await.unwrap();
            assert_eq!(version, 2, "{name}");
            assert_eq!(loaded.signer().kid(), init.pending, "{name}");
            assert_eq!(loaded.jwks().keys.len(), 3, "{name}");
            // Revoking the active key promotes the pending one at once.
            let revoked = later.revoke(&init.pending, &policy, BITS).await.unwrap();
            assert_eq!(
                revoked.promoted.as_ref().map(|p| p.kid.as_str()),
                Some(rotated.new_pending.as_str()),
                "{name}"
            );
            // A day later, prune drops the revoked and the retired key, rows too.
            let pruned = keyring
                .clone()
                .with_clock(at(1_000 + 86_400))
                .prune(&policy, false)
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
                inspection.manifest.keys.iter().all(|k| !matches!(
                    k.state,
                    KeyState::Revoked { .. } | KeyState::Retired { .. }
                )),
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
                .init(BITS)
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
                    tokio::spawn(async move { keyring.rotate_to(&policy, false, key).await })
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
}

/// Login attempts reserved on one instance count on another: the counts
/// live in the database, not in each instance's memory; a right password
/// releases its reservation; a quiet hour forgets.
#[tokio::test]
async fn login_attempts_are_reserved_in_the_database_shared_by_instances() {
    use crate::throttle::{Reservation, Throttle};
    for t in backends().await {
        let name = t.db.backend_name();
        let other = Db::connect(&t.url).await.unwrap();
        let (here, there) = (Throttle::new(2, 100), Throttle::new(2, 100));
        let ip = Some("192.0.2.9".parse().unwrap());
        let granted = |r: Reservation| match r {
            Reservation::Granted(r) => r,
            Reservation::Blocked { retry_after } => panic!("{name}: blocked for {retry_after}"),
        };
        let blocked = |r: Reservation| match r {
            Reservation::Blocked { retry_after } => retry_after,
            Reservation::Granted(_) => panic!("{name}: not blocked"),
        };
        // Two free attempts, one on each instance; the third blocks (1 s).
        let _ = granted(here.reserve(&t.db, "alice", ip, 1_000).await.unwrap());
        let _ = granted(there.reserve(&other, "alice", ip, 1_000).await.unwrap());
        let _ = granted(there.reserve(&other, "alice", ip, 1_000).await.unwrap());
        assert_eq!(
            blocked(here.reserve(&t.db, "alice", ip, 1_000).await.unwrap()),
            1,
            "{name}: the block set elsewhere holds here"
        );
        let _ = granted(here.reserve(&t.db, "alice", ip, 1_001).await.unwrap());
        assert_eq!(
            blocked(there.reserve(&other, "alice", None, 1_001).await.unwrap()),
            2,
            "{name}: the delay grows with attempts on every instance"
        );
        let bob = granted(there.reserve(&other, "bob", None, 1_001).await.unwrap());
        // A right password anywhere clears the username everywhere.
        here.release(&t.db, bob, 1_001).await.unwrap();
        let alice = granted(here.reserve(&t.db, "alice", ip, 1_003).await.unwrap());
        here.release(&t.db, alice, 1_003).await.unwrap();
        for _ in 0..2 {
            let _ = granted(here.reserve(&t.db, "alice", ip, 1_003).await.unwrap());
        }
        t.db.throttle_forget(1_004, 0).await.unwrap();
        let left: i64 = on_pool!(t.db, |pool| sqlx::query_scalar(
            "SELECT COUNT(*) FROM login_failures"
        )
        .fetch_one(pool)
        .await
        .unwrap());
        assert_eq!(left, 0, "{name}: a quiet key is forgotten");
        // Whatever a client sends as a username is a plain key: NUL bytes
        // (which PostgreSQL's text refuses) and megabytes alike.
        for odd in ["a\u{0}b", &"x".repeat(100_000)] {
            let _ = granted(here.reserve(&t.db, odd, None, 2_000).await.unwrap());
        }
    }
}

/// Parallel attempts for one username, from two instances at once, are
/// counted one by one: no more than the free ones plus the one that blocks
/// get through, however many race.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn parallel_reservations_never_pass_the_limit() {
    use crate::throttle::{Reservation, Throttle};
    for t in backends().await {
        let name = t.db.backend_name();
        let other = Db::connect(&t.url).await.unwrap();
        let throttles = std::sync::Arc::new((Throttle::new(5, 1_000), Throttle::new(5, 1_000)));
        let tasks: Vec<_> = (0..40)
            .map(|i| {
                let db = if i % 2 == 0 {
                    t.db.clone()
                } else {
                    other.clone()
                };
                let throttles = std::sync::Arc::clone(&throttles);
                tokio::spawn(async move {
                    let throttle = if i % 2 == 0 {
                        &throttles.0
                    } else {
                        &throttles.1
                    };
                    matches!(
                        throttle.reserve(&db, "victim", None, 5_000).await.unwrap(),
                        Reservation::Granted(_)
                    )
                })
            })
            .collect();
        let mut granted = 0;
        for task in tasks {
            granted += usize::from(task.await.unwrap());
        }
        assert_eq!(granted, 6, "{name}: 5 free and the one that blocks");
    }
}

/// An address blocked for spraying still lets in a user it is known for,
/// with the right password; the username's own limit still holds for them.
#[tokio::test]
async fn a_blocked_address_still_lets_in_users_known_there() {
    use crate::throttle::{Reservation, Throttle};
    for t in backends().await {
        let name = t.db.backend_name();
        let throttle = Throttle::new(3, 5);
        let proxy = Some("203.0.113.1".parse().unwrap());
        let Reservation::Granted(alice) =
            throttle.reserve(&t.db, "alice", proxy, 100).await.unwrap()
        else {
            panic!("{name}");
        };
        throttle.release(&t.db, alice, 100).await.unwrap();
        // Spraying from the same address: 5 free, the 6th blocks it.
        for i in 0..6 {
            let user = format!("guess{i}");
            assert!(matches!(
                throttle.reserve(&t.db, &user, proxy, 101).await.unwrap(),
                Reservation::Granted(_)
            ));
        }
        assert!(
            matches!(
                throttle.reserve(&t.db, "carol", proxy, 101).await.unwrap(),
                Reservation::Blocked { .. }
            ),
            "{name}: the address is blocked for users it does not know"
        );
        let Reservation::Granted(alice) =
            throttle.reserve(&t.db, "alice", proxy, 101).await.unwrap()
        else {
            panic!("{name}: alice is known at this address");
        };
        throttle.release(&t.db, alice, 101).await.unwrap();
        // Her own limit: 3 free, then blocked even at a known address.
        for _ in 0..4 {
            assert!(matches!(
                throttle.reserve(&t.db, "alice", proxy, 102).await.unwrap(),
                Reservation::Granted(_)
            ));
        }
        assert!(
            matches!(
                throttle.reserve(&t.db, "alice", proxy, 102).await.unwrap(),
                Reservation::Blocked { .. }
            ),
            "{name}"
        );
    }
}

/// Revocation entries are numbered in commit order on every backend, so a
/// reader following a cursor while two instances add entries sees every one.
#[tokio::test]
async fn a_cursor_following_the_revocation_list_misses_nothing() {
    use crate::revocation::Kind;
    for t in backends().await {
        let name = t.db.backend_name();
        let other = Db::connect(&t.url).await.unwrap();
        let writers: Vec<_> = (0..2)
            .map(|w| {
                let db = if w == 0 { t.db.clone() } else { other.clone() };
                tokio::spawn(async move {
                    for i in 0..40 {
                        // Expires at 100 + 600 + 300 (leeway) = 1000.
                        revocations::add(&db, Kind::Jti, &format!("w{w}-{i}"), 100, 600).await;
                    }
                })
            })
            .collect();
        let reader = {
            let db = t.db.clone();
            tokio::spawn(async move {
                let (mut cursor, mut seen) = (0, Vec::new());
                for _ in 0..10_000 {
                    for entry in db.revocations_since(cursor, 100).await.unwrap() {
                        assert!(entry.id > cursor, "ids are increasing");
                        cursor = entry.id;
                        seen.push(entry.value);
                    }
                    if seen.len() == 80 {
                        break;
                    }
                    tokio::task::yield_now().await;
                }
                seen
            })
        };
        for w in writers {
            w.await.unwrap();
        }
        let seen = reader.await.unwrap();
        assert_eq!(seen.len(), 80, "{name}: the cursor skipped entries");
        // Expired entries are not served, and are dropped.
        db_expiry_checks(&t.db, name).await;
    }
}

async fn db_expiry_checks(db: &Db, name: &str) {
    use crate::revocation::Kind;
    // Expires at 500 + 1200 + 300 (leeway) = 2000.
    revocations::add(db, Kind::Sub, "u1", 500, 1_200).await;
    assert_eq!(
        db.revocations_since(0, 1_000).await.unwrap().len(),
        1,
        "{name}"
    );
    let sub = &db.revocations_since(0, 1_000).await.unwrap()[0];
    assert_eq!((sub.kind, sub.issued_before), (Kind::Sub, Some(500)));
    assert_eq!(db.purge_revocations(1_000).await.unwrap(), 80, "{name}");
    assert_eq!(
        db.revocations_since(0, 2_000).await.unwrap().len(),
        0,
        "{name}"
    );
}

/// A new SQLite database and its `-wal` and `-shm` files are 0600 (they
/// were 0644: readable by every local user, sessions and all).
#[tokio::test]
async fn a_new_sqlite_database_is_private() {
    use std::os::unix::fs::PermissionsExt as _;
    let tmp = tempfile::tempdir().unwrap();
    let path = tmp.path().join("issuer.db");
    let db = Db::connect(&format!("sqlite://{}", path.display()))
        .await
        .unwrap();
    db.add_user("u1", "alice", "$argon2id$x", &[], 1)
        .await
        .unwrap();
    for suffix in ["", "-wal", "-shm"] {
        let file = tmp.path().join(format!("issuer.db{suffix}"));
        let mode = std::fs::metadata(&file).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600, "{}", file.display());
    }
}

mod revocations;
