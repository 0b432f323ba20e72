#!/usr/bin/env bash
# The whole suite: setup if needed, strict type check, then unit and
# integration tests (real containers on runc, a private berthd per suite).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
NODE=node_modules/.bin/node
echo "test: type check (strict)"
"$NODE" node_modules/typescript/bin/tsc -p tsconfig.json --noEmit
files=(test/unit/*.test.ts test/integration/*.test.ts)
status=0
"$NODE" --test --test-concurrency=1 --test-timeout=600000 "$@" "${files[@]}" || status=$?
bash scripts/check-clean.sh || status=1
exit $status
