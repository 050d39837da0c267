#!/usr/bin/env bash
# README command (1): set everything up, then bring up a local 3-node cluster named `demo` and print
# its status and connection strings. Running it again when demo exists just shows its status.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
if bin/pgpilot status demo >/dev/null 2>&1; then
  echo "demo already exists; starting it if needed"
  bin/pgpilot start demo
else
  bin/pgpilot create demo --nodes 3
fi
