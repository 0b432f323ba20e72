#!/usr/bin/env bash
# Install everything berth needs on a fresh machine and build it. Idempotent:
# each step only runs when its result is missing or stale.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD

# Debian packages, one list per concern under scripts/apt.d (comments with #).
# `--bench` adds what only the benchmarks need (Docker Engine to compare with).
lists=(scripts/apt.d/*.txt)
[ "${1:-}" = "--bench" ] && lists+=(bench/apt.txt)
mapfile -t APT_PACKAGES < <(sed 's/#.*//' "${lists[@]}" | tr -s ' \t' '\n\n' | grep -v '^$' | sort -u)
missing=()
for p in "${APT_PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "setup: installing ${missing[*]}"
  if [ "$(id -u)" -ne 0 ]; then echo "setup: must run as root to install packages" >&2; exit 1; fi
  apt-get update -qq
  # Packages that ship a service (a registry, Docker Engine for the benchmarks)
  # must not start it: berth starts what it needs itself, on loopback.
  # policy-rc.d answering 101 is Debian's way to say "do not start services".
  made_policy=0
  if [ ! -e /usr/sbin/policy-rc.d ]; then printf '#!/bin/sh\nexit 101\n' > /usr/sbin/policy-rc.d; chmod +x /usr/sbin/policy-rc.d; made_policy=1; fi
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null || { [ $made_policy = 1 ] && rm -f /usr/sbin/policy-rc.d; exit 1; }
  [ $made_policy = 1 ] && rm -f /usr/sbin/policy-rc.d
fi

# Node 24 and the TypeScript toolchain come from the npm registry, pinned by package-lock.json.
stamp=node_modules/.berth-install-stamp
if [ ! -x node_modules/.bin/node ] || [ ! -f "$stamp" ] || [ package-lock.json -nt "$stamp" ] || [ package.json -nt "$stamp" ]; then
  echo "setup: installing npm packages"
  npm ci --no-audit --no-fund --loglevel=error
  touch "$stamp"
fi
NODE=$ROOT/node_modules/.bin/node
"$NODE" --version | grep -q '^v24\.' || { echo "setup: node_modules/.bin/node is not Node 24" >&2; exit 1; }

# The per-container monitor and the launcher that starts monitors, in C.
mkdir -p native/build
for prog in berth-monitor berth-launcher berth-sendfile berth-netns; do
  if [ ! -x "native/build/$prog" ] || [ "native/$prog.c" -nt "native/build/$prog" ]; then
    echo "setup: building $prog"
    gcc -O2 -Wall -Wextra -Werror -o "native/build/$prog.tmp" "native/$prog.c"
    mv "native/build/$prog.tmp" "native/build/$prog"
  fi
done
# The berth command (berth-cli), its helper's watch (berth-cli-watch) and
# the hooks its Node process loads: the helper's wait for a command and the
# quick exit (src/cli/launch.ts). They share native/berth-cli-helper.h.
for prog in berth-cli berth-cli-watch berth-cli-serve.so berth-exit.so; do
  src=native/${prog%.so}.c
  if [ ! -f "native/build/$prog" ] || [ "$src" -nt "native/build/$prog" ] || [ native/berth-cli-helper.h -nt "native/build/$prog" ]; then
    echo "setup: building $prog"
    # -z nodelete: berth-cli-serve.so registers an exit handler, which must
    # outlive Node's dlclose of a library that is not an addon.
    case $prog in *.so) shared=(-shared -fPIC -Wl,-z,nodelete) ;; *) shared=() ;; esac
    gcc -O2 -Wall -Wextra -Werror "${shared[@]}" -o "native/build/$prog.tmp" "$src"
    mv "native/build/$prog.tmp" "native/build/$prog"
  fi
done

# TypeScript → JavaScript for the daemon and CLI (Node strips types too, but
# precompiled code starts faster, which `berth run` feels).
if [ ! -f dist/.stamp ] || [ -n "$(find src tsconfig.json scripts/bundle-cli.ts -newer dist/.stamp -print -quit)" ]; then
  echo "setup: compiling TypeScript"
  rm -rf dist
  "$NODE" node_modules/typescript/bin/tsc -p tsconfig.build.json
  # The CLI runs from one bundled file (see src/cli/launch.ts); code caches
  # taken from the previous bundle are dropped with it.
  "$NODE" scripts/bundle-cli.ts
  rm -rf .cache/cli-code
  touch dist/.stamp
fi

# The offline base image: a busybox root filesystem from Debian's busybox-static.
if [ ! -f .cache/busybox.tar ] || [ /bin/busybox -nt .cache/busybox.tar ]; then
  echo "setup: making the busybox image tarball"
  bash scripts/make-busybox.sh .cache/busybox.tar
fi
