//! Interoperability with Python: PyJWT, the usual JWT library of Python
//! services, verifies our access tokens through our `jwks_uri`; our verifier
//! accepts tokens from a PyJWT-based issuer when configured for it; Authlib
//! reads and validates our RFC 8414 metadata, and gets a service's token with
//! the client-credentials grant through its `OAuth2Session`.
//!
//! Needs a Python with tests/interop/requirements.txt installed, named by
//! `TESSERA_INTEROP_PYTHON`; `.ci/run` makes one. Without that variable these
//! tests say so and pass, like the PostgreSQL tests without their URL.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::io::{BufRead as _, BufReader};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::Duration;

use crate::support::workspace_root;
use serde_json::Value;
use tessera_verifier::{AccessClaims, SystemClock, Verifier, VerifierConfig, VerifyError};

fn python() -> Option<String> {
    crate::support::interop_tool("TESSERA_INTEROP_PYTHON", "PyJWT interoperability checks")
}

fn script(name: &str) -> std::path::PathBuf {
    workspace_root().join("tests/interop").join(name)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pyjwt_verifies_our_tokens_through_our_jwks_uri() {
    let Some(python) = python() else { return };
    for alg in ["RS256", "ES256", "EdDSA"] {
        pyjwt_verifies(&python, alg).await;
    }
}

/// PyJWT (PyJWKClient, `algorithms=[alg]`) on an issuer signing with `alg`.
async fn pyjwt_verifies(python: &str, alg: &'static str) {
    let tmp = tempfile::tempdir().unwrap();
    let (issuer, token) = crate::support::issuer_signing_with(tmp.path(), alg).await;
    let jwks_uri = format!("{}/.well-known/jwks.json", issuer.url);
    let run = |issuer_url: String, audience: &'static str, token: String| {
        let python = python.to_owned();
        let jwks_uri = jwks_uri.clone();
        tokio::task::spawn_blocking(move || {
            Command::new(python)
                .arg(script("pyjwt_verify.py"))
                .args([&jwks_uri, &issuer_url, audience, &token, alg])
                .output()
                .unwrap()
        })
    };
    let out = run(issuer.url.clone(), "tessera", token.clone())
        .await
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "PyJWT refused our {alg} token: {stdout}"
    );
    let claims: Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(claims["preferred_username"], "admin");
    assert_eq!(claims["iss"], issuer.url.as_str());
    // And it refuses them where it should: another audience, another issuer.
    let out = run(issuer.url.clone(), "someone-else", token.clone())
        .await
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stdout).contains("InvalidAudience"));
    let out = run("http://elsewhere.test".to_owned(), "tessera", token)
        .await
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stdout).contains("InvalidIssuer"));
}

/// `pyjwt_issuer.py` signing with `alg`, serving until its input closes: the
/// process, its issuer URL and the token it signed.
fn foreign_issuer(python: &str, alg: &str) -> (std::process::Child, String, String) {
    let mut child = Command::new(python)
        .arg(script("pyjwt_issuer.py"))
        .args(["orders-api", alg])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let foreign: Value = serde_json::from_str(&line).unwrap();
    let url = foreign["issuer"].as_str().unwrap().to_owned();
    let token = foreign["token"].as_str().unwrap().to_owned();
    (child, url, token)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn our_verifier_accepts_a_foreign_es256_issuer_only_when_configured_for_es256() {
    let Some(python) = python() else { return };
    let (mut child, foreign_url, token) = foreign_issuer(&python, "ES256");
    assert_eq!(tessera_testkit::jws::header_of(&token)["alg"], "ES256");

    let mut config = VerifierConfig::new(foreign_url.clone(), ["orders-api"]);
    config.algorithms = vec!["ES256".to_owned()];
    let verifier = Verifier::start(config, Arc::new(SystemClock)).unwrap();
    assert!(
        verifier.ready(Duration::from_secs(10)).await,
        "{:?}",
        verifier.health()
    );
    let verified = verifier.verify::<AccessClaims>(&token).await.unwrap();
    assert_eq!(verified.subject(), "py-user");

    // Left at the default (RS256 only), the same verifier has no usable key
    // in that JWKS, and refuses the token.
    let default = Verifier::start(
        VerifierConfig::new(foreign_url, ["orders-api"]),
        Arc::new(SystemClock),
    )
    .unwrap();
    assert!(!default.ready(Duration::from_millis(500)).await);
    assert!(default.verify::<AccessClaims>(&token).await.is_err());

    drop(child.stdin.take());
    assert!(child.wait().unwrap().success());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn our_verifier_accepts_a_pyjwt_issuer_only_when_configured_for_it() {
    let Some(python) = python() else { return };
    let (mut child, foreign_url, token) = foreign_issuer(&python, "RS256");

    // Configured for it (keys discovered from its metadata): accepted.
    let verifier = Verifier::start(
        VerifierConfig::new(foreign_url.clone(), ["orders-api"]),
        Arc::new(SystemClock),
    )
    .unwrap();
    assert!(
        verifier.ready(Duration::from_secs(10)).await,
        "{:?}",
        verifier.health()
    );
    let verified = verifier.verify::<AccessClaims>(&token).await.unwrap();
    assert_eq!(verified.subject(), "py-user");
    assert!(verified.has_role("admin"));

    // Another audience: refused.
    let other_audience = Verifier::start(
        VerifierConfig::new(foreign_url.clone(), ["billing-api"]),
        Arc::new(SystemClock),
    )
    .unwrap();
    assert!(other_audience.ready(Duration::from_secs(10)).await);
    assert_eq!(
        other_audience
            .verify::<AccessClaims>(&token)
            .await
            .unwrap_err(),
        VerifyError::WrongAudience
    );

    // A verifier for our own issuer does not know the foreign key at all.
    let tmp = tempfile::tempdir().unwrap();
    let ours = tessera_testkit::stack::start_issuer(tmp.path(), |_| {}).await;
    let ours_verifier = Verifier::start(
        VerifierConfig::new(ours.url, ["orders-api"]),
        Arc::new(SystemClock),
    )
    .unwrap();
    assert!(ours_verifier.ready(Duration::from_secs(10)).await);
    assert_eq!(
        ours_verifier
            .verify::<AccessClaims>(&token)
            .await
            .unwrap_err(),
        VerifyError::UnknownKey
    );

    drop(child.stdin.take()); // the foreign issuer stops when its input closes
    assert!(child.wait().unwrap().success());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn authlib_reads_and_validates_our_rfc8414_metadata() {
    let Some(python) = python() else { return };
    let tmp = tempfile::tempdir().unwrap();
    let issuer = tessera_testkit::stack::start_issuer(tmp.path(), |_| {}).await;
    let url = issuer.url.clone();
    let out = tokio::task::spawn_blocking(move || {
        Command::new(python)
            .arg(script("rfc8414_metadata.py"))
            .arg(&url)
            .output()
            .unwrap()
    })
    .await
    .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "Authlib refused our metadata: {stdout}"
    );
    assert_eq!(stdout.trim(), "ok");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn authlib_gets_a_service_token_with_client_credentials() {
    use tessera_issuer::clients::{
        Client, ClientKind, decode_hash, login_client, secret_hash_text,
    };
    let Some(python) = python() else { return };
    let tmp = tempfile::tempdir().unwrap();
    let issuer = tessera_testkit::stack::start_issuer(tmp.path(), |_| {}).await;
    let secret = tessera_issuer::clients::new_secret();
    let db = tessera_issuer::db::Db::connect(&issuer.database_url)
        .await
        .unwrap();
    let client = Client {
        kind: ClientKind::Confidential,
        grant_types: vec!["client_credentials".to_owned()],
        scopes: vec!["reports:read".to_owned(), "reports:write".to_owned()],
        default_scope: vec!["reports:read".to_owned()],
        secret_sha256: decode_hash(&secret_hash_text(&secret)),
        ..login_client("reports-job", 0)
    };
    db.add_client(&client).await.unwrap();
    let verifier = Verifier::start(
        VerifierConfig::new(issuer.url.clone(), ["tessera"]),
        Arc::new(SystemClock),
    )
    .unwrap();
    let resource = tessera_testkit::stack::serve_resource(verifier).await;
    for method in ["client_secret_basic", "client_secret_post"] {
        let (python, url, secret) = (python.clone(), issuer.url.clone(), secret.clone());
        let out = tokio::task::spawn_blocking(move || {
            Command::new(python)
                .arg(script("client_credentials.py"))
                .args([
                    url.as_str(),
                    "reports-job",
                    secret.as_str(),
                    method,
                    "reports:read",
                ])
                .output()
                .unwrap()
        })
        .await
        .unwrap();
        assert!(
            out.status.success(),
            "Authlib ({method}): {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let token: Value = serde_json::from_slice(&out.stdout).unwrap();
        assert_eq!(token["scope"], "reports:read", "{method}: {token}");
        assert_eq!(token["expires_in"], 900);
        assert_eq!(
            token["refresh_token"],
            Value::Null,
            "no refresh token for a service"
        );
        let access = token["access_token"].as_str().unwrap();
        let claims = tessera_testkit::jws::claims_of(access);
        assert_eq!(claims["sub"], "reports-job");
        // The resource server takes it where the scope is what counts.
        let mut http = tessera_bench::Client::connect(resource).await.unwrap();
        let auth = format!("Authorization: Bearer {access}");
        let (status, body) = http.get("/reports", &[&auth]).await.unwrap();
        assert_eq!(status, 200, "{}", String::from_utf8_lossy(&body));
    }
    // A wrong secret: Authlib reports the issuer's invalid_client.
    let url = issuer.url.clone();
    let out = tokio::task::spawn_blocking(move || {
        Command::new(python)
            .arg(script("client_credentials.py"))
            .args([
                url.as_str(),
                "reports-job",
                "wrong-secret-wrong-secret-wrong-secret",
                "client_secret_basic",
                "reports:read",
            ])
            .output()
            .unwrap()
    })
    .await
    .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("invalid_client"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn authlib_signs_in_with_private_key_jwt() {
    use tessera_issuer::clients::{Client, ClientKind, login_client};
    let Some(python) = python() else { return };
    let tmp = tempfile::tempdir().unwrap();
    let issuer = tessera_testkit::stack::start_issuer(tmp.path(), |_| {}).await;
    // The service's own key pair: the issuer gets the public half only.
    let keys = tessera_keyring::KeyDir::new(tmp.path().join("service-keys"));
    keys.init(tessera_keyring::DEFAULT_BITS).unwrap();
    let keyring = keys.load().unwrap();
    let kid = keyring.signer().kid().to_owned();
    let db = tessera_issuer::db::Db::connect(&issuer.database_url)
        .await
        .unwrap();
    let client = Client {
        kind: ClientKind::Confidential,
        grant_types: vec!["client_credentials".to_owned()],
        scopes: vec!["reports:read".to_owned()],
        default_scope: vec!["reports:read".to_owned()],
        jwks: Some(serde_json::json!({"keys": [keyring.signer().jwk()]}).to_string()),
        token_lifetime_secs: Some(300),
        ..login_client("reports-job", 0)
    };
    tessera_issuer::clients::check(&client).unwrap();
    db.add_client(&client).await.unwrap();
    let run = |key_file: std::path::PathBuf| {
        let (python, url) = (python.clone(), issuer.url.clone());
        tokio::task::spawn_blocking(move || {
            Command::new(python)
                .arg(script("private_key_jwt.py"))
                .arg(url.as_str())
                .arg("reports-job")
                .arg(key_file)
                .arg("reports:read")
                .output()
                .unwrap()
        })
    };
    let out = run(keys.key_path(&kid)).await.unwrap();
    assert!(
        out.status.success(),
        "Authlib (private_key_jwt): {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let tokens: Value = serde_json::from_slice(&out.stdout).unwrap();
    let tokens = tokens.as_array().unwrap();
    assert_eq!(tokens.len(), 2, "a fresh assertion each time");
    for token in tokens {
        assert_eq!(token["scope"], "reports:read");
        assert_eq!(token["expires_in"], 300, "the client's own lifetime");
        let claims = tessera_testkit::jws::claims_of(token["access_token"].as_str().unwrap());
        assert_eq!(claims["sub"], "reports-job");
        assert_eq!(
            claims["exp"].as_i64().unwrap() - claims["iat"].as_i64().unwrap(),
            300
        );
    }
    // Another key (not registered): Authlib reports invalid_client.
    let other = tessera_keyring::KeyDir::new(tmp.path().join("other-keys"));
    other.init(tessera_keyring::DEFAULT_BITS).unwrap();
    let other_kid = other.load().unwrap().signer().kid().to_owned();
    let out = run(other.key_path(&other_kid)).await.unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("invalid_client"));
}
