/**
 * Resolving a path inside a directory without ever leaving it: each
 * component is looked at with lstat and symlinks are followed by hand, so a
 * link planted inside a volume or an image cannot send berth to the host's
 * files.
 *
 * - `scope` (chroot-like, for paths inside an image): an absolute link
 *   restarts at the root, `..` stops at the root.
 * - `beneath` (for a volume subpath): any step that would leave the root —
 *   `..` above it, an absolute link — is an error.
 */
import { lstat, readlink } from 'node:fs/promises';
import { join } from 'node:path';
import { BerthError } from '../util/errors.ts';

const MAX_LINKS = 40;

export class EscapeError extends BerthError {
  constructor(message: string) {
    super('InvalidParameter', message);
  }
}

/**
 * Resolve `rel` under `root`. Returns the host path (inside `root`, free of
 * symlinks at the time of the check) and whether it exists; a missing
 * component ends the walk (`exists: false`).
 */
export async function resolveInside(root: string, rel: string, mode: 'scope' | 'beneath'): Promise<{ path: string; exists: boolean }> {
  const done: string[] = [];
  let todo = rel.split('/').filter((p) => p !== '' && p !== '.');
  let links = 0;
  while (todo.length) {
    const part = todo.shift()!;
    if (part === '..') {
      if (done.length === 0) {
        if (mode === 'beneath') throw new EscapeError(`path "${rel}" escapes its root`);
        continue;
      }
      done.pop();
      continue;
    }
    const here = join(root, ...done, part);
    let st;
    try {
      st = await lstat(here);
    } catch {
      return { path: join(root, ...done, part, ...todo), exists: false };
    }
    if (!st.isSymbolicLink()) {
      done.push(part);
      continue;
    }
    if (++links > MAX_LINKS) throw new EscapeError(`path "${rel}": too many levels of symbolic links`);
    const target = await readlink(here);
    if (target.startsWith('/')) {
      if (mode === 'beneath') throw new EscapeError(`path "${rel}" escapes its root through the symbolic link "${[...done, part].join('/')}"`);
      done.length = 0;
    }
    todo = [...target.split('/').filter((p) => p !== '' && p !== '.'), ...todo];
  }
  return { path: join(root, ...done), exists: true };
}
