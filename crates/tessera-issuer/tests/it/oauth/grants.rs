//! The password grant against the client registry, RFC 6749 errors,
//! `/revoke`, body limits and `/logout`.

use super::*;

/// The security review's finding 1: a caller-chosen `client_id` and `scope`
/// were signed as given. Now the client must be registered (and authenticate
/// if confidential), and the scope is within what it was registered for.
#[tokio::test]
async fn the_password_grant_signs_only_what_the_client_registry_allows() {
    let app = app().await;
    let grant = "grant_type=password&username=alice&password=correct+horse";
    // The review's request: refused, no token.
    let forged = app
        .form(
            "/token",
            &format!("{grant}&scope=admin+orders:write&client_id=trusted-backoffice"),
        )
        .await;
    assert_eq!(forged.status, StatusCode::BAD_REQUEST, "{}", forged.body);
    assert_eq!(forged.body["error"], "invalid_client");
    assert!(forged.body.get("access_token").is_none());
    // A registered client, a scope it may not have.
    let escalated = app
        .form(
            "/token",
            &format!("{grant}&scope=admin&client_id=tessera-web"),
        )
        .await;
    assert_eq!(escalated.status, StatusCode::BAD_REQUEST);
    assert_eq!(escalated.body["error"], "invalid_scope");
    // No client at all.
    assert_eq!(
        app.form("/token", grant).await.body["error"],
        "invalid_client"
    );
    // The login client, no scope: its default.
    let ok = app
        .form("/token", &format!("{grant}&client_id=tessera-web"))
        .await;
    assert_eq!(ok.status, StatusCode::OK, "{}", ok.body);
    let access = claims(ok.body["access_token"].as_str().unwrap());
    assert_eq!(access["client_id"], "tessera-web");
    assert_eq!(access["scope"], "profile");
    assert_eq!(ok.body["scope"], "profile");

    // A confidential client with scopes of its own and an audience.
    let secret = app
        .add_confidential(
            "backoffice",
            &["orders:read", "orders:write"],
            &["orders:read"],
        )
        .await;
    let without_secret = app
        .form("/token", &format!("{grant}&client_id=backoffice"))
        .await;
    assert_eq!(without_secret.status, StatusCode::BAD_REQUEST);
    assert_eq!(without_secret.body["error"], "invalid_client");
    for wrong in [
        app.form_as("/token", grant, &basic("backoffice", "not-the-secret"))
            .await,
        app.form(
            "/token",
            &format!("{grant}&client_id=backoffice&client_secret=not-the-secret"),
        )
        .await,
        app.form_as("/token", grant, &basic("nobody", &secret))
            .await,
    ] {
        assert_eq!(wrong.status, StatusCode::UNAUTHORIZED, "{}", wrong.body);
        assert_eq!(wrong.body["error"], "invalid_client");
        assert_eq!(
            wrong.headers.get(header::WWW_AUTHENTICATE).unwrap(),
            "Basic realm=\"tessera\""
        );
    }
    let ok = app
        .form_as("/token", grant, &basic("backoffice", &secret))
        .await;
    assert_eq!(ok.status, StatusCode::OK, "{}", ok.body);
    let access = claims(ok.body["access_token"].as_str().unwrap());
    assert_eq!(
        (&access["client_id"], &access["scope"], &access["aud"]),
        (
            &json!("backoffice"),
            &json!("orders:read"),
            &json!("orders-api")
        )
    );
    let both = app
        .form(
            "/token",
            &format!(
                "{grant}&client_id=backoffice&client_secret={secret}&scope=orders:write+orders:read"
            ),
        )
        .await;
    assert_eq!(both.status, StatusCode::OK, "{}", both.body);
    assert_eq!(
        claims(both.body["access_token"].as_str().unwrap())["scope"],
        "orders:write orders:read"
    );
    assert_eq!(
        app.form_as(
            "/token",
            &format!("{grant}&scope=orders:write+admin"),
            &basic("backoffice", &secret)
        )
        .await
        .body["error"],
        "invalid_scope"
    );

    // Refreshing keeps the registered client: a confidential one must
    // authenticate, and no other client may use its refresh token.
    let refresh = format!(
        "grant_type=refresh_token&refresh_token={}",
        refresh_of(&both.body)
    );
    let anonymous = app.form("/token", &refresh).await;
    assert_eq!(anonymous.status, StatusCode::BAD_REQUEST);
    assert_eq!(anonymous.body["error"], "invalid_client");
    let other = app
        .form("/token", &format!("{refresh}&client_id=tessera-web"))
        .await;
    assert_eq!(other.body["error"], "invalid_grant");
    // The operator narrows the client: the refreshed token narrows with it.
    let mut narrowed = app.db.client("backoffice").await.unwrap().unwrap();
    narrowed.scopes = vec!["orders:read".to_owned()];
    narrowed.default_scope = vec!["orders:read".to_owned()];
    app.db.update_client(&narrowed).await.unwrap();
    app.state.service().clients_changed();
    let refreshed = app
        .form_as("/token", &refresh, &basic("backoffice", &secret))
        .await;
    assert_eq!(refreshed.status, StatusCode::OK, "{}", refreshed.body);
    let access = claims(refreshed.body["access_token"].as_str().unwrap());
    assert_eq!(
        (access["client_id"].as_str(), access["scope"].as_str()),
        (Some("backoffice"), Some("orders:read"))
    );
    // Disabled: no new tokens, no refresh.
    narrowed.disabled = true;
    app.db.update_client(&narrowed).await.unwrap();
    app.state.service().clients_changed();
    let next = format!(
        "grant_type=refresh_token&refresh_token={}",
        refresh_of(&refreshed.body)
    );
    assert_eq!(
        app.form_as("/token", &next, &basic("backoffice", &secret))
            .await
            .body["error"],
        "invalid_client"
    );
    assert_eq!(
        app.form_as("/token", grant, &basic("backoffice", &secret))
            .await
            .body["error"],
        "invalid_client"
    );
    // A client not allowed to refresh gets no refresh token.
    let mut no_refresh = tessera_issuer::clients::login_client("kiosk", T0 as i64);
    no_refresh.grant_types = vec!["password".to_owned()];
    app.db.add_client(&no_refresh).await.unwrap();
    app.state.service().clients_changed();
    let kiosk = app
        .form("/token", &format!("{grant}&client_id=kiosk"))
        .await;
    assert_eq!(kiosk.status, StatusCode::OK, "{}", kiosk.body);
    assert!(kiosk.body.get("refresh_token").is_none(), "{}", kiosk.body);
    assert_eq!(
        app.form(
            "/token",
            "grant_type=refresh_token&refresh_token=x&client_id=kiosk"
        )
        .await
        .body["error"],
        "unauthorized_client"
    );
}

#[tokio::test]
async fn the_password_grant_and_rfc6749_errors() {
    let app = app().await;
    let cases = [
        (
            "grant_type=password&username=alice&password=wrong&client_id=tessera-web",
            "invalid_grant",
        ),
        (
            "grant_type=password&username=nobody&password=correct+horse&client_id=tessera-web",
            "invalid_grant",
        ),
        (
            "grant_type=password&password=correct+horse&client_id=tessera-web",
            "invalid_request",
        ),
        ("username=alice&password=correct+horse", "invalid_request"),
        (
            "grant_type=authorization_code&code=x&client_id=tessera-web",
            "unauthorized_client",
        ),
        ("grant_type=device_code", "unsupported_grant_type"),
        ("grant_type=implicit", "unsupported_grant_type"),
        ("grant_type=client_credentials", "invalid_client"),
        ("grant_type=refresh_token", "invalid_request"),
        (
            "grant_type=refresh_token&refresh_token=not-a-token",
            "invalid_grant",
        ),
        (
            "grant_type=refresh_token&grant_type=password",
            "invalid_request",
        ),
        (
            "grant_type=password&username=alice&password=correct+horse&scope=%22bad%22&client_id=tessera-web",
            "invalid_request",
        ),
    ];
    for (form, error) in cases {
        let reply = app.form("/token", form).await;
        assert_eq!(reply.status, StatusCode::BAD_REQUEST, "{form}");
        assert_eq!(reply.body["error"], error, "{form}: {}", reply.body);
        assert_eq!(
            reply.headers.get(header::CACHE_CONTROL).unwrap(),
            "no-store"
        );
    }
    // Without client credentials the client is refused first: the caller
    // learns nothing about the rest of the request.
    let anonymous = app.form("/token", "grant_type=password&password=x").await;
    assert_eq!(
        anonymous.status,
        StatusCode::BAD_REQUEST,
        "{}",
        anonymous.body
    );
    assert_eq!(anonymous.body["error"], "invalid_client");
    let json_body = app
        .send(
            Request::post("/token")
                .header(header::CONTENT_TYPE, "application/json")
                .body(Body::from("{\"grant_type\":\"password\"}"))
                .unwrap(),
        )
        .await;
    assert_eq!(json_body.status, StatusCode::BAD_REQUEST);
    assert_eq!(json_body.body["error"], "invalid_request");
}

#[tokio::test]
async fn revoke_kills_the_family_and_answers_200_for_anything() {
    let app = app().await;
    let login = app.login().await;
    let token = refresh_of(&login);
    let reply = app
        .form(
            "/revoke",
            &format!("token={token}&token_type_hint=refresh_token"),
        )
        .await;
    assert_eq!(reply.status, StatusCode::OK);
    assert_eq!(
        app.refresh(&token).await.body,
        json!({"error": "invalid_grant"})
    );
    // Unknown tokens, access tokens, garbage: 200, nothing revealed.
    for form in [
        "token=unknown".to_owned(),
        format!("token={}", login["access_token"].as_str().unwrap()),
    ] {
        assert_eq!(app.form("/revoke", &form).await.status, StatusCode::OK);
    }
    let missing = app.form("/revoke", "token_type_hint=refresh_token").await;
    assert_eq!(missing.status, StatusCode::BAD_REQUEST);
    assert_eq!(missing.body["error"], "invalid_request");
}

/// A form over the 16 KiB limit is `413` on every form endpoint, as `/login`
/// answers for JSON (it was `400 "expected a form body"`).
#[tokio::test]
async fn oversized_form_bodies_are_413_everywhere() {
    let app = app().await;
    let big = format!("token={}", "x".repeat(20 * 1024));
    let secret = app.add_confidential("resource-a", &[], &[]).await;
    let mut caller = app.db.client("resource-a").await.unwrap().unwrap();
    caller.introspect = true;
    app.db.update_client(&caller).await.unwrap();
    app.state.service().clients_changed();
    for path in ["/token", "/revoke", "/introspect"] {
        let reply = app.form_as(path, &big, &basic("resource-a", &secret)).await;
        assert_eq!(
            reply.status,
            StatusCode::PAYLOAD_TOO_LARGE,
            "{path}: {}",
            reply.body
        );
        assert_eq!(reply.body["error"], "invalid_request", "{path}");
    }
}

#[tokio::test]
async fn logout_ends_the_session_of_the_access_token() {
    let app = app().await;
    let login = app.login().await;
    let access = login["access_token"].as_str().unwrap();
    let other = app.login().await;

    let reply = app.logout(Some(&format!("Bearer {access}"))).await;
    assert_eq!(reply.status, StatusCode::NO_CONTENT);
    assert_eq!(
        app.refresh(&refresh_of(&login)).await.body,
        json!({"error": "invalid_grant"})
    );
    // Another session of the same user is untouched.
    assert_eq!(
        app.refresh(&refresh_of(&other)).await.status,
        StatusCode::OK
    );
    // Logging out twice is harmless.
    assert_eq!(
        app.logout(Some(&format!("Bearer {access}"))).await.status,
        StatusCode::NO_CONTENT
    );
}

#[tokio::test]
async fn logout_without_a_valid_bearer_token_is_401_with_a_challenge() {
    let app = app().await;
    let login = app.login().await;
    let access = login["access_token"].as_str().unwrap().to_owned();
    let mut tampered = access.clone();
    tampered.replace_range(tampered.len() - 4.., "AAAA");
    let cases: Vec<(Option<String>, &str)> = vec![
        (None, "Bearer"),
        (
            Some("Basic YWxpY2U6eA==".to_owned()),
            "error=\"invalid_request\"",
        ),
        (
            Some("Bearer not.a.token".to_owned()),
            "error=\"invalid_token\"",
        ),
        (
            Some(format!("Bearer {tampered}")),
            "error=\"invalid_token\"",
        ),
    ];
    for (authorization, challenge) in cases {
        let reply = app.logout(authorization.as_deref()).await;
        assert_eq!(reply.status, StatusCode::UNAUTHORIZED, "{authorization:?}");
        let header = reply
            .headers
            .get(header::WWW_AUTHENTICATE)
            .unwrap()
            .to_str()
            .unwrap();
        assert!(
            header.starts_with("Bearer") && header.contains(challenge),
            "{header}"
        );
    }
    // Expired (15 min + 60 s leeway later): refused, and the session lives on.
    app.clock.advance(961);
    let reply = app.logout(Some(&format!("Bearer {access}"))).await;
    assert_eq!(reply.status, StatusCode::UNAUTHORIZED);
    assert_eq!(
        app.refresh(&refresh_of(&login)).await.status,
        StatusCode::OK
    );
}
