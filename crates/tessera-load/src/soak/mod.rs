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
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail, ensure};

mod judge;
mod procs;
mod traffic;

pub(crate) use judge::carry_over;
use judge::{half_rotated, judge, table_rows, write_section};
use procs::*;
use traffic::{Topology, worker};

/// How the soak runs.
pub(crate) struct SoakOptions {
    pub(crate) duration: Duration,
    pub(crate) bin_dir: PathBuf,
    pub(crate) out: Option<PathBuf>,
    /// The directory of PostgreSQL's `initdb` and `pg_ctl`.
    pub(crate) postgres_bin: Option<PathBuf>,
    /// Where to write every process's RSS samples (`seconds,process,life,kib`),
    /// the series behind the report's RSS table.
    pub(crate) rss_csv: Option<PathBuf>,
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
    wait_ready(a.addr(), Duration::from_secs(60)).await?;
    for n in 0..WORKERS_PG {
        add_user(&issuer_bin, &pg_url, &pg_keys, &user_name(n))?;
    }
    let b_listen = format!("127.0.0.1:{}", free_port()?);
    let b_args = issuer_args(&b_listen, Some(&url_a), &pg_url, &pg_keys, jwks_cache);
    let b = Proc::start("issuer-b", 0, &issuer_bin, &b_args, &logs)?;
    wait_ready(b.addr(), Duration::from_secs(60)).await?;
    let c_args = issuer_args("127.0.0.1:0", None, &sqlite_url, &c_keys, jwks_cache);
    let c = Proc::start("issuer-c", 0, &issuer_bin, &c_args, &logs)?;
    wait_ready(c.addr(), Duration::from_secs(60)).await?;
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
    let r2_args = rs_args(&r2_listen, &url_a, Some(b.addr()));
    let r2 = Proc::start("rs-2", 0, &rs_bin, &r2_args, &logs)?;
    wait_ready(r1.addr(), Duration::from_secs(30)).await?;
    wait_ready(r2.addr(), Duration::from_secs(30)).await?;

    let topo = Arc::new(Topology {
        a: a.addr(),
        b: b.addr(),
        c: c.addr(),
        r1: r1.addr(),
        r2: r2.addr(),
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
            for keys in [&pg_keys, &c_keys] {
                match tokio::task::block_in_place(|| rotate(&issuer_bin, keys, jwks_cache)) {
                    Ok(()) => rotations += 1,
                    Err(e) => rec.note(format!("FAILED: rotation of {}: {e}", keys.display())),
                }
            }
            // From when this one ran, not from when it was due: a fault that
            // held the loop (the disk fill takes 6 s) must not bring the next
            // rotation closer than the rules allow.
            next_rotation = rec.start.elapsed() + rotate_every;
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
            rec.note(format!("issuer B: SIGKILL (pid {})", b.server.child.id()));
            rec.open(Fault::KillB);
            topo.b_up.store(false, Ordering::Relaxed);
            b.kill_hard();
            tokio::time::sleep(Duration::from_secs(2)).await;
            incarnation_b += 1;
            b = tokio::task::block_in_place(|| {
                Proc::start("issuer-b", incarnation_b, &issuer_bin, &b_args, &logs)
            })?;
            wait_ready(b.addr(), Duration::from_secs(60)).await?;
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
            wait_ready(r2.addr(), Duration::from_secs(30)).await?;
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
    if let Some(path) = &opts.rss_csv {
        let rows: String = lock(&rec.rss)
            .iter()
            .map(|(t, name, life, kib)| format!("{t:.1},{name},{life},{kib}\n"))
            .collect();
        let csv = format!("seconds,process,life,rss_kib\n{rows}");
        std::fs::write(path, csv).with_context(|| format!("writing {}", path.display()))?;
    }
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
