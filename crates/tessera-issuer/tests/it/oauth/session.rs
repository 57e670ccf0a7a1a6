//! Cookie sessions (`/session`, `/session/refresh`, `/session/logout`): the
//! cookies' attributes, rotation and logout through them, the CSRF rule and
//! CORS.

use axum::body::Body;
use axum::http::{Request, StatusCode, header};
use cookie::{Cookie, SameSite};
use serde_json::json;
use tessera_issuer::config::CookieSessions;
use tessera_testkit::oneshot::Reply;

use super::{App, app, app_issued_by, claims};

const APP_ORIGIN: &str = "https://app.example.test";

/// The fixture's issuer, allowing [`APP_ORIGIN`], with `change` applied.
async fn sessions_app(change: impl FnOnce(&mut CookieSessions)) -> App {
    let mut app = app().await;
    configure(&mut app, change);
    app
}

fn configure(app: &mut App, change: impl FnOnce(&mut CookieSessions)) {
    let mut config = CookieSessions {
        allowed_origins: vec![APP_ORIGIN.to_owned()],
        ..CookieSessions::default()
    };
    change(&mut config);
    app.state = app.state.clone().with_cookie_sessions(&config);
}

/// The `Set-Cookie` headers of a reply, parsed, by name.
fn set_cookies(reply: &Reply) -> Vec<Cookie<'static>> {
    reply
        .headers
        .get_all(header::SET_COOKIE)
        .iter()
        .map(|v| Cookie::parse(v.to_str().unwrap().to_owned()).unwrap())
        .collect()
}

fn cookie(reply: &Reply, name: &str) -> Cookie<'static> {
    set_cookies(reply)
        .into_iter()
        .find(|c| c.name() == name)
        .unwrap_or_else(|| panic!("no {name} cookie in {:?}", reply.headers))
}

impl App {
    async fn session(&self, path: &str, origin: Option<&str>, cookies: &[(&str, &str)]) -> Reply {
        let mut request = Request::post(path);
        if let Some(origin) = origin {
            request = request.header(header::ORIGIN, origin);
        }
        if !cookies.is_empty() {
            let line: Vec<String> = cookies.iter().map(|(n, v)| format!("{n}={v}")).collect();
            request = request.header(header::COOKIE, line.join("; "));
        }
        self.send(request.body(Body::empty()).unwrap()).await
    }

    async fn sign_in(&self, origin: Option<&str>, password: &str) -> Reply {
        let mut request =
            Request::post("/session").header(header::CONTENT_TYPE, "application/json");
        if let Some(origin) = origin {
            request = request.header(header::ORIGIN, origin);
        }
        let body = json!({"username": "alice", "password": password}).to_string();
        self.send(request.body(Body::from(body)).unwrap()).await
    }

    /// Signs alice in from the app's origin; returns (access, refresh).
    async fn signed_in(&self) -> (String, String) {
        let reply = self.sign_in(Some(APP_ORIGIN), "correct horse").await;
        assert_eq!(reply.status, StatusCode::OK, "{}", reply.text());
        (
            cookie(&reply, "tessera_access").value().to_owned(),
            cookie(&reply, "tessera_refresh").value().to_owned(),
        )
    }
}

/// Both cookies removed: empty, `Max-Age=0`, with the path (and domain) they
/// were set with.
fn assert_cleared(reply: &Reply, domain: Option<&str>) {
    let access = cookie(reply, "tessera_access");
    let refresh = cookie(reply, "tessera_refresh");
    for c in [&access, &refresh] {
        assert_eq!(c.value(), "", "{c}");
        assert_eq!(c.max_age(), Some(cookie::time::Duration::ZERO), "{c}");
    }
    assert_eq!(access.path(), Some("/"));
    assert_eq!(access.domain(), domain);
    assert_eq!(refresh.path(), Some("/session"));
    assert_eq!(refresh.domain(), None);
}

#[tokio::test]
async fn sign_in_sets_two_http_only_cookies_and_tells_the_page_no_token() {
    let app = sessions_app(|_| {}).await;
    let reply = app.sign_in(Some(APP_ORIGIN), "correct horse").await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.text());
    assert_eq!(
        reply.body,
        json!({"username": "alice", "roles": ["user"], "expires_in": 900})
    );
    assert_eq!(reply.header(header::CACHE_CONTROL), "no-store");
    let access = cookie(&reply, "tessera_access");
    let refresh = cookie(&reply, "tessera_refresh");
    assert!(!reply.text().contains(access.value()));
    assert!(!reply.text().contains(refresh.value()));
    // The access cookie: every request to the site, top-level cross-site
    // navigations included (Lax); never to JavaScript; HTTPS only.
    assert_eq!(access.http_only(), Some(true));
    assert_eq!(access.same_site(), Some(SameSite::Lax));
    assert_eq!(access.secure(), Some(true));
    assert_eq!(access.path(), Some("/"));
    assert_eq!(access.domain(), None);
    assert_eq!(access.max_age(), Some(cookie::time::Duration::seconds(900)));
    let claims = claims(access.value());
    assert_eq!(claims["preferred_username"], "alice");
    assert_eq!(claims["client_id"], "tessera-web");
    // The refresh cookie: same-site requests to /session only, for the
    // session's idle lifetime.
    assert_eq!(refresh.http_only(), Some(true));
    assert_eq!(refresh.same_site(), Some(SameSite::Strict));
    assert_eq!(refresh.secure(), Some(true));
    assert_eq!(refresh.path(), Some("/session"));
    assert_eq!(refresh.domain(), None);
    assert_eq!(
        refresh.max_age(),
        Some(cookie::time::Duration::seconds(14 * 86_400))
    );
    // The refresh token is a real one: the refresh grant takes it.
    assert_eq!(app.refresh(refresh.value()).await.status, StatusCode::OK);

    // A form works as well as JSON.
    let form = app
        .send(
            Request::post("/session")
                .header(header::ORIGIN, APP_ORIGIN)
                .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
                .body(Body::from("username=alice&password=correct+horse"))
                .unwrap(),
        )
        .await;
    assert_eq!(form.status, StatusCode::OK, "{}", form.text());
    assert_eq!(set_cookies(&form).len(), 2);
}

#[tokio::test]
async fn names_and_domain_follow_the_configuration_and_loopback_http_drops_secure() {
    let app = sessions_app(|c| {
        c.cookie_domain = Some("example.test".to_owned());
        c.access_cookie = "app_at".to_owned();
        c.refresh_cookie = "app_rt".to_owned();
    })
    .await;
    let reply = app.sign_in(Some(APP_ORIGIN), "correct horse").await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.text());
    let access = cookie(&reply, "app_at");
    assert_eq!(access.domain(), Some("example.test"));
    // The refresh cookie stays host-only: only the issuer reads it.
    let refresh = cookie(&reply, "app_rt");
    assert_eq!(refresh.domain(), None);

    // Plain HTTP on loopback (the demo): no Secure, or the browser would
    // drop the cookies; the issuer's own origin needs no configuration.
    let tmp = tempfile::tempdir().unwrap();
    let url = tessera_testkit::pg::test_database_url(tmp.path()).unwrap();
    let local = app_issued_by(tmp, &url, true, "http://127.0.0.1:8080").await;
    let reply = local
        .sign_in(Some("http://127.0.0.1:8080"), "correct horse")
        .await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.text());
    assert_eq!(set_cookies(&reply).len(), 2);
    for c in set_cookies(&reply) {
        assert_eq!(c.secure(), None, "{c}");
        assert_eq!(c.http_only(), Some(true), "{c}");
    }
    // An issuer under a path keeps its refresh cookie under it.
    let tmp = tempfile::tempdir().unwrap();
    let url = tessera_testkit::pg::test_database_url(tmp.path()).unwrap();
    let nested = app_issued_by(tmp, &url, true, "https://example.test/auth").await;
    let reply = nested
        .sign_in(Some("https://example.test"), "correct horse")
        .await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.text());
    assert_eq!(
        cookie(&reply, "tessera_refresh").path(),
        Some("/auth/session")
    );
    assert_eq!(cookie(&reply, "tessera_refresh").secure(), Some(true));
}

#[tokio::test]
async fn wrong_credentials_get_what_login_gets_and_no_cookie() {
    let app = sessions_app(|_| {}).await;
    let reply = app.sign_in(Some(APP_ORIGIN), "wrong").await;
    assert_eq!(reply.status, StatusCode::UNAUTHORIZED);
    assert_eq!(reply.body, json!({"error": "invalid_credentials"}));
    assert!(set_cookies(&reply).is_empty());
    let login = app
        .send(
            Request::post("/login")
                .header(header::CONTENT_TYPE, "application/json")
                .body(Body::from(
                    json!({"username": "nobody", "password": "x"}).to_string(),
                ))
                .unwrap(),
        )
        .await;
    assert_eq!((login.status, login.body), (reply.status, reply.body));

    // The same throttle: failures at /login count at /session, and then
    // even the right password waits there, with Retry-After.
    for _ in 0..5 {
        let failed = app
            .send(
                Request::post("/login")
                    .header(header::CONTENT_TYPE, "application/json")
                    .body(Body::from(
                        json!({"username": "alice", "password": "wrong"}).to_string(),
                    ))
                    .unwrap(),
            )
            .await;
        assert_eq!(failed.status, StatusCode::UNAUTHORIZED);
    }
    let blocked = app.sign_in(Some(APP_ORIGIN), "correct horse").await;
    assert_eq!(blocked.status, StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(blocked.header(header::RETRY_AFTER), "1");
    assert!(set_cookies(&blocked).is_empty());
}

#[tokio::test]
async fn refresh_rotates_through_the_cookie_with_the_grant_rules() {
    let app = sessions_app(|_| {}).await;
    let (access, refresh) = app.signed_in().await;
    app.clock.advance(60);
    let rotated = app
        .session(
            "/session/refresh",
            Some(APP_ORIGIN),
            &[("tessera_refresh", &refresh)],
        )
        .await;
    assert_eq!(rotated.status, StatusCode::OK, "{}", rotated.text());
    assert_eq!(rotated.body["username"], "alice");
    let access2 = cookie(&rotated, "tessera_access");
    let refresh2 = cookie(&rotated, "tessera_refresh");
    assert_ne!(access2.value(), access);
    assert_ne!(refresh2.value(), refresh);
    assert_eq!(refresh2.path(), Some("/session"));
    assert_eq!(refresh2.same_site(), Some(SameSite::Strict));
    assert_eq!(claims(access2.value())["sid"], claims(&access)["sid"]);

    // A retry inside the window (a second tab) gets the same pair.
    let retry = app
        .session(
            "/session/refresh",
            Some(APP_ORIGIN),
            &[("tessera_refresh", &refresh)],
        )
        .await;
    assert_eq!(retry.status, StatusCode::OK);
    assert_eq!(cookie(&retry, "tessera_refresh").value(), refresh2.value());

    // Past the window, the used token is reuse: the session ends, and the
    // answer clears the cookies; the newer token is dead too.
    app.clock.advance(30);
    let reuse = app
        .session(
            "/session/refresh",
            Some(APP_ORIGIN),
            &[("tessera_refresh", &refresh)],
        )
        .await;
    assert_eq!(reuse.status, StatusCode::UNAUTHORIZED);
    assert_eq!(reuse.body["error"], "invalid_session");
    assert_cleared(&reuse, None);
    let after = app
        .session(
            "/session/refresh",
            Some(APP_ORIGIN),
            &[("tessera_refresh", refresh2.value())],
        )
        .await;
    assert_eq!(after.status, StatusCode::UNAUTHORIZED);
    assert_cleared(&after, None);
}

#[tokio::test]
async fn logout_ends_the_session_and_clears_both_cookies() {
    let app = sessions_app(|c| c.cookie_domain = Some("example.test".to_owned())).await;
    let (access, refresh) = app.signed_in().await;
    let out = app
        .session(
            "/session/logout",
            Some(APP_ORIGIN),
            &[("tessera_access", &access), ("tessera_refresh", &refresh)],
        )
        .await;
    assert_eq!(out.status, StatusCode::NO_CONTENT, "{}", out.text());
    assert_cleared(&out, Some("example.test"));
    // The session is over everywhere: the refresh cookie, the refresh
    // grant, and the bearer logout all see it.
    let again = app
        .session(
            "/session/refresh",
            Some(APP_ORIGIN),
            &[("tessera_refresh", &refresh)],
        )
        .await;
    assert_eq!(again.status, StatusCode::UNAUTHORIZED);
    assert_cleared(&again, Some("example.test"));
    assert_eq!(app.refresh(&refresh).await.status, StatusCode::BAD_REQUEST);
    let twice = app
        .session(
            "/session/logout",
            Some(APP_ORIGIN),
            &[("tessera_refresh", &refresh)],
        )
        .await;
    assert_eq!(twice.status, StatusCode::UNAUTHORIZED);
    assert_cleared(&twice, Some("example.test"));
    // The feed lists the session, so resource servers refuse its access
    // tokens (tests/it/issuer_to_resource_server.rs shows it end to end).
    let feed = app
        .send(Request::get("/revocations").body(Body::empty()).unwrap())
        .await;
    assert_eq!(feed.status, StatusCode::OK);
    let sid = claims(&access)["sid"].as_str().unwrap().to_owned();
    let parts = tessera_feed::hash_parts("sid", &sid);
    let hash = tessera_keyring::b64url(&tessera_keyring::sha256(&parts.concat()));
    let document = claims(feed.text().trim());
    let entries = document["entries"].as_array().unwrap();
    assert!(
        entries
            .iter()
            .any(|e| e["kind"] == "sid" && e["hash"] == hash),
        "{document}"
    );
}

#[tokio::test]
async fn without_a_live_refresh_cookie_both_are_401_and_clear() {
    let app = sessions_app(|_| {}).await;
    for path in ["/session/refresh", "/session/logout"] {
        let none = app.session(path, Some(APP_ORIGIN), &[]).await;
        assert_eq!(none.status, StatusCode::UNAUTHORIZED, "{path}");
        assert_eq!(none.body["error"], "invalid_session");
        assert_cleared(&none, None);
        let unknown = app
            .session(
                path,
                Some(APP_ORIGIN),
                &[("tessera_refresh", "not-a-token")],
            )
            .await;
        assert_eq!(unknown.status, StatusCode::UNAUTHORIZED, "{path}");
        assert_cleared(&unknown, None);
    }
    // An idle session is dead as well.
    let (_, refresh) = app.signed_in().await;
    app.clock.advance(15 * 86_400);
    let idle = app
        .session(
            "/session/logout",
            Some(APP_ORIGIN),
            &[("tessera_refresh", &refresh)],
        )
        .await;
    assert_eq!(idle.status, StatusCode::UNAUTHORIZED);
    assert_cleared(&idle, None);
}

#[tokio::test]
async fn a_planted_second_refresh_cookie_ends_sessions_rather_than_blocking_them() {
    let app = sessions_app(|c| c.cookie_domain = Some("example.test".to_owned())).await;
    let (_, mine) = app.signed_in().await;
    let (_, planted) = app.signed_in().await;
    let both = [
        ("tessera_refresh", mine.as_str()),
        ("tessera_refresh", planted.as_str()),
    ];
    // Refresh does not guess which is meant: 401, and the answer also
    // removes a refresh cookie set for the whole domain.
    let refreshed = app
        .session("/session/refresh", Some(APP_ORIGIN), &both)
        .await;
    assert_eq!(refreshed.status, StatusCode::UNAUTHORIZED);
    let removals: Vec<_> = set_cookies(&refreshed)
        .into_iter()
        .filter(|c| c.name() == "tessera_refresh")
        .map(|c| (c.domain().map(str::to_owned), c.max_age()))
        .collect();
    assert_eq!(
        removals,
        [
            (None, Some(cookie::time::Duration::ZERO)),
            (
                Some("example.test".to_owned()),
                Some(cookie::time::Duration::ZERO)
            ),
        ]
    );
    // Logout ends every session the cookies name: sign-out always works.
    let out = app
        .session("/session/logout", Some(APP_ORIGIN), &both)
        .await;
    assert_eq!(out.status, StatusCode::NO_CONTENT);
    for token in [&mine, &planted] {
        assert_eq!(app.refresh(token).await.status, StatusCode::BAD_REQUEST);
    }
}

#[tokio::test]
async fn another_clients_refresh_token_in_the_cookie_is_refused_and_left_alone() {
    let app = sessions_app(|_| {}).await;
    let secret = app
        .add_confidential("billing", &["profile"], &["profile"])
        .await;
    let granted = app
        .form_as(
            "/token",
            "grant_type=password&username=alice&password=correct+horse",
            &super::basic("billing", &secret),
        )
        .await;
    assert_eq!(granted.status, StatusCode::OK, "{}", granted.text());
    let theirs = super::refresh_of(&granted.body);
    let reply = app
        .session(
            "/session/refresh",
            Some(APP_ORIGIN),
            &[("tessera_refresh", &theirs)],
        )
        .await;
    assert_eq!(reply.status, StatusCode::UNAUTHORIZED);
    assert_cleared(&reply, None);
    // Its own client still refreshes it: nothing was rotated or revoked.
    let own = app
        .form_as(
            "/token",
            &format!("grant_type=refresh_token&refresh_token={theirs}"),
            &super::basic("billing", &secret),
        )
        .await;
    assert_eq!(own.status, StatusCode::OK, "{}", own.text());
}

#[tokio::test]
async fn other_origins_and_originless_requests_are_refused_before_any_work() {
    let app = sessions_app(|_| {}).await;
    let (_, refresh) = app.signed_in().await;
    let cookies = [("tessera_refresh", refresh.as_str())];
    for origin in [
        Some("https://evil.example"),
        Some("null"),
        Some("https://app.example.test.evil.example"),
        Some("http://app.example.test"),
        None,
    ] {
        for path in ["/session/refresh", "/session/logout"] {
            let reply = app.session(path, origin, &cookies).await;
            assert_eq!(
                reply.status,
                StatusCode::FORBIDDEN,
                "{path} from {origin:?}"
            );
            assert_eq!(reply.body["error"], "invalid_origin");
            assert!(set_cookies(&reply).is_empty());
        }
        // Signing in counts too (login CSRF), before any password work:
        // even the right password gets no cookie.
        let reply = app.sign_in(origin, "correct horse").await;
        assert_eq!(
            reply.status,
            StatusCode::FORBIDDEN,
            "sign-in from {origin:?}"
        );
        assert!(set_cookies(&reply).is_empty());
    }
    // Two Origin headers are refused too.
    let two = app
        .send(
            Request::post("/session/logout")
                .header(header::ORIGIN, APP_ORIGIN)
                .header(header::ORIGIN, "https://evil.example")
                .header(header::COOKIE, format!("tessera_refresh={refresh}"))
                .body(Body::empty())
                .unwrap(),
        )
        .await;
    assert_eq!(two.status, StatusCode::FORBIDDEN);
    // Refused before any work: a flood of wrong passwords from another
    // origin counts for nothing, and the right one from the app still works.
    for _ in 0..10 {
        let reply = app.sign_in(Some("https://evil.example"), "wrong").await;
        assert_eq!(reply.status, StatusCode::FORBIDDEN);
    }
    assert_eq!(
        app.sign_in(Some(APP_ORIGIN), "correct horse").await.status,
        StatusCode::OK
    );
    // None of that ended the session; the issuer's own origin may use it.
    let own = app
        .session(
            "/session/refresh",
            Some("https://auth.example.test"),
            &cookies,
        )
        .await;
    assert_eq!(own.status, StatusCode::OK, "{}", own.text());
}

#[tokio::test]
async fn cors_answers_the_allowed_origins_only() {
    let app = sessions_app(|_| {}).await;
    let preflight = |origin: &str| {
        Request::options("/session")
            .header(header::ORIGIN, origin)
            .header(header::ACCESS_CONTROL_REQUEST_METHOD, "POST")
            .header(header::ACCESS_CONTROL_REQUEST_HEADERS, "content-type")
            .body(Body::empty())
            .unwrap()
    };
    let allowed = app.send(preflight(APP_ORIGIN)).await;
    assert_eq!(allowed.status, StatusCode::OK);
    assert_eq!(
        allowed.header(header::ACCESS_CONTROL_ALLOW_ORIGIN),
        APP_ORIGIN
    );
    assert_eq!(
        allowed.header(header::ACCESS_CONTROL_ALLOW_CREDENTIALS),
        "true"
    );
    assert!(
        allowed
            .header(header::ACCESS_CONTROL_ALLOW_METHODS)
            .contains("POST")
    );
    let vary: Vec<&str> = allowed
        .headers
        .get_all(header::VARY)
        .iter()
        .map(|v| v.to_str().unwrap())
        .collect();
    assert!(
        vary.join(",").to_ascii_lowercase().contains("origin"),
        "{vary:?}"
    );

    let other = app.send(preflight("https://evil.example")).await;
    assert!(
        other
            .headers
            .get(header::ACCESS_CONTROL_ALLOW_ORIGIN)
            .is_none()
    );
    assert!(
        other
            .headers
            .get(header::ACCESS_CONTROL_ALLOW_CREDENTIALS)
            .is_none()
    );

    // The real request carries the CORS headers for the page to read it.
    let signed = app.sign_in(Some(APP_ORIGIN), "correct horse").await;
    assert_eq!(
        signed.header(header::ACCESS_CONTROL_ALLOW_ORIGIN),
        APP_ORIGIN
    );
    assert_eq!(
        signed.header(header::ACCESS_CONTROL_ALLOW_CREDENTIALS),
        "true"
    );

    // No allowed origins: no CORS at all; the issuer's own pages only.
    let mut bare = app;
    configure(&mut bare, |c| c.allowed_origins.clear());
    let none = bare.send(preflight(APP_ORIGIN)).await;
    assert!(
        none.headers
            .get(header::ACCESS_CONTROL_ALLOW_ORIGIN)
            .is_none()
    );
    assert_eq!(
        bare.sign_in(Some(APP_ORIGIN), "correct horse").await.status,
        StatusCode::FORBIDDEN
    );
}
