/**
 * Looking at an image's filesystem during a build without a container: a
 * read-only overlay mount of a layer stack (COPY --from, RUN --mount from=),
 * and a stat that looks through the layer directories the way overlayfs does.
 */
import { execFile } from 'node:child_process';
import { lstat, mkdir, rmdir } from 'node:fs/promises';
import type { Stats } from 'node:fs';
import { join, posix } from 'node:path';
import { randomBytes } from 'node:crypto';
import { systemError } from '../util/errors.ts';

function run(cmd: string, args: string[]): Promise<void> {
  return new Promise((resolve, reject) => {
    execFile(cmd, args, (err, _o, stderr) => (err ? reject(systemError(`${cmd} ${args.join(' ')}: ${String(stderr).trim() || err.message}`)) : resolve()));
  });
}

export interface RootView {
  path: string;
  release(): Promise<void>;
}

/**
 * Mount the layers (top first) read-only under `tmpRoot`. Overlayfs without
 * an upper directory wants two lower directories at least, so `empty` pads a
 * single-layer stack; no layers at all is the empty directory itself.
 */
export async function mountLayers(layerDirsTopFirst: string[], tmpRoot: string, empty: string): Promise<RootView> {
  if (layerDirsTopFirst.length === 0) return { path: empty, release: async () => undefined };
  const target = join(tmpRoot, `view-${randomBytes(6).toString('hex')}`);
  await mkdir(target, { recursive: true });
  const lowers = layerDirsTopFirst.length === 1 ? [...layerDirsTopFirst, empty] : layerDirsTopFirst;
  try {
    await run('mount', ['-t', 'overlay', 'overlay', '-o', `ro,lowerdir=${lowers.join(':')}`, target]);
  } catch (err) {
    await rmdir(target).catch(() => undefined);
    throw err;
  }
  let released = false;
  return {
    path: target,
    release: async () => {
      if (released) return;
      released = true;
      await run('umount', [target]).catch(() => run('umount', ['-l', target]));
      await rmdir(target).catch(() => undefined);
    },
  };
}

/**
 * The stat of a path in a layer stack, or undefined when it does not exist
 * (or is whited out). Symlinks along the way are not followed.
 */
export async function statInLayers(layerDirsTopFirst: string[], path: string): Promise<Stats | undefined> {
  const rel = posix.normalize(path).replace(/^\/+/, '');
  if (rel === '' || rel === '.') return lstat(layerDirsTopFirst[0] ?? '/');
  for (const dir of layerDirsTopFirst) {
    try {
      const st = await lstat(join(dir, rel));
      if (st.isCharacterDevice() && st.rdev === 0) return undefined;
      return st;
    } catch {
      // not in this layer
    }
  }
  return undefined;
}
