//! Issue 6's figures: refresh throughput on PostgreSQL beside SQLite, and two
//! issuer instances on one PostgreSQL database beside one, in the same run.
//!
//! The scaling comparison pins each instance to one core (`taskset`): signing
//! is per instance, so one instance on one core against two instances on a
//! core each shows what adding an instance buys. The load client and
//! PostgreSQL run unpinned on the same two cores, so 2× is a ceiling the
//! machine cannot reach; the report says so beside the figure.

use std::net::SocketAddr;
use std::path::Path;

use anyhow::Context as _;
use tessera_testkit::pg::ScratchDatabase;

use crate::harness::{Figure, REFRESH_CHAINS, Server, field, post_json, refresh_chains, sign_rate};
use crate::report::{Row, row};

/// An issuer process for this section: `pin` is the core it may run on, if any.
fn issuer(
    bin: &Path,
    database: &str,
    keys_dir: &Path,
    pin: Option<usize>,
    first_start: bool,
) -> anyhow::Result<(Server, Option<String>)> {
    let keys = keys_dir.display().to_string();
    let serve = [
        "serve",
        "--listen",
        "127.0.0.1:0",
        "--issuer-url",
        "https://issuer.load.test",
        "--keys-dir",
        &keys,
        "--database",
        database,
    ];
    let bin_text = bin.display().to_string();
    let core = pin.map(|c| c.to_string());
    let mut args: Vec<&str> = Vec::new();
    let program = match &core {
        Some(core) => {
            args.extend(["-c", core.as_str(), bin_text.as_str()]);
            Path::new("taskset")
        }
        None => bin,
    };
    args.extend(serve);
    let (server, lines) = Server::start(program, &args, if first_start { 2 } else { 1 })?;
    let password = if first_start {
        Some(
            lines[1]
                .rsplit_once("password ")
                .context("first-admin line")?
                .1
                .to_owned(),
        )
    } else {
        None
    };
    Ok((server, password))
}

/// CPU time a process has used so far (user + system), in seconds.
fn cpu_seconds(server: &Server) -> anyhow::Result<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{}/stat", server.child.id()))?;
    // Fields after the command name (which may contain spaces) start at field
    // 3; utime and stime are fields 14 and 15, in clock ticks.
    let fields: Vec<&str> = stat
        .rsplit_once(')')
        .context("/proc stat")?
        .1
        .split_whitespace()
        .collect();
    let ticks: f64 = fields.get(11).context("utime")?.parse::<f64>()?
        + fields.get(12).context("stime")?.parse::<f64>()?;
    Ok(ticks / clock_ticks_per_second())
}

fn clock_ticks_per_second() -> f64 {
    std::process::Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .and_then(|t| t.trim().parse().ok())
        .unwrap_or(100.0)
}

/// A refresh measurement and the issuer CPU time it cost per refresh (µs).
async fn refresh_with_cpu(
    servers: &[&Server],
    password: &str,
    run_for: std::time::Duration,
) -> anyhow::Result<(Figure, f64)> {
    let addrs: Vec<SocketAddr> = servers.iter().map(|s| s.addr).collect();
    let mut before = 0.0;
    for s in servers {
        before += cpu_seconds(s)?;
    }
    let figure = refresh_rate(&addrs, password, run_for).await?;
    let mut after = 0.0;
    for s in servers {
        after += cpu_seconds(s)?;
    }
    let refreshes = figure.rate * run_for.as_secs_f64();
    Ok((figure, (after - before) / refreshes.max(1.0) * 1e6))
}

/// Raw signing with the issuer's key on `threads` threads at once, each
/// pinned to its own core: signatures per second per thread. The machine's own
/// answer to "what does a second busy core cost the first" (two vCPUs may be
/// two hyperthreads of one physical core).
fn sign_rate_per_thread(
    keys_dir: &Path,
    threads: usize,
    run_for: std::time::Duration,
) -> anyhow::Result<f64> {
    let keyring = std::sync::Arc::new(tessera_keyring::KeyDir::new(keys_dir).load()?);
    let handles: Vec<_> = (0..threads)
        .map(|core| {
            let keyring = std::sync::Arc::clone(&keyring);
            std::thread::spawn(move || {
                pin_to(core);
                sign_rate(keyring.signer(), run_for)
            })
        })
        .collect();
    let mut total = 0.0;
    for handle in handles {
        total += handle
            .join()
            .map_err(|_| anyhow::anyhow!("a signing thread panicked"))??;
    }
    Ok(total / threads as f64)
}

/// Pins the calling thread to `core` with `taskset` (best effort).
fn pin_to(core: usize) {
    let tid = std::fs::read_link("/proc/thread-self")
        .ok()
        .and_then(|p| p.file_name().and_then(|n| n.to_str()).map(str::to_owned));
    if let Some(tid) = tid {
        let _ = std::process::Command::new("taskset")
            .args(["-p", "-c", &core.to_string(), &tid])
            .stdout(std::process::Stdio::null())
            .status();
    }
}

/// `REFRESH_CHAINS` refresh chains per instance, spread over `addrs`.
async fn refresh_rate(
    addrs: &[SocketAddr],
    password: &str,
    run_for: std::time::Duration,
) -> anyhow::Result<Figure> {
    let login = serde_json::json!({"username": "admin", "password": password}).to_string();
    let mut chains = Vec::new();
    for i in 0..REFRESH_CHAINS * addrs.len() {
        let addr = addrs[i % addrs.len()];
        chains.push((
            addr,
            field(&post_json(addr, "/login", &login).await?, "refresh_token")?,
        ));
    }
    refresh_chains(chains, run_for).await
}

/// The section's rows; `admin_url` names the PostgreSQL server to create a
/// scratch database on.
pub(super) async fn rows(
    issuer_bin: &Path,
    admin_url: &str,
    run_for: std::time::Duration,
) -> anyhow::Result<Vec<Row>> {
    let tmp = tempfile::tempdir()?;
    let keys_dir = tmp.path().join("keys");
    let sqlite_url = format!("sqlite://{}", tmp.path().join("issuer.db").display());
    let scratch = ScratchDatabase::create(admin_url)
        .await
        .context("creating a scratch PostgreSQL database")?;
    let cores = std::thread::available_parallelism().map_or(1, usize::from);

    // One instance as shipped (every core), SQLite then PostgreSQL.
    let (sqlite, sqlite_password) = issuer(issuer_bin, &sqlite_url, &keys_dir, None, true)?;
    let on_sqlite = refresh_rate(
        &[sqlite.addr],
        &sqlite_password.context("password")?,
        run_for,
    )
    .await?;
    drop(sqlite);
    let (pg, pg_password) = issuer(issuer_bin, scratch.url(), &keys_dir, None, true)?;
    let password = pg_password.context("password")?;
    let on_pg = refresh_rate(&[pg.addr], &password, run_for).await?;
    drop(pg);
    let mut rows = vec![row(
        &format!("`POST /token` refresh on PostgreSQL, one instance, {REFRESH_CHAINS} chains"),
        on_pg,
        "req/s",
        Some(("the same on SQLite", on_sqlite)),
        "none set (issue 6 asks for the comparison)",
    )];

    // One instance on one core, then two on a core each, one database.
    if cores >= 2 {
        let (one, _) = issuer(issuer_bin, scratch.url(), &keys_dir, Some(0), false)?;
        let (single, single_cpu) = refresh_with_cpu(&[&one], &password, run_for).await?;
        drop(one);
        let (a, _) = issuer(issuer_bin, scratch.url(), &keys_dir, Some(0), false)?;
        let (b, _) = issuer(issuer_bin, scratch.url(), &keys_dir, Some(1), false)?;
        let (double, double_cpu) = refresh_with_cpu(&[&a, &b], &password, run_for).await?;
        rows.push(row(
            &format!(
                "`POST /token` refresh on PostgreSQL, two instances pinned to one core each, {} chains",
                2 * REFRESH_CHAINS
            ),
            double,
            "req/s",
            Some(("one instance pinned to one core", single)),
            "scaling ratio, toward 2× (this machine's 2 cores also run PostgreSQL and the load client)",
        ));
        // What each refresh costs the instances: if a second instance added
        // contention, each refresh would cost more CPU. The machine's own cost
        // of a second busy core, measured on raw signing, is the baseline.
        let alone = sign_rate_per_thread(&keys_dir, 1, run_for)?;
        let together = sign_rate_per_thread(&keys_dir, 2, run_for)?;
        rows.push(Row {
            what: "raw RS256 signing per core, both cores signing at once vs one alone".to_owned(),
            figure: format!("{together:.0}/s per core"),
            latency: String::new(),
            baseline: format!("one core alone: {alone:.0}/s"),
            ratio: format!("{:.3}", together / alone),
            target: "the machine's baseline for the CPU row below".to_owned(),
        });
        rows.push(Row {
            what:
                "issuer CPU time per refresh (user + system, all instances), two instances vs one"
                    .to_owned(),
            figure: format!("{double_cpu:.0} µs"),
            latency: String::new(),
            baseline: format!("one instance: {single_cpu:.0} µs"),
            ratio: format!("{:.3}", single_cpu / double_cpu),
            target: "≈ the raw-signing ratio above would mean no added cost per refresh; here the instances share both cores with PostgreSQL and the load client".to_owned(),
        });
    }
    Ok(rows)
}
