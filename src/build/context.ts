/**
 * The build context as berthd receives it. The tar is read once: each
 * entry's metadata and content hash go into an in-memory tree (the layout
 * extracting the tar would give), and the bytes themselves into a spool
 * (memory, then a file once large). COPY/ADD cache keys, the Dockerfile and
 * .dockerignore come from the tree; the context is written out to a
 * directory only when a step actually needs its files (a COPY or ADD that
 * misses the cache, a RUN bind mount of the context), by applying the
 * spooled tar exactly as it arrived. A fully cached build never touches
 * disk for its context.
 */
import { createHash } from 'node:crypto';
import { createReadStream } from 'node:fs';
import { open, readFile, rm } from 'node:fs/promises';
import { join } from 'node:path';
import type { FileHandle } from 'node:fs/promises';
import { applyLayer, decompressStream } from '../image/layer.ts';
import { META_PREFIX, OPAQUE_MARKER, WHITEOUT_PREFIX } from '../image/layer-format.ts';
import { archivePathParts, packTar, readTar } from '../util/tar.ts';
import type { ByteSource, TarHeader } from '../util/tar.ts';
import { invalid } from '../util/errors.ts';
import { removeTree } from '../util/fsutil.ts';
import type { EntryInfo, SourceTree } from './copy.ts';

/** Bytes of context kept in memory before the spool moves to a file. */
const SPOOL_MEMORY = 32 << 20;
/**
 * Files up to this size keep their content at hand, for reading the
 * Dockerfile and .dockerignore without writing the context out: the names
 * the caller expects always, others (a symlinked Dockerfile's target) while
 * KEEP_TOTAL allows.
 */
const KEEP_CONTENT = 256 << 10;
const KEEP_TOTAL = 4 << 20;
/** Symlinks followed in one lookup before it is called a loop. */
const MAX_LINKS = 40;

/** `whiteout`: what extraction leaves for a `.wh.` entry (a 0/0 device, mode 0). */
type Kind = 'dir' | 'file' | 'symlink' | 'other' | 'whiteout';

/** One path of the context as extracting it would leave it. */
export class ContextEntry implements EntryInfo {
  readonly kind: Kind;
  mode: number;
  /** sha256 (hex) of a file's content. */
  readonly digest: string;
  readonly link: string;
  readonly children: Map<string, ContextEntry> | undefined;
  /** The content of a small file. */
  readonly content: Buffer | undefined;

  constructor(kind: Kind, mode: number, extra: { digest?: string; link?: string; content?: Buffer } = {}) {
    this.kind = kind;
    // lstat gives a symlink 0777 whatever the archive said.
    this.mode = kind === 'symlink' ? 0o777 : mode & 0o7777;
    this.digest = extra.digest ?? '';
    this.link = extra.link ?? '';
    this.content = extra.content;
    this.children = kind === 'dir' ? new Map() : undefined;
  }

  isDirectory(): boolean {
    return this.kind === 'dir';
  }

  isFile(): boolean {
    return this.kind === 'file';
  }

  isSymbolicLink(): boolean {
    return this.kind === 'symlink';
  }
}

/** The raw (decompressed) tar, kept to be applied if the context is needed on disk. */
class Spool {
  private readonly path: string;
  private chunks: Buffer[] = [];
  private size = 0;
  private fh: FileHandle | undefined;
  private spilled = false;

  private readonly limit: number;

  constructor(path: string, limit: number) {
    this.path = path;
    this.limit = limit;
  }

  async write(b: Buffer): Promise<void> {
    if (this.fh) {
      await this.fh.write(b);
      return;
    }
    this.chunks.push(b);
    this.size += b.length;
    if (this.size > this.limit) {
      this.fh = await open(this.path, 'wx', 0o600);
      this.spilled = true;
      for (const c of this.chunks) await this.fh.write(c);
      this.chunks = [];
    }
  }

  async close(): Promise<void> {
    await this.fh?.close();
    this.fh = undefined;
  }

  read(): AsyncIterable<Buffer> {
    if (this.spilled) return createReadStream(this.path);
    const chunks = this.chunks;
    return (async function* () {
      yield* chunks;
    })();
  }

  async remove(): Promise<void> {
    await this.close();
    this.chunks = [];
    if (this.spilled) await rm(this.path, { force: true });
  }
}


export class BuildContext implements SourceTree<ContextEntry> {
  /** The directory the context is written to when needed. */
  private readonly dir: string;
  private readonly spool: Spool;
  private readonly root = new ContextEntry('dir', 0o755);
  private written: Promise<string> | undefined;

  private constructor(dir: string, memory: number) {
    this.dir = dir;
    this.spool = new Spool(`${dir}.tar`, memory);
  }

  /**
   * Read a context tar (plain or compressed). Entries that extracting would
   * refuse (a path through a symlink, a device node, a name above the root)
   * fail here, with the same message. `dir` is where the context is written
   * if a step needs it; nothing is made there until then (nor at `dir`.tar
   * unless the context is larger than `memory` bytes). `wanted`: the files
   * that will be read (readFile) for sure.
   */
  static async receive(input: ByteSource, dir: string, opts: { wanted?: string[]; memory?: number } = {}): Promise<BuildContext> {
    const ctx = new BuildContext(dir, opts.memory ?? SPOOL_MEMORY);
    const wanted = new Set((opts.wanted ?? []).map((n) => n.split('/').filter((c) => c !== '' && c !== '.').join('/')));
    let kept = 0;
    try {
      const spool = ctx.spool;
      const teed = (async function* () {
        for await (const chunk of decompressStream(input)) {
          await spool.write(chunk);
          yield chunk;
        }
      })();
      for await (const { header, body } of readTar(teed)) {
        if (header.type !== 'file') {
          ctx.add(header);
          continue;
        }
        const h = createHash('sha256');
        const keep = header.size <= KEEP_CONTENT && (kept + header.size <= KEEP_TOTAL || wanted.has(archivePathParts(header.name).join('/')));
        if (keep) kept += header.size;
        const parts: Buffer[] = [];
        for await (const c of body) {
          h.update(c);
          if (keep) parts.push(c);
        }
        ctx.add(header, h.digest('hex'), keep ? Buffer.concat(parts) : undefined);
      }
      await spool.close();
      return ctx;
    } catch (err) {
      await ctx.dispose();
      throw err;
    }
  }

  /** Files made up on the spot (COPY's heredocs) as a context: hashed from memory, written out only if a step needs them. */
  static fromFiles(files: Array<{ name: string; content: string }>, dir: string): Promise<BuildContext> {
    const mtime = new Date();
    return BuildContext.receive(packTar(files.map((f) => ({
      header: { name: f.name, type: 'file' as const, mode: 0o644, size: Buffer.byteLength(f.content), mtime },
      body: Buffer.from(f.content),
    }))), dir);
  }

  /** Enter one tar entry into the tree, as extracting it over the earlier ones would. */
  private add(h: TarHeader, digest?: string, content?: Buffer): void {
    const parts = archivePathParts(h.name);
    const base = parts[parts.length - 1] ?? '';
    if (base.startsWith(WHITEOUT_PREFIX)) {
      // Extraction treats these as layer whiteouts; so the tree does.
      const dirParts = parts.slice(0, -1);
      if (base === OPAQUE_MARKER) {
        this.parentOf([...dirParts, 'x'], h.name, true);
        return;
      }
      if (base.startsWith(META_PREFIX)) return;
      const victim = base.slice(WHITEOUT_PREFIX.length);
      if (victim === '' || victim === '.' || victim === '..') throw invalid(`tar entry ${JSON.stringify(h.name)}: invalid whiteout`);
      const dir = this.parentOf([...dirParts, victim], h.name, true);
      if (!dir.children!.has(victim)) dir.children!.set(victim, new ContextEntry('whiteout', 0));
      return;
    }
    if (parts.length === 0) {
      if (h.type !== 'directory') throw invalid(`tar entry ${JSON.stringify(h.name)}: only a directory can stand for the layer root`);
      this.root.mode = h.mode & 0o7777;
      return;
    }
    const dir = this.parentOf(parts, h.name, true);
    const existing = dir.children!.get(base);
    let entry: ContextEntry;
    switch (h.type) {
      case 'directory':
        if (existing?.isDirectory()) {
          existing.mode = h.mode & 0o7777;
          return;
        }
        entry = new ContextEntry('dir', h.mode);
        break;
      case 'file':
        entry = new ContextEntry('file', h.mode, { digest: digest!, ...(content ? { content } : {}) });
        break;
      case 'symlink':
        if (h.linkname === '') throw invalid(`tar entry ${JSON.stringify(h.name)}: symlink without a target`);
        entry = new ContextEntry('symlink', 0o777, { link: h.linkname });
        break;
      case 'hardlink': {
        const target = archivePathParts(h.linkname, `hardlink ${JSON.stringify(h.name)} ->`);
        if (target.length === 0) throw invalid(`tar entry ${JSON.stringify(h.name)}: hardlink to the layer root`);
        const rel = parts.join('/');
        const trel = target.join('/');
        if (trel === rel || trel.startsWith(`${rel}/`)) throw invalid(`tar entry ${JSON.stringify(h.name)}: hardlink to itself or into the path it replaces`);
        const tdir = this.parentOf(target, h.name, false);
        const t = tdir.children!.get(target[target.length - 1]!);
        if (!t || t.kind === 'whiteout') throw invalid(`tar entry ${JSON.stringify(h.name)}: hardlink target ${JSON.stringify(h.linkname)} is not in this layer`);
        if (t.isDirectory()) throw invalid(`tar entry ${JSON.stringify(h.name)}: hardlink to a directory`);
        // The same inode: same content and metadata.
        entry = t;
        break;
      }
      case 'char':
      case 'block':
        if (h.type === 'char' && h.devmajor === 0 && h.devminor === 0) {
          if (!existing) dir.children!.set(base, new ContextEntry('whiteout', 0));
          return;
        }
        throw invalid(`tar entry ${JSON.stringify(h.name)}: device nodes are not allowed in image layers`);
      case 'fifo':
        entry = new ContextEntry('other', h.mode);
        break;
    }
    dir.children!.set(base, entry);
  }

  /** The directory holding `parts`' last component, made (as tar makes implied parents) when `create`. */
  private parentOf(parts: string[], entryName: string, create: boolean): ContextEntry {
    let cur = this.root;
    for (let i = 0; i < parts.length - 1; i++) {
      const name = parts[i]!;
      const rel = parts.slice(0, i + 1).join('/');
      const next = cur.children!.get(name);
      if (next?.isDirectory()) {
        cur = next;
        continue;
      }
      if (next?.isSymbolicLink()) throw invalid(`tar entry ${JSON.stringify(entryName)}: parent ${JSON.stringify(rel)} is a symlink; refusing to follow it`);
      if (!create) throw invalid(`tar entry ${JSON.stringify(entryName)}: ${JSON.stringify(rel)} is not a directory in this layer`);
      if (next && next.kind !== 'whiteout') throw invalid(`tar entry ${JSON.stringify(entryName)}: parent ${JSON.stringify(rel)} is not a directory`);
      const made = new ContextEntry('dir', 0o755);
      cur.children!.set(name, made);
      cur = made;
    }
    return cur;
  }

  /**
   * The entry at a path, symlinks on the way followed inside the context
   * (an absolute target starts at the context's root, `..` stops there);
   * the last one too when `follow`.
   */
  private lookup(rel: string, follow: boolean): ContextEntry | undefined {
    return this.resolve(rel, follow)?.entry;
  }

  private resolve(rel: string, follow: boolean): { entry: ContextEntry; path: string[] } | undefined {
    let pending = rel.split('/').filter((p) => p !== '' && p !== '.');
    let stack: ContextEntry[] = [this.root];
    let path: string[] = [];
    let links = 0;
    while (pending.length > 0) {
      const name = pending.shift()!;
      const cur = stack[stack.length - 1]!;
      if (name === '..') {
        if (stack.length > 1) {
          stack.pop();
          path.pop();
        }
        continue;
      }
      const next = cur.children?.get(name);
      if (!next) return undefined;
      if (next.isSymbolicLink() && (pending.length > 0 || follow)) {
        if (++links > MAX_LINKS) return undefined;
        const target = next.link.split('/').filter((p) => p !== '' && p !== '.');
        if (next.link.startsWith('/')) {
          stack = [this.root];
          path = [];
        }
        pending = [...target, ...pending];
        continue;
      }
      if (pending.length > 0 && !next.isDirectory()) return undefined;
      stack.push(next);
      path.push(name);
    }
    return { entry: stack[stack.length - 1]!, path };
  }

  async lstat(rel: string): Promise<ContextEntry | undefined> {
    return this.lookup(rel, false);
  }

  async readdir(rel: string): Promise<string[]> {
    return [...(this.lookup(rel, true)?.children?.keys() ?? [])];
  }

  async readlink(rel: string): Promise<string> {
    const e = this.lookup(rel, false);
    if (!e?.isSymbolicLink()) throw invalid(`readlink ${rel}: not a symlink`);
    return e.link;
  }

  async digest(rel: string): Promise<string> {
    const e = this.lookup(rel, false);
    if (!e?.isFile()) throw invalid(`${rel}: not a file in the build context`);
    return e.digest;
  }

  /** A file's content (symlinks followed); undefined when there is no such file. */
  async readFile(rel: string): Promise<Buffer | undefined> {
    const r = this.resolve(rel, true);
    if (!r?.entry.isFile()) return undefined;
    if (r.entry.content) return r.entry.content;
    // A large one is read from the context written out, at the path it resolved to here.
    return readFile(join(await this.directory(), ...r.path));
  }

  /** The context on disk, written on first use, exactly as the tar would extract. */
  directory(): Promise<string> {
    this.written ??= applyLayer(this.dir, this.spool.read()).then(() => this.dir);
    return this.written;
  }

  /** Remove whatever the context left on disk. */
  async dispose(): Promise<void> {
    await this.spool.remove();
    if (!this.written) return;
    await this.written.catch(() => undefined);
    await removeTree(this.dir);
  }
}
