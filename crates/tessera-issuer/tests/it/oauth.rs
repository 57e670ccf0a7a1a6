//! `/token`, `/revoke` and `/logout` through `oneshot`, with a clock the tests move:
//! rotation, reuse detection, idempotent retry, one winner under concurrency,
//! idle and absolute expiry, RFC 6749 errors, logout and revocation.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use axum::body::Body;
use axum::http::{Request, StatusCode, header};
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use http_body_util::BodyExt as _;
use serde_json::{Value, json};
use tessera_issuer::db::Db;
use tessera_issuer::db::scratch::test_database_url;
use tessera_issuer::http::{AppState, router};
use tessera_issuer::keys::KeyHandle;
use tessera_issuer::passwords::{Hasher, Password, random_token};
use tessera_issuer::service::Issuer;
use tessera_issuer::tokens::TokenSettings;
use tessera_keyring::{Clock, DEFAULT_BITS, KeyDir};
use tower::ServiceExt as _;

const DAY: u64 = 86_400;
const T0: u64 = 1_767_225_600;

#[derive(Debug)]
struct TestClock(Mutex<SystemTime>);

impl Clock for TestClock {
    fn now(&self) -> SystemTime {
        *self.0.lock().unwrap()
    }
}

impl TestClock {
    fn advance(&self, secs: u64) {
        *self.0.lock().unwrap() += Duration::from_secs(secs);
    }
}

struct App {
    _tmp: tempfile::TempDir,
    state: AppState,
    db: Db,
    clock: Arc<TestClock>,
}

struct Reply {
    status: StatusCode,
    headers: axum::http::HeaderMap,
    body: Value,
    raw: Vec<u8>,
}

async fn app() -> App {
    let tmp = tempfile::tempdir().unwrap();
    // A file database: concurrent requests get their own connections.
    let url = test_database_url(tmp.path()).unwrap();
    app_on(tmp, &url, true).await
}

/// An instance on the database at `url`; `fresh`: a first start (the login
/// client and the user alice are created), else they are already there.
async fn app_on(tmp: tempfile::TempDir, url: &str, fresh: bool) -> App {
    let dir = KeyDir::new(tmp.path().join("keys"));
    dir.init(DEFAULT_BITS).unwrap();
    let keys = Arc::new(KeyHandle::load(dir).unwrap());
    let db = Db::connect(url).await.unwrap();
    // The login client a first start registers.
    tessera_issuer::service::clients::bootstrap(&db, "tessera-web", 0, fresh)
        .await
        .unwrap();
    let hasher = Hasher::with_params(64, 1, 1, 4).unwrap();
    let settings = TokenSettings {
        issuer: "https://auth.example.test".to_owned(),
        audiences: vec!["api".to_owned()],
        access_token_lifetime: Duration::from_secs(900),
        refresh_idle_lifetime: Duration::from_secs(14 * DAY),
        refresh_absolute_lifetime: Duration::from_secs(30 * DAY),
        jwks_cache_lifetime: Duration::from_secs(300),
        login_client: "tessera-web".to_owned(),
        refresh_retry_window: Duration::from_secs(10),
    };
    let clock = Arc::new(TestClock(Mutex::new(
        SystemTime::UNIX_EPOCH + Duration::from_secs(T0),
    )));
    let hash = hasher
        .hash(&Password::new("correct horse".to_owned()))
        .unwrap();
    if fresh {
        db.add_user(
            &random_token(16),
            "alice",
            &hash,
            &["user".to_owned()],
            T0 as i64,
        )
        .await
        .unwrap();
    }
    let state = AppState::new(Issuer::new(
        keys,
        db.clone(),
        hasher,
        clock.clone(),
        settings,
    ));
    App {
        _tmp: tmp,
        state,
        db,
        clock,
    }
}

impl App {
    async fn send(&self, request: Request<Body>) -> Reply {
        let response = router(self.state.clone()).oneshot(request).await.unwrap();
        let status = response.status();
        let headers = response.headers().clone();
        let raw = response
            .into_body()
            .collect()
            .await
            .unwrap()
            .to_bytes()
            .to_vec();
        let body = serde_json::from_slice(&raw).unwrap_or(Value::Null);
        Reply {
            status,
            headers,
            body,
            raw,
        }
    }

    async fn form(&self, path: &str, form: &str) -> Reply {
        self.send(
            Request::post(path)
                .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
                .body(Body::from(form.to_owned()))
                .unwrap(),
        )
        .await
    }

    async fn login(&self) -> Value {
        let reply = self
            .send(
                Request::post("/login")
                    .header(header::CONTENT_TYPE, "application/json")
                    .body(Body::from(
                        json!({"username": "alice", "password": "correct horse"}).to_string(),
                    ))
                    .unwrap(),
            )
            .await;
        assert_eq!(reply.status, StatusCode::OK);
        reply.body
    }

    async fn refresh(&self, token: &str) -> Reply {
        self.form(
            "/token",
            &format!("grant_type=refresh_token&refresh_token={token}"),
        )
        .await
    }

    async fn logout(&self, authorization: Option<&str>) -> Reply {
        let mut request = Request::post("/logout");
        if let Some(value) = authorization {
            request = request.header(header::AUTHORIZATION, value);
        }
        self.send(request.body(Body::empty()).unwrap()).await
    }
}

fn claims(token: &str) -> Value {
    let payload = token.split('.').nth(1).unwrap();
    serde_json::from_slice(&URL_SAFE_NO_PAD.decode(payload).unwrap()).unwrap()
}

fn refresh_of(body: &Value) -> String {
    body["refresh_token"].as_str().unwrap().to_owned()
}

#[tokio::test]
async fn each_refresh_rotates_and_a_reused_token_revokes_the_family() {
    let app = app().await;
    let login = app.login().await;
    let sid = claims(login["access_token"].as_str().unwrap())["sid"].clone();
    let first = refresh_of(&login);

    app.clock.advance(60);
    let rotated = app.refresh(&first).await;
    assert_eq!(rotated.status, StatusCode::OK, "{}", rotated.body);
    assert_eq!(
        rotated.headers.get(header::CACHE_CONTROL).unwrap(),
        "no-store"
    );
    let second = refresh_of(&rotated.body);
    assert_ne!(second, first);
    let access = claims(rotated.body["access_token"].as_str().unwrap());
    assert_eq!(access["sid"], sid, "same session");
    assert_eq!(access["iat"], T0 + 60);

    // The old token again, after the retry window: theft is assumed.
    app.clock.advance(11);
    let reused = app.refresh(&first).await;
    assert_eq!(reused.status, StatusCode::BAD_REQUEST);
    assert_eq!(reused.body, json!({"error": "invalid_grant"}));
    // The whole family is dead, including the newest token.
    let after = app.refresh(&second).await;
    assert_eq!(after.body, json!({"error": "invalid_grant"}));
}

#[tokio::test]
async fn a_retry_within_seconds_gets_the_very_same_pair() {
    let app = app().await;
    let first = refresh_of(&app.login().await);
    let a = app.refresh(&first).await;
    app.clock.advance(5);
    let b = app.refresh(&first).await;
    assert_eq!(a.status, StatusCode::OK);
    assert_eq!(b.status, StatusCode::OK);
    assert_eq!(a.raw, b.raw, "byte-identical response");
    // Whoever presented the used token got the pair: that is audited.
    let events = app.db.audit_events(0, None, 100).await.unwrap();
    let sid = claims(b.body["access_token"].as_str().unwrap())["sid"].clone();
    assert!(
        events.iter().any(|e| e.event == "refresh_token_replay"
            && Some(&e.session_id) == Some(&sid.as_str().map(str::to_owned))),
        "{events:?}"
    );
    // The retried pair works: the family is intact.
    let next = app.refresh(&refresh_of(&b.body)).await;
    assert_eq!(next.status, StatusCode::OK);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_refreshes_have_exactly_one_winner() {
    let app = app().await;
    let first = refresh_of(&app.login().await);
    let tasks: Vec<_> = (0..8)
        .map(|_| {
            let state = app.state.clone();
            let token = first.clone();
            tokio::spawn(async move {
                let request = Request::post("/token")
                    .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
                    .body(Body::from(format!(
                        "grant_type=refresh_token&refresh_token={token}"
                    )))
                    .unwrap();
                let response = router(state).oneshot(request).await.unwrap();
                let status = response.status();
                (
                    status,
                    response.into_body().collect().await.unwrap().to_bytes(),
                )
            })
        })
        .collect();
    let mut bodies = Vec::new();
    for task in tasks {
        let (status, body) = task.await.unwrap();
        assert_eq!(status, StatusCode::OK);
        bodies.push(body);
    }
    assert!(
        bodies.windows(2).all(|w| w[0] == w[1]),
        "every caller got the winner's pair"
    );
    // One rotation happened: the login token plus exactly one successor.
    assert_eq!(app.db.count_sessions().await.unwrap(), (1, 2));
}

#[tokio::test]
async fn sessions_end_after_the_idle_and_the_absolute_lifetime() {
    let app = app().await;
    let idle = refresh_of(&app.login().await);
    app.clock.advance(14 * DAY);
    assert_eq!(
        app.refresh(&idle).await.body,
        json!({"error": "invalid_grant"})
    );

    let mut token = refresh_of(&app.login().await);
    for _ in 0..2 {
        app.clock.advance(13 * DAY);
        let reply = app.refresh(&token).await;
        assert_eq!(reply.status, StatusCode::OK, "active sessions stay alive");
        token = refresh_of(&reply.body);
    }
    app.clock.advance(4 * DAY); // 30 days after login
    assert_eq!(
        app.refresh(&token).await.body,
        json!({"error": "invalid_grant"})
    );
}

#[tokio::test]
async fn a_disabled_user_cannot_refresh() {
    let app = app().await;
    let token = refresh_of(&app.login().await);
    app.db.set_disabled("alice", true, T0 as i64).await.unwrap();
    assert_eq!(
        app.refresh(&token).await.body,
        json!({"error": "invalid_grant"})
    );
}

fn basic(id: &str, secret: &str) -> String {
    format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(format!("{id}:{secret}"))
    )
}

impl App {
    async fn form_as(&self, path: &str, form: &str, authorization: &str) -> Reply {
        self.send(
            Request::post(path)
                .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
                .header(header::AUTHORIZATION, authorization)
                .body(Body::from(form.to_owned()))
                .unwrap(),
        )
        .await
    }

    /// Registers a confidential client; returns its secret.
    async fn add_confidential(&self, id: &str, scopes: &[&str], default: &[&str]) -> String {
        let secret = tessera_issuer::clients::new_secret();
        let strings = |v: &[&str]| v.iter().map(|s| (*s).to_owned()).collect::<Vec<_>>();
        let client = tessera_issuer::clients::Client {
            kind: tessera_issuer::clients::ClientKind::Confidential,
            scopes: strings(scopes),
            default_scope: strings(default),
            audiences: vec!["orders-api".to_owned()],
            secret_sha256: tessera_issuer::clients::decode_hash(
                &tessera_issuer::clients::secret_hash_text(&secret),
            ),
            ..tessera_issuer::clients::login_client(id, T0 as i64)
        };
        tessera_issuer::clients::check(&client).unwrap();
        self.db.add_client(&client).await.unwrap();
        self.state.service().clients_changed();
        secret
    }
}

/// The security review's finding 1: a caller-chosen `client_id` and `scope`
/// were signed as given. Now the client must be registered (and authenticate
/// if confidential), and the scope is within what it was registered for.
#[tokio::test]
async fn the_password_grant_signs_only_what_the_client_registry_allows() {
    let app = app().await;
    let grant = "grant_type=password&username=alice&password=correct+horse";
    // The review's request: refused, no token.
    let forged = app
        .form(
            "/token",
            &format!("{grant}&scope=admin+orders:write&client_id=trusted-backoffice"),
        )
        .await;
    assert_eq!(forged.status, StatusCode::BAD_REQUEST, "{}", forged.body);
    assert_eq!(forged.body["error"], "invalid_client");
    assert!(forged.body.get("access_token").is_none());
    // A registered client, a scope it may not have.
    let escalated = app
        .form(
            "/token",
            &format!("{grant}&scope=admin&client_id=tessera-web"),
        )
        .await;
    assert_eq!(escalated.status, StatusCode::BAD_REQUEST);
    assert_eq!(escalated.body["error"], "invalid_scope");
    // No client at all.
    assert_eq!(
        app.form("/token", grant).await.body["error"],
        "invalid_client"
    );
    // The login client, no scope: its default.
    let ok = app
        .form("/token", &format!("{grant}&client_id=tessera-web"))
        .await;
    assert_eq!(ok.status, StatusCode::OK, "{}", ok.body);
    let access = claims(ok.body["access_token"].as_str().unwrap());
    assert_eq!(access["client_id"], "tessera-web");
    assert_eq!(access["scope"], "profile");
    assert_eq!(ok.body["scope"], "profile");

    // A confidential client with scopes of its own and an audience.
    let secret = app
        .add_confidential(
            "backoffice",
            &["orders:read", "orders:write"],
            &["orders:read"],
        )
        .await;
    let without_secret = app
        .form("/token", &format!("{grant}&client_id=backoffice"))
        .await;
    assert_eq!(without_secret.status, StatusCode::BAD_REQUEST);
    assert_eq!(without_secret.body["error"], "invalid_client");
    for wrong in [
        app.form_as("/token", grant, &basic("backoffice", "not-the-secret"))
            .await,
        app.form(
            "/token",
            &format!("{grant}&client_id=backoffice&client_secret=not-the-secret"),
        )
        .await,
        app.form_as("/token", grant, &basic("nobody", &secret))
            .await,
    ] {
        assert_eq!(wrong.status, StatusCode::UNAUTHORIZED, "{}", wrong.body);
        assert_eq!(wrong.body["error"], "invalid_client");
        assert_eq!(
            wrong.headers.get(header::WWW_AUTHENTICATE).unwrap(),
            "Basic realm=\"tessera\""
        );
    }
    let ok = app
        .form_as("/token", grant, &basic("backoffice", &secret))
        .await;
    assert_eq!(ok.status, StatusCode::OK, "{}", ok.body);
    let access = claims(ok.body["access_token"].as_str().unwrap());
    assert_eq!(
        (&access["client_id"], &access["scope"], &access["aud"]),
        (
            &json!("backoffice"),
            &json!("orders:read"),
            &json!("orders-api")
        )
    );
    let both = app
        .form(
            "/token",
            &format!(
                "{grant}&client_id=backoffice&client_secret={secret}&scope=orders:write+orders:read"
            ),
        )
        .await;
    assert_eq!(both.status, StatusCode::OK, "{}", both.body);
    assert_eq!(
        claims(both.body["access_token"].as_str().unwrap())["scope"],
        "orders:write orders:read"
    );
    assert_eq!(
        app.form_as(
            "/token",
            &format!("{grant}&scope=orders:write+admin"),
            &basic("backoffice", &secret)
        )
        .await
        .body["error"],
        "invalid_scope"
    );

    // Refreshing keeps the registered client: a confidential one must
    // authenticate, and no other client may use its refresh token.
    let refresh = format!(
        "grant_type=refresh_token&refresh_token={}",
        refresh_of(&both.body)
    );
    let anonymous = app.form("/token", &refresh).await;
    assert_eq!(anonymous.status, StatusCode::BAD_REQUEST);
    assert_eq!(anonymous.body["error"], "invalid_client");
    let other = app
        .form("/token", &format!("{refresh}&client_id=tessera-web"))
        .await;
    assert_eq!(other.body["error"], "invalid_grant");
    // The operator narrows the client: the refreshed token narrows with it.
    let mut narrowed = app.db.client("backoffice").await.unwrap().unwrap();
    narrowed.scopes = vec!["orders:read".to_owned()];
    narrowed.default_scope = vec!["orders:read".to_owned()];
    app.db.update_client(&narrowed).await.unwrap();
    app.state.service().clients_changed();
    let refreshed = app
        .form_as("/token", &refresh, &basic("backoffice", &secret))
        .await;
    assert_eq!(refreshed.status, StatusCode::OK, "{}", refreshed.body);
    let access = claims(refreshed.body["access_token"].as_str().unwrap());
    assert_eq!(
        (access["client_id"].as_str(), access["scope"].as_str()),
        (Some("backoffice"), Some("orders:read"))
    );
    // Disabled: no new tokens, no refresh.
    narrowed.disabled = true;
    app.db.update_client(&narrowed).await.unwrap();
    app.state.service().clients_changed();
    let next = format!(
        "grant_type=refresh_token&refresh_token={}",
        refresh_of(&refreshed.body)
    );
    assert_eq!(
        app.form_as("/token", &next, &basic("backoffice", &secret))
            .await
            .body["error"],
        "invalid_client"
    );
    assert_eq!(
        app.form_as("/token", grant, &basic("backoffice", &secret))
            .await
            .body["error"],
        "invalid_client"
    );
    // A client not allowed to refresh gets no refresh token.
    let mut no_refresh = tessera_issuer::clients::login_client("kiosk", T0 as i64);
    no_refresh.grant_types = vec!["password".to_owned()];
    app.db.add_client(&no_refresh).await.unwrap();
    app.state.service().clients_changed();
    let kiosk = app
        .form("/token", &format!("{grant}&client_id=kiosk"))
        .await;
    assert_eq!(kiosk.status, StatusCode::OK, "{}", kiosk.body);
    assert!(kiosk.body.get("refresh_token").is_none(), "{}", kiosk.body);
    assert_eq!(
        app.form(
            "/token",
            "grant_type=refresh_token&refresh_token=x&client_id=kiosk"
        )
        .await
        .body["error"],
        "unauthorized_client"
    );
}

#[tokio::test]
async fn the_password_grant_and_rfc6749_errors() {
    let app = app().await;
    let cases = [
        (
            "grant_type=password&username=alice&password=wrong&client_id=tessera-web",
            "invalid_grant",
        ),
        (
            "grant_type=password&username=nobody&password=correct+horse&client_id=tessera-web",
            "invalid_grant",
        ),
        (
            "grant_type=password&password=correct+horse&client_id=tessera-web",
            "invalid_request",
        ),
        ("username=alice&password=correct+horse", "invalid_request"),
        (
            "grant_type=authorization_code&code=x",
            "unsupported_grant_type",
        ),
        ("grant_type=client_credentials", "unsupported_grant_type"),
        ("grant_type=refresh_token", "invalid_request"),
        (
            "grant_type=refresh_token&refresh_token=not-a-token",
            "invalid_grant",
        ),
        (
            "grant_type=refresh_token&grant_type=password",
            "invalid_request",
        ),
        (
            "grant_type=password&username=alice&password=correct+horse&scope=%22bad%22&client_id=tessera-web",
            "invalid_request",
        ),
    ];
    for (form, error) in cases {
        let reply = app.form("/token", form).await;
        assert_eq!(reply.status, StatusCode::BAD_REQUEST, "{form}");
        assert_eq!(reply.body["error"], error, "{form}: {}", reply.body);
        assert_eq!(
            reply.headers.get(header::CACHE_CONTROL).unwrap(),
            "no-store"
        );
    }
    let json_body = app
        .send(
            Request::post("/token")
                .header(header::CONTENT_TYPE, "application/json")
                .body(Body::from("{\"grant_type\":\"password\"}"))
                .unwrap(),
        )
        .await;
    assert_eq!(json_body.status, StatusCode::BAD_REQUEST);
    assert_eq!(json_body.body["error"], "invalid_request");
}

#[tokio::test]
async fn revoke_kills_the_family_and_answers_200_for_anything() {
    let app = app().await;
    let login = app.login().await;
    let token = refresh_of(&login);
    let reply = app
        .form(
            "/revoke",
            &format!("token={token}&token_type_hint=refresh_token"),
        )
        .await;
    assert_eq!(reply.status, StatusCode::OK);
    assert_eq!(
        app.refresh(&token).await.body,
        json!({"error": "invalid_grant"})
    );
    // Unknown tokens, access tokens, garbage: 200, nothing revealed.
    for form in [
        "token=unknown".to_owned(),
        format!("token={}", login["access_token"].as_str().unwrap()),
    ] {
        assert_eq!(app.form("/revoke", &form).await.status, StatusCode::OK);
    }
    let missing = app.form("/revoke", "token_type_hint=refresh_token").await;
    assert_eq!(missing.status, StatusCode::BAD_REQUEST);
    assert_eq!(missing.body["error"], "invalid_request");
}

/// A form over the 16 KiB limit is `413` on every form endpoint, as `/login`
/// answers for JSON (it was `400 "expected a form body"`).
#[tokio::test]
async fn oversized_form_bodies_are_413_everywhere() {
    let app = app().await;
    let big = format!("token={}", "x".repeat(20 * 1024));
    let secret = app.add_confidential("resource-a", &[], &[]).await;
    let mut caller = app.db.client("resource-a").await.unwrap().unwrap();
    caller.introspect = true;
    app.db.update_client(&caller).await.unwrap();
    app.state.service().clients_changed();
    for path in ["/token", "/revoke", "/introspect"] {
        let reply = app.form_as(path, &big, &basic("resource-a", &secret)).await;
        assert_eq!(
            reply.status,
            StatusCode::PAYLOAD_TOO_LARGE,
            "{path}: {}",
            reply.body
        );
        assert_eq!(reply.body["error"], "invalid_request", "{path}");
    }
}

#[tokio::test]
async fn logout_ends_the_session_of_the_access_token() {
    let app = app().await;
    let login = app.login().await;
    let access = login["access_token"].as_str().unwrap();
    let other = app.login().await;

    let reply = app.logout(Some(&format!("Bearer {access}"))).await;
    assert_eq!(reply.status, StatusCode::NO_CONTENT);
    assert_eq!(
        app.refresh(&refresh_of(&login)).await.body,
        json!({"error": "invalid_grant"})
    );
    // Another session of the same user is untouched.
    assert_eq!(
        app.refresh(&refresh_of(&other)).await.status,
        StatusCode::OK
    );
    // Logging out twice is harmless.
    assert_eq!(
        app.logout(Some(&format!("Bearer {access}"))).await.status,
        StatusCode::NO_CONTENT
    );
}

#[tokio::test]
async fn logout_without_a_valid_bearer_token_is_401_with_a_challenge() {
    let app = app().await;
    let login = app.login().await;
    let access = login["access_token"].as_str().unwrap().to_owned();
    let mut tampered = access.clone();
    tampered.replace_range(tampered.len() - 4.., "AAAA");
    let cases: Vec<(Option<String>, &str)> = vec![
        (None, "Bearer"),
        (
            Some("Basic YWxpY2U6eA==".to_owned()),
            "error=\"invalid_request\"",
        ),
        (
            Some("Bearer not.a.token".to_owned()),
            "error=\"invalid_token\"",
        ),
        (
            Some(format!("Bearer {tampered}")),
            "error=\"invalid_token\"",
        ),
    ];
    for (authorization, challenge) in cases {
        let reply = app.logout(authorization.as_deref()).await;
        assert_eq!(reply.status, StatusCode::UNAUTHORIZED, "{authorization:?}");
        let header = reply
            .headers
            .get(header::WWW_AUTHENTICATE)
            .unwrap()
            .to_str()
            .unwrap();
        assert!(
            header.starts_with("Bearer") && header.contains(challenge),
            "{header}"
        );
    }
    // Expired (15 min + 60 s leeway later): refused, and the session lives on.
    app.clock.advance(961);
    let reply = app.logout(Some(&format!("Bearer {access}"))).await;
    assert_eq!(reply.status, StatusCode::UNAUTHORIZED);
    assert_eq!(
        app.refresh(&refresh_of(&login)).await.status,
        StatusCode::OK
    );
}

async fn login_as(app: &App, username: &str, password: &str, ip: Option<&str>) -> Reply {
    let mut request = Request::post("/login")
        .header(header::CONTENT_TYPE, "application/json")
        .body(Body::from(
            json!({"username": username, "password": password}).to_string(),
        ))
        .unwrap();
    if let Some(ip) = ip {
        let addr: std::net::SocketAddr = format!("{ip}:40000").parse().unwrap();
        request
            .extensions_mut()
            .insert(axum::extract::ConnectInfo(addr));
    }
    app.send(request).await
}

#[tokio::test]
async fn failed_logins_are_throttled_per_username_with_growing_delays() {
    let app = app().await;
    for _ in 0..6 {
        assert_eq!(
            login_as(&app, "alice", "wrong", None).await.status,
            StatusCode::UNAUTHORIZED
        );
    }
    // Blocked now: even the right password waits, and no Argon2 work is done.
    let blocked = login_as(&app, "alice", "correct horse", None).await;
    assert_eq!(blocked.status, StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(blocked.headers.get(header::RETRY_AFTER).unwrap(), "1");
    assert_eq!(blocked.body["error"], "too_many_attempts");
    // The OAuth password grant is throttled the same way.
    let grant = app
        .form(
            "/token",
            "grant_type=password&username=alice&password=correct+horse&client_id=tessera-web",
        )
        .await;
    assert_eq!(grant.status, StatusCode::TOO_MANY_REQUESTS);
    // Other users are not affected.
    assert_eq!(
        login_as(&app, "bob", "wrong", None).await.status,
        StatusCode::UNAUTHORIZED
    );

    app.clock.advance(1);
    assert_eq!(
        login_as(&app, "alice", "wrong", None).await.status,
        StatusCode::UNAUTHORIZED
    );
    let longer = login_as(&app, "alice", "correct horse", None).await;
    assert_eq!(
        longer.headers.get(header::RETRY_AFTER).unwrap(),
        "2",
        "the delay doubled"
    );
    app.clock.advance(2);
    assert_eq!(
        login_as(&app, "alice", "correct horse", None).await.status,
        StatusCode::OK
    );
    // Success reset the username: five more mistakes are free again.
    for _ in 0..5 {
        assert_eq!(
            login_as(&app, "alice", "wrong", None).await.status,
            StatusCode::UNAUTHORIZED
        );
    }
    assert_eq!(
        login_as(&app, "alice", "correct horse", None).await.status,
        StatusCode::OK
    );
}

/// The security review's finding 2: 40 parallel wrong guesses for one user
/// were all checked (check-then-record). Reserved before the check, at most
/// the 5 free attempts and the one that blocks reach Argon2; the rest are 429.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn parallel_wrong_guesses_reach_at_most_the_limit_of_password_checks() {
    let app = Arc::new(app().await);
    let before = app.state.service().hasher().checks_run();
    let guesses: Vec<_> = (0..40)
        .map(|i| {
            let app = Arc::clone(&app);
            tokio::spawn(async move {
                let ip = format!("198.51.100.{}", i + 1);
                login_as(&app, "alice", "wrong", Some(&ip)).await.status
            })
        })
        .collect();
    let mut statuses = Vec::new();
    for guess in guesses {
        statuses.push(guess.await.unwrap());
    }
    let checked = app.state.service().hasher().checks_run() - before;
    let refused = statuses
        .iter()
        .filter(|s| **s == StatusCode::TOO_MANY_REQUESTS)
        .count();
    assert!(checked <= 6, "{checked} password checks for one username");
    assert_eq!(refused, 40 - checked as usize, "{statuses:?}");
    assert!(
        statuses
            .iter()
            .all(|s| *s == StatusCode::UNAUTHORIZED || *s == StatusCode::TOO_MANY_REQUESTS)
    );
}

#[tokio::test]
async fn failed_logins_are_throttled_per_client_ip_across_usernames() {
    let app = app().await;
    for i in 0..21 {
        let reply = login_as(&app, &format!("guess{i}"), "x", Some("192.0.2.7")).await;
        assert_eq!(reply.status, StatusCode::UNAUTHORIZED);
    }
    let blocked = login_as(&app, "alice", "correct horse", Some("192.0.2.7")).await;
    assert_eq!(blocked.status, StatusCode::TOO_MANY_REQUESTS);
    assert!(blocked.headers.contains_key(header::RETRY_AFTER));
    let elsewhere = login_as(&app, "alice", "correct horse", Some("198.51.100.1")).await;
    assert_eq!(elsewhere.status, StatusCode::OK);
}

async fn via(app: &App, user: &str, password: &str, peer: &str, xff: &str) -> StatusCode {
    let mut request = Request::post("/login")
        .header(header::CONTENT_TYPE, "application/json")
        .header("x-forwarded-for", xff)
        .body(Body::from(
            json!({"username": user, "password": password}).to_string(),
        ))
        .unwrap();
    let addr: std::net::SocketAddr = format!("{peer}:40000").parse().unwrap();
    request
        .extensions_mut()
        .insert(axum::extract::ConnectInfo(addr));
    app.send(request).await.status
}

/// The review's finding 4, behind a proxy: with `trusted_proxies`, the
/// forwarded address is the one throttled (and audited), so spraying through
/// the proxy blocks the sprayer, not everyone; without it, forwarded headers
/// are ignored, so a client cannot buy fresh budgets by forging them.
#[tokio::test]
async fn the_client_address_is_read_past_trusted_proxies_only() {
    let mut app = app().await;
    app.state = app.state.clone().with_trusted_proxies(vec![
        tessera_issuer::proxies::Cidr::parse("10.0.0.0/8").unwrap(),
    ]);
    for i in 0..21 {
        let status = via(
            &app,
            &format!("guess{i}"),
            "x",
            "10.0.0.1",
            "6.6.6.6, 192.0.2.7",
        )
        .await;
        assert_eq!(status, StatusCode::UNAUTHORIZED);
    }
    assert_eq!(
        via(&app, "alice", "correct horse", "10.0.0.1", "192.0.2.7").await,
        StatusCode::TOO_MANY_REQUESTS,
        "the sprayer's address is blocked"
    );
    assert_eq!(
        via(&app, "alice", "correct horse", "10.0.0.1", "198.51.100.4").await,
        StatusCode::OK,
        "another client behind the same proxy is not"
    );
    let events = app.db.audit_events(0, None, 100).await.unwrap();
    assert!(
        events
            .iter()
            .any(|e| e.event == "login_failure" && e.client_ip.as_deref() == Some("192.0.2.7")),
        "audited with the forwarded address"
    );
    // An untrusted peer's X-Forwarded-For is ignored: its own address counts.
    for i in 0..21 {
        let forged = format!("203.0.113.{i}");
        let status = via(&app, &format!("other{i}"), "x", "198.51.100.200", &forged).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED);
    }
    assert_eq!(
        via(&app, "alice", "wrong", "198.51.100.200", "203.0.113.99").await,
        StatusCode::TOO_MANY_REQUESTS
    );
}

/// Security events land in the database (on either backend), with who, which
/// session and from where, and never a secret.
#[tokio::test]
async fn security_events_are_stored_without_secrets() {
    let app = app().await;
    let failed = login_as(&app, "alice", "not her password", Some("192.0.2.1")).await;
    assert_eq!(failed.status, StatusCode::UNAUTHORIZED);
    let unknown = login_as(&app, "mallory", "whatever it is", Some("192.0.2.2")).await;
    assert_eq!(unknown.status, StatusCode::UNAUTHORIZED);
    let login = app.login().await;
    let access = login["access_token"].as_str().unwrap().to_owned();
    let sid = claims(&access)["sid"].as_str().unwrap().to_owned();
    let sub = claims(&access)["sub"].as_str().unwrap().to_owned();
    let first = refresh_of(&login);
    app.clock.advance(60);
    assert_eq!(app.refresh(&first).await.status, StatusCode::OK);
    app.clock.advance(11);
    assert_eq!(app.refresh(&first).await.status, StatusCode::BAD_REQUEST);

    let events = app.db.audit_events(0, None, 100).await.unwrap();
    let kinds: Vec<&str> = events.iter().map(|e| e.event.as_str()).collect();
    // A successful refresh is logged, not stored (the hot path).
    assert_eq!(
        kinds,
        [
            "login_failure",
            "login_failure",
            "login_success",
            "refresh_token_reuse"
        ]
    );
    assert_eq!(events[0].detail["reason"], "wrong_password");
    assert_eq!(events[0].user_id.as_deref(), Some(sub.as_str()));
    assert_eq!(events[0].client_ip.as_deref(), Some("192.0.2.1"));
    assert_eq!(events[1].detail["reason"], "unknown_user");
    assert_eq!(events[1].user_id, None);
    assert_eq!(events[2].session_id.as_deref(), Some(sid.as_str()));
    assert_eq!(events[3].session_id.as_deref(), Some(sid.as_str()));
    assert_eq!(events[2].at, T0 as i64);
    assert_eq!(events[3].at, T0 as i64 + 71);
    let stored = serde_json::to_string(&events).unwrap();
    for secret in ["not her password", "correct horse", &first, &access] {
        assert!(!stored.contains(secret), "a secret in the audit trail");
    }
    // One user's events, and the latest N.
    let alices = app.db.audit_events(0, Some(&sub), 100).await.unwrap();
    assert_eq!(alices.len(), 3);
    let latest = app.db.audit_events(0, None, 2).await.unwrap();
    let latest: Vec<&str> = latest.iter().map(|e| e.event.as_str()).collect();
    assert_eq!(latest, ["login_success", "refresh_token_reuse"]);
    // Retention: events before a time go.
    assert_eq!(app.db.forget_audit_before(T0 as i64 + 1).await.unwrap(), 3);
    assert_eq!(app.db.audit_events(0, None, 100).await.unwrap().len(), 1);
}

/// Logout, `/revoke` and refresh-token reuse put the session on the
/// revocation list (so its access tokens can be refused before they expire),
/// each entry kept for the access-token lifetime plus the maximum leeway.
#[tokio::test]
async fn logout_revoke_and_reuse_add_the_session_to_the_revocation_list() {
    let app = app().await;
    let sid_of = |body: &Value| {
        claims(body["access_token"].as_str().unwrap())["sid"]
            .as_str()
            .unwrap()
            .to_owned()
    };
    let (a, b, c) = (app.login().await, app.login().await, app.login().await);
    let access = a["access_token"].as_str().unwrap();
    assert_eq!(
        app.logout(Some(&format!("Bearer {access}"))).await.status,
        StatusCode::NO_CONTENT
    );
    assert_eq!(
        app.form("/revoke", &format!("token={}", refresh_of(&b)))
            .await
            .status,
        StatusCode::OK
    );
    app.clock.advance(60);
    assert_eq!(app.refresh(&refresh_of(&c)).await.status, StatusCode::OK);
    app.clock.advance(11);
    assert_eq!(
        app.refresh(&refresh_of(&c)).await.status,
        StatusCode::BAD_REQUEST
    );
    // An unknown token revokes nothing and adds nothing.
    app.form("/revoke", "token=not-a-token").await;

    let entries = app.db.revocations_since(0, T0 as i64).await.unwrap();
    let listed: Vec<(&str, String, &str)> = entries
        .iter()
        .map(|e| (e.kind.name(), e.value.clone(), e.why.as_str()))
        .collect();
    assert_eq!(
        listed,
        [
            ("sid", sid_of(&a), "logout"),
            ("sid", sid_of(&b), "revoked"),
            ("sid", sid_of(&c), "refresh_token_reuse"),
        ]
    );
    // Kept for 15 min (the access-token lifetime) + 5 min leeway, then gone.
    assert_eq!(entries[0].expires_at, T0 as i64 + 900 + 300);
    assert_eq!(
        app.db
            .revocations_since(0, T0 as i64 + 71 + 1200)
            .await
            .unwrap()
            .len(),
        0
    );
}

/// 200 logouts with one token and 200 `/revoke`s of its refresh token used
/// to add 400 entries of one hash (issue 15, item 6); now they add one.
/// `/revoke` of an access token revokes that token (RFC 7009), by `jti`,
/// and leaves its session alone.
#[tokio::test]
async fn repeats_add_one_entry_and_revoke_takes_access_tokens() {
    let app = app().await;
    let a = app.login().await;
    let bearer = format!("Bearer {}", a["access_token"].as_str().unwrap());
    let revoke_a = format!("token={}", refresh_of(&a));
    for _ in 0..200 {
        assert_eq!(
            app.logout(Some(&bearer)).await.status,
            StatusCode::NO_CONTENT
        );
        assert_eq!(app.form("/revoke", &revoke_a).await.status, StatusCode::OK);
    }
    let entries = app.db.revocations_since(0, T0 as i64).await.unwrap();
    assert_eq!(entries.len(), 1, "{entries:?}");

    let d = app.login().await;
    let access = d["access_token"].as_str().unwrap();
    let revoke_d = format!("token={access}&token_type_hint=access_token");
    assert_eq!(app.form("/revoke", &revoke_d).await.status, StatusCode::OK);
    // Not signed by us: nothing.
    let forged = format!("token={}x", &access[..access.len() - 1]);
    assert_eq!(app.form("/revoke", &forged).await.status, StatusCode::OK);
    let entries = app.db.revocations_since(0, T0 as i64).await.unwrap();
    let listed: Vec<(&str, &str, &str)> = entries
        .iter()
        .map(|e| (e.kind.name(), e.value.as_str(), e.why.as_str()))
        .collect();
    let jti = claims(access)["jti"].as_str().unwrap().to_owned();
    assert_eq!(listed[1..], [("jti", jti.as_str(), "revoked")]);
    // The session goes on: its refresh token still works.
    assert_eq!(app.refresh(&refresh_of(&d)).await.status, StatusCode::OK);
}

impl App {
    async fn feed(&self, since: Option<&str>, etag: Option<&str>) -> Reply {
        let path = since.map_or("/revocations".to_owned(), |s| {
            format!("/revocations?since={s}")
        });
        let mut request = Request::get(path);
        if let Some(etag) = etag {
            request = request.header(header::IF_NONE_MATCH, etag);
        }
        self.send(request.body(Body::empty()).unwrap()).await
    }

    /// The feed document's payload, after checking its signature with the
    /// published JWKS and its header.
    async fn feed_document(&self, reply: &Reply) -> Value {
        assert_eq!(reply.status, StatusCode::OK);
        assert_eq!(reply.headers[header::CONTENT_TYPE], "application/jwt");
        let jwks = self
            .send(
                Request::get("/.well-known/jwks.json")
                    .body(Body::empty())
                    .unwrap(),
            )
            .await;
        let (keys, _) = tessera_verifier::KeySet::from_jwks_json(&jwks.raw, &["RS256"]).unwrap();
        let text = std::str::from_utf8(&reply.raw).unwrap();
        let jws = tessera_verifier::Jws::parse(text, 1 << 20).unwrap();
        assert_eq!(jws.header().typ.as_deref(), Some("revocations+jwt"));
        let kid = jws.header().kid.clone().unwrap();
        jws.verify_signature(keys.get(&kid).unwrap()).unwrap();
        let payload: Value = serde_json::from_slice(jws.payload()).unwrap();
        assert_eq!(payload["iss"], "https://auth.example.test");
        payload
    }
}

/// The revocation feed: signed with the published key, hashes instead of
/// identifiers, a cursor that is also the ETag (304), increments after a
/// cursor, a snapshot for none or a foreign one, bad cursors refused, and
/// entries gone once expired.
#[tokio::test]
async fn the_revocation_feed_is_signed_incremental_and_bounded() {
    let app = app().await;
    let first = app.feed(None, None).await;
    let doc = app.feed_document(&first).await;
    assert_eq!(doc["snapshot"], true);
    assert_eq!(doc["entries"], json!([]));
    let cursor0 = doc["cursor"].as_str().unwrap().to_owned();
    // `<epoch>.<id>.<tag>`: no entry yet, so id 0 and the tag `-`.
    let (epoch, rest) = cursor0.split_once('.').unwrap();
    assert_eq!(rest, "0.-");
    assert_eq!(first.headers[header::ETAG], format!("\"{cursor0}\""));
    assert_eq!(first.headers[header::CACHE_CONTROL], "no-cache");

    let (a, b) = (app.login().await, app.login().await);
    let access = a["access_token"].as_str().unwrap();
    let sid = claims(access)["sid"].as_str().unwrap().to_owned();
    let logout = app.logout(Some(&format!("Bearer {access}"))).await;
    assert_eq!(logout.status, StatusCode::NO_CONTENT);

    // What was added after the cursor, at once (the revocation was made here).
    let reply = app
        .feed(Some(&cursor0), Some(&format!("\"{cursor0}\"")))
        .await;
    let doc = app.feed_document(&reply).await;
    assert_eq!(doc["snapshot"], false);
    let hash = URL_SAFE_NO_PAD.encode(tessera_keyring::sha256(format!("sid:{sid}").as_bytes()));
    assert_eq!(
        doc["entries"],
        json!([{"kind": "sid", "hash": hash, "exp": T0 as i64 + 900 + 300}])
    );
    assert!(!reply.raw.windows(sid.len()).any(|w| w == sid.as_bytes()));
    let cursor1 = doc["cursor"].as_str().unwrap().to_owned();
    let etag1 = reply.headers[header::ETAG].to_str().unwrap().to_owned();
    assert_eq!(etag1, format!("\"{cursor1}\""));

    // Up to date: 304 with the ETag, or an empty increment without it.
    let again = app.feed(Some(&cursor1), Some(&etag1)).await;
    assert_eq!(again.status, StatusCode::NOT_MODIFIED);
    assert!(again.raw.is_empty());
    let doc = app
        .feed_document(&app.feed(Some(&cursor1), None).await)
        .await;
    assert_eq!(
        (doc["entries"].clone(), doc["snapshot"].clone()),
        (json!([]), json!(false))
    );

    // A cursor from another database: the whole list, as a snapshot.
    let doc = app
        .feed_document(&app.feed(Some("0123456789abcdef.7"), None).await)
        .await;
    assert_eq!(doc["snapshot"], true);
    assert_eq!(doc["entries"].as_array().unwrap().len(), 1);
    // The review's finding 5: a cursor beyond the newest entry was signed as
    // given, moving pollers past every later revocation. Now it gets a
    // snapshot, with the real cursor.
    let ahead = format!("{epoch}.999999999999.-");
    let doc = app.feed_document(&app.feed(Some(&ahead), None).await).await;
    assert_eq!(doc["cursor"], cursor1, "never beyond the newest entry");
    assert_eq!(doc["snapshot"], true);
    assert_eq!(doc["entries"].as_array().unwrap().len(), 1);
    assert!(doc.get("since").is_none(), "a snapshot answers any request");
    // A delta names the cursor it answers, and when it was signed.
    let doc = app
        .feed_document(&app.feed(Some(&cursor0), None).await)
        .await;
    assert_eq!(doc["since"], cursor0);
    assert_eq!(doc["iat"], T0 as i64);
    for bad in [
        "nonsense",
        &format!("{epoch}.-1.-"),
        &format!("{epoch}.x.-"),
        &format!("{epoch}.1.a!b"),
        &format!("{epoch}.1.-.extra"),
    ] {
        let reply = app.feed(Some(bad), None).await;
        assert_eq!(reply.status, StatusCode::BAD_REQUEST, "{bad}");
    }

    // /revoke adds the other session; once both entries expire (15 min + 5 min
    // after they were made), the feed holds nothing.
    app.form("/revoke", &format!("token={}", refresh_of(&b)))
        .await;
    let doc = app.feed_document(&app.feed(None, None).await).await;
    assert_eq!(doc["entries"].as_array().unwrap().len(), 2);
    app.clock.advance(1200);
    let doc = app.feed_document(&app.feed(None, None).await).await;
    assert_eq!(doc["entries"], json!([]));
    assert_eq!(
        doc["cursor"],
        format!("{epoch}.2.-"),
        "the cursor never goes back"
    );
}

/// The review's finding 5, second half: a database restored from an older
/// backup hands out again the ids pollers already passed. Cursors name their
/// entry, so a poller whose cursor names an entry the restore replaced gets
/// a snapshot of the restored list, revocations made after the restore
/// included, and follows it from there.
#[tokio::test]
async fn after_a_restore_from_an_older_backup_pollers_converge_on_the_restored_list() {
    let app = app().await;
    for _ in 0..3 {
        logout_one(&app).await;
    }
    let doc = app.feed_document(&app.feed(None, None).await).await;
    let at_three = doc["cursor"].as_str().unwrap().to_owned();

    // The backup, taken now: three entries. On SQLite a real one (`VACUUM
    // INTO` a new file); on PostgreSQL the restore is staged below.
    let backup_dir = tempfile::tempdir().unwrap();
    let backup = backup_dir.path().join("backup.db");
    let url = test_database_url(app._tmp.path()).unwrap();
    let on_sqlite = !url.starts_with("postgres");
    if on_sqlite {
        let mut conn = <sqlx::SqliteConnection as sqlx::Connection>::connect(&url)
            .await
            .unwrap();
        sqlx::query(&format!("VACUUM INTO '{}'", backup.display()))
            .execute(&mut conn)
            .await
            .unwrap();
    }

    // Two more; a poller follows them.
    for _ in 0..2 {
        logout_one(&app).await;
    }
    let doc = app
        .feed_document(&app.feed(Some(&at_three), None).await)
        .await;
    assert_eq!(doc["entries"].as_array().unwrap().len(), 2);
    let at_five = doc["cursor"].as_str().unwrap().to_owned();
    assert_eq!(at_five.split('.').nth(1), Some("5"));

    // Restored from the backup; three revocations after the restore take ids
    // 4, 5 and 6 again, for other sessions.
    let restored_dir = tempfile::tempdir().unwrap();
    let restored_url = if on_sqlite {
        format!("sqlite://{}", backup.display())
    } else {
        stage_restore(&url, 3).await;
        url.clone()
    };
    let restored = app_on(restored_dir, &restored_url, false).await;
    restored.clock.advance(5);
    for _ in 0..3 {
        logout_one(&restored).await;
    }
    // Before, the poller at 5 was answered "after 5": entry 6 alone, and the
    // new 4 and 5 were never seen. Now its cursor names an entry 5 the list
    // no longer holds: a snapshot, the restored list whole.
    let reply = restored
        .feed(Some(&at_five), Some(&format!("\"{at_five}\"")))
        .await;
    let doc = restored.feed_document(&reply).await;
    assert_eq!(doc["snapshot"], true, "{doc}");
    assert_eq!(doc["entries"].as_array().unwrap().len(), 6, "{doc}");
    let now_at = doc["cursor"].as_str().unwrap().to_owned();
    assert_eq!(now_at.split('.').nth(1), Some("6"));
    assert_ne!(now_at, at_five);
    // From there it follows deltas again, and is up to date.
    let reply = restored
        .feed(Some(&now_at), Some(&format!("\"{now_at}\"")))
        .await;
    assert_eq!(reply.status, StatusCode::NOT_MODIFIED);
    // A poller still at 3 (whose entry the restore kept) gets the delta:
    // the entries after 3, the new 4, 5 and 6.
    let doc = restored
        .feed_document(&restored.feed(Some(&at_three), None).await)
        .await;
    assert_eq!(
        (
            doc["snapshot"].clone(),
            doc["entries"].as_array().unwrap().len()
        ),
        (json!(false), 3)
    );
    // A cursor from before cursors had tags: a snapshot.
    let legacy = at_three.rsplit_once('.').unwrap().0.to_owned();
    let doc = restored
        .feed_document(&restored.feed(Some(&legacy), None).await)
        .await;
    assert_eq!(doc["snapshot"], true);
}

/// The same restore under an instance that keeps running: its copy of the
/// list still holds the old entries 4 and 5, and used to answer "after 5"
/// from it. Each refresh now checks the copy against the database, sees the
/// list went back, and reads it whole.
#[tokio::test]
async fn a_running_instance_notices_the_restore() {
    let app = app().await;
    for _ in 0..5 {
        logout_one(&app).await;
    }
    let doc = app.feed_document(&app.feed(None, None).await).await;
    let at_five = doc["cursor"].as_str().unwrap().to_owned();
    assert_eq!(at_five.split('.').nth(1), Some("5"));

    // What a restore of a backup taken at entry 3 does to the table: the
    // later rows are gone and the sequence is back at 3.
    stage_restore(&test_database_url(app._tmp.path()).unwrap(), 3).await;
    app.clock.advance(5);
    for _ in 0..3 {
        logout_one(&app).await;
    }
    let doc = app
        .feed_document(&app.feed(Some(&at_five), None).await)
        .await;
    assert_eq!(doc["snapshot"], true, "{doc}");
    assert_eq!(doc["entries"].as_array().unwrap().len(), 6, "{doc}");
    assert_eq!(doc["cursor"].as_str().unwrap().split('.').nth(1), Some("6"));
}

/// Up-to-date pollers (`304`) and cached answers spend no signing budget: a
/// flood of them leaves the next fresh delta signed as a delta.
#[tokio::test]
async fn polls_that_sign_nothing_spend_no_budget() {
    let app = app().await;
    logout_one(&app).await;
    let doc = app.feed_document(&app.feed(None, None).await).await;
    let at_one = doc["cursor"].as_str().unwrap().to_owned();
    let etag = format!("\"{at_one}\"");
    for _ in 0..100 {
        assert_eq!(
            app.feed(Some(&at_one), Some(&etag)).await.status,
            StatusCode::NOT_MODIFIED
        );
    }
    logout_one(&app).await;
    for _ in 0..100 {
        // One signature, then the same cached answer.
        let doc = app
            .feed_document(&app.feed(Some(&at_one), Some(&etag)).await)
            .await;
        assert_eq!(doc["snapshot"], false);
    }
}

/// Does to the revocations table what restoring a backup taken at entry
/// `at` does: later rows gone, ids handed out again from `at + 1`.
async fn stage_restore(url: &str, at: i64) {
    let delete = format!("DELETE FROM revocations WHERE id > {at}");
    if url.starts_with("postgres") {
        let mut conn = <sqlx::PgConnection as sqlx::Connection>::connect(url)
            .await
            .unwrap();
        sqlx::query(&delete).execute(&mut conn).await.unwrap();
        let reset = format!("SELECT setval(pg_get_serial_sequence('revocations', 'id'), {at})");
        sqlx::query(&reset).execute(&mut conn).await.unwrap();
    } else {
        let mut conn = <sqlx::SqliteConnection as sqlx::Connection>::connect(url)
            .await
            .unwrap();
        sqlx::query(&delete).execute(&mut conn).await.unwrap();
        let reset = format!("UPDATE sqlite_sequence SET seq = {at} WHERE name = 'revocations'");
        sqlx::query(&reset).execute(&mut conn).await.unwrap();
    }
}

/// A login and the logout of its token: one revocation.
async fn logout_one(app: &App) {
    let login = app.login().await;
    let bearer = format!("Bearer {}", login["access_token"].as_str().unwrap());
    assert_eq!(
        app.logout(Some(&bearer)).await.status,
        StatusCode::NO_CONTENT
    );
}

/// Each distinct delta costs a signature: an unauthenticated caller cycling
/// through every live entry's cursor gets the (one, cached) snapshot once
/// the per-second budget is spent, so signing stays bounded.
#[tokio::test]
async fn distinct_cursors_beyond_the_signing_budget_get_the_snapshot() {
    let app = app().await;
    let mut cursors = Vec::new();
    for _ in 0..40 {
        logout_one(&app).await;
        let doc = app.feed_document(&app.feed(None, None).await).await;
        cursors.push(doc["cursor"].as_str().unwrap().to_owned());
    }
    // All within one second of the test clock.
    let mut deltas = 0;
    for cursor in &cursors[..39] {
        let doc = app.feed_document(&app.feed(Some(cursor), None).await).await;
        if doc["snapshot"] == false {
            deltas += 1;
        }
    }
    let budget = tessera_issuer::feed::DELTA_SIGNATURES_PER_SEC as usize;
    assert_eq!(
        deltas, budget,
        "the first {budget} distinct deltas, then the snapshot"
    );
    // The next second, deltas again.
    app.clock.advance(1);
    let doc = app
        .feed_document(&app.feed(Some(&cursors[0]), None).await)
        .await;
    assert_eq!(doc["snapshot"], false);
}

/// `/introspect` (RFC 7662): only configured callers, with HTTP Basic; an
/// access token is active until it expires or is revoked (its session, or its
/// user up to its issue time); anything else is inactive.
#[tokio::test]
async fn introspection_answers_configured_callers_only_and_sees_revocations() {
    let mut app = app().await;
    let (secret, hash) = tessera_issuer::service::clients::new_client_secret();
    let mut secret_sha256 = [0u8; 32];
    URL_SAFE_NO_PAD
        .decode_slice(&hash, &mut secret_sha256)
        .unwrap();
    let issuer = app.state.service().clone().with_introspection_clients(vec![
        tessera_issuer::config::IntrospectionClient {
            client_id: "orders-api".to_owned(),
            secret_sha256,
        },
    ]);
    app.state = AppState::new(issuer);
    let app = &app;
    let introspect = |auth: Option<String>, form: String| {
        let mut request = Request::post("/introspect")
            .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded");
        if let Some(auth) = auth {
            request = request.header(header::AUTHORIZATION, auth);
        }
        let request = request.body(Body::from(form)).unwrap();
        async move {
            let reply = app.send(request).await;
            let challenge = reply
                .headers
                .get(header::WWW_AUTHENTICATE)
                .map(|v| v.to_str().unwrap().to_owned());
            // Every answer, errors included, must be JSON.
            let body = serde_json::from_slice::<Value>(&reply.raw).unwrap();
            (reply.status, challenge, body)
        }
    };
    let basic = |id: &str, secret: &str| {
        Some(format!(
            "Basic {}",
            base64::engine::general_purpose::STANDARD.encode(format!("{id}:{secret}"))
        ))
    };
    let good = || basic("orders-api", &secret);

    let login = app.login().await;
    let access = login["access_token"].as_str().unwrap().to_owned();
    let form = format!("token={access}");

    // Callers that are not configured learn nothing.
    for auth in [None, basic("orders-api", "wrong"), basic("other", &secret)] {
        let (status, challenge, body) = introspect(auth, form.clone()).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED);
        assert_eq!(challenge.as_deref(), Some("Basic realm=\"tessera\""));
        assert_eq!(body["error"], "invalid_client");
        assert!(body.get("active").is_none());
    }

    let (status, _, body) = introspect(good(), form.clone()).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body["active"], true);
    assert_eq!(body["username"], "alice");
    assert_eq!(body["token_type"], "Bearer");
    assert_eq!(body["exp"], T0 as i64 + 900);
    assert_eq!(body["sub"], claims(&access)["sub"]);
    assert_eq!(body["scope"], "profile");

    // Not an access token of ours, or no token at all.
    let refresh = refresh_of(&login);
    for other in [format!("token={refresh}"), "token=abc.def.ghi".to_owned()] {
        let (status, _, body) = introspect(good(), other).await;
        assert_eq!((status, body), (StatusCode::OK, json!({"active": false})));
    }
    let (status, _, _) = introspect(good(), "nothing=here".to_owned()).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);

    // A user revocation covers tokens issued up to its time, not later ones.
    let sub = claims(&access)["sub"].as_str().unwrap().to_owned();
    app.db
        .add_revocation(
            tessera_issuer::revocation::Kind::Sub,
            &sub,
            tessera_issuer::db::RevokedAt::Clock(T0 as i64),
            Duration::from_secs(900),
            "test",
        )
        .await
        .unwrap();
    let (_, _, body) = introspect(good(), form.clone()).await;
    assert_eq!(body["active"], false, "revoked with its user");
    app.clock.advance(1);
    let later = app.login().await["access_token"]
        .as_str()
        .unwrap()
        .to_owned();
    let (_, _, body) = introspect(good(), format!("token={later}")).await;
    assert_eq!(body["active"], true, "issued after the user's revocation");

    // Logout (its session), then expiry.
    let logout = app.logout(Some(&format!("Bearer {later}"))).await;
    assert_eq!(logout.status, StatusCode::NO_CONTENT);
    let (_, _, body) = introspect(good(), format!("token={later}")).await;
    assert_eq!(body["active"], false, "its session was logged out");
    let third = app.login().await["access_token"]
        .as_str()
        .unwrap()
        .to_owned();
    let fourth = format!(
        "token={}",
        app.login().await["access_token"].as_str().unwrap()
    );

    // Registered clients: one allowed to introspect, one not. (The
    // configuration table above is the deprecated way, still honoured.)
    let allowed = app.add_confidential("resource-a", &[], &[]).await;
    let mut a = app.db.client("resource-a").await.unwrap().unwrap();
    a.introspect = true;
    app.db.update_client(&a).await.unwrap();
    app.state.service().clients_changed();
    let not_allowed = app.add_confidential("resource-b", &[], &[]).await;
    let (status, _, body) = introspect(basic("resource-a", &allowed), fourth.clone()).await;
    assert_eq!((status, &body["active"]), (StatusCode::OK, &json!(true)));
    for refused in [
        basic("resource-b", &not_allowed),
        basic("resource-a", &not_allowed),
    ] {
        let (status, challenge, _) = introspect(refused, fourth.clone()).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED);
        assert!(challenge.unwrap().starts_with("Basic"));
    }

    app.clock.advance(900);
    let (_, _, body) = introspect(good(), format!("token={third}")).await;
    assert_eq!(body["active"], false, "expired");
}
