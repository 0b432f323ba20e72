import { Readable } from 'node:stream';
import type { ReadableStream as WebReadableStream } from 'node:stream/web';
import type { Router, Ctx } from '../router.ts';
import { HANDLED, qBool, qFilters, reply, versionAtLeast } from '../router.ts';
import { commonHeaders } from '../server.ts';
import { jsonStream } from '../streams.ts';
import { pullRoute } from './distribution.ts';
import type { Engine } from '../../engine/engine.ts';
import type { ImageInspect } from '../../engine/images.ts';
import { invalid, systemError } from '../../util/errors.ts';
import { drainOrClose } from '../../util/drain.ts';

function isEmpty(v: unknown): boolean {
  if (v === undefined || v === null || v === '' || v === false) return true;
  if (Array.isArray(v)) return v.length === 0;
  return typeof v === 'object' && Object.keys(v).length === 0;
}

/**
 * From API 1.50 an image's Config is the image-spec config: only the fields
 * that are set, in the spec's order. Clients that re-encode it (the docker
 * CLI's `-f '{{json .Config}}'`) print exactly these fields.
 */
const OCI_CONFIG_ORDER = ['User', 'ExposedPorts', 'Env', 'Entrypoint', 'Cmd', 'Volumes', 'WorkingDir', 'Labels', 'StopSignal', 'ArgsEscaped', 'Healthcheck', 'OnBuild', 'Shell'];

/**
 * Before 1.50 it was a container config: the fields with an empty value here
 * are always present, the others only when set; the container-only fields
 * are always empty.
 */
const LEGACY_CONFIG_ORDER: [string, unknown][] = [
  ['Hostname', ''],
  ['Domainname', ''],
  ['User', ''],
  ['AttachStdin', false],
  ['AttachStdout', false],
  ['AttachStderr', false],
  ['ExposedPorts', undefined],
  ['Tty', false],
  ['OpenStdin', false],
  ['StdinOnce', false],
  ['Env', null],
  ['Cmd', null],
  ['Healthcheck', undefined],
  ['ArgsEscaped', undefined],
  ['Image', ''],
  ['Volumes', null],
  ['WorkingDir', ''],
  ['Entrypoint', null],
  ['OnBuild', null],
  ['Labels', null],
  ['StopSignal', undefined],
  ['Shell', undefined],
];
const CONTAINER_ONLY = new Set(['Hostname', 'Domainname', 'AttachStdin', 'AttachStdout', 'AttachStderr', 'Tty', 'OpenStdin', 'StdinOnce', 'Image']);

function configForVersion(ctx: Ctx, cfg: Record<string, unknown>): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  if (versionAtLeast(ctx, '1.50')) {
    for (const k of OCI_CONFIG_ORDER) if (!isEmpty(cfg[k])) out[k] = cfg[k];
    return out;
  }
  for (const [k, empty] of LEGACY_CONFIG_ORDER) {
    if (CONTAINER_ONLY.has(k)) out[k] = empty;
    else if (empty !== undefined) out[k] = cfg[k] ?? empty;
    else if (!isEmpty(cfg[k])) out[k] = cfg[k];
  }
  return out;
}

/** Shapes an inspect result for the API version the client speaks. */
function inspectForVersion(ctx: Ctx, img: ImageInspect): Record<string, unknown> {
  const out: Record<string, unknown> = { ...img, Config: configForVersion(ctx, img.Config) };
  if (!versionAtLeast(ctx, '1.45')) {
    out.Container = '';
    out.ContainerConfig = Object.fromEntries(LEGACY_CONFIG_ORDER.filter(([, e]) => e !== undefined));
  }
  if (!versionAtLeast(ctx, '1.44')) out.VirtualSize = img.Size;
  return out;
}

/** Streams a tar to the client; headers go out only once the first bytes exist, so early failures are proper HTTP errors. */
export async function sendTar(ctx: Ctx, source: AsyncIterable<Buffer>, headers: Record<string, string> = {}): Promise<typeof HANDLED> {
  const it = source[Symbol.asyncIterator]();
  const first = await it.next();
  const res = ctx.res;
  res.writeHead(200, { ...commonHeaders(), 'Content-Type': 'application/x-tar', ...headers });
  let closed = false;
  res.once('close', () => {
    closed = true;
  });
  try {
    let r = first;
    while (!r.done && !closed) {
      if (!res.write(r.value)) await drainOrClose(res);
      r = await it.next();
    }
    if (!closed) res.end();
  } catch (err) {
    // A tar cut short must look cut short: no JSON error appended to it.
    res.destroy(err instanceof Error ? err : new Error(String(err)));
  } finally {
    await it.return?.(undefined);
  }
  return HANDLED;
}

export function imageRoutes(r: Router, engine: Engine): void {
  const images = engine.images;

  // Fixed paths first: the `{name*}` patterns below would take them otherwise.
  r.get('/images/json', async (ctx) => {
    const q = ctx.query;
    const list = await images.list({
      all: qBool(q, 'all'),
      filters: qFilters(q),
      digests: qBool(q, 'digests'),
      sharedSize: qBool(q, 'shared-size'),
      containers: versionAtLeast(ctx, '1.51'),
    });
    for (const s of list) {
      if (!versionAtLeast(ctx, '1.44')) s.VirtualSize = s.Size;
      if (!versionAtLeast(ctx, '1.43') && s.RepoTags.length === 0 && s.RepoDigests.length === 0) {
        s.RepoTags = ['<none>:<none>'];
        s.RepoDigests = ['<none>@<none>'];
      }
    }
    return list;
  });

  r.post('/images/create', async (ctx) => {
    const q = ctx.query;
    const fromImage = q.get('fromImage');
    const fromSrc = q.get('fromSrc');
    if (fromImage) return pullRoute(ctx, engine);
    if (!fromSrc) throw invalid('either fromImage or fromSrc must be given');
    const opts = {
      repo: q.get('repo') || undefined,
      tag: q.get('tag') || undefined,
      message: q.get('message') || undefined,
      changes: q.getAll('changes'),
      platform: q.get('platform') || undefined,
    };
    if (fromSrc === '-') {
      // Nothing is written before the import is done, so its errors keep their HTTP status.
      const id = await images.importImage(ctx.req, opts);
      const out = jsonStream(ctx.res);
      out.send({ status: id });
      out.end();
      return HANDLED;
    }
    const url = /^https?:\/\//i.test(fromSrc) ? fromSrc : `http://${fromSrc}`;
    let parsed: URL;
    try {
      parsed = new URL(url);
    } catch {
      throw invalid(`invalid URL: ${fromSrc}`);
    }
    const resp = await fetch(parsed).catch((err: unknown) => {
      throw systemError(`downloading ${url}: ${(err as Error).message}`, err);
    });
    if (!resp.ok || !resp.body) throw systemError(`downloading ${url}: HTTP ${resp.status}`);
    const out = jsonStream(ctx.res);
    out.send({ status: 'Downloading from ' + url });
    const id = await images.importImage(Readable.fromWeb(resp.body as WebReadableStream<Uint8Array>), opts);
    out.send({ status: id });
    out.end();
    return HANDLED;
  });

  r.post('/images/load', async (ctx) => {
    const quiet = qBool(ctx.query, 'quiet');
    // Load answers 200 at once and reports failures inside the stream.
    const out = jsonStream(ctx.res);
    await images.load(ctx.req, quiet, (msg) => out.send(msg));
    out.end();
    return HANDLED;
  });

  r.get('/images/get', (ctx) => {
    return sendTar(ctx, images.save(ctx.query.getAll('names').filter((n) => n !== '')));
  });

  r.post('/images/prune', async (ctx) => images.prune(qFilters(ctx.query)));

  r.get('/images/{name*}/get', (ctx) => sendTar(ctx, images.save([ctx.params.name!])));

  r.get('/images/{name*}/json', async (ctx) => inspectForVersion(ctx, await images.inspect(ctx.params.name!)));

  r.get('/images/{name*}/history', async (ctx) => images.history(ctx.params.name!));

  r.post('/images/{name*}/tag', async (ctx) => {
    await images.tag(ctx.params.name!, ctx.query.get('repo') ?? '', ctx.query.get('tag') || undefined);
    return reply(201);
  });

  r.delete('/images/{name*}', async (ctx) =>
    images.remove(ctx.params.name!, { force: qBool(ctx.query, 'force'), noprune: qBool(ctx.query, 'noprune') }),
  );
}
