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

/// A router with `/me` for GET and POST, behind a verifier that also reads
/// the `tessera_access` cookie and allows unsafe methods from one origin.
fn cookie_app() -> (Router, String) {
    let ours = TestKey::load("ours");
    let (verifier, _) = static_verifier(|c| {
        // Written as a person might; matched as browsers send it.
        c.cookie = Some(tessera_verifier::CookieSource::new(
            "tessera_access",
            ["HTTPS://App.Example.test:443"],
        ));
    });
    let me = |Authenticated(token): Authenticated| async move { token.subject().to_owned() };
    let app = Router::new()
        .route("/me", get(me).post(me).delete(me))
        .with_state(verifier);
    (app, ours.sign(&header(ours.kid()), &claims()))
}

async fn call(app: &Router, method: &str, headers: &[(&str, &str)]) -> Reply {
    let mut request = axum::http::Request::builder().method(method).uri("/me");
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    oneshot::send(
        app.clone(),
        request.body(axum::body::Body::empty()).unwrap(),
    )
    .await
}

#[tokio::test]
async fn a_configured_cookie_carries_the_token_when_there_is_no_header() {
    let (app, token) = cookie_app();
    let cookie = format!("theme=dark; tessera_access={token}; other=1");
    let r = call(&app, "GET", &[("cookie", &cookie)]).await;
    assert_eq!(
        (r.status, r.raw.as_slice()),
        (StatusCode::OK, &b"u-1234"[..])
    );
    // The header alone still works; neither is a bare 401.
    let bearer = format!("Bearer {token}");
    let r = call(&app, "GET", &[("authorization", &bearer)]).await;
    assert_eq!(r.status, StatusCode::OK);
    let r = call(&app, "GET", &[("cookie", "theme=dark")]).await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);
    assert_eq!(r.challenge(), Some("Bearer realm=\"tessera\""));
    // A bad cookie token is an invalid token, like a bad header.
    let r = call(&app, "GET", &[("cookie", "tessera_access=not.a.token")]).await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);
    assert!(r.challenge().unwrap().contains("invalid_token"));
    // Without a cookie source the cookie means nothing.
    let (plain, _) = static_verifier(|_| {});
    let r = oneshot::get(self::app(plain), "/me", &[("cookie", &cookie)]).await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn a_cookie_and_a_header_together_are_400() {
    let (app, token) = cookie_app();
    let cookie = format!("tessera_access={token}");
    let bearer = format!("Bearer {token}");
    let r = call(
        &app,
        "GET",
        &[("cookie", &cookie), ("authorization", &bearer)],
    )
    .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    assert!(
        r.challenge()
            .unwrap()
            .contains("a token in more than one place")
    );
    // Two token cookies are ambiguous too.
    let two = format!("tessera_access={token}; tessera_access=planted");
    let r = call(&app, "GET", &[("cookie", &two)]).await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
}

#[tokio::test]
async fn unsafe_methods_with_the_cookie_need_an_allowed_origin() {
    let (app, token) = cookie_app();
    let cookie = format!("tessera_access={token}");
    for method in ["POST", "DELETE"] {
        let ok = call(
            &app,
            method,
            &[("cookie", &cookie), ("origin", "https://app.example.test")],
        )
        .await;
        assert_eq!(ok.status, StatusCode::OK, "{method}");
        for origin in [Some("https://evil.example"), Some("null"), None] {
            let mut headers = vec![("cookie", cookie.as_str())];
            if let Some(origin) = origin {
                headers.push(("origin", origin));
            }
            let r = call(&app, method, &headers).await;
            assert_eq!(r.status, StatusCode::FORBIDDEN, "{method} from {origin:?}");
            assert_eq!(r.body["error"], "invalid_origin");
        }
    }
    // Safe methods need no Origin (a link from anywhere may show a page).
    let r = call(
        &app,
        "GET",
        &[("cookie", &cookie), ("origin", "https://evil.example")],
    )
    .await;
    assert_eq!(r.status, StatusCode::OK);
    // A header-borne token is not a browser's doing: no Origin rule.
    let bearer = format!("Bearer {token}");
    let r = call(
        &app,
        "POST",
        &[
            ("authorization", &bearer),
            ("origin", "https://evil.example"),
        ],
    )
    .await;
    assert_eq!(r.status, StatusCode::OK);
}

#[tokio::test]
async fn a_cookie_source_is_checked_at_start() {
    for source in [
        tessera_verifier::CookieSource::new("a b", ["https://app.example.test"]),
        tessera_verifier::CookieSource::new("at", ["https://app.example.test/"]),
        tessera_verifier::CookieSource::new("at", ["app.example.test"]),
    ] {
        let mut config = tessera_verifier::VerifierConfig::new("https://issuer.test", ["api"]);
        config.cookie = Some(source.clone());
        let err = Verifier::start(
            config,
            std::sync::Arc::new(tessera_verifier::ManualClock::new(NOW)),
        )
        .err()
        .unwrap_or_else(|| panic!("{source:?} was accepted"));
        assert!(err.to_string().contains("cookie"), "{err}");
    }
}

struct ReportsRead;
impl tessera_verifier::axum::Scope for ReportsRead {
    const NAME: &'static str = "reports:read";
}

/// A service's token for itself, as client credentials give it.
fn client_token(scope: &str) -> String {
    let ours = TestKey::load("ours");
    let claims = claims_with(json!({
        "sub": "reports-job", "client_id": "reports-job", "scope": scope,
        "sid": null, "roles": null, "preferred_username": null,
    }));
    ours.sign(&header(ours.kid()), &claims)
}

fn shapes_app(config: impl FnOnce(&mut tessera_verifier::VerifierConfig)) -> (Router, String) {
    use tessera_verifier::axum::{RequireScope, RequireUser};
    let ours = TestKey::load("ours");
    let (verifier, _) = static_verifier(config);
    let app = Router::new()
        .route(
            "/reports",
            get(|s: RequireScope<ReportsRead>| async move { s.token().subject().to_owned() }),
        )
        .route(
            "/mine",
            get(|RequireUser(t): RequireUser| async move { t.subject().to_owned() }),
        )
        .route(
            "/maybe",
            get(|who: Option<Authenticated>| async move {
                who.map_or("anonymous".to_owned(), |Authenticated(t)| {
                    t.subject().to_owned()
                })
            }),
        )
        .with_state(verifier);
    (app, ours.sign(&header(ours.kid()), &claims()))
}

#[tokio::test]
async fn require_scope_names_the_scope_and_takes_client_tokens() {
    let (app, user) = shapes_app(|_| {});
    let service = client_token("reports:read");
    let ok = call_at(
        &app,
        "/reports",
        &[("authorization", &format!("Bearer {service}"))],
    )
    .await;
    assert_eq!(
        (ok.status, ok.text().as_str()),
        (StatusCode::OK, "reports-job")
    );
    let no = call_at(
        &app,
        "/reports",
        &[("authorization", &format!("Bearer {user}"))],
    )
    .await;
    assert_eq!(no.status, StatusCode::FORBIDDEN);
    let challenge = no.challenge().unwrap();
    assert!(
        challenge.contains("error=\"insufficient_scope\"")
            && challenge.contains("scope=\"reports:read\""),
        "{challenge}"
    );
    assert_eq!(no.body["error"], "insufficient_scope");
    // Without a token it is a 401, as everywhere.
    assert_eq!(
        call_at(&app, "/reports", &[]).await.status,
        StatusCode::UNAUTHORIZED
    );
}

#[tokio::test]
async fn require_user_refuses_a_clients_own_token() {
    let (app, user) = shapes_app(|_| {});
    let service = client_token("profile");
    let ok = call_at(
        &app,
        "/mine",
        &[("authorization", &format!("Bearer {user}"))],
    )
    .await;
    assert_eq!((ok.status, ok.text().as_str()), (StatusCode::OK, "u-1234"));
    let no = call_at(
        &app,
        "/mine",
        &[("authorization", &format!("Bearer {service}"))],
    )
    .await;
    assert_eq!(no.status, StatusCode::FORBIDDEN);
    assert!(no.challenge().unwrap().contains("insufficient_scope"));
}

#[tokio::test]
async fn optional_authentication_is_none_without_a_token_and_401_with_a_bad_one() {
    let (app, user) = shapes_app(|_| {});
    let none = call_at(&app, "/maybe", &[]).await;
    assert_eq!(
        (none.status, none.text().as_str()),
        (StatusCode::OK, "anonymous")
    );
    let some = call_at(
        &app,
        "/maybe",
        &[("authorization", &format!("Bearer {user}"))],
    )
    .await;
    assert_eq!(some.text(), "u-1234");
    let forged = TestKey::load("attacker").sign(&header(TestKey::load("ours").kid()), &claims());
    let bad = call_at(
        &app,
        "/maybe",
        &[("authorization", &format!("Bearer {forged}"))],
    )
    .await;
    assert_eq!(
        bad.status,
        StatusCode::UNAUTHORIZED,
        "a bad token is never anonymous"
    );
    let malformed = call_at(&app, "/maybe", &[("authorization", "Basic abc")]).await;
    assert_eq!(malformed.status, StatusCode::BAD_REQUEST);
}

#[tokio::test]
async fn a_configured_header_carries_a_forwarded_token() {
    let (app, user) = shapes_app(|c| c.token_header = Some("X-Forwarded-Access-Token".to_owned()));
    let ok = call_at(&app, "/maybe", &[("x-forwarded-access-token", &user)]).await;
    assert_eq!((ok.status, ok.text().as_str()), (StatusCode::OK, "u-1234"));
    let both = call_at(
        &app,
        "/maybe",
        &[
            ("x-forwarded-access-token", &user),
            ("authorization", &format!("Bearer {user}")),
        ],
    )
    .await;
    assert_eq!(both.status, StatusCode::BAD_REQUEST);
    let bad = call_at(
        &app,
        "/maybe",
        &[("x-forwarded-access-token", "Bearer x y")],
    )
    .await;
    assert_eq!(bad.status, StatusCode::BAD_REQUEST);
    let query = call_at(
        &app,
        "/maybe?access_token=x",
        &[("x-forwarded-access-token", &user)],
    )
    .await;
    assert_eq!(
        query.status,
        StatusCode::BAD_REQUEST,
        "the query string stays refused"
    );
    // Authorization and Cookie cannot be configured as the forwarded header.
    for name in ["Authorization", "cookie", "a b", ""] {
        let mut config = tessera_verifier::VerifierConfig::new("https://issuer.test", ["api"]);
        config.token_header = Some(name.to_owned());
        assert!(
            Verifier::start(
                config,
                std::sync::Arc::new(tessera_verifier::ManualClock::new(NOW))
            )
            .is_err(),
            "{name:?}"
        );
    }
}

#[tokio::test]
async fn a_layer_protects_a_whole_router_and_hands_the_token_on() {
    use axum::Extension;
    let ours = TestKey::load("ours");
    let (verifier, _) = static_verifier(|_| {});
    let app = Router::new()
        .route(
            "/a",
            get(
                |Extension(t): Extension<tessera_verifier::Verified>| async move {
                    t.subject().to_owned()
                },
            ),
        )
        .route(
            "/b",
            get(|Authenticated(t): Authenticated| async move { t.subject().to_owned() }),
        )
        .layer(axum::middleware::from_fn_with_state(
            verifier.clone(),
            tessera_verifier::axum::require_token,
        ))
        .with_state(verifier.clone());
    let user = ours.sign(&header(ours.kid()), &claims());
    for path in ["/a", "/b"] {
        let ok = call_at(&app, path, &[("authorization", &format!("Bearer {user}"))]).await;
        assert_eq!(
            (ok.status, ok.text().as_str()),
            (StatusCode::OK, "u-1234"),
            "{path}"
        );
        let none = call_at(&app, path, &[]).await;
        assert_eq!(none.status, StatusCode::UNAUTHORIZED, "{path}");
        assert_eq!(none.challenge(), Some("Bearer realm=\"tessera\""));
    }
    // The handler's extractor reused the layer's verification.
    assert_eq!(verifier.metrics().verified, 2);
}

async fn call_at(app: &Router, path: &str, headers: &[(&str, &str)]) -> Reply {
    oneshot::get(app.clone(), path, headers).await
}
