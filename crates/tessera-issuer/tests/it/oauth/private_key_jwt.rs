//! `private_key_jwt` (RFC 7523 §2.2): a service proves itself with a JWT
//! signed by a key registered for it. Replayed, expired, wrong-audience and
//! unregistered-key assertions are refused; failures are audited and
//! throttled; a rotated secret keeps working for its grace.

use super::*;
use tessera_keyring::Signer;

const ISSUER: &str = "https://auth.example.test";
const ASSERTION_TYPE: &str = "urn%3Aietf%3Aparams%3Aoauth%3Aclient-assertion-type%3Ajwt-bearer";

/// A key pair a client holds (its own keyring, nothing of the issuer's).
struct ClientKey {
    _dir: tempfile::TempDir,
    keyring: tessera_keyring::Keyring,
}

impl ClientKey {
    fn new() -> Self {
        Self::of(tessera_keyring::Algorithm::Rs256)
    }

    /// A key of `alg` (RS256, ES256, EdDSA).
    fn of(alg: tessera_keyring::Algorithm) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let keys = KeyDir::new(dir.path().join("k"));
        keys.init(tessera_keyring::KeySpec::new(alg, DEFAULT_BITS))
            .unwrap();
        let keyring = keys.load().unwrap();
        Self { _dir: dir, keyring }
    }

    fn signer(&self) -> &Signer {
        self.keyring.signer()
    }

    fn jwks(&self) -> String {
        json!({"keys": [self.signer().jwk()]}).to_string()
    }

    /// A compact JWS of `claims` under `header`, signed by this key.
    fn sign(&self, header: &Value, claims: &Value) -> String {
        let input = format!(
            "{}.{}",
            URL_SAFE_NO_PAD.encode(header.to_string()),
            URL_SAFE_NO_PAD.encode(claims.to_string())
        );
        let signature = self.signer().sign(input.as_bytes()).unwrap();
        format!("{input}.{}", URL_SAFE_NO_PAD.encode(signature))
    }

    /// A good assertion for `client` at `now` (Unix seconds).
    fn assertion(&self, client: &str, now: i64) -> String {
        self.sign(&self.header(), &claims_for(client, now))
    }

    fn header(&self) -> Value {
        json!({"alg": self.signer().alg().name(), "kid": self.signer().kid(), "typ": "JWT"})
    }
}

fn claims_for(client: &str, now: i64) -> Value {
    json!({
        "iss": client, "sub": client, "aud": format!("{ISSUER}/token"),
        "iat": now, "exp": now + 60, "jti": random_token(12),
    })
}

impl App {
    /// Registers a service client that authenticates with `key` only.
    async fn add_keyed_service(&self, id: &str, key: &ClientKey) {
        let client = tessera_issuer::clients::Client {
            kind: tessera_issuer::clients::ClientKind::Confidential,
            grant_types: vec!["client_credentials".to_owned()],
            scopes: vec!["reports:read".to_owned()],
            default_scope: vec!["reports:read".to_owned()],
            jwks: Some(key.jwks()),
            ..tessera_issuer::clients::login_client(id, T0 as i64)
        };
        tessera_issuer::clients::check(&client).unwrap();
        self.db.add_client(&client).await.unwrap();
        self.state.service().clients_changed();
    }

    async fn allow_client_credentials(&self, id: &str) {
        let mut client = self.db.client(id).await.unwrap().unwrap();
        client.grant_types.push("client_credentials".to_owned());
        self.db.update_client(&client).await.unwrap();
        self.state.service().clients_changed();
    }

    async fn with_assertion(&self, assertion: &str, extra: &str) -> Reply {
        self.form(
            "/token",
            &format!(
                "grant_type=client_credentials&client_assertion_type={ASSERTION_TYPE}&client_assertion={assertion}{extra}"
            ),
        )
        .await
    }

    fn now(&self) -> i64 {
        self.clock
            .now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .unwrap()
            .as_secs() as i64
    }

    async fn failures(&self) -> Vec<String> {
        let events = self.db.audit_events(0, None, 100).await.unwrap();
        events
            .iter()
            .filter(|e| e.event == "client_auth_failure")
            .map(|e| e.detail["reason"].as_str().unwrap_or("").to_owned())
            .collect()
    }
}

fn refused(reply: &Reply, what: &str) {
    assert_eq!(
        reply.status,
        StatusCode::UNAUTHORIZED,
        "{what}: {}",
        reply.body
    );
    assert_eq!(reply.body["error"], "invalid_client", "{what}");
    assert!(reply.body.get("access_token").is_none(), "{what}");
}

#[tokio::test]
async fn a_service_signs_in_with_its_registered_key() {
    let app = app().await;
    let key = ClientKey::new();
    app.add_keyed_service("reports-job", &key).await;

    // client_id optional: the assertion's iss names the client.
    for extra in ["", "&client_id=reports-job"] {
        let ok = app
            .with_assertion(&key.assertion("reports-job", app.now()), extra)
            .await;
        assert_eq!(ok.status, StatusCode::OK, "{extra}: {}", ok.body);
        let claims = claims(ok.body["access_token"].as_str().unwrap());
        assert_eq!(claims["sub"], "reports-job");
        assert_eq!(claims["client_id"], "reports-job");
        assert_eq!(claims["scope"], "reports:read");
    }
    // The issuer itself as the audience (RFC 7523 allows either), an
    // array, no typ, and the long typ of RFC 7523bis.
    let now = app.now();
    let mut claims = claims_for("reports-job", now);
    claims["aud"] = json!(["https://elsewhere.test", ISSUER]);
    let no_typ = json!({"alg": "RS256", "kid": key.signer().kid()});
    assert_eq!(
        app.with_assertion(&key.sign(&no_typ, &claims), "")
            .await
            .status,
        StatusCode::OK
    );
    let mut long_typ = key.header();
    long_typ["typ"] = json!("client-authentication+jwt");
    assert_eq!(
        app.with_assertion(&key.sign(&long_typ, &claims_for("reports-job", now)), "")
            .await
            .status,
        StatusCode::OK
    );
    // The discovery document says so.
    let meta = app.discovery().await;
    let methods = meta.body["token_endpoint_auth_methods_supported"].clone();
    assert!(
        methods
            .as_array()
            .unwrap()
            .contains(&json!("private_key_jwt"))
    );
    assert_eq!(
        meta.body["token_endpoint_auth_signing_alg_values_supported"],
        json!(["RS256", "ES256", "EdDSA"])
    );
}

#[tokio::test]
async fn es256_and_eddsa_client_keys_sign_assertions_for_their_own_algorithm_only() {
    use tessera_keyring::Algorithm;
    let app = app().await;
    for (id, alg) in [("es-job", Algorithm::Es256), ("ed-job", Algorithm::EdDsa)] {
        let key = ClientKey::of(alg);
        app.add_keyed_service(id, &key).await;
        let ok = app.with_assertion(&key.assertion(id, app.now()), "").await;
        assert_eq!(ok.status, StatusCode::OK, "{alg}: {}", ok.body);
        assert_eq!(claims(ok.body["access_token"].as_str().unwrap())["sub"], id);
        // The same key's signature under a header naming another algorithm.
        let other = if alg == Algorithm::Es256 {
            "EdDSA"
        } else {
            "ES256"
        };
        for claimed in [other, "RS256"] {
            let mut header = key.header();
            header["alg"] = json!(claimed);
            refused(
                &app.with_assertion(&key.sign(&header, &claims_for(id, app.now())), "")
                    .await,
                claimed,
            );
        }
    }
}

#[tokio::test]
async fn replayed_expired_misaddressed_and_foreign_assertions_are_refused() {
    let app = app().await;
    let key = ClientKey::new();
    app.add_keyed_service("reports-job", &key).await;
    let now = app.now();
    const HOUR: u64 = 3601;

    // Replayed: the first use wins, the second is refused.
    let once = key.assertion("reports-job", now);
    assert_eq!(app.with_assertion(&once, "").await.status, StatusCode::OK);
    refused(&app.with_assertion(&once, "").await, "replayed");

    app.clock.advance(HOUR);

    app.add_confidential("backoffice", &["orders:read"], &[])
        .await;
    let stranger = ClientKey::new();
    type Make<'k> = Box<dyn Fn(i64) -> String + 'k>;
    let key = &key;
    let with = |change: fn(&mut Value, i64)| -> Make<'_> {
        Box::new(move |now| {
            let mut claims = claims_for("reports-job", now);
            change(&mut claims, now);
            key.sign(&key.header(), &claims)
        })
    };
    let cases: Vec<(&str, Make<'_>, &str)> = vec![
        // Past the 60 s leeway, and one that claims to last two hours.
        ("expired", with(|c, now| c["exp"] = json!(now - 61)), ""),
        (
            "two hours long",
            with(|c, now| c["exp"] = json!(now + 7200)),
            "",
        ),
        // Meant for another server.
        (
            "wrong aud",
            with(|c, _| c["aud"] = json!("https://other.test/token")),
            "",
        ),
        (
            "sub is not the client",
            with(|c, _| c["sub"] = json!("admin")),
            "",
        ),
        // Signed by a key nobody registered: under its own kid, and under
        // the registered kid (so the signature, not the lookup, fails).
        (
            "unregistered key",
            Box::new(|now| stranger.assertion("reports-job", now)),
            "",
        ),
        (
            "forged under the registered kid",
            Box::new(|now| stranger.sign(&key.header(), &claims_for("reports-job", now))),
            "",
        ),
        (
            "an access token's typ",
            Box::new(|now| {
                let mut at = key.header();
                at["typ"] = json!("at+jwt");
                key.sign(&at, &claims_for("reports-job", now))
            }),
            "",
        ),
        (
            "alg none",
            Box::new(|now| {
                format!(
                    "{}.{}.",
                    URL_SAFE_NO_PAD.encode(r#"{"alg":"none"}"#),
                    URL_SAFE_NO_PAD.encode(claims_for("reports-job", now).to_string())
                )
            }),
            "",
        ),
        // client_id naming another client than the assertion's.
        (
            "client_id of another client",
            Box::new(|now| key.assertion("reports-job", now)),
            "&client_id=backoffice",
        ),
    ];
    for (what, make, extra) in &cases {
        refused(&app.with_assertion(&make(app.now()), extra).await, what);
        // A quiet hour: the throttle forgets the failures.
        app.clock.advance(HOUR);
    }

    // Each failure is in the audit log with its reason.
    let reasons = app.failures().await;
    for reason in [
        "replayed_assertion",
        "assertion_expired",
        "assertion_lifetime_too_long",
        "assertion_audience_mismatch",
        "assertion_key_not_registered",
        "assertion_signature_invalid",
        "assertion_subject_mismatch",
        "assertion_type_not_allowed",
        "assertion_algorithm_not_allowed",
        "method_not_registered",
    ] {
        assert!(
            reasons.iter().any(|r| r == reason),
            "{reason} in {reasons:?}"
        );
    }
}

#[tokio::test]
async fn an_assertion_is_accepted_once_across_instances() {
    let tmp = tempfile::tempdir().unwrap();
    let url = test_database_url(tmp.path()).unwrap();
    let a = app_on(tempfile::tempdir().unwrap(), &url, true).await;
    let b = app_on(tempfile::tempdir().unwrap(), &url, false).await;
    let key = ClientKey::new();
    a.add_keyed_service("reports-job", &key).await;
    b.state.service().clients_changed();
    let assertion = key.assertion("reports-job", a.now());
    let (first, second) = tokio::join!(
        a.with_assertion(&assertion, ""),
        b.with_assertion(&assertion, "")
    );
    let mut statuses = [first.status, second.status];
    statuses.sort();
    assert_eq!(
        statuses,
        [StatusCode::OK, StatusCode::UNAUTHORIZED],
        "one instance accepts it, the other sees a replay"
    );
    drop(tmp);
}

#[tokio::test]
async fn methods_are_per_client_and_failures_are_throttled() {
    let app = app().await;
    let key = ClientKey::new();
    app.add_keyed_service("reports-job", &key).await;
    let secret = app
        .add_confidential("backoffice", &["orders:read"], &[])
        .await;
    app.allow_client_credentials("backoffice").await;
    let grant = "grant_type=client_credentials";

    // A keys-only client has no secret to offer; a secret-only client no
    // keys to sign with.
    refused(
        &app.form_as("/token", grant, &basic("reports-job", &secret))
            .await,
        "a secret for a keys-only client",
    );
    refused(
        &app.with_assertion(&key.assertion("backoffice", app.now()), "")
            .await,
        "an assertion for a secret-only client",
    );
    // Both ways at once is a malformed request.
    let both = app
        .form_as(
            "/token",
            &format!(
                "{grant}&client_assertion_type={ASSERTION_TYPE}&client_assertion={}",
                key.assertion("reports-job", app.now())
            ),
            &basic("backoffice", &secret),
        )
        .await;
    assert_eq!(both.status, StatusCode::BAD_REQUEST, "{}", both.body);

    // A client with a wrong secret: its free failures, then a block that
    // holds even for the right secret, with Retry-After; over when it ends.
    // (One failure already: the assertion above, for backoffice.)
    let mut statuses = Vec::new();
    for _ in 0..5 {
        let wrong = app
            .form_as("/token", grant, &basic("backoffice", "wrong"))
            .await;
        statuses.push(wrong.status.as_u16());
    }
    assert!(statuses.iter().all(|s| *s == 401), "{statuses:?}");
    let blocked = app
        .form_as("/token", grant, &basic("backoffice", &secret))
        .await;
    assert_eq!(
        blocked.status,
        StatusCode::TOO_MANY_REQUESTS,
        "{}",
        blocked.body
    );
    assert!(blocked.headers.get(header::RETRY_AFTER).is_some());
    // Another client is not affected.
    assert_eq!(
        app.with_assertion(&key.assertion("reports-job", app.now()), "")
            .await
            .status,
        StatusCode::OK
    );
    app.clock.advance(2);
    let again = app
        .form_as("/token", grant, &basic("backoffice", &secret))
        .await;
    assert_eq!(again.status, StatusCode::OK, "{}", again.body);
    let failures = app.failures().await;
    assert_eq!(
        failures.iter().filter(|r| *r == "wrong_secret").count(),
        6,
        "five for backoffice, one for reports-job (a secret it does not hold): {failures:?}"
    );
}

#[tokio::test]
async fn a_rotated_secret_works_until_its_grace_ends() {
    let app = app().await;
    let old = app
        .add_confidential("backoffice", &["orders:read"], &[])
        .await;
    let mut client = app.db.client("backoffice").await.unwrap().unwrap();
    let new = tessera_issuer::clients::new_secret();
    client.previous_secret_sha256 = client.secret_sha256;
    client.previous_secret_until = Some(app.now() + 3600);
    client.secret_sha256 =
        tessera_issuer::clients::decode_hash(&tessera_issuer::clients::secret_hash_text(&new));
    client.grant_types.push("client_credentials".to_owned());
    app.db.update_client(&client).await.unwrap();
    app.state.service().clients_changed();
    let grant = "grant_type=client_credentials";
    for (secret, what) in [(&old, "old"), (&new, "new")] {
        let reply = app
            .form_as("/token", grant, &basic("backoffice", secret))
            .await;
        assert_eq!(reply.status, StatusCode::OK, "{what}: {}", reply.body);
    }
    app.clock.advance(3600);
    refused(
        &app.form_as("/token", grant, &basic("backoffice", &old))
            .await,
        "the old secret after its grace",
    );
    let reply = app
        .form_as("/token", grant, &basic("backoffice", &new))
        .await;
    assert_eq!(reply.status, StatusCode::OK);
}

#[tokio::test]
async fn a_flood_of_failures_from_one_address_stops_costing_writes() {
    let app = app().await;
    let secret = app
        .add_confidential("backoffice", &["orders:read"], &[])
        .await;
    app.allow_client_credentials("backoffice").await;
    let from = |id: String, secret: String| {
        let mut request = Request::post("/token")
            .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
            .header(header::AUTHORIZATION, basic(&id, &secret))
            .body(Body::from("grant_type=client_credentials"))
            .unwrap();
        let addr: std::net::SocketAddr = "192.0.2.9:40000".parse().unwrap();
        request
            .extensions_mut()
            .insert(axum::extract::ConnectInfo(addr));
        app.send(request)
    };
    // Random client ids: each a fresh client key, but one address. Its 20
    // free failures are counted and stored; then it is blocked.
    let mut statuses = Vec::new();
    for i in 0..30 {
        statuses.push(
            from(format!("nobody-{i}"), "x".repeat(40))
                .await
                .status
                .as_u16(),
        );
    }
    assert!(statuses[..21].iter().all(|s| *s == 401), "{statuses:?}");
    assert!(statuses[21..].iter().all(|s| *s == 429), "{statuses:?}");
    let stored = app.failures().await.len();
    assert_eq!(stored, 21, "blocked failures are not stored");
    // The right secret from that same address still gets in.
    let ok = from("backoffice".to_owned(), secret).await;
    assert_eq!(ok.status, StatusCode::OK, "{}", ok.body);
}
