#!/usr/bin/env bash
# Run one benchmark (or all of them) after making sure everything it
# compares against is installed:  npm run bench -- [name [args...]]
# e.g. `npm run bench -- run-latency 40`. Names are the files in bench/.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh --bench
NODE=node_modules/.bin/node
if [ $# -gt 0 ]; then
  name=$1; shift
  exec "$NODE" "bench/$name.ts" "$@"
fi
for f in bench/*.ts; do
  [ "$f" = bench/lib.ts ] && continue
  echo "== $f"
  "$NODE" "$f"
done
