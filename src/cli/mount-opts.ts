/**
 * The storage flags of `run` and `create` (`-v`, `--mount`, `--tmpfs`,
 * `--volumes-from`, `--volume-driver`) and how docker's CLI puts them in the
 * create body: `-v` with a source goes to HostConfig.Binds (a `./relative`
 * source made absolute), `-v /path` to Config.Volumes, `--mount` is parsed
 * here into HostConfig.Mounts.
 */
import { isAbsolute, resolve } from 'node:path';
import type { FlagSpec, Flags } from './flags.ts';
import { CliError } from './command.ts';
import type { MountSpec } from '../engine/container-types.ts';

export const MOUNT_FLAGS: FlagSpec[] = [
  { name: 'volume', short: 'v', type: 'list', description: 'Bind mount a volume' },
  { name: 'mount', type: 'list', description: 'Attach a filesystem mount to the container' },
  { name: 'tmpfs', type: 'list', description: 'Mount a tmpfs directory' },
  { name: 'volumes-from', type: 'list', description: 'Mount volumes from the specified container(s)' },
  { name: 'volume-driver', type: 'string', description: 'Optional volume driver for the container' },
];

/** docker's RAMInBytes: `64m`, `1g`, `512k`, `1.5GiB` (binary units), or plain bytes. */
function ramInBytes(s: string): number {
  const m = /^(\d+(?:\.\d+)?)\s*([kmgtp])?(i?b)?$/i.exec(s.trim());
  if (!m) throw new Error(`invalid size: '${s}'`);
  const mult: Record<string, number> = { '': 1, k: 1024, m: 1024 ** 2, g: 1024 ** 3, t: 1024 ** 4, p: 1024 ** 5 };
  return Math.trunc(Number(m[1]) * mult[(m[2] ?? '').toLowerCase()]!);
}

function parseBool(key: string, val: string, hasValue: boolean): boolean {
  if (!hasValue) return true;
  const v = val.toLowerCase();
  if (['1', 't', 'true'].includes(v)) return true;
  if (['0', 'f', 'false'].includes(v)) return false;
  throw new Error(`invalid value for '${key}': invalid boolean value (${JSON.stringify(val)}): must be one of "true", "1", "false", or "0" (default "true")`);
}

/** Split a CSV record the way Go's encoding/csv reads one line (quotes allowed). */
function csvFields(s: string): string[] {
  const out: string[] = [];
  let cur = '';
  let quoted = false;
  for (let i = 0; i < s.length; i++) {
    const c = s[i]!;
    if (quoted) {
      if (c === '"' && s[i + 1] === '"') {
        cur += '"';
        i++;
      } else if (c === '"') quoted = false;
      else cur += c;
    } else if (c === '"' && cur === '') quoted = true;
    else if (c === ',') {
      out.push(cur);
      cur = '';
    } else cur += c;
  }
  out.push(cur);
  return out;
}

/** One `--mount` value, as docker's CLI parses it. Throws with docker's message. */
export function parseMountFlag(value: string): MountSpec {
  const m: MountSpec = { Type: 'volume', Target: '' };
  const vo = () => (m.VolumeOptions ??= {});
  const bo = () => (m.BindOptions ??= {});
  const to = () => (m.TmpfsOptions ??= {});
  for (const field of csvFields(value)) {
    const eq = field.indexOf('=');
    const hasValue = eq >= 0;
    const key = (hasValue ? field.slice(0, eq) : field).trim().toLowerCase();
    const val = hasValue ? field.slice(eq + 1) : '';
    if (!hasValue && !['readonly', 'ro', 'volume-nocopy', 'bind-nonrecursive'].includes(key)) throw new Error(`invalid field '${field}' must be a key=value pair`);
    switch (key) {
      case 'type':
        m.Type = val.toLowerCase() as MountSpec['Type'];
        break;
      case 'source':
      case 'src':
        m.Source = !isAbsolute(val) && val.startsWith('.') ? resolve(val) : val;
        break;
      case 'target':
      case 'dst':
      case 'destination':
        m.Target = val;
        break;
      case 'readonly':
      case 'ro':
        m.ReadOnly = parseBool(key, val, hasValue);
        break;
      case 'consistency':
        m.Consistency = val;
        break;
      case 'bind-propagation':
        bo().Propagation = val.toLowerCase();
        break;
      case 'bind-nonrecursive':
        bo().NonRecursive = parseBool(key, val, hasValue);
        break;
      case 'bind-recursive':
        // enabled (default), disabled (no submounts), writable (submounts stay writable), readonly (must be recursive).
        if (val === 'disabled') bo().NonRecursive = true;
        else if (val === 'writable') bo().ReadOnlyNonRecursive = true;
        else if (val === 'readonly') bo().ReadOnlyForceRecursive = true;
        else if (val !== 'enabled') throw new Error(`invalid value for ${key}: ${val} (must be "enabled", "disabled", "writable", or "readonly")`);
        break;
      case 'bind-create-src':
        bo().CreateMountpoint = parseBool(key, val, hasValue);
        break;
      case 'volume-nocopy':
        vo().NoCopy = parseBool(key, val, hasValue);
        break;
      case 'volume-subpath':
        vo().Subpath = val;
        break;
      case 'volume-label': {
        const i = val.indexOf('=');
        (vo().Labels ??= {})[i < 0 ? val : val.slice(0, i)] = i < 0 ? '' : val.slice(i + 1);
        break;
      }
      case 'volume-driver':
        (vo().DriverConfig ??= {}).Name = val;
        break;
      case 'volume-opt': {
        const i = val.indexOf('=');
        if (i < 0) throw new Error(`invalid value for ${key}: ${val}`);
        const dc = (vo().DriverConfig ??= {});
        (dc.Options ??= {})[val.slice(0, i)] = val.slice(i + 1);
        break;
      }
      case 'tmpfs-size':
        try {
          to().SizeBytes = ramInBytes(val);
        } catch {
          throw new Error(`invalid value for ${key}: ${val}`);
        }
        break;
      case 'tmpfs-mode':
        if (!/^[0-7]+$/.test(val) || parseInt(val, 8) > 0xffffffff) throw new Error(`invalid value for ${key}: ${val}`);
        to().Mode = parseInt(val, 8);
        break;
      default:
        throw new Error(`unexpected key '${key}' in '${field}'`);
    }
  }
  if (!m.Type) throw new Error('type is required');
  if (!m.Target) throw new Error('target is required');
  if (m.VolumeOptions && m.Type !== 'volume') throw new Error(`cannot mix 'volume-*' options with mount type '${m.Type}'`);
  if (m.BindOptions && m.Type !== 'bind') throw new Error(`cannot mix 'bind-*' options with mount type '${m.Type}'`);
  if (m.TmpfsOptions && m.Type !== 'tmpfs') throw new Error(`cannot mix 'tmpfs-*' options with mount type '${m.Type}'`);
  if (m.BindOptions?.ReadOnlyNonRecursive && !m.ReadOnly) throw new Error(`option 'bind-recursive=writable' requires 'readonly' to be specified in conjunction`);
  if (m.BindOptions?.ReadOnlyForceRecursive && !m.ReadOnly) throw new Error(`option 'bind-recursive=readonly' requires 'readonly' to be specified in conjunction`);
  return m;
}

/** Put the storage flags into a create body (Config and HostConfig). */
export function applyMountFlags(f: Flags, config: Record<string, unknown>, hostConfig: Record<string, unknown>): void {
  const binds: string[] = [];
  const volumes: Record<string, object> = {};
  for (const spec of f.list('volume')) {
    const colon = spec.indexOf(':');
    if (colon > 0) {
      const host = spec.slice(0, colon);
      // A source like ./data is the client's directory, made absolute here as docker's CLI does.
      binds.push(!isAbsolute(host) && host.startsWith('.') ? `${resolve(host)}${spec.slice(colon)}` : spec);
    } else if (colon === 0) {
      throw new CliError(`invalid argument "${spec}" for "-v, --volume" flag: invalid spec: ${spec}: empty section between colons`, 125);
    } else {
      volumes[spec] = {};
    }
  }
  const mounts: MountSpec[] = [];
  for (const v of f.list('mount')) {
    try {
      mounts.push(parseMountFlag(v));
    } catch (err) {
      throw new CliError(`invalid argument "${v}" for "--mount" flag: ${(err as Error).message}\nSee 'berth run --help'.`, 125);
    }
  }
  const tmpfs: Record<string, string> = {};
  for (const t of f.list('tmpfs')) {
    const i = t.indexOf(':');
    if (i < 0) tmpfs[t] = '';
    else tmpfs[t.slice(0, i)] = t.slice(i + 1);
  }
  if (binds.length) hostConfig.Binds = binds;
  if (mounts.length) hostConfig.Mounts = mounts;
  if (Object.keys(tmpfs).length) hostConfig.Tmpfs = tmpfs;
  if (f.list('volumes-from').length) hostConfig.VolumesFrom = f.list('volumes-from');
  if (f.str('volume-driver')) hostConfig.VolumeDriver = f.str('volume-driver');
  if (Object.keys(volumes).length) config.Volumes = volumes;
}
