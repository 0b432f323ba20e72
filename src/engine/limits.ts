/**
 * Resource limits: docker's HostConfig resource fields checked the way the
 * daemon checks them, turned into OCI `linux.resources` and rlimits, and the
 * subset `update` may change on a running container.
 */
import type { HostConfig, Ulimit } from './container-types.ts';
import type { OciProcess, OciResources } from '../runtime/oci-spec.ts';
import { cgroupFeatures, onlineCpus, onlineMems, parseCpuList } from '../runtime/cgroups.ts';
import { invalid } from '../util/errors.ts';

const MIN_MEMORY = 6 * 1024 * 1024;

/** The resource fields of HostConfig that `POST /containers/{id}/update` accepts. */
export const UPDATABLE_FIELDS = [
  'CpuShares', 'Memory', 'NanoCpus', 'CpuPeriod', 'CpuQuota', 'CpuRealtimePeriod', 'CpuRealtimeRuntime',
  'CpusetCpus', 'CpusetMems', 'BlkioWeight', 'MemoryReservation', 'MemorySwap', 'PidsLimit', 'KernelMemory',
] as const;

/** RLIMIT names docker accepts for --ulimit. */
const ULIMIT_NAMES = new Set(['core', 'cpu', 'data', 'fsize', 'locks', 'memlock', 'msgqueue', 'nice', 'nofile', 'nproc', 'rss', 'rtprio', 'rttime', 'sigpending', 'stack', 'as']);

function num(v: unknown, field: string): number {
  if (v === undefined || v === null) return 0;
  if (typeof v !== 'number' || !Number.isFinite(v) || !Number.isInteger(v)) throw invalid(`invalid ${field}: must be an integer`);
  return v;
}

function cpusetCheck(value: string | undefined, available: number[], what: 'cpus' | 'mems'): void {
  if (!value) return;
  let want: number[];
  try {
    want = parseCpuList(value);
  } catch {
    throw invalid(`Invalid value ${value} for cpuset ${what}`);
  }
  const have = new Set(available);
  if (want.some((c) => !have.has(c))) {
    throw invalid(`Requested ${what === 'cpus' ? 'CPUs' : 'memory nodes'} are not available - requested ${value}, available: ${formatList(available)}`);
  }
}

function formatList(xs: number[]): string {
  const parts: string[] = [];
  for (let i = 0; i < xs.length; i++) {
    let j = i;
    while (j + 1 < xs.length && xs[j + 1] === xs[j]! + 1) j++;
    parts.push(i === j ? `${xs[i]}` : `${xs[i]}-${xs[j]}`);
    i = j;
  }
  return parts.join(',');
}

/**
 * Check the resource fields and fill in docker's derived defaults
 * (MemorySwap twice Memory when swap can be limited). Returns warnings for
 * limits this kernel cannot apply (they are dropped, as docker does).
 */
export function checkResources(hc: HostConfig): string[] {
  const warnings: string[] = [];
  const feat = cgroupFeatures();
  const memory = num(hc.Memory, 'Memory');
  let swap = num(hc.MemorySwap, 'MemorySwap');
  const reservation = num(hc.MemoryReservation, 'MemoryReservation');
  if (memory < 0) throw invalid('invalid Memory: value must be positive');
  if (memory > 0 && memory < MIN_MEMORY) throw invalid('Minimum memory limit allowed is 6MB');
  if (swap > 0 && memory === 0) throw invalid('You should always set the Memory limit when using Memoryswap limit, see usage');
  if (swap > 0 && swap < memory) throw invalid('Minimum memoryswap limit should be larger than memory limit, see usage');
  if (swap < -1) throw invalid('invalid MemorySwap: value must be -1 (unlimited) or at least the memory limit');
  if (reservation < 0) throw invalid('invalid MemoryReservation: value must be positive');
  if (reservation > 0 && reservation < MIN_MEMORY) throw invalid('Minimum memory reservation allowed is 6MB');
  if (memory > 0 && reservation > 0 && memory < reservation) throw invalid('Minimum memory limit can not be less than memory reservation limit, see usage');
  const swappiness = hc.MemorySwappiness;
  if (swappiness !== undefined && swappiness !== null && swappiness !== -1 && (swappiness < 0 || swappiness > 100)) {
    throw invalid(`Invalid value: ${swappiness}, valid memory swappiness range is 0-100`);
  }
  if (memory > 0 && swap === 0) {
    if (feat.swap) swap = memory * 2;
    else warnings.push('Your kernel does not support swap limit capabilities or the cgroup is not mounted. Memory limited without swap.');
  }
  if (swap !== 0 && !feat.swap) {
    warnings.push('Your kernel does not support swap limit capabilities or the cgroup is not mounted. Memory limited without swap.');
    swap = -1;
  }
  if (memory > 0 || num(hc.MemorySwap, 'MemorySwap') !== 0) hc.MemorySwap = swap;
  if (hc.OomKillDisable && memory === 0) warnings.push('OOM killer is disabled for the container, but no memory limit is set, this can result in the system running out of resources.');

  const nano = num(hc.NanoCpus, 'NanoCpus');
  const period = num(hc.CpuPeriod, 'CpuPeriod');
  const quota = num(hc.CpuQuota, 'CpuQuota');
  const ncpu = onlineCpus().length;
  if (nano !== 0 && period !== 0) throw invalid('Conflicting options: Nano CPUs and CPU Period cannot both be set');
  if (nano !== 0 && quota !== 0) throw invalid('Conflicting options: Nano CPUs and CPU Quota cannot both be set');
  if (nano < 0 || nano > ncpu * 1e9) throw invalid(`Range of CPUs is from 0.01 to ${ncpu}.00, as there are only ${ncpu} CPUs available`);
  if (nano > 0 && nano < 1e7) throw invalid(`Range of CPUs is from 0.01 to ${ncpu}.00, as there are only ${ncpu} CPUs available`);
  if (period !== 0 && (period < 1000 || period > 1_000_000)) throw invalid('CPU cfs period can not be less than 1ms (i.e. 1000) or larger than 1s (i.e. 1000000)');
  if (quota !== 0 && quota !== -1 && quota < 1000) throw invalid('CPU cfs quota can not be less than 1ms (i.e. 1000)');
  const shares = num(hc.CpuShares, 'CpuShares');
  if (shares < 0) throw invalid('invalid CpuShares: value must be positive');
  if (hc.CpusetCpus && !feat.cpuset) throw invalid('Your kernel does not support cpuset or the cgroup is not mounted. Cpuset discarded.');
  cpusetCheck(hc.CpusetCpus, onlineCpus(), 'cpus');
  cpusetCheck(hc.CpusetMems, onlineMems(), 'mems');

  const weight = num(hc.BlkioWeight, 'BlkioWeight');
  if (weight !== 0 && (weight < 10 || weight > 1000)) throw invalid('Range of blkio weight is from 10 to 1000');
  if (weight !== 0 && !feat.blkioWeight) {
    warnings.push('Your kernel does not support Block I/O weight or the cgroup is not mounted. Weight discarded.');
    hc.BlkioWeight = 0;
  }
  if (hc.PidsLimit !== undefined && hc.PidsLimit !== null) {
    num(hc.PidsLimit, 'PidsLimit');
    if (hc.PidsLimit > 0 && !feat.pids) {
      warnings.push('Your kernel does not support PIDs limit capabilities or the cgroup is not mounted. PIDs limit discarded.');
      hc.PidsLimit = null;
    }
  }
  checkUlimits(hc.Ulimits ?? []);
  return warnings;
}

function checkUlimits(ulimits: Ulimit[]): void {
  if (!Array.isArray(ulimits)) throw invalid('invalid Ulimits: must be a list');
  const seen = new Set<string>();
  for (const u of ulimits) {
    if (!u || typeof u.Name !== 'string') throw invalid('invalid Ulimits: each entry needs a Name');
    if (!ULIMIT_NAMES.has(u.Name)) throw invalid(`invalid ulimit type: ${u.Name}`);
    if (seen.has(u.Name)) throw invalid(`ulimit "${u.Name}" given more than once`);
    seen.add(u.Name);
    if (!Number.isInteger(u.Soft) || !Number.isInteger(u.Hard)) throw invalid(`invalid ulimit ${u.Name}: soft and hard must be integers`);
    if (u.Hard !== -1 && u.Soft > u.Hard) throw invalid(`ulimit soft limit must be less than or equal to hard limit: ${u.Soft} > ${u.Hard}`);
  }
}

/** The OCI resources for a container's HostConfig (devices are added by the spec builder). */
export function ociResources(hc: HostConfig): OciResources {
  const r: OciResources = {};
  const memory: NonNullable<OciResources['memory']> = {};
  if (hc.Memory) memory.limit = hc.Memory;
  if (hc.MemoryReservation) memory.reservation = hc.MemoryReservation;
  if (hc.MemorySwap && cgroupFeatures().swap) memory.swap = hc.MemorySwap;
  if (hc.MemorySwappiness !== undefined && hc.MemorySwappiness !== null && hc.MemorySwappiness >= 0) memory.swappiness = hc.MemorySwappiness;
  if (hc.OomKillDisable) memory.disableOOMKiller = true;
  if (Object.keys(memory).length) r.memory = memory;
  const cpu: NonNullable<OciResources['cpu']> = {};
  if (hc.CpuShares) cpu.shares = hc.CpuShares;
  if (hc.NanoCpus) {
    // docker's translation: a 100 ms period and the matching quota.
    cpu.period = 100_000;
    cpu.quota = Math.round((hc.NanoCpus * 100_000) / 1e9);
  }
  if (hc.CpuPeriod) cpu.period = hc.CpuPeriod;
  if (hc.CpuQuota) cpu.quota = hc.CpuQuota;
  if (hc.CpuRealtimePeriod) cpu.realtimePeriod = hc.CpuRealtimePeriod;
  if (hc.CpuRealtimeRuntime) cpu.realtimeRuntime = hc.CpuRealtimeRuntime;
  if (hc.CpusetCpus) cpu.cpus = hc.CpusetCpus;
  if (hc.CpusetMems) cpu.mems = hc.CpusetMems;
  if (Object.keys(cpu).length) r.cpu = cpu;
  if (hc.PidsLimit !== undefined && hc.PidsLimit !== null && hc.PidsLimit !== 0) r.pids = { limit: hc.PidsLimit > 0 ? hc.PidsLimit : -1 };
  if (hc.BlkioWeight) r.blockIO = { weight: hc.BlkioWeight };
  return r;
}

/** --ulimit entries as OCI rlimits (`nofile` → RLIMIT_NOFILE; -1 is unlimited). */
export function ociRlimits(hc: HostConfig): OciProcess['rlimits'] {
  const unlimited = 2 ** 64 - 1;
  return (hc.Ulimits ?? []).map((u) => ({
    type: `RLIMIT_${u.Name.toUpperCase()}`,
    soft: u.Soft === -1 ? unlimited : u.Soft,
    hard: u.Hard === -1 ? unlimited : u.Hard,
  }));
}

/**
 * Apply an update body to a HostConfig copy and check the result. Returns
 * the new HostConfig and the resources to hand to `runc update`.
 */
export function applyUpdate(current: HostConfig, body: Record<string, unknown>): { hc: HostConfig; warnings: string[] } {
  const hc: HostConfig = { ...current };
  const oldSwap = current.MemorySwap ?? 0;
  for (const f of UPDATABLE_FIELDS) {
    if (body[f] === undefined || body[f] === null) continue;
    if (f === 'KernelMemory') continue;
    if (f === 'CpusetCpus' || f === 'CpusetMems') {
      if (body[f] !== '') (hc as Record<string, unknown>)[f] = String(body[f]);
      continue;
    }
    const v = body[f];
    if (typeof v !== 'number') throw invalid(`invalid ${f}: must be a number`);
    // 0 means "leave as is" in docker's update, except for fields where 0 is meaningful.
    if (v === 0 && f !== 'PidsLimit') continue;
    (hc as Record<string, unknown>)[f] = v;
  }
  const memory = typeof body.Memory === 'number' ? body.Memory : 0;
  const swapGiven = typeof body.MemorySwap === 'number' && body.MemorySwap !== 0;
  if (memory > 0 && !swapGiven && oldSwap > 0 && memory > oldSwap) {
    throw invalid('Memory limit should be smaller than already set memoryswap limit, update the memoryswap at the same time');
  }
  if (typeof body.NanoCpus === 'number' && body.NanoCpus > 0) {
    hc.CpuPeriod = 0;
    hc.CpuQuota = 0;
  }
  if ((typeof body.CpuQuota === 'number' && body.CpuQuota !== 0) || (typeof body.CpuPeriod === 'number' && body.CpuPeriod !== 0)) {
    if (current.NanoCpus) throw invalid('Conflicting options: CPU Quota cannot be updated as NanoCPUs has already been set');
  }
  const warnings = checkResources(hc);
  return { hc, warnings };
}

/**
 * The resources JSON for `runc update --resources`: the full limits of the
 * new HostConfig, with unset values spelled out so that lifted limits are
 * lifted in the kernel too.
 */
export function updateResources(hc: HostConfig): OciResources {
  const r = ociResources(hc);
  r.memory = { ...r.memory };
  if (!hc.Memory) r.memory.limit = -1;
  if (!hc.MemoryReservation) r.memory.reservation = -1;
  if (cgroupFeatures().swap && (!hc.MemorySwap || hc.MemorySwap === -1)) r.memory.swap = -1;
  delete r.memory.disableOOMKiller;
  delete r.memory.swappiness;
  r.cpu = { ...r.cpu };
  if (!hc.CpuQuota && !hc.NanoCpus) r.cpu.quota = -1;
  if (!r.pids) r.pids = { limit: -1 };
  return r;
}
