//! `POST /login` through `oneshot`: tokens a client can use, the same refusal for
//! every kind of bad credential, and clean 4xx for malformed input that change
//! nothing in the database.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use axum::body::Body;
use axum::http::{Request, StatusCode, header};
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde_json::{Value, json};
use tessera_issuer::db::Db;
use tessera_issuer::http::{AppState, router};
use tessera_issuer::keys::KeyHandle;
use tessera_issuer::passwords::{Hasher, Password};
use tessera_issuer::service::Issuer;
use tessera_issuer::tokens::refresh_token_hash;
use tessera_keyring::{DEFAULT_BITS, FixedClock, KeyDir, verify_rs256};
use tessera_testkit::oneshot;

use crate::common;

const ISSUER: &str = "https://auth.example.test";
const NOW: u64 = 1_767_225_600;

struct App {
    _tmp: tempfile::TempDir,
    state: AppState,
    db: Db,
    keys: Arc<KeyHandle>,
    hasher: Hasher,
}

async fn app() -> App {
    let tmp = tempfile::tempdir().unwrap();
    let dir = KeyDir::new(tmp.path().join("keys"));
    dir.init(DEFAULT_BITS).unwrap();
    let keys = Arc::new(KeyHandle::load(dir).unwrap());
    let db = crate::common::database(tmp.path()).await;
    let hasher = Hasher::with_params(64, 1, 1, 2).unwrap();
    let settings = crate::common::settings(ISSUER);
    let clock = Arc::new(FixedClock(
        SystemTime::UNIX_EPOCH + Duration::from_secs(NOW),
    ));
    let state = AppState::new(Issuer::new(
        Arc::clone(&keys),
        db.clone(),
        hasher.clone(),
        clock,
        settings,
    ));
    let app = App {
        _tmp: tmp,
        state,
        db,
        keys,
        hasher,
    };
    app.add_user("alice", "correct horse", &["admin"]).await;
    app
}

impl App {
    async fn add_user(&self, name: &str, password: &str, roles: &[&str]) -> String {
        let hash = self
            .hasher
            .hash(&Password::new(password.to_owned()))
            .unwrap();
        let roles: Vec<String> = roles.iter().map(|r| (*r).to_owned()).collect();
        let id = tessera_issuer::passwords::random_token(16);
        self.db
            .add_user(&id, name, &hash, &roles, NOW as i64)
            .await
            .unwrap();
        id
    }

    async fn post(
        &self,
        content_type: Option<&str>,
        body: impl Into<Body>,
    ) -> (StatusCode, axum::http::HeaderMap, Value) {
        let mut request = Request::post("/login");
        if let Some(ct) = content_type {
            request = request.header(header::CONTENT_TYPE, ct);
        }
        let reply = oneshot::send(
            router(self.state.clone()),
            request.body(body.into()).unwrap(),
        )
        .await;
        (reply.status, reply.headers, reply.body)
    }

    async fn login(&self, username: &str, password: &str) -> (StatusCode, Value) {
        let body = json!({"username": username, "password": password}).to_string();
        let (status, headers, value) = self.post(Some("application/json"), body).await;
        assert_eq!(headers.get(header::CACHE_CONTROL).unwrap(), "no-store");
        (status, value)
    }
}

fn decode(segment: &str) -> Value {
    serde_json::from_slice(&URL_SAFE_NO_PAD.decode(segment).unwrap()).unwrap()
}

#[tokio::test]
async fn a_right_password_gets_a_verifiable_rfc9068_access_token_and_a_refresh_token() {
    let app = app().await;
    let (status, body) = app.login("alice", "correct horse").await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["token_type"], "Bearer");
    assert_eq!(body["expires_in"], 900);
    let refresh = body["refresh_token"].as_str().unwrap();
    assert_eq!(refresh.len(), 43, "256 random bits");

    let token = body["access_token"].as_str().unwrap();
    let parts: Vec<&str> = token.split('.').collect();
    let header = decode(parts[0]);
    let snapshot = app.keys.current().unwrap();
    assert_eq!(
        header,
        json!({"alg": "RS256", "kid": snapshot.signer().kid(), "typ": "at+jwt"})
    );
    // The signature verifies with the key published in the JWKS.
    let jwk = snapshot
        .keyring()
        .jwks()
        .find(snapshot.signer().kid())
        .unwrap();
    let (n, e) = (
        URL_SAFE_NO_PAD.decode(jwk.n.as_deref().unwrap()).unwrap(),
        URL_SAFE_NO_PAD.decode(jwk.e.as_deref().unwrap()).unwrap(),
    );
    let signature = URL_SAFE_NO_PAD.decode(parts[2]).unwrap();
    assert!(verify_rs256(
        &n,
        &e,
        format!("{}.{}", parts[0], parts[1]).as_bytes(),
        &signature
    ));

    let claims = decode(parts[1]);
    let user = app.db.credentials("alice").await.unwrap().unwrap().user;
    assert_eq!(claims["iss"], ISSUER);
    assert_eq!(
        claims["sub"],
        user.id.as_str(),
        "sub is the stable id, not the username"
    );
    assert_eq!(claims["aud"], "api");
    assert_eq!(claims["iat"], NOW);
    assert_eq!(claims["nbf"], NOW);
    assert_eq!(claims["exp"], NOW + 900);
    assert_eq!(claims["client_id"], "tessera-web");
    assert_eq!(claims["scope"], "profile");
    assert_eq!(claims["roles"], json!(["admin"]));
    assert_eq!(claims["preferred_username"], "alice");
    let mut names: Vec<&str> = claims
        .as_object()
        .unwrap()
        .keys()
        .map(String::as_str)
        .collect();
    names.sort_unstable();
    assert_eq!(
        names,
        [
            "aud",
            "client_id",
            "exp",
            "iat",
            "iss",
            "jti",
            "nbf",
            "preferred_username",
            "roles",
            "scope",
            "sid",
            "sub"
        ]
    );

    // The session and its refresh token are stored; the token only as a hash.
    let sid = claims["sid"].as_str().unwrap();
    assert_eq!(
        app.db
            .refresh_token_session(&refresh_token_hash(refresh))
            .await
            .unwrap()
            .as_deref(),
        Some(sid)
    );
    assert_eq!(app.db.count_sessions().await.unwrap(), (1, 1));

    // A second login: a new session, a new jti.
    let (_, second) = app.login("alice", "correct horse").await;
    let claims2 = decode(
        second["access_token"]
            .as_str()
            .unwrap()
            .split('.')
            .nth(1)
            .unwrap(),
    );
    assert_ne!(claims2["jti"], claims["jti"]);
    assert_ne!(claims2["sid"], claims["sid"]);
    assert_eq!(app.db.count_sessions().await.unwrap(), (2, 2));
}

#[tokio::test]
async fn wrong_password_unknown_and_disabled_users_get_the_same_401() {
    let app = app().await;
    app.add_user("bob", "bob's password", &[]).await;
    app.db.set_disabled("bob", true, NOW as i64).await.unwrap();
    let cases = [
        ("alice", "wrong horse"),
        ("mallory", "correct horse"),
        ("bob", "bob's password"),
        ("alice", ""),
        ("ALICE", "correct horse"),
        ("", "correct horse"),
    ];
    for (username, password) in cases {
        let (status, body) = app.login(username, password).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "{username:?}");
        assert_eq!(
            body,
            json!({"error": "invalid_credentials"}),
            "{username:?}"
        );
    }
    assert_eq!(app.db.count_sessions().await.unwrap(), (0, 0));
}

#[tokio::test]
async fn malformed_requests_get_a_clean_4xx_and_change_nothing() {
    let app = app().await;
    let json = Some("application/json");
    let huge = json!({"username": "alice", "password": "x".repeat(20_000)}).to_string();
    let cases: Vec<(Option<&str>, String, StatusCode)> = vec![
        (json, "{not json".to_owned(), StatusCode::BAD_REQUEST),
        (
            json,
            "{\"username\": \"alice\"}".to_owned(),
            StatusCode::BAD_REQUEST,
        ),
        (
            json,
            "{\"username\": 7, \"password\": \"x\"}".to_owned(),
            StatusCode::BAD_REQUEST,
        ),
        (json, "[]".to_owned(), StatusCode::BAD_REQUEST),
        (json, String::new(), StatusCode::BAD_REQUEST),
        (
            Some("text/plain"),
            "{\"username\":\"alice\",\"password\":\"correct horse\"}".to_owned(),
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
        ),
        (
            None,
            "{\"username\":\"alice\",\"password\":\"correct horse\"}".to_owned(),
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
        ),
        (json, huge, StatusCode::PAYLOAD_TOO_LARGE),
    ];
    for (content_type, body, expected) in cases {
        let (status, headers, value) = app.post(content_type, body.clone()).await;
        assert_eq!(
            status,
            expected,
            "{content_type:?} {}",
            &body[..body.len().min(40)]
        );
        assert_eq!(value["error"], "invalid_request", "{value}");
        assert_eq!(headers.get(header::CACHE_CONTROL).unwrap(), "no-store");
    }
    for username in [
        "x' OR '1'='1",
        "alice'; DROP TABLE users;--",
        "李小龍",
        "\u{202e}alice",
        "a\u{0}b",
    ] {
        let (status, body) = app.login(username, "correct horse").await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "{username:?}");
        assert_eq!(body["error"], "invalid_credentials");
    }
    assert_eq!(app.db.count_users().await.unwrap(), 1);
    assert_eq!(app.db.count_sessions().await.unwrap(), (0, 0));
}

#[tokio::test]
async fn a_hash_made_with_old_parameters_is_upgraded_at_login() {
    let app = app().await;
    let old = Hasher::with_params(32, 1, 1, 1).unwrap();
    let hash = old
        .hash(&Password::new("old params pw".to_owned()))
        .unwrap();
    app.db
        .add_user("carol-id-000000000000", "carol", &hash, &[], NOW as i64)
        .await
        .unwrap();
    let (status, _) = app.login("carol", "old params pw").await;
    assert_eq!(status, StatusCode::OK);
    let stored = app
        .db
        .credentials("carol")
        .await
        .unwrap()
        .unwrap()
        .password_hash;
    assert!(
        stored.starts_with("$argon2id$v=19$m=64,t=1,p=1$"),
        "{stored}"
    );
    let (status, _) = app.login("carol", "old params pw").await;
    assert_eq!(status, StatusCode::OK, "the upgraded hash still verifies");
}

/// The security review's finding 3: the Argon2 queue was unbounded. Many
/// concurrent logins from many addresses (127.0.0.x, so no per-address limit
/// hides the queue) over real HTTP: beyond the configured queue they get 503
/// with `Retry-After` at once, `/healthz` keeps answering meanwhile, and a
/// login afterwards works.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn beyond_the_password_check_queue_logins_get_503_and_health_stays_up() {
    let tmp = tempfile::tempdir().unwrap();
    let issuer = common::start_issuer(tmp.path(), |raw| {
        raw.password_check_queue = Some(4);
    })
    .await;
    let flood: Vec<_> = (0..60u8)
        .map(|i| {
            let addr = issuer.addr;
            tokio::spawn(async move {
                let from = std::net::IpAddr::from([127, 0, 0, 2 + i]);
                let mut c = tessera_bench::Client::connect_from(addr, from)
                    .await
                    .unwrap();
                let body = json!({"username": format!("user{i}"), "password": "wrong password"});
                let (status, body) = c
                    .request("POST", "/login", &[], "application/json", &body.to_string())
                    .await
                    .unwrap();
                (status, serde_json::from_slice::<Value>(&body).unwrap())
            })
        })
        .collect();
    // While the flood is queued: health answers.
    let mut health = tessera_bench::Client::connect(issuer.addr).await.unwrap();
    for _ in 0..5 {
        let answered = tokio::time::timeout(Duration::from_secs(2), health.get("/healthz", &[]))
            .await
            .expect("/healthz must answer during a login flood")
            .unwrap();
        assert_eq!(answered.0, 200);
    }
    let mut counts = std::collections::BTreeMap::new();
    for login in flood {
        let (status, body) = login.await.unwrap();
        match status {
            401 => assert_eq!(body["error"], "invalid_credentials"),
            503 => assert_eq!(body["error"], "temporarily_unavailable"),
            other => panic!("unexpected {other}: {body}"),
        }
        *counts.entry(status).or_insert(0) += 1;
    }
    assert!(counts.get(&503).copied().unwrap_or(0) > 0, "{counts:?}");
    assert!(counts.get(&401).copied().unwrap_or(0) >= 4, "{counts:?}");
    let logged_in = common::login(issuer.addr, "admin", &issuer.admin_password).await;
    assert!(logged_in["access_token"].is_string());
}

/// A full queue answers 503 with `Retry-After` before any work: no password
/// check runs and nothing is counted against the user.
#[tokio::test]
async fn a_full_queue_refuses_before_any_work_and_counts_nothing() {
    let app = app().await;
    let held: Vec<_> = std::iter::from_fn(|| app.hasher.try_admit())
        .take(1000)
        .collect();
    assert_eq!(held.len(), tessera_issuer::passwords::DEFAULT_QUEUE);
    let before = app.hasher.checks_run();
    for _ in 0..10 {
        let body = json!({"username": "alice", "password": "wrong"}).to_string();
        let (status, headers, value) = app.post(Some("application/json"), body).await;
        assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(headers.get(header::RETRY_AFTER).unwrap(), "1");
        assert_eq!(value["error"], "temporarily_unavailable");
    }
    assert_eq!(app.hasher.checks_run(), before, "no password work");
    drop(held);
    // Ten refusals, none counted: the right password gets in at once.
    let (status, _) = app.login("alice", "correct horse").await;
    assert_eq!(status, StatusCode::OK);
}
