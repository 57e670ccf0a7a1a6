//! The code and what it is bound to: the full flow, ID tokens, `/userinfo`,
//! replay, PKCE, redirect URI, lifetime, and every authorization-request
//! error (shown, or sent back with `state`).

use axum::http::{StatusCode, header};
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use tessera_keyring::sha256;

use super::super::{claims, refresh_of};
use super::*;

fn header_of(token: &str) -> Value {
    let part = token.split('.').next().unwrap();
    serde_json::from_slice(&URL_SAFE_NO_PAD.decode(part).unwrap()).unwrap()
}

#[tokio::test]
async fn a_browser_signs_in_with_code_and_pkce_and_gets_an_id_token() {
    let app = browser_app().await;
    let mut browser = Browser::default();
    let reply = browser.sign_in(&app, &authorize_query(SPA, "")).await;
    let location = reply.header(header::LOCATION);
    assert!(
        location.starts_with(&format!("{REDIRECT}?code=")),
        "{location}"
    );
    let params = location_params(&reply);
    assert_eq!(params["state"], "st-123", "state comes back as sent");
    assert_eq!(params["iss"], "https://auth.example.test", "RFC 9207");
    let tokens = app.redeem(SPA, &params["code"], VERIFIER).await;
    assert_eq!(tokens.status, StatusCode::OK, "{:?}", tokens.body);
    assert_eq!(tokens.header(header::CACHE_CONTROL), "no-store");
    let body = tokens.body;
    assert_eq!(body["scope"], "openid profile");
    let access = claims(body["access_token"].as_str().unwrap());
    assert_eq!(access["client_id"], SPA);
    // A first-party client's token carries the roles as every token does.
    assert_eq!(access["roles"], serde_json::json!(["user"]));
    let id_token = body["id_token"].as_str().unwrap();
    assert_eq!(header_of(id_token)["typ"], "JWT", "never at+jwt");
    let id = claims(id_token);
    assert_eq!(id["iss"], "https://auth.example.test");
    assert_eq!(id["aud"], SPA);
    assert_eq!(id["sub"], access["sub"]);
    assert_eq!(id["sid"], access["sid"]);
    assert_eq!(id["nonce"], "n-456", "nonce comes back as sent");
    assert_eq!(id["auth_time"], T0);
    assert_eq!(id["amr"], serde_json::json!(["pwd"]));
    let digest = sha256(body["access_token"].as_str().unwrap().as_bytes());
    assert_eq!(id["at_hash"], URL_SAFE_NO_PAD.encode(&digest[..16]));

    // /userinfo: the claims the scopes allow (profile: the username; no
    // roles scope: no roles).
    let info = app.userinfo(body["access_token"].as_str().unwrap()).await;
    assert_eq!(info.status, StatusCode::OK, "{:?}", info.body);
    assert_eq!(info.body["sub"], access["sub"]);
    assert_eq!(info.body["preferred_username"], "alice");
    assert!(info.body.get("roles").is_none());

    // The refresh token rotates as every other does.
    let refreshed = app.refresh(&refresh_of(&body)).await;
    assert_eq!(refreshed.status, StatusCode::OK, "{:?}", refreshed.body);
    assert_eq!(
        claims(refreshed.body["access_token"].as_str().unwrap())["sid"],
        access["sid"]
    );
    assert_ne!(refresh_of(&refreshed.body), refresh_of(&body), "rotated");
}

#[tokio::test]
async fn userinfo_needs_openid_and_a_live_token() {
    let app = browser_app().await;
    let mut browser = Browser::default();
    let query = authorize_query(SPA, "").replace("scope=openid%20profile", "scope=profile%20roles");
    let reply = browser.sign_in(&app, &query).await;
    let body = app
        .redeem(SPA, &location_params(&reply)["code"], VERIFIER)
        .await
        .body;
    assert!(body.get("id_token").is_none(), "no openid, no ID token");
    let info = app.userinfo(body["access_token"].as_str().unwrap()).await;
    assert_eq!(info.status, StatusCode::FORBIDDEN);
    assert!(info.challenge().unwrap().contains("insufficient_scope"));
    let bad = app.userinfo("not.a.token").await;
    assert_eq!(bad.status, StatusCode::UNAUTHORIZED);
    assert!(bad.challenge().unwrap().contains("invalid_token"));

    let with_roles =
        authorize_query(SPA, "").replace("scope=openid%20profile", "scope=openid%20roles");
    let reply = browser.sign_in(&app, &with_roles).await;
    let body = app
        .redeem(SPA, &location_params(&reply)["code"], VERIFIER)
        .await
        .body;
    let access = body["access_token"].as_str().unwrap();
    let info = app.userinfo(access).await;
    assert_eq!(info.body["roles"], serde_json::json!(["user"]));
    assert!(info.body.get("preferred_username").is_none());
    // Logged out: the token is no longer good for userinfo.
    assert_eq!(
        app.logout(Some(&format!("Bearer {access}"))).await.status,
        StatusCode::NO_CONTENT
    );
    assert_eq!(app.userinfo(access).await.status, StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn a_code_works_once_and_a_replay_revokes_what_it_issued() {
    let app = browser_app().await;
    let mut browser = Browser::default();
    let reply = browser.sign_in(&app, &authorize_query(SPA, "")).await;
    let code = location_params(&reply)["code"].clone();
    let first = app.redeem(SPA, &code, VERIFIER).await;
    assert_eq!(first.status, StatusCode::OK);
    let again = app.redeem(SPA, &code, VERIFIER).await;
    assert_eq!(again.status, StatusCode::BAD_REQUEST);
    assert_eq!(again.body["error"], "invalid_grant");
    // What the first use issued is revoked: its refresh token and its
    // access token (by sid, in the feed).
    let refresh = app.refresh(&refresh_of(&first.body)).await;
    assert_eq!(refresh.body["error"], "invalid_grant");
    let access = first.body["access_token"].as_str().unwrap();
    assert_eq!(app.userinfo(access).await.status, StatusCode::UNAUTHORIZED);
    let sid = claims(access)["sid"].as_str().unwrap().to_owned();
    assert!(!app.db.session_active(&sid).await.unwrap());
}

#[tokio::test]
async fn the_code_is_bound_to_its_verifier_client_redirect_and_minute() {
    let app = browser_app().await;
    let mut browser = Browser::default();
    let code = |reply: &Reply| location_params(reply)["code"].clone();

    // A wrong verifier burns the code: the right one is refused after it.
    let c = code(&browser.sign_in(&app, &authorize_query(SPA, "")).await);
    let wrong = app.redeem(SPA, &c, &"x".repeat(43)).await;
    assert_eq!(wrong.body["error"], "invalid_grant");
    assert_eq!(
        app.redeem(SPA, &c, VERIFIER).await.body["error"],
        "invalid_grant"
    );

    // No verifier at all.
    let c = code(&browser.sign_in(&app, &authorize_query(SPA, "")).await);
    let none = app
        .form(
            "/token",
            &format!(
                "grant_type=authorization_code&code={c}&redirect_uri={}&client_id={SPA}",
                enc(REDIRECT)
            ),
        )
        .await;
    assert_eq!(none.body["error"], "invalid_grant");

    // Another client's code.
    let c = code(&browser.sign_in(&app, &authorize_query(SPA, "")).await);
    app.register(spa("other")).await;
    assert_eq!(
        app.redeem("other", &c, VERIFIER).await.body["error"],
        "invalid_grant"
    );

    // Another redirect URI than the request's.
    let c = code(&browser.sign_in(&app, &authorize_query(SPA, "")).await);
    let elsewhere = app
        .form(
            "/token",
            &format!(
                "grant_type=authorization_code&code={c}&redirect_uri={}\
                 &code_verifier={VERIFIER}&client_id={SPA}",
                enc("http://127.0.0.1/native")
            ),
        )
        .await;
    assert_eq!(elsewhere.body["error"], "invalid_grant");

    // Past its 60 seconds.
    let c = code(&browser.sign_in(&app, &authorize_query(SPA, "")).await);
    app.clock.advance(60);
    assert_eq!(
        app.redeem(SPA, &c, VERIFIER).await.body["error"],
        "invalid_grant"
    );

    // An unknown code, and the grant for a client not allowed it.
    assert_eq!(
        app.redeem(SPA, "no-such-code", VERIFIER).await.body["error"],
        "invalid_grant"
    );
    let login_client = app.redeem("tessera-web", "x", VERIFIER).await;
    assert_eq!(login_client.body["error"], "unauthorized_client");
}

#[tokio::test]
async fn a_loopback_redirect_may_use_any_port() {
    let app = browser_app().await;
    let mut browser = Browser::default();
    let query =
        authorize_query(SPA, "").replace(&enc(REDIRECT), &enc("http://127.0.0.1:51234/native"));
    let reply = browser.sign_in(&app, &query).await;
    let location = reply.header(header::LOCATION);
    assert!(
        location.starts_with("http://127.0.0.1:51234/native?code="),
        "{location}"
    );
}

/// `GET /authorize` with `query`, by a browser with no session.
async fn ask(app: &App, query: &str) -> Reply {
    Browser::default().get(app, query).await
}

#[tokio::test]
async fn an_unknown_client_or_redirect_is_shown_and_never_followed() {
    let app = browser_app().await;
    let cases = [
        authorize_query("nobody", ""),
        authorize_query(SPA, "").replace(&enc(REDIRECT), &enc("https://evil.example/cb")),
        authorize_query(SPA, "").replace(&enc(REDIRECT), &enc("https://app.example.test/cb/x")),
        authorize_query(SPA, "").replace(&enc(REDIRECT), &enc("http://127.0.0.1:8080/other")),
        authorize_query(SPA, "").replace(&format!("&redirect_uri={}", enc(REDIRECT)), ""),
        authorize_query(SPA, "") + &format!("&client_id={SPA}"),
        format!(
            "/authorize?response_type=code&redirect_uri={}",
            enc(REDIRECT)
        ),
    ];
    for query in cases {
        let reply = ask(&app, &query).await;
        assert_eq!(reply.status, StatusCode::BAD_REQUEST, "{query}");
        assert!(reply.headers.get(header::LOCATION).is_none(), "{query}");
        assert!(reply.header(header::CONTENT_TYPE).starts_with("text/html"));
    }
    // A disabled client too.
    let mut disabled = spa("gone");
    disabled.disabled = true;
    app.register(disabled).await;
    let reply = ask(&app, &authorize_query("gone", "")).await;
    assert_eq!(reply.status, StatusCode::BAD_REQUEST);
}

#[tokio::test]
async fn other_request_errors_go_back_with_state() {
    let app = browser_app().await;
    let without = |name: &str| {
        let query = authorize_query(SPA, "").replace('?', "?&");
        let start = query.find(&format!("&{name}=")).unwrap();
        let end = query[start + 1..]
            .find('&')
            .map_or(query.len(), |e| start + 1 + e);
        format!("{}{}", &query[..start], &query[end..])
    };
    let mut no_method_client = spa("no-code");
    no_method_client.grant_types = vec!["refresh_token".into()];
    app.register(no_method_client).await;
    let cases: Vec<(String, &str)> = vec![
        (without("code_challenge"), "invalid_request"),
        (without("code_challenge_method"), "invalid_request"),
        (
            authorize_query(SPA, "")
                .replace("code_challenge_method=S256", "code_challenge_method=plain"),
            "invalid_request",
        ),
        (
            authorize_query(SPA, "").replace(CHALLENGE, "short"),
            "invalid_request",
        ),
        (without("response_type"), "invalid_request"),
        (
            authorize_query(SPA, "").replace("response_type=code", "response_type=token"),
            "unsupported_response_type",
        ),
        (
            authorize_query(SPA, "").replace("scope=openid%20profile", "scope=openid%20admin"),
            "invalid_scope",
        ),
        (authorize_query(SPA, "&scope=profile"), "invalid_request"),
        (
            authorize_query(SPA, "&prompt=none%20login"),
            "invalid_request",
        ),
        (
            authorize_query(SPA, "&request=eyJ"),
            "request_not_supported",
        ),
        (
            authorize_query(SPA, "&response_mode=fragment"),
            "invalid_request",
        ),
        (authorize_query("no-code", ""), "unauthorized_client"),
        (authorize_query(SPA, "&prompt=none"), "login_required"),
        (authorize_query(SPA, "&max_age=soon"), "invalid_request"),
        (
            authorize_query(SPA, "&nonce=a%0Ab").replace("&nonce=n-456", ""),
            "invalid_request",
        ),
    ];
    for (query, error) in cases {
        let reply = ask(&app, &query).await;
        assert_eq!(
            reply.status,
            StatusCode::SEE_OTHER,
            "{query}: {}",
            reply.text()
        );
        let location = reply.header(header::LOCATION);
        assert!(location.starts_with(REDIRECT), "{location}");
        let params = location_params(&reply);
        assert_eq!(params["error"], error, "{query}");
        assert_eq!(params["state"], "st-123", "{query}");
        assert!(!params.contains_key("code"));
    }
    // A state that is not printable ASCII is refused, and not echoed.
    let bad_state = ask(
        &app,
        &authorize_query(SPA, "").replace("state=st-123", "state=a%0Ab"),
    )
    .await;
    let params = location_params(&bad_state);
    assert_eq!(params["error"], "invalid_request");
    assert!(!params.contains_key("state"));
}

#[tokio::test]
async fn two_concurrent_redemptions_leave_no_live_session() {
    let app = browser_app().await;
    let mut browser = Browser::default();
    let reply = browser.sign_in(&app, &authorize_query(SPA, "")).await;
    let code = location_params(&reply)["code"].clone();
    let (a, b) = tokio::join!(
        app.redeem(SPA, &code, VERIFIER),
        app.redeem(SPA, &code, VERIFIER)
    );
    // One takes the code; the other is a replay. Whether the replay lands
    // before or after the first use's answer, the session ends: a winner's
    // tokens are revoked, or the first use sees the mark and refuses.
    let winners: Vec<&Reply> = [&a, &b]
        .into_iter()
        .filter(|r| r.status == StatusCode::OK)
        .collect();
    assert!(winners.len() <= 1);
    for reply in [&a, &b] {
        if reply.status != StatusCode::OK {
            assert_eq!(reply.body["error"], "invalid_grant");
        }
    }
    let (sessions, _) = app.db.count_sessions().await.unwrap();
    assert_eq!(sessions, 1, "the code's one session");
    if let Some(won) = winners.first() {
        let sid = claims(won.body["access_token"].as_str().unwrap())["sid"]
            .as_str()
            .unwrap()
            .to_owned();
        assert!(!app.db.session_active(&sid).await.unwrap());
        assert_eq!(
            app.refresh(&refresh_of(&won.body)).await.body["error"],
            "invalid_grant"
        );
    }
}

#[tokio::test]
async fn a_confidential_client_authenticates_to_redeem_its_code() {
    let app = browser_app().await;
    let secret = tessera_issuer::clients::new_secret();
    app.register(Client {
        kind: ClientKind::Confidential,
        secret_sha256: tessera_issuer::clients::decode_hash(
            &tessera_issuer::clients::secret_hash_text(&secret),
        ),
        ..spa("portal")
    })
    .await;
    let mut browser = Browser::default();
    let form = |code: &str| {
        format!(
            "grant_type=authorization_code&code={code}&redirect_uri={}&code_verifier={VERIFIER}",
            enc(REDIRECT)
        )
    };
    // PKCE is required of it too.
    let no_pkce =
        authorize_query("portal", "").replace(&format!("&code_challenge={CHALLENGE}"), "");
    let refused = browser.get(&app, &no_pkce).await;
    assert_eq!(location_params(&refused)["error"], "invalid_request");

    let reply = browser.sign_in(&app, &authorize_query("portal", "")).await;
    let code = location_params(&reply)["code"].clone();
    // Its id alone is not enough, and a wrong secret is refused: the code
    // survives both (nothing was taken).
    let bare = app
        .form("/token", &format!("{}&client_id=portal", form(&code)))
        .await;
    assert_eq!(bare.body["error"], "invalid_client");
    let wrong = app
        .form_as(
            "/token",
            &form(&code),
            &super::super::basic("portal", "x".repeat(40).as_str()),
        )
        .await;
    assert_eq!(wrong.status, StatusCode::UNAUTHORIZED);
    assert_eq!(wrong.body["error"], "invalid_client");
    let right = app
        .form_as(
            "/token",
            &form(&code),
            &super::super::basic("portal", &secret),
        )
        .await;
    assert_eq!(right.status, StatusCode::OK, "{:?}", right.body);
    assert_eq!(
        claims(right.body["access_token"].as_str().unwrap())["client_id"],
        "portal"
    );
    // /userinfo answers a POST as well as a GET.
    let access = right.body["access_token"].as_str().unwrap();
    let posted = app
        .send(
            axum::http::Request::post("/userinfo")
                .header(header::AUTHORIZATION, format!("Bearer {access}"))
                .body(axum::body::Body::empty())
                .unwrap(),
        )
        .await;
    assert_eq!(posted.status, StatusCode::OK);
    assert_eq!(posted.body["preferred_username"], "alice");
}

#[tokio::test]
async fn a_replay_revokes_once_whoever_presents_it() {
    let app = browser_app().await;
    app.register(spa("other")).await;
    let mut browser = Browser::default();
    let reply = browser.sign_in(&app, &authorize_query(SPA, "")).await;
    let code = location_params(&reply)["code"].clone();
    let first = app.redeem(SPA, &code, VERIFIER).await.body;
    // A code used twice has leaked, whoever holds it now (RFC 6749 §4.1.2):
    // another client presenting it is refused and ends the session.
    let stranger = app.redeem("other", &code, VERIFIER).await;
    assert_eq!(stranger.body["error"], "invalid_grant");
    assert_eq!(
        app.refresh(&refresh_of(&first)).await.body["error"],
        "invalid_grant"
    );
    // Later replays are refused too, and write nothing more.
    for _ in 0..3 {
        assert_eq!(
            app.redeem(SPA, &code, VERIFIER).await.body["error"],
            "invalid_grant"
        );
    }
    let replays = app
        .db
        .audit_events(0, None, 1000)
        .await
        .unwrap()
        .into_iter()
        .filter(|e| e.event == "code_replayed")
        .count();
    assert_eq!(replays, 1, "only the first replay writes");
}
