/**
 * Pushing one tagged image to one registry endpoint.
 *
 * Blobs the registry already has are skipped (HEAD); blobs this host saw in
 * another repository of the same registry are mounted from there; the rest
 * are uploaded, small ones in one PUT and large ones in PATCH chunks with
 * Content-Range (a failed chunk is resumed from the offset the registry
 * reports). Layers pushed are the compressed blobs the image was pulled
 * with; images that were loaded, imported or committed get a gzip blob made
 * once and remembered in the image record, so every later push sends the
 * same digest.
 */
import { createGzip } from 'node:zlib';
import type { Readable } from 'node:stream';
import { chainIds } from '../image/layer-store.ts';
import type { Reference } from '../image/reference.ts';
import { MediaType } from '../image/types.ts';
import type { Descriptor, ImageRecord, Manifest } from '../image/types.ts';
import type { ResolvedImage } from '../image/image-store.ts';
import { invalid, notFound } from '../util/errors.ts';
import { shortId } from '../util/ids.ts';
import type { PullStores } from './puller.ts';
import { Throttled } from './progress.ts';
import type { ProgressSink } from './progress.ts';
import { readAll, RegistryError } from './registry-client.ts';
import type { RegistryClient } from './registry-client.ts';
import { parseManifest } from './manifest.ts';

/** Blobs up to this size go up in one PUT; larger ones in chunks of this size. */
export const CHUNK_SIZE = 16 << 20;
const CONCURRENCY = 5;

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

export class Pusher {
  private readonly s: PullStores;
  private readonly client: RegistryClient;
  private readonly progress: ProgressSink;
  /** Layer blobs being compressed in this daemon, by diff ID. */
  private static compressing = new Map<string, Promise<Descriptor>>();

  constructor(stores: PullStores, client: RegistryClient, progress: ProgressSink) {
    this.s = stores;
    this.client = client;
    this.progress = progress;
  }

  private scopes(ref: Reference, from?: string): string[] {
    const s = [`repository:${ref.path}:pull,push`];
    if (from) s.push(`repository:${from}:pull`);
    return s;
  }

  /** The compressed blob for layer `i`, made (gzip) and recorded when the image has none. */
  private async layerBlob(img: ResolvedImage, i: number): Promise<Descriptor> {
    const have = img.record.layerBlobs?.[i];
    if (have && (await this.s.content.has(have.digest))) return have;
    const diffId = img.config.rootfs.diff_ids[i]!;
    let p = Pusher.compressing.get(diffId);
    if (!p) {
      p = (async () => {
        await this.s.images.ensureLayerBlob(img.record, i, diffId, chainIds(img.config.rootfs.diff_ids)[i]!);
        const gz = createGzip({ level: 6 });
        const src = this.s.content.stream(diffId);
        src.on('error', (err) => gz.destroy(err));
        src.pipe(gz);
        const blob = await this.s.content.ingest(gz);
        return { mediaType: MediaType.dockerLayer, digest: blob.digest, size: blob.size };
      })();
      Pusher.compressing.set(diffId, p);
      p.finally(() => Pusher.compressing.delete(diffId)).catch(() => undefined);
    }
    const d = await p;
    await this.s.images.withLock(async () => {
      const rec = this.s.store.get(img.record.id)?.record;
      if (!rec) throw notFound(`No such image: ${img.record.id}`);
      const blobs: (Descriptor | null)[] = img.config.rootfs.diff_ids.map((_, j) => rec.layerBlobs?.[j] ?? null);
      blobs[i] = d;
      await this.s.store.update(rec.id, { layerBlobs: blobs });
    });
    return d;
  }

  private async exists(ref: Reference, digest: string): Promise<boolean> {
    const res = await this.client.request('HEAD', `/v2/${ref.path}/blobs/${digest}`, { scopes: this.scopes(ref) });
    res.body.resume();
    if (res.status === 200) return true;
    if (res.status === 404) return false;
    throw new RegistryError(res.status, res.status === 401 ? 'UNAUTHORIZED' : 'UNKNOWN', `checking blob ${digest}: status ${res.status}`);
  }

  /** Starts an upload, or mounts the blob from `from`; returns the upload URL, or null when mounted. */
  private async startUpload(ref: Reference, digest: string, from?: string): Promise<string | null> {
    const q = from ? `?mount=${encodeURIComponent(digest)}&from=${encodeURIComponent(from)}` : '';
    const res = await this.client.expect('POST', `/v2/${ref.path}/blobs/uploads/${q}`, [201, 202], { scopes: this.scopes(ref, from), noRedirect: true });
    res.body.resume();
    if (res.status === 201) return null;
    const loc = res.headers.location as string | undefined;
    if (!loc) throw new RegistryError(res.status, 'UNKNOWN', 'the registry started an upload without a Location');
    return new URL(loc, this.client.endpoint.url + '/').toString();
  }

  private withDigest(location: string, digest: string): string {
    const u = new URL(location);
    u.searchParams.set('digest', digest);
    return u.toString();
  }

  /** Uploads a blob from the content store, in one PUT or in chunks. */
  private async upload(ref: Reference, location: string, d: Descriptor, bar?: Throttled): Promise<void> {
    const open = (start: number, end: number): (() => Readable) => () => {
      const s = this.s.content.stream(d.digest, { start, end: end - 1 });
      if (bar) {
        let sent = start;
        s.on('data', (c: Buffer) => {
          sent += c.length;
          bar.update(sent, d.size);
        });
      }
      return s;
    };
    const headers = { 'Content-Type': 'application/octet-stream' };
    if (d.size <= CHUNK_SIZE) {
      const res = await this.client.expect('PUT', this.withDigest(location, d.digest), [201], { scopes: this.scopes(ref), body: open(0, d.size), length: d.size, headers, noRedirect: true });
      res.body.resume();
      return;
    }
    let offset = 0;
    let loc = location;
    let failures = 0;
    while (offset < d.size) {
      const end = Math.min(offset + CHUNK_SIZE, d.size);
      try {
        const res = await this.client.expect('PATCH', loc, [202], {
          scopes: this.scopes(ref),
          body: open(offset, end),
          length: end - offset,
          headers: { ...headers, 'Content-Range': `${offset}-${end - 1}` },
          noRedirect: true,
        });
        res.body.resume();
        if (res.headers.location) loc = new URL(res.headers.location as string, this.client.endpoint.url + '/').toString();
        offset = end;
        failures = 0;
      } catch (err) {
        if (!(err instanceof RegistryError) || (err.status !== 0 && err.status < 500) || ++failures > 3) throw err;
        // Ask the registry how much it kept and carry on from there.
        await sleep(200 * failures);
        const st = await this.client.request('GET', loc, { scopes: this.scopes(ref), noRedirect: true });
        st.body.resume();
        const range = /^(?:bytes=)?0-(\d+)$/.exec((st.headers.range as string | undefined) ?? '');
        if (st.status === 204 && range) offset = Number(range[1]) + 1;
        else if (st.status === 204) offset = 0;
        else throw err;
        if (st.headers.location) loc = new URL(st.headers.location as string, this.client.endpoint.url + '/').toString();
      }
    }
    const res = await this.client.expect('PUT', this.withDigest(loc, d.digest), [201], { scopes: this.scopes(ref), noRedirect: true });
    res.body.resume();
  }

  /** Puts one blob on the registry unless it is there; returns how (for the progress line). */
  private async pushBlob(ref: Reference, d: Descriptor, bar?: Throttled): Promise<'exists' | 'pushed' | { mounted: string }> {
    if (await this.exists(ref, d.digest)) return 'exists';
    for (const src of await this.s.sources.get(d.digest)) {
      const i = src.indexOf('/');
      const domain = src.slice(0, i);
      const path = src.slice(i + 1);
      if (domain !== ref.domain || path === ref.path) continue;
      try {
        const loc = await this.startUpload(ref, d.digest, path);
        if (loc === null) return { mounted: path };
        // The registry opened a plain upload instead of mounting: use it.
        await this.upload(ref, loc, d, bar);
        return 'pushed';
      } catch (err) {
        if (err instanceof RegistryError && err.status === 401) continue;
        throw err;
      }
    }
    const loc = await this.startUpload(ref, d.digest);
    if (loc === null) return 'exists';
    await this.upload(ref, loc, d, bar);
    return 'pushed';
  }

  /** The manifest to push: the one the image was pulled with when it still fits, else a new one. */
  private async manifestFor(img: ResolvedImage, layers: Descriptor[]): Promise<{ bytes: Buffer; mediaType: string }> {
    const rec: ImageRecord = img.record;
    if (rec.manifestDigest && (await this.s.content.has(rec.manifestDigest))) {
      const bytes = await this.s.content.read(rec.manifestDigest);
      try {
        const p = parseManifest(bytes, undefined, rec.id);
        if (p.kind === 'manifest' && p.manifest.config.digest === rec.id && p.manifest.layers.length === layers.length && p.manifest.layers.every((l, i) => l.digest === layers[i]!.digest)) {
          return { bytes, mediaType: p.mediaType };
        }
      } catch {
        // fall through to a new manifest
      }
    }
    const oci = layers.some((l) => l.mediaType.startsWith('application/vnd.oci.')) || layers.some((l) => l.mediaType.endsWith('zstd'));
    const configSize = await this.s.content.size(rec.id);
    const m: Manifest = oci
      ? {
          schemaVersion: 2,
          mediaType: MediaType.ociManifest,
          config: { mediaType: MediaType.ociConfig, digest: rec.id, size: configSize },
          layers: layers.map((l) => ({ mediaType: l.mediaType === MediaType.dockerLayer ? MediaType.ociLayerGzip : l.mediaType, digest: l.digest, size: l.size })),
        }
      : {
          schemaVersion: 2,
          mediaType: MediaType.dockerManifest,
          config: { mediaType: MediaType.dockerConfig, digest: rec.id, size: configSize },
          layers: layers.map((l) => ({ mediaType: MediaType.dockerLayer, digest: l.digest, size: l.size })),
        };
    return { bytes: Buffer.from(JSON.stringify(m, null, 3)), mediaType: m.mediaType! };
  }

  /** Pushes the image to `ref` (which has a tag). */
  async push(ref: Reference, img: ResolvedImage): Promise<{ digest: string; size: number }> {
    const diffIds = img.config.rootfs.diff_ids;
    const ids = diffIds.map((d) => shortId(d));
    // docker lists layers top first.
    for (let i = diffIds.length - 1; i >= 0; i--) this.progress({ status: 'Preparing', progressDetail: {}, id: ids[i]! });
    // Layers beyond the upload slots wait their turn.
    for (let i = diffIds.length - 1; i >= CONCURRENCY; i--) this.progress({ status: 'Waiting', progressDetail: {}, id: ids[i]! });
    const layers: Descriptor[] = new Array(diffIds.length);
    const order = diffIds.map((_, i) => i);
    let next = 0;
    let firstErr: unknown;
    const worker = async (): Promise<void> => {
      while (next < order.length && firstErr === undefined) {
        const i = order[next++]!;
        try {
          const d = await this.layerBlob(img, i);
          layers[i] = d;
          const how = await this.pushBlob(ref, d, new Throttled(this.progress, ids[i]!, 'Pushing'));
          const status = how === 'exists' ? 'Layer already exists' : how === 'pushed' ? 'Pushed' : `Mounted from ${how.mounted}`;
          this.progress({ status, progressDetail: {}, id: ids[i]! });
        } catch (err) {
          firstErr ??= err;
        }
      }
    };
    await Promise.all(Array.from({ length: Math.min(CONCURRENCY, order.length) }, worker));
    if (firstErr !== undefined) throw firstErr;

    const configSize = await this.s.content.size(img.record.id);
    await this.pushBlob(ref, { mediaType: MediaType.dockerConfig, digest: img.record.id, size: configSize });
    const { bytes, mediaType } = await this.manifestFor(img, layers);
    const tag = ref.tag ?? 'latest';
    const res = await this.client.expect('PUT', `/v2/${ref.path}/manifests/${tag}`, [200, 201, 202], { scopes: this.scopes(ref), body: bytes, headers: { 'Content-Type': mediaType }, noRedirect: true });
    await readAll(res.body).catch(() => undefined);
    const digest = (await this.s.content.putBytes(bytes)).digest;
    if (img.record.manifestDigest !== digest) {
      // Remembered so the next push sends the same bytes, and rmi cleans the blob up.
      await this.s.images.withLock(async () => {
        if (this.s.store.get(img.record.id)) await this.s.store.update(img.record.id, { manifestDigest: digest });
      });
    }
    const header = res.headers['docker-content-digest'] as string | undefined;
    if (header && header !== digest) throw invalid(`the registry stored the manifest as ${header}, expected ${digest}`);
    await this.s.sources.add([...layers.map((l) => l.digest), img.record.id], `${ref.domain}/${ref.path}`).catch(() => undefined);
    return { digest, size: bytes.length };
  }
}
