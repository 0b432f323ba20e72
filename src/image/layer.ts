/**
 * Image layers on disk: producing a layer tar from an overlayfs upper
 * directory, archiving a plain tree, and decompressing layer streams.
 * Applying a layer tar into a fresh snapshot directory is layer-extract.ts
 * (main thread), layer-worker.ts and layer-applier.ts (worker thread).
 */
import { spawn } from 'node:child_process';
import { lstat, readdir, readlink } from 'node:fs/promises';
import { join, resolve } from 'node:path';
import { Readable, pipeline } from 'node:stream';
import { createGunzip, createZstdDecompress } from 'node:zlib';
import { BerthError, invalid, isErrno, systemError } from '../util/errors.ts';
import { encodeEntry, TAR_TRAILER } from '../util/tar.ts';
import type { ByteSource, TarHeaderInput } from '../util/tar.ts';
import { isOverlayXattr, OPAQUE_MARKER, OPAQUE_XATTR, unquoteDumpPath, WHITEOUT_PREFIX } from './layer-format.ts';

// Applying a layer runs in a worker thread; see layer-extract.ts.
export { applyLayer } from './layer-extract.ts';
export type { ApplyLayerOptions } from './layer-extract.ts';

/**
 * Output chunk of the gzip/zstd decoders. Each chunk is a round trip between
 * the thread pool and the main thread, and the decoder waits for the main
 * thread between chunks: large chunks let it run ahead.
 */
const DECODE_CHUNK = 512 * 1024;

function runFile(cmd: string, args: string[], input?: string | Buffer): Promise<{ code: number; stdout: Buffer; stderr: string }> {
  return new Promise((resolve, reject) => {
    const child = spawn(cmd, args, { stdio: ['pipe', 'pipe', 'pipe'] });
    const out: Buffer[] = [];
    const err: Buffer[] = [];
    child.stdout.on('data', (d: Buffer) => out.push(d));
    child.stderr.on('data', (d: Buffer) => err.push(d));
    child.on('error', reject);
    child.on('close', (code) => resolve({ code: code ?? 1, stdout: Buffer.concat(out), stderr: Buffer.concat(err).toString() }));
    child.stdin.on('error', () => {});
    child.stdin.end(input ?? '');
  });
}

// ---------------------------------------------------------------------------
// Producing tars from directories

/** Linux's dev_t layout: the major in bits 8-19 and 32-63, the minor in bits 0-7 and 20-31 (and up). */
function splitDev(dev: bigint): { major: number; minor: number } {
  const major = ((dev >> 8n) & 0xfffn) | ((dev >> 32n) & ~0xfffn);
  const minor = (dev & 0xffn) | ((dev >> 12n) & 0xffffff00n);
  return { major: Number(major), minor: Number(minor) };
}

/**
 * Reads all extended attributes below `dir` with a single getfattr run.
 * Returns a map from path relative to `dir` ('' for dir itself).
 */
async function readXattrs(dir: string, required: boolean): Promise<Map<string, Record<string, Buffer>>> {
  const out = new Map<string, Record<string, Buffer>>();
  // getfattr names files by extending the path it was given, so give it the
  // same canonical form the names are matched against below.
  const top = resolve(dir);
  let r: { code: number; stdout: Buffer; stderr: string };
  try {
    r = await runFile('getfattr', ['-R', '-h', '-d', '-m', '-', '-e', 'base64', '--absolute-names', '--', top]);
  } catch (err) {
    if (isErrno(err, 'ENOENT')) {
      if (required) throw systemError('getfattr not found: install the attr package', err);
      return out;
    }
    throw err;
  }
  // A file that vanished mid-walk makes getfattr complain but the rest is good.
  if (r.code !== 0 && r.stdout.length === 0 && r.stderr.trim() !== '') {
    throw systemError(`getfattr ${dir}: ${r.stderr.trim()}`);
  }
  const under = top.endsWith('/') ? top : `${top}/`;
  let current: Record<string, Buffer> | null = null;
  for (const line of r.stdout.toString('utf8').split('\n')) {
    if (line.startsWith('# file: ')) {
      const path = unquoteDumpPath(line.slice('# file: '.length));
      let rel: string | null = null;
      if (path === top) rel = '';
      else if (path.startsWith(under)) rel = path.slice(under.length);
      current = rel === null ? null : {};
      if (current && rel !== null) out.set(rel, current);
      continue;
    }
    if (!current || line === '') continue;
    const eq = line.indexOf('=');
    const key = eq < 0 ? line : line.slice(0, eq);
    const raw = eq < 0 ? '' : line.slice(eq + 1);
    let value: Buffer;
    if (raw.startsWith('0s')) value = Buffer.from(raw.slice(2), 'base64');
    else if (raw.startsWith('0x')) value = Buffer.from(raw.slice(2), 'hex');
    else if (raw.startsWith('"') && raw.endsWith('"')) value = Buffer.from(unquoteDumpPath(raw.slice(1, -1)));
    else value = Buffer.from(raw);
    current[key] = value;
  }
  return out;
}

/** Attributes worth carrying in an image: not overlayfs internals, not the host's labels or ACLs. */
function keepXattr(name: string): boolean {
  if (isOverlayXattr(name)) return false;
  if (name === 'security.selinux') return false;
  if (name.startsWith('system.')) return false;
  return true;
}

interface WalkOptions {
  /** Treat `dir` as an overlayfs upper directory: emit whiteouts in layer form. */
  overlayUpper: boolean;
}

async function* walkTree(dir: string, opts: WalkOptions): AsyncGenerator<Buffer> {
  const allXattrs = await readXattrs(dir, opts.overlayUpper);
  const links = new Map<string, string>();

  const xattrsOf = (rel: string): Record<string, Buffer> | undefined => {
    const all = allXattrs.get(rel);
    if (!all) return undefined;
    const kept: Record<string, Buffer> = {};
    let any = false;
    for (const [k, v] of Object.entries(all)) {
      if (keepXattr(k)) {
        kept[k] = v;
        any = true;
      }
    }
    return any ? kept : undefined;
  };

  async function* visit(absDir: string, relDir: string): AsyncGenerator<Buffer> {
    let names: string[];
    try {
      names = await readdir(absDir);
    } catch (err) {
      // A directory removed while we walk (a running container) is simply gone.
      if (isErrno(err, 'ENOENT') || isErrno(err, 'ENOTDIR')) return;
      throw err;
    }
    names.sort((a, b) => (a < b ? -1 : a > b ? 1 : 0));
    for (const name of names) {
      const abs = join(absDir, name);
      const rel = relDir ? `${relDir}/${name}` : name;
      const st = await lstat(abs, { bigint: true }).catch((err: unknown) => {
        if (isErrno(err, 'ENOENT')) return null;
        throw err;
      });
      if (!st) continue;
      const base: TarHeaderInput = {
        name: rel,
        mode: Number(st.mode) & 0o7777,
        uid: Number(st.uid),
        gid: Number(st.gid),
        mtime: Number(st.mtimeMs),
      };
      const xattrs = xattrsOf(rel);
      if (xattrs) base.xattrs = xattrs;

      if (st.isCharacterDevice() && st.rdev === 0n && opts.overlayUpper) {
        const dirPart = relDir ? `${relDir}/` : '';
        yield* encodeEntry({ name: `${dirPart}${WHITEOUT_PREFIX}${name}`, type: 'file', mode: 0o600, uid: base.uid, gid: base.gid, mtime: base.mtime, size: 0 });
        continue;
      }
      if (st.isDirectory()) {
        yield* encodeEntry({ ...base, type: 'directory' });
        if (opts.overlayUpper && allXattrs.get(rel)?.[OPAQUE_XATTR]?.toString() === 'y') {
          yield* encodeEntry({ name: `${rel}/${OPAQUE_MARKER}`, type: 'file', mode: 0o600, uid: base.uid, gid: base.gid, mtime: base.mtime, size: 0 });
        }
        yield* visit(abs, rel);
        continue;
      }
      if (st.nlink > 1n) {
        const key = `${st.dev}:${st.ino}`;
        const first = links.get(key);
        if (first !== undefined) {
          yield* encodeEntry({ ...base, type: 'hardlink', linkname: first });
          continue;
        }
        links.set(key, rel);
      }
      if (st.isFile()) {
        yield* encodeEntry({ ...base, type: 'file', size: Number(st.size) }, abs);
      } else if (st.isSymbolicLink()) {
        yield* encodeEntry({ ...base, type: 'symlink', linkname: await readlink(abs) });
      } else if (st.isFIFO()) {
        yield* encodeEntry({ ...base, type: 'fifo' });
      } else if (st.isCharacterDevice() || st.isBlockDevice()) {
        const { major, minor } = splitDev(st.rdev);
        yield* encodeEntry({ ...base, type: st.isCharacterDevice() ? 'char' : 'block', devmajor: major, devminor: minor });
      }
      // Sockets have no tar form; like tar, leave them out.
    }
  }

  yield* visit(dir, '');
  yield TAR_TRAILER;
}

/**
 * A layer tar from an overlayfs upper directory: whiteout devices become
 * `.wh.<name>` entries and opaque directories get a `.wh..wh..opq` entry.
 * Entries come in name order, parents first, so the output is reproducible.
 */
export function diffLayer(upper: string): AsyncGenerator<Buffer> {
  return walkTree(upper, { overlayUpper: true });
}

/** A plain tar of a whole directory tree (export, save of a flattened rootfs). */
export function tarTree(dir: string): AsyncGenerator<Buffer> {
  return walkTree(dir, { overlayUpper: false });
}

// ---------------------------------------------------------------------------
// Compression

/**
 * Decompresses a layer or archive stream, recognising gzip and zstd by their
 * magic numbers; anything else passes through untouched as a plain tar.
 */
export async function* decompressStream(input: ByteSource): AsyncGenerator<Buffer> {
  const it = (input as AsyncIterable<Buffer | Uint8Array | string>)[Symbol.asyncIterator]();
  const head: Buffer[] = [];
  let headLen = 0;
  let done = false;
  try {
    while (headLen < 4) {
      const r = await it.next();
      if (r.done) {
        done = true;
        break;
      }
      const b = typeof r.value === 'string' ? Buffer.from(r.value) : Buffer.from(r.value.buffer, r.value.byteOffset, r.value.byteLength);
      head.push(b);
      headLen += b.length;
    }
  } catch (err) {
    await it.return?.();
    throw err;
  }
  const first = Buffer.concat(head);
  let sourceError: unknown = undefined;
  async function* all(): AsyncGenerator<Buffer> {
    try {
      if (first.length > 0) yield first;
      if (done) return;
      for (;;) {
        const r = await it.next();
        if (r.done) return;
        yield typeof r.value === 'string' ? Buffer.from(r.value) : Buffer.from(r.value.buffer, r.value.byteOffset, r.value.byteLength);
      }
    } catch (err) {
      sourceError = err;
      throw err;
    } finally {
      await it.return?.();
    }
  }
  let decoder: NodeJS.ReadWriteStream | null = null;
  let format = '';
  if (first.length >= 2 && first[0] === 0x1f && first[1] === 0x8b) {
    decoder = createGunzip({ chunkSize: DECODE_CHUNK });
    format = 'gzip';
  } else if (first.length >= 4 && first.readUInt32LE(0) === 0xfd2fb528) {
    decoder = createZstdDecompress({ chunkSize: DECODE_CHUNK });
    format = 'zstd';
  }
  if (!decoder) {
    yield* all();
    return;
  }
  const d = decoder;
  pipeline(Readable.from(all()), d, () => {
    // Errors surface through the iteration of `d` below.
  });
  try {
    for await (const chunk of d) yield chunk as Buffer;
  } catch (err) {
    // Failures of the source are the source's business; a decoder failure
    // means the data itself is corrupt.
    if (err === sourceError || err instanceof BerthError) throw err;
    throw invalid(`corrupt ${format} stream: ${(err as Error).message ?? String(err)}`);
  }
}
