/**
 * run/create (and update) flags for resource limits, devices, sysctls,
 * --init and health checks, turned into create-body fields as docker's CLI
 * does, with its client-side error messages.
 */
import { readFileSync } from 'node:fs';
import type { FlagSpec, Flags } from './flags.ts';
import { CliError } from './command.ts';
import { parseDuration } from '../util/time.ts';

/** Flags `update` shares with run/create. */
export const UPDATE_FLAGS: FlagSpec[] = [
  { name: 'memory', short: 'm', type: 'string', description: 'Memory limit' },
  { name: 'memory-swap', type: 'string', description: "Swap limit equal to memory plus swap: '-1' to enable unlimited swap" },
  { name: 'memory-reservation', type: 'string', description: 'Memory soft limit' },
  { name: 'cpus', type: 'string', description: 'Number of CPUs' },
  { name: 'cpu-shares', short: 'c', type: 'int', description: 'CPU shares (relative weight)' },
  { name: 'cpu-period', type: 'int', description: 'Limit CPU CFS (Completely Fair Scheduler) period' },
  { name: 'cpu-quota', type: 'int', description: 'Limit CPU CFS (Completely Fair Scheduler) quota' },
  { name: 'cpu-rt-period', type: 'int', description: 'Limit the CPU real-time period in microseconds' },
  { name: 'cpu-rt-runtime', type: 'int', description: 'Limit the CPU real-time runtime in microseconds' },
  { name: 'cpuset-cpus', type: 'string', description: 'CPUs in which to allow execution (0-3, 0,1)' },
  { name: 'cpuset-mems', type: 'string', description: 'MEMs in which to allow execution (0-3, 0,1)' },
  { name: 'pids-limit', type: 'int', description: 'Tune container pids limit (set -1 for unlimited)' },
  { name: 'blkio-weight', type: 'int', description: 'Block IO (relative weight), between 10 and 1000, or 0 to disable (default 0)' },
  { name: 'kernel-memory', type: 'string', hidden: true },
];

export const RESOURCE_FLAGS: FlagSpec[] = [
  ...UPDATE_FLAGS,
  { name: 'memory-swappiness', type: 'int', description: 'Tune container memory swappiness (0 to 100)', default: -1 },
  { name: 'oom-kill-disable', type: 'bool', description: 'Disable OOM Killer' },
  { name: 'oom-score-adj', type: 'int', description: "Tune host's OOM preferences (-1000 to 1000)" },
  { name: 'ulimit', type: 'list', description: 'Ulimit options' },
  { name: 'device', type: 'list', description: 'Add a host device to the container' },
  { name: 'sysctl', type: 'list', description: 'Sysctl options' },
  { name: 'init', type: 'bool', description: 'Run an init inside the container that forwards signals and reaps processes' },
  { name: 'cgroup-parent', type: 'string', description: 'Optional parent cgroup for the container' },
  { name: 'health-cmd', type: 'string', description: 'Command to run to check health' },
  { name: 'health-interval', type: 'string', description: 'Time between running the check (ms|s|m|h) (default 0s)' },
  { name: 'health-timeout', type: 'string', description: 'Maximum time to allow one check to run (ms|s|m|h) (default 0s)' },
  { name: 'health-retries', type: 'int', description: 'Consecutive failures needed to report unhealthy' },
  { name: 'health-start-period', type: 'string', description: 'Start period for the container to initialize before starting health-retries countdown (ms|s|m|h) (default 0s)' },
  { name: 'health-start-interval', type: 'string', description: 'Time between running the check during the start period (ms|s|m|h) (default 0s)' },
  { name: 'no-healthcheck', type: 'bool', description: 'Disable any container-specified HEALTHCHECK' },
];

function flagName(spec: string): string {
  const s = RESOURCE_FLAGS.find((f) => f.name === spec);
  return s?.short ? `-${s.short}, --${s.name}` : `--${spec}`;
}

function bad(flag: string, value: string, why: string): CliError {
  return new CliError(`invalid argument "${value}" for "${flagName(flag)}" flag: ${why}`, 125);
}

/** docker's RAMInBytes: 512m, 1g, 1.5GB, 100k, 1024 (powers of 1024). Throws docker's message. */
export function ramInBytes(s: string): number {
  const m = /^(\d+(?:\.\d+)?) ?(.*)$/.exec(s);
  if (!m) throw new Error(`invalid size: '${s}'`);
  const suffix = m[2]!.toLowerCase();
  const units: Record<string, number> = { '': 1, b: 1, k: 1024, m: 1024 ** 2, g: 1024 ** 3, t: 1024 ** 4, p: 1024 ** 5 };
  const unit = suffix.replace(/i?b$/, '') || (suffix === 'b' ? 'b' : '');
  if (!(unit in units) || (suffix !== '' && !/^[kmgtp]?(ib|b)?$/.test(suffix))) throw new Error(`invalid suffix: '${m[2]}'`);
  return Math.round(Number(m[1]) * units[unit]!);
}

function memFlag(f: Flags, name: string, allowMinusOne = false): number | undefined {
  const v = f.str(name);
  if (v === undefined || v === '') return undefined;
  if (allowMinusOne && v === '-1') return -1;
  try {
    return ramInBytes(v);
  } catch (err) {
    throw bad(name, v, (err as Error).message);
  }
}

/** --cpus as nano-CPUs, exact to 1e-9 as docker requires. */
export function parseCpus(v: string): number {
  if (!/^-?\d+(\.\d+)?$/.test(v) && !/^-?\.\d+$/.test(v)) throw bad('cpus', v, `failed to parse ${v} as a rational number`);
  const [int = '0', frac = ''] = v.replace(/^-/, '').split('.');
  if (frac.length > 9 && /[1-9]/.test(frac.slice(9))) throw bad('cpus', v, 'value is too precise');
  const nano = Number(int) * 1e9 + Number((frac + '000000000').slice(0, 9));
  return v.startsWith('-') ? -nano : nano;
}

function durationNs(f: Flags, name: string): number | undefined {
  const v = f.str(name);
  if (v === undefined) return undefined;
  let ms: number | undefined;
  try {
    ms = parseDuration(v);
  } catch {
    throw bad(name, v, `time: invalid duration "${v}"`);
  }
  return Math.round((ms ?? 0) * 1e6);
}

/** The resource fields the update flags set (only those given). */
export function updateResourceFields(f: Flags): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  const mem = memFlag(f, 'memory');
  if (mem !== undefined) out.Memory = mem;
  const swap = memFlag(f, 'memory-swap', true);
  if (swap !== undefined) out.MemorySwap = swap;
  const res = memFlag(f, 'memory-reservation');
  if (res !== undefined) out.MemoryReservation = res;
  const cpus = f.str('cpus');
  if (cpus !== undefined) out.NanoCpus = parseCpus(cpus);
  const ints: Array<[string, string]> = [
    ['cpu-shares', 'CpuShares'], ['cpu-period', 'CpuPeriod'], ['cpu-quota', 'CpuQuota'], ['cpu-rt-period', 'CpuRealtimePeriod'],
    ['cpu-rt-runtime', 'CpuRealtimeRuntime'], ['blkio-weight', 'BlkioWeight'], ['pids-limit', 'PidsLimit'],
  ];
  for (const [flag, field] of ints) {
    const v = f.int(flag);
    if (v !== undefined) out[field] = v;
  }
  if (f.str('cpuset-cpus') !== undefined) out.CpusetCpus = f.str('cpuset-cpus');
  if (f.str('cpuset-mems') !== undefined) out.CpusetMems = f.str('cpuset-mems');
  return out;
}

/** `nofile=1024:2048` → docker's Ulimit object. */
export function parseUlimit(v: string): { Name: string; Soft: number; Hard: number } {
  const m = /^([a-z]+)=(-?\d+)(?::(-?\d+))?$/.exec(v);
  if (!m) throw bad('ulimit', v, `invalid ulimit argument: ${v}`);
  const soft = Number(m[2]);
  const hard = m[3] === undefined ? soft : Number(m[3]);
  if (hard !== -1 && soft > hard) throw bad('ulimit', v, `ulimit soft limit must be less than or equal to hard limit: ${soft} > ${hard}`);
  return { Name: m[1]!, Soft: soft, Hard: hard };
}

/** `/dev/sda[:/dev/xvda][:rwm]` → docker's DeviceMapping. */
export function parseDevice(v: string): { PathOnHost: string; PathInContainer: string; CgroupPermissions: string } {
  const parts = v.split(':');
  let perms = 'rwm';
  if (parts.length > 1 && /^[rwm]{1,3}$/.test(parts[parts.length - 1]!)) perms = parts.pop()!;
  if (parts.length > 2 || !parts[0]) throw bad('device', v, `invalid device specification: ${v}`);
  const host = parts[0];
  const inContainer = parts[1] ?? host;
  if (!inContainer.startsWith('/')) throw bad('device', v, `bad format for path: ${inContainer}`);
  return { PathOnHost: host, PathInContainer: inContainer, CgroupPermissions: perms };
}

/** --security-opt seccomp=FILE sends the profile's content, as docker's CLI does. */
export function resolveSecurityOpts(opts: string[]): string[] {
  return opts.map((o) => {
    const m = /^seccomp[=:](.*)$/s.exec(o);
    if (!m || m[1] === 'unconfined' || m[1] === 'builtin' || m[1]!.trimStart().startsWith('{')) return o;
    let text: string;
    try {
      text = readFileSync(m[1]!, 'utf8');
    } catch (err) {
      const code = (err as NodeJS.ErrnoException).code;
      throw new CliError(`opening seccomp profile (${m[1]}) failed: open ${m[1]}: ${code === 'ENOENT' ? 'no such file or directory' : (err as Error).message}`, 125);
    }
    try {
      return `seccomp=${JSON.stringify(JSON.parse(text))}`;
    } catch (err) {
      throw new CliError(`compacting json for seccomp profile (${m[1]}) failed: ${(err as Error).message}`, 125);
    }
  });
}

/** Add the resource, device, sysctl, init and health fields to a create body. */
export function applyResourceFlags(f: Flags, body: Record<string, unknown>, hostConfig: Record<string, unknown>): void {
  const rp = hostConfig.RestartPolicy as { Name?: string } | undefined;
  if (hostConfig.AutoRemove === true && rp?.Name && rp.Name !== 'no') throw new CliError('conflicting options: cannot specify both --restart and --rm', 125);
  Object.assign(hostConfig, updateResourceFields(f));
  const swappiness = f.int('memory-swappiness');
  if (swappiness !== undefined && swappiness !== -1) hostConfig.MemorySwappiness = swappiness;
  if (f.bool('oom-kill-disable')) hostConfig.OomKillDisable = true;
  if (f.int('oom-score-adj') !== undefined) {
    const v = f.int('oom-score-adj')!;
    if (v < -1000 || v > 1000) throw new CliError(`invalid value ${v} for oom-score-adj: must be in the range [-1000, 1000]`, 125);
    hostConfig.OomScoreAdj = v;
  }
  const ulimits = f.list('ulimit').map(parseUlimit);
  if (ulimits.length) hostConfig.Ulimits = ulimits;
  const devices = f.list('device').map(parseDevice);
  if (devices.length) hostConfig.Devices = devices;
  const sysctls: Record<string, string> = {};
  for (const s of f.list('sysctl')) {
    const i = s.indexOf('=');
    if (i <= 0) throw bad('sysctl', s, `sysctl '${s}' is not allowed`);
    sysctls[s.slice(0, i)] = s.slice(i + 1);
  }
  if (Object.keys(sysctls).length) hostConfig.Sysctls = sysctls;
  if (f.bool('init')) hostConfig.Init = true;
  if (f.str('cgroup-parent')) hostConfig.CgroupParent = f.str('cgroup-parent');
  if (Array.isArray(hostConfig.SecurityOpt)) hostConfig.SecurityOpt = resolveSecurityOpts(hostConfig.SecurityOpt as string[]);

  const healthGiven = ['health-cmd', 'health-interval', 'health-timeout', 'health-retries', 'health-start-period', 'health-start-interval'].some((n) => f.has(n));
  if (f.bool('no-healthcheck')) {
    if (healthGiven) throw new CliError('--no-healthcheck conflicts with --health-* options', 125);
    body.Healthcheck = { Test: ['NONE'] };
  } else if (healthGiven) {
    const hc: Record<string, unknown> = {};
    const cmd = f.str('health-cmd');
    if (cmd) hc.Test = ['CMD-SHELL', cmd];
    for (const [flag, field] of [['health-interval', 'Interval'], ['health-timeout', 'Timeout'], ['health-start-period', 'StartPeriod'], ['health-start-interval', 'StartInterval']] as const) {
      const ns = durationNs(f, flag);
      if (ns === undefined) continue;
      if (ns < 0) throw new CliError(`--${flag} cannot be negative`, 125);
      hc[field] = ns;
    }
    const retries = f.int('health-retries');
    if (retries !== undefined) {
      if (retries < 0) throw new CliError('--health-retries cannot be negative', 125);
      hc.Retries = retries;
    }
    body.Healthcheck = hc;
  }
}
