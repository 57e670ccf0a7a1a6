//! The data-access layer on every backend: SQLite always, PostgreSQL when
//! `TESSERA_TEST_POSTGRES_URL` names a server (see [`super::scratch`]).

#![allow(clippy::unwrap_used, clippy::print_stderr)]

use super::scratch::{ScratchDatabase, postgres_required, postgres_url};
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
        t.db.start_session(&session, &OLD, 100).await.unwrap();
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
    match db.refresh(&OLD, rules, issue, seal, open).await.unwrap() {
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
            "sqlite" => vec![1, 2, 3],
            _ => vec![1, 2],
        };
        assert_eq!(versions, expected, "{name}");
    }
}
