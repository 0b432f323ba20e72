/**
 * The build cache: for each step, the image config it produced, filed under a
 * key that hashes the parent step's key, the instruction as it will run, the
 * build args it sees and the content of the files it copies. Entries are
 * small JSON files under <data-root>/build/cache, so the cache survives
 * restarts; an entry whose layers are gone is a miss. Entries are written
 * without fsync (a torn or lost entry after a crash is only a miss: the step
 * runs again) and the recently used ones are kept in memory, so a cached
 * step costs no I/O beyond checking that its layers are there. Cache mounts
 * (RUN --mount=type=cache) live beside it and are pruned with it.
 */
import { createHash } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { readdir, stat } from 'node:fs/promises';
import { join } from 'node:path';
import type { LayerStore } from '../image/layer-store.ts';
import { chainIds } from '../image/layer-store.ts';
import type { ImageConfig } from '../image/types.ts';
import type { ImageStore } from '../image/image-store.ts';
import type { BuildCacheUsage } from '../engine/df.ts';
import { ensureDir, readJson, removeTree, writeJsonAtomic } from '../util/fsutil.ts';
import { isErrno } from '../util/errors.ts';

/** Entries kept in memory (a few KB each). */
const MEMO_ENTRIES = 4096;

export function stepKey(parent: string, parts: unknown[]): string {
  return createHash('sha256').update(parent).update('\0').update(JSON.stringify(parts)).digest('hex');
}

interface Entry {
  config: ImageConfig;
  createdAt: string;
}

export class BuildCache {
  private readonly dir: string;
  readonly mountsDir: string;
  private readonly layers: LayerStore;
  private readonly memo = new Map<string, Entry>();

  constructor(dataRoot: string, layers: LayerStore) {
    this.dir = join(dataRoot, 'build', 'cache');
    this.mountsDir = join(dataRoot, 'build', 'mounts');
    this.layers = layers;
  }

  async init(): Promise<void> {
    await ensureDir(this.dir, 0o700);
    await ensureDir(this.mountsDir, 0o700);
  }

  async get(key: string): Promise<ImageConfig | undefined> {
    const e = this.memo.get(key) ?? this.read(key);
    if (!e) return undefined;
    this.remember(key, e);
    // Every layer must still be there: removing an image can take lower layers a cached step stands on.
    if (!chainIds(e.config.rootfs.diff_ids).every((c) => this.layers.present(c))) return undefined;
    return structuredClone(e.config);
  }

  /** An entry from disk; a small file read synchronously (cheaper than the thread pool's round trips). */
  private read(key: string): Entry | undefined {
    let text: string;
    try {
      text = readFileSync(join(this.dir, `${key}.json`), 'utf8');
    } catch (err) {
      if (isErrno(err, 'ENOENT')) return undefined;
      throw err;
    }
    try {
      return JSON.parse(text) as Entry;
    } catch {
      // Torn by a crash: a miss, rewritten when the step runs.
      return undefined;
    }
  }

  /** read() for walks over every entry (df, prune): through the thread pool, so thousands of them do not stall the daemon. */
  private async readAsync(key: string): Promise<Entry | undefined> {
    return readJson<Entry>(join(this.dir, `${key}.json`)).catch((err: unknown) => {
      // Torn by a crash: a miss, as in read().
      if (err instanceof SyntaxError) return undefined;
      throw err;
    });
  }

  private remember(key: string, e: Entry): void {
    this.memo.delete(key);
    this.memo.set(key, e);
    if (this.memo.size > MEMO_ENTRIES) this.memo.delete(this.memo.keys().next().value!);
  }

  async put(key: string, config: ImageConfig): Promise<void> {
    const e: Entry = { config: structuredClone(config), createdAt: new Date().toISOString() };
    await writeJsonAtomic(join(this.dir, `${key}.json`), e, { durable: false });
    this.remember(key, e);
  }

  /** The directory of a cache mount, made on first use. */
  async mountDir(id: string): Promise<string> {
    const d = join(this.mountsDir, createHash('sha256').update(id).digest('hex'));
    await ensureDir(d, 0o755);
    return d;
  }

  /** The cache as `system df` lists it: one record per step that made a layer, and each cache mount. */
  async usage(images: ImageStore): Promise<BuildCacheUsage[]> {
    const used = new Set<string>();
    for (const { config } of images.all()) for (const c of chainIds(config.rootfs.diff_ids)) used.add(c);
    const out: BuildCacheUsage[] = [];
    for (const f of await readdir(this.dir)) {
      if (!f.endsWith('.json')) continue;
      const e = await this.readAsync(f.slice(0, -5));
      const last = e?.config.history?.[e.config.history.length - 1];
      if (!e || !last || last.empty_layer) continue;
      const chains = chainIds(e.config.rootfs.diff_ids);
      const top = chains[chains.length - 1];
      const meta = top ? await this.layers.get(top) : undefined;
      if (!meta) continue;
      out.push({
        ID: f.slice(0, 25), Parents: null, Type: 'regular', Description: last.created_by ?? '', InUse: false,
        Shared: used.has(top!), Size: meta.size, CreatedAt: e.createdAt, LastUsedAt: null, UsageCount: 0,
      });
    }
    for (const m of await readdir(this.mountsDir)) {
      const st = await stat(join(this.mountsDir, m));
      out.push({
        ID: m.slice(0, 25), Parents: null, Type: 'exec.cachemount', Description: 'cached mount', InUse: false,
        Shared: false, Size: await dirSize(join(this.mountsDir, m)), CreatedAt: st.birthtime.toISOString(), LastUsedAt: null, UsageCount: 0,
      });
    }
    return out;
  }

  /**
   * Forget every entry and cache mount, and remove the layers only the cache
   * used. Returns the bytes reclaimed and the entries dropped.
   */
  async prune(images: ImageStore): Promise<{ deleted: string[]; reclaimed: number }> {
    const deleted: string[] = [];
    let reclaimed = 0;
    const used = new Set<string>();
    for (const { config } of images.all()) for (const c of chainIds(config.rootfs.diff_ids)) used.add(c);
    const candidates = new Set<string>();
    this.memo.clear();
    for (const f of await readdir(this.dir)) {
      if (!f.endsWith('.json')) continue;
      const e = await this.readAsync(f.slice(0, -5));
      if (e) for (const c of chainIds(e.config.rootfs.diff_ids)) candidates.add(c);
      await removeTree(join(this.dir, f));
      deleted.push(f.slice(0, -5));
    }
    for (const c of candidates) {
      if (used.has(c)) continue;
      const meta = await this.layers.get(c);
      if (!meta) continue;
      reclaimed += meta.size;
      await this.layers.remove(c);
    }
    for (const m of await readdir(this.mountsDir)) {
      reclaimed += await dirSize(join(this.mountsDir, m));
      await removeTree(join(this.mountsDir, m));
      deleted.push(`mount:${m}`);
    }
    return { deleted, reclaimed };
  }
}

async function dirSize(dir: string): Promise<number> {
  let total = 0;
  for (const e of await readdir(dir, { withFileTypes: true, recursive: true })) {
    if (e.isFile()) total += (await stat(join(e.parentPath, e.name)).catch(() => ({ size: 0 }))).size;
  }
  return total;
}
