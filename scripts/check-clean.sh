#!/usr/bin/env bash
# After the tests: nothing they made may be left on the machine.
leftover=0
if grep -q '/berth-test' /proc/mounts; then echo "check-clean: mounts left behind:"; grep '/berth-test' /proc/mounts; leftover=1; fi
if pgrep -f 'berth-test.*berth-monitor|berth-monitor.*berth-test' >/dev/null; then echo "check-clean: monitor processes left behind"; pgrep -fa berth-monitor; leftover=1; fi
if pgrep -f 'berthd.*berth-test' >/dev/null; then echo "check-clean: berthd processes left behind"; pgrep -fa berthd; leftover=1; fi
if ls -d /sys/fs/cgroup/*/berth-test* >/dev/null 2>&1; then echo "check-clean: cgroups left behind"; ls -d /sys/fs/cgroup/*/berth-test*; leftover=1; fi
exit $leftover
