/**
 * `berth cp`: files between a container and the host, with docker's rules
 * for trailing `/` and `/.`, existing and missing destinations, `-L`, `-a`
 * and `-` for a tar on stdin or stdout. The container side is the archive
 * endpoints; the host side reads and writes through the same descriptor-
 * based code the daemon uses (engine/archive-tar.ts), with the host's root.
 */
import { lstat, readlink, realpath, stat } from 'node:fs/promises';
import type { Stats } from 'node:fs';
import { posix } from 'node:path';
import { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import type { Command, CliContext } from '../command.ts';
import { CliError } from '../command.ts';
import { ApiError } from '../client.ts';
import { ScopedFs } from '../../engine/fs-path.ts';
import { packLocated, unpackInto } from '../../engine/archive-tar.ts';
import { humanSize } from '../../util/units.ts';

interface PathStat {
  name: string;
  size: number;
  mode: number;
  mtime: string;
  linkTarget: string;
}

const MODE_DIR = 2 ** 31;
const MODE_SYMLINK = 2 ** 27;
/** Go's ModeType bits other than directory: a regular file has none of them. */
const MODE_IRREGULAR = (1 << 27) | (1 << 26) | (1 << 25) | (1 << 24) | (1 << 21) | (1 << 19);

interface CopyInfo {
  path: string;
  exists: boolean;
  isDir: boolean;
  rebaseName: string;
}

/** `CONTAINER:PATH` or a local path (absolute, or starting with `.`, or without a colon). */
export function splitCpArg(arg: string): { container: string; path: string } {
  if (arg.startsWith('/')) return { container: '', path: arg };
  const i = arg.indexOf(':');
  if (i < 0 || arg.startsWith('.')) return { container: '', path: arg };
  return { container: arg.slice(0, i), path: arg.slice(i + 1) };
}

const specifiesCurrentDir = (p: string): boolean => posix.basename(p) === '.';
const hasTrailingSeparator = (p: string): boolean => p.length > 0 && p.endsWith('/');

function goClean(p: string): string {
  const n = posix.normalize(p);
  return n.length > 1 ? n.replace(/\/+$/, '') : n;
}

/** docker's SplitPathDirEntry: `/a/b/.` is ("/a/b", "."), `/a/b/` is ("/a", "b"). */
export function splitPathDirEntry(p: string): [string, string] {
  let cleaned = goClean(p);
  if (specifiesCurrentDir(p)) cleaned += '/.';
  return [posix.dirname(cleaned), posix.basename(cleaned)];
}

function preserveTrailing(cleaned: string, original: string): string {
  if (specifiesCurrentDir(original) && !specifiesCurrentDir(cleaned)) return `${cleaned.replace(/\/$/, '')}/.`;
  if (hasTrailingSeparator(original) && !hasTrailingSeparator(cleaned)) return `${cleaned}/`;
  return cleaned;
}

function resolveLocalPath(p: string): string {
  return preserveTrailing(posix.resolve(p), p);
}

/** docker's GetRebaseName: keep the name the user asked for when symlinks changed it. */
function rebaseName(path: string, resolved: string): [string, string] {
  let r = resolved;
  if (specifiesCurrentDir(path) && !specifiesCurrentDir(r)) r += '/.';
  if (hasTrailingSeparator(path) && !hasTrailingSeparator(r)) r += '/';
  return [r, posix.basename(path) !== posix.basename(r) ? posix.basename(path) : ''];
}

function errnoMessage(err: unknown): string {
  const e = err as NodeJS.ErrnoException;
  if (e.code === 'ENOENT' && e.syscall && e.path) return `${e.syscall} ${e.path}: no such file or directory`;
  if (e.code === 'ENOTDIR' && e.syscall && e.path) return `${e.syscall} ${e.path}: not a directory`;
  return e.message ?? String(err);
}

async function localSource(path: string, follow: boolean): Promise<CopyInfo> {
  let resolved: string;
  let rebase = '';
  try {
    if (follow) {
      [resolved, rebase] = rebaseName(path, await realpath(path));
    } else {
      const i = path.lastIndexOf('/');
      const dir = path.slice(0, i + 1) || '.';
      const base = path.slice(i + 1);
      resolved = `${(await realpath(dir)).replace(/\/$/, '')}/${base}`;
      if (hasTrailingSeparator(path) && posix.basename(path) !== posix.basename(resolved)) rebase = posix.basename(path);
    }
    const st = await lstat(resolved);
    return { path: resolved, exists: true, isDir: st.isDirectory(), rebaseName: rebase };
  } catch (err) {
    throw new CliError(errnoMessage(err), 1);
  }
}

/** docker's CopyInfoDestinationPath for the host: the final symlink is followed, a missing path needs its parent. */
async function localDestination(path: string): Promise<CopyInfo> {
  let p = path;
  let st: Stats | null = null;
  try {
    st = await lstat(p);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw new CliError(errnoMessage(err), 1);
  }
  for (let n = 0; st?.isSymbolicLink(); n++) {
    if (n > 10) throw new CliError(`too many symlinks in ${path}`, 1);
    let target = await readlink(p);
    if (!target.startsWith('/')) target = posix.join(splitPathDirEntry(p)[0], target);
    p = target;
    try {
      st = await lstat(p);
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw new CliError(errnoMessage(err), 1);
      st = null;
    }
  }
  if (st) return { path: p, exists: true, isDir: st.isDirectory(), rebaseName: '' };
  const parent = splitPathDirEntry(p)[0];
  let pst: Stats;
  try {
    pst = await stat(parent);
  } catch (err) {
    throw new CliError(errnoMessage(err), 1);
  }
  if (!pst.isDirectory()) throw new CliError('not a directory', 1);
  return { path: p, exists: false, isDir: false, rebaseName: '' };
}

/**
 * docker's PrepareArchiveCopy: the directory to extract into, and the
 * name the source's top entry must carry there (undefined: keep it).
 */
export function prepareCopy(src: CopyInfo, dst: CopyInfo): { dir: string; rename: [string, string] | undefined } {
  const [dstDir, dstBase] = splitPathDirEntry(dst.path);
  let srcBase = splitPathDirEntry(src.path)[1];
  if (dst.exists && dst.isDir) return { dir: dst.path, rename: undefined };
  if (dst.exists && src.isDir) throw new CliError('cannot copy directory', 1);
  if (!dst.exists && !src.isDir && (hasTrailingSeparator(dst.path) || specifiesCurrentDir(dst.path))) throw new CliError('no such directory', 1);
  if (src.rebaseName) srcBase = src.rebaseName;
  return { dir: dstDir, rename: [srcBase, dstBase] };
}

function renamer(rename: [string, string] | undefined): ((name: string) => string) | undefined {
  if (!rename) return undefined;
  const [from, to] = rename;
  // The root's entries are "/", "/bin", ...: every name gets the new base in front.
  if (from === '/') return (name) => to + name;
  return (name) => (name === from || name.startsWith(`${from}/`) ? to + name.slice(from.length) : name);
}

async function statPath(ctx: CliContext, container: string, path: string): Promise<PathStat | undefined> {
  try {
    const res = await ctx.client.raw('HEAD', `/containers/${encodeURIComponent(container)}/archive`, { query: { path } });
    res.resume();
    const h = res.headers['x-docker-container-path-stat'];
    return h ? (JSON.parse(Buffer.from(h, 'base64').toString()) as PathStat) : undefined;
  } catch (err) {
    if (err instanceof ApiError) return undefined;
    throw err;
  }
}

/** Counts what passes, for docker's "Successfully copied" line. */
async function* counted(src: AsyncIterable<Buffer>, box: { n: number }): AsyncGenerator<Buffer> {
  for await (const c of src) {
    box.n += c.length;
    yield c;
  }
}

async function copyFromContainer(ctx: CliContext, container: string, srcPathIn: string, dstPathIn: string, follow: boolean, quiet: boolean): Promise<void> {
  let srcPath = srcPathIn;
  const dstPath = dstPathIn === '-' ? '-' : resolveLocalPath(dstPathIn);
  if (dstPath !== '-') {
    const dir = posix.dirname(goClean(dstPath));
    try {
      await stat(dir);
    } catch {
      throw new CliError(`invalid output path: directory ${JSON.stringify(dir)} does not exist`, 1);
    }
  }
  let rebase = '';
  if (follow) {
    const st = await statPath(ctx, container, srcPath);
    if (st && (st.mode & MODE_SYMLINK) !== 0) {
      let target = st.linkTarget;
      if (!target.startsWith('/')) target = posix.join(splitPathDirEntry(srcPath)[0], target);
      [srcPath, rebase] = rebaseName(srcPath, target);
    }
  }
  const res = await ctx.client.raw('GET', `/containers/${encodeURIComponent(container)}/archive`, { query: { path: srcPath } });
  const header = res.headers['x-docker-container-path-stat'];
  const st = header ? (JSON.parse(Buffer.from(header, 'base64').toString()) as PathStat) : undefined;
  if (dstPath === '-') {
    await pipeline(res, process.stdout);
    return;
  }
  const src: CopyInfo = { path: srcPath, exists: true, isDir: st ? (st.mode & MODE_DIR) !== 0 : false, rebaseName: rebase };
  const dst = await localDestination(dstPath);
  const { dir, rename } = prepareCopy(src, dst);
  const fs = await ScopedFs.open('/');
  const box = { n: 0 };
  try {
    const loc = await fs.resolve(dir, { followFinal: true });
    if (!loc.dir) throw new CliError(`${dir}: not a directory`, 1);
    await unpackInto(fs, loc.dir, counted(res, box), { noOverwriteDirNonDir: true, owner: 'none', refuseDevices: false, rename: renamer(rename) });
  } finally {
    await fs.close();
  }
  if (!quiet) ctx.err.write(`Successfully copied ${humanSize(box.n)} to ${dstPathIn}\n`);
}

async function copyToContainer(ctx: CliContext, container: string, srcPathIn: string, dstPathIn: string, follow: boolean, quiet: boolean, archive: boolean): Promise<void> {
  const srcPath = srcPathIn === '-' ? '-' : resolveLocalPath(srcPathIn);
  const dst: CopyInfo = { path: dstPathIn, exists: false, isDir: false, rebaseName: '' };
  let dstStat = await statPath(ctx, container, dstPathIn);
  if (dstStat && (dstStat.mode & MODE_SYMLINK) !== 0) {
    let target = dstStat.linkTarget;
    if (!target.startsWith('/')) target = posix.join(splitPathDirEntry(dstPathIn)[0], target);
    dst.path = target;
    dstStat = await statPath(ctx, container, target);
  }
  if (dstStat && (dstStat.mode & MODE_DIR) === 0 && (dstStat.mode & MODE_IRREGULAR) !== 0) {
    throw new CliError(`destination "${container}:${dstPathIn}" must be a directory or a regular file`, 1);
  }
  if (dstStat) {
    dst.exists = true;
    dst.isDir = (dstStat.mode & MODE_DIR) !== 0;
  }
  const query = { path: '', noOverwriteDirNonDir: true, copyUIDGID: archive || undefined };
  const put = (path: string, body: NodeJS.ReadableStream) =>
    ctx.client.raw('PUT', `/containers/${encodeURIComponent(container)}/archive`, { query: { ...query, path }, headers: { 'Content-Type': 'application/x-tar' }, stream: body }).then((r) => r.resume());
  if (srcPath === '-') {
    if (!dst.isDir) throw new CliError(`destination "${container}:${dstPathIn}" must be a directory`, 1);
    await put(dst.path, process.stdin);
    return;
  }
  const src = await localSource(srcPath, follow);
  const { dir, rename } = prepareCopy(src, dst);
  const topName = rename ? rename[1] : src.rebaseName || splitPathDirEntry(src.path)[1];
  const fs = await ScopedFs.open('/');
  const box = { n: 0 };
  try {
    const loc = await fs.resolve(src.path);
    await put(dir, Readable.from(counted(packLocated(fs, loc, topName), box)));
  } finally {
    await fs.close();
  }
  if (!quiet) ctx.err.write(`Successfully copied ${humanSize(box.n)} to ${container}:${dstPathIn}\n`);
}

export const commands: Command[] = [
  {
    name: 'cp',
    use: 'berth cp [OPTIONS] CONTAINER:SRC_PATH DEST_PATH|-\n\tberth cp [OPTIONS] SRC_PATH|- CONTAINER:DEST_PATH',
    short: 'Copy files/folders between a container and the local filesystem',
    flags: [
      { name: 'archive', short: 'a', type: 'bool', description: 'Archive mode (copy all uid/gid information)' },
      { name: 'follow-link', short: 'L', type: 'bool', description: 'Always follow symbol link in SRC_PATH' },
      { name: 'quiet', short: 'q', type: 'bool', description: 'Suppress progress output during copy. Progress output is automatically suppressed if no terminal is attached' },
    ],
    minArgs: 2,
    maxArgs: 2,
    async run(ctx, f, args) {
      const [source, destination] = args as [string, string];
      if (source === '') throw new CliError('source can not be empty', 1);
      if (destination === '') throw new CliError('destination can not be empty', 1);
      const s = splitCpArg(source);
      const d = splitCpArg(destination);
      const quiet = f.bool('quiet') || !ctx.err.isTTY;
      if (s.container && d.container) throw new CliError('copying between containers is not supported', 1);
      if (s.container) return copyFromContainer(ctx, s.container, s.path, d.path, f.bool('follow-link'), quiet);
      if (d.container) return copyToContainer(ctx, d.container, s.path, d.path, f.bool('follow-link'), quiet, f.bool('archive'));
      throw new CliError('must specify at least one container source', 1);
    },
  },
];
