//! Reading a Prometheus scrape in tests, and `promtool check metrics` on it.

/// The value of the sample named exactly `series` (name and labels as
/// printed, e.g. `tessera_logins_total{outcome="success"}`), if there is one.
pub fn sample(text: &str, series: &str) -> Option<f64> {
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' ')?.parse().ok())
}

/// [`sample`], or a panic that shows the scrape.
pub fn value(text: &str, series: &str) -> f64 {
    sample(text, series).unwrap_or_else(|| panic!("no sample {series} in:\n{text}"))
}

/// Runs `promtool check metrics` on a scrape and panics unless it passes.
/// Where promtool is not installed the check is skipped with a note, unless
/// `TESSERA_REQUIRE_PROMTOOL` is set (`.ci/run` installs promtool and sets
/// it, so there the check always runs).
pub fn promtool_accepts(text: &str) {
    use std::io::Write as _;
    let child = std::process::Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn();
    let mut child = match child {
        Ok(child) => child,
        Err(e) if std::env::var_os("TESSERA_REQUIRE_PROMTOOL").is_some() => {
            panic!("TESSERA_REQUIRE_PROMTOOL is set but promtool does not run: {e}")
        }
        Err(_) => {
            #[allow(clippy::print_stderr)] // a skipped check says so
            {
                eprintln!("promtool is not installed: the exposition's lint is skipped");
            }
            return;
        }
    };
    if let Some(mut stdin) = child.stdin.take() {
        stdin
            .write_all(text.as_bytes())
            .unwrap_or_else(|e| panic!("writing to promtool: {e}"));
    }
    let out = child
        .wait_with_output()
        .unwrap_or_else(|e| panic!("promtool: {e}"));
    assert!(
        out.status.success(),
        "promtool check metrics refused the exposition: {}{}\n{text}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}
