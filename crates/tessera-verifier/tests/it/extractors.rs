//! The axum extractor and role guard, through `oneshot`: RFC 6750 statuses and
//! challenges.

#![cfg(feature = "axum")]
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use crate::common::*;
use axum::Router;
use axum::http::StatusCode;
use axum::routing::get;
use serde_json::json;
use tessera_testkit::oneshot::{self, Reply};
use tessera_verifier::Verifier;
use tessera_verifier::axum::{Authenticated, RequireRole, Role};

struct Admin;
impl Role for Admin {
    const NAME: &'static str = "admin";
}

fn app(verifier: Verifier) -> Router {
    Router::new()
        .route(
            "/me",
            get(|Authenticated(token): Authenticated| async move { token.subject().to_owned() }),
        )
        .route("/admin", get(|_: RequireRole<Admin>| async { "welcome" }))
        .with_state(verifier)
}

async fn send(verifier: &Verifier, path: &str, authorization: &[&str]) -> Reply {
    let headers: Vec<_> = authorization
        .iter()
        .map(|v| ("authorization", *v))
        .collect();
    oneshot::get(app(verifier.clone()), path, &headers).await
}

#[tokio::test]
async fn a_valid_token_in_any_scheme_case_is_accepted() {
    let ours = TestKey::load("ours");
    let (verifier, _) = static_verifier(|_| {});
    let t = ours.sign(&header(ours.kid()), &claims());
    for scheme in ["Bearer", "bearer", "BEARER", "bEaReR"] {
        let r = send(&verifier, "/me", &[&format!("{scheme} {t}")]).await;
        assert_eq!(r.status, StatusCode::OK, "{scheme}");
        assert_eq!(r.raw, b"u-1234");
    }
}

#[tokio::test]
async fn a_missing_token_gets_a_bare_challenge() {
    let (verifier, _) = static_verifier(|_| {});
    let r = send(&verifier, "/me", &[]).await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);
    assert_eq!(r.challenge(), Some("Bearer realm=\"tessera\""));
}

#[tokio::test]
async fn an_invalid_token_gets_invalid_token_with_a_description() {
    let ours = TestKey::load("ours");
    let (verifier, _) = static_verifier(|_| {});
    let expired = ours.sign(
        &header(ours.kid()),
        &claims_with(json!({"exp": NOW - 3600})),
    );
    let forged = TestKey::load("attacker").sign(&header(ours.kid()), &claims());
    for (token, description) in [
        (expired.as_str(), "token expired"),
        (forged.as_str(), "bad signature"),
        ("not.a.token", "malformed token"),
    ] {
        let r = send(&verifier, "/me", &[&format!("Bearer {token}")]).await;
        assert_eq!(r.status, StatusCode::UNAUTHORIZED, "{description}");
        let challenge = r.challenge().unwrap().to_owned();
        assert!(
            challenge.starts_with("Bearer realm=\"tessera\", error=\"invalid_token\""),
            "{challenge}"
        );
        assert!(challenge.contains(description), "{challenge}");
        assert_eq!(r.body["error"], "invalid_token");
    }
}

#[tokio::test]
async fn malformed_requests_are_400_invalid_request() {
    let ours = TestKey::load("ours");
    let (verifier, _) = static_verifier(|_| {});
    let t = ours.sign(&header(ours.kid()), &claims());
    let bearer = format!("Bearer {t}");
    let cases: [(&str, Vec<&str>); 6] = [
        ("/me", vec![&bearer, &bearer]),
        ("/me?access_token=abc", vec![]),
        ("/me?x=1&access_token", vec![&bearer]),
        ("/me", vec!["Basic dXNlcjpwYXNz"]),
        ("/me", vec!["Bearer"]),
        ("/me", vec!["Bearer a b"]),
    ];
    for (path, headers) in &cases {
        let r = send(&verifier, path, headers).await;
        assert_eq!(r.status, StatusCode::BAD_REQUEST, "{path} {headers:?}");
        assert!(r.challenge().unwrap().contains("error=\"invalid_request\""));
    }
    // A query string without a token is fine.
    assert_eq!(
        send(&verifier, "/me?x=1", &[&bearer]).await.status,
        StatusCode::OK
    );
}

#[tokio::test]
async fn the_role_guard_answers_403_insufficient_scope() {
    let ours = TestKey::load("ours");
    let (verifier, _) = static_verifier(|_| {});
    let user = ours.sign(&header(ours.kid()), &claims());
    let admin = ours.sign(
        &header(ours.kid()),
        &claims_with(json!({"roles": ["user", "admin"]})),
    );
    let r = send(&verifier, "/admin", &[&format!("Bearer {user}")]).await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
    assert!(
        r.challenge()
            .unwrap()
            .contains("error=\"insufficient_scope\"")
    );
    assert_eq!(r.body["error"], "insufficient_scope");
    let r = send(&verifier, "/admin", &[&format!("Bearer {admin}")]).await;
    assert_eq!(r.status, StatusCode::OK);
    // No token at all: 401 before any role check.
    assert_eq!(
        send(&verifier, "/admin", &[]).await.status,
        StatusCode::UNAUTHORIZED
    );
}

#[tokio::test]
async fn no_usable_keys_is_503_not_401() {
    let ours = TestKey::load("ours");
    // A JWKS URL where nothing listens: keys never load.
    let (verifier, _) = fetching_verifier("http://127.0.0.1:9/jwks.json", |c| {
        c.fetch_timeout = std::time::Duration::from_millis(200);
    });
    let t = ours.sign(&header(ours.kid()), &claims());
    let r = send(&verifier, "/me", &[&format!("Bearer {t}")]).await;
    assert_eq!(r.status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(r.body["error"], "temporarily_unavailable");
}
