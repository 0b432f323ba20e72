/**
 * A container's network namespace, made by berthd before runc starts and
 * bind-mounted at <exec-root>/netns/<id> so runc joins it by path and berthd
 * can change it while the container runs (connect, disconnect). Removing the
 * bind mount after the container's exit frees the namespace, and the kernel
 * deletes its interfaces (and their veth peers on the bridges) with it.
 */
import { existsSync, readFileSync } from 'node:fs';
import { mkdir, readdir, readFile, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { ipBatch, run } from './cmd.ts';
import type { Endpoint, SandboxState } from './types.ts';
import { writeFileAtomic } from '../util/fsutil.ts';

/** How an endpoint is plumbed: a veth pair onto a bridge, or a macvlan on a parent. */
export interface Plumbing {
  kind: 'bridge' | 'macvlan';
  /** The bridge, or the macvlan parent. */
  device: string;
  mtu?: number;
  /** Default route through this endpoint's gateway. */
  defaultRoute: boolean;
}

export class Sandboxes {
  readonly dir: string;

  constructor(execRoot: string) {
    this.dir = join(execRoot, 'netns');
  }

  async init(): Promise<void> {
    await mkdir(this.dir, { recursive: true, mode: 0o700 });
  }

  path(id: string): string {
    return join(this.dir, id);
  }

  private statePath(id: string): string {
    return join(this.dir, `${id}.json`);
  }

  exists(id: string): boolean {
    return isMountPoint(this.path(id));
  }

  /** A new namespace with loopback up and the first endpoint (if any) plumbed. */
  async create(id: string, first?: { ep: Endpoint; how: Plumbing }): Promise<string> {
    const path = this.path(id);
    if (this.exists(id)) await this.destroy(id);
    await writeFile(path, '');
    const inside = ['link set lo up'];
    if (first?.how.kind === 'bridge') inside.push(...vethInside(first.ep, first.how));
    try {
      // unshare makes the namespace, bind-mounts it at `path`, then ip configures it from inside.
      await run('unshare', [`--net=${path}`, 'ip', '-batch', '-'], inside.join('\n') + '\n');
      if (first) {
        if (first.how.kind === 'bridge') await ipBatch(vethHost(first.ep, first.how));
        else await this.macvlan(path, first.ep, first.how);
      }
    } catch (err) {
      await this.destroy(id);
      throw err;
    }
    return path;
  }

  /** Plumb another endpoint into an existing namespace (network connect). */
  async attach(id: string, ep: Endpoint, how: Plumbing): Promise<void> {
    const path = this.path(id);
    if (how.kind === 'macvlan') return this.macvlan(path, ep, how);
    await ipBatch(vethInside(ep, how), path);
    try {
      await ipBatch(vethHost(ep, how));
    } catch (err) {
      await ipBatch([`link del dev ${ep.iface}`], path).catch(() => undefined);
      throw err;
    }
  }

  private async macvlan(path: string, ep: Endpoint, how: Plumbing): Promise<void> {
    const tmp = `mv${ep.endpointId.slice(0, 10)}`;
    await ipBatch([`link add link ${how.device} name ${tmp}${how.mtu ? ` mtu ${how.mtu}` : ''} type macvlan mode bridge`, `link set dev ${tmp} netns ${path}`]);
    await ipBatch([
      `link set dev ${tmp} name ${ep.iface}`,
      `link set dev ${ep.iface} address ${ep.mac}`,
      `addr add ${ep.ip}/${ep.prefix} dev ${ep.iface}`,
      `link set dev ${ep.iface} up`,
      ...(how.defaultRoute && ep.gateway ? [`route replace default via ${ep.gateway} dev ${ep.iface}`] : []),
    ], path);
  }

  /** Remove an endpoint's interface from a running namespace (network disconnect). */
  async detach(id: string, ep: Endpoint): Promise<void> {
    await ipBatch([`link del dev ${ep.iface}`], this.path(id)).catch(() => undefined);
  }

  /** Unmount and remove the namespace file; the kernel frees the namespace and its interfaces. */
  async destroy(id: string): Promise<void> {
    const path = this.path(id);
    if (isMountPoint(path)) await run('umount', ['-l', path]).catch(() => undefined);
    await rm(path, { force: true });
    await rm(this.statePath(id), { force: true });
  }

  async saveState(state: SandboxState): Promise<void> {
    await writeFileAtomic(this.statePath(state.containerId), JSON.stringify(state));
  }

  async loadState(id: string): Promise<SandboxState | undefined> {
    try {
      return JSON.parse(await readFile(this.statePath(id), 'utf8')) as SandboxState;
    } catch {
      return undefined;
    }
  }

  /** Container IDs with a namespace or state file here. */
  async known(): Promise<string[]> {
    const ids = new Set<string>();
    for (const f of await readdir(this.dir).catch(() => [] as string[])) ids.add(f.replace(/\.json$/, ''));
    return [...ids];
  }
}

/** Inside the namespace: the veth pair, its peer created directly in berthd's namespace. */
function vethInside(ep: Endpoint, how: Plumbing): string[] {
  const mtu = how.mtu ? ` mtu ${how.mtu}` : '';
  return [
    `link add name ${ep.iface}${mtu} address ${ep.mac} type veth peer name ${ep.hostIface}${mtu} netns /proc/${process.pid}/ns/net`,
    `addr add ${ep.ip}/${ep.prefix} dev ${ep.iface}`,
    `link set dev ${ep.iface} up`,
    ...(how.defaultRoute && ep.gateway ? [`route replace default via ${ep.gateway} dev ${ep.iface}`] : []),
  ];
}

function vethHost(ep: Endpoint, how: Plumbing): string[] {
  return [`link set dev ${ep.hostIface} master ${how.device} up`];
}

function isMountPoint(path: string): boolean {
  if (!existsSync(path)) return false;
  try {
    return readFileSync('/proc/self/mounts', 'utf8').split('\n').some((l) => l.split(' ')[1] === path);
  } catch {
    return false;
  }
}
