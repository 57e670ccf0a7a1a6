//! Login throttling (per username, per address, past trusted proxies) and
//! the stored security events.

use super::*;

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
