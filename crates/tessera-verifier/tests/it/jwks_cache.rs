//! The JWKS cache against a real local HTTP server that counts requests.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::time::Duration;

use crate::common::*;
use serde_json::json;
use tessera_verifier::{
    AccessClaims, JwksSource, ManualClock, Verifier, VerifierConfig, VerifyError,
};

fn token(key: &TestKey) -> String {
    key.sign(&header(key.kid()), &claims())
}

#[tokio::test]
async fn keys_are_fetched_eagerly_and_discovered_from_the_issuer_metadata() {
    let ours = TestKey::load("ours");
    let server = JwksServer::start(jwks_of(&[&ours])).await;
    let mut cfg = VerifierConfig::new(server.url(), [AUDIENCE]);
    cfg.refresh_check_interval = Duration::from_millis(20);
    let verifier = Verifier::start(cfg, std::sync::Arc::new(ManualClock::new(NOW))).unwrap();
    // No request needed: the keys arrive at startup.
    assert!(verifier.ready(Duration::from_secs(5)).await);
    assert_eq!(verifier.kids(), ["test-ours"]);
    assert_eq!((server.metadata_requests(), server.jwks_requests()), (1, 1));
    let t = ours.sign(
        &header(ours.kid()),
        &claims_with(json!({"iss": server.url()})),
    );
    verifier.verify::<AccessClaims>(&t).await.unwrap();
    let health = verifier.health();
    assert!(health.loaded && health.usable && !health.stale);
    assert_eq!(health.key_count, 1);
}

#[tokio::test]
async fn metadata_for_another_issuer_is_refused() {
    let ours = TestKey::load("ours");
    let server = JwksServer::start(jwks_of(&[&ours])).await;
    server.set_metadata_issuer("http://evil.test");
    let cfg = VerifierConfig::new(server.url(), [AUDIENCE]);
    let verifier = Verifier::start(cfg, std::sync::Arc::new(ManualClock::new(NOW))).unwrap();
    eventually("a failed discovery", || {
        verifier.health().last_error.is_some()
    })
    .await;
    assert!(!verifier.health().loaded);
    assert!(verifier.health().last_error.unwrap().contains("issuer"));
    assert_eq!(
        server.jwks_requests(),
        0,
        "the JWKS of a mismatched issuer is never fetched"
    );
    let t = token(&ours);
    assert_eq!(
        verifier.verify::<AccessClaims>(&t).await.unwrap_err(),
        VerifyError::KeysUnavailable
    );
}

#[tokio::test]
async fn a_rotation_is_picked_up_by_an_unknown_kid_refetch() {
    let ours = TestKey::load("ours");
    let next = TestKey::load("attacker"); // plays the newly activated key here
    let server = JwksServer::start(jwks_of(&[&ours])).await;
    let (verifier, clock) = fetching_verifier(&server.jwks_url(), |_| {});
    assert!(verifier.ready(Duration::from_secs(5)).await);
    verifier
        .verify::<AccessClaims>(&token(&ours))
        .await
        .unwrap();
    // The issuer publishes and starts signing with a new key.
    server.set_jwks(jwks_of(&[&ours, &next]));
    verifier
        .verify::<AccessClaims>(&token(&next))
        .await
        .unwrap();
    assert_eq!(server.jwks_requests(), 2);
    assert_eq!(verifier.metrics().unknown_kid_refetches, 1);
    // Old and new keys both work, with no more fetches.
    verifier
        .verify::<AccessClaims>(&token(&ours))
        .await
        .unwrap();
    verifier
        .verify::<AccessClaims>(&token(&next))
        .await
        .unwrap();
    assert_eq!(server.jwks_requests(), 2);
    // The old key is withdrawn (revoked): once the set is refreshed, its tokens
    // fail, though the token and its header were cached and remembered.
    let old_token = token(&ours);
    verifier.verify::<AccessClaims>(&old_token).await.unwrap();
    server.set_jwks(jwks_of(&[&next]));
    clock.advance(300);
    eventually("the old key gone", || verifier.kids() == ["test-attacker"]).await;
    assert_eq!(
        verifier
            .verify::<AccessClaims>(&old_token)
            .await
            .unwrap_err(),
        VerifyError::UnknownKey
    );
    verifier
        .verify::<AccessClaims>(&token(&next))
        .await
        .unwrap();
}

#[tokio::test]
async fn a_thousand_random_kids_cause_at_most_one_fetch_per_cooldown() {
    let ours = TestKey::load("ours");
    let server = JwksServer::start(jwks_of(&[&ours])).await;
    let (verifier, clock) = fetching_verifier(&server.jwks_url(), |_| {});
    assert!(verifier.ready(Duration::from_secs(5)).await);
    let burst = |round: u32| {
        let verifier = verifier.clone();
        let ours = TestKey::load("ours");
        async move {
            let tasks: Vec<_> = (0..1000)
                .map(|i| {
                    let t = ours.sign(&header(&format!("forged-{round}-{i}")), &claims());
                    let v = verifier.clone();
                    tokio::spawn(async move { v.verify::<AccessClaims>(&t).await })
                })
                .collect();
            for task in tasks {
                assert_eq!(task.await.unwrap().unwrap_err(), VerifyError::UnknownKey);
            }
        }
    };
    burst(0).await;
    assert_eq!(server.jwks_requests(), 2, "startup + one refetch");
    burst(1).await;
    assert_eq!(server.jwks_requests(), 2, "still within the cooldown");
    clock.advance(30);
    burst(2).await;
    assert_eq!(server.jwks_requests(), 3, "one more after the cooldown");
    assert_eq!(verifier.metrics().failed("unknown_key"), 3000);
    // Known kids were never affected.
    verifier
        .verify::<AccessClaims>(&token(&ours))
        .await
        .unwrap();
}

#[tokio::test]
async fn cached_keys_keep_working_while_the_issuer_is_down_until_the_stale_limit() {
    let ours = TestKey::load("ours");
    let server = JwksServer::start(jwks_of(&[&ours])).await;
    server.set_max_age(300);
    let (verifier, clock) = fetching_verifier(&server.jwks_url(), |c| {
        c.stale_if_error = Duration::from_secs(3600);
    });
    assert!(verifier.ready(Duration::from_secs(5)).await);
    let t = ours.sign(
        &header(ours.kid()),
        &claims_with(json!({"exp": NOW + 10_000})),
    );
    // The issuer goes away (connection refused), and the set's lifetime passes.
    let jwks_url = server.jwks_url();
    drop(server);
    clock.advance(301);
    eventually("a failed refresh", || {
        verifier.health().last_error.is_some()
    })
    .await;
    let h = verifier.health();
    assert!(h.stale && h.usable, "{h:?}");
    verifier.verify::<AccessClaims>(&t).await.unwrap();
    assert!(verifier.metrics().stale_verifications >= 1);
    // Bad tokens are still refused.
    let attacker = TestKey::load("attacker");
    assert_eq!(
        verifier
            .verify::<AccessClaims>(&attacker.sign(&header(ours.kid()), &claims()))
            .await
            .unwrap_err(),
        VerifyError::BadSignature
    );
    // Past lifetime + stale-if-error, nothing verifies: fail closed.
    clock.advance(3600);
    assert_eq!(
        verifier.verify::<AccessClaims>(&t).await.unwrap_err(),
        VerifyError::KeysUnavailable
    );
    assert!(!verifier.health().usable);
    let _ = jwks_url;
}

#[tokio::test]
async fn garbage_or_an_empty_set_never_replaces_a_good_one() {
    let ours = TestKey::load("ours");
    let server = JwksServer::start(jwks_of(&[&ours])).await;
    server.set_max_age(60);
    let (verifier, clock) = fetching_verifier(&server.jwks_url(), |_| {});
    assert!(verifier.ready(Duration::from_secs(5)).await);
    for mode in [Mode::Garbage, Mode::NoUsableKeys, Mode::Error] {
        server.set_mode(mode);
        let before = verifier.metrics().jwks_fetch_errors;
        clock.advance(61);
        eventually("a refused refresh", || {
            verifier.metrics().jwks_fetch_errors > before
        })
        .await;
        assert_eq!(verifier.kids(), ["test-ours"], "{mode:?}");
        verifier
            .verify::<AccessClaims>(&token(&ours))
            .await
            .unwrap();
        assert!(verifier.health().last_error.is_some());
    }
    // Back up: the next refresh succeeds and clears the error.
    server.set_mode(Mode::Up);
    eventually("recovery", || verifier.health().last_error.is_none()).await;
    assert!(!verifier.health().stale);
}

#[tokio::test]
async fn max_age_is_honoured_and_revalidation_uses_the_etag() {
    let ours = TestKey::load("ours");
    let server = JwksServer::start(jwks_of(&[&ours])).await;
    server.set_max_age(120);
    let (verifier, clock) = fetching_verifier(&server.jwks_url(), |_| {});
    assert!(verifier.ready(Duration::from_secs(5)).await);
    assert_eq!(server.jwks_requests(), 1);
    // Before 80 % of max-age: no request.
    clock.advance(90);
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(server.jwks_requests(), 1);
    // Ahead of expiry: revalidated in the background with If-None-Match → 304.
    clock.advance(10);
    eventually("a revalidation", || server.not_modified() == 1).await;
    eventually("the 304 counted", || {
        verifier.metrics().jwks_not_modified == 1
    })
    .await;
    assert_eq!(server.jwks_requests(), 2);
    // The 304 renewed the lifetime: nothing more until 80 % of it has passed again.
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(server.jwks_requests(), 2);
    // max-age above the configured maximum is clamped; below the minimum, raised.
    server.set_max_age(1);
    let next = TestKey::load("attacker");
    server.set_jwks(jwks_of(&[&ours, &next]));
    clock.advance(100);
    eventually("a changed set", || verifier.kids().len() == 2).await;
    let fetched = server.jwks_requests();
    clock.advance(30); // under the 60 s minimum lifetime despite max-age=1
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(server.jwks_requests(), fetched);
}

#[tokio::test]
async fn requests_with_known_kids_are_not_blocked_by_a_slow_fetch() {
    let ours = TestKey::load("ours");
    let server = JwksServer::start(jwks_of(&[&ours])).await;
    let (verifier, _clock) = fetching_verifier(&server.jwks_url(), |_| {});
    assert!(verifier.ready(Duration::from_secs(5)).await);
    server.set_mode(Mode::Slow(Duration::from_secs(2)));
    // An unknown kid starts a refetch that takes 2 s.
    let unknown = ours.sign(&header("brand-new"), &claims());
    let v = verifier.clone();
    let slow = tokio::spawn(async move { v.verify::<AccessClaims>(&unknown).await });
    eventually("the slow fetch to start", || server.jwks_requests() == 2).await;
    // Meanwhile, known kids verify at once.
    let good = token(&ours);
    let start = tokio::time::Instant::now();
    for _ in 0..100 {
        verifier.verify::<AccessClaims>(&good).await.unwrap();
    }
    assert!(
        start.elapsed() < Duration::from_secs(1),
        "{:?}",
        start.elapsed()
    );
    assert!(!slow.is_finished(), "the slow fetch is still in flight");
    assert_eq!(slow.await.unwrap().unwrap_err(), VerifyError::UnknownKey);
}

#[tokio::test]
async fn static_keys_are_never_fetched() {
    let ours = TestKey::load("ours");
    let (set, _) = tessera_verifier::KeySet::from_jwks_json(
        jwks_of(&[&ours]).to_string().as_bytes(),
        &["RS256"],
    )
    .unwrap();
    let cfg = VerifierConfig::new(ISSUER, [AUDIENCE]).with_jwks(JwksSource::Static(set));
    let verifier = Verifier::start(cfg, std::sync::Arc::new(ManualClock::new(NOW))).unwrap();
    verifier
        .verify::<AccessClaims>(&token(&ours))
        .await
        .unwrap();
    let unknown = ours.sign(&header("other"), &claims());
    assert_eq!(
        verifier.verify::<AccessClaims>(&unknown).await.unwrap_err(),
        VerifyError::UnknownKey
    );
    assert_eq!(verifier.metrics().jwks_fetches, 0);
}
