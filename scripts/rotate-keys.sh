#!/usr/bin/env bash
# Scheduled key rotation for Tessera: rotate, then prune what is safe to delete.
#
# Run it from cron or a systemd timer, as the user that owns the keys directory,
# with the same configuration the issuer reads, e.g. daily at 03:17:
#
#   17 3 * * *  tessera  TESSERA_CONFIG=/etc/tessera/issuer.toml /opt/tessera/scripts/rotate-keys.sh
#
# Environment: TESSERA_ISSUER_BIN (default: tessera-issuer on PATH), plus any of
# the issuer's own variables (TESSERA_CONFIG, TESSERA_KEYS_DIR, TESSERA_*_LIFETIME).
#
# Exit status: 0 when the keyring was rotated (or a rotation rule said "not yet",
# which is not a failure for a schedule: the next run rotates), non-zero otherwise.
# It never passes --force: a schedule must never break a rotation rule.
set -euo pipefail

bin="${TESSERA_ISSUER_BIN:-tessera-issuer}"

set +e
"$bin" keys rotate
status=$?
set -e
case "$status" in
  0) ;;
  3) echo "rotate-keys: rotation not safe yet; will try again on the next run" >&2 ;;
  *) echo "rotate-keys: rotation failed (exit $status)" >&2; exit "$status" ;;
esac

"$bin" keys prune
