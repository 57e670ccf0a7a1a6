//! `tessera-load soak --minutes N`: the whole system for a long time, under
//! steady traffic, while things break (issue 21).
//!
//! Processes, all real binaries on loopback: a PostgreSQL server of its own
//! (initdb in a scratch directory), two issuers sharing it (A and B, one
//! keyring directory), one issuer on SQLite (C, its database on a 512 MB
//! tmpfs), and two resource servers following the PostgreSQL pair (R1 through
//! A; R2 through B's JWKS and feed). Traffic: logins, refreshes,
//! verifications of fresh and repeated tokens at both resource servers, and
//! logouts, each followed until both resource servers refuse the token.
//!
//! Faults, at fixed points of the run: the key rotates every `rotate_every`
//! (the operator CLI, both keyrings); PostgreSQL restarts once; B is killed
//! with SIGKILL and started again; R2 is restarted; C's disk fills up and is
//! freed. Each fault opens an *announced window* for the processes it
//! affects.
//!
//! What it asserts (exit 1 and the list if any fails): every request outside
//! an announced window got its expected answer; inside one, the only other
//! answers are `503` with `Retry-After` or a refused connection to a process
//! that is down; no `500`, ever; no refresh family half-rotated (every live
//! session has exactly one unused token); every logout refused at both
//! resource servers within one poll after their feed answers again; every
//! process's RSS flat after warm-up (growth under 10 %); and, on runs long
//! enough for housekeeping to have deleted what expired, the session and
//! token tables no larger at the end than at mid-run.

use std::collections::HashMap;
use std::io::BufRead as _;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail, ensure};
use tessera_bench::Client;

/// How the soak runs.
pub(crate) struct SoakOptions {
    pub(crate) duration: Duration,
    pub(crate) bin_dir: PathBuf,
    pub(crate) out: Option<PathBuf>,
    /// The directory of PostgreSQL's `initdb` and `pg_ctl`.
    pub(crate) postgres_bin: Option<PathBuf>,
}

const PASSWORD: &str = "soak-password-0123";
/// The resource servers' feed poll interval.
const POLL: Duration = Duration::from_millis(500);
/// Grace after a fault ends before answers must be normal again.
const RECOVERY: f64 = 15.0;
/// Beyond one poll, what a revocation may take to reach a resource server
/// (the issuer's cache of its feed document, scheduling).
const PROPAGATION_SLACK: f64 = 2.5;
/// Requests give up after this long (a hang is a failure).
const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);
const WORKERS_PG: usize = 6;
const WORKERS_SQLITE: usize = 2;

/// What a request was sent to; faults open windows for these.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Target {
    A,
    B,
    C,
    R1,
    R2,
}

/// Which windows excuse a target's failures: its own, and the faults of
/// what it depends on (the PostgreSQL pair on PostgreSQL).
fn depends_on(target: Target) -> &'static [Fault] {
    match target {
        Target::A => &[Fault::Postgres],
        Target::B => &[Fault::Postgres, Fault::KillB],
        Target::C => &[Fault::DiskFull],
        Target::R1 => &[],
        Target::R2 => &[Fault::RestartR2],
    }
}

/// Which windows delay a resource server's feed.
fn feed_depends_on(target: Target) -> &'static [Fault] {
    match target {
        Target::R1 => &[Fault::Postgres],
        _ => &[Fault::Postgres, Fault::KillB, Fault::RestartR2],
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Fault {
    Postgres,
    KillB,
    RestartR2,
    DiskFull,
}

#[derive(Debug, Clone, Copy)]
struct Window {
    fault: Fault,
    from: f64,
    /// `None` while the fault lasts.
    to: Option<f64>,
}

/// One request's outcome.
#[derive(Debug, Clone)]
struct Outcome {
    at: f64,
    target: Target,
    op: &'static str,
    expected: u16,
    /// The status and whether `Retry-After` came with it, or why no answer.
    got: Result<(u16, bool), String>,
}

#[derive(Debug, Clone, Copy)]
struct Propagation {
    logout_at: f64,
    rs: Target,
    /// When the resource server first refused the token (`None`: never,
    /// within the check's bound).
    refused_at: Option<f64>,
}

/// Everything the run records, shared by its tasks.
struct Record {
    start: Instant,
    outcomes: Mutex<Vec<Outcome>>,
    windows: Mutex<Vec<Window>>,
    propagation: Mutex<Vec<Propagation>>,
    /// `(seconds, process, incarnation, RSS KiB)`.
    rss: Mutex<Vec<(f64, &'static str, u32, u64)>>,
    counts: Mutex<HashMap<&'static str, u64>>,
    notes: Mutex<Vec<String>>,
    ok_requests: AtomicU64,
}

impl Record {
    fn now(&self) -> f64 {
        self.start.elapsed().as_secs_f64()
    }

    fn open(&self, fault: Fault) {
        let from = self.now();
        lock(&self.windows).push(Window {
            fault,
            from,
            to: None,
        });
    }

    fn close(&self, fault: Fault) {
        let now = self.now();
        for w in lock(&self.windows).iter_mut() {
            if w.fault == fault && w.to.is_none() {
                w.to = Some(now);
            }
        }
    }

    fn count(&self, what: &'static str) {
        *lock(&self.counts).entry(what).or_default() += 1;
    }

    fn note(&self, text: String) {
        println!("  [{:>7.1}s] {text}", self.now());
        lock(&self.notes).push(text);
    }

    /// Whether a failure at `at` on `target` falls in an announced window.
    fn excused(&self, target: Target, at: f64) -> bool {
        lock(&self.windows).iter().any(|w| {
            depends_on(target).contains(&w.fault)
                && at >= w.from - 0.5
                && w.to.is_none_or(|to| at <= to + RECOVERY)
        })
    }

    /// When `rs`'s feed was last unavailable up to `at` (a window's end).
    fn feed_recovered_by(&self, rs: Target, from: f64, until: f64) -> f64 {
        lock(&self.windows)
            .iter()
            .filter(|w| feed_depends_on(rs).contains(&w.fault))
            .filter(|w| w.from <= until && w.to.is_none_or(|to| to >= from))
            .map(|w| w.to.unwrap_or(until))
            .fold(from, f64::max)
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// A server process: its output drained, its log file kept.
struct Proc {
    name: &'static str,
    incarnation: u32,
    child: Child,
    addr: SocketAddr,
}

impl Proc {
    /// Starts `bin` with `args`; its first stdout line names its address.
    fn start(
        name: &'static str,
        incarnation: u32,
        bin: &Path,
        args: &[String],
        logs: &Path,
    ) -> anyhow::Result<Self> {
        let log = std::fs::File::create(logs.join(format!("{name}-{incarnation}.log")))?;
        let mut cmd = Command::new(bin);
        cmd.args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(log);
        for (var, _) in std::env::vars_os() {
            if var.to_string_lossy().starts_with("TESSERA_") {
                cmd.env_remove(var);
            }
        }
        let mut child = cmd
            .spawn()
            .with_context(|| format!("starting {}", bin.display()))?;
        let stdout = child.stdout.take().context("stdout")?;
        let mut lines = std::io::BufReader::new(stdout).lines();
        let first = lines.next().context("no output")??;
        let addr = first
            .split_once("listening on http://")
            .with_context(|| format!("{name}: no address line: {first}"))?
            .1
            .parse()?;
        std::thread::spawn(move || for _ in lines.map_while(Result::ok) {});
        Ok(Self {
            name,
            incarnation,
            child,
            addr,
        })
    }

    fn rss_kib(&self) -> Option<u64> {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id())).ok()?;
        status
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))?
            .trim()
            .trim_end_matches("kB")
            .trim()
            .parse()
            .ok()
    }

    /// SIGKILL: no shutdown at all.
    fn kill_hard(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// SIGTERM, and wait for the graceful exit.
    fn stop(&mut self) -> anyhow::Result<()> {
        let status = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status()?;
        ensure!(status.success(), "kill -TERM {}", self.name);
        let exit = self.child.wait()?;
        ensure!(
            exit.success(),
            "{} exited with {exit} on SIGTERM",
            self.name
        );
        Ok(())
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// PostgreSQL of the soak's own, in a scratch directory.
struct Postgres {
    bin: PathBuf,
    data: PathBuf,
    port: u16,
    /// Run its commands as the `postgres` user (we are root, which
    /// PostgreSQL refuses).
    as_postgres: bool,
}

impl Postgres {
    fn command(&self, tool: &str) -> Command {
        let path = self.bin.join(tool);
        if self.as_postgres {
            let mut c = Command::new("runuser");
            c.args(["-u", "postgres", "--"]).arg(path);
            c
        } else {
            Command::new(path)
        }
    }

    fn init(bin: PathBuf, dir: &Path) -> anyhow::Result<Self> {
        use std::os::unix::fs::PermissionsExt as _;
        let as_postgres = running_as_root();
        let parent = dir.join("pg");
        std::fs::create_dir_all(&parent)?;
        // The scratch directory is private (0700): the postgres user needs
        // a way in to its own data directory.
        for d in [dir, parent.as_path()] {
            std::fs::set_permissions(d, std::fs::Permissions::from_mode(0o755))?;
        }
        let data = parent.join("data");
        let port = free_port()?;
        let pg = Self {
            bin,
            data,
            port,
            as_postgres,
        };
        if as_postgres {
            let status = Command::new("install")
                .args(["-d", "-o", "postgres", "-m", "0700"])
                .arg(&pg.data)
                .status()?;
            ensure!(status.success(), "creating the PostgreSQL data directory");
        }
        let out = pg
            .command("initdb")
            .args(["--auth=trust", "-U", "postgres", "-E", "UTF8", "-D"])
            .arg(&pg.data)
            .output()?;
        ensure!(
            out.status.success(),
            "initdb: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        pg.start()?;
        Ok(pg)
    }

    fn url(&self) -> String {
        format!("postgres://postgres@127.0.0.1:{}/postgres", self.port)
    }

    fn start(&self) -> anyhow::Result<()> {
        let options = format!("-p {} -h 127.0.0.1 -k {}", self.port, self.data.display());
        let out = self
            .command("pg_ctl")
            .args(["start", "-w", "-t", "60", "-D"])
            .arg(&self.data)
            .args(["-o", &options, "-l"])
            .arg(self.data.join("server.log"))
            .output()?;
        ensure!(
            out.status.success(),
            "pg_ctl start: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        Ok(())
    }

    fn stop(&self) -> anyhow::Result<()> {
        let out = self
            .command("pg_ctl")
            .args(["stop", "-w", "-m", "fast", "-D"])
            .arg(&self.data)
            .output()?;
        ensure!(
            out.status.success(),
            "pg_ctl stop: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        Ok(())
    }
}

impl Drop for Postgres {
    fn drop(&mut self) {
        let _ = self
            .command("pg_ctl")
            .args(["stop", "-w", "-m", "immediate", "-D"])
            .arg(&self.data)
            .output();
    }
}

fn running_as_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|o| o.stdout.trim_ascii() == b"0")
}

fn free_port() -> anyhow::Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}

/// PostgreSQL's server binaries: `--postgres-bin`, `pg_config --bindir`, or
/// the newest `/usr/lib/postgresql/*/bin`.
pub(crate) fn find_postgres_bin(given: Option<PathBuf>) -> Option<PathBuf> {
    let has_tools = |d: &Path| d.join("initdb").is_file() && d.join("pg_ctl").is_file();
    if let Some(dir) = given {
        return has_tools(&dir).then_some(dir);
    }
    if let Ok(out) = Command::new("pg_config").arg("--bindir").output() {
        let dir = PathBuf::from(String::from_utf8_lossy(&out.stdout).trim());
        if has_tools(&dir) {
            return Some(dir);
        }
    }
    let mut versions: Vec<PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
        .ok()?
        .filter_map(|e| e.ok().map(|e| e.path().join("bin")))
        .filter(|d| has_tools(d))
        .collect();
    versions.sort();
    versions.pop()
}

/// The issuer settings every instance shares: lifetimes short enough for
/// housekeeping to matter within the run.
fn issuer_args(
    listen: &str,
    issuer_url: Option<&str>,
    database: &str,
    keys: &Path,
    jwks_cache: Duration,
) -> Vec<String> {
    let mut args: Vec<String> = [
        "serve",
        "--listen",
        listen,
        "--database",
        database,
        "--keys-reload-interval",
        "500ms",
        "--access-token-lifetime",
        "300s",
        "--refresh-idle-lifetime",
        "120s",
        "--refresh-absolute-lifetime",
        "240s",
        "--shutdown-grace",
        "2s",
    ]
    .iter()
    .map(|s| (*s).to_owned())
    .collect();
    args.extend([
        "--jwks-cache-lifetime".to_owned(),
        format!("{}s", jwks_cache.as_secs()),
        "--keys-dir".to_owned(),
        keys.display().to_string(),
    ]);
    if let Some(url) = issuer_url {
        args.extend(["--issuer-url".to_owned(), url.to_owned()]);
    }
    args
}

fn rs_args(listen: &str, issuer_url: &str, via: Option<SocketAddr>) -> Vec<String> {
    let mut args: Vec<String> = vec![
        "--issuer".into(),
        issuer_url.into(),
        "--listen".into(),
        listen.into(),
        "--revocation-poll-ms".into(),
        POLL.as_millis().to_string(),
        "--unknown-kid-cooldown".into(),
        "1".into(),
    ];
    if let Some(b) = via {
        args.extend([
            "--jwks-url".into(),
            format!("http://{b}/.well-known/jwks.json"),
            "--revocation-feed-url".into(),
            format!("http://{b}/revocations"),
        ]);
    }
    args
}

/// The user traffic worker `n` logs in as: one each, as people are (the
/// login throttle counts per user: one user logging in from six places at
/// once through a database restart would be throttled, rightly).
fn user_name(n: usize) -> String {
    format!("soak-{n}")
}

/// Adds a user with the issuer's own CLI.
fn add_user(issuer_bin: &Path, database: &str, keys: &Path, name: &str) -> anyhow::Result<()> {
    use std::io::Write as _;
    let mut child = Command::new(issuer_bin)
        .args([
            "users",
            "add",
            name,
            "--password-stdin",
            "--database",
            database,
        ])
        .arg("--keys-dir")
        .arg(keys)
        .env_remove("TESSERA_CONFIG")
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()?;
    child
        .stdin
        .take()
        .context("stdin")?
        .write_all(format!("{PASSWORD}\n").as_bytes())?;
    let out = child.wait_with_output()?;
    ensure!(
        out.status.success(),
        "users add: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    Ok(())
}

/// Rotates a keyring with the operator CLI, under the service's rules.
fn rotate(issuer_bin: &Path, keys: &Path, jwks_cache: Duration) -> anyhow::Result<String> {
    let out = Command::new(issuer_bin)
        .args(["keys", "rotate", "--access-token-lifetime", "300s"])
        .arg("--jwks-cache-lifetime")
        .arg(format!("{}s", jwks_cache.as_secs()))
        .arg("--keys-dir")
        .arg(keys)
        .env_remove("TESSERA_CONFIG")
        .output()?;
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    ensure!(out.status.success(), "keys rotate: {text}");
    Ok(text)
}

/// Polls `GET /readyz` until 200.
async fn wait_ready(addr: SocketAddr, within: Duration) -> anyhow::Result<()> {
    let start = Instant::now();
    while start.elapsed() < within {
        if let Ok(mut c) = Client::connect(addr).await
            && let Ok(Ok((200, _))) =
                tokio::time::timeout(Duration::from_secs(2), c.get("/readyz", &[])).await
        {
            return Ok(());
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    bail!("{addr} not ready within {within:?}")
}

/// The addresses traffic goes to, and which of them are up.
struct Topology {
    a: SocketAddr,
    b: SocketAddr,
    c: SocketAddr,
    r1: SocketAddr,
    r2: SocketAddr,
    b_up: AtomicBool,
    r2_up: AtomicBool,
    stop: AtomicBool,
}

impl Topology {
    fn addr(&self, t: Target) -> SocketAddr {
        match t {
            Target::A => self.a,
            Target::B => self.b,
            Target::C => self.c,
            Target::R1 => self.r1,
            Target::R2 => self.r2,
        }
    }
}

/// One traffic worker's connections, reopened after any failure.
struct Conns {
    topo: Arc<Topology>,
    rec: Arc<Record>,
    open: HashMap<Target, Client>,
}

impl Conns {
    /// Sends a request (`route`: `"POST /login"`) and records its outcome;
    /// the body if it got the expected status.
    async fn send(
        &mut self,
        target: Target,
        op: &'static str,
        route: &str,
        headers: &[&str],
        body: &str,
        expected: u16,
    ) -> Option<Vec<u8>> {
        let (method, path) = route.split_once(' ').unwrap_or(("GET", route));
        let got = self.exchange(target, method, path, headers, body).await;
        let at = self.rec.now();
        let ok = matches!(&got, Ok((status, _, _)) if *status == expected);
        let answer = match &got {
            Ok((_, _, answer)) if ok => Some(answer.clone()),
            _ => None,
        };
        if ok {
            self.rec.ok_requests.fetch_add(1, Ordering::Relaxed);
        } else {
            lock(&self.rec.outcomes).push(Outcome {
                at,
                target,
                op,
                expected,
                got: got.map(|(s, retry, _)| (s, retry)),
            });
        }
        answer
    }

    /// One request, as an HTTP/1.1 client should make it: a connection the
    /// server said it closes (`Connection: close`, as after its
    /// `max_connection_age`) is not reused, and a request that fails on a
    /// reused connection before any answer (the server closed it while idle,
    /// the race RFC 9112 §9.3.1 describes) is sent once more on a new one. A
    /// refresh sent twice that way is safe: the retry window answers the
    /// second with the first's pair.
    async fn exchange(
        &mut self,
        target: Target,
        method: &str,
        path: &str,
        headers: &[&str],
        body: &str,
    ) -> Result<(u16, bool, Vec<u8>), String> {
        let content_type = if body.starts_with('{') {
            "application/json"
        } else {
            "application/x-www-form-urlencoded"
        };
        for attempt in 0..2 {
            let reused = self.open.contains_key(&target);
            if !reused {
                let client = Client::connect(self.topo.addr(target))
                    .await
                    .map_err(|e| format!("connect: {e}"))?;
                self.open.insert(target, client);
            }
            let client = self.open.get_mut(&target).ok_or("no connection")?;
            let result = tokio::time::timeout(
                REQUEST_TIMEOUT,
                client.request(method, path, headers, content_type, body),
            )
            .await;
            match result {
                Ok(Ok((status, answer))) => {
                    let retry = client.last_header("retry-after").is_some();
                    if client
                        .last_header("connection")
                        .is_some_and(|v| v.eq_ignore_ascii_case("close"))
                    {
                        self.open.remove(&target);
                    }
                    return Ok((status, retry, answer));
                }
                Ok(Err(e)) => {
                    self.open.remove(&target);
                    if !(reused && attempt == 0) {
                        return Err(format!("{e}"));
                    }
                }
                Err(_) => {
                    self.open.remove(&target);
                    return Err(format!("no answer within {REQUEST_TIMEOUT:?}"));
                }
            }
        }
        Err("connection closed twice".to_owned())
    }
}

fn field(body: &[u8], name: &str) -> Option<String> {
    serde_json::from_slice::<serde_json::Value>(body).ok()?[name]
        .as_str()
        .map(str::to_owned)
}

/// One traffic worker on an issuer (the PostgreSQL pair, or C), until stop.
async fn worker(topo: Arc<Topology>, rec: Arc<Record>, sqlite: bool, n: usize) {
    let mut conns = Conns {
        topo: Arc::clone(&topo),
        rec: Arc::clone(&rec),
        open: HashMap::new(),
    };
    let login = serde_json::json!({"username": user_name(n), "password": PASSWORD}).to_string();
    let mut turn = n;
    while !topo.stop.load(Ordering::Relaxed) {
        turn += 1;
        let issuer = |k: usize| {
            if sqlite {
                Target::C
            } else if k % 2 == 1 && topo.b_up.load(Ordering::Relaxed) {
                Target::B
            } else {
                Target::A
            }
        };
        let Some(body) = conns
            .send(issuer(turn), "login", "POST /login", &[], &login, 200)
            .await
        else {
            tokio::time::sleep(Duration::from_millis(200)).await;
            continue;
        };
        rec.count("logins");
        let (Some(mut access), Some(mut refresh)) =
            (field(&body, "access_token"), field(&body, "refresh_token"))
        else {
            rec.note(format!(
                "login answer without tokens: {}",
                String::from_utf8_lossy(&body)
            ));
            continue;
        };
        let mut broken = false;
        for round in 0..4 {
            if !sqlite {
                let bearer = format!("Authorization: Bearer {access}");
                let mut servers = vec![Target::R1];
                if topo.r2_up.load(Ordering::Relaxed) {
                    servers.push(Target::R2);
                }
                for rs in servers {
                    // A fresh token, then the same again (the token cache).
                    for op in ["verify fresh", "verify repeated"] {
                        if conns
                            .send(rs, op, "GET /profile", &[&bearer], "", 200)
                            .await
                            .is_some()
                        {
                            rec.count("verifications");
                        }
                    }
                }
            }
            if round == 3 {
                break;
            }
            let form = format!("grant_type=refresh_token&refresh_token={refresh}");
            match conns
                .send(
                    issuer(turn + round + 1),
                    "refresh",
                    "POST /token",
                    &[],
                    &form,
                    200,
                )
                .await
            {
                Some(body) => {
                    rec.count("refreshes");
                    match (field(&body, "access_token"), field(&body, "refresh_token")) {
                        (Some(a), Some(r)) => (access, refresh) = (a, r),
                        _ => {
                            broken = true;
                            break;
                        }
                    }
                }
                None => {
                    // The family's state is unknown now: start another.
                    broken = true;
                    break;
                }
            }
        }
        if broken {
            continue;
        }
        let bearer = format!("Authorization: Bearer {access}");
        let target = issuer(turn);
        if conns
            .send(target, "logout", "POST /logout", &[&bearer], "", 204)
            .await
            .is_none()
        {
            continue;
        }
        rec.count("logouts");
        if !sqlite {
            let logout_at = rec.now();
            for rs in [Target::R1, Target::R2] {
                tokio::spawn(watch_refusal(
                    Arc::clone(&topo),
                    Arc::clone(&rec),
                    rs,
                    access.clone(),
                    logout_at,
                ));
            }
        }
    }
}

/// Polls `rs` with a logged-out token until it is refused (401), at most a
/// minute; records when.
async fn watch_refusal(
    topo: Arc<Topology>,
    rec: Arc<Record>,
    rs: Target,
    access: String,
    logout_at: f64,
) {
    let bearer = format!("Authorization: Bearer {access}");
    let mut client: Option<Client> = None;
    let mut refused_at = None;
    while rec.now() < logout_at + 60.0 && !topo.stop.load(Ordering::Relaxed) {
        if client.is_none() {
            client = Client::connect(topo.addr(rs)).await.ok();
        }
        if let Some(c) = client.as_mut() {
            match tokio::time::timeout(REQUEST_TIMEOUT, c.get("/profile", &[&bearer])).await {
                Ok(Ok((401, _))) => {
                    refused_at = Some(rec.now());
                    break;
                }
                Ok(Ok(_)) => {}
                _ => client = None,
            }
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    if topo.stop.load(Ordering::Relaxed) && refused_at.is_none() {
        return; // the run ended first: not a finding
    }
    lock(&rec.propagation).push(Propagation {
        logout_at,
        rs,
        refused_at,
    });
}

/// Row counts of the tables housekeeping keeps bounded.
async fn table_rows(database: &str) -> anyhow::Result<Vec<(String, i64)>> {
    use sqlx::Connection as _;
    let tables = ["sessions", "refresh_tokens", "revocations", "audit_events"];
    let mut out = Vec::new();
    if database.starts_with("postgres") {
        let mut conn = sqlx::PgConnection::connect(database).await?;
        for t in tables {
            let n: i64 = sqlx::query_scalar(&format!("SELECT COUNT(*) FROM {t}"))
                .fetch_one(&mut conn)
                .await?;
            out.push((t.to_owned(), n));
        }
    } else {
        let mut conn = sqlx::SqliteConnection::connect(database).await?;
        for t in tables {
            let n: i64 = sqlx::query_scalar(&format!("SELECT COUNT(*) FROM {t}"))
                .fetch_one(&mut conn)
                .await?;
            out.push((t.to_owned(), n));
        }
    }
    Ok(out)
}

/// Live sessions whose unused refresh tokens are not exactly one.
async fn half_rotated(database: &str) -> anyhow::Result<i64> {
    use sqlx::Connection as _;
    let query = "SELECT COUNT(*) FROM (
        SELECT s.id FROM sessions s LEFT JOIN refresh_tokens rt ON rt.session_id = s.id
        WHERE s.revoked_at IS NULL
        GROUP BY s.id
        HAVING SUM(CASE WHEN rt.hash IS NOT NULL AND rt.used_at IS NULL THEN 1 ELSE 0 END) <> 1
    ) AS odd";
    if database.starts_with("postgres") {
        let mut conn = sqlx::PgConnection::connect(database).await?;
        Ok(sqlx::query_scalar(query).fetch_one(&mut conn).await?)
    } else {
        let mut conn = sqlx::SqliteConnection::connect(database).await?;
        Ok(sqlx::query_scalar(query).fetch_one(&mut conn).await?)
    }
}

/// A small filesystem of its own for C's database, if this machine lets us
/// mount one (root, tmpfs).
fn mount_small_disk(dir: &Path) -> Option<PathBuf> {
    let mount = dir.join("small-disk");
    std::fs::create_dir_all(&mount).ok()?;
    let ok = Command::new("mount")
        .args(["-t", "tmpfs", "-o", "size=512m,mode=0700", "tmpfs"])
        .arg(&mount)
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    ok.then_some(mount)
}

struct Unmount(Option<PathBuf>);

impl Drop for Unmount {
    fn drop(&mut self) {
        if let Some(m) = &self.0 {
            let _ = Command::new("umount").arg("-l").arg(m).status();
        }
    }
}

/// Fills the filesystem at `dir` with one file until it is full.
fn fill(dir: &Path) -> anyhow::Result<PathBuf> {
    use std::io::Write as _;
    let path = dir.join("filler");
    let mut file = std::fs::File::create(&path)?;
    let chunk = vec![0u8; 1 << 20];
    for _ in 0..4096 {
        if file.write_all(&chunk).is_err() {
            break;
        }
    }
    let _ = file.sync_all();
    Ok(path)
}

/// Runs the soak; prints the report (and writes it into `out`); fails if a
/// check failed.
pub(crate) async fn run(opts: SoakOptions) -> anyhow::Result<()> {
    let d = opts.duration.as_secs_f64();
    ensure!(d >= 60.0, "a soak needs at least a minute");
    let pg_bin = find_postgres_bin(opts.postgres_bin.clone()).context(
        "no PostgreSQL server binaries (initdb, pg_ctl): install postgresql or pass --postgres-bin",
    )?;
    let issuer_bin = opts.bin_dir.join("tessera-issuer");
    let rs_bin = opts.bin_dir.join("tessera-resource-server");
    let tmp = tempfile::tempdir()?;
    let dir = tmp.path();
    let logs = dir.join("logs");
    std::fs::create_dir_all(&logs)?;
    // Rotate every minute on long runs; about ten rotations on short ones.
    let rotate_every = Duration::from_secs_f64((d / 10.0).clamp(8.0, 60.0));
    let jwks_cache = Duration::from_secs((rotate_every.as_secs() / 2).max(4));

    println!(
        "soak: {:.0} s; PostgreSQL from {}; rotation every {:?} (JWKS cache {:?}); logs in {}",
        d,
        pg_bin.display(),
        rotate_every,
        jwks_cache,
        logs.display()
    );
    let pg = Postgres::init(pg_bin, dir)?;
    let pg_url = pg.url();
    let pg_keys = dir.join("pg-keys");
    let small = mount_small_disk(dir);
    let _unmount = Unmount(small.clone());
    let sqlite_dir = small.clone().unwrap_or_else(|| dir.join("sqlite"));
    std::fs::create_dir_all(&sqlite_dir)?;
    let sqlite_url = format!("sqlite://{}", sqlite_dir.join("c.db").display());
    let c_keys = dir.join("c-keys");

    // A first, alone on the empty database (it creates the keyring and the
    // schema), then B on the same database and keys, then C.
    let port_a = free_port()?;
    let url_a = format!("http://127.0.0.1:{port_a}");
    let a = Proc::start(
        "issuer-a",
        0,
        &issuer_bin,
        &issuer_args(
            &format!("127.0.0.1:{port_a}"),
            Some(&url_a),
            &pg_url,
            &pg_keys,
            jwks_cache,
        ),
        &logs,
    )?;
    wait_ready(a.addr, Duration::from_secs(60)).await?;
    for n in 0..WORKERS_PG {
        add_user(&issuer_bin, &pg_url, &pg_keys, &user_name(n))?;
    }
    let b_listen = format!("127.0.0.1:{}", free_port()?);
    let b_args = issuer_args(&b_listen, Some(&url_a), &pg_url, &pg_keys, jwks_cache);
    let b = Proc::start("issuer-b", 0, &issuer_bin, &b_args, &logs)?;
    wait_ready(b.addr, Duration::from_secs(60)).await?;
    let c_args = issuer_args("127.0.0.1:0", None, &sqlite_url, &c_keys, jwks_cache);
    let c = Proc::start("issuer-c", 0, &issuer_bin, &c_args, &logs)?;
    wait_ready(c.addr, Duration::from_secs(60)).await?;
    for n in 0..WORKERS_SQLITE {
        add_user(&issuer_bin, &sqlite_url, &c_keys, &user_name(n))?;
    }
    let r1 = Proc::start(
        "rs-1",
        0,
        &rs_bin,
        &rs_args("127.0.0.1:0", &url_a, None),
        &logs,
    )?;
    let r2_listen = format!("127.0.0.1:{}", free_port()?);
    let r2_args = rs_args(&r2_listen, &url_a, Some(b.addr));
    let r2 = Proc::start("rs-2", 0, &rs_bin, &r2_args, &logs)?;
    wait_ready(r1.addr, Duration::from_secs(30)).await?;
    wait_ready(r2.addr, Duration::from_secs(30)).await?;

    let topo = Arc::new(Topology {
        a: a.addr,
        b: b.addr,
        c: c.addr,
        r1: r1.addr,
        r2: r2.addr,
        b_up: AtomicBool::new(true),
        r2_up: AtomicBool::new(true),
        stop: AtomicBool::new(false),
    });
    let rec = Arc::new(Record {
        start: Instant::now(),
        outcomes: Mutex::default(),
        windows: Mutex::default(),
        propagation: Mutex::default(),
        rss: Mutex::default(),
        counts: Mutex::default(),
        notes: Mutex::default(),
        ok_requests: AtomicU64::new(0),
    });
    let mut tasks = Vec::new();
    for n in 0..WORKERS_PG {
        tasks.push(tokio::spawn(worker(
            Arc::clone(&topo),
            Arc::clone(&rec),
            false,
            n,
        )));
    }
    for n in 0..WORKERS_SQLITE {
        tasks.push(tokio::spawn(worker(
            Arc::clone(&topo),
            Arc::clone(&rec),
            true,
            n,
        )));
    }

    // The schedule, as fractions of the run.
    let duration = opts.duration;
    let frac = |f: f64| Duration::from_secs_f64(d * f);
    let mut next_rotation = rotate_every;
    let mut rotations = 0u32;
    let mut done = [false; 5];
    let mut mid_rows = Vec::new();
    let mut last_sample: Option<Instant> = None;
    let (mut b, mut r2) = (b, r2);
    let mut incarnation_b = 0;
    let mut incarnation_r2 = 0;
    while rec.start.elapsed() < duration {
        let t = rec.start.elapsed();
        if last_sample.is_none_or(|s| s.elapsed() >= Duration::from_secs(5)) {
            last_sample = Some(Instant::now());
            let now = rec.now();
            for p in [&a, &b, &c, &r1, &r2] {
                if let Some(kib) = p.rss_kib() {
                    lock(&rec.rss).push((now, p.name, p.incarnation, kib));
                }
            }
        }
        if t >= next_rotation {
            next_rotation += rotate_every;
            for keys in [&pg_keys, &c_keys] {
                match tokio::task::block_in_place(|| rotate(&issuer_bin, keys, jwks_cache)) {
                    Ok(_) => rotations += 1,
                    Err(e) => rec.note(format!("FAILED: rotation of {}: {e}", keys.display())),
                }
            }
        }
        if !done[0] && t >= frac(0.3) {
            done[0] = true;
            rec.note("PostgreSQL: stopping (fast), 3 s down, starting".to_owned());
            rec.open(Fault::Postgres);
            tokio::task::block_in_place(|| pg.stop())?;
            tokio::time::sleep(Duration::from_secs(3)).await;
            tokio::task::block_in_place(|| pg.start())?;
            rec.close(Fault::Postgres);
            rec.note("PostgreSQL: up again".to_owned());
        }
        if !done[1] && t >= frac(0.45) {
            done[1] = true;
            rec.note(format!("issuer B: SIGKILL (pid {})", b.child.id()));
            rec.open(Fault::KillB);
            topo.b_up.store(false, Ordering::Relaxed);
            b.kill_hard();
            tokio::time::sleep(Duration::from_secs(2)).await;
            incarnation_b += 1;
            b = tokio::task::block_in_place(|| {
                Proc::start("issuer-b", incarnation_b, &issuer_bin, &b_args, &logs)
            })?;
            wait_ready(b.addr, Duration::from_secs(60)).await?;
            topo.b_up.store(true, Ordering::Relaxed);
            rec.close(Fault::KillB);
            rec.note("issuer B: restarted and ready".to_owned());
        }
        if !done[2] && t >= frac(0.5) {
            done[2] = true;
            mid_rows = vec![
                ("PostgreSQL", table_rows(&pg_url).await?),
                ("SQLite", table_rows(&sqlite_url).await?),
            ];
        }
        if !done[3] && t >= frac(0.6) {
            done[3] = true;
            rec.note("resource server 2: SIGTERM, restart".to_owned());
            rec.open(Fault::RestartR2);
            topo.r2_up.store(false, Ordering::Relaxed);
            tokio::task::block_in_place(|| r2.stop())?;
            incarnation_r2 += 1;
            r2 = tokio::task::block_in_place(|| {
                Proc::start("rs-2", incarnation_r2, &rs_bin, &r2_args, &logs)
            })?;
            wait_ready(r2.addr, Duration::from_secs(30)).await?;
            topo.r2_up.store(true, Ordering::Relaxed);
            rec.close(Fault::RestartR2);
            rec.note("resource server 2: ready".to_owned());
        }
        if !done[4] && t >= frac(0.75) {
            done[4] = true;
            match &small {
                Some(disk) => {
                    rec.note("SQLite disk: filling".to_owned());
                    rec.open(Fault::DiskFull);
                    let filler = tokio::task::block_in_place(|| fill(disk))?;
                    tokio::time::sleep(Duration::from_secs(6)).await;
                    std::fs::remove_file(&filler)?;
                    rec.close(Fault::DiskFull);
                    rec.note("SQLite disk: freed".to_owned());
                }
                None => rec.note(
                    "SQLite disk: not filled (this machine lets us mount no tmpfs: not root?)"
                        .to_owned(),
                ),
            }
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    topo.stop.store(true, Ordering::Relaxed);
    for task in tasks {
        let _ = tokio::time::timeout(Duration::from_secs(30), task).await;
    }
    let end_rows = vec![
        ("PostgreSQL", table_rows(&pg_url).await?),
        ("SQLite", table_rows(&sqlite_url).await?),
    ];
    let half = [
        ("PostgreSQL", half_rotated(&pg_url).await?),
        ("SQLite", half_rotated(&sqlite_url).await?),
    ];
    let report = judge(&rec, d, rotations, &mid_rows, &end_rows, &half);
    println!("{}", report.text);
    if let Some(out) = &opts.out {
        write_section(out, &report.text)?;
        println!("written to {}", out.display());
    }
    drop((a, b, c, r1, r2));
    if !report.failures.is_empty() {
        // The processes' logs are what explains a failure: keep them.
        drop(pg);
        let logs = tmp.keep().join("logs");
        for f in report.failures.iter().take(40) {
            println!("FAILED: {f}");
        }
        bail!(
            "{} check(s) failed; the logs are kept in {}",
            report.failures.len(),
            logs.display()
        );
    }
    Ok(())
}

struct Judgement {
    text: String,
    failures: Vec<String>,
}

type Rows = Vec<(&'static str, Vec<(String, i64)>)>;

/// Applies every check to what the run recorded; the report in Markdown.
fn judge(
    rec: &Record,
    d: f64,
    rotations: u32,
    mid_rows: &Rows,
    end_rows: &Rows,
    half: &[(&str, i64)],
) -> Judgement {
    use std::fmt::Write as _;
    let mut failures = Vec::new();
    let mut text = String::new();
    let counts = lock(&rec.counts).clone();
    let count = |k: &str| counts.get(k).copied().unwrap_or(0);
    let ok = rec.ok_requests.load(Ordering::Relaxed);
    let _ = writeln!(text, "### Soak: {:.0} minutes", d / 60.0);
    let _ = writeln!(text);
    let _ = writeln!(
        text,
        "{ok} requests answered as expected ({:.0}/s): {} logins, {} refreshes, {} verifications, {} logouts; {rotations} key rotations.",
        ok as f64 / d,
        count("logins"),
        count("refreshes"),
        count("verifications"),
        count("logouts"),
    );
    for what in ["logins", "refreshes", "verifications", "logouts"] {
        if count(what) == 0 {
            failures.push(format!("no {what} at all"));
        }
    }
    // 1. Every unexpected answer: excused only inside a window, and only as
    //    a 503 with Retry-After or a connection to a process that is down.
    let outcomes = lock(&rec.outcomes).clone();
    let (mut excused, mut fives) = (0usize, 0usize);
    let mut by_kind: HashMap<String, usize> = HashMap::new();
    for o in &outcomes {
        let allowed_kind = match &o.got {
            Ok((500..=599, _)) if !matches!(o.got, Ok((503, true))) => false,
            Ok((503, true)) | Err(_) => true,
            Ok(_) => false,
        };
        if matches!(o.got, Ok((500, _))) {
            fives += 1;
        }
        let label = match &o.got {
            Ok((s, retry)) => format!(
                "{:?} {} -> {s}{}",
                o.target,
                o.op,
                if *retry { " (Retry-After)" } else { "" }
            ),
            Err(e) => format!(
                "{:?} {} -> {}",
                o.target,
                o.op,
                e.split(':').next().unwrap_or(e)
            ),
        };
        *by_kind.entry(label.clone()).or_default() += 1;
        if allowed_kind && rec.excused(o.target, o.at) {
            excused += 1;
        } else {
            failures.push(format!(
                "at {:.1} s: {label} (expected {})",
                o.at, o.expected
            ));
        }
    }
    if fives > 0 {
        failures.push(format!("{fives} answers were 500"));
    }
    let _ = writeln!(text);
    let _ = writeln!(text, "Faults and their announced windows:");
    let _ = writeln!(text);
    for w in lock(&rec.windows).iter() {
        let _ = writeln!(
            text,
            "- {:?}: {:.1} s to {} (answers may differ until {RECOVERY:.0} s later)",
            w.fault,
            w.from,
            w.to.map_or("the end".to_owned(), |t| format!("{t:.1} s"))
        );
    }
    for n in lock(&rec.notes)
        .iter()
        .filter(|n| n.contains("not filled") || n.starts_with("FAILED"))
    {
        let _ = writeln!(text, "- {n}");
        if n.starts_with("FAILED") {
            failures.push(n.clone());
        }
    }
    let _ = writeln!(text);
    let _ = writeln!(
        text,
        "Answers other than the expected one: {} in all, {excused} inside a window as allowed, {} not; 500s: {fives}.",
        outcomes.len(),
        outcomes.len() - excused
    );
    let mut kinds: Vec<_> = by_kind.into_iter().collect();
    kinds.sort_by_key(|k| std::cmp::Reverse(k.1));
    for (label, n) in kinds.iter().take(12) {
        let _ = writeln!(text, "- {n} × {label}");
    }
    // 2. Revocations reach both resource servers.
    let props = lock(&rec.propagation).clone();
    let mut delays = Vec::new();
    let mut late = 0;
    for p in &props {
        match p.refused_at {
            None => failures.push(format!(
                "a token logged out at {:.1} s was never refused by {:?}",
                p.logout_at, p.rs
            )),
            Some(at) => {
                let recovered = rec.feed_recovered_by(p.rs, p.logout_at, at);
                let deadline = recovered + POLL.as_secs_f64() + PROPAGATION_SLACK;
                if recovered <= p.logout_at {
                    delays.push(at - p.logout_at);
                }
                if at > deadline {
                    late += 1;
                    failures.push(format!(
                        "a token logged out at {:.1} s was refused by {:?} only at {at:.1} s (feed back at {recovered:.1} s)",
                        p.logout_at, p.rs
                    ));
                }
            }
        }
    }
    delays.sort_by(f64::total_cmp);
    let pick = |q: f64| {
        delays
            .get(((delays.len() as f64 - 1.0) * q).round() as usize)
            .copied()
            .unwrap_or(0.0)
    };
    let _ = writeln!(text);
    let _ = writeln!(
        text,
        "Logouts followed to both resource servers: {} (outside outages: refused after p50 {:.2} s, p99 {:.2} s, max {:.2} s; poll interval {:.1} s); late: {late}.",
        props.len(),
        pick(0.5),
        pick(0.99),
        delays.last().copied().unwrap_or(0.0),
        POLL.as_secs_f64()
    );
    // 3. No half-rotated family.
    for (db, n) in half {
        let _ = writeln!(
            text,
            "- {db}: live sessions without exactly one unused refresh token: {n}"
        );
        if *n != 0 {
            failures.push(format!("{db}: {n} refresh families half-rotated"));
        }
    }
    // 4. RSS flat after warm-up, per process incarnation.
    let _ = writeln!(text);
    let _ = writeln!(
        text,
        "| process | RSS after warm-up | at the end | growth |"
    );
    let _ = writeln!(text, "| --- | --- | --- | --- |");
    let rss = lock(&rec.rss).clone();
    let mut lives: Vec<(&str, u32)> = rss.iter().map(|(_, n, i, _)| (*n, *i)).collect();
    lives.sort_unstable();
    lives.dedup();
    for (name, inc) in lives {
        let samples: Vec<(f64, u64)> = rss
            .iter()
            .filter(|(_, n, i, _)| *n == name && *i == inc)
            .map(|(t, _, _, k)| (*t, *k))
            .collect();
        let (Some(first), Some(last)) = (samples.first(), samples.last()) else {
            continue;
        };
        let warm = first.0 + ((last.0 - first.0) * 0.25).max(30.0);
        let after: Vec<u64> = samples
            .iter()
            .filter(|(t, _)| *t >= warm)
            .map(|s| s.1)
            .collect();
        let label = if inc == 0 {
            name.to_owned()
        } else {
            format!("{name} (restarted)")
        };
        if after.len() < 6 || last.0 - warm < 120.0 {
            let _ = writeln!(
                text,
                "| {label} | {} MiB | {} MiB | too short to judge |",
                first.1 / 1024,
                last.1 / 1024
            );
            continue;
        }
        let mean = |xs: &[u64]| xs.iter().sum::<u64>() as f64 / xs.len() as f64;
        let early = mean(&after[..3]);
        let end = mean(&after[after.len() - 3..]);
        let growth = end / early - 1.0;
        let _ = writeln!(
            text,
            "| {label} | {:.1} MiB | {:.1} MiB | {:+.1} % |",
            early / 1024.0,
            end / 1024.0,
            100.0 * growth
        );
        if growth >= 0.10 {
            failures.push(format!(
                "{label}: RSS grew {:.1} % after warm-up",
                100.0 * growth
            ));
        }
    }
    // 5. Housekeeping keeps the tables bounded (once lifetimes have passed:
    //    refresh sessions live 4 minutes at most here, access tokens 5).
    let _ = writeln!(text);
    let _ = writeln!(text, "| database | table | rows at mid-run | at the end |");
    let _ = writeln!(text, "| --- | --- | --- | --- |");
    for (db, end) in end_rows {
        let mid = mid_rows
            .iter()
            .find(|(m, _)| m == db)
            .map(|(_, r)| r.clone())
            .unwrap_or_default();
        for (table, n) in end {
            let m = mid.iter().find(|(t, _)| t == table).map_or(0, |(_, n)| *n);
            let _ = writeln!(text, "| {db} | {table} | {m} | {n} |");
            let bounded = table != "audit_events";
            if bounded && d >= 900.0 && (*n as f64) > (m as f64) * 1.25 + 50.0 {
                failures.push(format!("{db}.{table}: {m} rows at mid-run, {n} at the end"));
            }
        }
    }
    let _ = writeln!(
        text,
        "\n`audit_events` is kept for at least a day (`audit_retention`), so it grows by design; the other tables must not (checked on runs of 15 minutes or more)."
    );
    let _ = writeln!(text);
    let _ = writeln!(
        text,
        "Checks: {}.",
        if failures.is_empty() {
            "all passed".to_owned()
        } else {
            format!("{} FAILED", failures.len())
        }
    );
    Judgement { text, failures }
}

/// Where the soak's section of the performance report begins and ends.
const BEGIN: &str = "<!-- soak:begin -->";
const END: &str = "<!-- soak:end -->";

/// `page` (the load report, written anew), with the soak section `out`
/// holds now appended unchanged: each tool rewrites only its own part.
pub(crate) fn carry_over(out: &Path, mut page: String) -> String {
    let current = std::fs::read_to_string(out).unwrap_or_default();
    if let (Some(b), Some(e)) = (current.find(BEGIN), current.find(END))
        && e > b
    {
        page.push('\n');
        page.push_str(&current[b..e + END.len()]);
        page.push('\n');
    }
    page
}

/// Replaces the soak section of `out` (between its markers), or appends it.
fn write_section(out: &Path, section: &str) -> anyhow::Result<()> {
    let current = std::fs::read_to_string(out).unwrap_or_default();
    let block = format!("{BEGIN}\n{section}{END}\n");
    let updated = match (current.find(BEGIN), current.find(END)) {
        (Some(b), Some(e)) if e > b => {
            format!(
                "{}{block}{}",
                &current[..b],
                &current[e + END.len()..].trim_start_matches('\n')
            )
        }
        _ => format!("{current}\n{block}"),
    };
    std::fs::write(out, updated)?;
    Ok(())
}
