//! The load report: figures, rows beside their baselines, and the page.

use std::fmt::Write as _;
use std::time::Duration;

use crate::harness::Figure;

pub(crate) struct Row {
    pub(crate) what: String,
    pub(crate) figure: String,
    pub(crate) latency: String,
    pub(crate) baseline: String,
    pub(crate) ratio: String,
    pub(crate) target: String,
}

pub(crate) fn row(
    what: &str,
    f: Figure,
    unit: &str,
    base: Option<(&str, Figure)>,
    target: &str,
) -> Row {
    Row {
        what: what.to_owned(),
        figure: format!("{:.0} {unit}", f.rate),
        latency: format!("{:.2} / {:.2}", f.p50, f.p99),
        baseline: base.map_or_else(String::new, |(name, b)| format!("{name}: {:.0}/s", b.rate)),
        ratio: base.map_or_else(String::new, |(_, b)| format!("{:.3}", f.rate / b.rate)),
        target: target.to_owned(),
    }
}

pub(crate) fn machine() -> String {
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

/// How to read the tables (fixed text, kept with the code that measures).
pub(crate) const NOTES: &str = "
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

pub(crate) fn render(rows: &[Row], rss: &[(&str, f64, f64)], run_for: Duration) -> String {
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
