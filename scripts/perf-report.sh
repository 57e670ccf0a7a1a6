#!/usr/bin/env bash
# Load report (issues #5 and #6): builds the release binaries, starts the issuer and the
# demo resource server as processes on loopback, drives them, and writes
# docs/PERFORMANCE.md. About two minutes of load; loopback only.
# Usage: scripts/perf-report.sh [--seconds N]   (N per measurement, default 5)
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --locked --release -p tessera-issuer -p tessera-resource-server -p tessera-load
# The PostgreSQL rows (issue 6) need a server: TESSERA_TEST_POSTGRES_URL, or the
# local one on 127.0.0.1:5432 if it answers. Without one they are left out.
pg_url="${TESSERA_TEST_POSTGRES_URL:-postgres://postgres@127.0.0.1:5432/postgres}"
pg_args=()
if (exec 3<>/dev/tcp/127.0.0.1/5432) 2>/dev/null || [ -n "${TESSERA_TEST_POSTGRES_URL:-}" ]; then
  pg_args=(--postgres "$pg_url")
fi
exec target/release/tessera-load --bin-dir target/release --out docs/PERFORMANCE.md "${pg_args[@]}" "$@"
