//! The load report (issue #5): starts the issuer and the demo resource server
//! as real processes (release builds) on loopback, drives them with keep-alive
//! HTTP/1.1 clients, and writes `docs/PERFORMANCE.md`: every figure beside a
//! baseline measured in the same run, latency percentiles, and each server's
//! peak RSS.
//!
//! ```sh
//! scripts/perf-report.sh            # builds the release binaries, runs this
//! ```
//!
//! Loopback only; every loop is bounded by time (`--seconds` per measurement).

#![allow(clippy::print_stdout, clippy::disallowed_methods)] // a load tool prints and reads the clock

use std::fmt::Write as _;
use std::io::BufRead as _;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail, ensure};
use tessera_bench::{Client, quantile_ms};
use tessera_issuer::passwords::{Hasher, Password};

mod storage;

/// Clients flooding `/login` (the JWKS latency is sampled meanwhile).
const LOGIN_CLIENTS: usize = 64;
/// Concurrent refresh chains.
const REFRESH_CHAINS: usize = 16;
/// Connections for the cheap GET measurements.
const GET_CONNECTIONS: usize = 8;
/// Distinct tokens cycled through in the fresh-token measurement.
const FRESH_TOKENS: usize = 256;
const PASSWORD_FILE_NOTE: &str =
    "Argon2id m = 19 MiB, t = 2, p = 1 (OWASP), one check per core at once";

struct Options {
    /// A PostgreSQL server for the storage section (issue 6), if any.
    postgres: Option<String>,
    bin_dir: PathBuf,
    out: Option<PathBuf>,
    run_for: Duration,
}

fn options() -> anyhow::Result<Options> {
    let mut opts = Options {
        bin_dir: PathBuf::from("target/release"),
        out: None,
        postgres: None,
        run_for: Duration::from_secs(5),
    };
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        let mut value = || args.next().with_context(|| format!("{arg} needs a value"));
        match arg.as_str() {
            "--bin-dir" => opts.bin_dir = PathBuf::from(value()?),
            "--out" => opts.out = Some(PathBuf::from(value()?)),
            "--postgres" => opts.postgres = Some(value()?),
            "--seconds" => {
                let s: f64 = value()?.parse().context("--seconds")?;
                ensure!((0.1..=60.0).contains(&s), "--seconds: 0.1 to 60");
                opts.run_for = Duration::from_secs_f64(s);
            }
            _ => bail!(
                "usage: tessera-load [--bin-dir target/release] [--out docs/PERFORMANCE.md] [--seconds 5] [--postgres URL]"
            ),
        }
    }
    Ok(opts)
}

/// A server process; killed when dropped.
struct Server {
    child: Child,
    addr: SocketAddr,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Server {
    /// Starts `bin` with `args`; its first stdout line is `<name> listening on
    /// http://ADDR`. Returns the server and the lines after it that came at once.
    fn start(
        bin: &Path,
        args: &[&str],
        wanted_lines: usize,
    ) -> anyhow::Result<(Self, Vec<String>)> {
        let mut cmd = Command::new(bin);
        cmd.args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::null());
        for (var, _) in std::env::vars_os() {
            if var.to_string_lossy().starts_with("TESSERA_") {
                cmd.env_remove(var);
            }
        }
        let mut child = cmd
            .spawn()
            .with_context(|| format!("starting {} (built with --release?)", bin.display()))?;
        let stdout = child.stdout.take().context("stdout")?;
        let mut lines = std::io::BufReader::new(stdout).lines();
        let first = lines.next().context("no output")??;
        let addr = first
            .split_once("listening on http://")
            .context("no address line")?
            .1
            .parse()?;
        let mut rest = Vec::new();
        for _ in 0..wanted_lines {
            rest.push(lines.next().context("output ended")??);
        }
        // Keep draining so the server never blocks on a full pipe.
        std::thread::spawn(move || for _ in lines.map_while(Result::ok) {});
        Ok((Self { child, addr }, rest))
    }

    /// Peak resident set size so far (`VmHWM`), in MiB.
    fn peak_rss_mib(&self) -> anyhow::Result<f64> {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id()))?;
        let kib: f64 = status
            .lines()
            .find_map(|l| l.strip_prefix("VmHWM:"))
            .context("no VmHWM")?
            .trim()
            .trim_end_matches("kB")
            .trim()
            .parse()?;
        Ok(kib / 1024.0)
    }
}

/// Requests per second and latency percentiles of one measurement.
#[derive(Clone, Copy)]
struct Figure {
    rate: f64,
    p50: f64,
    p99: f64,
}

impl Figure {
    fn of(mut samples: Vec<Duration>, elapsed: Duration) -> Self {
        samples.sort_unstable();
        Self {
            rate: samples.len() as f64 / elapsed.as_secs_f64(),
            p50: quantile_ms(&samples, 0.5),
            p99: quantile_ms(&samples, 0.99),
        }
    }

    fn mean(a: Self, b: Self) -> Self {
        Self {
            rate: (a.rate + b.rate) / 2.0,
            p50: (a.p50 + b.p50) / 2.0,
            p99: (a.p99 + b.p99) / 2.0,
        }
    }
}

/// One request and the status it must get.
#[derive(Clone)]
struct Req {
    method: &'static str,
    path: Arc<str>,
    /// One header line (without CRLF), or empty.
    header: Arc<str>,
    /// JSON when it starts with `{`, else form-encoded; empty for none.
    body: Arc<str>,
    expect: u16,
}

/// A connection's requests: the `n`th request it sends.
type Step = Box<dyn FnMut(usize) -> Req + Send>;

/// Runs `connections` clients for `run_for`; client `i` sends the requests
/// `make(i)` describes, one after the other.
async fn drive(
    addr: SocketAddr,
    connections: usize,
    run_for: Duration,
    make: impl Fn(usize) -> Step,
) -> anyhow::Result<Figure> {
    let start = Instant::now();
    let mut tasks = Vec::new();
    for i in 0..connections {
        let mut step = make(i);
        tasks.push(tokio::spawn(async move {
            let mut client = Client::connect(addr)
                .await
                .map_err(|e| anyhow::anyhow!("{e}"))?;
            let mut samples = Vec::new();
            let begin = Instant::now();
            let mut n = 0;
            while begin.elapsed() < run_for {
                let req = step(n);
                let headers: Vec<&str> = if req.header.is_empty() {
                    vec![]
                } else {
                    vec![&req.header]
                };
                let t = Instant::now();
                let (status, answer) = client
                    .request(
                        req.method,
                        &req.path,
                        &headers,
                        content_type(&req.body),
                        &req.body,
                    )
                    .await
                    .map_err(|e| anyhow::anyhow!("{}: {e}", req.path))?;
                samples.push(t.elapsed());
                ensure!(
                    status == req.expect,
                    "{}: {status} {}",
                    req.path,
                    String::from_utf8_lossy(&answer)
                );
                n += 1;
            }
            anyhow::Ok(samples)
        }));
    }
    let mut all = Vec::new();
    for task in tasks {
        all.extend(task.await??);
    }
    Ok(Figure::of(all, start.elapsed()))
}

fn content_type(body: &str) -> &'static str {
    if body.starts_with('{') {
        "application/json"
    } else {
        "application/x-www-form-urlencoded"
    }
}

/// The same request every time.
fn repeat(req: Req) -> Step {
    Box::new(move |_| req.clone())
}

/// `GET path` with one optional header line, expecting `expect`.
fn get(path: &str, header: &str, expect: u16) -> Step {
    repeat(Req {
        method: "GET",
        path: path.into(),
        header: header.into(),
        body: "".into(),
        expect,
    })
}

async fn post_json(addr: SocketAddr, path: &str, body: &str) -> anyhow::Result<serde_json::Value> {
    let mut c = Client::connect(addr)
        .await
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    let (status, answer) = c
        .request("POST", path, &[], content_type(body), body)
        .await
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    ensure!(
        status == 200,
        "{path}: {status} {}",
        String::from_utf8_lossy(&answer)
    );
    Ok(serde_json::from_slice(&answer)?)
}

fn field(v: &serde_json::Value, name: &str) -> anyhow::Result<String> {
    Ok(v[name]
        .as_str()
        .with_context(|| format!("no {name}"))?
        .to_owned())
}

/// Raw RS256 signatures per second with `signer`, on this thread.
fn sign_rate(signer: &tessera_keyring::Signer, run_for: Duration) -> anyhow::Result<f64> {
    let start = Instant::now();
    let mut n = 0u64;
    while start.elapsed() < run_for {
        std::hint::black_box(signer.sign(b"eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJiIn0")?);
        n += 1;
    }
    Ok(n as f64 / start.elapsed().as_secs_f64())
}

/// Raw Argon2id password checks per second (the issuer's hasher and
/// parameters) on `threads` threads at once.
fn argon2_rate(threads: usize, run_for: Duration) -> anyhow::Result<f64> {
    let hasher = Hasher::new(threads)?;
    let password = Password::new("correct horse battery staple".into());
    let stored = hasher.hash(&password)?;
    let start = Instant::now();
    let counts: Vec<u64> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..threads)
            .map(|_| {
                s.spawn(|| {
                    let mut n = 0u64;
                    while start.elapsed() < run_for {
                        std::hint::black_box(hasher.check(&password, Some(&stored)));
                        n += 1;
                    }
                    n
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap_or(0)).collect()
    });
    Ok(counts.iter().sum::<u64>() as f64 / start.elapsed().as_secs_f64())
}

/// JWKS latency samples (one request every 2 ms) until `stop`.
async fn sample_jwks(
    addr: SocketAddr,
    stop: Arc<AtomicBool>,
    run_for: Duration,
) -> anyhow::Result<Figure> {
    let mut c = Client::connect(addr)
        .await
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    let mut samples = Vec::new();
    let start = Instant::now();
    while !stop.load(Ordering::Relaxed) && start.elapsed() < run_for {
        let t = Instant::now();
        let (status, _) = c
            .get("/.well-known/jwks.json", &[])
            .await
            .map_err(|e| anyhow::anyhow!("{e}"))?;
        samples.push(t.elapsed());
        ensure!(status == 200, "JWKS: {status}");
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    Ok(Figure::of(samples, start.elapsed()))
}

struct Row {
    what: String,
    figure: String,
    latency: String,
    baseline: String,
    ratio: String,
    target: String,
}

fn row(what: &str, f: Figure, unit: &str, base: Option<(&str, Figure)>, target: &str) -> Row {
    Row {
        what: what.to_owned(),
        figure: format!("{:.0} {unit}", f.rate),
        latency: format!("{:.2} / {:.2}", f.p50, f.p99),
        baseline: base.map_or_else(String::new, |(name, b)| format!("{name}: {:.0}/s", b.rate)),
        ratio: base.map_or_else(String::new, |(_, b)| format!("{:.3}", f.rate / b.rate)),
        target: target.to_owned(),
    }
}

fn machine() -> String {
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|c| {
            c.lines()
                .find_map(|l| l.strip_prefix("model name"))
                .map(|m| m.trim_start_matches([' ', '\t', ':']).to_owned())
        })
        .unwrap_or_else(|| "unknown CPU".into());
    let cores = std::thread::available_parallelism().map_or(1, usize::from);
    let mem = std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|m| {
            m.lines()
                .find_map(|l| l.strip_prefix("MemTotal:"))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
        })
        .map_or_else(String::new, |kib| {
            format!(", {:.0} GiB RAM", kib / 1024.0 / 1024.0)
        });
    let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default();
    format!("{cores} × {cpu}{mem}, Linux {}", kernel.trim())
}

#[tokio::main(flavor = "multi_thread", worker_threads = 1)]
async fn main() -> anyhow::Result<()> {
    let opts = options()?;
    let run_for = opts.run_for;
    let tmp = tempfile::tempdir()?;
    let dir = tmp.path();
    let issuer_bin = opts.bin_dir.join("tessera-issuer");
    let rs_bin = opts.bin_dir.join("tessera-resource-server");

    // The issuer, as the demo starts it: SQLite and a keyring in a fresh
    // directory, embedded defaults otherwise.
    let keys_dir = dir.join("keys");
    let database = format!("sqlite://{}", dir.join("issuer.db").display());
    let (issuer, lines) = Server::start(
        &issuer_bin,
        &[
            "serve",
            "--listen",
            "127.0.0.1:0",
            "--keys-dir",
            &keys_dir.display().to_string(),
            "--database",
            &database,
        ],
        2,
    )?;
    let issuer_url = lines[0]
        .strip_prefix("issuer: ")
        .context("issuer line")?
        .to_owned();
    let password = lines[1]
        .rsplit_once("password ")
        .context("first-admin line")?
        .1
        .to_owned();
    let login_body = serde_json::json!({"username": "admin", "password": password}).to_string();

    // Two resource servers: the default (verified-token cache on) and one
    // that verifies every request in full.
    let rs_args = ["--issuer", issuer_url.as_str(), "--listen", "127.0.0.1:0"];
    let (rs_cached, _) = Server::start(&rs_bin, &rs_args, 0)?;
    let mut no_cache_args = rs_args.to_vec();
    no_cache_args.push("--no-token-cache");
    let (rs_full, _) = Server::start(&rs_bin, &no_cache_args, 0)?;
    for rs in [&rs_cached, &rs_full] {
        let mut ready = false;
        for _ in 0..100 {
            let mut c = Client::connect(rs.addr)
                .await
                .map_err(|e| anyhow::anyhow!("{e}"))?;
            if c.get("/readyz", &[])
                .await
                .map_err(|e| anyhow::anyhow!("{e}"))?
                .0
                == 200
            {
                ready = true;
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        ensure!(ready, "a resource server never became ready");
    }
    println!(
        "issuer {} (pid {}), resource servers {} and {} (no token cache)",
        issuer.addr,
        issuer.child.id(),
        rs_cached.addr,
        rs_full.addr
    );
    let mut rows = Vec::new();

    // Logins: Argon2-bound. Baseline: the same hasher's raw checks on every
    // core. JWKS latency is sampled during the flood, and idle.
    let cores = std::thread::available_parallelism().map_or(1, usize::from);
    let argon2 = tokio::task::spawn_blocking(move || argon2_rate(cores, run_for)).await??;
    let stop = Arc::new(AtomicBool::new(false));
    let jwks_idle = sample_jwks(issuer.addr, Arc::clone(&stop), run_for).await?;
    let sampler = tokio::spawn(sample_jwks(issuer.addr, Arc::clone(&stop), run_for * 2));
    let login_req = Req {
        method: "POST",
        path: "/login".into(),
        header: "".into(),
        body: login_body.as_str().into(),
        expect: 200,
    };
    let login = drive(issuer.addr, LOGIN_CLIENTS, run_for, |_| {
        repeat(login_req.clone())
    })
    .await?;
    stop.store(true, Ordering::Relaxed);
    let jwks_flood = sampler.await??;
    rows.push(row(
        &format!("`POST /login`, {LOGIN_CLIENTS} clients ({PASSWORD_FILE_NOTE})"),
        login,
        "logins/s",
        Some((
            &format!("raw Argon2id checks on {cores} threads"),
            Figure {
                rate: argon2,
                p50: 0.0,
                p99: 0.0,
            },
        )),
        "none (Argon2-bound by design)",
    ));

    // Refresh chains vs raw signing with the issuer's own key on one core,
    // before and after.
    let keyring = tessera_keyring::KeyDir::new(&keys_dir).load()?;
    let sign_before = sign_rate(keyring.signer(), run_for)?;
    let mut chains = Vec::new();
    for _ in 0..REFRESH_CHAINS {
        chains.push(field(
            &post_json(issuer.addr, "/login", &login_body).await?,
            "refresh_token",
        )?);
    }
    let refresh = {
        let chains = chains.into_iter().map(|t| (issuer.addr, t)).collect();
        refresh_chains(chains, run_for).await?
    };
    let sign_after = sign_rate(keyring.signer(), run_for)?;
    let sign = Figure {
        rate: (sign_before + sign_after) / 2.0,
        p50: 0.0,
        p99: 0.0,
    };
    rows.push(row(
        &format!("`POST /token` refresh, {REFRESH_CHAINS} chains"),
        refresh,
        "req/s",
        Some(("raw RS256 signing, one core", sign)),
        "≥ 0.8 (issue 3, there with one server core)",
    ));

    // JWKS, with and without revalidation, vs the issuer's /healthz.
    let healthz = |addr| async move {
        drive(addr, GET_CONNECTIONS, run_for, |_| get("/healthz", "", 200)).await
    };
    let issuer_trivial_before = healthz(issuer.addr).await?;
    let jwks = drive(issuer.addr, GET_CONNECTIONS, run_for, |_| {
        get("/.well-known/jwks.json", "", 200)
    })
    .await?;
    let etag = {
        let mut c = Client::connect(issuer.addr)
            .await
            .map_err(|e| anyhow::anyhow!("{e}"))?;
        c.get("/.well-known/jwks.json", &[])
            .await
            .map_err(|e| anyhow::anyhow!("{e}"))?;
        c.last_header("etag").context("no ETag")?
    };
    let jwks_304 = drive(issuer.addr, GET_CONNECTIONS, run_for, |_| {
        get(
            "/.well-known/jwks.json",
            &format!("If-None-Match: {etag}"),
            304,
        )
    })
    .await?;
    let issuer_trivial = Figure::mean(issuer_trivial_before, healthz(issuer.addr).await?);
    rows.push(row(
        "`GET /.well-known/jwks.json` (200, full body)",
        jwks,
        "req/s",
        Some(("issuer `/healthz`", issuer_trivial)),
        "≥ 0.9 (issue 3)",
    ));
    rows.push(row(
        "`GET /.well-known/jwks.json` with `If-None-Match` (304)",
        jwks_304,
        "req/s",
        Some(("issuer `/healthz`", issuer_trivial)),
        "",
    ));
    rows.push(Row {
        what: format!("JWKS latency during the {LOGIN_CLIENTS}-client login flood"),
        figure: String::new(),
        latency: format!("{:.2} / {:.2}", jwks_flood.p50, jwks_flood.p99),
        baseline: format!("idle: {:.2} / {:.2} ms", jwks_idle.p50, jwks_idle.p99),
        ratio: String::new(),
        target: "p99 < 10 ms (issue 3)".into(),
    });

    // /profile: a repeated token on the default server; distinct tokens, every
    // one verified in full, on the server without the token cache.
    let access = field(
        &post_json(issuer.addr, "/login", &login_body).await?,
        "access_token",
    )?;
    let rs_trivial_before = healthz(rs_cached.addr).await?;
    let repeated = drive(rs_cached.addr, GET_CONNECTIONS, run_for, |_| {
        get("/profile", &format!("Authorization: Bearer {access}"), 200)
    })
    .await?;
    let rs_trivial = Figure::mean(rs_trivial_before, healthz(rs_cached.addr).await?);
    rows.push(row(
        "`GET /profile`, one repeated token (token cache on, the default)",
        repeated,
        "req/s",
        Some(("its `/healthz`", rs_trivial)),
        "≥ 0.85 (issue 4)",
    ));
    let mut fresh_tokens = Vec::new();
    let mut refresh_token = field(
        &post_json(issuer.addr, "/login", &login_body).await?,
        "refresh_token",
    )?;
    for _ in 0..FRESH_TOKENS {
        let pair = post_json(
            issuer.addr,
            "/token",
            &format!("grant_type=refresh_token&refresh_token={refresh_token}"),
        )
        .await?;
        let header = format!("Authorization: Bearer {}", field(&pair, "access_token")?);
        fresh_tokens.push(Arc::<str>::from(header));
        refresh_token = field(&pair, "refresh_token")?;
    }
    let fresh_tokens = Arc::new(fresh_tokens);
    let full_trivial_before = healthz(rs_full.addr).await?;
    let fresh = drive(rs_full.addr, GET_CONNECTIONS, run_for, |i| {
        let tokens = Arc::clone(&fresh_tokens);
        let path: Arc<str> = "/profile".into();
        Box::new(move |n| Req {
            method: "GET",
            path: Arc::clone(&path),
            header: Arc::clone(&tokens[(i * 31 + n) % tokens.len()]),
            body: "".into(),
            expect: 200,
        })
    })
    .await?;
    let full_trivial = Figure::mean(full_trivial_before, healthz(rs_full.addr).await?);
    rows.push(row(
        &format!("`GET /profile`, {FRESH_TOKENS} distinct tokens, every request verified in full (`--no-token-cache`)"),
        fresh,
        "req/s",
        Some(("its `/healthz`", full_trivial)),
        "≥ 0.35 (issue 4)",
    ));

    match &opts.postgres {
        Some(admin_url) => rows.extend(storage::rows(&issuer_bin, admin_url, run_for).await?),
        None => println!("no --postgres URL: the PostgreSQL rows (issue 6) are left out"),
    }

    let rss = [
        ("issuer", issuer.peak_rss_mib()?, 100.0),
        (
            "resource server (token cache on)",
            rs_cached.peak_rss_mib()?,
            30.0,
        ),
        (
            "resource server (`--no-token-cache`)",
            rs_full.peak_rss_mib()?,
            30.0,
        ),
    ];
    let report = render(&rows, &rss, run_for);
    println!("{report}");
    if let Some(out) = opts.out {
        std::fs::write(&out, report).with_context(|| format!("writing {}", out.display()))?;
        println!("written to {}", out.display());
    }
    Ok(())
}

/// Refresh chains: one connection per `(issuer, refresh token)`, rotating
/// its token again and again.
async fn refresh_chains(
    chains: Vec<(SocketAddr, String)>,
    run_for: Duration,
) -> anyhow::Result<Figure> {
    let start = Instant::now();
    let mut tasks = Vec::new();
    for (addr, mut token) in chains {
        tasks.push(tokio::spawn(async move {
            let mut c = Client::connect(addr)
                .await
                .map_err(|e| anyhow::anyhow!("{e}"))?;
            let mut samples = Vec::new();
            let begin = Instant::now();
            while begin.elapsed() < run_for {
                let form = format!("grant_type=refresh_token&refresh_token={token}");
                let t = Instant::now();
                let (status, body) = c
                    .request(
                        "POST",
                        "/token",
                        &[],
                        "application/x-www-form-urlencoded",
                        &form,
                    )
                    .await
                    .map_err(|e| anyhow::anyhow!("{e}"))?;
                samples.push(t.elapsed());
                ensure!(
                    status == 200,
                    "refresh: {status} {}",
                    String::from_utf8_lossy(&body)
                );
                token = field(&serde_json::from_slice(&body)?, "refresh_token")?;
            }
            anyhow::Ok(samples)
        }));
    }
    let mut all = Vec::new();
    for task in tasks {
        all.extend(task.await??);
    }
    Ok(Figure::of(all, start.elapsed()))
}

/// How to read the tables (fixed text, kept with the code that measures).
const NOTES: &str = "
## Reading the figures

- **Whole processes, every core.** Here each server runs as shipped (a multi-threaded
  runtime on all cores) and shares the machine with the load client. The issue targets
  are defined for the per-crate benchmarks in [benchmarks.md](benchmarks.md), which pin
  the server's request path to one core; those remain the figures of record for the
  ratios. Here, for example, refresh can exceed raw one-core signing because the issuer
  signs on two cores.
- **Logins** are Argon2-bound on purpose; their baseline is the issuer's own hasher
  checking the same password on one thread per core with nothing else running, so the
  ratio is the share of the hashing capacity a login flood gets through HTTP, SQLite
  and signing.
- **JWKS latency** is sampled every 2 ms on its own connection while the login clients
  flood `/login` with correct passwords (wrong ones would be throttled to 429 before any
  Argon2 work, which tests the throttle, not the hashing).
- **`/profile` with fresh tokens** uses 256 real access tokens from the issuer (one
  refresh chain) on a resource server started with `--no-token-cache`, so every request
  is a full verification (RSA included); with the cache on, only a token's first request
  is.
- **PostgreSQL** rows (with `--postgres URL`; `scripts/perf-report.sh` passes the
  server it finds) run their own issuers on a scratch database (created and dropped by
  the tool), sharing one keys directory. PostgreSQL against SQLite is one instance as
  shipped on each. The scaling row pins each instance to one core with `taskset`: one
  instance on core 0, then two on cores 0 and 1, one database. PostgreSQL and the load
  client run on the same two cores, unpinned, so they take CPU from the instances and
  2× is out of reach here by construction; on a machine with cores to spare for them
  the ratio is what adding an instance buys. Two rows help read it: raw signing on both
  cores at once against one core alone (this machine loses almost nothing to a second
  busy core), and the issuers' CPU time per refresh with two instances against one. That
  per-refresh cost rises by about a fifth with two instances: with one instance, the
  load client and PostgreSQL have the other core to themselves; with two, all of them
  share both cores. This run cannot tell that interference from a cost of sharing the
  database.
- **Peak RSS** is `VmHWM` from `/proc/<pid>/status` after all the load above. The
  issuer's is dominated by Argon2's 19 MiB work area per hashing thread (one per core,
  at most 4, each area allocated once and reused).
";

fn render(rows: &[Row], rss: &[(&str, f64, f64)], run_for: Duration) -> String {
    let mut md = String::new();
    let _ = writeln!(md, "# Performance report\n");
    let _ = writeln!(
        md,
        "Written by `scripts/perf-report.sh` (the `tessera-load` tool): the issuer and the demo \
         resource server run as release-build processes on loopback (the demo runs the same two \
         servers in one process; separate processes give each its own peak RSS), driven by \
         keep-alive HTTP/1.1 clients on one thread. Every throughput figure stands beside a \
         baseline measured in the same run (before and after it, averaged, where it is a \
         server route); shared machines drift, so compare ratios, not absolute numbers.\n"
    );
    let _ = writeln!(md, "- Machine: {}", machine());
    let _ = writeln!(md, "- Each measurement: {:.1} s", run_for.as_secs_f64());
    let _ = writeln!(
        md,
        "- Reproduce: `scripts/perf-report.sh` (or `cargo build --release -p tessera-issuer -p tessera-resource-server -p tessera-load && target/release/tessera-load --out docs/PERFORMANCE.md`)\n"
    );
    let _ = writeln!(
        md,
        "| measurement | throughput | p50 / p99 (ms) | baseline (same run) | ratio | target |"
    );
    let _ = writeln!(md, "| --- | --- | --- | --- | --- | --- |");
    for r in rows {
        let _ = writeln!(
            md,
            "| {} | {} | {} | {} | {} | {} |",
            r.what, r.figure, r.latency, r.baseline, r.ratio, r.target
        );
    }
    let _ = writeln!(
        md,
        "\n| server | peak RSS (VmHWM) after the load above | target |"
    );
    let _ = writeln!(md, "| --- | --- | --- |");
    for (name, mib, target) in rss {
        let verdict = if mib < target { "met" } else { "NOT met" };
        let _ = writeln!(
            md,
            "| {name} | {mib:.1} MiB | < {target:.0} MiB: {verdict} |"
        );
    }
    md.push_str(NOTES);
    md
}
