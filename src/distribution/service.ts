/**
 * berthd's side of the distribution API: pull, push, distribution inspect
 * and the login check, each trying a registry's endpoints in docker's order
 * (mirrors, then the registry; HTTPS, then HTTP for insecure registries).
 */
import { createHash } from 'node:crypto';
import type { DaemonConfig } from '../daemon/config.ts';
import type { ContentStore } from '../image/content-store.ts';
import type { ImageStore } from '../image/image-store.ts';
import { noSuchImage } from '../image/image-store.ts';
import type { LayerStore } from '../image/layer-store.ts';
import { familiarName, familiarString, parseReference, parseRepoAndTag, refString } from '../image/reference.ts';
import type { Reference } from '../image/reference.ts';
import type { Platform } from '../image/types.ts';
import type { ImageService } from '../engine/images.ts';
import { hostPlatform } from '../engine/images.ts';
import { BerthError, invalid, notFound, systemError } from '../util/errors.ts';
import { log } from '../util/log.ts';
import type { AuthConfig } from './auth-config.ts';
import { registryHostOfAddress } from './auth-config.ts';
import { BlobSources } from './blob-sources.ts';
import { defaultCertsDirs, endpointsFor } from './endpoints.ts';
import type { Endpoint, RegistrySettings } from './endpoints.ts';
import { MANIFEST_ACCEPT, normalisePlatform, parseManifest } from './manifest.ts';
import { Puller, pullError } from './puller.ts';
import type { PullStores } from './puller.ts';
import { Pusher } from './pusher.ts';
import type { ProgressSink } from './progress.ts';
import { readAll, RegistryClient, RegistryError } from './registry-client.ts';

export interface PullRequest {
  fromImage: string;
  tag?: string;
  platform?: string;
  auth?: AuthConfig;
}

export interface DistributionInspect {
  Descriptor: { mediaType: string; digest: string; size: number };
  Platforms: Platform[];
}

function parsePlatformArg(s: string): Platform {
  const parts = s.toLowerCase().split('/');
  if (parts.length < 1 || parts.length > 3 || parts.some((p) => p === '')) throw invalid(`invalid platform: ${s}`);
  if (parts.length === 1) return { ...hostPlatform(), os: parts[0]! };
  const p: Platform = { os: parts[0]!, architecture: parts[1]! };
  if (parts[2]) p.variant = parts[2];
  return normalisePlatform(p);
}

export class DistributionService {
  private readonly cfg: DaemonConfig;
  private readonly stores: PullStores;

  constructor(cfg: DaemonConfig, images: ImageService, store: ImageStore, content: ContentStore, layers: LayerStore) {
    this.cfg = cfg;
    this.stores = { images, store, content, layers, sources: new BlobSources(cfg.dataRoot), inflight: new Map() };
  }

  settings(): RegistrySettings {
    return { mirrors: this.cfg.registryMirrors, insecure: this.cfg.insecureRegistries, certsDirs: defaultCertsDirs(this.cfg.dataRoot) };
  }

  /**
   * Tries `fn` against each endpoint: a mirror that fails, or an endpoint
   * that cannot be reached (TLS refused, connection refused), hands over to
   * the next one, as dockerd does.
   */
  private async onEndpoints<T>(domain: string, auth: AuthConfig | undefined, push: boolean, fn: (client: RegistryClient, ep: Endpoint) => Promise<T>): Promise<T> {
    const eps = endpointsFor(domain, this.settings()).filter((e) => !(push && e.mirror));
    for (let i = 0; i < eps.length; i++) {
      const ep = eps[i]!;
      try {
        const client = new RegistryClient(ep, auth);
        await client.ping();
        return await fn(client, ep);
      } catch (err) {
        const last = i === eps.length - 1;
        const transport = err instanceof RegistryError && err.transport;
        if (last || !(ep.mirror || transport)) throw err;
        log.debug('registry endpoint failed, trying the next', { endpoint: ep.url, error: (err as Error).message });
      }
    }
    throw systemError(`no endpoint for ${domain}`);
  }

  /** POST /images/create?fromImage=…: pulls and reports progress; resolves when done. */
  async pull(req: PullRequest, progress: ProgressSink): Promise<void> {
    const ref = parseRepoAndTag(req.fromImage, req.tag || undefined);
    const allTags = !ref.tag && !ref.digest && !req.tag;
    const explicit = !!req.platform;
    const platform = req.platform ? parsePlatformArg(req.platform) : hostPlatform();
    if (platform.os !== 'linux') throw invalid(`operating system is not supported: ${platform.os}`);
    await this.onEndpoints(ref.domain, req.auth, false, async (client) => {
      const puller = new Puller(this.stores, client, progress, platform, explicit);
      {
        if (allTags) {
          const tags = await puller.listTags(ref);
          if (tags.length === 0) throw notFound(`no tags found for ${familiarName(ref)}`);
          let changed = false;
          for (const tag of tags) {
            const r = await puller.pull({ domain: ref.domain, path: ref.path, tag });
            progress({ status: `Digest: ${r.digest}` });
            changed ||= r.changed;
          }
          progress({ status: changed ? `Status: Downloaded newer image for ${familiarName(ref)}` : `Status: Image is up to date for ${familiarName(ref)}` });
          return;
        }
        const r = await puller.pull(ref);
        progress({ status: `Digest: ${r.digest}` });
        const shown = familiarString(ref.digest ? ref : { ...ref, tag: ref.tag ?? 'latest' });
        progress({ status: r.changed ? `Status: Downloaded newer image for ${shown}` : `Status: Image is up to date for ${shown}` });
      }
    }).catch((err: unknown) => {
      throw pullError(err, ref);
    });
  }

  /** POST /images/{name}/push: every tag of the repository when no tag is given. */
  async push(name: string, tag: string | undefined, auth: AuthConfig | undefined, progress: ProgressSink): Promise<void> {
    const base = parseRepoAndTag(name, tag || undefined);
    if (base.digest) throw invalid('cannot push a digest reference');
    const targets: { ref: Reference; id: string }[] = [];
    if (base.tag) {
      const img = this.stores.store.resolve(refString(base));
      if (!img) throw notFound(`tag does not exist: ${familiarString(base)}`);
      targets.push({ ref: base, id: img.record.id });
    } else {
      for (const { record } of this.stores.store.all()) {
        for (const r of this.stores.store.refsOf(record.id)) {
          if (r.includes('@')) continue;
          const p = parseReference(r);
          if (p.domain === base.domain && p.path === base.path) targets.push({ ref: p, id: record.id });
        }
      }
      targets.sort((a, b) => (a.ref.tag ?? '').localeCompare(b.ref.tag ?? ''));
      if (targets.length === 0) throw notFound(`An image does not exist locally with the tag: ${familiarName(base)}`);
    }
    progress({ status: `The push refers to repository [${base.domain}/${base.path}]` });
    await this.onEndpoints(base.domain, auth, true, async (client) => {
      const pusher = new Pusher(this.stores, client, progress);
      for (const t of targets) {
        const img = this.stores.store.get(t.id);
        if (!img) throw noSuchImage(familiarString(t.ref));
        const r = await pusher.push(t.ref, img);
        const tagName = t.ref.tag ?? 'latest';
        progress({ status: `${tagName}: digest: ${r.digest} size: ${r.size}` });
        progress({ progressDetail: {}, aux: { Tag: tagName, Digest: r.digest, Size: r.size } });
        await this.stores.images.withLock(async () => {
          if (this.stores.store.get(t.id)) await this.stores.store.tag(t.id, { domain: t.ref.domain, path: t.ref.path, digest: r.digest });
        });
      }
    }).catch((err: unknown) => {
      throw pushError(err);
    });
  }

  /** GET /distribution/{name}/json: what the registry has under a name, without pulling it. */
  async inspect(name: string, auth: AuthConfig | undefined): Promise<DistributionInspect> {
    const ref = parseReference(name);
    const reference = ref.digest ?? ref.tag ?? 'latest';
    return this.onEndpoints(ref.domain, auth, false, async (client) => {
      {
        const res = await client.expect('GET', `/v2/${ref.path}/manifests/${reference}`, [200], { scopes: [`repository:${ref.path}:pull`], headers: { Accept: MANIFEST_ACCEPT } });
        const bytes = await readAll(res.body, 4 << 20);
        const digest = `sha256:${createHash('sha256').update(bytes).digest('hex')}`;
        if (ref.digest && digest !== ref.digest) throw invalid(`manifest verification failed for digest ${ref.digest}`);
        const parsed = parseManifest(bytes, res.headers['content-type'], familiarString(ref));
        const platforms: Platform[] = [];
        if (parsed.kind === 'index') {
          for (const d of parsed.index.manifests) if (d.platform && d.platform.os !== 'unknown') platforms.push(d.platform);
        } else {
          const cfgRes = await client.expect('GET', `/v2/${ref.path}/blobs/${parsed.manifest.config.digest}`, [200], { scopes: [`repository:${ref.path}:pull`] });
          const cfg = JSON.parse((await readAll(cfgRes.body, 32 << 20)).toString()) as { os?: string; architecture?: string; variant?: string };
          if (cfg.os && cfg.architecture) platforms.push({ os: cfg.os, architecture: cfg.architecture, ...(cfg.variant ? { variant: cfg.variant } : {}) });
        }
        return { Descriptor: { mediaType: parsed.mediaType, digest, size: bytes.length }, Platforms: platforms };
      }
    }).catch((err: unknown) => {
      throw pullError(err, ref);
    });
  }

  /** POST /auth: checks credentials against the registry's /v2/ (with the token flow when it asks for it). */
  async login(auth: AuthConfig): Promise<{ Status: string; IdentityToken: string }> {
    const domain = registryHostOfAddress(auth.serveraddress ?? '');
    if (!auth.username && !auth.identitytoken) throw invalid('username is empty');
    await this.onEndpoints(domain, auth, true, async (client, ep) => {
      let res;
      try {
        res = await client.request('GET', '/v2/', { scopes: [] });
      } catch (err) {
        if (err instanceof RegistryError && err.status === 401) throw new BerthError('Unauthorized', `login attempt to ${ep.url}/v2/ failed with status: 401 Unauthorized`);
        throw err;
      }
      res.body.resume();
      if (res.status === 200) return;
      if (res.status === 401) throw new BerthError('Unauthorized', `login attempt to ${ep.url}/v2/ failed with status: 401 Unauthorized`);
      throw new BerthError('Unauthorized', `login attempt to ${ep.url}/v2/ failed with status: ${res.status}`);
    }).catch((err: unknown) => {
      if (err instanceof RegistryError) throw new BerthError(err.status === 401 ? 'Unauthorized' : 'System', err.message);
      throw err;
    });
    return { Status: 'Login Succeeded', IdentityToken: '' };
  }
}

/**
 * Registry refusals during a push are reported as dockerd reports them: a
 * plain error, not a 401 (which would make the docker CLI prompt for a login).
 */
function pushError(err: unknown): unknown {
  if (!(err instanceof RegistryError)) return err;
  return systemError(err.message, err);
}
