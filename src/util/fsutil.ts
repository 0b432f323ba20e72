import { open, rename, mkdir, readFile, rm, readdir, lstat } from 'node:fs/promises';
import type { Dirent } from 'node:fs';
import { writeFileSync, renameSync, rmSync } from 'node:fs';
import { randomBytes } from 'node:crypto';
import { dirname, join } from 'node:path';
import { isErrno } from './errors.ts';

/**
 * Replace a file atomically: readers see either the old or the new content,
 * never a torn write, even if the process dies half-way. `durable` adds an
 * fsync so the new content survives a power loss, not only a crash.
 */
export async function writeFileAtomic(path: string, data: string | Buffer, opts: { durable?: boolean; mode?: number } = {}): Promise<void> {
  const tmp = `${path}.tmp-${randomBytes(4).toString('hex')}`;
  if (opts.durable === false) {
    // Small records without fsync: two synchronous calls cost far less than
    // four round trips through libuv's thread pool, and they are on the
    // path of every container start and exit.
    try {
      writeFileSync(tmp, data, { mode: opts.mode ?? 0o644 });
      renameSync(tmp, path);
    } catch (err) {
      rmSync(tmp, { force: true });
      throw err;
    }
    return;
  }
  const fh = await open(tmp, 'w', opts.mode ?? 0o644);
  try {
    await fh.writeFile(data);
    await fh.sync();
  } finally {
    await fh.close();
  }
  try {
    await rename(tmp, path);
  } catch (err) {
    await rm(tmp, { force: true });
    throw err;
  }
}

export async function writeJsonAtomic(path: string, value: unknown, opts: { durable?: boolean } = {}): Promise<void> {
  await writeFileAtomic(path, JSON.stringify(value), opts);
}

export async function readJson<T>(path: string): Promise<T | undefined> {
  try {
    return JSON.parse(await readFile(path, 'utf8')) as T;
  } catch (err) {
    if (isErrno(err, 'ENOENT')) return undefined;
    throw err;
  }
}

export async function ensureDir(path: string, mode = 0o711): Promise<void> {
  await mkdir(path, { recursive: true, mode });
}

export async function ensureParent(path: string): Promise<void> {
  await ensureDir(dirname(path));
}

/** Remove a tree, tolerating its absence. */
export async function removeTree(path: string): Promise<void> {
  await rm(path, { recursive: true, force: true, maxRetries: 3 });
}

/**
 * Bytes used by the files under a directory (as `du --apparent-size` counts
 * them, each hard-linked inode once). Symlinks are not followed; a missing
 * directory counts as empty.
 */
export async function dirSize(path: string): Promise<number> {
  const seen = new Set<string>();
  let total = 0;
  const walk = async (dir: string): Promise<void> => {
    let entries: Dirent[];
    try {
      entries = await readdir(dir, { withFileTypes: true });
    } catch {
      return;
    }
    await Promise.all(entries.map(async (e) => {
      const p = join(dir, e.name);
      if (e.isDirectory()) return walk(p);
      const st = await lstat(p).catch(() => undefined);
      if (!st) return;
      const key = `${st.dev}:${st.ino}`;
      if (seen.has(key)) return;
      seen.add(key);
      total += st.size;
    }));
  };
  await walk(path);
  return total;
}
