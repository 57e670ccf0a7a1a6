#!/usr/bin/env bash
# Prints the command in the first ```sh block under a README heading, e.g.
#   scripts/readme-command.sh Run     scripts/readme-command.sh Test
# .ci/run uses it so that CI runs exactly what the README tells users to run.
set -euo pipefail
section="$1"
readme="${2:-$(dirname "$0")/../README.md}"
awk -v want="## $section" '
  $0 == want { in_section = 1; next }
  in_section && /^## / { exit }
  in_section && /^```sh$/ { in_block = 1; next }
  in_block && /^```$/ { exit }
  in_block { print }
' "$readme"
