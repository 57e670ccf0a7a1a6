//! Issuers and resource servers to test against, on free loopback ports, and
//! the calls a user makes to them over real HTTP.

use std::net::SocketAddr;
use std::path::Path;

use serde_json::Value;
use tessera_bench::Client;
use tessera_issuer::config::RawConfig;

use crate::pg::test_database_url;

/// An issuer running in this process, its database and keyring in a
/// directory (embedded defaults otherwise).
#[derive(Debug)]
pub struct InProcessIssuer {
    /// Where it listens.
    pub addr: SocketAddr,
    /// Its issuer URL (`iss`), `http://<addr>`.
    pub url: String,
    /// The `admin` password if this start created the first admin, else empty.
    pub admin_password: String,
    /// Its database URL.
    pub database_url: String,
    stop: tokio::sync::oneshot::Sender<()>,
    task: tokio::task::JoinHandle<()>,
}

impl InProcessIssuer {
    /// Shuts it down (in-flight requests finish) and waits until it has.
    /// Dropped instead, it runs until the test's runtime ends.
    pub async fn stop(self) {
        let _ = self.stop.send(());
        if let Err(e) = self.task.await {
            panic!("the issuer task failed: {e}");
        }
    }
}

/// Starts an issuer in `dir` on a free port (its database on the backend the
/// run chose, see [`test_database_url`]; its keyring in `dir/keys`, reloaded
/// every 100 ms), its configuration then changed by `tweak`; returns once it
/// listens.
pub async fn start_issuer(dir: &Path, tweak: impl FnOnce(&mut RawConfig)) -> InProcessIssuer {
    let database_url = test_database_url(dir).unwrap_or_else(|e| panic!("the test database: {e}"));
    let mut raw = RawConfig {
        keys_dir: Some(dir.join("keys")),
        database_url: Some(database_url.clone()),
        listen: Some(SocketAddr::from(([127, 0, 0, 1], 0))),
        keys_reload_interval: Some(std::time::Duration::from_millis(100)),
        ..RawConfig::default()
    };
    tweak(&mut raw);
    let config = raw
        .validate()
        .unwrap_or_else(|e| panic!("issuer config: {e}"));
    let mut prepared = tessera_issuer::serve::Prepared::new(config)
        .await
        .unwrap_or_else(|e| panic!("starting the issuer: {e}"));
    let admin_password = prepared
        .take_first_admin()
        .map(|a| a.password)
        .unwrap_or_default();
    let (addr, url) = (prepared.addr(), prepared.issuer().to_owned());
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let task = tokio::spawn(async move {
        let shutdown = async {
            if stopped.await.is_err() {
                std::future::pending::<()>().await;
            }
        };
        if let Err(e) = prepared.run(shutdown).await {
            panic!("the issuer failed: {e}");
        }
    });
    InProcessIssuer {
        addr,
        url,
        admin_password,
        database_url,
        stop,
        task,
    }
}

/// The issuer's command line, `bin <args>` (`bin`: the `tessera-issuer`
/// binary, `CARGO_BIN_EXE_tessera-issuer` in the issuer's own tests), with
/// no `TESSERA_*` setting leaking in from the tests' environment.
pub fn cli(bin: &Path, args: &[&str]) -> std::process::Command {
    let mut cmd = std::process::Command::new(bin);
    cmd.args(args);
    for (var, _) in std::env::vars_os() {
        if var.to_string_lossy().starts_with("TESSERA_") {
            cmd.env_remove(var);
        }
    }
    cmd
}

/// `tessera-issuer serve` as a real process on a free port, its database and
/// keyring in a directory; killed when dropped.
#[derive(Debug)]
pub struct IssuerProcess {
    /// The process.
    pub child: std::process::Child,
    /// Where it listens.
    pub addr: SocketAddr,
    /// The first admin's password, if this start created it.
    pub admin_password: Option<String>,
}

impl IssuerProcess {
    /// Starts `bin serve` with `extra` arguments, its database and keyring in
    /// `dir`; returns once it listens.
    pub fn start(bin: &Path, dir: &Path, extra: &[&str]) -> Self {
        use std::io::BufRead as _;
        let database = test_database_url(dir).unwrap_or_else(|e| panic!("the test database: {e}"));
        let mut child = cli(bin, &["serve", "--listen", "127.0.0.1:0"])
            .args(extra)
            .arg("--keys-dir")
            .arg(dir.join("keys"))
            .arg("--database")
            .arg(database)
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("starting {}: {e}", bin.display()));
        let stdout = child.stdout.take().expect("piped stdout");
        let mut lines = std::io::BufReader::new(stdout).lines();
        let mut next_line = || {
            lines
                .next()
                .and_then(Result::ok)
                .unwrap_or_else(|| panic!("the issuer exited before it listened"))
        };
        let first = next_line();
        let addr = first
            .strip_prefix("tessera-issuer listening on http://")
            .unwrap_or_else(|| panic!("unexpected first line: {first}"))
            .parse()
            .unwrap_or_else(|e| panic!("the address in {first:?}: {e}"));
        let _issuer_line = next_line();
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
        let admin_password = rx
            .recv_timeout(std::time::Duration::from_millis(500))
            .ok()
            .and_then(|line| {
                line.strip_prefix(
                    "first start: created user \"admin\" with role admin and password ",
                )
                .map(str::to_owned)
            });
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
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .unwrap_or_else(|e| panic!("binding the resource server: {e}"));
    serve_resource_on(listener, verifier)
}

/// The demo resource server on `listener` (bound first when the issuer must
/// know its origin before the verifier can be built), ready or not.
pub fn serve_resource_on(
    listener: tokio::net::TcpListener,
    verifier: tessera_verifier::Verifier,
) -> SocketAddr {
    let addr = listener
        .local_addr()
        .unwrap_or_else(|e| panic!("resource server address: {e}"));
    tokio::spawn(async move {
        if let Err(e) = axum::serve(listener, tessera_resource_server::app(verifier)).await {
            panic!("the resource server failed: {e}");
        }
    });
    addr
}

/// One request on a new connection: (status, body).
pub async fn call(
    to: SocketAddr,
    method: &str,
    path: &str,
    headers: &[&str],
    content_type: &str,
    body: &str,
) -> (u16, Vec<u8>) {
    let mut client = Client::connect(to)
        .await
        .unwrap_or_else(|e| panic!("connecting to {to}: {e}"));
    client
        .request(method, path, headers, content_type, body)
        .await
        .unwrap_or_else(|e| panic!("{method} {path}: {e}"))
}

/// `POST /login` as `username`: the whole token response (asserts `200`).
pub async fn login(issuer: SocketAddr, username: &str, password: &str) -> Value {
    let body = serde_json::json!({"username": username, "password": password}).to_string();
    let (status, body) = call(issuer, "POST", "/login", &[], "application/json", &body).await;
    assert_eq!(status, 200, "login: {}", String::from_utf8_lossy(&body));
    serde_json::from_slice(&body).unwrap_or_else(|e| panic!("login response: {e}"))
}

/// `POST /logout` with a bearer token: (status, body).
pub async fn logout(issuer: SocketAddr, token: &str) -> (u16, Vec<u8>) {
    let auth = format!("Authorization: Bearer {token}");
    call(issuer, "POST", "/logout", &[&auth], "", "").await
}

/// `GET /profile` with a bearer token: the status.
pub async fn profile(resource: SocketAddr, token: &str) -> u16 {
    let auth = format!("Authorization: Bearer {token}");
    call(resource, "GET", "/profile", &[&auth], "", "").await.0
}

/// The `kid`s the issuer publishes now.
pub async fn published_kids(issuer: SocketAddr) -> Vec<String> {
    let (_, body) = call(issuer, "GET", "/.well-known/jwks.json", &[], "", "").await;
    let jwks: Value = serde_json::from_slice(&body).unwrap_or_else(|e| panic!("JWKS: {e}"));
    jwks["keys"]
        .as_array()
        .unwrap_or_else(|| panic!("a JWKS without keys: {jwks}"))
        .iter()
        .map(|k| k["kid"].as_str().unwrap_or_default().to_owned())
        .collect()
}
