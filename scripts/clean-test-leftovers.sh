#!/usr/bin/env bash
# Remove whatever an interrupted test run left under /tmp/berth-test-* (or
# the directories given): daemons, monitors and their containers, runtime
# state, mounts, cgroups. Without arguments, a directory whose owning test
# process is still alive belongs to a suite running elsewhere and is kept.
shopt -s nullglob
dirs=()
if [ $# -gt 0 ]; then
  dirs=("$@")
else
  for d in /tmp/berth-test-*; do
    owner=$(cat "$d/owner" 2>/dev/null)
    if [ -n "$owner" ] && kill -0 "$owner" 2>/dev/null; then continue; fi
    dirs+=("$d")
  done
  # cgroups of test daemons whose directories are already gone
  for cg in /sys/fs/cgroup/*/berth-test-* /sys/fs/cgroup/berth-test-*; do
    [ -d "$cg" ] && [ ! -d "/tmp/$(basename "$cg")" ] && find "$cg" -depth -type d -exec rmdir {} \; 2>/dev/null
  done
fi
[ ${#dirs[@]} -eq 0 ] && exit 0
for d in "${dirs[@]}"; do
  pkill -9 -f "(berthd|daemon/main\.js).*$d" 2>/dev/null
  pkill -9 -f "berth-monitor.*$d" 2>/dev/null
  pkill -9 -f -- "--cli-helper $d" 2>/dev/null
done
for d in "${dirs[@]}"; do
  for state in "$d"/exec/runtime/*/; do
    runc --root "$d/exec/runtime" delete -f "$(basename "$state")" >/dev/null 2>&1
  done
done
for d in "${dirs[@]}"; do
  grep -o " $d[^ ]*" /proc/mounts | sort -r | while read -r m; do umount -l "$m" 2>/dev/null; done
done
# Network leftovers: the test daemon's bridges carry the alias berth:<bridge>,
# its iptables chains end in -<bridge>; the bridge name is derived from the
# directory as test/helpers/daemon.ts does.
for d in "${dirs[@]}"; do
  br="bt$(printf %s "$d" | sha1sum | cut -c1-8)"
  ip -o link show 2>/dev/null | grep -F "alias berth:$br" | awk -F': ' '{print $2}' | sed 's/@.*//' | while read -r l; do ip link del dev "$l" 2>/dev/null; done
  for t in nat filter; do
    iptables -t "$t" -S 2>/dev/null | grep -E -- "-j BERTH-([A-Z0-9]+-)?$br\$" | grep -v -- "^-A BERTH-" | sed 's/^-A /-D /' | while read -r rule; do eval iptables -t "$t" "$rule" 2>/dev/null; done
    for c in $(iptables -t "$t" -S 2>/dev/null | awk -v b="$br" '$1=="-N" && $2 ~ ("^BERTH-.*" b "$") {print $2}'); do iptables -t "$t" -F "$c" 2>/dev/null; done
    for c in $(iptables -t "$t" -S 2>/dev/null | awk -v b="$br" '$1=="-N" && $2 ~ ("^BERTH-.*" b "$") {print $2}'); do iptables -t "$t" -X "$c" 2>/dev/null; done
  done
done
for d in "${dirs[@]}"; do
  name=$(basename "$d")
  for cg in /sys/fs/cgroup/*/"$name" /sys/fs/cgroup/"$name"; do
    [ -d "$cg" ] || continue
    find "$cg" -depth -type d -exec rmdir {} \; 2>/dev/null
  done
  rm -rf "$d"
done
exit 0
