//! Issuer outage: while the issuer is down, the resource server keeps accepting
//! valid tokens from its cached JWKS (and keeps refusing bad ones); when the
//! issuer comes back with the same database and keys, sessions and refresh
//! tokens have survived.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use serde_json::Value;
use tessera_bench::Client;
use tessera_verifier::{SystemClock, Verifier, VerifierConfig};

/// The issuer in `dir` on `listen`, with a one-second JWKS cache lifetime.
async fn issuer(dir: &Path, listen: SocketAddr) -> tessera_testkit::stack::InProcessIssuer {
    tessera_testkit::stack::start_issuer(dir, |raw| {
        raw.listen = Some(listen);
        raw.jwks_cache_lifetime = Some(Duration::from_secs(1));
    })
    .await
}

async fn post_json(addr: SocketAddr, path: &str, content_type: &str, body: &str) -> (u16, Value) {
    let mut c = Client::connect(addr).await.unwrap();
    let (status, body) = c
        .request("POST", path, &[], content_type, body)
        .await
        .unwrap();
    (status, serde_json::from_slice(&body).unwrap_or(Value::Null))
}

async fn profile(resource: SocketAddr, token: &str) -> u16 {
    let mut c = Client::connect(resource).await.unwrap();
    let auth = format!("Authorization: Bearer {token}");
    c.get("/profile", &[&auth]).await.unwrap().0
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tokens_keep_working_through_an_issuer_outage_and_sessions_survive_a_restart() {
    let tmp = tempfile::tempdir().unwrap();
    let first = issuer(tmp.path(), "127.0.0.1:0".parse().unwrap()).await;
    let (addr, issuer_url) = (first.addr, first.url.clone());
    assert!(
        !first.admin_password.is_empty(),
        "the first start creates the admin"
    );

    let mut vconfig = VerifierConfig::new(issuer_url, ["tessera"]);
    vconfig.min_cache_lifetime = Duration::from_secs(1);
    vconfig.refresh_check_interval = Duration::from_millis(50);
    vconfig.fetch_timeout = Duration::from_millis(500);
    let verifier = Verifier::start(vconfig, Arc::new(SystemClock)).unwrap();
    let health = verifier.clone();
    let resource = tessera_testkit::stack::serve_resource(verifier).await;

    let tokens = tessera_testkit::stack::login(addr, "admin", &first.admin_password).await;
    let access = tokens["access_token"].as_str().unwrap().to_owned();
    assert_eq!(profile(resource, &access).await, 200);

    // The issuer goes down.
    first.stop().await;
    assert!(
        Client::connect(addr).await.is_err(),
        "the issuer is really down"
    );
    // Past the key set's lifetime, a refresh fails; cached keys keep working.
    let mut stale = false;
    for _ in 0..100 {
        let h = health.health();
        if h.stale && h.last_error.is_some() {
            stale = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(stale, "{:?}", health.health());
    assert_eq!(profile(resource, &access).await, 200);
    let forged = format!("{}x", &access[..access.len() - 1]);
    assert_eq!(profile(resource, &forged).await, 401);
    assert_eq!(profile(resource, "not.a.token").await, 401);

    // Back, on the same address with the same database and keys: the session
    // and its refresh token survived the restart.
    let again = issuer(tmp.path(), addr).await;
    assert_eq!(again.addr, addr);
    assert!(again.admin_password.is_empty(), "no new admin on a restart");
    let form = format!(
        "grant_type=refresh_token&refresh_token={}",
        tokens["refresh_token"].as_str().unwrap()
    );
    let (status, refreshed) =
        post_json(addr, "/token", "application/x-www-form-urlencoded", &form).await;
    assert_eq!(status, 200, "{refreshed}");
    assert_eq!(
        profile(resource, refreshed["access_token"].as_str().unwrap()).await,
        200
    );
    // And the resource server's key set is fresh again.
    let mut fresh = false;
    for _ in 0..100 {
        if !health.health().stale {
            fresh = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(fresh, "{:?}", health.health());
}
