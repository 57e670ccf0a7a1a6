//! Login throttling's shared counts on every backend.

use super::*;

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
