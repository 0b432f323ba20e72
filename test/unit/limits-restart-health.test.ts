/**
 * The pure parts of limits, restart policies, health checks, stats parsing
 * and the CLI's resource flags: docker's rules and arithmetic.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { checkResources, ociResources, ociRlimits, applyUpdate } from '../../src/engine/limits.ts';
import { nextDelay, shouldRestart, restartOnBoot, INITIAL_DELAY_MS, MAX_DELAY_MS } from '../../src/engine/restart.ts';
import { probeArgs, mergeHealthcheck } from '../../src/engine/health.ts';
import { parseBlkioV1, parseIoStatV2, parseNetDev } from '../../src/engine/stats.ts';
import { parseProcCgroup, parseCpuList } from '../../src/runtime/cgroups.ts';
import { parseSecurityOpts } from '../../src/engine/security.ts';
import { ramInBytes, parseCpus, parseUlimit, parseDevice } from '../../src/cli/resource-opts.ts';
import { statsRow, binarySize, decimalSize } from '../../src/cli/commands/stats.ts';
import type { ContainerRecord, HostConfig } from '../../src/engine/container-types.ts';
import type { StatsJSON } from '../../src/engine/stats.ts';

const MiB = 1024 * 1024;
const hc = (over: Partial<HostConfig>): HostConfig => ({ LogConfig: { Type: 'json-file', Config: {} }, NetworkMode: 'bridge', RestartPolicy: { Name: 'no' }, AutoRemove: false, Privileged: false, ReadonlyRootfs: false, ...over });

test('resource checks use docker\'s rules and messages', () => {
  assert.throws(() => checkResources(hc({ Memory: MiB })), /Minimum memory limit allowed is 6MB/);
  assert.throws(() => checkResources(hc({ Memory: 64 * MiB, MemorySwap: 32 * MiB })), /memoryswap limit should be larger/);
  assert.throws(() => checkResources(hc({ MemorySwap: 64 * MiB })), /always set the Memory limit/);
  assert.throws(() => checkResources(hc({ Memory: 16 * MiB, MemoryReservation: 32 * MiB })), /can not be less than memory reservation/);
  assert.throws(() => checkResources(hc({ NanoCpus: -1 })), /Range of CPUs is from 0.01/);
  assert.throws(() => checkResources(hc({ NanoCpus: 1e9, CpuPeriod: 100000 })), /Nano CPUs and CPU Period/);
  assert.throws(() => checkResources(hc({ CpuQuota: 500 })), /CPU cfs quota can not be less than 1ms/);
  assert.throws(() => checkResources(hc({ BlkioWeight: 2000 })), /Range of blkio weight is from 10 to 1000/);
  assert.throws(() => checkResources(hc({ MemorySwappiness: 101 })), /valid memory swappiness range is 0-100/);
  assert.throws(() => checkResources(hc({ Ulimits: [{ Name: 'nofile', Soft: 10, Hard: 5 }] })), /soft limit must be less than or equal to hard limit: 10 > 5/);
  assert.throws(() => checkResources(hc({ CpusetCpus: '0-' })), /Invalid value 0- for cpuset cpus/);
  const ok = hc({ Memory: 64 * MiB });
  checkResources(ok);
  assert.ok(ok.MemorySwap === 128 * MiB || ok.MemorySwap === -1, 'swap defaults to twice the memory where it can be limited');
});

test('OCI resources and rlimits from HostConfig', () => {
  const r = ociResources(hc({ Memory: 64 * MiB, MemoryReservation: 32 * MiB, NanoCpus: 1.5e9, CpuShares: 512, CpusetCpus: '0', PidsLimit: 50, OomKillDisable: true }));
  assert.equal(r.memory?.limit, 64 * MiB);
  assert.equal(r.memory?.reservation, 32 * MiB);
  assert.equal(r.memory?.disableOOMKiller, true);
  assert.deepEqual({ period: r.cpu?.period, quota: r.cpu?.quota, shares: r.cpu?.shares, cpus: r.cpu?.cpus }, { period: 100000, quota: 150000, shares: 512, cpus: '0' });
  assert.deepEqual(r.pids, { limit: 50 });
  assert.deepEqual(ociResources(hc({ PidsLimit: -1 })).pids, { limit: -1 });
  assert.equal(ociResources(hc({ PidsLimit: 0 })).pids, undefined);
  assert.deepEqual(ociRlimits(hc({ Ulimits: [{ Name: 'nofile', Soft: 100, Hard: -1 }] })), [{ type: 'RLIMIT_NOFILE', soft: 100, hard: 2 ** 64 - 1 }]);
});

test('update: only given fields change; memory above the old swap needs a new swap', () => {
  const cur = hc({ Memory: 64 * MiB, MemorySwap: 128 * MiB, CpuShares: 100 });
  const { hc: next } = applyUpdate(cur, { CpuShares: 200, Memory: 0 });
  assert.equal(next.CpuShares, 200);
  assert.equal(next.Memory, 64 * MiB);
  assert.throws(() => applyUpdate(cur, { Memory: 256 * MiB }), /update the memoryswap at the same time/);
  assert.equal(applyUpdate(cur, { Memory: 256 * MiB, MemorySwap: 512 * MiB }).hc.Memory, 256 * MiB);
  assert.throws(() => applyUpdate(hc({ NanoCpus: 1e9 }), { CpuQuota: 50000 }), /NanoCPUs has already been set/);
});

test('restart back-off: 100 ms, doubling after quick exits, capped, reset after a 10 s run', () => {
  let d = nextDelay(undefined, 0);
  assert.equal(d, INITIAL_DELAY_MS);
  const seen = [d];
  for (let i = 0; i < 12; i++) seen.push((d = nextDelay(d, 500)));
  assert.deepEqual(seen.slice(0, 6), [100, 200, 400, 800, 1600, 3200]);
  assert.equal(seen[seen.length - 1], MAX_DELAY_MS);
  assert.equal(nextDelay(MAX_DELAY_MS, 10_000), INITIAL_DELAY_MS);
});

test('restart decisions', () => {
  const rec = (name: HostConfig['RestartPolicy']['Name'], max = 0, count = 0, stopped = false) => ({
    HostConfig: hc({ RestartPolicy: { Name: name, MaximumRetryCount: max } }), RestartCount: count, berth: { layers: [], imageRef: '', manuallyStopped: stopped },
  }) as unknown as ContainerRecord;
  assert.equal(shouldRestart(rec('no'), 1), false);
  assert.equal(shouldRestart(rec('always'), 0), true);
  assert.equal(shouldRestart(rec('always', 0, 0, true), 0), false, 'a stop by the user wins');
  assert.equal(shouldRestart(rec('on-failure'), 0), false);
  assert.equal(shouldRestart(rec('on-failure', 2, 1), 3), true);
  assert.equal(shouldRestart(rec('on-failure', 2, 2), 3), false);
  assert.equal(restartOnBoot(rec('always', 0, 0, true)), true);
  assert.equal(restartOnBoot(rec('unless-stopped', 0, 0, true)), false);
  assert.equal(restartOnBoot(rec('unless-stopped')), true);
  assert.equal(restartOnBoot(rec('on-failure')), false);
});

test('health check commands and merging with the image', () => {
  assert.deepEqual(probeArgs({ Test: ['CMD-SHELL', 'curl -f x'] }), ['/bin/sh', '-c', 'curl -f x']);
  assert.deepEqual(probeArgs({ Test: ['CMD', 'true', 'a'] }), ['true', 'a']);
  assert.deepEqual(probeArgs({ Test: ['CMD-SHELL', 'x'] }, ['/bin/bash', '-ec']), ['/bin/bash', '-ec', 'x']);
  assert.equal(probeArgs({ Test: ['NONE'] }), undefined);
  assert.equal(probeArgs(undefined), undefined);
  assert.deepEqual(mergeHealthcheck({ Interval: 5e9 }, { Test: ['CMD', 'a'], Interval: 1e9, Retries: 2 }), { Test: ['CMD', 'a'], Interval: 5e9, Retries: 2 });
  assert.deepEqual(mergeHealthcheck({ Test: ['NONE'] }, { Test: ['CMD', 'a'] }), { Test: ['NONE'] });
});

test('stats parsing: net/dev, blkio v1, io.stat v2, /proc/<pid>/cgroup', () => {
  const net = parseNetDev('Inter-|   Receive\n face |bytes\n    lo: 10 1 0 0 0 0 0 0 10 1 0 0 0 0 0 0\n  eth0: 1500 12 1 2 0 0 0 0 900 7 3 4 0 0 0 0\n');
  assert.deepEqual(Object.keys(net), ['eth0']);
  assert.deepEqual(net.eth0, { rx_bytes: 1500, rx_packets: 12, rx_errors: 1, rx_dropped: 2, tx_bytes: 900, tx_packets: 7, tx_errors: 3, tx_dropped: 4 });
  assert.deepEqual(parseBlkioV1('8:0 Read 4096\n8:0 Write 8192\nTotal 12288\n'), [{ major: 8, minor: 0, op: 'Read', value: 4096 }, { major: 8, minor: 0, op: 'Write', value: 8192 }]);
  const io = parseIoStatV2('254:0 rbytes=100 wbytes=200 rios=1 wios=2 dbytes=0 dios=0\n');
  assert.deepEqual(io.bytes, [{ major: 254, minor: 0, op: 'read', value: 100 }, { major: 254, minor: 0, op: 'write', value: 200 }]);
  const v1 = parseProcCgroup('4:memory:/berth/abc\n2:cpu,cpuacct:/berth/abc\n0::/\n', 1, new Map([['memory', '/sys/fs/cgroup/memory'], ['cpuacct', '/sys/fs/cgroup/cpu,cpuacct']]));
  assert.equal(v1.dir('memory'), '/sys/fs/cgroup/memory/berth/abc');
  assert.equal(v1.dir('cpuacct'), '/sys/fs/cgroup/cpu,cpuacct/berth/abc');
  assert.equal(v1.dir('pids'), undefined);
  const v2 = parseProcCgroup('0::/berth/abc\n', 2);
  assert.equal(v2.dir('memory'), '/sys/fs/cgroup/berth/abc');
  assert.deepEqual(parseCpuList('0-2,5'), [0, 1, 2, 5]);
  assert.throws(() => parseCpuList('3-1'));
});

test('stats CLI arithmetic: CPU % from deltas, memory without inactive file pages', () => {
  const cpu = (total: number, system: number) => ({ cpu_usage: { total_usage: total, usage_in_kernelmode: 0, usage_in_usermode: 0 }, system_cpu_usage: system, online_cpus: 2, throttling_data: { periods: 0, throttled_periods: 0, throttled_time: 0 } });
  const s = {
    read: '2026-01-01T00:00:01Z', preread: '2026-01-01T00:00:00Z', id: 'a'.repeat(64), name: '/web', num_procs: 0, storage_stats: {},
    cpu_stats: cpu(1.5e9, 12e9), precpu_stats: cpu(1e9, 10e9),
    memory_stats: { usage: 10 * MiB, limit: 100 * MiB, stats: { total_inactive_file: 2 * MiB } },
    pids_stats: { current: 3 },
    blkio_stats: { io_service_bytes_recursive: [{ major: 8, minor: 0, op: 'Read', value: 1500 }, { major: 8, minor: 0, op: 'Write', value: 2_500_000 }], io_serviced_recursive: null, io_queue_recursive: null, io_service_time_recursive: null, io_wait_time_recursive: null, io_merged_recursive: null, io_time_recursive: null, sectors_recursive: null },
    networks: { eth0: { rx_bytes: 1234, rx_packets: 0, rx_errors: 0, rx_dropped: 0, tx_bytes: 0, tx_packets: 0, tx_errors: 0, tx_dropped: 0 } },
  } as StatsJSON;
  const row = statsRow(s, 'web');
  assert.equal(row.CPUPerc, '50.00%');
  assert.equal(row.MemUsage, '8MiB / 100MiB');
  assert.equal(row.MemPerc, '8.00%');
  assert.equal(row.NetIO, '1.23kB / 0B');
  assert.equal(row.BlockIO, '1.5kB / 2.5MB');
  assert.equal(row.PIDs, '3');
  assert.equal(row.ID, 'aaaaaaaaaaaa');
  assert.equal(binarySize(1.5 * 1024 * 1024 * 1024), '1.5GiB');
  assert.equal(decimalSize(999), '999B');
});

test('CLI value parsing as docker\'s CLI does it', () => {
  assert.equal(ramInBytes('512m'), 512 * MiB);
  assert.equal(ramInBytes('1.5g'), 1.5 * 1024 * MiB);
  assert.equal(ramInBytes('1GB'), 1024 * MiB);
  assert.throws(() => ramInBytes('1x'), /invalid suffix: 'x'/);
  assert.throws(() => ramInBytes('abc'), /invalid size: 'abc'/);
  assert.equal(parseCpus('0.5'), 5e8);
  assert.equal(parseCpus('2'), 2e9);
  assert.equal(parseCpus('-1'), -1e9);
  assert.throws(() => parseCpus('x'), /rational number/);
  assert.deepEqual(parseUlimit('nofile=10:20'), { Name: 'nofile', Soft: 10, Hard: 20 });
  assert.deepEqual(parseUlimit('nproc=5'), { Name: 'nproc', Soft: 5, Hard: 5 });
  assert.deepEqual(parseDevice('/dev/sda:/dev/xvda:r'), { PathOnHost: '/dev/sda', PathInContainer: '/dev/xvda', CgroupPermissions: 'r' });
  assert.deepEqual(parseDevice('/dev/fuse'), { PathOnHost: '/dev/fuse', PathInContainer: '/dev/fuse', CgroupPermissions: 'rwm' });
  assert.deepEqual(parseSecurityOpts(['no-new-privileges', 'seccomp=unconfined']), { noNewPrivileges: true, seccomp: 'unconfined' });
  assert.deepEqual(parseSecurityOpts(['no-new-privileges:false', 'apparmor=unconfined']), { noNewPrivileges: false });
  assert.throws(() => parseSecurityOpts(['nonsense']), /Invalid --security-opt: "nonsense"/);
});
