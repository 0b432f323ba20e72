/**
 * Pulling one image (or every tag of a repository) from one registry
 * endpoint into the local stores.
 *
 * Each layer streams from the registry once: the bytes go into the content
 * store (which checks size and digest before the blob becomes visible) and,
 * decompressed on the fly, into the layer store (which checks the diff ID
 * before the layer becomes visible). Layers run in parallel, since each is
 * its own overlay lower directory. A dropped connection is resumed with a
 * Range request. Layers another pull is already fetching are waited for,
 * not fetched twice. A pull that fails removes what it created.
 */
import { createHash } from 'node:crypto';
import { PassThrough } from 'node:stream';
import { teeIntoIngest } from '../image/content-store.ts';
import type { ContentStore } from '../image/content-store.ts';
import type { ImageStore } from '../image/image-store.ts';
import type { LayerStore } from '../image/layer-store.ts';
import { chainIds } from '../image/layer-store.ts';
import { decompressStream } from '../image/layer.ts';
import { familiarName, familiarString } from '../image/reference.ts';
import type { Reference } from '../image/reference.ts';
import type { Descriptor, ImageConfig, ImageRecord, Manifest, Platform } from '../image/types.ts';
import type { ImageService } from '../engine/images.ts';
import { invalid, notFound, systemError } from '../util/errors.ts';
import { shortId } from '../util/ids.ts';
import type { BlobSources } from './blob-sources.ts';
import { LAYER_TYPES, MANIFEST_ACCEPT, normalisePlatform, parseManifest, platformString, Schema1Error, selectPlatform } from './manifest.ts';
import type { ParsedManifest } from './manifest.ts';
import { Throttled } from './progress.ts';
import type { ProgressSink } from './progress.ts';
import { readAll, RegistryError } from './registry-client.ts';
import type { RegistryClient } from './registry-client.ts';

/** Layers fetched at once per pull (dockerd's max-concurrent-downloads is 3; loopback and LANs take more). */
const CONCURRENCY = 6;
const MAX_ATTEMPTS = 5;
const MANIFEST_LIMIT = 4 << 20;
const CONFIG_LIMIT = 32 << 20;

export interface PullStores {
  images: ImageService;
  store: ImageStore;
  content: ContentStore;
  layers: LayerStore;
  sources: BlobSources;
  /** Layer fetches in progress in this daemon, by chain ID: concurrent pulls share them. */
  inflight: Map<string, Promise<void>>;
}

/** What a failed pull must remove. */
interface Created {
  layers: Set<string>;
  blobs: Set<string>;
}

export interface PullResult {
  id: string;
  /** Digest of what the reference named (an index or a manifest). */
  digest: string;
  /** false when the image and its reference were already in place. */
  changed: boolean;
}

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

function sha256(b: Buffer): string {
  return `sha256:${createHash('sha256').update(b).digest('hex')}`;
}

/** Runs tasks with at most `n` at a time; fails with the first failure once all have settled. */
async function parallel<T>(items: T[], n: number, fn: (item: T, index: number) => Promise<void>): Promise<void> {
  let next = 0;
  let firstErr: unknown;
  const worker = async (): Promise<void> => {
    while (next < items.length) {
      const i = next++;
      if (firstErr !== undefined) return;
      try {
        await fn(items[i]!, i);
      } catch (err) {
        firstErr ??= err;
      }
    }
  };
  await Promise.all(Array.from({ length: Math.min(n, items.length) }, worker));
  if (firstErr !== undefined) throw firstErr;
}

/** docker's wording for a registry refusal during a pull. */
export function pullError(err: unknown, ref: Reference): unknown {
  if (!(err instanceof RegistryError)) return err;
  const name = familiarName(ref);
  if (err.code === 'MANIFEST_UNKNOWN' || (err.status === 404 && err.code === 'NOT_FOUND')) {
    return notFound(`manifest for ${familiarString(ref)} not found: ${err.message}`);
  }
  if (err.code === 'NAME_UNKNOWN' || err.code === 'DENIED' || (err.code === 'UNAUTHORIZED' && !err.message.startsWith('no basic'))) {
    return notFound(`pull access denied for ${name}, repository does not exist or may require 'docker login': ${err.message}`);
  }
  // Not a 401: that would make the docker CLI prompt for a login, which dockerd's answer does not.
  return systemError(err.message, err);
}

export class Puller {
  private readonly s: PullStores;
  private readonly client: RegistryClient;
  private readonly progress: ProgressSink;
  private readonly platform: Platform;
  private readonly explicitPlatform: boolean;

  constructor(stores: PullStores, client: RegistryClient, progress: ProgressSink, platform: Platform, explicitPlatform: boolean) {
    this.s = stores;
    this.client = client;
    this.progress = progress;
    this.platform = platform;
    this.explicitPlatform = explicitPlatform;
  }

  private scopes(ref: Reference): string[] {
    return [`repository:${ref.path}:pull`];
  }

  /** Every tag of the repository (the `/tags/list` answer, following pagination). */
  async listTags(ref: Reference): Promise<string[]> {
    const tags: string[] = [];
    let path: string | undefined = `/v2/${ref.path}/tags/list?n=1000`;
    while (path) {
      const res = await this.client.expect('GET', path, [200], { scopes: this.scopes(ref) });
      const j = JSON.parse((await readAll(res.body, MANIFEST_LIMIT)).toString()) as { tags?: string[] | null };
      tags.push(...(j.tags ?? []));
      const link = res.headers.link as string | undefined;
      const m = link ? /<([^>]+)>\s*;\s*rel="?next"?/.exec(link) : null;
      path = m ? new URL(m[1]!, this.client.endpoint.url + '/').pathname + new URL(m[1]!, this.client.endpoint.url + '/').search : undefined;
    }
    return tags.sort();
  }

  /** Fetches a manifest by tag or digest, checking its digest. */
  async fetchManifest(ref: Reference, reference: string): Promise<{ bytes: Buffer; digest: string; parsed: ParsedManifest }> {
    const res = await this.client.expect('GET', `/v2/${ref.path}/manifests/${reference}`, [200], { scopes: this.scopes(ref), headers: { Accept: MANIFEST_ACCEPT } });
    const bytes = await readAll(res.body, MANIFEST_LIMIT);
    const digest = sha256(bytes);
    if (reference.startsWith('sha256:') && digest !== reference) {
      throw invalid(`manifest verification failed for digest ${reference}: the registry sent content with digest ${digest}`);
    }
    const header = res.headers['docker-content-digest'] as string | undefined;
    if (header && header.startsWith('sha256:') && header !== digest) {
      throw invalid(`manifest verification failed for ${familiarName(ref)}:${reference}: the registry says ${header}, the content is ${digest}`);
    }
    try {
      return { bytes, digest, parsed: parseManifest(bytes, res.headers['content-type'], `${familiarName(ref)}:${reference}`) };
    } catch (err) {
      if (err instanceof Schema1Error) throw invalid(err.message);
      throw err;
    }
  }

  /** Resolves a reference to one platform's manifest. */
  async resolve(ref: Reference): Promise<{ topDigest: string; manifestBytes: Buffer; manifestDigest: string; manifest: Manifest; indexBytes?: Buffer }> {
    const reference = ref.digest ?? ref.tag ?? 'latest';
    const top = await this.fetchManifest(ref, reference);
    if (top.parsed.kind === 'manifest') return { topDigest: top.digest, manifestBytes: top.bytes, manifestDigest: top.digest, manifest: top.parsed.manifest };
    const chosen = selectPlatform(top.parsed.index, this.platform);
    if (!chosen) throw notFound(`no matching manifest for ${platformString(normalisePlatform(this.platform))} in the manifest list entries`);
    const m = await this.fetchManifest(ref, chosen.digest);
    if (m.parsed.kind !== 'manifest') throw invalid(`invalid manifest for ${familiarName(ref)}: index entry ${chosen.digest} is not an image manifest`);
    return { topDigest: top.digest, manifestBytes: m.bytes, manifestDigest: m.digest, manifest: m.parsed.manifest, indexBytes: top.bytes };
  }

  /** Fetches a small blob (the config) whole and checks it. */
  private async fetchSmallBlob(ref: Reference, d: Descriptor): Promise<Buffer> {
    if (await this.s.content.has(d.digest)) return this.s.content.read(d.digest);
    if (d.size > CONFIG_LIMIT) throw invalid(`image config ${d.digest} is too large (${d.size} bytes)`);
    const res = await this.client.expect('GET', `/v2/${ref.path}/blobs/${d.digest}`, [200], { scopes: this.scopes(ref) });
    const b = await readAll(res.body, CONFIG_LIMIT);
    if (b.length !== d.size) throw invalid(`image config ${d.digest}: expected ${d.size} bytes, got ${b.length}`);
    if (sha256(b) !== d.digest) throw invalid(`digest mismatch for image config: expected ${d.digest}, got ${sha256(b)}`);
    return b;
  }

  /**
   * Pulls one reference. `tagRefs` are the references to point at the image
   * (the tag, or the digest when pulled by digest).
   */
  async pull(ref: Reference): Promise<PullResult> {
    const tagOrDigest = ref.digest ?? ref.tag ?? 'latest';
    const r = await this.resolve(ref);
    this.progress({ status: `Pulling from ${ref.path}`, id: tagOrDigest });
    const m = r.manifest;
    const configBytes = await this.fetchSmallBlob(ref, m.config);
    let config: ImageConfig;
    try {
      config = JSON.parse(configBytes.toString()) as ImageConfig;
    } catch {
      throw invalid(`invalid image config ${m.config.digest}: not JSON`);
    }
    const diffIds = config.rootfs?.diff_ids;
    if (!Array.isArray(diffIds) || diffIds.some((d) => typeof d !== 'string' || !/^sha256:[a-f0-9]{64}$/.test(d))) {
      throw invalid(`invalid image config ${m.config.digest}: bad rootfs.diff_ids`);
    }
    if (diffIds.length !== m.layers.length) {
      throw invalid(`invalid manifest for ${familiarString(ref)}: ${m.layers.length} layers but the config lists ${diffIds.length} diff IDs`);
    }
    for (const l of m.layers) if (!LAYER_TYPES.has(l.mediaType)) throw invalid(`unsupported layer media type ${l.mediaType} in ${familiarString(ref)}`);
    if (this.explicitPlatform && config.os && config.architecture) {
      const want = normalisePlatform(this.platform);
      const have = normalisePlatform({ os: config.os, architecture: config.architecture, ...(config.variant ? { variant: config.variant } : {}) });
      if (want.os !== have.os || want.architecture !== have.architecture || (want.variant && have.variant && want.variant !== have.variant)) {
        throw notFound(`image with reference ${familiarString(ref)} was found but does not match the specified platform: wanted ${platformString(want)}, actual: ${platformString(have)}`);
      }
    }

    const created: Created = { layers: new Set(), blobs: new Set() };
    const chains = chainIds(diffIds);
    const repo = `${ref.domain}/${ref.path}`;
    let result: PullResult;
    try {
      const present = await Promise.all(chains.map((ch) => this.s.layers.has(ch)));
      // An image already here is not fetched again (dockerd says nothing about its layers then).
      const complete = this.s.store.get(m.config.digest) !== undefined && present.every(Boolean);
      if (!complete) {
        m.layers.forEach((l, i) => this.progress({ status: present[i] ? 'Already exists' : 'Pulling fs layer', progressDetail: {}, id: shortId(l.digest) }));
        const todo = m.layers.map((l, i) => ({ l, i })).filter(({ i }) => !present[i]);
        await parallel(todo, CONCURRENCY, ({ l, i }) => this.fetchLayer(ref, l, i === 0 ? null : chains[i - 1]!, diffIds[i]!, chains[i]!, created));
      }
      // Small blobs only now, so a failed pull leaves none of them behind.
      for (const [bytes, digest] of [[configBytes, m.config.digest], [r.manifestBytes, r.manifestDigest]] as const) {
        if (!(await this.s.content.has(digest))) {
          await this.s.content.putBytes(bytes, digest);
          if (digest !== m.config.digest) created.blobs.add(digest);
        }
      }
      const extra: Partial<ImageRecord> = { layerBlobs: m.layers.map((l) => ({ mediaType: l.mediaType, digest: l.digest, size: l.size })), manifestDigest: r.manifestDigest };
      const refs: Reference[] = [{ domain: ref.domain, path: ref.path, digest: r.topDigest }];
      if (!ref.digest) refs.unshift({ domain: ref.domain, path: ref.path, tag: ref.tag ?? 'latest' });
      const id = m.config.digest;
      result = await this.s.images.withLock(async () => {
        const before = this.s.store.get(id) !== undefined && refs.every((x) => this.s.store.hasRef(x) && this.s.store.resolve(familiarString(x))?.record.id === id);
        // Layers may have been removed by an rmi that ran between our fetch and now.
        for (const ch of chains) if (!(await this.s.layers.has(ch))) throw systemError(`layer ${ch} was removed while the pull ran; pull again`);
        const rec = await this.s.images.recordImage(configBytes, extra, refs, 'pull', familiarString(ref.digest ? ref : { ...ref, tag: ref.tag ?? 'latest' }));
        return { id: rec.id, digest: r.topDigest, changed: !before };
      });
    } catch (err) {
      await this.discard(created);
      throw err;
    }
    await this.s.sources.add([...m.layers.map((l) => l.digest), m.config.digest], repo).catch(() => undefined);
    return result;
  }

  /** Removes what a failed pull created, keeping anything an image uses. */
  private async discard(created: Created): Promise<void> {
    if (created.layers.size === 0 && created.blobs.size === 0) return;
    await this.s.images.withLock(async () => {
      const usedChains = new Set<string>();
      const usedBlobs = new Set<string>();
      for (const { record, config } of this.s.store.all()) {
        for (const c of chainIds(config.rootfs.diff_ids)) usedChains.add(c);
        for (const d of config.rootfs.diff_ids) usedBlobs.add(d);
        for (const b of record.layerBlobs ?? []) if (b) usedBlobs.add(b.digest);
        if (record.manifestDigest) usedBlobs.add(record.manifestDigest);
      }
      for (const ch of created.layers) if (!usedChains.has(ch) && !this.s.inflight.has(ch)) await this.s.layers.remove(ch).catch(() => undefined);
      for (const b of created.blobs) if (!usedBlobs.has(b)) await this.s.content.delete(b).catch(() => undefined);
    });
  }

  private async fetchLayer(ref: Reference, l: Descriptor, parent: string | null, diffId: string, chain: string, created: Created): Promise<void> {
    const id = shortId(l.digest);
    if (await this.s.layers.has(chain)) {
      // Another pull finished it meanwhile.
      this.progress({ status: 'Pull complete', progressDetail: {}, id });
      return;
    }
    const running = this.s.inflight.get(chain);
    if (running) {
      // Another pull is fetching this layer: wait for it rather than fetch it twice.
      this.progress({ status: 'Waiting', progressDetail: {}, id });
      try {
        await running;
      } catch {
        // Theirs failed; try ourselves below.
      }
      if (await this.s.layers.has(chain)) {
        this.progress({ status: 'Download complete', progressDetail: {}, id });
        this.progress({ status: 'Pull complete', progressDetail: {}, id });
        return;
      }
    }
    const p = this.fetchLayerNow(ref, l, parent, diffId, chain, created, id);
    this.s.inflight.set(chain, p);
    try {
      await p;
    } finally {
      if (this.s.inflight.get(chain) === p) this.s.inflight.delete(chain);
    }
  }

  private async fetchLayerNow(ref: Reference, l: Descriptor, parent: string | null, diffId: string, chain: string, created: Created, id: string): Promise<void> {
    const haveBlob = await this.s.content.has(l.digest);
    let source: AsyncIterable<Buffer>;
    let ingest: Promise<unknown> | undefined;
    let pass: PassThrough | undefined;
    if (haveBlob) {
      source = this.s.content.stream(l.digest) as AsyncIterable<Buffer>;
    } else {
      pass = new PassThrough({ highWaterMark: 4 << 20 });
      ingest = this.s.content.ingest(pass, { digest: l.digest, size: l.size });
      ingest.catch(() => undefined);
      source = this.teed(this.download(ref, l, id), pass, ingest);
    }
    const meta = await this.s.layers
      .add(parent, decompressStream(source), diffId)
      .catch(async (err: unknown) => {
        pass?.destroy(err instanceof Error ? err : new Error(String(err)));
        // The extractor reads ahead of its verdict, so the blob may be
        // complete and stored already: it is then this pull's to discard.
        if (ingest && (await ingest.then(() => true, () => false))) created.blobs.add(l.digest);
        throw err;
      });
    created.layers.add(meta.chainId);
    if (ingest) {
      // The layer is complete; the blob is only kept once its digest checked out.
      try {
        await ingest;
      } catch (err) {
        throw invalid(`failed to verify layer ${l.digest}: ${(err as Error).message}`);
      }
      created.blobs.add(l.digest);
    }
    this.progress({ status: 'Pull complete', progressDetail: {}, id });
  }

  /** Copies every chunk into the blob ingest while handing it on to the extractor. */
  private async *teed(src: AsyncIterable<Buffer>, pass: PassThrough, ingest: Promise<unknown>): AsyncGenerator<Buffer> {
    yield* teeIntoIngest(src, pass, ingest);
    pass.end();
    // Surface a size or digest failure to the extractor before it finishes.
    await ingest;
  }

  /** The blob's bytes, resuming with a Range request when the connection drops. */
  private async *download(ref: Reference, l: Descriptor, id: string): AsyncGenerator<Buffer> {
    let got = 0;
    let attempt = 0;
    const bar = new Throttled(this.progress, id, 'Downloading');
    for (;;) {
      try {
        const headers: Record<string, string> = got > 0 ? { Range: `bytes=${got}-` } : {};
        const res = await this.client.expect('GET', `/v2/${ref.path}/blobs/${l.digest}`, [200, 206], { scopes: this.scopes(ref), headers });
        let skip = got > 0 && res.status === 200 ? got : 0;
        const length = Number(res.headers['content-length'] ?? NaN);
        if (res.status === 200 && Number.isFinite(length) && length !== l.size) {
          res.body.destroy();
          throw invalid(`layer ${l.digest} is truncated or padded: the registry serves ${length} bytes, the manifest says ${l.size}`);
        }
        for await (const raw of res.body) {
          let chunk = raw as Buffer;
          if (skip > 0) {
            if (chunk.length <= skip) {
              skip -= chunk.length;
              continue;
            }
            chunk = chunk.subarray(skip);
            skip = 0;
          }
          got += chunk.length;
          if (got > l.size) throw invalid(`layer ${l.digest} is larger than its declared size ${l.size}`);
          bar.update(got, l.size);
          yield chunk;
        }
        if (got < l.size) throw new RegistryError(0, 'SHORT_READ', `unexpected EOF: got ${got} of ${l.size} bytes of ${l.digest}`);
        bar.update(got, l.size, true);
        this.progress({ status: 'Verifying Checksum', progressDetail: {}, id });
        this.progress({ status: 'Download complete', progressDetail: {}, id });
        return;
      } catch (err) {
        const retryable = (err instanceof RegistryError && (err.status === 0 || err.status >= 500 || err.status === 429)) || (err as NodeJS.ErrnoException)?.code === 'ECONNRESET' || (err as Error)?.message === 'aborted';
        if (!retryable || ++attempt >= MAX_ATTEMPTS) {
          if (err instanceof RegistryError && err.code === 'SHORT_READ') throw invalid(`layer ${l.digest} is truncated: ${err.message}`);
          throw err;
        }
        const wait = 200 * 2 ** (attempt - 1);
        this.progress({ status: `Retrying in ${Math.ceil(wait / 1000)} second${wait > 1000 ? 's' : ''}`, progressDetail: {}, id });
        await sleep(wait);
      }
    }
  }
}
