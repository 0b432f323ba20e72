/**
 * Reading a container's cgroup: where it is (v1 per-controller hierarchies or
 * the v2 unified tree), what the kernel supports, and the raw counters that
 * stats, OOM detection and limit checks need. Writing limits is runc's job
 * (config.json at start, `runc update` later); this module only reads.
 */
import { readFileSync, existsSync, readdirSync } from 'node:fs';
import { join } from 'node:path';

export type CgroupVersion = 1 | 2;

let version: CgroupVersion | undefined;

/** v2 when /sys/fs/cgroup is the unified hierarchy itself; hybrid and legacy layouts are v1 for runc. */
export function cgroupVersion(): CgroupVersion {
  version ??= existsSync('/sys/fs/cgroup/cgroup.controllers') ? 2 : 1;
  return version;
}

let v1Mounts: Map<string, string> | undefined;

/** Mount points of the v1 hierarchies by controller (`memory` → /sys/fs/cgroup/memory). */
function v1MountPoints(): Map<string, string> {
  if (v1Mounts) return v1Mounts;
  v1Mounts = new Map();
  let text = '';
  try {
    text = readFileSync('/proc/self/mountinfo', 'utf8');
  } catch {
    return v1Mounts;
  }
  for (const line of text.split('\n')) {
    const sep = line.indexOf(' - ');
    if (sep < 0) continue;
    const [fstype, , superOpts = ''] = line.slice(sep + 3).split(' ');
    if (fstype !== 'cgroup') continue;
    const mountPoint = line.slice(0, sep).split(' ')[4];
    if (!mountPoint) continue;
    for (const opt of superOpts.split(',')) {
      if (!v1Mounts.has(opt)) v1Mounts.set(opt, mountPoint);
    }
  }
  return v1Mounts;
}

/**
 * Where one container's cgroup lives. For v1 each controller has its own
 * directory; for v2 all of them are the same directory.
 */
export interface CgroupPaths {
  version: CgroupVersion;
  dir(controller: string): string | undefined;
}

/**
 * The cgroup directories of a running process, from /proc/<pid>/cgroup (berthd
 * runs in the host's cgroup namespace, so the paths are host paths). This
 * finds the container wherever its cgroup parent was, also after a restart.
 */
export function cgroupOfPid(pid: number): CgroupPaths | undefined {
  let text: string;
  try {
    text = readFileSync(`/proc/${pid}/cgroup`, 'utf8');
  } catch {
    return undefined;
  }
  return parseProcCgroup(text);
}

/** The paths in a /proc/<pid>/cgroup text (exported for tests). */
export function parseProcCgroup(text: string, v = cgroupVersion(), mounts = v1MountPoints()): CgroupPaths {
  const byController = new Map<string, string>();
  let unified: string | undefined;
  for (const line of text.split('\n')) {
    const m = /^(\d+):([^:]*):(.*)$/.exec(line);
    if (!m) continue;
    if (m[1] === '0' && m[2] === '') unified = m[3]!;
    else for (const c of m[2]!.split(',')) byController.set(c, m[3]!);
  }
  if (v === 2) {
    const dir = unified === undefined ? undefined : join('/sys/fs/cgroup', unified);
    return { version: 2, dir: () => dir };
  }
  return {
    version: 1,
    dir(controller: string) {
      const rel = byController.get(controller);
      const mount = mounts.get(controller);
      return rel === undefined || !mount ? undefined : join(mount, rel);
    },
  };
}

/** The directories runc creates for an absolute cgroupsPath (used when no pid is known). */
export function cgroupOfPath(cgroupsPath: string): CgroupPaths {
  const v = cgroupVersion();
  if (v === 2) {
    const dir = join('/sys/fs/cgroup', cgroupsPath);
    return { version: 2, dir: () => dir };
  }
  const mounts = v1MountPoints();
  return { version: 1, dir: (c) => (mounts.get(c) ? join(mounts.get(c)!, cgroupsPath) : undefined) };
}

export function readText(path: string | undefined): string | undefined {
  if (!path) return undefined;
  try {
    return readFileSync(path, 'utf8');
  } catch {
    return undefined;
  }
}

/** A file holding one integer (`max` → undefined). */
export function readInt(path: string | undefined): number | undefined {
  const t = readText(path)?.trim();
  if (t === undefined || t === '' || t === 'max') return undefined;
  const n = Number(t);
  return Number.isFinite(n) ? n : undefined;
}

/** A flat-keyed file (`key value` per line): memory.stat, cpu.stat, memory.events. */
export function readKeyed(path: string | undefined): Record<string, number> {
  const out: Record<string, number> = {};
  for (const line of (readText(path) ?? '').split('\n')) {
    const [k, v] = line.trim().split(/\s+/);
    if (k && v !== undefined && /^-?\d+$/.test(v)) out[k] = Number(v);
  }
  return out;
}

/** How often the kernel's OOM killer struck in this cgroup (0 when unknown). */
export function oomKillCount(cg: CgroupPaths): number {
  if (cg.version === 2) return readKeyed(join(cg.dir('memory') ?? '/nonexistent', 'memory.events')).oom_kill ?? 0;
  return readKeyed(join(cg.dir('memory') ?? '/nonexistent', 'memory.oom_control')).oom_kill ?? 0;
}

/** Which optional knobs this host's kernel offers; limits the host lacks are dropped with a warning, as docker does. */
export interface CgroupFeatures {
  swap: boolean;
  blkioWeight: boolean;
  cpuRealtime: boolean;
  cpuset: boolean;
  pids: boolean;
}

let features: CgroupFeatures | undefined;

export function cgroupFeatures(): CgroupFeatures {
  if (features) return features;
  if (cgroupVersion() === 2) {
    const controllers = (readText('/sys/fs/cgroup/cgroup.controllers') ?? '').trim().split(/\s+/);
    const anyChild = firstChildWith('/sys/fs/cgroup', 'memory.swap.max');
    features = {
      swap: anyChild || existsSync('/sys/fs/cgroup/memory.swap.max') || controllers.includes('memory'),
      blkioWeight: controllers.includes('io') && (firstChildWith('/sys/fs/cgroup', 'io.weight') || firstChildWith('/sys/fs/cgroup', 'io.bfq.weight')),
      cpuRealtime: false,
      cpuset: controllers.includes('cpuset'),
      pids: controllers.includes('pids'),
    };
    return features;
  }
  const m = v1MountPoints();
  const has = (c: string, f: string) => !!m.get(c) && existsSync(join(m.get(c)!, f));
  features = {
    swap: has('memory', 'memory.memsw.limit_in_bytes'),
    blkioWeight: has('blkio', 'blkio.weight') || has('blkio', 'blkio.bfq.weight'),
    cpuRealtime: has('cpu', 'cpu.rt_runtime_us'),
    cpuset: !!m.get('cpuset'),
    pids: !!m.get('pids'),
  };
  return features;
}

function firstChildWith(dir: string, file: string): boolean {
  try {
    for (const e of readdirSync(dir, { withFileTypes: true })) if (e.isDirectory() && existsSync(join(dir, e.name, file))) return true;
  } catch {
    // unreadable
  }
  return false;
}

/** The CPUs the host offers, e.g. "0-1" (for cpuset validation). */
export function onlineCpus(): number[] {
  return parseCpuList(readText('/sys/devices/system/cpu/online')?.trim() ?? '0');
}

export function onlineMems(): number[] {
  const t = readText('/sys/devices/system/node/online')?.trim();
  return t ? parseCpuList(t) : [0];
}

/** Parse a cpuset list ("0-3,5"); throws on bad syntax. */
export function parseCpuList(s: string): number[] {
  const out = new Set<number>();
  if (s.trim() === '') return [];
  for (const part of s.split(',')) {
    const m = /^(\d+)(?:-(\d+))?$/.exec(part.trim());
    if (!m) throw new Error(`invalid cpuset list: ${s}`);
    const a = Number(m[1]);
    const b = m[2] === undefined ? a : Number(m[2]);
    if (b < a) throw new Error(`invalid cpuset list: ${s}`);
    for (let i = a; i <= b; i++) out.add(i);
  }
  return [...out].sort((x, y) => x - y);
}
