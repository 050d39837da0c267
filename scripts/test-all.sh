#!/usr/bin/env bash
# README command (2): set everything up on a fresh machine, then run the whole test suite.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
bash scripts/test.sh
