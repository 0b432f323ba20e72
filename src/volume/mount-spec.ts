/**
 * Parsing and validation of the ways a container asks for mounts: the
 * `Binds` strings (`-v src:dst:mode`), the `Mounts` objects (`--mount`), the
 * `Tmpfs` map (`--tmpfs`) and `VolumesFrom` entries. Pure functions with
 * docker's rules and error wording; nothing here touches the disk except the
 * existence check of a bind source.
 */
import { existsSync } from 'node:fs';
import { isAbsolute, normalize } from 'node:path';
import type { MountSpec } from '../engine/container-types.ts';
import { invalid } from '../util/errors.ts';
import type { BerthError } from '../util/errors.ts';

/** One mount of a container as berth keeps it (inspect's `Mounts` is derived from it). */
export interface BerthMount {
  type: 'volume' | 'bind' | 'tmpfs';
  /** The volume's name (type volume). */
  name?: string;
  /** Host path (bind); for volumes the volume's data dir, filled in at create. */
  source: string;
  destination: string;
  readOnly: boolean;
  /** The user's mode string, as inspect shows it. */
  mode: string;
  /** Bind propagation; '' for volumes and tmpfs. */
  propagation: string;
  /** Pre-populate an empty volume from the image. */
  copyData: boolean;
  /** Mount only this path inside the volume. */
  subpath?: string;
  /** A volume created for this container without a name: `rm -v` removes it. */
  anonymous?: boolean;
  /** A missing bind source is created (`-v`, or `--mount` with CreateMountpoint). */
  createSource?: boolean;
  /** Bind without the mounts beneath the source. */
  nonRecursive?: boolean;
  /** Read-only applies to the top mount only (API 1.44's ReadOnlyNonRecursive). */
  readOnlyNonRecursive?: boolean;
  /** Read-only must reach every submount, or the start fails (ReadOnlyForceRecursive). */
  readOnlyForceRecursive?: boolean;
  /** Options for a volume that does not exist yet (`volume-opt`, `volume-label`). */
  volumeOptions?: { driver?: string; options?: Record<string, string>; labels?: Record<string, string> };
  /** tmpfs mount options (`size=`, `mode=` and flags), as mount(8) takes them. */
  tmpfsOptions?: string[];
}

export const PROPAGATION_MODES = ['private', 'rprivate', 'shared', 'rshared', 'slave', 'rslave'];
const LABEL_MODES = ['z', 'Z'];
const CONSISTENCY_MODES = ['consistent', 'cached', 'delegated'];

export const mountConfigError = (type: string, msg: string): BerthError => invalid(`invalid mount config for type "${type}": ${msg}`);

/** docker's check of a `-v` mode string such as `ro`, `rw,rslave`, `nocopy`. */
export function validMountMode(mode: string): boolean {
  if (mode === '') return true;
  let rw = 0;
  let label = 0;
  let prop = 0;
  let copy = 0;
  let consistency = 0;
  for (const o of mode.split(',')) {
    if (o === 'rw' || o === 'ro') rw++;
    else if (LABEL_MODES.includes(o)) label++;
    else if (PROPAGATION_MODES.includes(o)) prop++;
    else if (o === 'nocopy') copy++;
    else if (CONSISTENCY_MODES.includes(o)) consistency++;
    else return false;
  }
  return rw <= 1 && label <= 1 && prop <= 1 && copy <= 1 && consistency <= 1;
}

function modeHas(mode: string, opts: string[]): string | undefined {
  return mode.split(',').find((o) => opts.includes(o));
}

function checkTarget(type: string, target: string | undefined): string {
  if (!target) throw mountConfigError(type, 'field Target must not be empty');
  if (!isAbsolute(target)) throw mountConfigError(type, `invalid mount path: '${target}' mount path must be absolute`);
  const clean = normalize(target).replace(/(.)\/+$/, '$1');
  if (clean === '/') throw invalid(`invalid specification: destination can't be '/'`);
  return clean;
}

/** A volume name the local driver accepts. */
export const VOLUME_NAME_RE = /^[a-zA-Z0-9][a-zA-Z0-9_.-]+$/;

export function invalidVolumeName(name: string): BerthError {
  return invalid(`create ${name}: "${name}" includes invalid characters for a local volume name, only "[a-zA-Z0-9][a-zA-Z0-9_.-]" are allowed. If you intended to pass a host directory, use absolute path`);
}

/**
 * A `HostConfig.Binds` entry: `/host:/ctr[:mode]` (a bind), `name:/ctr[:mode]`
 * (a named volume) or `/ctr[:mode]` (an anonymous volume). A missing bind
 * source is created later, as docker does for `-v`.
 */
export function parseBind(raw: string): BerthMount {
  const bad = () => invalid(`invalid volume specification: '${raw}'`);
  const parts = raw.split(':');
  if (parts.some((p) => p === '') || parts.length > 3) throw bad();
  let source = '';
  let target: string;
  let mode = '';
  if (parts.length === 1) target = parts[0]!;
  else if (parts.length === 2) {
    if (validMountMode(parts[1]!) && !parts[1]!.startsWith('/')) {
      target = parts[0]!;
      mode = parts[1]!;
    } else {
      source = parts[0]!;
      target = parts[1]!;
    }
  } else {
    [source, target, mode] = parts as [string, string, string];
  }
  if (!validMountMode(mode)) throw invalid(`invalid mode: ${mode}`);
  const type = isAbsolute(source) ? 'bind' : 'volume';
  let destination: string;
  try {
    destination = checkTarget(type, target);
  } catch (err) {
    throw invalid(`invalid volume specification: '${raw}': ${(err as Error).message}`);
  }
  const readOnly = modeHas(mode, ['ro']) !== undefined;
  const propagation = modeHas(mode, PROPAGATION_MODES);
  const nocopy = modeHas(mode, ['nocopy']) !== undefined;
  if (type === 'bind') {
    if (nocopy) throw invalid(`invalid volume specification: '${raw}': ${mountConfigError('bind', 'field VolumeOptions must not be specified').message}`);
    return { type, source: normalize(source).replace(/(.)\/+$/, '$1'), destination, readOnly, mode, propagation: propagation ?? 'rprivate', copyData: false };
  }
  if (propagation) throw invalid(`invalid volume specification: '${raw}': ${mountConfigError('volume', 'field BindOptions must not be specified').message}`);
  if (source && !VOLUME_NAME_RE.test(source)) throw invalidVolumeName(source);
  return {
    type, source: '', destination, readOnly, mode, propagation: '', copyData: !nocopy,
    ...(source ? { name: source } : { anonymous: true }),
  };
}

/** True when `p` is relative and stays inside its base lexically (no `..` step out, not absolute). */
export function isLocalPath(p: string): boolean {
  if (p === '' || isAbsolute(p)) return false;
  let depth = 0;
  for (const part of p.split('/')) {
    if (part === '..') depth--;
    else if (part !== '' && part !== '.') depth++;
    if (depth < 0) return false;
  }
  return true;
}

/** A `HostConfig.Mounts` entry (`--mount`), validated as docker's daemon does. */
export function parseMountSpec(m: MountSpec): BerthMount {
  if (typeof m !== 'object' || m === null) throw invalid('invalid mount config: not an object');
  const type = m.Type;
  switch (type) {
    case 'bind': {
      if (m.VolumeOptions) throw mountConfigError(type, 'field VolumeOptions must not be specified');
      if (m.TmpfsOptions) throw mountConfigError(type, 'field TmpfsOptions must not be specified');
      const destination = checkTarget(type, m.Target);
      if (!m.Source) throw mountConfigError(type, 'field Source must not be empty');
      if (!isAbsolute(m.Source)) throw mountConfigError(type, `invalid mount path: '${m.Source}' mount path must be absolute`);
      const prop = m.BindOptions?.Propagation;
      if (prop && !PROPAGATION_MODES.includes(prop)) throw mountConfigError(type, `invalid propagation mode: ${prop}`);
      const source = normalize(m.Source).replace(/(.)\/+$/, '$1');
      if (m.BindOptions?.ReadOnlyNonRecursive && !m.ReadOnly) throw mountConfigError(type, 'option ReadOnlyNonRecursive requires ReadOnly');
      if (m.BindOptions?.ReadOnlyForceRecursive && (!m.ReadOnly || m.BindOptions.ReadOnlyNonRecursive || m.BindOptions.NonRecursive)) throw mountConfigError(type, 'option ReadOnlyForceRecursive requires ReadOnly and a recursive bind');
      if (!m.BindOptions?.CreateMountpoint && !existsSync(source)) throw mountConfigError(type, `bind source path does not exist: ${source}`);
      return {
        type, source, destination, readOnly: !!m.ReadOnly, mode: '', propagation: prop || 'rprivate', copyData: false,
        ...(m.BindOptions?.NonRecursive ? { nonRecursive: true } : {}),
        ...(m.BindOptions?.ReadOnlyNonRecursive ? { readOnlyNonRecursive: true } : {}),
        ...(m.BindOptions?.ReadOnlyForceRecursive ? { readOnlyForceRecursive: true } : {}),
      };
    }
    case 'volume': {
      if (m.BindOptions) throw mountConfigError(type, 'field BindOptions must not be specified');
      if (m.TmpfsOptions) throw mountConfigError(type, 'field TmpfsOptions must not be specified');
      const destination = checkTarget(type, m.Target);
      if (m.Source && !VOLUME_NAME_RE.test(m.Source)) throw invalidVolumeName(m.Source);
      const vo = m.VolumeOptions;
      const subpath = vo?.Subpath;
      if (subpath !== undefined && subpath !== '' && !isLocalPath(subpath)) throw mountConfigError(type, `subpath must be a relative path within the volume`);
      const driver = vo?.DriverConfig?.Name;
      if (driver && driver !== 'local') throw invalid(`error looking up volume plugin ${driver}: plugin "${driver}" not found`);
      const hasOpts = (vo?.DriverConfig?.Options && Object.keys(vo.DriverConfig.Options).length) || (vo?.Labels && Object.keys(vo.Labels).length);
      return {
        type, source: '', destination, readOnly: !!m.ReadOnly, mode: '', propagation: '', copyData: !vo?.NoCopy,
        ...(m.Source ? { name: m.Source } : { anonymous: true }),
        ...(subpath ? { subpath: normalize(subpath) } : {}),
        ...(hasOpts ? { volumeOptions: { options: vo?.DriverConfig?.Options, labels: vo?.Labels } } : {}),
      };
    }
    case 'tmpfs': {
      if (m.BindOptions) throw mountConfigError(type, 'field BindOptions must not be specified');
      if (m.VolumeOptions) throw mountConfigError(type, 'field VolumeOptions must not be specified');
      if (m.Source) throw mountConfigError(type, 'field Source must not be specified');
      const destination = checkTarget(type, m.Target);
      const t = m.TmpfsOptions ?? {};
      const opts: string[] = [];
      if (t.SizeBytes !== undefined && t.SizeBytes !== 0) {
        if (!Number.isInteger(t.SizeBytes) || t.SizeBytes < 0) throw mountConfigError(type, `invalid tmpfs size: ${t.SizeBytes}`);
        opts.push(`size=${Math.ceil(t.SizeBytes / 1024)}k`);
      }
      if (t.Mode !== undefined && t.Mode !== 0) {
        if (!Number.isInteger(t.Mode) || t.Mode < 0 || t.Mode > 0o7777) throw mountConfigError(type, `invalid tmpfs mode: ${t.Mode}`);
        opts.push(`mode=${t.Mode.toString(8)}`);
      }
      for (const o of t.Options ?? []) {
        if (!Array.isArray(o) || o.length < 1 || o.length > 2) throw mountConfigError(type, 'invalid tmpfs option');
        opts.push(o.length === 1 ? String(o[0]) : `${o[0]}=${o[1]}`);
      }
      return { type, source: '', destination, readOnly: !!m.ReadOnly, mode: '', propagation: '', copyData: false, tmpfsOptions: opts };
    }
    default:
      throw invalid(`invalid mount config: mount type unknown: "${String(type)}"`);
  }
}

const TMPFS_FLAG_OPTS = new Set([
  'ro', 'rw', 'exec', 'noexec', 'suid', 'nosuid', 'dev', 'nodev', 'sync', 'async', 'dirsync', 'atime', 'noatime',
  'diratime', 'nodiratime', 'relatime', 'norelatime', 'strictatime', 'nostrictatime', 'mand', 'nomand',
  'private', 'rprivate', 'shared', 'rshared', 'slave', 'rslave', 'tmpcopyup',
]);
const TMPFS_DATA_OPTS = new Set(['size', 'mode', 'uid', 'gid', 'nr_inodes', 'nr_blocks', 'mpol']);

/** A `--tmpfs` entry's options (`rw,size=64m,mode=1770`), checked as docker's daemon does. */
export function parseTmpfsOptions(dest: string, opts: string): BerthMount {
  const destination = checkTarget('tmpfs', dest);
  const list = opts ? opts.split(',') : [];
  for (const o of list) {
    const [k, v] = o.split('=', 2) as [string, string | undefined];
    if (v === undefined ? !TMPFS_FLAG_OPTS.has(k) : !TMPFS_DATA_OPTS.has(k)) throw invalid(`invalid tmpfs option ["${o}"]`);
  }
  return { type: 'tmpfs', source: '', destination, readOnly: list.includes('ro'), mode: '', propagation: '', copyData: false, tmpfsOptions: list };
}

/** A `VolumesFrom` entry: `container[:ro|:rw]`. */
export function parseVolumesFrom(spec: string): { container: string; mode: '' | 'ro' | 'rw' } {
  const i = spec.indexOf(':');
  if (i < 0) return { container: spec, mode: '' };
  const mode = spec.slice(i + 1);
  if (mode !== 'ro' && mode !== 'rw' && mode !== 'z' && mode !== 'Z') throw invalid(`invalid mode: ${mode}`);
  return { container: spec.slice(0, i), mode: mode === 'ro' ? 'ro' : mode === 'rw' ? 'rw' : '' };
}

/**
 * Merge tmpfs options over the defaults the way mount(8) reads them: a later
 * flag replaces an earlier opposite one (`exec` after `noexec`).
 */
export function mergeTmpfsOptions(defaults: string[], user: string[]): string[] {
  const opposite: Record<string, string> = { exec: 'noexec', noexec: 'exec', suid: 'nosuid', nosuid: 'suid', dev: 'nodev', nodev: 'dev', ro: 'rw', rw: 'ro' };
  const out: string[] = [...defaults];
  for (const o of user) {
    const key = o.split('=')[0]!;
    for (let i = out.length - 1; i >= 0; i--) {
      const k = out[i]!.split('=')[0]!;
      if (k === key || out[i] === opposite[o]) out.splice(i, 1);
    }
    out.push(o);
  }
  return out;
}

/**
 * Clients older than API 1.44 knew only non-recursive read-only binds: their
 * read-only `Mounts` keep that meaning, as docker's daemon arranges.
 */
export function readOnlyMountsNonRecursive(mounts: MountSpec[] | undefined): void {
  if (!Array.isArray(mounts)) return;
  for (const m of mounts) {
    if (m?.Type !== 'bind' || !m.ReadOnly) continue;
    m.BindOptions = { ...m.BindOptions, ReadOnlyNonRecursive: true };
  }
}

/** Inspect's `Mounts` entry for a mount, as docker shows it. */
export function mountPoint(m: BerthMount): Record<string, unknown> {
  if (m.type === 'volume') {
    return { Type: 'volume', Name: m.name ?? '', Source: m.source, Destination: m.destination, Driver: 'local', Mode: m.mode, RW: !m.readOnly, Propagation: '' };
  }
  if (m.type === 'bind') return { Type: 'bind', Source: m.source, Destination: m.destination, Mode: m.mode, RW: !m.readOnly, Propagation: m.propagation };
  return { Type: 'tmpfs', Source: '', Destination: m.destination, Mode: '', RW: !m.readOnly, Propagation: '' };
}
