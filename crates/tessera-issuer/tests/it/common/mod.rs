//! Helpers for the tests that drive the issuer together with a resource server
//! and the operator CLI (a real `tessera-issuer` process): only these tests can
//! reach the binary, through `CARGO_BIN_EXE_tessera-issuer`.

#![allow(dead_code, unreachable_pub, clippy::unwrap_used, clippy::panic)]

use std::net::SocketAddr;
use std::path::Path;
use std::process::Output;

use base64::Engine as _;
use serde_json::Value;
use tessera_bench::Client;

/// The `kid` in a compact JWS's header.
pub fn kid_of(token: &str) -> String {
    header_of(token)["kid"].as_str().unwrap().to_owned()
}

/// A compact JWS's payload as JSON.
pub fn claims_of(token: &str) -> Value {
    segment(token, 1)
}

fn header_of(token: &str) -> Value {
    segment(token, 0)
}

fn segment(token: &str, i: usize) -> Value {
    let part = token.split('.').nth(i).unwrap();
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(part)
        .unwrap();
    serde_json::from_slice(&bytes).unwrap()
}

/// `POST /login`; the whole token response (asserts `200`).
pub async fn login(issuer: SocketAddr, username: &str, password: &str) -> Value {
    let mut c = Client::connect(issuer).await.unwrap();
    let body = serde_json::json!({"username": username, "password": password}).to_string();
    let (status, body) = c
        .request("POST", "/login", &[], "application/json", &body)
        .await
        .unwrap();
    assert_eq!(status, 200, "{}", String::from_utf8_lossy(&body));
    serde_json::from_slice(&body).unwrap()
}

/// `POST /logout` with a bearer token on a new connection: (status, body).
pub async fn logout(issuer: SocketAddr, token: &str) -> (u16, Vec<u8>) {
    let mut c = Client::connect(issuer).await.unwrap();
    let auth = format!("Authorization: Bearer {token}");
    c.request("POST", "/logout", &[&auth], "", "")
        .await
        .unwrap()
}

/// `GET /profile` with a bearer token on a new connection: the status.
pub async fn profile(resource: SocketAddr, token: &str) -> u16 {
    let mut c = Client::connect(resource).await.unwrap();
    let auth = format!("Authorization: Bearer {token}");
    c.get("/profile", &[&auth]).await.unwrap().0
}

/// The `kid`s the issuer publishes now.
pub async fn published_kids(issuer: SocketAddr) -> Vec<String> {
    let mut c = Client::connect(issuer).await.unwrap();
    let (_, body) = c.get("/.well-known/jwks.json", &[]).await.unwrap();
    serde_json::from_slice::<Value>(&body).unwrap()["keys"]
        .as_array()
        .unwrap()
        .iter()
        .map(|k| k["kid"].as_str().unwrap().to_owned())
        .collect()
}

/// The operator CLI, `tessera-issuer <args>`, with no settings leaking in from
/// the tests' environment.
pub fn cli(args: &[&str]) -> std::process::Command {
    let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_tessera-issuer"));
    cmd.args(args);
    for (var, _) in std::env::vars_os() {
        if var.to_string_lossy().starts_with("TESSERA_") {
            cmd.env_remove(var);
        }
    }
    cmd
}

/// `tessera-issuer keys <args> --keys-dir <dir>`, run to completion.
pub fn keys(dir: &Path, args: &[&str]) -> Output {
    cli(&["keys"])
        .args(args)
        .arg("--keys-dir")
        .arg(dir)
        .output()
        .unwrap()
}

/// `keys list --json`: one object per key.
pub fn key_list(dir: &Path) -> Vec<Value> {
    let out = keys(dir, &["list", "--json"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice::<Value>(&out.stdout)
        .unwrap()
        .as_array()
        .unwrap()
        .clone()
}

/// The `kid` of the one key in `state`.
pub fn kid_in_state(dir: &Path, state: &str) -> String {
    let list = key_list(dir);
    let mut matching = list.iter().filter(|k| k["state"] == state);
    let kid = matching
        .next()
        .unwrap_or_else(|| panic!("no {state} key in {list:?}"))["kid"]
        .as_str()
        .unwrap()
        .to_owned();
    assert!(matching.next().is_none(), "several {state} keys: {list:?}");
    kid
}

/// The demo resource server on a free port, once `verifier` has its keys.
pub async fn serve_resource(verifier: tessera_verifier::Verifier) -> SocketAddr {
    assert!(
        verifier.ready(std::time::Duration::from_secs(10)).await,
        "the verifier never loaded keys: {:?}",
        verifier.health()
    );
    serve_resource_now(verifier).await
}

/// The demo resource server on a free port, ready or not.
pub async fn serve_resource_now(verifier: tessera_verifier::Verifier) -> SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        axum::serve(listener, tessera_resource_server::app(verifier))
            .await
            .unwrap();
    });
    addr
}

/// `tessera-issuer serve` as a real process on a free port, its database and
/// keyring in `dir`; returns once it listens, with the first admin's password
/// if this start created it.
pub struct IssuerProcess {
    pub child: std::process::Child,
    pub addr: SocketAddr,
    pub admin_password: Option<String>,
}

impl IssuerProcess {
    pub fn start(dir: &Path, extra: &[&str]) -> Self {
        use std::io::BufRead as _;
        let mut child = cli(&["serve", "--listen", "127.0.0.1:0"])
            .args(extra)
            .arg("--keys-dir")
            .arg(dir.join("keys"))
            .arg("--database")
            .arg(tessera_issuer::db::scratch::test_database_url(dir).unwrap())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap();
        let mut lines = std::io::BufReader::new(child.stdout.take().unwrap()).lines();
        let first = lines.next().unwrap().unwrap();
        let addr = first
            .strip_prefix("tessera-issuer listening on http://")
            .unwrap_or_else(|| panic!("unexpected first line: {first}"))
            .parse()
            .unwrap();
        let _issuer_line = lines.next().unwrap().unwrap();
        let mut admin_password = None;
        // The admin lines come only on a first start, right after; the output
        // ends there, so read on a thread and give it a moment.
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in lines.map_while(Result::ok) {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        if let Ok(line) = rx.recv_timeout(std::time::Duration::from_millis(500)) {
            admin_password = line
                .strip_prefix("first start: created user \"admin\" with role admin and password ")
                .map(str::to_owned);
        }
        Self {
            child,
            addr,
            admin_password,
        }
    }
}

impl Drop for IssuerProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// An issuer running in this process, its database and keyring in `dir`.
pub struct InProcessIssuer {
    pub addr: SocketAddr,
    pub url: String,
    /// The first admin's password (this start created it).
    pub admin_password: String,
}

/// Starts an issuer in `dir` on a free port, reloading its keyring every
/// 100 ms, its configuration changed by `tweak`.
pub async fn start_issuer(
    dir: &Path,
    tweak: impl FnOnce(&mut tessera_issuer::config::RawConfig),
) -> InProcessIssuer {
    let mut raw = tessera_issuer::config::RawConfig {
        keys_dir: Some(dir.join("keys")),
        database_url: Some(tessera_issuer::db::scratch::test_database_url(dir).unwrap()),
        listen: Some("127.0.0.1:0".parse().unwrap()),
        keys_reload_interval: Some(std::time::Duration::from_millis(100)),
        ..tessera_issuer::config::RawConfig::default()
    };
    tweak(&mut raw);
    let mut prepared = tessera_issuer::serve::Prepared::new(raw.validate().unwrap())
        .await
        .unwrap();
    let issuer = InProcessIssuer {
        addr: prepared.addr(),
        url: prepared.issuer().to_owned(),
        admin_password: prepared.take_first_admin().unwrap().password,
    };
    tokio::spawn(prepared.run(std::future::pending()));
    issuer
}
