/**
 * Registry routes: pull (the fromImage form of POST /images/create), push,
 * distribution inspect and the login check. Progress goes out as docker's
 * JSON message stream; the response head is only written with the first
 * message, so a pull refused before anything happened (unknown manifest,
 * denied) is a plain HTTP error, as with dockerd.
 */
import type { ServerResponse } from 'node:http';
import type { Router, Ctx } from '../router.ts';
import { HANDLED } from '../router.ts';
import { readJsonBody } from '../server.ts';
import { jsonStream } from '../streams.ts';
import type { Engine } from '../../engine/engine.ts';
import { decodeRegistryAuth, normaliseAuth } from '../../distribution/auth-config.ts';
import type { AuthConfig } from '../../distribution/auth-config.ts';
import type { ProgressMessage, ProgressSink } from '../../distribution/progress.ts';
import { invalid } from '../../util/errors.ts';

function authOf(ctx: Ctx): AuthConfig | undefined {
  const h = ctx.req.headers['x-registry-auth'];
  return decodeRegistryAuth(Array.isArray(h) ? h[0] : h);
}

/** A JSON message stream that starts the response only when the first message is sent. */
function lazyStream(res: ServerResponse): { sink: ProgressSink; end: () => void } {
  let out: ReturnType<typeof jsonStream> | undefined;
  return {
    sink: (msg: ProgressMessage) => {
      out ??= jsonStream(res);
      out.send(msg);
    },
    end: () => {
      out ??= jsonStream(res);
      out.end();
    },
  };
}

/** POST /images/create with fromImage: the pull. */
export async function pullRoute(ctx: Ctx, engine: Engine): Promise<typeof HANDLED> {
  const q = ctx.query;
  const stream = lazyStream(ctx.res);
  await engine.distribution.pull(
    { fromImage: q.get('fromImage') ?? '', tag: q.get('tag') || undefined, platform: q.get('platform') || undefined, auth: authOf(ctx) },
    stream.sink,
  );
  stream.end();
  return HANDLED;
}

export function distributionRoutes(r: Router, engine: Engine): void {
  r.post('/images/{name*}/push', async (ctx) => {
    const stream = lazyStream(ctx.res);
    await engine.distribution.push(ctx.params.name!, ctx.query.get('tag') || undefined, authOf(ctx), stream.sink);
    stream.end();
    return HANDLED;
  });

  r.get('/distribution/{name*}/json', async (ctx) => engine.distribution.inspect(ctx.params.name!, authOf(ctx)));

  r.post('/auth', async (ctx) => {
    const body = await readJsonBody<Record<string, unknown>>(ctx.req);
    if (!body || typeof body !== 'object') throw invalid('a JSON body with the credentials is required');
    return engine.distribution.login(normaliseAuth(body));
  });
}
