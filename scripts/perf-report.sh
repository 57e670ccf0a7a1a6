#!/usr/bin/env bash
# Load report (issue #5): builds the release binaries, starts the issuer and the
# demo resource server as processes on loopback, drives them, and writes
# docs/PERFORMANCE.md. About two minutes of load; loopback only.
# Usage: scripts/perf-report.sh [--seconds N]   (N per measurement, default 5)
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --locked --release -p tessera-issuer -p tessera-resource-server -p tessera-load
exec target/release/tessera-load --bin-dir target/release --out docs/PERFORMANCE.md "$@"
