/**
 * Container statistics in the Engine API's shape (`GET /containers/{id}/stats`):
 * CPU, memory, PIDs and block I/O from the container's cgroup (v1 or v2),
 * network counters from /proc/<pid>/net/dev inside its network namespace.
 */
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { totalmem } from 'node:os';
import type { ContainerRecord } from './container-types.ts';
import { cgroupOfPath, cgroupOfPid, onlineCpus, readInt, readKeyed, readText } from '../runtime/cgroups.ts';
import type { CgroupPaths } from '../runtime/cgroups.ts';
import { ZERO_TIME } from '../util/time.ts';

export interface CpuStats {
  cpu_usage: { total_usage: number; percpu_usage?: number[]; usage_in_kernelmode: number; usage_in_usermode: number };
  system_cpu_usage?: number;
  online_cpus?: number;
  throttling_data: { periods: number; throttled_periods: number; throttled_time: number };
}

export interface BlkioEntry {
  major: number;
  minor: number;
  op: string;
  value: number;
}

export interface NetStats {
  rx_bytes: number; rx_packets: number; rx_errors: number; rx_dropped: number;
  tx_bytes: number; tx_packets: number; tx_errors: number; tx_dropped: number;
}

export interface StatsJSON {
  read: string;
  preread: string;
  pids_stats: { current?: number; limit?: number };
  blkio_stats: {
    io_service_bytes_recursive: BlkioEntry[] | null;
    io_serviced_recursive: BlkioEntry[] | null;
    io_queue_recursive: BlkioEntry[] | null;
    io_service_time_recursive: BlkioEntry[] | null;
    io_wait_time_recursive: BlkioEntry[] | null;
    io_merged_recursive: BlkioEntry[] | null;
    io_time_recursive: BlkioEntry[] | null;
    sectors_recursive: BlkioEntry[] | null;
  };
  num_procs: number;
  storage_stats: Record<string, never>;
  cpu_stats: CpuStats;
  precpu_stats: CpuStats;
  memory_stats: { usage?: number; max_usage?: number; failcnt?: number; limit?: number; stats?: Record<string, number> };
  name: string;
  id: string;
  networks?: Record<string, NetStats>;
}

const NS_PER_TICK = 1e9 / 100; // USER_HZ is 100 on Linux

function emptyCpu(): CpuStats {
  return { cpu_usage: { total_usage: 0, usage_in_kernelmode: 0, usage_in_usermode: 0 }, throttling_data: { periods: 0, throttled_periods: 0, throttled_time: 0 } };
}

function emptyBlkio(): StatsJSON['blkio_stats'] {
  return {
    io_service_bytes_recursive: null, io_serviced_recursive: null, io_queue_recursive: null, io_service_time_recursive: null,
    io_wait_time_recursive: null, io_merged_recursive: null, io_time_recursive: null, sectors_recursive: null,
  };
}

/** The host's total CPU time in nanoseconds (docker's system_cpu_usage). */
export function systemCpuUsage(): number {
  const line = readText('/proc/stat')?.split('\n').find((l) => l.startsWith('cpu ')) ?? '';
  const fields = line.trim().split(/\s+/).slice(1, 9).map(Number);
  return fields.reduce((a, b) => a + (Number.isFinite(b) ? b : 0), 0) * NS_PER_TICK;
}

function cpuStats(cg: CgroupPaths): CpuStats {
  const cpu = emptyCpu();
  cpu.online_cpus = onlineCpus().length;
  cpu.system_cpu_usage = systemCpuUsage();
  if (cg.version === 2) {
    const st = readKeyed(join(cg.dir('cpu') ?? '/nonexistent', 'cpu.stat'));
    cpu.cpu_usage.total_usage = (st.usage_usec ?? 0) * 1000;
    cpu.cpu_usage.usage_in_usermode = (st.user_usec ?? 0) * 1000;
    cpu.cpu_usage.usage_in_kernelmode = (st.system_usec ?? 0) * 1000;
    cpu.throttling_data = { periods: st.nr_periods ?? 0, throttled_periods: st.nr_throttled ?? 0, throttled_time: (st.throttled_usec ?? 0) * 1000 };
    return cpu;
  }
  const acct = cg.dir('cpuacct');
  if (acct) {
    cpu.cpu_usage.total_usage = readInt(join(acct, 'cpuacct.usage')) ?? 0;
    const per = readText(join(acct, 'cpuacct.usage_percpu'))?.trim();
    if (per) cpu.cpu_usage.percpu_usage = per.split(/\s+/).map(Number);
    const st = readKeyed(join(acct, 'cpuacct.stat'));
    cpu.cpu_usage.usage_in_usermode = (st.user ?? 0) * NS_PER_TICK;
    cpu.cpu_usage.usage_in_kernelmode = (st.system ?? 0) * NS_PER_TICK;
  }
  const c = cg.dir('cpu');
  if (c) {
    const st = readKeyed(join(c, 'cpu.stat'));
    cpu.throttling_data = { periods: st.nr_periods ?? 0, throttled_periods: st.nr_throttled ?? 0, throttled_time: st.throttled_time ?? 0 };
  }
  return cpu;
}

function memoryStats(cg: CgroupPaths): StatsJSON['memory_stats'] {
  const dir = cg.dir('memory');
  if (!dir) return {};
  const host = totalmem();
  if (cg.version === 2) {
    const limit = readInt(join(dir, 'memory.max'));
    return {
      usage: readInt(join(dir, 'memory.current')) ?? 0,
      stats: readKeyed(join(dir, 'memory.stat')),
      limit: limit === undefined || limit > host ? host : limit,
    };
  }
  const limit = readInt(join(dir, 'memory.limit_in_bytes'));
  return {
    usage: readInt(join(dir, 'memory.usage_in_bytes')) ?? 0,
    max_usage: readInt(join(dir, 'memory.max_usage_in_bytes')) ?? 0,
    failcnt: readInt(join(dir, 'memory.failcnt')) ?? 0,
    stats: readKeyed(join(dir, 'memory.stat')),
    limit: limit === undefined || limit > host ? host : limit,
  };
}

function pidsStats(cg: CgroupPaths): StatsJSON['pids_stats'] {
  const dir = cg.dir('pids');
  if (!dir) return {};
  const out: StatsJSON['pids_stats'] = { current: readInt(join(dir, 'pids.current')) ?? 0 };
  const limit = readInt(join(dir, 'pids.max'));
  if (limit !== undefined) out.limit = limit;
  return out;
}

/** v1 blkio files: "8:0 Read 4096" lines (a final "Total N" line is skipped). */
export function parseBlkioV1(text: string | undefined): BlkioEntry[] {
  const out: BlkioEntry[] = [];
  for (const line of (text ?? '').split('\n')) {
    const m = /^(\d+):(\d+)\s+(\S+)\s+(\d+)$/.exec(line.trim());
    if (m) out.push({ major: Number(m[1]), minor: Number(m[2]), op: m[3]!, value: Number(m[4]) });
  }
  return out;
}

/** v2 io.stat: "8:0 rbytes=1 wbytes=2 rios=3 wios=4 ..." → docker's read/write entries. */
export function parseIoStatV2(text: string | undefined): { bytes: BlkioEntry[]; ios: BlkioEntry[] } {
  const bytes: BlkioEntry[] = [];
  const ios: BlkioEntry[] = [];
  for (const line of (text ?? '').split('\n')) {
    const [dev, ...kv] = line.trim().split(/\s+/);
    const m = /^(\d+):(\d+)$/.exec(dev ?? '');
    if (!m) continue;
    const major = Number(m[1]);
    const minor = Number(m[2]);
    const vals = Object.fromEntries(kv.map((p) => p.split('=')).map(([k, v]) => [k, Number(v)]));
    bytes.push({ major, minor, op: 'read', value: vals.rbytes ?? 0 }, { major, minor, op: 'write', value: vals.wbytes ?? 0 });
    ios.push({ major, minor, op: 'read', value: vals.rios ?? 0 }, { major, minor, op: 'write', value: vals.wios ?? 0 });
  }
  return { bytes, ios };
}

function blkioStats(cg: CgroupPaths): StatsJSON['blkio_stats'] {
  const b = emptyBlkio();
  if (cg.version === 2) {
    const { bytes, ios } = parseIoStatV2(readText(join(cg.dir('io') ?? '/nonexistent', 'io.stat')));
    b.io_service_bytes_recursive = bytes;
    b.io_serviced_recursive = ios;
    return b;
  }
  const dir = cg.dir('blkio');
  if (!dir) return b;
  // CFQ/BFQ accounting where the scheduler offers it, else the throttle layer's counters (always present).
  const pick = (names: string[]) => {
    for (const n of names) {
      const t = readText(join(dir, n));
      if (t !== undefined && parseBlkioV1(t).length) return parseBlkioV1(t);
    }
    return [];
  };
  b.io_service_bytes_recursive = pick(['blkio.io_service_bytes_recursive', 'blkio.bfq.io_service_bytes_recursive', 'blkio.throttle.io_service_bytes_recursive']);
  b.io_serviced_recursive = pick(['blkio.io_serviced_recursive', 'blkio.bfq.io_serviced_recursive', 'blkio.throttle.io_serviced_recursive']);
  return b;
}

/** /proc/<pid>/net/dev of the container's namespace, loopback left out as docker does. */
export function parseNetDev(text: string): Record<string, NetStats> {
  const out: Record<string, NetStats> = {};
  for (const line of text.split('\n').slice(2)) {
    const i = line.indexOf(':');
    if (i < 0) continue;
    const name = line.slice(0, i).trim();
    if (name === 'lo') continue;
    const f = line.slice(i + 1).trim().split(/\s+/).map(Number);
    out[name] = {
      rx_bytes: f[0] ?? 0, rx_packets: f[1] ?? 0, rx_errors: f[2] ?? 0, rx_dropped: f[3] ?? 0,
      tx_bytes: f[8] ?? 0, tx_packets: f[9] ?? 0, tx_errors: f[10] ?? 0, tx_dropped: f[11] ?? 0,
    };
  }
  return out;
}

/** One sample of a container; `prev` supplies precpu_stats and preread. */
export function sampleStats(rec: ContainerRecord, cgroupsPath: string, prev?: StatsJSON): StatsJSON {
  const base: StatsJSON = {
    read: ZERO_TIME,
    preread: prev?.read ?? ZERO_TIME,
    pids_stats: {},
    blkio_stats: emptyBlkio(),
    num_procs: 0,
    storage_stats: {},
    cpu_stats: emptyCpu(),
    precpu_stats: prev?.cpu_stats ?? emptyCpu(),
    memory_stats: {},
    name: rec.Name,
    id: rec.Id,
  };
  if (!rec.State.Running || !rec.State.Pid) return base;
  const cg = cgroupOfPid(rec.State.Pid) ?? cgroupOfPath(cgroupsPath);
  base.read = new Date().toISOString();
  base.cpu_stats = cpuStats(cg);
  base.memory_stats = memoryStats(cg);
  base.pids_stats = pidsStats(cg);
  base.blkio_stats = blkioStats(cg);
  if (rec.HostConfig.NetworkMode !== 'host') {
    try {
      const nets = parseNetDev(readFileSync(`/proc/${rec.State.Pid}/net/dev`, 'utf8'));
      if (Object.keys(nets).length) base.networks = nets;
    } catch {
      // the process is gone
    }
  }
  return base;
}
