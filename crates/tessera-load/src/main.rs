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

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use anyhow::{Context as _, bail, ensure};
use tessera_bench::Client;

mod harness;
mod report;
mod soak;
mod storage;

use harness::*;
use report::*;

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

/// `tessera-load soak --minutes N [--bin-dir DIR] [--out FILE] [--postgres-bin DIR]
/// [--rss-csv FILE]` (`--seconds N` for the test-suite's short run).
fn soak_options(mut args: impl Iterator<Item = String>) -> anyhow::Result<soak::SoakOptions> {
    let mut opts = soak::SoakOptions {
        duration: Duration::from_secs(30 * 60),
        bin_dir: PathBuf::from("target/release"),
        out: None,
        postgres_bin: None,
        rss_csv: None,
    };
    while let Some(arg) = args.next() {
        let mut value = || args.next().with_context(|| format!("{arg} needs a value"));
        match arg.as_str() {
            "--minutes" => {
                let m: f64 = value()?.parse().context("--minutes")?;
                ensure!((1.0..=24.0 * 60.0).contains(&m), "--minutes: 1 to 1440");
                opts.duration = Duration::from_secs_f64(m * 60.0);
            }
            "--seconds" => {
                let s: u64 = value()?.parse().context("--seconds")?;
                ensure!((60..=86_400).contains(&s), "--seconds: 60 to 86400");
                opts.duration = Duration::from_secs(s);
            }
            "--bin-dir" => opts.bin_dir = PathBuf::from(value()?),
            "--out" => opts.out = Some(PathBuf::from(value()?)),
            "--postgres-bin" => opts.postgres_bin = Some(PathBuf::from(value()?)),
            "--rss-csv" => opts.rss_csv = Some(PathBuf::from(value()?)),
            _ => bail!(
                "usage: tessera-load soak [--minutes 30 | --seconds N] [--bin-dir target/release] [--out docs/PERFORMANCE.md] [--postgres-bin DIR] [--rss-csv FILE]"
            ),
        }
    }
    Ok(opts)
}

#[tokio::main(flavor = "multi_thread", worker_threads = 1)]
async fn main() -> anyhow::Result<()> {
    let mut args = std::env::args().skip(1).peekable();
    if args.peek().map(String::as_str) == Some("soak") {
        args.next();
        return soak::run(soak_options(args)?).await;
    }
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
        // The soak's section (`tessera-load soak --out`) is kept as it is.
        let report = soak::carry_over(&out, report);
        std::fs::write(&out, report).with_context(|| format!("writing {}", out.display()))?;
        println!("written to {}", out.display());
    }
    Ok(())
}
