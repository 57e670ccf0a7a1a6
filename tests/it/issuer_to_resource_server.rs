//! The issuer and the demo resource server together, in-process over real HTTP
//! on port 0: the resource server discovers the issuer's JWKS from its metadata
//! and accepts exactly the tokens the issuer hands out, for as long as it should.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::net::SocketAddr;
use std::sync::Arc;

use serde_json::Value;
use tessera_bench::Client;
use tessera_verifier::{SystemClock, Verifier, VerifierConfig};

struct System {
    _tmp: tempfile::TempDir,
    issuer: SocketAddr,
    resource: SocketAddr,
    admin_password: String,
    database_url: String,
}

async fn start() -> System {
    let tmp = tempfile::tempdir().unwrap();
    let issuer = tessera_testkit::stack::start_issuer(tmp.path(), |_| {}).await;
    // The resource server knows only the issuer's URL.
    let verifier = Verifier::start(
        VerifierConfig::new(issuer.url.clone(), ["tessera"]),
        Arc::new(SystemClock),
    )
    .unwrap();
    let resource = tessera_testkit::stack::serve_resource(verifier).await;
    System {
        _tmp: tmp,
        issuer: issuer.addr,
        resource,
        admin_password: issuer.admin_password,
        database_url: issuer.database_url,
    }
}

async fn post(
    addr: SocketAddr,
    path: &str,
    content_type: &str,
    body: &str,
    headers: &[&str],
) -> (u16, Value) {
    let mut c = Client::connect(addr).await.unwrap();
    let (status, body) = c
        .request("POST", path, headers, content_type, body)
        .await
        .unwrap();
    (status, serde_json::from_slice(&body).unwrap_or(Value::Null))
}

async fn get(addr: SocketAddr, path: &str, token: &str) -> (u16, Value) {
    let mut c = Client::connect(addr).await.unwrap();
    let auth = format!("Authorization: Bearer {token}");
    let (status, body) = c.get(path, &[&auth]).await.unwrap();
    (status, serde_json::from_slice(&body).unwrap_or(Value::Null))
}

async fn login(s: &System, username: &str, password: &str) -> Value {
    tessera_testkit::stack::login(s.issuer, username, password).await
}

/// `POST /token` with the refresh token of a token response.
async fn refresh(s: &System, tokens: &Value) -> (u16, Value) {
    let form = format!(
        "grant_type=refresh_token&refresh_token={}",
        tokens["refresh_token"].as_str().unwrap()
    );
    post(
        s.issuer,
        "/token",
        "application/x-www-form-urlencoded",
        &form,
        &[],
    )
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn login_profile_admin_refresh_logout() {
    let s = start().await;
    // A second user without the admin role, added as the users CLI would.
    let db = tessera_issuer::db::Db::connect(&s.database_url)
        .await
        .unwrap();
    let hasher = tessera_issuer::passwords::Hasher::with_params(64, 1, 1, 1).unwrap();
    let hash = hasher
        .hash(&tessera_issuer::passwords::Password::new(
            "a long passphrase".into(),
        ))
        .unwrap();
    db.add_user("u-bob", "bob", &hash, &["user".to_owned()], 0)
        .await
        .unwrap();

    let admin = login(&s, "admin", &s.admin_password).await;
    let access = admin["access_token"].as_str().unwrap();
    let (status, profile) = get(s.resource, "/profile", access).await;
    assert_eq!(status, 200, "{profile}");
    assert_eq!(profile["preferred_username"], "admin");
    assert_eq!(profile["roles"], serde_json::json!(["admin"]));
    assert_eq!(get(s.resource, "/admin", access).await.0, 200);

    let bob = login(&s, "bob", "a long passphrase").await;
    let bob_access = bob["access_token"].as_str().unwrap();
    let (status, profile) = get(s.resource, "/profile", bob_access).await;
    assert_eq!((status, profile["sub"].as_str()), (200, Some("u-bob")));
    let (status, body) = get(s.resource, "/admin", bob_access).await;
    assert_eq!(
        (status, body["error"].as_str()),
        (403, Some("insufficient_scope"))
    );

    // Refresh: a new pair; the new access token works at the resource server.
    let (status, refreshed) = refresh(&s, &bob).await;
    assert_eq!(status, 200, "{refreshed}");
    let new_access = refreshed["access_token"].as_str().unwrap();
    assert_ne!(new_access, bob_access);
    assert_eq!(get(s.resource, "/profile", new_access).await.0, 200);

    // Logout ends the session: its refresh token is refused afterwards.
    let auth = format!("Authorization: Bearer {new_access}");
    let (status, _) = post(s.issuer, "/logout", "application/json", "", &[&auth]).await;
    assert_eq!(status, 204);
    let (status, body) = refresh(&s, &refreshed).await;
    assert_eq!(
        (status, body["error"].as_str()),
        (400, Some("invalid_grant"))
    );

    // Tokens from anywhere else are refused.
    let (status, body) = get(
        s.resource,
        "/profile",
        "eyJhbGciOiJub25lIn0.eyJzdWIiOiJ4In0.",
    )
    .await;
    assert_eq!(
        (status, body["error"].as_str()),
        (401, Some("invalid_token"))
    );
}
