import { lstatSync, readFileSync } from 'node:fs';
import { join, posix } from 'node:path';
import { invalid } from '../util/errors.ts';

/**
 * Read a file of a container's root filesystem without mounting it, by
 * looking through the layer directories from the top (the container's own
 * upper directory first). A whiteout or opaque directory ends the search the
 * way overlayfs would. Symlinks in the path are not followed: good enough for
 * /etc/passwd and /etc/group, which is what this is for.
 */
export async function readFromLayers(dirsTopFirst: string[], path: string): Promise<Buffer | undefined> {
  // Synchronous calls on purpose: the files are small and this runs on the
  // path of every container start, where a chain of thread-pool round trips
  // (lstat, open, fstat, read, close per layer) costs several milliseconds.
  const rel = posix.normalize(path).replace(/^\/+/, '');
  for (const dir of dirsTopFirst) {
    const full = join(dir, rel);
    try {
      const st = lstatSync(full);
      if (st.isCharacterDevice() && st.rdev === 0) return undefined; // whiteout
      if (!st.isFile()) return undefined;
      return readFileSync(full);
    } catch {
      // not in this layer
    }
  }
  return undefined;
}

interface PasswdEntry { name: string; uid: number; gid: number; home: string }
interface GroupEntry { name: string; gid: number; members: string[] }

function parsePasswd(text: string): PasswdEntry[] {
  return text.split('\n').filter((l) => l && !l.startsWith('#')).map((l) => l.split(':')).filter((f) => f.length >= 4).map((f) => ({ name: f[0]!, uid: Number(f[2]), gid: Number(f[3]), home: f[5] ?? '/' }));
}

function parseGroup(text: string): GroupEntry[] {
  return text.split('\n').filter((l) => l && !l.startsWith('#')).map((l) => l.split(':')).filter((f) => f.length >= 3).map((f) => ({ name: f[0]!, gid: Number(f[2]), members: (f[3] ?? '').split(',').filter(Boolean) }));
}

export interface ResolvedUser {
  uid: number;
  gid: number;
  additionalGids: number[];
  home: string;
}

/**
 * Resolve docker's `--user` forms (`name`, `uid`, `name:group`, `uid:gid`)
 * against the image's /etc/passwd and /etc/group, adding the groups the user
 * is a member of, as docker does.
 */
export async function resolveUser(dirsTopFirst: string[], spec: string, groupAdd: string[] = []): Promise<ResolvedUser> {
  const [userPart = '', groupPart] = spec.split(':', 2);
  const passwd = parsePasswd((await readFromLayers(dirsTopFirst, '/etc/passwd'))?.toString() ?? '');
  const groups = parseGroup((await readFromLayers(dirsTopFirst, '/etc/group'))?.toString() ?? '');
  let uid = 0;
  let gid = 0;
  let name = 'root';
  let home = '/root';
  const user = userPart === '' ? passwd.find((p) => p.uid === 0) ?? { name: 'root', uid: 0, gid: 0, home: '/root' } : /^\d+$/.test(userPart) ? passwd.find((p) => p.uid === Number(userPart)) : passwd.find((p) => p.name === userPart);
  if (user) {
    ({ uid, gid, name, home } = user);
    if (/^\d+$/.test(userPart)) uid = Number(userPart);
  } else if (/^\d+$/.test(userPart)) {
    uid = Number(userPart);
    gid = 0;
    name = '';
    home = '/';
  } else {
    throw invalid(`unable to find user ${userPart}: no matching entries in passwd file`);
  }
  if (groupPart !== undefined && groupPart !== '') {
    if (/^\d+$/.test(groupPart)) gid = Number(groupPart);
    else {
      const g = groups.find((x) => x.name === groupPart);
      if (!g) throw invalid(`unable to find group ${groupPart}: no matching entries in group file`);
      gid = g.gid;
    }
  }
  const additional = new Set<number>();
  // Supplementary groups come from /etc/group only when no group was given explicitly.
  if (groupPart === undefined && name) for (const g of groups) if (g.members.includes(name) && g.gid !== gid) additional.add(g.gid);
  for (const ga of groupAdd) {
    if (/^\d+$/.test(ga)) additional.add(Number(ga));
    else {
      const g = groups.find((x) => x.name === ga);
      if (!g) throw invalid(`Unable to find group ${ga}: no matching entries in group file`);
      additional.add(g.gid);
    }
  }
  return { uid, gid, additionalGids: [...additional], home };
}

/** /etc/hosts as docker writes it for a container. */
export function hostsFile(hostname: string, extra: Array<[string, string]> = [], ownAddress?: string): string {
  const lines = [
    '127.0.0.1\tlocalhost',
    '::1\tlocalhost ip6-localhost ip6-loopback',
    'fe00::\tip6-localnet',
    'ff00::\tip6-mcastprefix',
    'ff02::1\tip6-allnodes',
    'ff02::2\tip6-allrouters',
  ];
  for (const [host, ip] of extra) lines.push(`${ip}\t${host}`);
  if (ownAddress) lines.push(`${ownAddress}\t${hostname}`);
  return lines.join('\n') + '\n';
}

/**
 * resolv.conf for a container from the host's: loopback nameservers do not
 * work from another network namespace, so they are dropped (docker falls
 * back to public resolvers; berth leaves none rather than sending traffic to
 * an address it does not own).
 */
export function resolvConf(hostResolv: string, opts: { dns?: string[]; search?: string[]; options?: string[] } = {}): string {
  const lines = hostResolv.split('\n');
  const ns = opts.dns?.length ? opts.dns : lines.map((l) => /^\s*nameserver\s+(\S+)/.exec(l)?.[1]).filter((x): x is string => !!x && !x.startsWith('127.') && x !== '::1');
  const search = opts.search?.length ? opts.search : lines.map((l) => /^\s*search\s+(.*)$/.exec(l)?.[1]).filter((x): x is string => !!x).flatMap((s) => s.trim().split(/\s+/));
  const options = opts.options?.length ? opts.options : lines.map((l) => /^\s*options\s+(.*)$/.exec(l)?.[1]).filter((x): x is string => !!x).flatMap((s) => s.trim().split(/\s+/));
  const out: string[] = [];
  for (const n of ns) out.push(`nameserver ${n}`);
  if (search.length && !(search.length === 1 && search[0] === '.')) out.push(`search ${search.join(' ')}`);
  if (options.length) out.push(`options ${options.join(' ')}`);
  return out.join('\n') + '\n';
}
