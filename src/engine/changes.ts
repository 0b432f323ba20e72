/**
 * `docker diff`: what a container changed, read from its overlay upper
 * directory. A whiteout device is a deletion, an opaque directory a
 * deletion of the lower one (its new contents follow as additions), a path
 * that exists in a lower layer a modification, anything else an addition.
 * A lower directory is reported as modified when something below it
 * changed. The mount points the runtime creates for every container
 * (/etc/hosts, /proc, ...) are left out: docker keeps them in a layer of
 * their own that diff does not show.
 */
import { execFile } from 'node:child_process';
import { posix } from 'node:path';
import { readdir } from 'node:fs/promises';
import { ScopedFs } from './fs-path.ts';
import type { DirRef } from './fs-path.ts';
import { BerthError, isErrno } from '../util/errors.ts';

export interface Change {
  Path: string;
  /** 0 modified, 1 added, 2 deleted. */
  Kind: 0 | 1 | 2;
}

const RUNTIME_PATHS = new Set(['/.dockerenv', '/etc/hosts', '/etc/hostname', '/etc/resolv.conf', '/etc/mtab', '/dev/console', '/dev/pts', '/dev/shm', '/dev/mqueue', '/proc', '/sys', '/dev']);

/** Directories marked opaque, by path relative to the upper dir, from one getfattr run. */
function opaqueDirs(upper: string): Promise<Set<string>> {
  return new Promise((resolve) => {
    execFile('getfattr', ['-R', '-h', '--absolute-names', '-n', 'trusted.overlay.opaque', '--', upper], { maxBuffer: 64 << 20 }, (_err, stdout) => {
      const out = new Set<string>();
      let file: string | null = null;
      for (const line of String(stdout).split('\n')) {
        if (line.startsWith('# file: ')) file = line.slice(8);
        else if (file && line === 'trusted.overlay.opaque="y"') {
          const rel = file.slice(upper.length).replace(/\\([0-7]{3})/g, (_m, o: string) => String.fromCharCode(parseInt(o, 8)));
          out.add(posix.join('/', rel));
        }
      }
      resolve(out);
    });
  });
}

/** Changes of a container, given its upper directory and its image's layer directories (top first). */
export async function containerChanges(upper: string, lowersTopFirst: string[]): Promise<Change[]> {
  const fs = await ScopedFs.open(upper, { readOnly: true });
  const lowers = await Promise.all(lowersTopFirst.map((l) => ScopedFs.open(l, { readOnly: true })));
  try {
    const opaque = await opaqueDirs(upper);
    const inLowers = async (path: string): Promise<boolean> => {
      for (const l of lowers) {
        try {
          const loc = await l.resolve(path);
          const st = loc.parent ? await l.lstatChild(loc.parent, loc.name) : null;
          await loc.parent?.close();
          if (st) return !(st.isCharacterDevice() && st.rdev === 0);
        } catch (err) {
          if (!(err instanceof BerthError)) throw err;
        }
      }
      return false;
    };
    const walk = async (dir: DirRef): Promise<Change[]> => {
      let names: string[];
      try {
        names = await readdir(dir.self);
      } catch (err) {
        if (isErrno(err, 'ENOENT')) return [];
        throw err;
      }
      names.sort((a, b) => (a < b ? -1 : a > b ? 1 : 0));
      const out: Change[] = [];
      for (const n of names) {
        const path = posix.join(dir.path, n);
        if (RUNTIME_PATHS.has(path)) continue;
        const st = await fs.lstatChild(dir, n);
        if (!st) continue;
        if (st.isCharacterDevice() && st.rdev === 0) {
          out.push({ Path: path, Kind: 2 });
          continue;
        }
        if (!st.isDirectory()) {
          out.push({ Path: path, Kind: (await inLowers(path)) ? 0 : 1 });
          continue;
        }
        const sub = await fs.openDir(dir, n);
        const below = sub ? await walk(sub).finally(() => sub.close()) : [];
        if (opaque.has(path)) out.push({ Path: path, Kind: 2 }, ...below);
        else if (!(await inLowers(path))) out.push({ Path: path, Kind: 1 }, ...below);
        else if (below.length > 0) out.push({ Path: path, Kind: 0 }, ...below);
      }
      return out;
    };
    return await walk(fs.root);
  } finally {
    await fs.close();
    for (const l of lowers) await l.close();
  }
}
