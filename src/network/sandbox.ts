/**
 * A container's network namespace, made by berthd before runc starts and
 * bind-mounted at <exec-root>/netns/<id> so runc joins it by path and berthd
 * can change it while the container runs (connect, disconnect). Removing the
 * bind mount after the container's exit frees the namespace, and the kernel
 * deletes its interfaces (and their veth peers on the bridges) with it.
 *
 * Namespaces and veth endpoints are made by native/berth-netns over
 * netlink, run through the launcher: one small process start instead of
 * the two or three ip(8) and unshare(1) starts from Node that the same work
 * would take on the path of every container start.
 */
import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import { mkdir, readdir, readFile, rm } from 'node:fs/promises';
import { join } from 'node:path';
import { CommandError, ipBatch } from './cmd.ts';
import { launcherFor } from '../runtime/launcher.ts';
import type { NativeLauncher } from '../runtime/launcher.ts';
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
  private readonly helper: string;
  private readonly launcher: NativeLauncher;
  /** Removals still running, by container ID: a new namespace for the same ID waits for them. */
  private readonly removing = new Map<string, Promise<void>>();

  constructor(execRoot: string, nativeDir: string) {
    this.dir = join(execRoot, 'netns');
    this.helper = join(nativeDir, 'berth-netns');
    this.launcher = launcherFor(nativeDir);
  }

  /** Run berth-netns; its one-line error becomes the exception's message. */
  private async netns(args: string[]): Promise<void> {
    const r = await this.launcher.runHelper([this.helper, ...args]);
    if (r.code !== 0) throw new CommandError(r.output.trim() || `berth-netns ${args[0]} exited with ${r.code}`, r.output);
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
    // A failed removal is retried just below, if it left the namespace behind.
    await this.removing.get(id)?.catch(() => undefined);
    if (this.exists(id)) await this.destroy(id);
    writeFileSync(path, ''); // the mount point for the namespace
    try {
      await this.netns(['create', path, ...(first?.how.kind === 'bridge' ? [vethSpec(first.ep, first.how)] : [])]);
      if (first?.how.kind === 'macvlan') await this.macvlan(path, first.ep, first.how);
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
    await this.netns(['veth', path, vethSpec(ep, how)]);
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

  /**
   * Unmount and remove the namespace file; the kernel frees the namespace
   * and its interfaces. Removals of one ID run one after another, and
   * `create` for that ID waits for them.
   */
  destroy(id: string): Promise<void> {
    // After the one before it, whether that one succeeded or not: a failure
    // there must not skip this removal's work.
    const before = this.removing.get(id)?.catch(() => undefined) ?? Promise.resolve();
    const done = before.then(async () => {
      const path = this.path(id);
      if (isMountPoint(path)) await this.netns(['destroy', path]).catch(() => undefined);
      await rm(path, { force: true });
      await rm(this.statePath(id), { force: true });
    });
    this.removing.set(id, done);
    // Both ways (not finally(): its own promise would reject unhandled when the removal fails).
    const forget = () => {
      if (this.removing.get(id) === done) this.removing.delete(id);
    };
    done.then(forget, forget);
    return done;
  }

  /** Every removal still running, to its end (berthd stopping waits for them): one failing does not cut the wait short. */
  async settle(): Promise<void> {
    const failed = (await Promise.allSettled([...this.removing.values()])).find((r) => r.status === 'rejected');
    if (failed) throw (failed as PromiseRejectedResult).reason;
  }

  async saveState(state: SandboxState): Promise<void> {
    // A namespace does not survive a reboot, so neither need its record: no fsync.
    await writeFileAtomic(this.statePath(state.containerId), JSON.stringify(state), { durable: false });
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

/** An endpoint as berth-netns takes it: IFNAME,HOSTIF,MAC,ADDR/PREFIX,GATEWAY,MTU,BRIDGE. */
function vethSpec(ep: Endpoint, how: Plumbing): string {
  const gateway = how.defaultRoute && ep.gateway ? ep.gateway : '';
  return [ep.iface, ep.hostIface, ep.mac, `${ep.ip}/${ep.prefix}`, gateway, how.mtu ?? 0, how.device].join(',');
}

function isMountPoint(path: string): boolean {
  if (!existsSync(path)) return false;
  try {
    return readFileSync('/proc/self/mounts', 'utf8').split('\n').some((l) => l.split(' ')[1] === path);
  } catch {
    return false;
  }
}
