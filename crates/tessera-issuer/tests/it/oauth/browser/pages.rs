//! The login page and what a person sees: its headers and cookies, one
//! answer for every wrong credential, CSRF, the SSO session and `prompt`,
//! consent, RP-initiated logout, and CORS for browser apps.

use axum::http::{Request, StatusCode, header};
use cookie::SameSite;

use super::super::{claims, refresh_of};
use super::*;
use tessera_issuer::passwords::{Password, random_token};
use tessera_issuer::service::accounts::Accounts;

fn set_cookie(reply: &Reply, name: &str) -> Cookie<'static> {
    reply
        .headers
        .get_all(header::SET_COOKIE)
        .iter()
        .map(|v| Cookie::parse(v.to_str().unwrap().to_owned()).unwrap())
        .find(|c| c.name() == name)
        .unwrap_or_else(|| panic!("no {name} cookie in {:?}", reply.headers))
}

#[tokio::test]
async fn the_login_page_is_a_plain_safe_form_naming_the_client() {
    let app = browser_app().await;
    let mut browser = Browser::default();
    let page = browser
        .get(&app, &authorize_query(SPA, "&login_hint=alice"))
        .await;
    assert_eq!(page.status, StatusCode::OK);
    assert_eq!(
        page.header(header::CONTENT_TYPE),
        "text/html; charset=utf-8"
    );
    let csp = page.header(header::CONTENT_SECURITY_POLICY);
    assert!(csp.contains("default-src 'none'"), "{csp}");
    assert!(csp.contains("frame-ancestors 'none'"), "{csp}");
    assert!(
        csp.contains("form-action 'self' https://app.example.test"),
        "{csp}"
    );
    assert!(
        !csp.contains("script-src") && !csp.contains("unsafe-inline"),
        "{csp}"
    );
    assert_eq!(page.header(header::REFERRER_POLICY), "no-referrer");
    assert_eq!(page.header(header::CACHE_CONTROL), "no-store");
    let html = page.text();
    assert!(!html.contains("<script"), "no JavaScript");
    assert!(
        html.contains("to continue to <strong>spa</strong>"),
        "names the client"
    );
    assert!(html.contains("<label for=\"username\">") && html.contains("<label for=\"password\">"));
    assert!(html.contains("name=\"username\"") && html.contains("name=\"password\""));
    assert!(
        html.contains("value=\"alice\""),
        "login_hint prefills the username"
    );
    assert!(html.contains("/assets/tessera.css"));
    let css = app
        .send(
            Request::get("/assets/tessera.css")
                .body(Body::empty())
                .unwrap(),
        )
        .await;
    assert_eq!(css.status, StatusCode::OK);
    assert!(css.header(header::CONTENT_TYPE).starts_with("text/css"));
    // The pre-login cookie: Lax (no cross-site POST carries it), HttpOnly,
    // Secure (an https issuer).
    let login = set_cookie(&page, "__Host-tessera_login");
    assert_eq!(login.same_site(), Some(SameSite::Lax));
    assert_eq!(login.http_only(), Some(true));
    assert_eq!(login.secure(), Some(true));
    // The CSRF token in the form is not the cookie's value.
    let csrf = hidden_fields(&page)
        .into_iter()
        .find(|(n, _)| n == "csrf")
        .unwrap()
        .1;
    assert_ne!(csrf, login.value());
}

#[tokio::test]
async fn every_wrong_credential_gets_the_same_answer() {
    let app = browser_app().await;
    let hash = app
        .state
        .service()
        .hasher()
        .hash(&Password::new("right one".to_owned()))
        .unwrap();
    app.db
        .add_user(&random_token(16), "bob", &hash, &[], T0 as i64)
        .await
        .unwrap();
    app.db.set_disabled("bob", true, T0 as i64).await.unwrap();
    let mut answers = Vec::new();
    for (user, password) in [
        ("alice", "wrong"),
        ("nobody", "correct horse"),
        ("bob", "right one"),
    ] {
        let mut browser = Browser::default();
        let page = browser.get(&app, &authorize_query(SPA, "")).await;
        let reply = browser.log_in(&app, &page, user, password).await;
        assert_eq!(reply.status, StatusCode::OK, "{user}");
        assert!(reply.headers.get(header::LOCATION).is_none());
        let html = reply.text();
        assert!(
            html.contains("The username or password is incorrect."),
            "{user}"
        );
        assert!(!browser.jar.contains_key("__Host-tessera_sso"), "{user}");
        answers.push(html.replace(user, "USER"));
    }
    // The same page but for the name typed in (and the form's fields).
    let strip = |html: &str| html.split("<form").next().unwrap().to_owned();
    assert_eq!(strip(&answers[0]), strip(&answers[1]));
    assert_eq!(strip(&answers[1]), strip(&answers[2]));
}

#[tokio::test]
async fn the_login_form_needs_its_cookie_and_token_and_no_other_origin() {
    let app = browser_app().await;
    let mut browser = Browser::default();
    let page = browser.get(&app, &authorize_query(SPA, "")).await;
    let mut fields = hidden_fields(&page);
    fields.push(("username".into(), "alice".into()));
    fields.push(("password".into(), "correct horse".into()));

    // Without the pre-login cookie (a form posted from another site).
    let reply = Browser::default()
        .post(&app, "/authorize/login", &fields)
        .await;
    assert_eq!(reply.status, StatusCode::FORBIDDEN);
    // With the cookie but a wrong token.
    let mut forged = fields.clone();
    for field in &mut forged {
        if field.0 == "csrf" {
            field.1 = "forged".into();
        }
    }
    let reply = browser.post(&app, "/authorize/login", &forged).await;
    assert_eq!(reply.status, StatusCode::FORBIDDEN);
    // From another origin, even with both.
    let body = form_urlencoded::Serializer::new(String::new())
        .extend_pairs(&fields)
        .finish();
    let request = Request::post("/authorize/login")
        .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
        .header(header::ORIGIN, "https://evil.example")
        .header(header::COOKIE, browser.cookie_line().unwrap())
        .body(Body::from(body))
        .unwrap();
    assert_eq!(app.send(request).await.status, StatusCode::FORBIDDEN);
    // Tampered request fields are checked again: no redirect elsewhere.
    let mut elsewhere = fields.clone();
    for field in &mut elsewhere {
        if field.0 == "redirect_uri" {
            field.1 = "https://evil.example/cb".into();
        }
    }
    let reply = browser.post(&app, "/authorize/login", &elsewhere).await;
    assert_eq!(reply.status, StatusCode::BAD_REQUEST);
    assert!(reply.headers.get(header::LOCATION).is_none());
    // And the real form works.
    let reply = browser.post(&app, "/authorize/login", &fields).await;
    assert_eq!(reply.status, StatusCode::SEE_OTHER);
}

#[tokio::test]
async fn the_sso_session_skips_the_form_unless_prompt_login() {
    let app = browser_app().await;
    let mut browser = Browser::default();
    let first = browser.sign_in(&app, &authorize_query(SPA, "")).await;
    let sso = set_cookie(&first, "__Host-tessera_sso");
    assert_eq!(sso.http_only(), Some(true));
    assert_eq!(sso.same_site(), Some(SameSite::Lax));
    assert_eq!(sso.secure(), Some(true));
    assert_eq!(sso.path(), Some("/"));
    assert!(!browser.jar.contains_key("__Host-tessera_login"), "cleared");

    // Again, within the session: straight back with a new code.
    app.clock.advance(30);
    let again = browser.get(&app, &authorize_query(SPA, "")).await;
    assert_eq!(again.status, StatusCode::SEE_OTHER);
    let body = app
        .redeem(SPA, &location_params(&again)["code"], VERIFIER)
        .await
        .body;
    let id = claims(body["id_token"].as_str().unwrap());
    assert_eq!(
        id["auth_time"], T0,
        "the password was checked at the first sign-in"
    );
    // prompt=none with a session: a code too.
    let silent = browser
        .get(&app, &authorize_query(SPA, "&prompt=none"))
        .await;
    assert!(location_params(&silent).contains_key("code"));
    // prompt=login: the form again, and a fresh auth_time after it.
    let page = browser
        .get(&app, &authorize_query(SPA, "&prompt=login"))
        .await;
    assert_eq!(page.status, StatusCode::OK);
    assert!(page.text().contains("name=\"password\""));
    let reply = browser.log_in(&app, &page, "alice", "correct horse").await;
    let body = app
        .redeem(SPA, &location_params(&reply)["code"], VERIFIER)
        .await
        .body;
    assert_eq!(
        claims(body["id_token"].as_str().unwrap())["auth_time"],
        T0 + 30
    );
    // max_age: a sign-in older than it asks for the password again
    // (prompt=none: login_required); a recent enough one does not.
    app.clock.advance(30);
    let old = browser
        .get(&app, &authorize_query(SPA, "&max_age=10"))
        .await;
    assert_eq!(
        old.status,
        StatusCode::OK,
        "30 s since the password was checked"
    );
    assert!(old.text().contains("name=\"password\""));
    let silent_old = browser
        .get(&app, &authorize_query(SPA, "&max_age=10&prompt=none"))
        .await;
    assert_eq!(location_params(&silent_old)["error"], "login_required");
    let recent = browser
        .get(&app, &authorize_query(SPA, "&max_age=60"))
        .await;
    assert_eq!(recent.status, StatusCode::SEE_OTHER);
    // Another browser has no session.
    let other = Browser::default()
        .get(&app, &authorize_query(SPA, "&prompt=none"))
        .await;
    assert_eq!(location_params(&other)["error"], "login_required");
}

#[tokio::test]
async fn a_third_party_client_asks_once_per_scope_and_consent_can_be_withdrawn() {
    let app = browser_app().await;
    let mut browser = Browser::default();
    let page = browser.get(&app, &authorize_query("third", "")).await;
    let consent = browser.log_in(&app, &page, "alice", "correct horse").await;
    assert_eq!(consent.status, StatusCode::OK);
    let html = consent.text();
    assert!(html.contains("Allow access?") && html.contains("<strong>third</strong>"));
    assert!(html.contains("Know who you are") && html.contains("See your username"));
    assert!(html.contains("Signed in as <strong>alice</strong>"));
    // prompt=none while consent is missing.
    let silent = browser
        .get(&app, &authorize_query("third", "&prompt=none"))
        .await;
    assert_eq!(location_params(&silent)["error"], "consent_required");
    // Deny: back with access_denied.
    let mut deny = hidden_fields(&consent);
    deny.push(("decision".into(), "deny".into()));
    let denied = browser.post(&app, "/authorize/consent", &deny).await;
    assert_eq!(location_params(&denied)["error"], "access_denied");
    assert_eq!(location_params(&denied)["state"], "st-123");
    // A forged consent token is refused.
    let mut forged = deny.clone();
    for field in &mut forged {
        if field.0 == "csrf" {
            field.1 = "x".into();
        }
        if field.0 == "decision" {
            field.1 = "allow".into();
        }
    }
    let refused = browser.post(&app, "/authorize/consent", &forged).await;
    assert_eq!(refused.status, StatusCode::FORBIDDEN);
    // Allow: a code, and the answer is remembered.
    let mut allow = hidden_fields(&consent);
    allow.push(("decision".into(), "allow".into()));
    let allowed = browser.post(&app, "/authorize/consent", &allow).await;
    let code = location_params(&allowed)["code"].clone();
    let tokens = app.redeem("third", &code, VERIFIER).await;
    assert_eq!(tokens.status, StatusCode::OK);
    // A third party's token says what the user allowed, no more: the
    // username (profile), but not the roles (no roles scope).
    let access = claims(tokens.body["access_token"].as_str().unwrap());
    assert_eq!(access["preferred_username"], "alice");
    assert_eq!(access["roles"], serde_json::json!([]));
    let again = browser.get(&app, &authorize_query("third", "")).await;
    assert_eq!(again.status, StatusCode::SEE_OTHER, "remembered");
    // A scope not allowed before is asked for, alone.
    let wider =
        authorize_query("third", "").replace("scope=openid%20profile", "scope=openid%20roles");
    let ask = browser.get(&app, &wider).await;
    assert_eq!(ask.status, StatusCode::OK);
    assert!(ask.text().contains("See your roles"));
    assert!(!ask.text().contains("See your username"));

    // Withdrawn by an operator: the client's sessions end and it asks again.
    let accounts = Accounts::new(
        app.db.clone(),
        std::time::Duration::from_secs(300),
        app.clock.clone(),
    );
    let (had, ended) = accounts.withdraw_consent("alice", "third").await.unwrap();
    assert!(had);
    assert_eq!(ended, 1);
    assert_eq!(
        app.refresh(&refresh_of(&tokens.body)).await.body["error"],
        "invalid_grant"
    );
    let asked = browser.get(&app, &authorize_query("third", "")).await;
    assert_eq!(asked.status, StatusCode::OK);
    assert!(asked.text().contains("Allow access?"));
}

#[tokio::test]
async fn rp_initiated_logout_ends_the_sso_session_and_its_tokens() {
    let app = browser_app().await;
    let mut browser = Browser::default();
    let body = tokens(&app, &mut browser).await;
    let id_token = body["id_token"].as_str().unwrap();
    // An unregistered post-logout address is never followed.
    let bad = browser
        .get(
            &app,
            &format!(
                "/end_session?id_token_hint={id_token}&post_logout_redirect_uri={}",
                enc("https://evil.example/")
            ),
        )
        .await;
    assert_eq!(bad.status, StatusCode::BAD_REQUEST);
    assert!(bad.headers.get(header::LOCATION).is_none());
    assert!(
        browser.jar.contains_key("__Host-tessera_sso"),
        "nothing ended"
    );

    let out = browser
        .get(
            &app,
            &format!(
                "/end_session?id_token_hint={id_token}&post_logout_redirect_uri={}&state=bye-1",
                enc(BYE)
            ),
        )
        .await;
    assert_eq!(out.status, StatusCode::SEE_OTHER);
    assert_eq!(out.header(header::LOCATION), format!("{BYE}?state=bye-1"));
    assert!(
        !browser.jar.contains_key("__Host-tessera_sso"),
        "cookie cleared"
    );
    assert_eq!(
        app.refresh(&refresh_of(&body)).await.body["error"],
        "invalid_grant"
    );
    let access = body["access_token"].as_str().unwrap();
    assert_eq!(app.userinfo(access).await.status, StatusCode::UNAUTHORIZED);
    let sid = claims(access)["sid"].as_str().unwrap().to_owned();
    assert!(!app.db.session_active(&sid).await.unwrap());
    // Signed out: the next sign-in asks for the password.
    let next = browser
        .get(&app, &authorize_query(SPA, "&prompt=none"))
        .await;
    assert_eq!(location_params(&next)["error"], "login_required");
}

#[tokio::test]
async fn logout_without_a_hint_asks_first() {
    let app = browser_app().await;
    let mut browser = Browser::default();
    let body = tokens(&app, &mut browser).await;
    let ask = browser.get(&app, "/logout").await;
    assert_eq!(ask.status, StatusCode::OK);
    assert!(ask.text().contains("Sign out?"));
    assert!(browser.jar.contains_key("__Host-tessera_sso"), "not yet");
    // A forged confirmation is refused.
    let forged = vec![("csrf".to_owned(), "x".to_owned())];
    let refused = browser.post(&app, "/end_session", &forged).await;
    assert_eq!(refused.status, StatusCode::BAD_REQUEST);
    assert_eq!(app.refresh(&refresh_of(&body)).await.status, StatusCode::OK);
    let done = browser
        .post(&app, "/end_session", &hidden_fields(&ask))
        .await;
    assert_eq!(done.status, StatusCode::OK);
    assert!(done.text().contains("You are signed out."));
    assert!(!browser.jar.contains_key("__Host-tessera_sso"));
    let silent = browser
        .get(&app, &authorize_query(SPA, "&prompt=none"))
        .await;
    assert_eq!(location_params(&silent)["error"], "login_required");
}

#[tokio::test]
async fn browser_apps_get_cors_at_token_for_their_registered_origin_only() {
    let app = browser_app().await;
    let preflight = |origin: &str| {
        Request::options("/token")
            .header(header::ORIGIN, origin)
            .header(header::ACCESS_CONTROL_REQUEST_METHOD, "POST")
            .header(header::ACCESS_CONTROL_REQUEST_HEADERS, "content-type")
            .body(Body::empty())
            .unwrap()
    };
    let ok = app.send(preflight("https://app.example.test")).await;
    assert_eq!(
        ok.header(header::ACCESS_CONTROL_ALLOW_ORIGIN),
        "https://app.example.test"
    );
    let loopback = app.send(preflight("http://127.0.0.1:5173")).await;
    assert_eq!(
        loopback.header(header::ACCESS_CONTROL_ALLOW_ORIGIN),
        "http://127.0.0.1:5173"
    );
    let evil = app.send(preflight("https://evil.example")).await;
    assert!(
        evil.headers
            .get(header::ACCESS_CONTROL_ALLOW_ORIGIN)
            .is_none()
    );
    assert!(
        evil.headers
            .get(header::ACCESS_CONTROL_ALLOW_CREDENTIALS)
            .is_none()
    );
    let jwks = app
        .send(
            Request::get("/.well-known/jwks.json")
                .header(header::ORIGIN, "https://anyone.example")
                .body(Body::empty())
                .unwrap(),
        )
        .await;
    assert_eq!(jwks.header(header::ACCESS_CONTROL_ALLOW_ORIGIN), "*");
}

#[tokio::test]
async fn discovery_describes_the_browser_flow() {
    let app = browser_app().await;
    let doc = app.discovery().await.body;
    assert_eq!(
        doc["authorization_endpoint"],
        "https://auth.example.test/authorize"
    );
    assert_eq!(
        doc["userinfo_endpoint"],
        "https://auth.example.test/userinfo"
    );
    assert_eq!(
        doc["end_session_endpoint"],
        "https://auth.example.test/end_session"
    );
    assert_eq!(doc["response_types_supported"], serde_json::json!(["code"]));
    assert_eq!(
        doc["code_challenge_methods_supported"],
        serde_json::json!(["S256"])
    );
    assert_eq!(
        doc["id_token_signing_alg_values_supported"],
        serde_json::json!(["RS256"])
    );
    assert_eq!(
        doc["subject_types_supported"],
        serde_json::json!(["public"])
    );
    for scope in ["openid", "profile", "roles"] {
        assert!(
            doc["scopes_supported"]
                .as_array()
                .unwrap()
                .iter()
                .any(|s| s == scope)
        );
    }
    for claim in [
        "sub",
        "auth_time",
        "nonce",
        "sid",
        "amr",
        "preferred_username",
    ] {
        assert!(
            doc["claims_supported"]
                .as_array()
                .unwrap()
                .iter()
                .any(|c| c == claim)
        );
    }
    let oidc = app
        .send(
            Request::get("/.well-known/openid-configuration")
                .body(Body::empty())
                .unwrap(),
        )
        .await
        .body;
    assert_eq!(oidc, doc, "RFC 8414 metadata says the same");
}

#[tokio::test]
async fn the_login_page_is_throttled_with_login() {
    let app = browser_app().await;
    let mut browser = Browser::default();
    let page = browser.get(&app, &authorize_query(SPA, "")).await;
    // Six failures through /login (its limit), then the page is refused too:
    // one budget for both doors.
    for _ in 0..6 {
        let reply = app
            .send(
                Request::post("/login")
                    .header(header::CONTENT_TYPE, "application/json")
                    .body(Body::from(
                        serde_json::json!({"username": "alice", "password": "wrong"}).to_string(),
                    ))
                    .unwrap(),
            )
            .await;
        assert_eq!(reply.status, StatusCode::UNAUTHORIZED);
    }
    let blocked = browser.log_in(&app, &page, "alice", "correct horse").await;
    assert_eq!(blocked.status, StatusCode::TOO_MANY_REQUESTS);
    assert!(blocked.headers.get(header::RETRY_AFTER).is_some());
    assert!(blocked.text().contains("Too many failed sign-ins"));
    assert!(blocked.headers.get(header::LOCATION).is_none());
    assert!(!browser.jar.contains_key("__Host-tessera_sso"));
}

#[tokio::test]
async fn signing_in_again_replaces_the_sso_session_and_keeps_its_sessions_together() {
    let app = browser_app().await;
    let mut browser = Browser::default();
    let first = tokens(&app, &mut browser).await;
    let old_cookie = browser.jar["__Host-tessera_sso"].clone();
    // prompt=login: the password again, a new SSO cookie.
    let page = browser
        .get(&app, &authorize_query(SPA, "&prompt=login"))
        .await;
    let reply = browser.log_in(&app, &page, "alice", "correct horse").await;
    let second = app
        .redeem(SPA, &location_params(&reply)["code"], VERIFIER)
        .await
        .body;
    assert_ne!(browser.jar["__Host-tessera_sso"], old_cookie);
    // The replaced cookie is worth nothing now, even to whoever copied it.
    let mut copy = Browser::default();
    copy.jar.insert("__Host-tessera_sso".into(), old_cookie);
    let silent = copy.get(&app, &authorize_query(SPA, "&prompt=none")).await;
    assert_eq!(location_params(&silent)["error"], "login_required");
    // Signing out of the new one ends the first sign-in's session too.
    let hint = second["id_token"].as_str().unwrap();
    let out = browser
        .get(&app, &format!("/end_session?id_token_hint={hint}"))
        .await;
    assert_eq!(out.status, StatusCode::OK);
    for body in [&first, &second] {
        assert_eq!(
            app.refresh(&refresh_of(body)).await.body["error"],
            "invalid_grant"
        );
    }
}

#[tokio::test]
async fn a_hint_from_another_sign_in_ends_nothing_without_asking() {
    let app = browser_app().await;
    let mut victim = Browser::default();
    let theirs = tokens(&app, &mut victim).await;
    // Someone else signs in (as alice too, in another browser) and puts
    // their own ID token into a link the victim follows.
    let mut other = Browser::default();
    let own = tokens(&app, &mut other).await;
    let link = format!(
        "/end_session?id_token_hint={}&post_logout_redirect_uri={}",
        own["id_token"].as_str().unwrap(),
        enc(BYE)
    );
    let asked = victim.get(&app, &link).await;
    assert_eq!(asked.status, StatusCode::OK);
    assert!(asked.text().contains("Sign out?"));
    assert!(victim.jar.contains_key("__Host-tessera_sso"), "not cleared");
    for body in [&theirs, &own] {
        assert_eq!(app.refresh(&refresh_of(body)).await.status, StatusCode::OK);
    }
    // A browser with no session: told it is signed out; nothing ends.
    let nobody = Browser::default()
        .get(
            &app,
            &format!(
                "/end_session?id_token_hint={}",
                theirs["id_token"].as_str().unwrap()
            ),
        )
        .await;
    assert!(nobody.text().contains("You are signed out."));
    let sid = claims(theirs["access_token"].as_str().unwrap())["sid"]
        .as_str()
        .unwrap()
        .to_owned();
    assert!(app.db.session_active(&sid).await.unwrap());
}
