/**
 * The host side of networking: which subnets the host already uses, bridge
 * devices (create with address, remove), per-interface sysctls, and a
 * host-wide lock so that two berthd instances never pick the same subnet.
 */
import { existsSync } from 'node:fs';
import { open, readFile, rm, writeFile } from 'node:fs/promises';
import { ipBatch, run } from './cmd.ts';
import { parseSubnet } from './ipv4.ts';
import type { Subnet } from './ipv4.ts';
import { isErrno } from '../util/errors.ts';

export function linkExists(name: string): boolean {
  return existsSync(`/sys/class/net/${name}`);
}

/** Every IPv4 subnet on the host's interfaces and in its routing tables. */
export async function hostSubnets(): Promise<Subnet[]> {
  const out: Subnet[] = [];
  const [addrs, routes] = await Promise.all([run('ip', ['-j', '-4', 'addr', 'show']), run('ip', ['-j', '-4', 'route', 'show', 'table', 'all'])]);
  for (const l of JSON.parse(addrs) as Array<{ addr_info?: Array<{ local: string; prefixlen: number }> }>) {
    for (const a of l.addr_info ?? []) out.push(parseSubnet(`${a.local}/${a.prefixlen}`));
  }
  for (const r of JSON.parse(routes) as Array<{ dst?: string; type?: string }>) {
    if (!r.dst || r.dst === 'default' || (r.type && r.type !== 'unicast')) continue;
    out.push(parseSubnet(r.dst.includes('/') ? r.dst : `${r.dst}/32`));
  }
  return out;
}

/** Create (or adopt) a bridge with its gateway address, up, marked as berth's with an alias. */
export async function ensureBridge(name: string, gatewayCidr: string, alias: string, mtu?: number): Promise<void> {
  const lines: string[] = [];
  if (!linkExists(name)) lines.push(`link add name ${name} type bridge`);
  await ipBatch([...lines, `addr replace ${gatewayCidr} dev ${name}`, `link set dev ${name} alias "${alias}"${mtu ? ` mtu ${mtu}` : ''}`, `link set dev ${name} up`]);
  // Published ports reached at 127.0.0.1 are DNATed out of this bridge.
  await setSysctl(`net/ipv4/conf/${name}/route_localnet`, '1');
}

export async function removeLink(name: string): Promise<void> {
  if (!linkExists(name)) return;
  await run('ip', ['link', 'del', 'dev', name]).catch(() => undefined);
}

/** Links whose alias marks them as made by the berthd with this tag. */
export async function linksWithAlias(alias: string): Promise<string[]> {
  const links = JSON.parse(await run('ip', ['-j', 'link', 'show'])) as Array<{ ifname: string; ifalias?: string }>;
  return links.filter((l) => l.ifalias === alias).map((l) => l.ifname);
}

export async function setSysctl(key: string, value: string): Promise<void> {
  const path = `/proc/sys/${key}`;
  const cur = await readFile(path, 'utf8').catch(() => undefined);
  if (cur !== undefined && cur.trim() !== value) await writeFile(path, value);
}

const LOCK = '/run/berth-network.lock';

/**
 * Hold the host-wide network lock while `fn` runs: picking a free subnet and
 * putting it on a bridge must be one step across all berthd instances.
 */
export async function withHostLock<T>(fn: () => Promise<T>): Promise<T> {
  for (let i = 0; ; i++) {
    try {
      const fh = await open(LOCK, 'wx');
      await fh.writeFile(`${process.pid}\n`);
      await fh.close();
      break;
    } catch (err) {
      if (!isErrno(err, 'EEXIST')) throw err;
      const owner = Number((await readFile(LOCK, 'utf8').catch(() => '')).trim());
      let alive = false;
      try {
        if (owner) process.kill(owner, 0);
        alive = owner > 0;
      } catch {
        alive = false;
      }
      // A lock left by a process that died (or an empty one older than our wait) is taken over.
      if (!alive && (owner > 0 || i > 50)) await rm(LOCK, { force: true });
      else await new Promise((r) => setTimeout(r, 20));
    }
  }
  try {
    return await fn();
  } finally {
    await rm(LOCK, { force: true });
  }
}
