import { join } from 'node:path';
import { readdir, unlink } from 'node:fs/promises';
import type { ContentStore } from './content-store.ts';
import { sha256Digest } from './content-store.ts';
import type { LayerStore } from './layer-store.ts';
import { chainIds } from './layer-store.ts';
import type { ImageConfig, ImageRecord } from './types.ts';
import { parseReference, refString, withDefaultTag, familiarString } from './reference.ts';
import type { Reference } from './reference.ts';
import { ensureDir, readJson, writeJsonAtomic } from '../util/fsutil.ts';
import { conflict, invalid, isErrno, notFound } from '../util/errors.ts';
import type { BerthError } from '../util/errors.ts';

/**
 * The error for a name no image answers to, worded as docker words it: the
 * name with its implied `latest` tag, a full ID as a digest. A name that is
 * no reference at all is a bad parameter, not a missing image.
 */
export function noSuchImage(name: string): BerthError {
  const hex = name.startsWith('sha256:') ? name.slice(7) : name;
  if (/^[a-f0-9]{64}$/.test(hex)) return notFound(`No such image: sha256:${hex}`);
  let ref: Reference;
  try {
    ref = parseReference(name);
  } catch (err) {
    return invalid((err as Error).message);
  }
  return notFound(`No such image: ${familiarString(ref.tag || ref.digest ? ref : withDefaultTag(ref))}`);
}

export interface ResolvedImage {
  record: ImageRecord;
  config: ImageConfig;
}

/**
 * Image records by ID (the sha256 of the config), and the references (tags
 * and digests) that point at them. The reference map is one file rewritten
 * atomically, so a tag moves from one image to another in a single step.
 */
export class ImageStore {
  private readonly dir: string;
  private readonly refsPath: string;
  private readonly records = new Map<string, ImageRecord>();
  private readonly configs = new Map<string, ImageConfig>();
  /** Fully qualified reference (`docker.io/library/busybox:latest` or `…@sha256:…`) → image ID. */
  private refs = new Map<string, string>();
  private content: ContentStore;
  private layers: LayerStore;

  constructor(dataRoot: string, content: ContentStore, layers: LayerStore) {
    this.dir = join(dataRoot, 'images');
    this.refsPath = join(dataRoot, 'images', 'references.json');
    this.content = content;
    this.layers = layers;
  }

  async init(): Promise<void> {
    await ensureDir(this.dir);
    for (const f of await readdir(this.dir)) {
      if (!/^[a-f0-9]{64}\.json$/.test(f)) continue;
      const rec = await readJson<ImageRecord>(join(this.dir, f));
      if (!rec) continue;
      try {
        this.configs.set(rec.id, JSON.parse((await this.content.read(rec.id)).toString()) as ImageConfig);
        this.records.set(rec.id, rec);
      } catch {
        // A record whose config blob is gone cannot be used: forget it.
        await unlink(join(this.dir, f)).catch(() => undefined);
      }
    }
    const refs = (await readJson<Record<string, string>>(this.refsPath)) ?? {};
    for (const [r, id] of Object.entries(refs)) if (this.records.has(id)) this.refs.set(r, id);
  }

  private recordPath(id: string): string {
    return join(this.dir, `${id.replace(/^sha256:/, '')}.json`);
  }

  private async saveRefs(): Promise<void> {
    await writeJsonAtomic(this.refsPath, Object.fromEntries(this.refs));
  }

  /**
   * Record an image from its config. The layers named by the config must
   * already be in the layer store.
   */
  async add(configBytes: Buffer, extra: Partial<Omit<ImageRecord, 'id' | 'loadedAt'>> = {}): Promise<ImageRecord> {
    let config: ImageConfig;
    try {
      config = JSON.parse(configBytes.toString()) as ImageConfig;
    } catch {
      throw invalid('invalid image config: not JSON');
    }
    if (!config.rootfs || !Array.isArray(config.rootfs.diff_ids)) throw invalid('invalid image config: no rootfs.diff_ids');
    // The same image again (a fully cached build) changes nothing: no disk work.
    const known = this.records.get(sha256Digest(configBytes));
    if (known && Object.entries(extra).every(([k, v]) => known[k as keyof ImageRecord] === v)) return known;
    for (const chain of chainIds(config.rootfs.diff_ids)) {
      if (!(await this.layers.has(chain))) throw invalid(`image layer ${chain} is missing`);
    }
    const { digest } = await this.content.putBytes(configBytes);
    const existing = this.records.get(digest);
    const rec: ImageRecord = { ...existing, ...extra, id: digest, loadedAt: existing?.loadedAt ?? new Date().toISOString() };
    await writeJsonAtomic(this.recordPath(digest), rec);
    this.records.set(digest, rec);
    this.configs.set(digest, config);
    return rec;
  }

  async update(id: string, patch: Partial<ImageRecord>): Promise<void> {
    const rec = this.records.get(id);
    if (!rec) throw notFound(`No such image: ${id}`);
    Object.assign(rec, patch);
    await writeJsonAtomic(this.recordPath(id), rec);
  }

  get(id: string): ResolvedImage | undefined {
    const record = this.records.get(id);
    const config = this.configs.get(id);
    return record && config ? { record, config } : undefined;
  }

  all(): ResolvedImage[] {
    return [...this.records.keys()].map((id) => this.get(id)!);
  }

  /** Every reference pointing at the image, fully qualified. */
  refsOf(id: string): string[] {
    return [...this.refs].filter(([, v]) => v === id).map(([k]) => k).sort();
  }

  tagsOf(id: string): string[] {
    return this.refsOf(id).filter((r) => !r.includes('@')).map((r) => familiarString(parseReference(r)));
  }

  digestsOf(id: string): string[] {
    return this.refsOf(id).filter((r) => r.includes('@')).map((r) => familiarString(parseReference(r)));
  }

  /**
   * Find an image the way docker does: a full or short ID, a name with an
   * implied `latest` tag, or a name with a digest.
   */
  resolve(name: string): ResolvedImage | undefined {
    const hex = name.replace(/^sha256:/, '');
    if (/^[a-f0-9]{64}$/.test(hex)) {
      const r = this.get(`sha256:${hex}`);
      if (r) return r;
    }
    let ref: Reference | undefined;
    try {
      ref = withDefaultTag(parseReference(name));
    } catch {
      ref = undefined;
    }
    if (ref) {
      const id = this.refs.get(refString(ref));
      if (id) return this.get(id);
      if (ref.digest) {
        // A digest reference also matches the image's own ID or any repo digest of the repository.
        for (const [r, v] of this.refs) if (r.endsWith(`@${ref.digest}`) && r.startsWith(refString({ ...ref, tag: undefined, digest: undefined }))) return this.get(v);
      }
    }
    if (/^(sha256:)?[a-f0-9]{1,64}$/.test(name)) {
      const matches = [...this.records.keys()].filter((id) => id.slice(7).startsWith(hex));
      if (matches.length === 1) return this.get(matches[0]!);
      if (matches.length > 1) throw invalid(`image ID prefix ${name} is ambiguous`);
    }
    return undefined;
  }

  mustResolve(name: string): ResolvedImage {
    const r = this.resolve(name);
    if (!r) throw noSuchImage(name);
    return r;
  }

  /** Point a reference at an image; returns the image it pointed at before, if another. */
  async tag(id: string, ref: Reference): Promise<string | undefined> {
    if (!this.records.has(id)) throw notFound(`No such image: ${id}`);
    const key = refString(ref.digest ? ref : withDefaultTag(ref));
    const prev = this.refs.get(key);
    if (prev !== id) {
      this.refs.set(key, id);
      await this.saveRefs();
    }
    if (!ref.digest) {
      const lastTagTime = new Date().toISOString();
      if (prev !== id) await this.update(id, { lastTagTime });
      else {
        // Docker records the time of every tagging, even one that changes
        // nothing (a rebuild). Only that time is at stake then: it is
        // visible at once and written to disk just after, off the caller's path.
        this.records.get(id)!.lastTagTime = lastTagTime;
        this.persistSoon(id);
      }
    }
    return prev !== id ? prev : undefined;
  }

  private readonly unsaved = new Set<string>();

  /** Write an image's record on the next turn of the event loop (atomically, without fsync), once however often asked. */
  private persistSoon(id: string): void {
    if (this.unsaved.has(id)) return;
    this.unsaved.add(id);
    setImmediate(() => {
      this.unsaved.delete(id);
      const rec = this.records.get(id);
      // Removed meanwhile: nothing to write. The write itself is synchronous, so it cannot race a removal.
      if (!rec) return;
      writeJsonAtomic(this.recordPath(id), rec, { durable: false }).catch(() => undefined);
    });
  }

  async untag(ref: Reference): Promise<string | undefined> {
    const key = refString(ref.digest ? ref : withDefaultTag(ref));
    const id = this.refs.get(key);
    if (!id) return undefined;
    this.refs.delete(key);
    await this.saveRefs();
    return id;
  }

  hasRef(ref: Reference): boolean {
    return this.refs.has(refString(ref.digest ? ref : withDefaultTag(ref)));
  }

  /** Drop an image record (its references must be gone) and layers nobody else uses. */
  async delete(id: string): Promise<string[]> {
    if (this.refsOf(id).length > 0) throw conflict(`image ${id} is still referenced`);
    const rec = this.records.get(id);
    if (!rec) throw notFound(`No such image: ${id}`);
    const config = this.configs.get(id)!;
    this.records.delete(id);
    this.configs.delete(id);
    try {
      await unlink(this.recordPath(id));
    } catch (err) {
      if (!isErrno(err, 'ENOENT')) throw err;
    }
    await this.content.delete(id);
    const deleted: string[] = [];
    const used = new Set<string>();
    for (const { config: c } of this.all()) for (const ch of chainIds(c.rootfs.diff_ids)) used.add(ch);
    for (const ch of chainIds(config.rootfs.diff_ids)) {
      if (!used.has(ch)) {
        await this.layers.remove(ch);
        deleted.push(ch);
      }
    }
    return deleted;
  }

  /** Images whose parent is the given one (docker refuses to delete those untagged parents). */
  children(id: string): string[] {
    return [...this.records.values()].filter((r) => r.parent === id).map((r) => r.id);
  }

  /** Uncompressed size of all the image's layers. */
  async size(id: string): Promise<number> {
    const img = this.get(id);
    if (!img) return 0;
    let total = 0;
    for (const ch of chainIds(img.config.rootfs.diff_ids)) total += (await this.layers.get(ch))?.size ?? 0;
    return total;
  }

  configDigestOf(bytes: Buffer): string {
    return sha256Digest(bytes);
  }
}
