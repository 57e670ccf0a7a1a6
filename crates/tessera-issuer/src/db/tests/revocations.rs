//! One live entry per kind and value, lifetimes from the database, the
//! database's clock for operators, and housekeeping (issue 15, items 6 and 8).

use super::*;
use crate::revocation::{Entry, Kind};
use crate::service::refresh::tests::{Outcome, refresh_once};
use std::time::Duration;

/// Adds an entry at `now` on the caller's clock; its id, new or covering.
pub(super) async fn add(db: &Db, kind: Kind, value: &str, now: i64, lifetime_secs: u64) -> i64 {
    let lifetime = Duration::from_secs(lifetime_secs);
    match db
        .add_revocation(kind, value, RevokedAt::Clock(now), lifetime, "test")
        .await
        .unwrap()
    {
        Revoked::Added(id) | Revoked::Covered(id) => id,
    }
}

async fn live(db: &Db, now: i64) -> Vec<Entry> {
    db.revocations_since(0, now).await.unwrap()
}

/// 200 logouts with one token and 200 `/revoke`s of one refresh token used
/// to add 400 entries of one hash; now the first adds one, the rest nothing.
#[tokio::test]
async fn a_repeated_revocation_adds_no_entry() {
    let ten_min = Duration::from_secs(600);
    for t in backends().await {
        let name = t.db.backend_name();
        let at = RevokedAt::Clock;
        let first =
            t.db.add_revocation(Kind::Sid, "s", at(100), ten_min, "logout")
                .await
                .unwrap();
        let Revoked::Added(id) = first else {
            panic!("{name}: {first:?}")
        };
        for i in 1..400 {
            let again =
                t.db.add_revocation(Kind::Sid, "s", at(100 + i), ten_min, "revoked")
                    .await
                    .unwrap();
            assert_eq!(again, Revoked::Covered(id), "{name}");
        }
        let entries = live(&t.db, 500).await;
        assert_eq!(entries.len(), 1, "{name}");
        // Nothing changed: not even its expiry, which already outlives
        // every token it covers.
        assert_eq!(entries[0].expires_at, 100 + 600 + 300, "{name}");
        // Another kind with the same value is another entry.
        let jti = add(&t.db, Kind::Jti, "s", 500, 600).await;
        assert!(jti > id, "{name}");

        // A user revoked again later covers more tokens: the entry is
        // replaced, under a new id the feed publishes. An earlier one adds
        // nothing.
        let sub = add(&t.db, Kind::Sub, "u", 100, 600).await;
        assert_eq!(
            t.db.add_revocation(Kind::Sub, "u", at(90), ten_min, "t")
                .await
                .unwrap(),
            Revoked::Covered(sub),
            "{name}"
        );
        let later = add(&t.db, Kind::Sub, "u", 150, 600).await;
        assert!(later > sub, "{name}");
        let subs: Vec<_> = live(&t.db, 200)
            .await
            .into_iter()
            .filter(|e| e.kind == Kind::Sub)
            .collect();
        assert_eq!(subs.len(), 1, "{name}: {subs:?}");
        assert_eq!((subs[0].id, subs[0].issued_before), (later, Some(150)));
    }
}

/// A CLI run with a shorter `access_token_lifetime` than the service's used
/// to add entries that expired before the tokens they revoke.
#[tokio::test]
async fn entries_outlive_the_longest_lifetime_any_instance_recorded() {
    for t in backends().await {
        let name = t.db.backend_name();
        let day = Duration::from_secs(86_400);
        t.db.record_lifetimes(Duration::from_secs(3600), day, day)
            .await
            .unwrap();
        // A later, shorter one does not lower it.
        t.db.record_lifetimes(Duration::from_secs(60), day, day)
            .await
            .unwrap();
        add(&t.db, Kind::Jti, "j", 1_000, 60).await;
        // A caller's own longer lifetime wins over the record.
        add(&t.db, Kind::Jti, "k", 1_000, 7_200).await;
        let expiry: Vec<_> = live(&t.db, 1_000)
            .await
            .into_iter()
            .map(|e| (e.value, e.expires_at))
            .collect();
        assert_eq!(
            expiry,
            [
                ("j".to_owned(), 1_000 + 3_600 + 300),
                ("k".to_owned(), 1_000 + 7_200 + 300)
            ],
            "{name}"
        );
    }
}

/// An operator's revocation takes the time from the database server, not
/// from the machine the CLI runs on. The database here shares this
/// machine's clock, so this shows the entry is stamped from a clock read
/// (not from a parameter, nor 0) consistently on both backends; a skewed
/// database clock cannot be staged in a test.
#[tokio::test]
async fn operator_revocations_take_the_database_clock() {
    let here = crate::unix_now(&tessera_keyring::SystemClock);
    for t in backends().await {
        let name = t.db.backend_name();
        let minute = Duration::from_secs(60);
        t.db.add_revocation(Kind::Sub, "u", RevokedAt::Database, minute, "operator")
            .await
            .unwrap();
        let entry = &live(&t.db, here - 3_600).await[0];
        // The database here runs on this machine: the same clock, give or
        // take the test's own duration.
        assert!(
            (here - 5..=here + 60).contains(&entry.created_at),
            "{name}: {entry:?} vs {here}"
        );
        assert_eq!(entry.issued_before, Some(entry.created_at), "{name}");
        assert_eq!(entry.expires_at, entry.created_at + 60 + 300, "{name}");
    }
}

async fn sealed_copies(db: &Db) -> i64 {
    on_pool!(db, |pool| sqlx::query_scalar(
        "SELECT COUNT(*) FROM refresh_tokens WHERE retry_sealed IS NOT NULL"
    )
    .fetch_one(pool)
    .await
    .unwrap())
}

/// Sessions, refresh tokens and sealed replay copies used to stay forever.
#[tokio::test]
async fn housekeeping_forgets_ended_sessions_and_spent_replay_copies() {
    for t in with_session().await {
        let name = t.db.backend_name();
        // Session s1 started at 100; used (rotated) at 200, which stores a
        // sealed copy of the new pair for a retry.
        assert!(matches!(
            refresh_once(&t.db, 1, 200, 10).await,
            Outcome::Rotated(_)
        ));
        assert_eq!(sealed_copies(&t.db).await, 1, "{name}");
        assert_eq!(t.db.forget_replay_copies(199).await.unwrap(), 0, "{name}");
        assert_eq!(t.db.forget_replay_copies(200).await.unwrap(), 1, "{name}");
        assert_eq!(sealed_copies(&t.db).await, 0, "{name}");

        // Idle lifetime 1000 s from the last use at 200; absolute 10000 s.
        // Another instance recorded an idle lifetime of 2000 s: it could
        // still refresh the session, so it stays until then.
        let long = Duration::from_secs(2_000);
        t.db.record_lifetimes(Duration::ZERO, long, Duration::ZERO)
            .await
            .unwrap();
        assert_eq!(t.db.forget_sessions(1_200, 1_000, 10_000).await.unwrap(), 0);
        // A later, shorter record does not lower it.
        t.db.record_lifetimes(Duration::ZERO, Duration::ZERO, Duration::ZERO)
            .await
            .unwrap();
        assert_eq!(t.db.forget_sessions(2_199, 1_000, 10_000).await.unwrap(), 0);
        assert_eq!(t.db.count_sessions().await.unwrap(), (1, 2), "{name}");
        assert_eq!(t.db.forget_sessions(2_200, 1_000, 10_000).await.unwrap(), 1);
        // Its refresh tokens went with it.
        assert_eq!(t.db.count_sessions().await.unwrap(), (0, 0), "{name}");
        // The absolute lifetime ends one however active.
        let session = NewSession {
            id: "s2",
            user_id: "u1",
            client_id: "tessera",
            scope: "profile",
            sso: None,
        };
        t.db.start_session(&session, Some(&[7; 32]), 5_000)
            .await
            .unwrap();
        assert_eq!(t.db.forget_sessions(5_100, 1_000, 100).await.unwrap(), 1);
    }
}
