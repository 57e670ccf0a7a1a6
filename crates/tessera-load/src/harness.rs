//! The load tool's harness: server processes, keep-alive clients driving
//! a request mix, and the raw rates (signing, Argon2) baselines are made of.

use std::io::BufRead as _;
use std::net::SocketAddr;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context as _, ensure};
use tessera_bench::{Client, quantile_ms};
use tessera_issuer::passwords::{Hasher, Password};

/// Clients flooding `/login` (the JWKS latency is sampled meanwhile).
pub(crate) const LOGIN_CLIENTS: usize = 64;
/// Concurrent refresh chains.
pub(crate) const REFRESH_CHAINS: usize = 16;
/// Connections for the cheap GET measurements.
pub(crate) const GET_CONNECTIONS: usize = 8;
/// Distinct tokens cycled through in the fresh-token measurement.
pub(crate) const FRESH_TOKENS: usize = 256;

pub(crate) struct Server {
    pub(crate) child: Child,
    pub(crate) addr: SocketAddr,
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
    pub(crate) fn start(
        bin: &Path,
        args: &[&str],
        wanted_lines: usize,
    ) -> anyhow::Result<(Self, Vec<String>)> {
        Self::start_logging(bin, args, wanted_lines, Stdio::null())
    }

    /// [`Server::start`], its standard error going to `stderr` (a log file).
    pub(crate) fn start_logging(
        bin: &Path,
        args: &[impl AsRef<std::ffi::OsStr>],
        wanted_lines: usize,
        stderr: Stdio,
    ) -> anyhow::Result<(Self, Vec<String>)> {
        let mut cmd = Command::new(bin);
        cmd.args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(stderr);
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
            .with_context(|| format!("no address line: {first}"))?
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
    pub(crate) fn peak_rss_mib(&self) -> anyhow::Result<f64> {
        let kib = self.status_kib("VmHWM").context("no VmHWM")?;
        Ok(kib as f64 / 1024.0)
    }

    /// A size field of `/proc/<pid>/status` (`VmRSS`, `VmHWM`), in KiB.
    pub(crate) fn status_kib(&self, field: &str) -> Option<u64> {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id())).ok()?;
        status
            .lines()
            .find_map(|l| l.strip_prefix(field)?.strip_prefix(':'))?
            .trim()
            .trim_end_matches("kB")
            .trim()
            .parse()
            .ok()
    }
}

/// Requests per second and latency percentiles of one measurement.
#[derive(Clone, Copy)]
pub(crate) struct Figure {
    pub(crate) rate: f64,
    pub(crate) p50: f64,
    pub(crate) p99: f64,
}

impl Figure {
    pub(crate) fn of(mut samples: Vec<Duration>, elapsed: Duration) -> Self {
        samples.sort_unstable();
        Self {
            rate: samples.len() as f64 / elapsed.as_secs_f64(),
            p50: quantile_ms(&samples, 0.5),
            p99: quantile_ms(&samples, 0.99),
        }
    }

    pub(crate) fn mean(a: Self, b: Self) -> Self {
        Self {
            rate: (a.rate + b.rate) / 2.0,
            p50: (a.p50 + b.p50) / 2.0,
            p99: (a.p99 + b.p99) / 2.0,
        }
    }
}

/// One request and the status it must get.
#[derive(Clone)]
pub(crate) struct Req {
    pub(crate) method: &'static str,
    pub(crate) path: Arc<str>,
    /// One header line (without CRLF), or empty.
    pub(crate) header: Arc<str>,
    /// JSON when it starts with `{`, else form-encoded; empty for none.
    pub(crate) body: Arc<str>,
    pub(crate) expect: u16,
}

/// A connection's requests: the `n`th request it sends.
type Step = Box<dyn FnMut(usize) -> Req + Send>;

/// Runs `connections` clients for `run_for`; client `i` sends the requests
/// `make(i)` describes, one after the other.
pub(crate) async fn drive(
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

pub(crate) fn content_type(body: &str) -> &'static str {
    if body.starts_with('{') {
        "application/json"
    } else {
        "application/x-www-form-urlencoded"
    }
}

/// The same request every time.
pub(crate) fn repeat(req: Req) -> Step {
    Box::new(move |_| req.clone())
}

/// `GET path` with one optional header line, expecting `expect`.
pub(crate) fn get(path: &str, header: &str, expect: u16) -> Step {
    repeat(Req {
        method: "GET",
        path: path.into(),
        header: header.into(),
        body: "".into(),
        expect,
    })
}

pub(crate) async fn post_json(
    addr: SocketAddr,
    path: &str,
    body: &str,
) -> anyhow::Result<serde_json::Value> {
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

pub(crate) fn field(v: &serde_json::Value, name: &str) -> anyhow::Result<String> {
    Ok(v[name]
        .as_str()
        .with_context(|| format!("no {name}"))?
        .to_owned())
}

/// Raw RS256 signatures per second with `signer`, on this thread.
pub(crate) fn sign_rate(
    signer: &tessera_keyring::Signer,
    run_for: Duration,
) -> anyhow::Result<f64> {
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
pub(crate) fn argon2_rate(threads: usize, run_for: Duration) -> anyhow::Result<f64> {
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
pub(crate) async fn sample_jwks(
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

/// Refresh chains: one connection per `(issuer, refresh token)`, rotating
/// its token again and again.
pub(crate) async fn refresh_chains(
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
