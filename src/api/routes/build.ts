import type { Router } from '../router.ts';
import { HANDLED, qBool, reply } from '../router.ts';
import { readJsonBody } from '../server.ts';
import { jsonStream } from '../streams.ts';
import type { Engine } from '../../engine/engine.ts';
import { commitContainer } from '../../engine/commit.ts';
import type { ContainerConfig } from '../../engine/container-types.ts';
import type { BuildNetwork } from '../../build/run-step.ts';
import { familiarString, parseReference, withDefaultTag } from '../../image/reference.ts';
import { errorMessage, invalid } from '../../util/errors.ts';

function jsonParam<T>(q: URLSearchParams, name: string): T | undefined {
  const v = q.get(name);
  if (!v) return undefined;
  try {
    return JSON.parse(v) as T;
  } catch {
    throw invalid(`invalid ${name}: not JSON`);
  }
}

/** berth's own header for build secrets (the classic API has none): base64 JSON of id → base64 content. */
export const SECRETS_HEADER = 'x-berth-build-secrets';

export function buildRoutes(r: Router, engine: Engine): void {
  r.post('/build', async (ctx) => {
    const q = ctx.query;
    if (q.get('remote')) throw invalid('remote build contexts are not supported: send the context as a tar');
    if (q.get('version') === '2') throw invalid('BuildKit is not supported by this daemon: use the classic builder (DOCKER_BUILDKIT=0)');
    const secrets = new Map<string, Buffer>();
    const sh = ctx.req.headers[SECRETS_HEADER];
    if (typeof sh === 'string' && sh) {
      try {
        const m = JSON.parse(Buffer.from(sh, 'base64').toString()) as Record<string, string>;
        for (const [k, v] of Object.entries(m)) secrets.set(k, Buffer.from(v, 'base64'));
      } catch {
        throw invalid('invalid build secrets header');
      }
    }
    const net = q.get('networkmode') || 'default';
    // A client that hangs up (Ctrl-C) cancels the build at its next step.
    const ac = new AbortController();
    let finished = false;
    ctx.res.once('close', () => { if (!finished) ac.abort(); });
    const params = {
      dockerfile: q.get('dockerfile') || 'Dockerfile',
      tags: q.getAll('t').filter(Boolean),
      buildArgs: jsonParam<Record<string, string | null>>(q, 'buildargs') ?? {},
      labels: jsonParam<Record<string, string>>(q, 'labels') ?? {},
      target: q.get('target') || undefined,
      noCache: qBool(q, 'nocache'),
      pull: qBool(q, 'pull'),
      network: (net === 'bridge' ? 'default' : net) as BuildNetwork,
      secrets,
      signal: ac.signal,
    };
    engine.builder.validate(params);
    const quiet = qBool(q, 'q');
    let out: ReturnType<typeof jsonStream> | undefined;
    try {
      const id = await engine.builder.build(ctx.req, params, () => {
        const o = jsonStream(ctx.res);
        out = o;
        return { write: (text) => { if (!quiet) o.send({ stream: text }); } };
      });
      const o = out!;
      o.send({ aux: { ID: id } });
      if (!quiet) {
        o.send({ stream: `Successfully built ${id.slice(7, 19)}\n` });
        for (const t of params.tags) o.send({ stream: `Successfully tagged ${familiarString(withDefaultTag(parseReference(t)))}\n` });
      }
      finished = true;
      o.end();
    } catch (err) {
      finished = true;
      if (!out) throw err;
      const message = errorMessage(err);
      const code = /returned a non-zero code: (\d+)$/.exec(message)?.[1];
      out.send({ errorDetail: { ...(code ? { code: Number(code) } : {}), message }, error: message });
      out.end();
    }
    return HANDLED;
  });

  r.post('/build/prune', async () => engine.builder.prune());

  r.post('/build/cancel', () => reply(200));

  r.post('/commit', async (ctx) => {
    const q = ctx.query;
    const container = q.get('container');
    if (!container) throw invalid('container is required');
    const body = await readJsonBody<Partial<ContainerConfig>>(ctx.req).catch(() => undefined);
    const id = await commitContainer(engine, {
      container,
      repo: q.get('repo') || undefined,
      tag: q.get('tag') || undefined,
      comment: q.get('comment') || undefined,
      author: q.get('author') || undefined,
      pause: q.has('pause') ? qBool(q, 'pause') : true,
      changes: q.getAll('changes').filter(Boolean),
      config: body ?? undefined,
    });
    return reply(201, { Id: id });
  });
}
