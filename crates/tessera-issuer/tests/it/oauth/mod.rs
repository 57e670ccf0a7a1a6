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
use serde_json::{Value, json};
use tessera_issuer::db::Db;
use tessera_issuer::http::{AppState, router};
use tessera_issuer::keys::KeyHandle;
use tessera_issuer::passwords::{Hasher, Password, random_token};
use tessera_issuer::service::Issuer;
use tessera_keyring::{Clock, DEFAULT_BITS, KeyDir};
use tessera_testkit::jws::claims_of as claims;
use tessera_testkit::oneshot::{self, Reply};
use tessera_testkit::pg::test_database_url;

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

async fn app() -> App {
    let tmp = tempfile::tempdir().unwrap();
    // A file database: concurrent requests get their own connections.
    let url = test_database_url(tmp.path()).unwrap();
    app_on(tmp, &url, true).await
}

/// An instance on the database at `url`; `fresh`: a first start (the login
/// client and the user alice are created), else they are already there.
async fn app_on(tmp: tempfile::TempDir, url: &str, fresh: bool) -> App {
    app_issued_by(tmp, url, fresh, "https://auth.example.test").await
}

/// [`app_on`], with the issuer URL `issuer`.
async fn app_issued_by(tmp: tempfile::TempDir, url: &str, fresh: bool, issuer: &str) -> App {
    let dir = KeyDir::new(tmp.path().join("keys"));
    dir.init(DEFAULT_BITS).unwrap();
    let keys = Arc::new(KeyHandle::load(dir).unwrap());
    let db = Db::connect(url).await.unwrap();
    // The login client a first start registers.
    tessera_issuer::service::clients::bootstrap(&db, "tessera-web", 0, fresh)
        .await
        .unwrap();
    let hasher = Hasher::with_params(64, 1, 1, 4).unwrap();
    let settings = crate::common::settings(issuer);
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
        oneshot::send(router(self.state.clone()), request).await
    }

    /// The RFC 8414 metadata document.
    async fn discovery(&self) -> Reply {
        self.send(
            Request::get("/.well-known/oauth-authorization-server")
                .body(Body::empty())
                .unwrap(),
        )
        .await
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

fn refresh_of(body: &Value) -> String {
    body["refresh_token"].as_str().unwrap().to_owned()
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

mod browser;
mod client_credentials;
mod grants;
mod introspection;
mod private_key_jwt;
mod refresh;
mod refresh_properties;
mod revocation;
mod session;
mod throttling;
