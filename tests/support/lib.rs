//! Helpers shared by Tessera's cross-crate tests.

// Test support: failing loudly, at once, is the point.
#![allow(clippy::panic)]

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use tessera_verifier::KeySet;

/// The workspace root (where `README.md` and `.ci/run` live).
pub fn workspace_root() -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .map(std::path::Path::to_path_buf)
        .unwrap_or_default()
}

/// Checks a compact JWS's RS256 signature against a key set, the key picked by
/// the header's `kid`; returns the payload as JSON. Signature only: the claim
/// checks belong to the verifier's validator.
pub fn verify_signature(set: &KeySet, token: &str) -> Result<serde_json::Value, String> {
    let parts: Vec<&str> = token.split('.').collect();
    let [header, payload, signature] = parts.as_slice() else {
        return Err("not three segments".to_owned());
    };
    let decode = |s: &str| URL_SAFE_NO_PAD.decode(s).map_err(|e| e.to_string());
    let header: serde_json::Value =
        serde_json::from_slice(&decode(header)?).map_err(|e| e.to_string())?;
    if header["alg"] != "RS256" {
        return Err(format!("alg {}", header["alg"]));
    }
    let kid = header["kid"].as_str().ok_or("no kid")?;
    let key = set.get(kid).ok_or_else(|| format!("unknown kid {kid}"))?;
    let signing_input = format!("{}.{}", parts[0], parts[1]);
    if !key.verify_rs256(signing_input.as_bytes(), &decode(signature)?) {
        return Err("bad signature".to_owned());
    }
    serde_json::from_slice(&decode(payload)?).map_err(|e| e.to_string())
}

/// An issuer running in this process on 127.0.0.1, with its SQLite database
/// and keyring in a directory (embedded defaults otherwise).
#[derive(Debug)]
pub struct RunningIssuer {
    /// Where it listens.
    pub addr: std::net::SocketAddr,
    /// Its issuer URL (`iss`), `http://<addr>`.
    pub url: String,
    /// The `admin` password if this start created the first admin, else empty.
    pub admin_password: String,
    /// Its database URL.
    pub database_url: String,
    stop: tokio::sync::oneshot::Sender<()>,
    task: tokio::task::JoinHandle<()>,
}

impl RunningIssuer {
    /// Shuts it down (in-flight requests finish) and waits until it has.
    pub async fn stop(self) {
        let _ = self.stop.send(());
        if let Err(e) = self.task.await {
            panic!("the issuer task failed: {e}");
        }
    }
}

/// Starts an issuer in `dir` on a free port and returns once it listens.
pub async fn start_issuer(dir: &std::path::Path) -> RunningIssuer {
    start_issuer_on(dir, std::net::SocketAddr::from(([127, 0, 0, 1], 0)), |_| {}).await
}

/// Starts an issuer in `dir` on `listen`, its configuration changed by
/// `tweak`, and returns once it listens.
pub async fn start_issuer_on(
    dir: &std::path::Path,
    listen: std::net::SocketAddr,
    tweak: impl FnOnce(&mut tessera_issuer::config::RawConfig),
) -> RunningIssuer {
    let database_url = tessera_issuer::db::scratch::test_database_url(dir)
        .unwrap_or_else(|e| panic!("the test database: {e}"));
    let mut raw = tessera_issuer::config::RawConfig {
        keys_dir: Some(dir.join("keys")),
        database_url: Some(database_url.clone()),
        listen: Some(listen),
        ..tessera_issuer::config::RawConfig::default()
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
    let addr = prepared.addr();
    let url = prepared.issuer().to_owned();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let task = tokio::spawn(async move {
        // Only `stop()` stops it: dropping the handle leaves it running until
        // the test's runtime ends.
        let shutdown = async {
            if stopped.await.is_err() {
                std::future::pending::<()>().await;
            }
        };
        if let Err(e) = prepared.run(shutdown).await {
            panic!("the issuer failed: {e}");
        }
    });
    RunningIssuer {
        addr,
        url,
        admin_password,
        database_url,
        stop,
        task,
    }
}

/// `POST /login` as `username`: the token response (asserts `200`).
pub async fn login(
    issuer: std::net::SocketAddr,
    username: &str,
    password: &str,
) -> serde_json::Value {
    let body = serde_json::json!({"username": username, "password": password}).to_string();
    let mut client = tessera_bench::Client::connect(issuer)
        .await
        .unwrap_or_else(|e| panic!("connecting to the issuer: {e}"));
    let (status, body) = client
        .request("POST", "/login", &[], "application/json", &body)
        .await
        .unwrap_or_else(|e| panic!("logging in: {e}"));
    assert_eq!(status, 200, "login: {}", String::from_utf8_lossy(&body));
    serde_json::from_slice(&body).unwrap_or_else(|e| panic!("login response: {e}"))
}

/// The demo resource server on a free port, once `verifier` has its keys.
pub async fn serve_resource(verifier: tessera_verifier::Verifier) -> std::net::SocketAddr {
    assert!(
        verifier.ready(std::time::Duration::from_secs(10)).await,
        "the verifier never loaded keys: {:?}",
        verifier.health()
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .unwrap_or_else(|e| panic!("binding the resource server: {e}"));
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

/// The third-party tool `var` names (a `TESSERA_INTEROP_*` variable that
/// `.ci/run` sets), or `None` after saying that `checks` are skipped.
pub fn interop_tool(var: &str, checks: &str) -> Option<String> {
    let tool = std::env::var(var).ok();
    if tool.is_none() {
        #[allow(clippy::print_stderr)]
        {
            eprintln!("{var} is not set: skipping the {checks}");
        }
    }
    tool
}

/// Runs a third-party verifier, `program [args] JWKS_URI ISSUER AUDIENCE TOKEN`,
/// off the runtime; returns the JSON it prints (asserts it exits 0).
pub async fn run_verifier(program: String, mut args: Vec<String>) -> serde_json::Value {
    tokio::task::spawn_blocking(move || {
        let out = std::process::Command::new(&program)
            .args(args.drain(..))
            .output()
            .unwrap_or_else(|e| panic!("running {program}: {e}"));
        assert!(
            out.status.success(),
            "{program}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        serde_json::from_slice(&out.stdout)
            .unwrap_or_else(|e| panic!("{program} printed no JSON: {e}"))
    })
    .await
    .unwrap_or_else(|e| panic!("the verifier task failed: {e}"))
}
