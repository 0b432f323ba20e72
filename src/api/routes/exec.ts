/**
 * Exec instances (create, start — hijacked or detached —, resize, inspect),
 * `top`, and the container attach websocket.
 */
import type { Router } from '../router.ts';
import { HANDLED, qBool, qInt, reply, versionAtLeast } from '../router.ts';
import { readJsonBody, commonHeaders } from '../server.ts';
import { frame, hijack } from '../streams.ts';
import { connectInput, readUpgradeBody } from '../attach-stream.ts';
import { acceptWebSocket } from '../websocket.ts';
import type { Engine } from '../../engine/engine.ts';
import type { AttachSink } from '../../engine/containers.ts';
import type { ExecCreateRequest } from '../../engine/exec.ts';
import { containerTop } from '../../engine/top.ts';
import { parseDetachKeys } from '../../util/detach-keys.ts';
import { invalid } from '../../util/errors.ts';

interface ExecStartRequest {
  Detach?: boolean;
  Tty?: boolean;
  ConsoleSize?: [number, number] | null;
}

/** Validate a `detachKeys` query value before the connection is taken over. */
export function checkDetachKeys(keys: string | null): string {
  if (keys) {
    try {
      parseDetachKeys(keys);
    } catch {
      throw invalid(`Invalid detach keys (${keys}) provided`);
    }
  }
  return keys ?? '';
}

export function execRoutes(r: Router, engine: Engine): void {
  const execs = engine.execs;
  const cs = engine.containers;

  r.post('/containers/{id}/exec', async (ctx) => {
    const body = await readJsonBody<ExecCreateRequest>(ctx.req);
    if (!body) throw invalid('exec config cannot be empty');
    return reply(201, await execs.create(ctx.params.id!, body));
  });

  r.post('/exec/{id}/start', async (ctx) => {
    const id = ctx.params.id!;
    const body = (ctx.upgrade ? await readUpgradeBody<ExecStartRequest>(ctx.req, ctx.upgrade) : await readJsonBody<ExecStartRequest>(ctx.req)) ?? {};
    const info = execs.checkStart(id);
    if (body.Detach) {
      await execs.start(id, { consoleSize: body.ConsoleSize });
      return reply(200, '');
    }
    const tty = info.tty;
    const stream = hijack(ctx, tty);
    const sink: AttachSink = {
      stdout: true,
      stderr: true,
      write: (s, d) => stream.write(tty ? d : frame(s, d)),
      end: () => stream.end(),
    };
    const handle = execs.attach(id, sink);
    connectInput(stream.input, handle, { stdin: info.openStdin, tty, detachKeys: info.detachKeys, end: () => stream.end() });
    stream.onClose(() => handle.detach());
    // A failure is reported into the stream (the engine writes it there) and in the exit code.
    await execs.start(id, { consoleSize: body.ConsoleSize }).catch(() => undefined);
    return HANDLED;
  });

  r.post('/exec/{id}/resize', (ctx) => {
    execs.resize(ctx.params.id!, qInt(ctx.query, 'h') ?? 0, qInt(ctx.query, 'w') ?? 0);
    return reply(200, '');
  });

  r.get('/exec/{id}/json', (ctx) => execs.inspect(ctx.params.id!));

  r.get('/containers/{id}/top', async (ctx) => containerTop(cs.find(ctx.params.id!), ctx.query.get('ps_args') ?? ''));

  r.get('/containers/{id}/attach/ws', async (ctx) => {
    const rec = cs.find(ctx.params.id!);
    const q = ctx.query;
    const detachKeys = checkDetachKeys(q.get('detachKeys'));
    if (!ctx.upgrade) throw invalid('websocket: the client is not using the websocket protocol: \'upgrade\' token not found in \'Connection\' header');
    const ws = acceptWebSocket(ctx.req, ctx.upgrade.socket, ctx.upgrade.head, commonHeaders());
    // Since API 1.28 output goes in binary frames; older clients get text frames.
    const binary = versionAtLeast(ctx, '1.28');
    const sink: AttachSink = {
      stdout: qBool(q, 'stdout'),
      stderr: qBool(q, 'stderr'),
      write: (_s, d) => ws.send(d, binary),
      end: () => ws.close(1000),
    };
    const handle = await cs.attach(rec.Id, sink, { stdin: qBool(q, 'stdin'), logs: qBool(q, 'logs'), stream: qBool(q, 'stream') });
    const input = {
      on(event: 'data' | 'end', fn: ((d: Buffer) => void) | (() => void)) {
        if (event === 'data') ws.on('message', fn as (d: Buffer) => void);
        else ws.on('closing', fn as () => void);
        return input;
      },
    };
    connectInput(input, handle, { stdin: qBool(q, 'stdin'), tty: rec.Config.Tty, detachKeys, end: () => ws.close(1000) });
    ws.on('close', () => handle.detach());
    return HANDLED;
  });
}
