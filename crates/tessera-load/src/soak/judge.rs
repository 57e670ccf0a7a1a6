//! The soak's checks: what the databases hold at the end, every recorded
//! answer against the announced windows, and the report.

use super::*;

/// The tables housekeeping keeps bounded (and the audit log, for scale).
const TABLES: [&str; 4] = ["sessions", "refresh_tokens", "revocations", "audit_events"];

/// Live sessions whose unused refresh tokens are not exactly one.
const HALF_ROTATED: &str = "SELECT COUNT(*) FROM (
    SELECT s.id FROM sessions s LEFT JOIN refresh_tokens rt ON rt.session_id = s.id
    WHERE s.revoked_at IS NULL
    GROUP BY s.id
    HAVING SUM(CASE WHEN rt.hash IS NOT NULL AND rt.used_at IS NULL THEN 1 ELSE 0 END) <> 1
) AS odd";

/// Each of `queries` (a `COUNT(*)`) on `database`, over one connection of
/// whichever driver its URL names.
async fn counts(database: &str, queries: &[String]) -> anyhow::Result<Vec<i64>> {
    use sqlx::Connection as _;
    let mut out = Vec::with_capacity(queries.len());
    if database.starts_with("postgres") {
        let mut conn = sqlx::PgConnection::connect(database).await?;
        for q in queries {
            out.push(sqlx::query_scalar(q).fetch_one(&mut conn).await?);
        }
    } else {
        let mut conn = sqlx::SqliteConnection::connect(database).await?;
        for q in queries {
            out.push(sqlx::query_scalar(q).fetch_one(&mut conn).await?);
        }
    }
    Ok(out)
}

/// Row counts of [`TABLES`].
pub(super) async fn table_rows(database: &str) -> anyhow::Result<Vec<(String, i64)>> {
    let queries: Vec<String> = TABLES
        .iter()
        .map(|t| format!("SELECT COUNT(*) FROM {t}"))
        .collect();
    let rows = counts(database, &queries).await?;
    Ok(TABLES.iter().map(|t| (*t).to_owned()).zip(rows).collect())
}

/// Live sessions whose unused refresh tokens are not exactly one.
pub(super) async fn half_rotated(database: &str) -> anyhow::Result<i64> {
    let n = counts(database, &[HALF_ROTATED.to_owned()]).await?;
    n.first().copied().context("no count")
}

/// The report, and every check that failed.
pub(super) struct Judgement {
    pub(super) text: String,
    pub(super) failures: Vec<String>,
}

pub(super) type Rows = Vec<(&'static str, Vec<(String, i64)>)>;

/// Applies every check to what the run recorded; the report in Markdown.
/// When what a process holds stops growing under steady traffic: the life
/// of a revocation entry (the access-token lifetime, 300 s here, plus the
/// largest leeway a verifier may allow, 300 s: `revocation::MAX_LEEWAY`),
/// then one housekeeping minute before the expired rows are purged. Until
/// then the lists the issuers and resource servers hold grow by design;
/// memory still growing past it is what the RSS check is for.
const STEADY_AFTER: f64 = 660.0;

pub(super) fn judge(
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
        let allowed_kind = matches!(o.got, Ok((503, true)) | Err(_));
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
        // Warm-up: a quarter of the process's life, and at least until what
        // it holds has reached its steady size (STEADY_AFTER), on a life
        // long enough to leave half of it to judge.
        let span = last.0 - first.0;
        let warm = first.0 + (span * 0.25).max(STEADY_AFTER.min(span * 0.5)).max(30.0);
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
pub(super) const BEGIN: &str = "<!-- soak:begin -->";
pub(super) const END: &str = "<!-- soak:end -->";

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
pub(super) fn write_section(out: &Path, section: &str) -> anyhow::Result<()> {
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
