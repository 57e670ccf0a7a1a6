//! Two issuers in one `VerifierSet`: each token goes to its issuer's member,
//! which verifies it with that issuer's keys and audiences only. A token
//! signed by issuer A's key that claims issuer B is refused; an unknown
//! issuer is refused.

use std::sync::Arc;

use crate::common::*;
use serde_json::json;
use tessera_verifier::{
    AccessClaims, JwksSource, KeySet, ManualClock, Verifier, VerifierConfig, VerifierSet,
    VerifyError,
};

const A: &str = "https://a.example";
const B: &str = "https://b.example";

/// Issuer A signs with "ours" for audience `api`; B with "attacker" for `b-api`.
fn members(clock: &Arc<ManualClock>) -> (Verifier, Verifier) {
    let member = |issuer: &str, key: &TestKey, audience: &str| {
        let (set, _) =
            KeySet::from_jwks_json(jwks_of(&[key]).to_string().as_bytes(), &["RS256"]).unwrap();
        let cfg = VerifierConfig::new(issuer, [audience]).with_jwks(JwksSource::Static(set));
        Verifier::start(cfg, clock.clone()).unwrap()
    };
    (
        member(A, &TestKey::load("ours"), "api"),
        member(B, &TestKey::load("attacker"), "b-api"),
    )
}

fn set() -> Verifier {
    let clock = Arc::new(ManualClock::new(NOW));
    let (a, b) = members(&clock);
    VerifierSet::new()
        .with(a)
        .unwrap()
        .with(b)
        .unwrap()
        .realm("two-issuers")
        .build()
        .unwrap()
}

#[tokio::test]
async fn each_token_is_verified_by_its_own_issuer() {
    let (ours, theirs) = (TestKey::load("ours"), TestKey::load("attacker"));
    let verifier = set();
    assert_eq!(verifier.issuers(), [A, B]);
    let a = ours.sign(
        &header(ours.kid()),
        &claims_with(json!({"iss": A, "aud": "api"})),
    );
    let b = theirs.sign(
        &header(theirs.kid()),
        &claims_with(json!({"iss": B, "aud": "b-api", "sub": "partner-7"})),
    );
    let verified_a = verifier.verify::<AccessClaims>(&a).await.unwrap();
    assert_eq!(verified_a.registered().iss.as_deref(), Some(A));
    let verified_b = verifier.verify::<AccessClaims>(&b).await.unwrap();
    assert_eq!(verified_b.subject(), "partner-7");
    // `iss` first in the payload (the fast path Tessera's tokens take) works
    // the same as `iss` anywhere (these claims are sorted: `aud` first).
    let payload = format!(
        r#"{{"iss":"{B}","sub":"partner-8","aud":"b-api","exp":{},"iat":{NOW},"nbf":{NOW},"jti":"j-2"}}"#,
        NOW + 60
    );
    let first = theirs.sign_bytes(
        header(theirs.kid()).to_string().as_bytes(),
        payload.as_bytes(),
    );
    assert_eq!(
        verifier
            .verify::<AccessClaims>(&first)
            .await
            .unwrap()
            .subject(),
        "partner-8"
    );
    let m = verifier.metrics();
    assert_eq!(m.verified, 3, "the members' counters, added");
    assert_eq!(verifier.health().key_count, 2);
    assert!(verifier.is_ready());
}

#[tokio::test]
async fn no_key_of_one_issuer_verifies_a_token_claiming_the_other() {
    let (ours, theirs) = (TestKey::load("ours"), TestKey::load("attacker"));
    let verifier = set();
    // A's key, B's name (and B's audience): B's member holds no such key.
    let forged = ours.sign(
        &header(ours.kid()),
        &claims_with(json!({"iss": B, "aud": "b-api"})),
    );
    assert_eq!(
        verifier.verify::<AccessClaims>(&forged).await.unwrap_err(),
        VerifyError::UnknownKey
    );
    // Under B's kid: the signature is A's, so it fails.
    let forged_kid = ours.sign(
        &header(theirs.kid()),
        &claims_with(json!({"iss": B, "aud": "b-api"})),
    );
    assert_eq!(
        verifier
            .verify::<AccessClaims>(&forged_kid)
            .await
            .unwrap_err(),
        VerifyError::BadSignature
    );
    // The same the other way round, through the fast path.
    let payload = format!(
        r#"{{"iss":"{A}","sub":"x","aud":"api","exp":{},"iat":{NOW},"nbf":{NOW},"jti":"j-3"}}"#,
        NOW + 60
    );
    let forged_a = theirs.sign_bytes(
        header(ours.kid()).to_string().as_bytes(),
        payload.as_bytes(),
    );
    assert_eq!(
        verifier
            .verify::<AccessClaims>(&forged_a)
            .await
            .unwrap_err(),
        VerifyError::BadSignature
    );
    // Each member's own audiences: A's token for B's API is refused.
    let misaddressed = ours.sign(
        &header(ours.kid()),
        &claims_with(json!({"iss": A, "aud": "b-api"})),
    );
    assert_eq!(
        verifier
            .verify::<AccessClaims>(&misaddressed)
            .await
            .unwrap_err(),
        VerifyError::WrongAudience
    );
    // An issuer the set does not know, none at all, and a lookalike.
    for iss in [
        json!("https://c.example"),
        json!(null),
        json!("https://a.example/"),
    ] {
        let t = ours.sign(&header(ours.kid()), &claims_with(json!({"iss": iss})));
        let err = verifier.verify::<AccessClaims>(&t).await.unwrap_err();
        assert!(
            matches!(
                err,
                VerifyError::WrongIssuer | VerifyError::MissingClaim("iss")
            ),
            "{iss}: {err:?}"
        );
    }
    // An escaped `iss` takes the slow path and is compared decoded.
    let escaped = format!(
        r#"{{"iss":"https:\/\/a.example","sub":"x","aud":"api","exp":{},"iat":{NOW},"nbf":{NOW},"jti":"j-4"}}"#,
        NOW + 60
    );
    let t = ours.sign_bytes(
        header(ours.kid()).to_string().as_bytes(),
        escaped.as_bytes(),
    );
    assert!(verifier.verify::<AccessClaims>(&t).await.is_ok());
}

#[tokio::test]
async fn a_set_is_refused_with_duplicate_or_no_members() {
    let clock = Arc::new(ManualClock::new(NOW));
    let (a, _) = members(&clock);
    let (a_again, _) = members(&clock);
    assert!(
        VerifierSet::new()
            .with(a.clone())
            .unwrap()
            .with(a_again)
            .is_err()
    );
    assert!(VerifierSet::new().build().is_err());
    let one = VerifierSet::new().with(a).unwrap().build().unwrap();
    assert!(
        VerifierSet::new().with(one).is_err(),
        "a set is not a member"
    );
}

#[cfg(feature = "axum")]
#[tokio::test]
async fn the_extractors_take_a_set_where_they_take_a_verifier() {
    use axum::Router;
    use axum::http::StatusCode;
    use axum::routing::get;
    use tessera_verifier::axum::Authenticated;
    let (ours, theirs) = (TestKey::load("ours"), TestKey::load("attacker"));
    let app = Router::new()
        .route(
            "/me",
            get(|Authenticated(t): Authenticated| async move { t.subject().to_owned() }),
        )
        .with_state(set());
    let b = theirs.sign(
        &header(theirs.kid()),
        &claims_with(json!({"iss": B, "aud": "b-api", "sub": "partner-7"})),
    );
    let ok = tessera_testkit::oneshot::get(
        app.clone(),
        "/me",
        &[("authorization", &format!("Bearer {b}"))],
    )
    .await;
    assert_eq!(ok.status, StatusCode::OK);
    assert_eq!(ok.raw, b"partner-7");
    let forged = ours.sign(
        &header(ours.kid()),
        &claims_with(json!({"iss": B, "aud": "b-api"})),
    );
    let refused = tessera_testkit::oneshot::get(
        app,
        "/me",
        &[("authorization", &format!("Bearer {forged}"))],
    )
    .await;
    assert_eq!(refused.status, StatusCode::UNAUTHORIZED);
    assert!(
        refused
            .challenge()
            .unwrap()
            .starts_with("Bearer realm=\"two-issuers\", error=\"invalid_token\""),
        "{:?}",
        refused.challenge()
    );
}
