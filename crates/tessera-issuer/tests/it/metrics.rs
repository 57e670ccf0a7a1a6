//! The issuer's Prometheus metrics over real HTTP: a scripted flow (logins
//! that succeed and fail, a refresh, a reuse, a logout, feed polls), then a
//! scrape whose values must have moved exactly as the flow says; promtool
//! accepts the exposition; only loopback clients may scrape the main
//! listener, and `metrics_listen` moves `/metrics` to a listener of its own.

use std::net::SocketAddr;
use std::time::Duration;

use serde_json::Value;
use tessera_bench::Client;
use tessera_issuer::config::RawConfig;
use tessera_testkit::prometheus::{promtool_accepts, value};
use tessera_testkit::stack::{call, login, logout, start_issuer};

async fn form(to: SocketAddr, path: &str, body: &str) -> (u16, Value) {
    let (status, body) = call(
        to,
        "POST",
        path,
        &[],
        "application/x-www-form-urlencoded",
        body,
    )
    .await;
    (status, serde_json::from_slice(&body).unwrap_or(Value::Null))
}

async fn scrape(to: SocketAddr, headers: &[&str]) -> (u16, String) {
    let mut client = Client::connect(to).await.unwrap();
    let (status, body) = client.get("/metrics", headers).await.unwrap();
    (status, String::from_utf8(body).unwrap())
}

#[tokio::test]
async fn the_metrics_follow_a_scripted_flow_and_promtool_accepts_them() {
    let tmp = tempfile::tempdir().unwrap();
    let issuer = start_issuer(tmp.path(), |raw: &mut RawConfig| {
        // No retry window: a second use of a refresh token is reuse.
        raw.refresh_retry_window = Some(Duration::ZERO);
        // Requests through this "proxy" carry their client's address.
        raw.trusted_proxies = Some(vec!["127.0.0.2/32".to_owned()]);
    })
    .await;
    let at = issuer.addr;
    let password = issuer.admin_password.clone();

    // Logins: two right, one wrong password, one unknown user.
    let first = login(at, "admin", &password).await;
    let second = login(at, "admin", &password).await;
    let wrong = serde_json::json!({"username": "admin", "password": "not-it-at-all"}).to_string();
    let unknown =
        serde_json::json!({"username": "nobody", "password": "whatever-1234"}).to_string();
    for body in [&wrong, &unknown] {
        let (status, _) = call(at, "POST", "/login", &[], "application/json", body).await;
        assert_eq!(status, 401);
    }
    // A refresh, then the used token again: reuse, and the family revoked.
    let used = first["refresh_token"].as_str().unwrap();
    let (status, _) = form(
        at,
        "/token",
        &format!("grant_type=refresh_token&refresh_token={used}"),
    )
    .await;
    assert_eq!(status, 200);
    let (status, reused) = form(
        at,
        "/token",
        &format!("grant_type=refresh_token&refresh_token={used}"),
    )
    .await;
    assert_eq!(status, 400, "{reused}");
    // A logout: the second session's tokens revoked.
    let access = second["access_token"].as_str().unwrap();
    assert_eq!(logout(at, access).await.0, 204);
    // The feed: a snapshot, then 304 for a poller up to date.
    let mut poller = Client::connect(at).await.unwrap();
    let (status, _) = poller.get("/revocations", &[]).await.unwrap();
    assert_eq!(status, 200);
    let etag = poller.last_header("etag").unwrap();
    let (status, _) = poller
        .get("/revocations", &[&format!("If-None-Match: {etag}")])
        .await
        .unwrap();
    assert_eq!(status, 304);
    assert_eq!(call(at, "GET", "/nope", &[], "", "").await.0, 404);

    let (status, text) = scrape(at, &[]).await;
    assert_eq!(status, 200, "{text}");
    let v = |series: &str| value(&text, series);
    assert_eq!(v(r#"tessera_logins_total{outcome="success"}"#), 2.0);
    assert_eq!(v(r#"tessera_logins_total{outcome="wrong_password"}"#), 1.0);
    assert_eq!(v(r#"tessera_logins_total{outcome="unknown_user"}"#), 1.0);
    // Nothing was throttled or disabled: those series are there, at 0.
    assert_eq!(v(r#"tessera_logins_total{outcome="throttled"}"#), 0.0);
    assert_eq!(v(r#"tessera_logins_total{outcome="disabled"}"#), 0.0);
    assert_eq!(
        v(r#"tessera_refresh_tokens_used_total{outcome="replayed"}"#),
        0.0
    );
    assert_eq!(v(r#"tessera_revocations_total{kind="jti"}"#), 0.0);
    assert_eq!(
        v(r#"tessera_tokens_issued_total{grant="password",client="tessera-web"}"#),
        2.0
    );
    assert_eq!(
        v(r#"tessera_tokens_issued_total{grant="refresh_token",client="tessera-web"}"#),
        1.0
    );
    assert_eq!(
        v(r#"tessera_refresh_tokens_used_total{outcome="rotated"}"#),
        1.0
    );
    assert_eq!(
        v(r#"tessera_refresh_tokens_used_total{outcome="reuse_detected"}"#),
        1.0
    );
    // The reuse revoked the first session, the logout the second.
    assert_eq!(v(r#"tessera_revocations_total{kind="sid"}"#), 2.0);
    assert_eq!(v("tessera_revocation_entries"), 2.0);
    assert_eq!(v(r#"tessera_feed_answers_total{answer="snapshot"}"#), 1.0);
    assert_eq!(
        v(r#"tessera_feed_answers_total{answer="not_modified"}"#),
        1.0
    );
    assert_eq!(
        v(r#"tessera_http_requests_total{route="/login",method="POST",status="200"}"#),
        2.0
    );
    assert_eq!(
        v(r#"tessera_http_requests_total{route="/login",method="POST",status="401"}"#),
        2.0
    );
    assert_eq!(
        v(r#"tessera_http_requests_total{route="/token",method="POST",status="400"}"#),
        1.0
    );
    assert_eq!(
        v(r#"tessera_http_requests_total{route="unmatched",method="GET",status="404"}"#),
        1.0
    );
    assert_eq!(
        v(r#"tessera_http_request_duration_seconds_count{route="/login"}"#),
        4.0
    );
    // Two password checks failed and two passed, each after a wait.
    assert_eq!(v("tessera_password_queue_wait_seconds_count"), 4.0);
    assert_eq!(v("tessera_password_queue_depth"), 0.0);
    // The first start made an active key and a pending one: the active key
    // is young, the pending one may not activate yet.
    let kids: Vec<&str> = text
        .lines()
        .filter_map(|l| l.strip_prefix("tessera_key_pending_activation_seconds{kid=\""))
        .collect();
    assert_eq!(kids.len(), 1, "{text}");
    let pending_in: f64 = kids[0].split_once("\"} ").unwrap().1.parse().unwrap();
    assert!(pending_in > 0.0, "{pending_in}");
    assert!(
        text.contains("tessera_key_active_age_seconds{kid=\""),
        "{text}"
    );
    assert_eq!(v("tessera_keyring_reload_errors_total"), 0.0);
    assert!(v("tessera_db_pool_connections") >= 1.0);
    assert!(v("tessera_db_pool_acquire_seconds") >= 0.0);
    assert_eq!(v("tessera_db_errors_total"), 0.0);
    assert!(text.contains("tessera_build_info{version=\""), "{text}");
    // Nothing a caller sent is a label or a value.
    for secret in [password.as_str(), access, used, "nobody"] {
        assert!(!text.contains(secret), "{secret:?} is in the metrics");
    }
    promtool_accepts(&text);

    // A client past a trusted proxy is not loopback: no metrics for it.
    let mut proxied = Client::connect_from(at, "127.0.0.2".parse().unwrap())
        .await
        .unwrap();
    let (status, _) = proxied
        .get("/metrics", &["X-Forwarded-For: 203.0.113.9"])
        .await
        .unwrap();
    assert_eq!(status, 404);
    // A loopback client behind it may.
    let (status, _) = proxied
        .get("/metrics", &["X-Forwarded-For: 127.0.0.1"])
        .await
        .unwrap();
    assert_eq!(status, 200);
    issuer.stop().await;
}

#[tokio::test]
async fn metrics_listen_serves_them_on_a_listener_of_their_own() {
    let tmp = tempfile::tempdir().unwrap();
    let database = tessera_testkit::pg::test_database_url(tmp.path()).unwrap();
    let config = RawConfig {
        keys_dir: Some(tmp.path().join("keys")),
        database_url: Some(database),
        listen: Some(SocketAddr::from(([127, 0, 0, 1], 0))),
        metrics_listen: Some(SocketAddr::from(([127, 0, 0, 1], 0))),
        ..RawConfig::default()
    }
    .validate()
    .unwrap();
    let mut prepared = tessera_issuer::serve::Prepared::new(config).await.unwrap();
    let password = prepared.take_first_admin().unwrap().password;
    let (at, metrics) = (prepared.addr(), prepared.metrics_addr().unwrap());
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let task = tokio::spawn(prepared.run(async move {
        let _ = stopped.await;
    }));
    login(at, "admin", &password).await;
    assert_eq!(scrape(at, &[]).await.0, 404, "not on the main listener");
    let (status, text) = scrape(metrics, &[]).await;
    assert_eq!(status, 200);
    assert_eq!(
        value(&text, r#"tessera_logins_total{outcome="success"}"#),
        1.0
    );
    // Only the metrics there.
    assert_eq!(call(metrics, "GET", "/healthz", &[], "", "").await.0, 404);
    let _ = stop.send(());
    task.await.unwrap().unwrap();
}
