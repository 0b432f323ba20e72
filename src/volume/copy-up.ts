/**
 * Pre-population of an empty volume from the image, as docker does when a
 * volume is first mounted over a directory the image has: the directory's
 * contents are copied with their ownership, modes, timestamps and xattrs,
 * and the volume's root takes the directory's own owner and mode.
 *
 * The image's view of the path is read through a read-only overlay of the
 * container's layers (whiteouts and opaque directories applied by the
 * kernel), and the path is resolved inside that view only.
 */
import { mkdtemp, readdir, rmdir, stat, lstat } from 'node:fs/promises';
import { execFile } from 'node:child_process';
import { dirname, join, relative } from 'node:path';
import { resolveInside } from './safe-path.ts';
import { systemError } from '../util/errors.ts';

function run(cmd: string, args: string[], cwd?: string): Promise<void> {
  return new Promise((resolve, reject) => {
    execFile(cmd, args, { cwd }, (err, _out, stderr) => {
      if (err) reject(new Error(String(stderr).trim() || err.message));
      else resolve();
    });
  });
}

function commonParent(paths: string[]): string | undefined {
  let parent = dirname(paths[0]!);
  while (parent !== '/' && !paths.every((p) => p.startsWith(`${parent}/`))) parent = dirname(parent);
  return parent === '/' ? undefined : parent;
}

/** True when the directory has no entries (or does not exist). */
export async function isEmptyDir(dir: string): Promise<boolean> {
  try {
    return (await readdir(dir)).length === 0;
  } catch {
    return true;
  }
}

/**
 * Copy the image's `destination` into `volumeDir` if the volume is empty and
 * the image has a directory there. `layers` are the layer dirs, topmost
 * first; `emptyDir` an empty directory (overlayfs wants two lowers at least);
 * `tmpRoot` where the temporary mount point goes.
 */
export async function prepopulate(opts: { volumeDir: string; destination: string; layers: string[]; emptyDir: string; tmpRoot: string }): Promise<boolean> {
  if (!(await isEmptyDir(opts.volumeDir))) return false;
  if (opts.layers.length === 0) return false;
  // Cheap test first: no layer has anything at the path's first component, so nothing to copy and no mount needed.
  const first = opts.destination.split('/').filter(Boolean)[0];
  if (!first) return false;
  let any = false;
  for (const l of opts.layers) {
    try {
      await lstat(join(l, first));
      any = true;
      break;
    } catch {
      // not in this layer
    }
  }
  if (!any) return false;
  const mnt = await mkdtemp(join(opts.tmpRoot, 'copyup-'));
  const lowers = opts.layers.length >= 2 ? opts.layers : [...opts.layers, opts.emptyDir];
  // Mount options are limited to a page: with many layers, name them relative to their common parent.
  const parent = commonParent(lowers);
  const names = parent && lowers.join(':').length > 3000 ? lowers.map((l) => relative(parent, l)) : lowers;
  try {
    await run('mount', ['-t', 'overlay', 'overlay', '-o', `ro,index=off,lowerdir=${names.join(':')}`, mnt], names === lowers ? undefined : parent);
  } catch (err) {
    await rmdir(mnt).catch(() => undefined);
    throw systemError(`copying image data into the volume: ${(err as Error).message}`);
  }
  try {
    const src = await resolveInside(mnt, opts.destination, 'scope');
    if (!src.exists) return false;
    const st = await stat(src.path).catch(() => undefined);
    if (!st?.isDirectory()) return false;
    // The volume may have been filled meanwhile by another container's copy.
    if (!(await isEmptyDir(opts.volumeDir))) return false;
    try {
      // `-a`: ownership, modes, timestamps, links, xattrs; never follows symlinks in the source.
      await run('cp', ['-a', '--', `${src.path}/.`, `${opts.volumeDir}/`]);
    } catch (err) {
      throw systemError(`copying image data into the volume: ${(err as Error).message}`);
    }
    return true;
  } finally {
    await run('umount', [mnt]).catch(() => run('umount', ['-l', mnt]).catch(() => undefined));
    await rmdir(mnt).catch(() => undefined);
  }
}
