#!/usr/bin/env bash
# The property tests of test/fuzz, longer: `npm run fuzz -- --runs N` builds, then runs every
# property with FUZZ_RUNS=N (default 2000; the unit suite runs them with 200). Same fixed seed.
set -euo pipefail
cd "$(dirname "$0")/.."
runs=2000
while [ $# -gt 0 ]; do
  case "$1" in
    --runs) runs="${2:?--runs needs a number}"; shift 2 ;;
    --runs=*) runs="${1#--runs=}"; shift ;;
    *) echo "error: unknown argument $1" >&2; echo "hint: npm run fuzz -- --runs 5000" >&2; exit 2 ;;
  esac
done
if ! [[ "$runs" =~ ^[1-9][0-9]*$ ]]; then echo "error: --runs must be a positive whole number" >&2; exit 2; fi
npm run --silent build
FUZZ_RUNS="$runs" node --test --test-concurrency=1 dist/test/fuzz
