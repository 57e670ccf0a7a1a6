//! The soak's short version (issue 21): one minute of the whole system under
//! traffic while PostgreSQL restarts, an issuer is SIGKILLed, a resource
//! server restarts, the key rotates and the SQLite disk fills, judged by the
//! soak's own checks (`tessera-load soak`, see docs/PERFORMANCE.md for the
//! 30-minute run). It needs PostgreSQL's server binaries (initdb, pg_ctl):
//! without them it says so and passes, unless `TESSERA_REQUIRE_POSTGRES` is
//! set (as `.ci/run` sets it).

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::print_stderr
)]

use std::path::{Path, PathBuf};
use std::process::Command;

/// What the soak says, before anything else, on a machine without
/// PostgreSQL's server binaries.
const NO_POSTGRES: &str = "no PostgreSQL server binaries";

/// The issuer and resource-server binaries beside this package's: a
/// workspace test run (`cargo test --workspace`) has just built both, for
/// their own packages' tests. Run alone (`-p tessera-load`), this builds them
/// if they are missing, and otherwise uses what is there: build the
/// workspace first after changing them. (Building them every time would
/// build them a second time in a workspace run: a plain build unifies other
/// features than a test build.)
fn bin_dir() -> PathBuf {
    let dir = Path::new(env!("CARGO_BIN_EXE_tessera-load"))
        .parent()
        .unwrap()
        .to_owned();
    let bins = ["tessera-issuer", "tessera-resource-server"];
    if bins.iter().any(|b| !dir.join(b).is_file()) {
        let status = Command::new(env!("CARGO"))
            .args(["build", "--quiet", "-p", bins[0], "-p", bins[1], "--bins"])
            .current_dir(env!("CARGO_MANIFEST_DIR"))
            .status()
            .unwrap();
        assert!(status.success(), "building the issuer and resource server");
    }
    for bin in bins {
        assert!(dir.join(bin).is_file(), "no {bin} in {}", dir.display());
    }
    dir
}

#[test]
fn a_minute_of_traffic_through_every_fault_breaks_no_rule() {
    // The soak finds PostgreSQL's server binaries itself (`pg_config
    // --bindir`, `/usr/lib/postgresql/*/bin`), and says so first if it finds none.
    let out = Command::new(env!("CARGO_BIN_EXE_tessera-load"))
        .args(["soak", "--seconds", "60", "--bin-dir"])
        .arg(bin_dir())
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    if !out.status.success() && stderr.contains(NO_POSTGRES) {
        assert!(
            std::env::var_os("TESSERA_REQUIRE_POSTGRES").is_none(),
            "no PostgreSQL server binaries (initdb, pg_ctl) and TESSERA_REQUIRE_POSTGRES is set"
        );
        eprintln!("skipped: no PostgreSQL server binaries (initdb, pg_ctl) on this machine");
        return;
    }
    let report = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "the soak failed:\n{report}\n{stderr}");
    // Every fault happened, traffic flowed through all of them, and every
    // check held.
    for line in [
        "PostgreSQL: up again",
        "issuer B: restarted and ready",
        "resource server 2: ready",
        "Checks: all passed.",
    ] {
        assert!(report.contains(line), "no {line:?} in:\n{report}");
    }
    assert!(
        report.contains("SQLite disk: freed") || report.contains("SQLite disk: not filled"),
        "{report}"
    );
    let counts = report
        .lines()
        .find(|l| l.contains("requests answered as expected"))
        .unwrap();
    assert!(
        !counts.contains(" 0 logouts") && !counts.starts_with("0 "),
        "{counts}"
    );
}
