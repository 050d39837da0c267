#!/usr/bin/env bash
# The whole test suite: lint, typecheck (the build), unit + contract tests, then integration tests
# with real PostgreSQL and etcd. Assumes scripts/setup.sh ran (scripts/test-all.sh does both).
set -euo pipefail
cd "$(dirname "$0")/.."

echo "== lint"
npx eslint . --max-warnings=0
echo "== typecheck + build"
npm run --silent build

mapfile -t unit < <(find dist/test/unit dist/test/contracts dist/test/scenarios dist/test/fuzz -name '*.test.js' 2>/dev/null | sort)
mapfile -t integration < <(find dist/test/integration dist/test/e2e -name '*.test.js' 2>/dev/null | sort)
echo "== unit, contract and scenario tests (${#unit[@]} files) and integration tests (${#integration[@]} files)"
node --test --test-concurrency=1 --test-timeout=900000 "${unit[@]}" "${integration[@]}"
