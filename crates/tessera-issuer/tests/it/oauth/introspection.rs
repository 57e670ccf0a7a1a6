//! `/introspect` (RFC 7662).

use super::*;

/// `/introspect` (RFC 7662): only configured callers, with HTTP Basic; an
/// access token is active until it expires or is revoked (its session, or its
/// user up to its issue time); anything else is inactive.
#[tokio::test]
async fn introspection_answers_configured_callers_only_and_sees_revocations() {
    let mut app = app().await;
    let (secret, hash) = tessera_issuer::service::clients::new_client_secret();
    let mut secret_sha256 = [0u8; 32];
    URL_SAFE_NO_PAD
        .decode_slice(&hash, &mut secret_sha256)
        .unwrap();
    let issuer = app.state.service().clone().with_introspection_clients(vec![
        tessera_issuer::config::IntrospectionClient {
            client_id: "orders-api".to_owned(),
            secret_sha256,
        },
    ]);
    app.state = AppState::new(issuer);
    let app = &app;
    let introspect = |auth: Option<String>, form: String| {
        let mut request = Request::post("/introspect")
            .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded");
        if let Some(auth) = auth {
            request = request.header(header::AUTHORIZATION, auth);
        }
        let request = request.body(Body::from(form)).unwrap();
        async move {
            let reply = app.send(request).await;
            let challenge = reply
                .headers
                .get(header::WWW_AUTHENTICATE)
                .map(|v| v.to_str().unwrap().to_owned());
            // Every answer, errors included, must be JSON.
            let body = serde_json::from_slice::<Value>(&reply.raw).unwrap();
            (reply.status, challenge, body)
        }
    };
    let basic = |id: &str, secret: &str| {
        Some(format!(
            "Basic {}",
            base64::engine::general_purpose::STANDARD.encode(format!("{id}:{secret}"))
        ))
    };
    let good = || basic("orders-api", &secret);

    let login = app.login().await;
    let access = login["access_token"].as_str().unwrap().to_owned();
    let form = format!("token={access}");

    // Callers that are not configured learn nothing.
    for auth in [None, basic("orders-api", "wrong"), basic("other", &secret)] {
        let (status, challenge, body) = introspect(auth, form.clone()).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED);
        assert_eq!(challenge.as_deref(), Some("Basic realm=\"tessera\""));
        assert_eq!(body["error"], "invalid_client");
        assert!(body.get("active").is_none());
    }

    let (status, _, body) = introspect(good(), form.clone()).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body["active"], true);
    assert_eq!(body["username"], "alice");
    assert_eq!(body["token_type"], "Bearer");
    assert_eq!(body["exp"], T0 as i64 + 900);
    assert_eq!(body["sub"], claims(&access)["sub"]);
    assert_eq!(body["scope"], "profile");

    // Not an access token of ours, or no token at all.
    let refresh = refresh_of(&login);
    for other in [format!("token={refresh}"), "token=abc.def.ghi".to_owned()] {
        let (status, _, body) = introspect(good(), other).await;
        assert_eq!((status, body), (StatusCode::OK, json!({"active": false})));
    }
    let (status, _, _) = introspect(good(), "nothing=here".to_owned()).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);

    // A user revocation covers tokens issued up to its time, not later ones.
    let sub = claims(&access)["sub"].as_str().unwrap().to_owned();
    app.db
        .add_revocation(
            tessera_issuer::revocation::Kind::Sub,
            &sub,
            tessera_issuer::db::RevokedAt::Clock(T0 as i64),
            Duration::from_secs(900),
            "test",
        )
        .await
        .unwrap();
    let (_, _, body) = introspect(good(), form.clone()).await;
    assert_eq!(body["active"], false, "revoked with its user");
    app.clock.advance(1);
    let later = app.login().await["access_token"]
        .as_str()
        .unwrap()
        .to_owned();
    let (_, _, body) = introspect(good(), format!("token={later}")).await;
    assert_eq!(body["active"], true, "issued after the user's revocation");

    // Logout (its session), then expiry.
    let logout = app.logout(Some(&format!("Bearer {later}"))).await;
    assert_eq!(logout.status, StatusCode::NO_CONTENT);
    let (_, _, body) = introspect(good(), format!("token={later}")).await;
    assert_eq!(body["active"], false, "its session was logged out");
    let third = app.login().await["access_token"]
        .as_str()
        .unwrap()
        .to_owned();
    let fourth = format!(
        "token={}",
        app.login().await["access_token"].as_str().unwrap()
    );

    // Registered clients: one allowed to introspect, one not. (The
    // configuration table above is the deprecated way, still honoured.)
    let allowed = app.add_confidential("resource-a", &[], &[]).await;
    let mut a = app.db.client("resource-a").await.unwrap().unwrap();
    a.introspect = true;
    app.db.update_client(&a).await.unwrap();
    app.state.service().clients_changed();
    let not_allowed = app.add_confidential("resource-b", &[], &[]).await;
    let (status, _, body) = introspect(basic("resource-a", &allowed), fourth.clone()).await;
    assert_eq!((status, &body["active"]), (StatusCode::OK, &json!(true)));
    for refused in [
        basic("resource-b", &not_allowed),
        basic("resource-a", &not_allowed),
    ] {
        let (status, challenge, _) = introspect(refused, fourth.clone()).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED);
        assert!(challenge.unwrap().starts_with("Basic"));
    }

    app.clock.advance(900);
    let (_, _, body) = introspect(good(), format!("token={third}")).await;
    assert_eq!(body["active"], false, "expired");
}
