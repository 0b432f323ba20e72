import { createHash, randomBytes } from 'node:crypto';
import { existsSync } from 'node:fs';
import { readdir, rename, stat, mkdir } from 'node:fs/promises';
import { join } from 'node:path';
import { applyLayer, decompressStream, diffLayer } from './layer.ts';
import { ensureDir, readJson, removeTree, writeJsonAtomic } from '../util/fsutil.ts';
import { invalid, isErrno } from '../util/errors.ts';

export interface LayerMeta {
  chainId: string;
  diffId: string;
  parent: string | null;
  /** Bytes of the uncompressed layer tar. */
  size: number;
}

export function chainIdOf(parent: string | null, diffId: string): string {
  if (!parent) return diffId;
  return `sha256:${createHash('sha256').update(`${parent} ${diffId}`).digest('hex')}`;
}

/** Chain IDs of every prefix of a layer stack. */
export function chainIds(diffIds: string[]): string[] {
  const out: string[] = [];
  let parent: string | null = null;
  for (const d of diffIds) {
    parent = chainIdOf(parent, d);
    out.push(parent);
  }
  return out;
}

/**
 * Extracted layers, one directory per chain ID: each is an overlayfs lower
 * directory holding only that layer's changes. A layer is extracted into a
 * temporary directory and renamed into place once complete, so a crash leaves
 * no half-extracted layer under a real name. Layers are shared by every image
 * and container that stacks them.
 */
export class LayerStore {
  readonly root: string;
  private readonly inflight = new Map<string, Promise<LayerMeta>>();
  constructor(dataRoot: string) {
    this.root = join(dataRoot, 'layers');
  }

  async init(): Promise<void> {
    await ensureDir(this.root);
    for (const f of await readdir(this.root)) {
      if (f.startsWith('tmp-')) await removeTree(join(this.root, f));
    }
  }

  dir(chainId: string): string {
    return join(this.root, chainId.replace(/^sha256:/, ''));
  }

  diffDir(chainId: string): string {
    return join(this.dir(chainId), 'diff');
  }

  async get(chainId: string): Promise<LayerMeta | undefined> {
    return readJson<LayerMeta>(join(this.dir(chainId), 'meta.json'));
  }

  async has(chainId: string): Promise<boolean> {
    return (await this.get(chainId)) !== undefined;
  }

  /**
   * Extract a layer (compressed or not) on top of `parent`. When `diffId` is
   * known in advance it is verified; otherwise it is computed. Concurrent
   * requests for the same known layer share one extraction.
   */
  async add(parent: string | null, source: AsyncIterable<Buffer> | NodeJS.ReadableStream, diffId?: string): Promise<LayerMeta> {
    if (diffId) {
      const chainId = chainIdOf(parent, diffId);
      const existing = await this.get(chainId);
      if (existing) {
        // Nothing to extract, but the source must still be drained by its owner.
        return existing;
      }
      const running = this.inflight.get(chainId);
      if (running) return running;
      const p = this.extract(parent, source, diffId).finally(() => this.inflight.delete(chainId));
      this.inflight.set(chainId, p);
      return p;
    }
    return this.extract(parent, source, undefined);
  }

  private async extract(parent: string | null, source: AsyncIterable<Buffer> | NodeJS.ReadableStream, expectDiffId?: string): Promise<LayerMeta> {
    const tmp = join(this.root, `tmp-${randomBytes(8).toString('hex')}`);
    const diff = join(tmp, 'diff');
    await mkdir(diff, { recursive: true, mode: 0o755 });
    try {
      const hash = createHash('sha256');
      let size = 0;
      async function* hashed(): AsyncGenerator<Buffer> {
        for await (const chunk of decompressStream(source)) {
          hash.update(chunk);
          size += chunk.length;
          yield chunk;
        }
      }
      await applyLayer(diff, hashed());
      const diffId = `sha256:${hash.digest('hex')}`;
      if (expectDiffId && diffId !== expectDiffId) {
        throw invalid(`layer content does not match its diff ID: expected ${expectDiffId}, got ${diffId}`);
      }
      return await this.commit(tmp, { chainId: chainIdOf(parent, diffId), diffId, parent, size });
    } catch (err) {
      await removeTree(tmp);
      throw err;
    }
  }

  /**
   * Take a directory that already holds a layer in extracted form (an
   * overlay upper, or a staging directory on the same filesystem) as a new
   * layer on top of `parent`, without a tar round trip: its diff ID is the
   * hash of the tar `diffLayer` makes of it, which is also what an export
   * of the layer produces. The directory is moved; the caller loses it.
   */
  async adopt(parent: string | null, dir: string): Promise<LayerMeta> {
    const hash = createHash('sha256');
    let size = 0;
    for await (const chunk of diffLayer(dir)) {
      hash.update(chunk);
      size += chunk.length;
    }
    const diffId = `sha256:${hash.digest('hex')}`;
    const chainId = chainIdOf(parent, diffId);
    const existing = await this.get(chainId);
    if (existing) return existing;
    const tmp = join(this.root, `tmp-${randomBytes(8).toString('hex')}`);
    await mkdir(tmp, { mode: 0o755 });
    try {
      await rename(dir, join(tmp, 'diff'));
      return await this.commit(tmp, { chainId, diffId, parent, size });
    } catch (err) {
      await removeTree(tmp);
      throw err;
    }
  }

  /** Make a prepared layer directory (diff/ inside) visible under its chain ID, atomically. */
  private async commit(tmp: string, meta: LayerMeta): Promise<LayerMeta> {
    await writeJsonAtomic(join(tmp, 'meta.json'), meta);
    try {
      await rename(tmp, this.dir(meta.chainId));
    } catch (err) {
      // Someone else stored the same layer meanwhile: keep theirs.
      if (!isErrno(err, 'ENOTEMPTY') && !isErrno(err, 'EEXIST')) throw err;
      await removeTree(tmp);
    }
    return meta;
  }

  async remove(chainId: string): Promise<void> {
    const dir = this.dir(chainId);
    const trash = join(this.root, `tmp-${randomBytes(8).toString('hex')}`);
    try {
      await rename(dir, trash);
    } catch (err) {
      if (isErrno(err, 'ENOENT')) return;
      throw err;
    }
    await removeTree(trash);
  }

  async list(): Promise<string[]> {
    return (await readdir(this.root)).filter((f) => /^[a-f0-9]{64}$/.test(f)).map((f) => `sha256:${f}`);
  }

  /**
   * exists() without the thread pool: one stat(2) costs microseconds, a
   * round trip through libuv's pool far more (the build cache checks every
   * layer of every cached step).
   */
  present(chainId: string): boolean {
    return existsSync(this.diffDir(chainId));
  }

  async exists(chainId: string): Promise<boolean> {
    try {
      await stat(this.diffDir(chainId));
      return true;
    } catch {
      return false;
    }
  }
}
