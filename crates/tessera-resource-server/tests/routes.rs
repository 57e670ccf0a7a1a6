//! The demo resource server: routes through `oneshot`, and the real binary on
//! port 0 against a local issuer stand-in (metadata + JWKS from a real keyring).

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::sync::Arc;

use axum::http::StatusCode;
use serde_json::{Value, json};
use tessera_keyring::{DEFAULT_BITS, KeyDir, Keyring};
use tessera_testkit::jwks::JwksServer;
use tessera_testkit::oneshot;
use tessera_testkit::prometheus::{promtool_accepts, sample};
use tessera_verifier::{JwksSource, KeySet, ManualClock, Verifier, VerifierConfig};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

const NOW: i64 = 1_767_225_600;

struct Issuer {
    _tmp: tempfile::TempDir,
    keyring: Keyring,
}

impl Issuer {
    fn new() -> Self {
        Self::signing_with(tessera_keyring::Algorithm::Rs256)
    }

    /// An issuer stand-in whose keys are of `alg`.
    fn signing_with(alg: tessera_keyring::Algorithm) -> Self {
        let tmp = tempfile::tempdir().unwrap();
        let dir = KeyDir::new(tmp.path().join("keys"));
        dir.init(tessera_keyring::KeySpec::new(alg, DEFAULT_BITS))
            .unwrap();
        let keyring = dir.load().unwrap();
        Self { _tmp: tmp, keyring }
    }

    fn jwks(&self) -> Value {
        serde_json::to_value(self.keyring.jwks()).unwrap()
    }

    fn token(&self, iss: &str, roles: &[&str], exp: i64) -> String {
        let claims = json!({
            "iss": iss, "sub": "u-42", "aud": "tessera", "exp": exp, "iat": exp - 900,
            "nbf": exp - 900, "jti": "j", "client_id": "tessera", "sid": "s", "scope": "profile",
            "roles": roles, "preferred_username": "alice",
        });
        self.keyring
            .signer()
            .sign_jwt("at+jwt", &serde_json::to_vec(&claims).unwrap())
            .unwrap()
    }
}

impl Issuer {
    /// A service's token for itself, as client credentials give it.
    fn service_token(&self, scope: &str) -> String {
        let claims = json!({
            "iss": "http://issuer.test", "sub": "reports-job", "aud": "tessera", "exp": NOW + 900,
            "iat": NOW, "nbf": NOW, "jti": "j2", "client_id": "reports-job", "scope": scope,
        });
        self.keyring
            .signer()
            .sign_jwt("at+jwt", &serde_json::to_vec(&claims).unwrap())
            .unwrap()
    }
}

#[tokio::test]
async fn reports_need_the_scope_and_me_optional_works_either_way() {
    let issuer = Issuer::new();
    let v = verifier(&issuer);
    let service = issuer.service_token("reports:read");
    let (status, body, _) = get(&v, "/reports", Some(&service)).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body["for"], "reports-job");
    let user = issuer.token("http://issuer.test", &["admin"], NOW + 900);
    let (status, _, challenge) = get(&v, "/reports", Some(&user)).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    assert!(challenge.unwrap().contains("scope=\"reports:read\""));
    let (status, body, _) = get(&v, "/me/optional", None).await;
    assert_eq!(
        (status, body),
        (StatusCode::OK, json!({"signed_in": false}))
    );
    let (_, body, _) = get(&v, "/me/optional", Some(&user)).await;
    assert_eq!(body["preferred_username"], "alice");
    assert_eq!(body["user"], true);
    let (_, body, _) = get(&v, "/me/optional", Some(&service)).await;
    assert_eq!(
        (body["sub"].clone(), body["user"].clone()),
        (json!("reports-job"), json!(false))
    );
    let expired = issuer.token("http://issuer.test", &["user"], NOW - 3600);
    let (status, _, _) = get(&v, "/me/optional", Some(&expired)).await;
    assert_eq!(
        status,
        StatusCode::UNAUTHORIZED,
        "a bad token is never anonymous"
    );
}

fn verifier(issuer: &Issuer) -> Verifier {
    let (set, _) =
        KeySet::from_jwks_json(issuer.jwks().to_string().as_bytes(), &["RS256"]).unwrap();
    let config =
        VerifierConfig::new("http://issuer.test", ["tessera"]).with_jwks(JwksSource::Static(set));
    Verifier::start(config, Arc::new(ManualClock::new(NOW))).unwrap()
}

async fn get(
    verifier: &Verifier,
    path: &str,
    token: Option<&str>,
) -> (StatusCode, Value, Option<String>) {
    let bearer = token.map(|t| format!("Bearer {t}"));
    let headers: Vec<_> = bearer
        .iter()
        .map(|b| ("authorization", b.as_str()))
        .collect();
    let reply = oneshot::get(
        tessera_resource_server::app(verifier.clone()),
        path,
        &headers,
    )
    .await;
    let challenge = reply.challenge().map(str::to_owned);
    (reply.status, reply.body, challenge)
}

#[tokio::test]
async fn profile_returns_the_callers_claims() {
    let issuer = Issuer::new();
    let v = verifier(&issuer);
    let t = issuer.token("http://issuer.test", &["user"], NOW + 900);
    let (status, body, _) = get(&v, "/profile", Some(&t)).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        body,
        json!({"sub": "u-42", "preferred_username": "alice", "roles": ["user"], "scope": "profile", "exp": NOW + 900})
    );
}

#[tokio::test]
async fn admin_needs_the_admin_role() {
    let issuer = Issuer::new();
    let v = verifier(&issuer);
    let user = issuer.token("http://issuer.test", &["user"], NOW + 900);
    let admin = issuer.token("http://issuer.test", &["admin"], NOW + 900);
    let (status, body, challenge) = get(&v, "/admin", Some(&user)).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    assert_eq!(body["error"], "insufficient_scope");
    assert!(challenge.unwrap().contains("insufficient_scope"));
    let (status, body, _) = get(&v, "/admin", Some(&admin)).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body["sub"], "u-42");
}

#[tokio::test]
async fn bad_or_missing_tokens_are_401_and_health_is_open() {
    let issuer = Issuer::new();
    let v = verifier(&issuer);
    let (status, _, challenge) = get(&v, "/profile", None).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert_eq!(challenge.as_deref(), Some("Bearer realm=\"tessera\""));
    let wrong_iss = issuer.token("http://elsewhere.test", &["admin"], NOW + 900);
    let (status, body, challenge) = get(&v, "/admin", Some(&wrong_iss)).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert_eq!(body["error"], "invalid_token");
    assert!(challenge.unwrap().contains("wrong issuer"));
    let expired = issuer.token("http://issuer.test", &["user"], NOW - 3600);
    assert_eq!(
        get(&v, "/profile", Some(&expired)).await.0,
        StatusCode::UNAUTHORIZED
    );
    let (status, body, _) = get(&v, "/healthz", None).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body["keys"]["usable"], true);
    assert_eq!(get(&v, "/readyz", None).await.0, StatusCode::OK);
    // Metrics answer loopback clients only: a request whose peer is not
    // known to be one gets a 404 (the binary's test below reads them).
    assert_eq!(get(&v, "/metrics", None).await.0, StatusCode::NOT_FOUND);
    assert_eq!(
        get(&v, "/metrics.json", None).await.0,
        StatusCode::NOT_FOUND
    );
    assert_eq!(get(&v, "/nope", None).await.0, StatusCode::NOT_FOUND);
}

/// A verifier that also reads the `tessera_access` cookie, with unsafe
/// methods allowed from the app's origin.
fn cookie_verifier(issuer: &Issuer) -> Verifier {
    let (set, _) =
        KeySet::from_jwks_json(issuer.jwks().to_string().as_bytes(), &["RS256"]).unwrap();
    let mut config =
        VerifierConfig::new("http://issuer.test", ["tessera"]).with_jwks(JwksSource::Static(set));
    config.cookie = Some(tessera_verifier::CookieSource::new(
        "tessera_access",
        ["http://app.test"],
    ));
    Verifier::start(config, Arc::new(ManualClock::new(NOW))).unwrap()
}

async fn send(
    app: &axum::Router,
    request: axum::http::request::Builder,
    body: &str,
) -> oneshot::Reply {
    let request = request
        .body(axum::body::Body::from(body.to_owned()))
        .unwrap();
    oneshot::send(app.clone(), request).await
}

#[tokio::test]
async fn welcome_and_notes_take_the_cookie_and_notes_need_the_apps_origin() {
    let issuer = Issuer::new();
    let v = tessera_resource_server::app(cookie_verifier(&issuer));
    let t = issuer.token("http://issuer.test", &["user"], NOW + 900);
    let cookie = format!("tessera_access={t}");
    let get = |path: &str| axum::http::Request::get(path.to_owned());
    let welcome = send(&v, get("/welcome").header("cookie", &cookie), "").await;
    assert_eq!(welcome.status, StatusCode::OK);
    assert_eq!(welcome.text(), "Welcome alice!");
    // Every protected route takes the cookie.
    let profile = send(&v, get("/profile").header("cookie", &cookie), "").await;
    assert_eq!(profile.body["preferred_username"], "alice");
    let none = send(&v, get("/welcome"), "").await;
    assert_eq!(none.status, StatusCode::UNAUTHORIZED);
    // Cookie and header together: 400.
    let both = send(
        &v,
        get("/welcome")
            .header("cookie", &cookie)
            .header("authorization", format!("Bearer {t}")),
        "",
    )
    .await;
    assert_eq!(both.status, StatusCode::BAD_REQUEST);

    let note = |origin: &str| {
        axum::http::Request::post("/notes")
            .header("cookie", cookie.clone())
            .header("origin", origin.to_owned())
            .header("content-type", "application/json")
    };
    let saved = send(&v, note("http://app.test"), r#"{"text":"first"}"#).await;
    assert_eq!(saved.status, StatusCode::CREATED, "{}", saved.text());
    assert_eq!(
        saved.body,
        json!({"by": "alice", "text": "first", "notes": 1})
    );
    let forged = send(&v, note("https://evil.example"), r#"{"text":"forged"}"#).await;
    assert_eq!(forged.status, StatusCode::FORBIDDEN);
    assert_eq!(forged.body["error"], "invalid_origin");
    let saved = send(&v, note("http://app.test"), r#"{"text":"second"}"#).await;
    assert_eq!(saved.body["notes"], 2, "the forged note was not kept");
    let long = send(
        &v,
        note("http://app.test"),
        &json!({"text": "x".repeat(281)}).to_string(),
    )
    .await;
    assert_eq!(long.status, StatusCode::BAD_REQUEST);
}

#[tokio::test]
async fn the_app_page_is_served_with_a_strict_content_security_policy() {
    let issuer = Issuer::new();
    let v = tessera_resource_server::app(cookie_verifier(&issuer));
    let page = send(&v, axum::http::Request::get("/app"), "").await;
    assert_eq!(page.status, StatusCode::OK);
    assert!(
        page.header(axum::http::header::CONTENT_TYPE)
            .starts_with("text/html")
    );
    assert!(page.text().contains("<script src=\"/app/app.js\""));
    let csp = page
        .header(axum::http::header::CONTENT_SECURITY_POLICY)
        .to_owned();
    for part in [
        "default-src 'none'",
        "script-src 'self'",
        "connect-src 'self' http://issuer.test",
        "frame-ancestors 'none'",
    ] {
        assert!(csp.contains(part), "{csp}");
    }
    let config = send(&v, axum::http::Request::get("/app/config.json"), "").await;
    assert_eq!(
        config.body,
        json!({"issuer": "http://issuer.test", "client_id": "tessera-demo-spa"})
    );
    let spa = send(&v, axum::http::Request::get("/spa"), "").await;
    assert!(spa.text().contains("<script src=\"/spa/spa.js\""));
    assert_eq!(
        spa.header(axum::http::header::CONTENT_SECURITY_POLICY),
        csp,
        "the same policy: scripts from here, fetches to here and the issuer"
    );
    for (path, kind) in [
        ("/app/app.js", "text/javascript"),
        ("/app/app.css", "text/css"),
        ("/spa/spa.js", "text/javascript"),
    ] {
        let asset = send(&v, axum::http::Request::get(path), "").await;
        assert_eq!(asset.status, StatusCode::OK, "{path}");
        assert!(
            asset
                .header(axum::http::header::CONTENT_TYPE)
                .starts_with(kind),
            "{path}"
        );
    }
}

#[tokio::test]
async fn the_binary_serves_on_port_0_and_stops_cleanly_on_sigterm() {
    let issuer = Issuer::new();
    let server = JwksServer::start(issuer.jwks()).await;
    let base = server.url();
    let (child, addr) = start_binary(
        &base,
        // Headers may take a minute: only the grace can end the stalled
        // request below.
        &["--header-read-timeout", "60", "--shutdown-grace", "1"],
        std::process::Stdio::piped(),
    )
    .await;
    // Ready once the keys are fetched; then a real token works end to end.
    assert!(wait_ready(&addr).await, "never ready");
    let t = issuer.token(&base, &["admin"], now() + 900);
    let (status, body) = http_get(&addr, "/profile", Some(&t)).await;
    assert_eq!(status, 200, "{body}");
    assert!(body.contains("\"sub\":\"u-42\""), "{body}");
    assert_eq!(http_get(&addr, "/admin", Some(&t)).await.0, 200);
    assert_eq!(http_get(&addr, "/admin", None).await.0, 401);
    let bound = std::time::Duration::from_secs(10);
    // SIGTERM with a request left half-sent: a clean exit within the
    // one-second grace, and the token never reached the log.
    let mut stalled = tokio::net::TcpStream::connect(&addr).await.unwrap();
    stalled
        .write_all(b"GET /profile HTTP/1.1\r\n")
        .await
        .unwrap();
    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    assert!(
        std::process::Command::new("kill")
            .args(["-TERM", &child.id().to_string()])
            .status()
            .unwrap()
            .success()
    );
    let out = tokio::time::timeout(
        bound,
        tokio::task::spawn_blocking(move || child.wait_with_output()),
    )
    .await
    .expect("exited within its grace")
    .unwrap()
    .unwrap();
    assert!(out.status.success(), "{out:?}");
    let log = String::from_utf8_lossy(&out.stderr);
    assert!(log.contains("shut down cleanly"), "{log}");
    drop(stalled);
    assert!(!log.contains(&t[..40]), "a token reached the log");
}

/// The binary follows the issuer's revocation feed by default. Told to fail
/// closed, it refuses every token (503) and is not ready while the feed has
/// never answered (this stand-in issuer has none); told not to follow it,
/// it reports no feed at all.
#[tokio::test]
async fn the_binary_follows_the_feed_and_fails_closed_when_told() {
    let issuer = Issuer::new();
    let server = JwksServer::start(issuer.jwks()).await;
    let base = server.url();
    let start =
        |extra: &'static [&'static str]| start_binary(&base, extra, std::process::Stdio::null());
    let t = issuer.token(&base, &["admin"], now() + 900);

    let (mut closed, addr) =
        start(&["--revocation-fail-closed", "--revocation-poll-ms", "100"]).await;
    // Keys load (healthz says so), the feed never answers: not ready, and
    // every token is refused as unavailable, not as invalid.
    let mut keys_loaded = false;
    for _ in 0..100 {
        let (_, body) = http_get(&addr, "/healthz", None).await;
        if body.contains("\"usable\":true") {
            keys_loaded = true;
            assert!(body.contains("\"failing_closed\":true"), "{body}");
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    assert!(keys_loaded, "keys never loaded");
    assert_eq!(http_get(&addr, "/readyz", None).await.0, 503);
    assert_eq!(http_get(&addr, "/profile", Some(&t)).await.0, 503);
    closed.kill().unwrap();
    closed.wait().unwrap();

    let (mut off, addr) = start(&["--no-revocation-feed", "--header-read-timeout", "1"]).await;
    assert!(wait_ready(&addr).await, "never ready");
    // Headers that never end: the connection is closed after a second,
    // unanswered.
    let mut stalled = tokio::net::TcpStream::connect(&addr).await.unwrap();
    stalled
        .write_all(b"GET /profile HTTP/1.1\r\nhost: t\r\n")
        .await
        .unwrap();
    let mut seen = Vec::new();
    let bound = std::time::Duration::from_secs(10);
    let closed = tokio::time::timeout(bound, stalled.read_to_end(&mut seen)).await;
    assert!(closed.is_ok(), "a half-sent request held its connection");
    assert!(!String::from_utf8_lossy(&seen).contains(" 200 "));
    assert_eq!(http_get(&addr, "/profile", Some(&t)).await.0, 200);
    let (_, body) = http_get(&addr, "/healthz", None).await;
    assert!(body.contains("\"revocations\":null"), "{body}");
    off.kill().unwrap();
    off.wait().unwrap();
}

#[tokio::test]
async fn the_binary_accepts_the_algorithms_it_is_told_and_only_those() {
    let issuer = Issuer::signing_with(tessera_keyring::Algorithm::EdDsa);
    let server = JwksServer::start(issuer.jwks()).await;
    let base = server.url();
    let token = issuer.token(&base, &["user"], now() + 900);
    // By flag, and by the environment (comma-separated): the EdDSA key is
    // usable, the token accepted.
    let (mut by_flag, addr) = start_binary(
        &base,
        &["--algorithm", "RS256", "--algorithm", "EdDSA"],
        std::process::Stdio::null(),
    )
    .await;
    assert!(wait_ready(&addr).await, "never ready");
    assert_eq!(http_get(&addr, "/profile", Some(&token)).await.0, 200);
    by_flag.kill().unwrap();
    by_flag.wait().unwrap();
    let (mut by_env, addr) = start_binary_with(
        &base,
        &[],
        &[("TESSERA_RS_ALGORITHMS", "RS256,EdDSA")],
        std::process::Stdio::null(),
    )
    .await;
    assert!(
        wait_ready(&addr).await,
        "never ready with the environment's list"
    );
    assert_eq!(http_get(&addr, "/profile", Some(&token)).await.0, 200);
    by_env.kill().unwrap();
    by_env.wait().unwrap();
    // The default, RS256 only: the JWKS has no usable key, so the server
    // never gets ready and refuses the token.
    let (mut default, addr) = start_binary(&base, &[], std::process::Stdio::null()).await;
    assert_ne!(http_get(&addr, "/profile", Some(&token)).await.0, 200);
    default.kill().unwrap();
    default.wait().unwrap();
    // A name it does not know stops it at start, naming the setting.
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_tessera-resource-server"))
        .args(["--issuer", &base, "--listen", "127.0.0.1:0"])
        .env("TESSERA_RS_ALGORITHMS", "RS256,HS256")
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("algorithms") && stderr.contains("HS256"),
        "{stderr}"
    );
}

/// The verifier's metrics, scraped from the real binary over HTTP after a
/// scripted flow: each counter moved as the flow says, and promtool accepts
/// the exposition. With `--metrics-listen`, they move to that listener and the
/// main one no longer answers them.
#[tokio::test]
async fn the_binary_exports_prometheus_metrics_that_follow_what_happened() {
    let issuer = Issuer::new();
    let server = JwksServer::start(issuer.jwks()).await;
    let base = server.url();
    let (mut child, addr) = start_binary(&base, &[], std::process::Stdio::null()).await;
    assert!(wait_ready(&addr).await, "never ready");
    let good = issuer.token(&base, &["user"], now() + 900);
    let expired = issuer.token(&base, &["user"], now() - 600);
    assert_eq!(http_get(&addr, "/profile", Some(&good)).await.0, 200);
    assert_eq!(http_get(&addr, "/profile", Some(&good)).await.0, 200);
    assert_eq!(http_get(&addr, "/profile", Some(&expired)).await.0, 401);
    assert_eq!(
        http_get(&addr, "/profile", Some("not.a.token")).await.0,
        401
    );
    let (status, text) = http_get(&addr, "/metrics", None).await;
    assert_eq!(status, 200, "{text}");
    let value = |series: &str| tessera_testkit::prometheus::value(&text, series);
    assert_eq!(value("tessera_verifier_verified_total"), 2.0);
    // The second /profile was the cache's.
    assert_eq!(value("tessera_verifier_token_cache_hits_total"), 1.0);
    assert_eq!(
        value("tessera_verifier_refused_total{reason=\"expired\"}"),
        1.0
    );
    assert_eq!(
        value("tessera_verifier_refused_total{reason=\"malformed\"}"),
        1.0
    );
    assert_eq!(
        value("tessera_verifier_refused_total{reason=\"bad_signature\"}"),
        0.0
    );
    // The keyring publishes its active key and the pending next one.
    assert_eq!(value("tessera_verifier_keys"), 2.0);
    assert_eq!(value("tessera_verifier_keys_usable"), 1.0);
    assert!(value("tessera_verifier_jwks_fetches_total") >= 1.0);
    assert!(value("tessera_verifier_jwks_age_seconds") >= 0.0);
    // This stand-in issuer has no feed: every poll failed, the list is empty.
    assert!(value("tessera_verifier_revocation_poll_errors_total") >= 1.0);
    assert_eq!(value("tessera_verifier_revocation_entries"), 0.0);
    assert!(text.contains("tessera_build_info{version=\""), "{text}");
    assert!(!text.contains(&good[..40]), "a token in the metrics");
    promtool_accepts(&text);
    let (status, json) = http_get(&addr, "/metrics.json", None).await;
    assert_eq!(status, 200);
    assert!(json.contains("\"verified\":2"), "{json}");
    child.kill().unwrap();
    child.wait().unwrap();

    // A listener of its own: the metrics are there, not on the main one.
    use std::io::BufRead as _;
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_tessera-resource-server"))
        .args(["--issuer", &base, "--listen", "127.0.0.1:0"])
        .args(["--metrics-listen", "127.0.0.1:0"])
        .env_remove("TESSERA_RS_AUDIENCE")
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let lines = tokio::task::spawn_blocking(move || {
        let mut reader = std::io::BufReader::new(stdout);
        let mut lines = [String::new(), String::new()];
        for line in &mut lines {
            reader.read_line(line).unwrap();
        }
        lines
    })
    .await
    .unwrap();
    let main = lines[0]
        .trim()
        .strip_prefix("tessera-resource-server listening on http://")
        .unwrap_or_else(|| panic!("{lines:?}"));
    let metrics = lines[1]
        .trim()
        .strip_prefix("tessera-resource-server metrics on http://")
        .and_then(|l| l.strip_suffix("/metrics"))
        .unwrap_or_else(|| panic!("{lines:?}"));
    assert!(wait_ready(main).await, "never ready");
    assert_eq!(http_get(main, "/profile", Some(&good)).await.0, 200);
    assert_eq!(http_get(main, "/metrics", None).await.0, 404);
    let (status, text) = http_get(metrics, "/metrics", None).await;
    assert_eq!(status, 200);
    assert_eq!(sample(&text, "tessera_verifier_verified_total"), Some(1.0));
    assert_eq!(http_get(metrics, "/profile", Some(&good)).await.0, 404);
    child.kill().unwrap();
    child.wait().unwrap();
}

/// Starts the binary against `base` on a free port with `extra` flags; returns
/// the process and the address it printed.
async fn start_binary(
    base: &str,
    extra: &[&str],
    stderr: std::process::Stdio,
) -> (std::process::Child, String) {
    start_binary_with(base, extra, &[], stderr).await
}

/// [`start_binary`] with `envs` set in its environment.
async fn start_binary_with(
    base: &str,
    extra: &[&str],
    envs: &[(&str, &str)],
    stderr: std::process::Stdio,
) -> (std::process::Child, String) {
    use std::io::BufRead as _;
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_tessera-resource-server"))
        .args(["--issuer", base, "--listen", "127.0.0.1:0"])
        .args(extra)
        .env_remove("TESSERA_RS_AUDIENCE")
        .envs(envs.iter().copied())
        .stdout(std::process::Stdio::piped())
        .stderr(stderr)
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    // Read off the runtime: the stand-in issuer must keep answering meanwhile.
    let line = tokio::task::spawn_blocking(move || {
        let mut line = String::new();
        std::io::BufReader::new(stdout)
            .read_line(&mut line)
            .unwrap();
        line
    })
    .await
    .unwrap();
    let addr = line
        .trim()
        .strip_prefix("tessera-resource-server listening on http://")
        .unwrap_or_else(|| panic!("unexpected first line {line:?}"))
        .to_owned();
    (child, addr)
}

/// Whether `/readyz` answers 200 within 5 s.
async fn wait_ready(addr: &str) -> bool {
    for _ in 0..100 {
        if http_get(addr, "/readyz", None).await.0 == 200 {
            return true;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    false
}

/// Seconds since the epoch: a real process verifies with the real clock.
fn now() -> i64 {
    #[allow(clippy::disallowed_methods)]
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    now
}

/// A one-shot HTTP/1.1 GET over a fresh connection: (status, body).
async fn http_get(addr: &str, path: &str, token: Option<&str>) -> (u16, String) {
    let Ok(mut s) = tokio::net::TcpStream::connect(addr).await else {
        return (0, String::new());
    };
    let auth = token
        .map(|t| format!("Authorization: Bearer {t}\r\n"))
        .unwrap_or_default();
    let request = format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\n{auth}Connection: close\r\n\r\n");
    s.write_all(request.as_bytes()).await.unwrap();
    let mut response = String::new();
    s.read_to_string(&mut response).await.unwrap();
    let status = response
        .get(9..12)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let body = response
        .split_once("\r\n\r\n")
        .map(|x| x.1.to_owned())
        .unwrap_or_default();
    (status, body)
}
