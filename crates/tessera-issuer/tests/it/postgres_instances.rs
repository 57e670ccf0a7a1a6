//! Several issuer instances on one PostgreSQL database, over real HTTP: state
//! made on one is seen by the other, refresh races across instances rotate
//! once, and the service rides out PostgreSQL being unreachable at start and
//! restarted mid-traffic. Needs `TESSERA_TEST_POSTGRES_URL` (skips without it,
//! fails without it under `TESSERA_REQUIRE_POSTGRES=1`).

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::print_stderr
)]

use crate::common;

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use serde_json::Value;
use sqlx::Connection as _;
use tessera_bench::Client;
use tessera_issuer::serve::{FirstAdmin, Prepared};
use tessera_testkit::pg::{ScratchDatabase, postgres_required, postgres_url};
use tokio::net::{TcpListener, TcpStream};
use tokio::time::Instant;

const ISSUER: &str = "https://auth.tessera.test";

fn server() -> Option<String> {
    let url = postgres_url();
    if url.is_none() {
        assert!(!postgres_required(), "TESSERA_TEST_POSTGRES_URL is not set");
        eprintln!("TESSERA_TEST_POSTGRES_URL is not set: skipping the PostgreSQL tests");
    }
    url
}

/// An issuer instance in this process on a free port.
struct Instance {
    addr: SocketAddr,
    first_admin: Option<FirstAdmin>,
    late_first_admin: Option<tokio::sync::oneshot::Receiver<FirstAdmin>>,
}

async fn start(database_url: &str, keys_dir: &Path) -> Instance {
    start_with(database_url, keys_dir, |_| {}).await
}

async fn start_with(
    database_url: &str,
    keys_dir: &Path,
    tweak: impl FnOnce(&mut tessera_issuer::config::RawConfig),
) -> Instance {
    let mut raw = tessera_issuer::config::RawConfig {
        keys_dir: Some(keys_dir.to_owned()),
        database_url: Some(database_url.to_owned()),
        listen: Some("127.0.0.1:0".parse().unwrap()),
        issuer_url: Some(ISSUER.to_owned()),
        keys_reload_interval: Some(Duration::from_millis(100)),
        ..Default::default()
    };
    tweak(&mut raw);
    let mut prepared = Prepared::new(raw.validate().unwrap()).await.unwrap();
    let instance = Instance {
        addr: prepared.addr(),
        first_admin: prepared.take_first_admin(),
        late_first_admin: prepared.take_late_first_admin(),
    };
    tokio::spawn(prepared.run(std::future::pending()));
    instance
}

async fn post_form(addr: SocketAddr, path: &str, form: &str) -> (u16, Vec<u8>) {
    let mut c = Client::connect(addr).await.unwrap();
    c.request("POST", path, &[], "application/x-www-form-urlencoded", form)
        .await
        .unwrap()
}

async fn refresh(addr: SocketAddr, token: &str) -> (u16, Vec<u8>) {
    post_form(
        addr,
        "/token",
        &format!("grant_type=refresh_token&refresh_token={token}"),
    )
    .await
}

fn json(body: &[u8]) -> Value {
    serde_json::from_slice(body).unwrap_or_else(|_| panic!("{}", String::from_utf8_lossy(body)))
}

async fn get(addr: SocketAddr, path: &str) -> (u16, Vec<u8>) {
    Client::connect(addr)
        .await
        .unwrap()
        .get(path, &[])
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_instances_share_one_database() {
    let Some(server) = server() else { return };
    let scratch = ScratchDatabase::create(&server).await.unwrap();
    let tmp = tempfile::tempdir().unwrap();
    let keys = tmp.path().join("keys");
    let a = start(scratch.url(), &keys).await;
    let b = start(scratch.url(), &keys).await;
    // One first admin for the shared database: the second start finds it.
    let password = a.first_admin.as_ref().unwrap().password.clone();
    assert!(b.first_admin.is_none() && b.late_first_admin.is_none());

    // Both publish the same keys, byte for byte.
    assert_eq!(
        get(a.addr, "/.well-known/jwks.json").await,
        get(b.addr, "/.well-known/jwks.json").await
    );

    // Log in on A, refresh on B, and the old token again on A within the
    // retry window: the very same pair (the replay is in the database).
    let login = common::login(a.addr, "admin", &password).await;
    let first = login["refresh_token"].as_str().unwrap().to_owned();
    let (status, rotated) = refresh(b.addr, &first).await;
    assert_eq!(status, 200, "{}", String::from_utf8_lossy(&rotated));
    assert_eq!(refresh(a.addr, &first).await, (200, rotated.clone()));

    // Twelve uses of one token at once, alternating between the instances:
    // one rotation, everyone gets its pair.
    let current = json(&rotated)["refresh_token"].as_str().unwrap().to_owned();
    let racers: Vec<_> = (0..12)
        .map(|i| {
            let addr = if i % 2 == 0 { a.addr } else { b.addr };
            let token = current.clone();
            tokio::spawn(async move { refresh(addr, &token).await })
        })
        .collect();
    let mut answers = Vec::new();
    for racer in racers {
        answers.push(racer.await.unwrap());
    }
    assert!(
        answers.iter().all(|(status, _)| *status == 200),
        "{answers:?}"
    );
    assert!(
        answers.windows(2).all(|w| w[0].1 == w[1].1),
        "every racer must get the one rotation's pair"
    );
    let db = tessera_issuer::db::Db::connect(scratch.url())
        .await
        .unwrap();
    assert_eq!(
        db.count_sessions().await.unwrap(),
        (1, 3),
        "login + 2 rotations"
    );

    // Revoke on B; A refuses the family at once.
    let latest = json(&answers[0].1)["refresh_token"]
        .as_str()
        .unwrap()
        .to_owned();
    let (status, _) = post_form(b.addr, "/revoke", &format!("token={latest}")).await;
    assert_eq!(status, 200);
    let (status, body) = refresh(a.addr, &latest).await;
    assert_eq!(
        (status, json(&body)["error"].clone()),
        (400, "invalid_grant".into())
    );

    // A user added by the CLI (on the shared database) logs in on either.
    let out = common::cli(&["users", "add", "carol", "--password-stdin"])
        .args(["--database", scratch.url()])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .and_then(|mut child| {
            use std::io::Write as _;
            child
                .stdin
                .take()
                .unwrap()
                .write_all(b"a long enough password\n")?;
            child.wait_with_output()
        })
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    for instance in [&a, &b] {
        common::login(instance.addr, "carol", "a long enough password").await;
    }
}

/// A TCP proxy in front of PostgreSQL that the test can take down (new
/// connections are closed at once) and cut (every open connection dropped),
/// which is what clients of a restarting server see.
struct Proxy {
    addr: SocketAddr,
    up: Arc<AtomicBool>,
    cut: tokio::sync::watch::Sender<u64>,
}

impl Proxy {
    async fn start(target: SocketAddr) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let up = Arc::new(AtomicBool::new(false));
        let (cut, _) = tokio::sync::watch::channel(0u64);
        let (accepting, cuts) = (Arc::clone(&up), cut.clone());
        tokio::spawn(async move {
            while let Ok((mut inbound, _)) = listener.accept().await {
                if !accepting.load(Ordering::SeqCst) {
                    continue; // dropped: closed at once
                }
                let mut cut = cuts.subscribe();
                tokio::spawn(async move {
                    let Ok(mut outbound) = TcpStream::connect(target).await else {
                        return;
                    };
                    tokio::select! {
                        _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound) => {}
                        _ = cut.changed() => {}
                    }
                });
            }
        });
        Self { addr, up, cut }
    }

    fn set_up(&self, up: bool) {
        self.up.store(up, Ordering::SeqCst);
    }

    /// Drops every open connection.
    fn cut(&self) {
        self.cut.send_modify(|generation| *generation += 1);
    }
}

/// `url` with its `host:port` replaced by `addr`; and the `host:port` it had.
fn redirect(url: &str, addr: SocketAddr) -> (String, SocketAddr) {
    let (scheme, rest) = url.split_once("://").unwrap();
    let (authority, path) = rest.split_once('/').unwrap_or((rest, ""));
    let (userinfo, host) = match authority.rsplit_once('@') {
        Some((user, host)) => (format!("{user}@"), host),
        None => (String::new(), authority),
    };
    let host = if host.contains(':') {
        host.to_owned()
    } else {
        format!("{host}:5432")
    };
    let target = std::net::ToSocketAddrs::to_socket_addrs(&host)
        .unwrap()
        .next()
        .unwrap();
    (format!("{scheme}://{userinfo}{addr}/{path}"), target)
}

/// Refresh chains that keep going through an outage: a 503 means "the same
/// token again shortly" (if the rotation committed before the connection
/// died, the retry gets the same pair back). Any other refusal is a failure.
async fn chain(
    addr: SocketAddr,
    mut token: String,
    stop: Arc<AtomicBool>,
    counts: Arc<[AtomicU64; 2]>,
) -> String {
    let deadline = Instant::now() + Duration::from_secs(60);
    while !stop.load(Ordering::SeqCst) && Instant::now() < deadline {
        match refresh(addr, &token).await {
            (200, body) => {
                token = json(&body)["refresh_token"].as_str().unwrap().to_owned();
                counts[0].fetch_add(1, Ordering::SeqCst);
            }
            (503, _) => {
                counts[1].fetch_add(1, Ordering::SeqCst);
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            (status, body) => panic!(
                "refresh during the outage test: {status} {}",
                String::from_utf8_lossy(&body)
            ),
        }
    }
    token
}

async fn wait_ready(addr: SocketAddr, within: Duration) {
    let deadline = Instant::now() + within;
    loop {
        let (status, body) = get(addr, "/readyz").await;
        if status == 200 {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "not ready after {within:?}: {}",
            String::from_utf8_lossy(&body)
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_down_at_start_and_restarted_mid_traffic() {
    let Some(server) = server() else { return };
    let scratch = ScratchDatabase::create(&server).await.unwrap();
    let (_, target) = redirect(scratch.url(), "127.0.0.1:1".parse().unwrap());
    let proxy = Proxy::start(target).await;
    let (url, _) = redirect(scratch.url(), proxy.addr);
    let tmp = tempfile::tempdir().unwrap();

    // Unreachable at start: the issuer starts anyway, not ready, and answers
    // requests that need the database 503 with Retry-After, never 500.
    let mut issuer = start(&url, &tmp.path().join("keys")).await;
    assert!(issuer.first_admin.is_none());
    let (status, body) = get(issuer.addr, "/readyz").await;
    assert_eq!(
        (status, json(&body)["database"].clone()),
        (503, "unavailable".into())
    );
    let mut c = Client::connect(issuer.addr).await.unwrap();
    let login = r#"{"username":"admin","password":"whatever it is"}"#;
    let (status, body) = c
        .request("POST", "/login", &[], "application/json", login)
        .await
        .unwrap();
    assert_eq!(status, 503, "{}", String::from_utf8_lossy(&body));
    assert_eq!(c.last_header("retry-after").as_deref(), Some("1"));
    assert_eq!(json(&body)["error"], "temporarily_unavailable");
    // The JWKS needs no database: served throughout.
    assert_eq!(get(issuer.addr, "/.well-known/jwks.json").await.0, 200);

    // PostgreSQL comes up: the issuer migrates, creates the first admin and
    // becomes ready without a restart.
    proxy.set_up(true);
    wait_ready(issuer.addr, Duration::from_secs(15)).await;
    let admin = issuer.late_first_admin.take().unwrap().await.unwrap();
    let mut tokens = Vec::new();
    for _ in 0..4 {
        let t = common::login(issuer.addr, "admin", &admin.password).await;
        tokens.push(t["refresh_token"].as_str().unwrap().to_owned());
    }

    // Refresh traffic; then a restart's effect: the server ends every session
    // (pg_terminate_backend, as a shutdown does), refuses connections for a
    // while, and comes back.
    let stop = Arc::new(AtomicBool::new(false));
    let counts: Arc<[AtomicU64; 2]> = Arc::new([AtomicU64::new(0), AtomicU64::new(0)]);
    let chains: Vec<_> = tokens
        .into_iter()
        .map(|t| {
            tokio::spawn(chain(
                issuer.addr,
                t,
                Arc::clone(&stop),
                Arc::clone(&counts),
            ))
        })
        .collect();
    let wait_for = |n: u64| {
        let counts = Arc::clone(&counts);
        async move {
            let deadline = Instant::now() + Duration::from_secs(30);
            while counts[0].load(Ordering::SeqCst) < n {
                assert!(Instant::now() < deadline, "refresh traffic stalled");
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        }
    };
    wait_for(100).await;
    let mut admin_conn = sqlx::PgConnection::connect(&server).await.unwrap();
    let database = scratch.url().rsplit('/').next().unwrap().to_owned();
    proxy.set_up(false);
    let terminated: Vec<bool> = sqlx::query_scalar(
        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity
         WHERE datname = $1 AND pid <> pg_backend_pid()",
    )
    .bind(&database)
    .fetch_all(&mut admin_conn)
    .await
    .unwrap();
    assert!(!terminated.is_empty(), "the issuer had connections open");
    proxy.cut();
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let (status, _) = get(issuer.addr, "/readyz").await;
    assert_eq!(status, 503, "not ready while the database is down");
    let before = counts[0].load(Ordering::SeqCst);
    proxy.set_up(true);
    wait_ready(issuer.addr, Duration::from_secs(15)).await;
    wait_for(before + 100).await;
    stop.store(true, Ordering::SeqCst);
    let mut last = Vec::new();
    for c in chains {
        last.push(c.await.unwrap());
    }
    let rotations = counts[0].load(Ordering::SeqCst);
    let unavailable = counts[1].load(Ordering::SeqCst);
    eprintln!("{rotations} rotations, {unavailable} answers 503 during the outage");
    assert!(unavailable > 0, "the outage was felt (503s)");
    // Every chain is intact: its last token still rotates.
    for token in last {
        assert_eq!(refresh(issuer.addr, &token).await.0, 200);
    }
    admin_conn.close().await.unwrap();
}

/// With the keyring in an unreachable database there is nothing to sign with
/// or publish: the issuer starts anyway, not ready, answering 503 (JWKS
/// included), and serves once the database answers.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_database_keyring_unreachable_at_start() {
    use std::os::unix::fs::PermissionsExt as _;
    let Some(server) = server() else { return };
    let scratch = ScratchDatabase::create(&server).await.unwrap();
    let (_, target) = redirect(scratch.url(), "127.0.0.1:1".parse().unwrap());
    let proxy = Proxy::start(target).await;
    let (url, _) = redirect(scratch.url(), proxy.addr);
    let tmp = tempfile::tempdir().unwrap();
    let kek = tmp.path().join("kek");
    std::fs::write(&kek, tessera_issuer::db::keyring::Kek::generate_text()).unwrap();
    std::fs::set_permissions(&kek, std::fs::Permissions::from_mode(0o600)).unwrap();
    let mut issuer = start_with(&url, &tmp.path().join("keys"), |raw| {
        raw.keyring = Some(tessera_issuer::config::KeyringKind::Database);
        raw.key_encryption_key_file = Some(kek.clone());
    })
    .await;

    let (status, body) = get(issuer.addr, "/readyz").await;
    let ready = json(&body);
    assert_eq!(status, 503);
    assert_eq!(ready["keyring"], "unavailable");
    assert!(ready["active_kid"].is_null());
    let mut c = Client::connect(issuer.addr).await.unwrap();
    let (status, body) = c.get("/.well-known/jwks.json", &[]).await.unwrap();
    assert_eq!(status, 503, "{}", String::from_utf8_lossy(&body));
    assert_eq!(c.last_header("retry-after").as_deref(), Some("1"));
    assert!(
        !tmp.path().join("keys").exists(),
        "no file keyring as a fallback"
    );

    proxy.set_up(true);
    wait_ready(issuer.addr, Duration::from_secs(15)).await;
    let (status, body) = get(issuer.addr, "/.well-known/jwks.json").await;
    assert_eq!(status, 200);
    assert_eq!(json(&body)["keys"].as_array().unwrap().len(), 2);
    let admin = issuer.late_first_admin.take().unwrap().await.unwrap();
    let token = common::login(issuer.addr, "admin", &admin.password).await;
    assert_eq!(
        common::kid_of(token["access_token"].as_str().unwrap()),
        json(&body)["keys"][0]["kid"].as_str().unwrap(),
        "signed with the active key the JWKS lists first"
    );
}

/// A logout on instance A reaches a resource server that follows instance
/// B's feed (and fetches B's JWKS): B's copy of the list refreshes from the
/// shared database within a second, the resource server within one poll.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_revocation_on_one_instance_reaches_resource_servers_polling_the_other() {
    let Some(server) = server() else { return };
    let scratch = ScratchDatabase::create(&server).await.unwrap();
    let tmp = tempfile::tempdir().unwrap();
    let keys = tmp.path().join("keys");
    let a = start(scratch.url(), &keys).await;
    let b = start(scratch.url(), &keys).await;
    let password = a.first_admin.as_ref().unwrap().password.clone();

    let poll = Duration::from_millis(200);
    let mut feed = tessera_verifier::RevocationConfig::default();
    feed.url = Some(format!("http://{}/revocations", b.addr));
    feed.poll_interval = poll;
    let mut config = tessera_verifier::VerifierConfig::new(ISSUER, ["tessera"]).with_jwks(
        tessera_verifier::JwksSource::Url(format!("http://{}/.well-known/jwks.json", b.addr)),
    );
    config.revocations = Some(feed);
    let verifier =
        tessera_verifier::Verifier::start(config, Arc::new(tessera_verifier::SystemClock)).unwrap();
    let resource = common::serve_resource(verifier.clone()).await;

    let logged_out = common::login(a.addr, "admin", &password).await["access_token"]
        .as_str()
        .unwrap()
        .to_owned();
    let kept = common::login(a.addr, "admin", &password).await["access_token"]
        .as_str()
        .unwrap()
        .to_owned();
    assert_eq!(common::profile(resource, &logged_out).await, 200);
    assert_eq!(common::profile(resource, &kept).await, 200);

    let (status, _) = common::logout(a.addr, &logged_out).await;
    assert_eq!(status, 204);
    let started = Instant::now();
    while common::profile(resource, &logged_out).await != 401 {
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "B's resource server still accepts the token A logged out"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let took = started.elapsed();
    eprintln!("logout on A refused via B's feed after {took:?}");
    assert!(
        took <= tessera_issuer::feed::REFRESH_EVERY + poll + Duration::from_millis(500),
        "{took:?}"
    );
    assert_eq!(common::profile(resource, &kept).await, 200);
}
