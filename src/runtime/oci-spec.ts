/**
 * Builds the OCI runtime config (config.json) for a container: the one place
 * where docker's container model becomes namespaces, mounts, capabilities,
 * seccomp and cgroup settings.
 */
import { defaultSeccompProfile } from './seccomp.ts';
import type { OciSeccomp } from './seccomp.ts';

export interface OciMount {
  destination: string;
  type?: string;
  source?: string;
  options?: string[];
}

export interface OciProcess {
  terminal?: boolean;
  consoleSize?: { height: number; width: number };
  user: { uid: number; gid: number; additionalGids?: number[]; umask?: number };
  args: string[];
  env: string[];
  cwd: string;
  capabilities?: { bounding: string[]; effective: string[]; permitted: string[]; inheritable?: string[]; ambient?: string[] };
  rlimits?: Array<{ type: string; hard: number; soft: number }>;
  noNewPrivileges?: boolean;
  oomScoreAdj?: number;
  apparmorProfile?: string;
}

export interface OciResources {
  devices?: Array<{ allow: boolean; type?: string; major?: number; minor?: number; access?: string }>;
  memory?: { limit?: number; reservation?: number; swap?: number; swappiness?: number; disableOOMKiller?: boolean };
  cpu?: { shares?: number; quota?: number; period?: number; cpus?: string; mems?: string; realtimePeriod?: number; realtimeRuntime?: number };
  pids?: { limit: number };
  blockIO?: { weight?: number };
}

export interface OciSpec {
  ociVersion: string;
  process: OciProcess;
  root: { path: string; readonly?: boolean };
  hostname?: string;
  domainname?: string;
  mounts: OciMount[];
  linux: {
    namespaces: Array<{ type: string; path?: string }>;
    cgroupsPath?: string;
    resources?: OciResources;
    seccomp?: OciSeccomp;
    maskedPaths?: string[];
    readonlyPaths?: string[];
    sysctl?: Record<string, string>;
    devices?: Array<{ path: string; type: string; major: number; minor: number; fileMode?: number; uid?: number; gid?: number }>;
    rootfsPropagation?: string;
  };
  annotations?: Record<string, string>;
}

export const DEFAULT_MASKED_PATHS = [
  '/proc/asound', '/proc/acpi', '/proc/interrupts', '/proc/kcore', '/proc/keys', '/proc/latency_stats',
  '/proc/timer_list', '/proc/timer_stats', '/proc/sched_debug', '/proc/scsi', '/sys/firmware',
  '/sys/devices/virtual/powercap',
];

export const DEFAULT_READONLY_PATHS = ['/proc/bus', '/proc/fs', '/proc/irq', '/proc/sys', '/proc/sysrq-trigger'];

/** The device cgroup rules every container gets (a deny-all list with the harmless basics allowed). */
const DEFAULT_DEVICE_RULES: NonNullable<OciResources['devices']> = [
  { allow: false, access: 'rwm' },
  { allow: true, type: 'c', major: -1, minor: -1, access: 'm' },
  { allow: true, type: 'b', major: -1, minor: -1, access: 'm' },
  { allow: true, type: 'c', major: 1, minor: 3, access: 'rwm' },
  { allow: true, type: 'c', major: 1, minor: 5, access: 'rwm' },
  { allow: true, type: 'c', major: 1, minor: 7, access: 'rwm' },
  { allow: true, type: 'c', major: 5, minor: 0, access: 'rwm' },
  { allow: true, type: 'c', major: 1, minor: 8, access: 'rwm' },
  { allow: true, type: 'c', major: 1, minor: 9, access: 'rwm' },
  { allow: true, type: 'c', major: 136, minor: -1, access: 'rwm' },
  { allow: true, type: 'c', major: 5, minor: 1, access: 'rwm' },
  { allow: true, type: 'c', major: 5, minor: 2, access: 'rwm' },
  { allow: true, type: 'c', major: 10, minor: 200, access: 'rwm' },
];

export interface SpecInput {
  rootfs: string;
  readonlyRootfs: boolean;
  args: string[];
  env: string[];
  cwd: string;
  user: { uid: number; gid: number; additionalGids: number[] };
  terminal: boolean;
  consoleSize?: [number, number];
  hostname: string;
  domainname?: string;
  capabilities: string[];
  privileged: boolean;
  /** `undefined`: the default profile; `null`: unconfined; otherwise a profile already converted. */
  seccomp?: OciSeccomp | null;
  noNewPrivileges: boolean;
  /** Namespaces to join instead of creating (`network` → `/proc/PID/ns/net`), or `host` to share the host's. */
  namespaces: Partial<Record<'pid' | 'network' | 'ipc' | 'uts' | 'cgroup', 'private' | 'host' | { path: string }>>;
  cgroupsPath: string;
  resources?: OciResources;
  extraMounts: OciMount[];
  shmSize: number;
  maskedPaths?: string[];
  readonlyPaths?: string[];
  sysctl?: Record<string, string>;
  rlimits?: OciProcess['rlimits'];
  oomScoreAdj?: number;
  devices?: OciSpec['linux']['devices'];
}

export function buildSpec(input: SpecInput): OciSpec {
  const caps = input.capabilities;
  const namespaces: OciSpec['linux']['namespaces'] = [{ type: 'mount' }];
  for (const type of ['pid', 'network', 'ipc', 'uts', 'cgroup'] as const) {
    const mode = input.namespaces[type] ?? 'private';
    if (mode === 'host') continue;
    namespaces.push(mode === 'private' ? { type } : { type, path: mode.path });
  }
  const sharesHostNet = input.namespaces.network === 'host';
  const mounts: OciMount[] = [
    { destination: '/proc', type: 'proc', source: 'proc', options: ['nosuid', 'noexec', 'nodev'] },
    { destination: '/dev', type: 'tmpfs', source: 'tmpfs', options: ['nosuid', 'strictatime', 'mode=755', 'size=65536k'] },
    { destination: '/dev/pts', type: 'devpts', source: 'devpts', options: ['nosuid', 'noexec', 'newinstance', 'ptmxmode=0666', 'mode=0620', 'gid=5'] },
    // A container sharing the host's network namespace may not mount a fresh sysfs; bind it instead.
    sharesHostNet
      ? { destination: '/sys', type: 'bind', source: '/sys', options: ['rbind', 'nosuid', 'noexec', 'nodev', 'ro'] }
      : { destination: '/sys', type: 'sysfs', source: 'sysfs', options: ['nosuid', 'noexec', 'nodev', 'ro'] },
    { destination: '/sys/fs/cgroup', type: 'cgroup', source: 'cgroup', options: ['nosuid', 'noexec', 'nodev', 'relatime', 'ro'] },
    { destination: '/dev/mqueue', type: 'mqueue', source: 'mqueue', options: ['nosuid', 'noexec', 'nodev'] },
    { destination: '/dev/shm', type: 'tmpfs', source: 'shm', options: ['nosuid', 'noexec', 'nodev', 'mode=1777', `size=${input.shmSize}`] },
    ...input.extraMounts,
  ];
  const privileged = input.privileged;
  const spec: OciSpec = {
    ociVersion: '1.0.2-dev',
    process: {
      terminal: input.terminal,
      ...(input.terminal && input.consoleSize ? { consoleSize: { height: input.consoleSize[0], width: input.consoleSize[1] } } : {}),
      user: { uid: input.user.uid, gid: input.user.gid, ...(input.user.additionalGids.length ? { additionalGids: input.user.additionalGids } : {}) },
      args: input.args,
      env: input.env,
      cwd: input.cwd,
      capabilities: { bounding: caps, effective: caps, permitted: caps },
      noNewPrivileges: input.noNewPrivileges,
      oomScoreAdj: input.oomScoreAdj ?? 0,
      ...(input.rlimits?.length ? { rlimits: input.rlimits } : {}),
    },
    root: { path: input.rootfs, readonly: input.readonlyRootfs },
    hostname: input.namespaces.uts === 'host' ? undefined : input.hostname,
    ...(input.domainname ? { domainname: input.domainname } : {}),
    mounts,
    linux: {
      namespaces,
      cgroupsPath: input.cgroupsPath,
      resources: { ...input.resources, devices: privileged ? [{ allow: true, access: 'rwm' }] : [...DEFAULT_DEVICE_RULES, ...(input.resources?.devices ?? [])] },
      maskedPaths: privileged ? [] : (input.maskedPaths ?? DEFAULT_MASKED_PATHS),
      readonlyPaths: privileged ? [] : (input.readonlyPaths ?? DEFAULT_READONLY_PATHS),
      ...(input.sysctl && Object.keys(input.sysctl).length ? { sysctl: input.sysctl } : {}),
      ...(input.devices?.length ? { devices: input.devices } : {}),
    },
  };
  if (privileged) {
    // Privileged containers see the host's cgroup and sysfs writable, as docker does.
    for (const m of spec.mounts) if (m.destination === '/sys' || m.destination === '/sys/fs/cgroup') m.options = m.options?.filter((o) => o !== 'ro').concat('rw');
  }
  if (input.seccomp !== null && !privileged) spec.linux.seccomp = input.seccomp ?? defaultSeccompProfile({ capabilities: caps });
  return spec;
}
