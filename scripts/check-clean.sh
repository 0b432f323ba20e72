#!/usr/bin/env bash
# After the tests: nothing they made may be left on the machine. The
# argument narrows the check to one run's directories (/tmp/berth-test-TAG-).
prefix=${1:-/tmp/berth-test}
name=${prefix#/tmp/}
leftover=0
if grep -q "$prefix" /proc/mounts; then echo "check-clean: mounts left behind:"; grep "$prefix" /proc/mounts; leftover=1; fi
if pgrep -f "berth-monitor.*$prefix" >/dev/null; then echo "check-clean: monitor processes left behind"; pgrep -fa "berth-monitor.*$prefix"; leftover=1; fi
if pgrep -f "(berthd|daemon/main\.js).*$prefix" >/dev/null; then echo "check-clean: berthd processes left behind"; pgrep -fa "(berthd|daemon/main\.js).*$prefix"; leftover=1; fi
if pgrep -f -- "--cli-helper $prefix" >/dev/null; then echo "check-clean: berth CLI helper processes left behind"; pgrep -fa -- "--cli-helper $prefix"; leftover=1; fi
if ls -d /sys/fs/cgroup/*/"$name"* >/dev/null 2>&1; then echo "check-clean: cgroups left behind"; ls -d /sys/fs/cgroup/*/"$name"*; leftover=1; fi
exit $leftover
