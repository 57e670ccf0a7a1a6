//! The data-access layer on every backend: SQLite always, PostgreSQL when
//! `TESSERA_TEST_POSTGRES_URL` names a server (see `tessera_testkit::pg`).

#![allow(clippy::unwrap_used, clippy::print_stderr)]

use super::rotation::Rotation;
use super::*;
use tessera_testkit::pg::{ScratchDatabase, postgres_required, postgres_url};

/// A database, and what keeps it alive.
pub(crate) struct TestDb {
    pub(crate) db: Db,
    pub(crate) url: String,
    _dir: tempfile::TempDir,
    _scratch: Option<ScratchDatabase>,
}

/// A fresh database on each backend available.
pub(crate) async fn backends() -> Vec<TestDb> {
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
pub(crate) async fn with_session() -> Vec<TestDb> {
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
            sso: None,
        };
        t.db.start_session(&session, Some(&OLD), 100).await.unwrap();
    }
    all
}

pub(crate) const OLD: [u8; 32] = [1; 32];

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

mod keyring;
mod revocations;
mod throttle;

/// Found by the soak (issue 21): with its disk full, the SQLite issuer
/// answered 500. SQLite's `SQLITE_FULL` (here from `max_page_count`, as a
/// full disk gives it) is now "unavailable" (a 503 with `Retry-After`), like
/// PostgreSQL's disk_full; a refused write (a constraint) still is not.
#[tokio::test]
async fn a_full_disk_is_unavailable_not_an_internal_error() {
    use sqlx::ConnectOptions as _;
    use std::str::FromStr as _;
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("full.db").display());
    let mut conn = sqlx::sqlite::SqliteConnectOptions::from_str(&url)
        .unwrap()
        .create_if_missing(true)
        .connect()
        .await
        .unwrap();
    sqlx::query("CREATE TABLE t (x TEXT UNIQUE)")
        .execute(&mut conn)
        .await
        .unwrap();
    sqlx::query("INSERT INTO t VALUES ('a')")
        .execute(&mut conn)
        .await
        .unwrap();
    // No page beyond what the file has now: the next that needs one fails.
    sqlx::query("PRAGMA max_page_count = 1")
        .execute(&mut conn)
        .await
        .unwrap();
    let full = sqlx::query("INSERT INTO t VALUES (?)")
        .bind("x".repeat(64 * 1024))
        .execute(&mut conn)
        .await
        .unwrap_err();
    let full = DbError::Sqlx {
        action: "writing",
        source: full,
    };
    assert!(full.is_unavailable(), "{full}");
    let refused = sqlx::query("INSERT INTO t VALUES ('a')")
        .execute(&mut conn)
        .await
        .unwrap_err();
    let refused = DbError::Sqlx {
        action: "writing",
        source: refused,
    };
    assert!(!refused.is_unavailable(), "{refused}");
}

/// Found by the soak (issue 21): a `COMMIT` that fails after SQLite already
/// ended the transaction (as on a full disk) left sqlx counting the writer
/// as inside a transaction, and every later write transaction was refused
/// for the life of the process. Here SQLite ends the transaction behind
/// sqlx's back, so that sqlx's own `COMMIT`, then its rollback, fail just
/// so; the next writes must work.
#[tokio::test]
async fn a_writer_left_inside_a_failed_transaction_recovers() {
    use sqlx::Connection as _;
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("t.db").display());
    let db = Db::connect(&url).await.unwrap();
    db.migrate().await.unwrap();
    let Backend::Sqlite(backend) = &db.backend else {
        unreachable!("a sqlite URL")
    };
    {
        let mut conn = backend.writer.lock().await.unwrap();
        let mut tx = conn.begin_with("BEGIN IMMEDIATE").await.unwrap();
        sqlx::query("COMMIT").execute(&mut *tx).await.unwrap();
        assert!(tx.commit().await.is_err(), "sqlx's COMMIT finds none open");
    }
    // Write transactions (each migration is one, `BEGIN IMMEDIATE` on the
    // writer) go on working, and so do plain writes on it.
    db.migrate().await.unwrap();
    let s = std::time::Duration::from_secs;
    db.record_lifetimes(s(60), s(120), s(240)).await.unwrap();
}
