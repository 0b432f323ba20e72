#!/usr/bin/env bash
# Quick start: install what is missing, start berthd if it is not running,
# make the busybox image (offline), and run a container.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
export DOCKER_HOST=unix:///run/berth/berth.sock
if ! bin/berth version >/dev/null 2>&1; then
  mkdir -p .cache
  echo "demo: starting berthd (log: .cache/berthd.log)"
  nohup bin/berthd >>.cache/berthd.log 2>&1 </dev/null &
  for _ in $(seq 1 100); do
    bin/berth version >/dev/null 2>&1 && break
    sleep 0.1
  done
  bin/berth version >/dev/null || { tail -20 .cache/berthd.log >&2; exit 1; }
fi
if ! bin/berth image inspect busybox >/dev/null 2>&1; then
  echo "demo: importing the busybox image"
  bin/berth import -c 'CMD ["sh"]' -m 'busybox from Debian busybox-static' .cache/busybox.tar busybox:latest
fi
bin/berth run --rm busybox echo "Hello from a berth container: $(uname -sr)"
