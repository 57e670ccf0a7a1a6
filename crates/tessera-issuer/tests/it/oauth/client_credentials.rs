//! The client-credentials grant: a confidential client's token for itself,
//! its scope and audience from the registry, RFC 8707 `resource`, and the
//! authentication methods (HTTP Basic, `client_secret_post`).

use super::*;

impl App {
    /// Registers a confidential service client allowed `client_credentials`;
    /// returns its secret.
    async fn add_service(
        &self,
        id: &str,
        scopes: &[&str],
        default: &[&str],
        audiences: &[&str],
    ) -> String {
        let secret = tessera_issuer::clients::new_secret();
        let strings = |v: &[&str]| v.iter().map(|s| (*s).to_owned()).collect::<Vec<_>>();
        let client = tessera_issuer::clients::Client {
            kind: tessera_issuer::clients::ClientKind::Confidential,
            grant_types: strings(&["client_credentials"]),
            scopes: strings(scopes),
            default_scope: strings(default),
            audiences: strings(audiences),
            secret_sha256: tessera_issuer::clients::decode_hash(
                &tessera_issuer::clients::secret_hash_text(&secret),
            ),
            ..tessera_issuer::clients::login_client(id, T0 as i64)
        };
        tessera_issuer::clients::check(&client).unwrap();
        self.db.add_client(&client).await.unwrap();
        self.state.service().clients_changed();
        secret
    }
}

#[tokio::test]
async fn a_service_gets_a_token_for_itself_with_its_default_scope_and_audiences() {
    let app = app().await;
    let secret = app
        .add_service(
            "reports-job",
            &["reports:read", "reports:write"],
            &["reports:read"],
            &["reports-api", "audit-api"],
        )
        .await;
    let reply = app
        .form_as(
            "/token",
            "grant_type=client_credentials",
            &basic("reports-job", &secret),
        )
        .await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.text());
    assert_eq!(reply.header(header::CACHE_CONTROL), "no-store");
    assert_eq!(reply.body["token_type"], "Bearer");
    assert_eq!(reply.body["expires_in"], 900);
    assert_eq!(reply.body["scope"], "reports:read");
    assert!(reply.body.get("refresh_token").is_none(), "{}", reply.body);
    let c = claims(reply.body["access_token"].as_str().unwrap());
    assert_eq!(c["sub"], "reports-job");
    assert_eq!(c["client_id"], "reports-job");
    assert_eq!(c["aud"], json!(["reports-api", "audit-api"]));
    assert_eq!(c["iss"], "https://auth.example.test");
    assert_eq!(c["exp"].as_i64().unwrap() - c["iat"].as_i64().unwrap(), 900);
    for absent in ["sid", "roles", "preferred_username"] {
        assert!(c.get(absent).is_none(), "{absent} in {c}");
    }
    // client_secret_post works as well, and a scope within the client's.
    let post = app
        .form(
            "/token",
            &format!("grant_type=client_credentials&client_id=reports-job&client_secret={secret}&scope=reports:write+reports:read"),
        )
        .await;
    assert_eq!(post.status, StatusCode::OK, "{}", post.text());
    assert_eq!(post.body["scope"], "reports:write reports:read");
}

#[tokio::test]
async fn scope_and_resource_are_checked_against_the_registry() {
    let app = app().await;
    let secret = app
        .add_service(
            "reports-job",
            &["reports:read"],
            &["reports:read"],
            &["reports-api", "audit-api"],
        )
        .await;
    let auth = basic("reports-job", &secret);
    let ask = |form: &'static str| app.form_as("/token", form, &auth);
    // RFC 8707: resource narrows aud to the ones asked for, each the client's.
    let narrowed = ask("grant_type=client_credentials&resource=audit-api").await;
    assert_eq!(narrowed.status, StatusCode::OK, "{}", narrowed.text());
    assert_eq!(
        claims(narrowed.body["access_token"].as_str().unwrap())["aud"],
        "audit-api"
    );
    let both = ask(
        "grant_type=client_credentials&resource=audit-api&resource=reports-api&resource=audit-api",
    )
    .await;
    assert_eq!(
        claims(both.body["access_token"].as_str().unwrap())["aud"],
        json!(["audit-api", "reports-api"])
    );
    let foreign = ask("grant_type=client_credentials&resource=billing-api").await;
    assert_eq!(foreign.status, StatusCode::BAD_REQUEST);
    assert_eq!(foreign.body["error"], "invalid_target");
    let wider = ask("grant_type=client_credentials&scope=reports:read+admin").await;
    assert_eq!(wider.status, StatusCode::BAD_REQUEST);
    assert_eq!(wider.body["error"], "invalid_scope");
    // Other parameters still appear once at most.
    let twice = ask("grant_type=client_credentials&scope=reports:read&scope=reports:read").await;
    assert_eq!(twice.body["error"], "invalid_request");
}

#[tokio::test]
async fn only_an_authenticated_client_allowed_the_grant_gets_a_token() {
    let app = app().await;
    let secret = app
        .add_service("reports-job", &["reports:read"], &["reports:read"], &[])
        .await;
    // A wrong secret: 401 with a Basic challenge.
    let wrong = app
        .form_as(
            "/token",
            "grant_type=client_credentials",
            &basic("reports-job", "not-the-secret"),
        )
        .await;
    assert_eq!(wrong.status, StatusCode::UNAUTHORIZED);
    assert_eq!(wrong.body["error"], "invalid_client");
    assert!(wrong.challenge().unwrap().starts_with("Basic"));
    // No secret at all: a confidential client must authenticate.
    let bare = app
        .form(
            "/token",
            "grant_type=client_credentials&client_id=reports-job",
        )
        .await;
    assert_eq!(bare.status, StatusCode::BAD_REQUEST);
    assert_eq!(bare.body["error"], "invalid_client");
    // The public login client may not: it proves nothing.
    let public = app
        .form(
            "/token",
            "grant_type=client_credentials&client_id=tessera-web",
        )
        .await;
    assert_eq!(public.status, StatusCode::BAD_REQUEST);
    assert_eq!(public.body["error"], "unauthorized_client");
    // A confidential client without the grant may not either.
    let other = app
        .add_confidential("orders", &["profile"], &["profile"])
        .await;
    let not_allowed = app
        .form_as(
            "/token",
            "grant_type=client_credentials",
            &basic("orders", &other),
        )
        .await;
    assert_eq!(not_allowed.status, StatusCode::BAD_REQUEST);
    assert_eq!(not_allowed.body["error"], "unauthorized_client");
    // No client at all.
    let anonymous = app.form("/token", "grant_type=client_credentials").await;
    assert_eq!(anonymous.body["error"], "invalid_client");
    // The default audience is the issuer's configured one.
    let ok = app
        .form_as(
            "/token",
            "grant_type=client_credentials",
            &basic("reports-job", &secret),
        )
        .await;
    assert_eq!(
        claims(ok.body["access_token"].as_str().unwrap())["aud"],
        "api"
    );
    // The registry refuses a public client with the grant.
    let public_service = tessera_issuer::clients::Client {
        grant_types: vec!["client_credentials".to_owned()],
        ..tessera_issuer::clients::login_client("svc", 0)
    };
    assert!(tessera_issuer::clients::check(&public_service).is_err());
}

#[tokio::test]
async fn discovery_lists_the_grant() {
    let app = app().await;
    let meta = app.discovery().await;
    let grants = meta.body["grant_types_supported"].as_array().unwrap();
    assert!(grants.contains(&json!("client_credentials")), "{grants:?}");
}
