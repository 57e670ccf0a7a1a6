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
use tessera_issuer::config::RawConfig;
use tessera_issuer::serve::Prepared;
use tessera_verifier::{SystemClock, Verifier, VerifierConfig};

/// Starts the issuer in `dir` on `listen`; returns its address, the first
/// admin's password (first start only), and the switch that stops it.
async fn issuer(
    dir: &Path,
    listen: SocketAddr,
) -> (
    SocketAddr,
    Option<String>,
    tokio::sync::oneshot::Sender<()>,
    tokio::task::JoinHandle<()>,
) {
    let config = RawConfig {
        keys_dir: Some(dir.join("keys")),
        database_url: Some(format!("sqlite://{}", dir.join("issuer.db").display())),
        listen: Some(listen),
        jwks_cache_lifetime: Some(Duration::from_secs(1)),
        ..RawConfig::default()
    }
    .validate()
    .unwrap();
    let mut prepared = Prepared::new(config).await.unwrap();
    let password = prepared.take_first_admin().map(|a| a.password);
    let addr = prepared.addr();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let task = tokio::spawn(async move {
        prepared
            .run(async {
                let _ = stopped.await;
            })
            .await
            .unwrap();
    });
    (addr, password, stop, task)
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
    let (addr, password, stop, task) = issuer(tmp.path(), "127.0.0.1:0".parse().unwrap()).await;
    let password = password.unwrap();
    let issuer_url = format!("http://{addr}");

    let mut vconfig = VerifierConfig::new(issuer_url, ["tessera"]);
    vconfig.min_cache_lifetime = Duration::from_secs(1);
    vconfig.refresh_check_interval = Duration::from_millis(50);
    vconfig.fetch_timeout = Duration::from_millis(500);
    let verifier = Verifier::start(vconfig, Arc::new(SystemClock)).unwrap();
    assert!(verifier.ready(Duration::from_secs(10)).await);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let resource = listener.local_addr().unwrap();
    let health = verifier.clone();
    tokio::spawn(async move {
        axum::serve(listener, tessera_resource_server::app(verifier))
            .await
            .unwrap();
    });

    let body = serde_json::json!({"username": "admin", "password": password}).to_string();
    let (status, tokens) = post_json(addr, "/login", "application/json", &body).await;
    assert_eq!(status, 200);
    let access = tokens["access_token"].as_str().unwrap().to_owned();
    assert_eq!(profile(resource, &access).await, 200);

    // The issuer goes down.
    stop.send(()).unwrap();
    task.await.unwrap();
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
    let (again, first_admin, _stop, _task) = issuer(tmp.path(), addr).await;
    assert_eq!(again, addr);
    assert!(first_admin.is_none(), "no new admin on a restart");
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
