//! The issuer's HTTP surface so far (JWKS, discovery, health) through `oneshot`,
//! the live keyring reload, and one real process on a real socket.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::io::{BufRead as _, BufReader, Read as _, Write as _};
use std::sync::Arc;
use std::time::Duration;

use axum::http::{StatusCode, header};
use tessera_issuer::http::{AppState, router};
use tessera_issuer::keys::KeyHandle;
use tessera_issuer::passwords::Hasher;
use tessera_issuer::service::Issuer;
use tessera_keyring::{DEFAULT_BITS, KeyDir, RotationPolicy};
use tessera_testkit::oneshot::{self, Reply};
use tessera_testkit::pg::test_database_url;

const ISSUER: &str = "https://auth.example.test";

struct Fixture {
    _tmp: tempfile::TempDir,
    dir: KeyDir,
    keys: Arc<KeyHandle>,
    state: AppState,
}

fn keyring() -> (tempfile::TempDir, KeyDir, Arc<KeyHandle>) {
    let tmp = tempfile::tempdir().unwrap();
    let dir = KeyDir::new(tmp.path().join("keys"));
    dir.init(DEFAULT_BITS).unwrap();
    let keys = Arc::new(KeyHandle::load(dir.clone()).unwrap());
    (tmp, dir, keys)
}

async fn fixture() -> Fixture {
    let (tmp, dir, keys) = keyring();
    fixture_with(tmp, dir, keys).await
}

async fn fixture_with(tmp: tempfile::TempDir, dir: KeyDir, keys: Arc<KeyHandle>) -> Fixture {
    let db = crate::common::database(tmp.path()).await;
    let settings = crate::common::settings(ISSUER);
    let state = AppState::new(Issuer::new(
        Arc::clone(&keys),
        db,
        Hasher::with_params(64, 1, 1, 2).unwrap(),
        Arc::new(tessera_keyring::SystemClock),
        settings,
    ));
    Fixture {
        _tmp: tmp,
        dir,
        keys,
        state,
    }
}

async fn get(state: &AppState, path: &str, if_none_match: Option<&str>) -> Reply {
    let tag = if_none_match.map(|tag| ("if-none-match", tag));
    oneshot::get(router(state.clone()), path, tag.as_slice()).await
}

#[tokio::test]
async fn jwks_serves_the_published_keys_with_caching_headers() {
    let f = fixture().await;
    let reply = get(&f.state, "/.well-known/jwks.json", None).await;
    assert_eq!(reply.status, StatusCode::OK);
    assert_eq!(reply.header(header::CONTENT_TYPE), "application/json");
    assert_eq!(reply.header(header::CACHE_CONTROL), "public, max-age=300");
    let etag = reply.header(header::ETAG).to_owned();
    assert!(
        etag.starts_with('"') && etag.ends_with('"') && etag.len() > 10,
        "strong: {etag}"
    );
    let served = reply.body.clone();
    let on_disk = serde_json::to_value(f.dir.inspect().unwrap().jwks).unwrap();
    assert_eq!(served, on_disk);
    assert_eq!(served["keys"].as_array().unwrap().len(), 2);
    // The same bytes every time, not rebuilt per request.
    let again = get(&f.state, "/.well-known/jwks.json", None).await;
    assert_eq!(again.body, reply.body);
    assert_eq!(again.header(header::ETAG), etag);
}

#[tokio::test]
async fn jwks_answers_304_to_a_matching_if_none_match() {
    let f = fixture().await;
    let etag = get(&f.state, "/.well-known/jwks.json", None)
        .await
        .header(header::ETAG)
        .to_owned();
    let cases = [
        (etag.clone(), StatusCode::NOT_MODIFIED),
        (format!("W/{etag}"), StatusCode::NOT_MODIFIED),
        (format!("\"other\", {etag}"), StatusCode::NOT_MODIFIED),
        ("*".to_owned(), StatusCode::NOT_MODIFIED),
        ("\"other\"".to_owned(), StatusCode::OK),
        (etag.trim_matches('"').to_owned(), StatusCode::OK),
    ];
    for (tag, expected) in cases {
        let reply = get(&f.state, "/.well-known/jwks.json", Some(&tag)).await;
        assert_eq!(reply.status, expected, "If-None-Match: {tag}");
        assert_eq!(reply.header(header::ETAG), etag);
        assert_eq!(reply.header(header::CACHE_CONTROL), "public, max-age=300");
        if expected == StatusCode::NOT_MODIFIED {
            assert!(reply.raw.is_empty());
        }
    }
}

#[tokio::test]
async fn both_discovery_documents_point_at_our_endpoints() {
    let f = fixture().await;
    for path in [
        "/.well-known/oauth-authorization-server",
        "/.well-known/openid-configuration",
    ] {
        let reply = get(&f.state, path, None).await;
        assert_eq!(reply.status, StatusCode::OK, "{path}");
        assert_eq!(reply.header(header::CONTENT_TYPE), "application/json");
        let doc = reply.body.clone();
        assert_eq!(doc["issuer"], ISSUER);
        assert_eq!(doc["jwks_uri"], format!("{ISSUER}/.well-known/jwks.json"));
        assert_eq!(doc["token_endpoint"], format!("{ISSUER}/token"));
        assert_eq!(doc["revocation_endpoint"], format!("{ISSUER}/revoke"));
        assert_eq!(
            doc["grant_types_supported"],
            serde_json::json!([
                "authorization_code",
                "refresh_token",
                "client_credentials",
                "password"
            ])
        );
        assert_eq!(
            doc["access_token_signing_alg_values_supported"],
            serde_json::json!(["RS256"])
        );
    }
}

#[tokio::test]
async fn health_readiness_and_unknown_routes() {
    let f = fixture().await;
    let health = get(&f.state, "/healthz", None).await;
    assert_eq!(health.status, StatusCode::OK);
    assert_eq!(health.body["status"], "ok");

    let ready = get(&f.state, "/readyz", None).await;
    assert_eq!(ready.status, StatusCode::OK);
    let ready = ready.body.clone();
    assert_eq!(
        ready["active_kid"],
        f.keys.current().unwrap().signer().kid()
    );
    assert_eq!(ready["published_keys"], 2);
    assert_eq!(ready["database"], "ok");
    assert!(ready["keyring_reload_error"].is_null());

    let missing = get(&f.state, "/login.php", None).await;
    assert_eq!(missing.status, StatusCode::NOT_FOUND);
    assert_eq!(missing.body["error"], "not_found");
}

#[tokio::test]
async fn a_cli_rotation_is_served_after_a_reload_and_a_broken_keyring_is_not() {
    let f = fixture().await;
    let before = get(&f.state, "/.well-known/jwks.json", None).await;
    let old_kid = f.keys.current().unwrap().signer().kid().to_owned();
    assert!(
        !f.keys.reload_if_changed().await.unwrap(),
        "nothing changed yet"
    );

    let rotated = f
        .dir
        .rotate(&RotationPolicy::default(), true, DEFAULT_BITS)
        .unwrap();
    assert!(f.keys.reload_if_changed().await.unwrap());
    assert_eq!(f.keys.current().unwrap().signer().kid(), rotated.activated);
    let after = get(&f.state, "/.well-known/jwks.json", None).await;
    assert_ne!(after.header(header::ETAG), before.header(header::ETAG));
    let kids: Vec<String> = after.body["keys"]
        .as_array()
        .unwrap()
        .iter()
        .map(|k| k["kid"].as_str().unwrap().to_owned())
        .collect();
    assert!(kids.contains(&old_kid), "the retired key stays published");
    assert!(kids.contains(&rotated.new_pending));
    // The old ETag no longer matches: clients refetch.
    let stale = get(
        &f.state,
        "/.well-known/jwks.json",
        Some(before.header(header::ETAG)),
    )
    .await;
    assert_eq!(stale.status, StatusCode::OK);

    // A corrupt manifest: the last good keyring keeps serving; readiness says why.
    let manifest = f.dir.manifest_path();
    let good = std::fs::read(&manifest).unwrap();
    std::fs::write(&manifest, b"{ broken").unwrap();
    assert!(f.keys.reload_if_changed().await.is_err());
    assert_eq!(f.keys.current().unwrap().signer().kid(), rotated.activated);
    let served = get(&f.state, "/.well-known/jwks.json", None).await;
    assert_eq!(served.body, after.body);
    let ready = get(&f.state, "/readyz", None).await;
    assert_eq!(ready.status, StatusCode::OK);
    assert!(
        ready.body["keyring_reload_error"]
            .as_str()
            .unwrap()
            .contains("manifest.json")
    );

    // Repaired: the error clears.
    std::fs::write(&manifest, good).unwrap();
    f.keys.reload_if_changed().await.unwrap();
    assert!(f.keys.reload_error().is_none());
}

/// The review's item 9: when the keys manifest vanished while the issuer ran,
/// the next reload created a fresh keyring and signed with a key nobody had
/// fetched. Only a first start creates keys; later a missing keyring is a
/// reload error: the last good keys stay in service and `/readyz` says why.
#[tokio::test]
async fn a_keyring_that_vanishes_while_running_is_an_error_not_a_new_keyring() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = KeyDir::new(tmp.path().join("keys"));
    // A first start, as the service makes it: the keyring is created.
    let store = tessera_issuer::keys::KeyStore::Files(dir.clone());
    let keys = Arc::new(
        KeyHandle::start(store, Some(DEFAULT_BITS.into()))
            .await
            .unwrap(),
    );
    let kid = keys.current().unwrap().signer().kid().to_owned();
    let f = fixture_with(tmp, dir, keys).await;
    let before = get(&f.state, "/.well-known/jwks.json", None).await;

    let manifest = f.dir.manifest_path();
    std::fs::remove_file(&manifest).unwrap();
    assert!(f.keys.reload_if_changed().await.is_err());
    assert!(!manifest.exists(), "no new keyring was created");
    assert_eq!(f.keys.current().unwrap().signer().kid(), kid);
    let served = get(&f.state, "/.well-known/jwks.json", None).await;
    assert_eq!(served.body, before.body, "the same keys are published");
    let ready = get(&f.state, "/readyz", None).await;
    let error = ready.body["keyring_reload_error"]
        .as_str()
        .unwrap()
        .to_owned();
    assert!(
        error.contains("manifest") || error.contains("initialised"),
        "{error}"
    );
}

#[test]
fn every_snapshot_publishes_its_own_signer_even_during_rotations() {
    let (_tmp, dir, keys) = keyring();
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let rotator = {
        let (dir, keys, stop) = (dir.clone(), Arc::clone(&keys), Arc::clone(&stop));
        std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            for _ in 0..4 {
                dir.rotate(&RotationPolicy::default(), true, DEFAULT_BITS)
                    .unwrap();
                dir.prune(&RotationPolicy::default(), true).unwrap();
                runtime.block_on(keys.reload_if_changed()).unwrap();
            }
            stop.store(true, std::sync::atomic::Ordering::SeqCst);
        })
    };
    let mut seen = std::collections::HashSet::new();
    for _ in 0..1_000_000 {
        let snapshot = keys.current().unwrap();
        let jwks: serde_json::Value = serde_json::from_slice(snapshot.jwks_json()).unwrap();
        let kid = snapshot.signer().kid();
        assert!(
            jwks["keys"]
                .as_array()
                .unwrap()
                .iter()
                .any(|k| k["kid"] == kid),
            "signer {kid} missing from the JWKS served with it"
        );
        seen.insert(kid.to_owned());
        if stop.load(std::sync::atomic::Ordering::SeqCst) {
            break;
        }
    }
    rotator.join().unwrap();
    assert!(seen.len() >= 2, "the test observed rotations: {seen:?}");
}

/// Minimal HTTP/1.1 GET over a real socket.
fn http_get(addr: &str, path: &str) -> (u16, String) {
    let mut stream = std::net::TcpStream::connect(addr).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut text = String::new();
    stream.read_to_string(&mut text).unwrap();
    let status = text[9..12].parse().unwrap();
    let body = text
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_owned())
        .unwrap_or_default();
    (status, body)
}

#[test]
fn the_binary_serves_on_port_0_picks_up_cli_rotations_and_stops_on_sigterm() {
    // Headers may take a minute here (so only the grace can end the stalled
    // request below); bodies one second; the drain after SIGTERM one second.
    let tmp = tempfile::tempdir().unwrap();
    let keys_dir = tmp.path().join("keys");
    let bin = env!("CARGO_BIN_EXE_tessera-issuer");
    let mut child = std::process::Command::new(bin)
        .args([
            "serve",
            "--listen",
            "127.0.0.1:0",
            "--keys-reload-interval",
            "100ms",
            "--header-read-timeout",
            "60s",
            "--body-read-timeout",
            "1s",
            "--shutdown-grace",
            "1s",
        ])
        .arg("--keys-dir")
        .arg(&keys_dir)
        .arg("--database")
        .arg(test_database_url(tmp.path()).unwrap())
        .env_remove("TESSERA_CONFIG")
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let first = lines.next().unwrap().unwrap();
    let addr = first
        .strip_prefix("tessera-issuer listening on http://")
        .unwrap_or_else(|| panic!("unexpected first line: {first}"))
        .to_owned();
    assert_eq!(
        lines.next().unwrap().unwrap(),
        format!("issuer: http://{addr}")
    );
    // First start with an empty database: an admin with a password shown once.
    let admin = lines.next().unwrap().unwrap();
    assert!(
        admin.starts_with("first start: created user \"admin\" with role admin and password "),
        "{admin}"
    );

    // First start created the keyring.
    let (status, body) = http_get(&addr, "/.well-known/jwks.json");
    assert_eq!(status, 200);
    let jwks: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(jwks["keys"].as_array().unwrap().len(), 2);

    // The operator rotates with the CLI; the running service picks it up.
    let out = std::process::Command::new(bin)
        .args(["keys", "rotate", "--force"])
        .arg("--keys-dir")
        .arg(&keys_dir)
        .output()
        .unwrap();
    assert!(out.status.success());
    let mut published = 0;
    for _ in 0..50 {
        let (_, body) = http_get(&addr, "/.well-known/jwks.json");
        let jwks: serde_json::Value = serde_json::from_str(&body).unwrap();
        published = jwks["keys"].as_array().unwrap().len();
        if published == 3 {
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    assert_eq!(published, 3, "rotation not served within 5 s");

    // A body that stops coming: 408 after the body timeout, not a hang.
    let mut slow = std::net::TcpStream::connect(&addr).unwrap();
    slow.set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    slow.write_all(
        b"POST /token HTTP/1.1\r\nhost: t\r\ncontent-type: application/x-www-form-urlencoded\r\n\
          content-length: 100\r\n\r\ngrant_type=pass",
    )
    .unwrap();
    let mut answer = String::new();
    slow.read_to_string(&mut answer).unwrap();
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
    assert!(answer.contains("\"invalid_request\""), "{answer}");

    // One request left half-sent: SIGTERM still ends the process within its
    // one-second grace (the header timeout would take a minute).
    let mut stalled = std::net::TcpStream::connect(&addr).unwrap();
    stalled
        .write_all(b"GET /healthz HTTP/1.1\r\nhost: t\r\n")
        .unwrap();
    std::thread::sleep(Duration::from_millis(100));
    let kill = std::process::Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(kill.success());
    let mut status = None;
    for _ in 0..100 {
        status = child.try_wait().unwrap();
        if status.is_some() {
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let Some(status) = status else {
        let _ = child.kill();
        panic!("still running 10 s after SIGTERM with a half-sent request open");
    };
    assert!(status.success(), "clean exit on SIGTERM: {status}");
    stalled
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    let mut rest = Vec::new();
    let _ = stalled.read_to_end(&mut rest);
    assert!(rest.is_empty(), "no answer to half a request");
}
