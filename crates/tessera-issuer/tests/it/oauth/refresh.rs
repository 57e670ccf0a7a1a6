//! Refresh-token rotation: reuse, retries, one winner, lifetimes.

use super::*;

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
                let reply = oneshot::send(router(state), request).await;
                (reply.status, reply.raw)
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
