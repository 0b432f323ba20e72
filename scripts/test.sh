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
# The berth CLI's helper processes (native/berth-cli-helper.h) of this run
# wait here, and are ended with it.
export BERTH_CLI_HELPER_DIR=/tmp/berth-test-$BERTH_TEST_RUN-cli
mkdir -m 700 "$BERTH_CLI_HELPER_DIR"
echo $$ > "$BERTH_CLI_HELPER_DIR/owner"
echo "test: type check (strict)"
"$NODE" node_modules/typescript/bin/tsc -p tsconfig.json --noEmit
files=(test/unit/*.test.ts test/integration/*.test.ts)
status=0
"$NODE" --test --test-concurrency=1 --test-timeout=300000 "$@" "${files[@]}" || status=$?
# A waiting CLI helper is not a leftover: it would end after its idle time.
pkill -f -- "--cli-helper $BERTH_CLI_HELPER_DIR" || true
for _ in $(seq 50); do pgrep -f -- "--cli-helper $BERTH_CLI_HELPER_DIR" >/dev/null || break; sleep 0.1; done
# Every test cleans up after itself; say so loudly if one did not, then
# clean anyway so the machine is left as it was found.
bash scripts/check-clean.sh "/tmp/berth-test-$BERTH_TEST_RUN-" || status=1
bash scripts/clean-test-leftovers.sh /tmp/berth-test-"$BERTH_TEST_RUN"-*
exit $status
