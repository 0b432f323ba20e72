/**
 * Security and namespace options of a container beyond what the base spec
 * builder does: --security-opt (seccomp profiles, no-new-privileges),
 * --sysctl, --device, --ipc and --pid modes (including joining another
 * container), --init, and the host devices of --privileged. `checkSecurity`
 * validates at create; `applySecurity` edits the built OCI spec at start.
 */
import { existsSync, mkdirSync, readdirSync, readFileSync, statSync } from 'node:fs';
import type { Stats } from 'node:fs';
import { execFileSync } from 'node:child_process';
import { dirname, join } from 'node:path';
import type { ContainerRecord, DeviceMapping, HostConfig } from './container-types.ts';
import type { OciSpec } from '../runtime/oci-spec.ts';
import { loadSeccompProfile } from '../runtime/seccomp.ts';
import { computeCapabilities } from '../runtime/capabilities.ts';
import { ociResources, ociRlimits } from './limits.ts';
import { BerthError, conflict, invalid, errorMessage } from '../util/errors.ts';

/** Where --init's binary is mounted in the container (docker's path). */
export const INIT_PATH_IN_CONTAINER = '/sbin/docker-init';

/** Init binaries looked for on the host, first found wins (Debian's tini package ships tini-static). */
const INIT_CANDIDATES = ['/usr/bin/tini-static', '/usr/bin/docker-init', '/usr/libexec/docker/docker-init', '/usr/bin/catatonit', '/usr/libexec/podman/catatonit'];

export function findInit(configured?: string): string | undefined {
  if (configured) return existsSync(configured) ? configured : undefined;
  return INIT_CANDIDATES.find((p) => existsSync(p));
}

/** Parsed --security-opt values. */
export interface SecurityOpts {
  /** undefined: default profile; 'unconfined'; or the profile's JSON text. */
  seccomp?: string;
  noNewPrivileges: boolean;
}

export function parseSecurityOpts(opts: string[]): SecurityOpts {
  const out: SecurityOpts = { noNewPrivileges: false };
  for (const raw of opts) {
    if (raw === 'no-new-privileges') {
      out.noNewPrivileges = true;
      continue;
    }
    // docker accepts both `key=value` and the older `key:value`.
    const m = /^([a-z-]+)[=:]([\s\S]*)$/.exec(raw);
    if (!m) throw invalid(`Invalid --security-opt: "${raw}"`);
    const [, key, value] = m as unknown as [string, string, string];
    switch (key) {
      case 'no-new-privileges':
        if (value !== 'true' && value !== 'false') throw invalid(`invalid --security-opt 2: "${raw}"`);
        out.noNewPrivileges = value === 'true';
        break;
      case 'seccomp':
        if (value === '') throw invalid(`Invalid --security-opt: "${raw}"`);
        out.seccomp = value;
        break;
      case 'apparmor':
      case 'label':
      case 'systempaths':
      case 'writable-cgroups':
      case 'mask':
      case 'unmask':
        // Accepted: there is no AppArmor or SELinux on this kind of host, and the others only loosen masks.
        break;
      default:
        throw invalid(`Invalid --security-opt: "${raw}"`);
    }
  }
  return out;
}

/** Sysctls that live in a namespace the container owns (docker's and runc's list). */
function sysctlNamespace(name: string): 'ipc' | 'net' | 'uts' | undefined {
  if (['kernel.msgmax', 'kernel.msgmnb', 'kernel.msgmni', 'kernel.sem', 'kernel.shmall', 'kernel.shmmax', 'kernel.shmmni', 'kernel.shm_rmid_forced'].includes(name)) return 'ipc';
  if (name.startsWith('fs.mqueue.')) return 'ipc';
  if (name.startsWith('net.')) return 'net';
  if (name === 'kernel.domainname' || name === 'kernel.hostname') return 'uts';
  return undefined;
}

function checkIpcMode(mode: string): void {
  if (['', 'private', 'shareable', 'host', 'none'].includes(mode)) return;
  if (mode.startsWith('container:') && mode.length > 10) return;
  throw invalid(`invalid IPC mode: ${mode}`);
}

function checkPidMode(mode: string): void {
  if (mode === '' || mode === 'host' || mode === 'private') return;
  if (mode.startsWith('container:') && mode.length > 10) return;
  throw invalid(`invalid PID mode: ${mode}`);
}

/**
 * Validate at create. `find` resolves a container reference (for
 * container:<id> modes). Normalises IpcMode to docker's default.
 */
export function checkSecurity(hc: HostConfig, find: (ref: string) => ContainerRecord | undefined, initConfigured?: string): void {
  const caps = computeCapabilities({ add: hc.CapAdd ?? [], drop: hc.CapDrop ?? [], privileged: hc.Privileged });
  const sec = parseSecurityOpts(hc.SecurityOpt ?? []);
  if (sec.seccomp && sec.seccomp !== 'unconfined') {
    try {
      loadSeccompProfile(sec.seccomp, caps);
    } catch (err) {
      throw invalid(`Decoding seccomp profile failed: ${errorMessage(err)}`);
    }
  }
  checkIpcMode(hc.IpcMode ?? '');
  if (!hc.IpcMode) hc.IpcMode = 'private';
  checkPidMode(hc.PidMode ?? '');
  if (hc.UTSMode && hc.UTSMode !== 'host') throw invalid(`invalid UTS mode: ${hc.UTSMode}`);
  for (const mode of [hc.IpcMode, hc.PidMode ?? '']) {
    if (mode.startsWith('container:') && !find(mode.slice(10))) throw new BerthError('NotFound', `No such container: ${mode.slice(10)}`);
  }
  for (const name of Object.keys(hc.Sysctls ?? {})) {
    const ns = sysctlNamespace(name);
    if (!ns) throw invalid(`sysctl "${name}" is not in a separate kernel namespace`);
    if (ns === 'ipc' && hc.IpcMode === 'host') throw invalid(`sysctl "${name}" is not allowed in host IPC namespace`);
    if (ns === 'net' && hc.NetworkMode === 'host') throw invalid(`sysctl "${name}" not allowed in host network namespace`);
    if (ns === 'uts' && hc.UTSMode === 'host') throw invalid(`sysctl "${name}" is not allowed in host UTS namespace`);
  }
  for (const d of hc.Devices ?? []) hostDevices(d);
  if (hc.Init && !findInit(initConfigured)) throw invalid('--init was given but no init binary (tini or catatonit) was found on the host');
}

interface OciDevice {
  path: string;
  type: string;
  major: number;
  minor: number;
  fileMode?: number;
  uid?: number;
  gid?: number;
}

function major(rdev: number): number {
  return ((rdev >> 8) & 0xfff) | (Math.floor(rdev / 2 ** 32) & ~0xfff);
}

function minor(rdev: number): number {
  return (rdev & 0xff) | ((rdev >> 12) & 0xfff00);
}

function deviceOf(path: string, st: Stats, target: string): OciDevice | undefined {
  const type = st.isCharacterDevice() ? 'c' : st.isBlockDevice() ? 'b' : undefined;
  if (!type) return undefined;
  return { path: target, type, major: major(st.rdev), minor: minor(st.rdev), fileMode: st.mode & 0o777, uid: st.uid, gid: st.gid };
}

/** The devices one --device mapping names (a directory maps every device under it). */
function hostDevices(d: DeviceMapping): Array<OciDevice & { access: string }> {
  const perms = d.CgroupPermissions || 'rwm';
  if (!/^[rwm]{1,3}$/.test(perms)) throw invalid(`invalid device cgroup permissions: ${perms}`);
  const target = d.PathInContainer || d.PathOnHost;
  let st: Stats;
  try {
    st = statSync(d.PathOnHost);
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    throw invalid(`error gathering device information while adding custom device "${d.PathOnHost}": ${code === 'ENOENT' ? 'no such file or directory' : errorMessage(err)}`);
  }
  if (st.isDirectory()) {
    const out: Array<OciDevice & { access: string }> = [];
    for (const name of readdirSync(d.PathOnHost)) {
      try {
        const sub = join(d.PathOnHost, name);
        const dev = deviceOf(sub, statSync(sub), join(target, name));
        if (dev) out.push({ ...dev, access: perms });
      } catch {
        // vanished
      }
    }
    return out;
  }
  const dev = deviceOf(d.PathOnHost, st, target);
  if (!dev) throw invalid(`error gathering device information while adding custom device "${d.PathOnHost}": not a device node`);
  return [{ ...dev, access: perms }];
}

/** Every device node under the host's /dev, for privileged containers (as docker gives them). */
function allHostDevices(): OciDevice[] {
  const out: OciDevice[] = [];
  const walk = (dir: string) => {
    let names: string[];
    try {
      names = readdirSync(dir);
    } catch {
      return;
    }
    for (const name of names) {
      const p = join(dir, name);
      if (['/dev/pts', '/dev/shm', '/dev/mqueue', '/dev/fd', '/dev/console'].includes(p)) continue;
      try {
        const st = statSync(p, { throwIfNoEntry: false });
        if (!st) continue;
        if (st.isDirectory()) walk(p);
        else {
          const dev = deviceOf(p, st, p);
          if (dev) out.push(dev);
        }
      } catch {
        // unreadable entry
      }
    }
  };
  walk('/dev');
  return out;
}

export interface SecurityContext {
  find(ref: string): ContainerRecord;
  capabilities: string[];
  initPath?: string;
}

/**
 * Edit the base spec: resources and rlimits, seccomp, sysctls, devices,
 * namespace joins and /dev/shm sharing, --init.
 */
export function applySecurity(spec: OciSpec, rec: ContainerRecord, ctx: SecurityContext): void {
  const hc = rec.HostConfig;
  const sec = parseSecurityOpts(hc.SecurityOpt ?? []);

  // Limits.
  const res = ociResources(hc);
  spec.linux.resources = { ...spec.linux.resources, ...res };
  const rl = ociRlimits(hc);
  if (rl?.length) spec.process.rlimits = rl;
  if (hc.OomScoreAdj) spec.process.oomScoreAdj = hc.OomScoreAdj;

  // Seccomp.
  if (!hc.Privileged && sec.seccomp === 'unconfined') delete spec.linux.seccomp;
  else if (!hc.Privileged && sec.seccomp) spec.linux.seccomp = loadSeccompProfile(sec.seccomp, ctx.capabilities);

  // Sysctls.
  if (hc.Sysctls && Object.keys(hc.Sysctls).length) spec.linux.sysctl = { ...spec.linux.sysctl, ...hc.Sysctls };

  // Devices.
  const devices: OciDevice[] = [...(spec.linux.devices ?? [])];
  const rules = spec.linux.resources.devices ?? [];
  if (hc.Privileged) devices.push(...allHostDevices());
  for (const d of hc.Devices ?? []) {
    for (const dev of hostDevices(d)) {
      const { access, ...node } = dev;
      devices.push(node);
      rules.push({ allow: true, type: node.type, major: node.major, minor: node.minor, access });
    }
  }
  if (devices.length) spec.linux.devices = dedupeDevices(devices);
  spec.linux.resources.devices = rules;

  // IPC namespace.
  const ipc = hc.IpcMode ?? 'private';
  const shm = spec.mounts.find((m) => m.destination === '/dev/shm');
  if (ipc.startsWith('container:')) {
    const donor = ctx.find(ipc.slice(10));
    if (!donor.State.Running) throw conflict(`cannot join IPC of a non running container: ${donor.Id}`);
    if (donor.HostConfig.IpcMode !== 'shareable' && donor.HostConfig.IpcMode !== 'host') {
      throw invalid(`non-shareable IPC (hint: use IpcMode:shareable for the donor container)`);
    }
    setNamespace(spec, 'ipc', donor.HostConfig.IpcMode === 'host' ? undefined : `/proc/${donor.State.Pid}/ns/ipc`);
    const source = donor.HostConfig.IpcMode === 'host' ? '/dev/shm' : shmPath(donor);
    if (shm) Object.assign(shm, { type: 'bind', source, options: ['rbind', 'rprivate'] });
  } else if (ipc === 'host') {
    if (shm) Object.assign(shm, { type: 'bind', source: '/dev/shm', options: ['rbind', 'rprivate'] });
  } else if (ipc === 'none') {
    spec.mounts = spec.mounts.filter((m) => m.destination !== '/dev/shm');
  } else if (ipc === 'shareable') {
    // A mount inside the container's own namespace cannot be bind-mounted by
    // another container, so a shareable /dev/shm lives on the host side.
    const path = shmPath(rec);
    if (!isMountPoint(path)) {
      mkdirSync(path, { recursive: true, mode: 0o700 });
      execFileSync('mount', ['-t', 'tmpfs', '-o', `nosuid,nodev,noexec,mode=1777,size=${hc.ShmSize || 64 * 1024 * 1024}`, 'shm', path], { stdio: 'ignore' });
    }
    if (shm) Object.assign(shm, { type: 'bind', source: path, options: ['rbind', 'rprivate'] });
  }

  // PID namespace.
  const pid = hc.PidMode ?? '';
  if (pid.startsWith('container:')) {
    const other = ctx.find(pid.slice(10));
    if (!other.State.Running) throw conflict(`cannot join PID of a non running container: ${other.Id}`);
    setNamespace(spec, 'pid', other.HostConfig.PidMode === 'host' ? undefined : `/proc/${other.State.Pid}/ns/pid`);
  }

  // --init: tini as PID 1, the container's command after `--`.
  if (hc.Init) {
    const init = findInit(ctx.initPath);
    if (!init) throw invalid('--init was given but no init binary (tini or catatonit) was found on the host');
    spec.process.args = [INIT_PATH_IN_CONTAINER, '--', ...spec.process.args];
    spec.mounts.push({ destination: INIT_PATH_IN_CONTAINER, type: 'bind', source: init, options: ['bind', 'ro'] });
  }
}

function setNamespace(spec: OciSpec, type: string, path: string | undefined): void {
  spec.linux.namespaces = spec.linux.namespaces.filter((n) => n.type !== type);
  if (path) spec.linux.namespaces.push({ type, path });
}

function dedupeDevices(devs: OciDevice[]): OciDevice[] {
  const seen = new Map<string, OciDevice>();
  for (const d of devs) seen.set(d.path, d);
  return [...seen.values()];
}

/** The host-side /dev/shm of a shareable-IPC container. */
export function shmPath(rec: ContainerRecord): string {
  return join(dirname(rec.HostsPath), 'shm');
}

function isMountPoint(path: string): boolean {
  try {
    return readFileSync('/proc/self/mounts', 'utf8').split('\n').some((l) => l.split(' ')[1] === path);
  } catch {
    return false;
  }
}

/** Unmount a shareable container's /dev/shm (after it stopped, or when it is removed). */
export function releaseShm(rec: ContainerRecord): void {
  const path = shmPath(rec);
  if (!isMountPoint(path)) return;
  try {
    execFileSync('umount', ['-l', path], { stdio: 'ignore' });
  } catch {
    // already gone
  }
}
