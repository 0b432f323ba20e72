import { open, rename, mkdir, readFile, rm } from 'node:fs/promises';
import { writeFileSync, renameSync, rmSync } from 'node:fs';
import { randomBytes } from 'node:crypto';
import { dirname } from 'node:path';
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
