#!/usr/bin/env bash
# The whole suite: setup if needed, strict type check, then unit and
# integration tests (real containers on runc, a private berthd per file).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
NODE=node_modules/.bin/node
# Every directory, cgroup and device this run makes carries its tag.
export BERTH_TEST_RUN=r$$
# No registry off this machine, not even a DNS lookup for one.
export BERTH_REGISTRY_LOOPBACK_ONLY=1
# Leftovers of an interrupted earlier run would only confuse this one.
bash scripts/clean-test-leftovers.sh
echo "test: type check (strict)"
"$NODE" node_modules/typescript/bin/tsc -p tsconfig.json --noEmit
files=(test/unit/*.test.ts test/integration/*.test.ts)
status=0
"$NODE" --test --test-concurrency=1 --test-timeout=300000 "$@" "${files[@]}" || status=$?
# Every test cleans up after itself; say so loudly if one did not, then
# clean anyway so the machine is left as it was found.
bash scripts/check-clean.sh "/tmp/berth-test-$BERTH_TEST_RUN-" || status=1
bash scripts/clean-test-leftovers.sh /tmp/berth-test-"$BERTH_TEST_RUN"-*
exit $status
