import type { Router } from '../router.ts';
import { HANDLED, qBool, qFilters, qInt, reply, versionAtLeast } from '../router.ts';
import { readJsonBody, commonHeaders } from '../server.ts';
import { frame, hijack } from '../streams.ts';
import { connectInput } from '../attach-stream.ts';
import { checkDetachKeys } from './exec.ts';
import type { Engine } from '../../engine/engine.ts';
import type { CreateRequest } from '../../engine/container-create.ts';
import type { AttachSink } from '../../engine/containers.ts';
import { filterContainers, summary } from '../../engine/container-view.ts';
import { readOnlyMountsNonRecursive } from '../../volume/mount-spec.ts';
import { invalid } from '../../util/errors.ts';
import { parseTimeArg } from '../../util/time.ts';

export function containerRoutes(r: Router, engine: Engine): void {
  const cs = engine.containers;

  r.get('/containers/json', (ctx) => {
    const all = qBool(ctx.query, 'all');
    const limit = qInt(ctx.query, 'limit') ?? -1;
    let recs = filterContainers(cs.list(), qFilters(ctx.query), (ref) => cs.store.find(ref), engine.imageStore);
    if (!all && limit <= 0) recs = recs.filter((c) => c.State.Running || c.State.Status === 'restarting' || c.State.Status === 'paused');
    recs.sort((a, b) => (a.Created < b.Created ? 1 : a.Created > b.Created ? -1 : 0));
    if (limit > 0) recs = recs.slice(0, limit);
    const out = recs.map((c) => summary(c, engine.imageStore));
    if (!qBool(ctx.query, 'size')) return out;
    return Promise.all(out.map(async (s, i) => ({ ...s, ...(await cs.sizes(recs[i]!)) })));
  });

  r.post('/containers/create', async (ctx) => {
    const body = await readJsonBody<CreateRequest>(ctx.req);
    if (!body) throw invalid('config cannot be empty in order to create a container');
    if (!versionAtLeast(ctx, '1.44')) readOnlyMountsNonRecursive(body.HostConfig?.Mounts);
    const res = await cs.create(body, ctx.query.get('name') || undefined);
    return reply(201, res);
  });

  r.get('/containers/{id}/json', async (ctx) => {
    const rec = cs.find(ctx.params.id!);
    const { berth: _own, ...inspect } = rec;
    const out: Record<string, unknown> = { ...inspect, ExecIDs: engine.execs.idsFor(rec.Id), GraphDriver: { Name: 'overlay2', Data: { UpperDir: `${cs.store.dir(rec.Id)}/upper`, WorkDir: `${cs.store.dir(rec.Id)}/work`, MergedDir: `${cs.store.dir(rec.Id)}/rootfs` } } };
    if (qBool(ctx.query, 'size')) Object.assign(out, await cs.sizes(rec));
    if (!versionAtLeast(ctx, '1.45')) {
      // Older clients expect the image name in Config.Image exactly as given.
      out.Config = rec.Config;
    }
    return out;
  });

  r.post('/containers/{id}/start', async (ctx) => {
    await cs.start(ctx.params.id!);
    return reply(204);
  });

  r.post('/containers/{id}/stop', async (ctx) => {
    await cs.stop(ctx.params.id!, { signal: ctx.query.get('signal') || undefined, timeout: qInt(ctx.query, 't') });
    return reply(204);
  });

  r.post('/containers/{id}/restart', async (ctx) => {
    await cs.restart(ctx.params.id!, { signal: ctx.query.get('signal') || undefined, timeout: qInt(ctx.query, 't') });
    return reply(204);
  });

  r.post('/containers/{id}/kill', async (ctx) => {
    await cs.kill(ctx.params.id!, ctx.query.get('signal') || 'KILL');
    return reply(204);
  });

  r.post('/containers/{id}/rename', async (ctx) => {
    await cs.rename(ctx.params.id!, ctx.query.get('name') ?? '');
    return reply(204);
  });

  r.post('/containers/{id}/resize', (ctx) => {
    cs.resize(ctx.params.id!, qInt(ctx.query, 'h') ?? 0, qInt(ctx.query, 'w') ?? 0);
    return reply(200, '');
  });

  r.delete('/containers/{id}', async (ctx) => {
    await cs.remove(ctx.params.id!, { force: qBool(ctx.query, 'force'), volumes: qBool(ctx.query, 'v') });
    return reply(204);
  });

  r.post('/containers/{id}/wait', async (ctx) => {
    const condition = (ctx.query.get('condition') || 'not-running') as 'not-running' | 'next-exit' | 'removed';
    cs.find(ctx.params.id!);
    // Headers go out at once: clients start the container only after the wait is registered.
    const ac = new AbortController();
    const pending = cs.wait(ctx.params.id!, condition, ac.signal);
    ctx.res.writeHead(200, { ...commonHeaders(), 'Content-Type': 'application/json' });
    ctx.res.flushHeaders();
    ctx.res.once('close', () => ac.abort());
    try {
      const result = await pending;
      ctx.res.end(JSON.stringify(result) + '\n');
    } catch (err) {
      ctx.res.end(JSON.stringify({ StatusCode: -1, Error: { Message: (err as Error).message } }) + '\n');
    }
    return HANDLED;
  });

  r.post('/containers/{id}/attach', async (ctx) => {
    const rec = cs.find(ctx.params.id!);
    const q = ctx.query;
    const tty = rec.Config.Tty;
    const detachKeys = checkDetachKeys(q.get('detachKeys'));
    const stream = hijack(ctx, tty);
    const sink: AttachSink = {
      stdout: qBool(q, 'stdout'),
      stderr: qBool(q, 'stderr'),
      write: (s, d) => stream.write(tty ? d : frame(s, d)),
      end: () => stream.end(),
    };
    const handle = await cs.attach(rec.Id, sink, { stdin: qBool(q, 'stdin'), logs: qBool(q, 'logs'), stream: qBool(q, 'stream') });
    connectInput(stream.input, handle, { stdin: qBool(q, 'stdin'), tty, detachKeys, end: () => { handle.detach(); stream.end(); } });
    stream.onClose(() => handle.detach());
    return HANDLED;
  });

  r.get('/containers/{id}/logs', async (ctx) => {
    const q = ctx.query;
    const rec = cs.find(ctx.params.id!);
    const stdout = qBool(q, 'stdout');
    const stderr = qBool(q, 'stderr');
    if (!stdout && !stderr) throw invalid('Bad parameters: you must choose at least one stream');
    const tailRaw = q.get('tail');
    const tail = !tailRaw || tailRaw === 'all' ? -1 : Number(tailRaw);
    if (!Number.isInteger(tail)) throw invalid(`invalid value for "tail": "${tailRaw}"`);
    const opts = {
      stdout, stderr, tail,
      follow: qBool(q, 'follow'),
      since: q.get('since') ? parseTimeArg(q.get('since')!) : 0,
      until: q.get('until') ? parseTimeArg(q.get('until')!) : 0,
    };
    const timestamps = qBool(q, 'timestamps');
    const ac = new AbortController();
    ctx.res.once('close', () => ac.abort());
    const gen = cs.logs(rec.Id, opts, ac.signal);
    const tty = rec.Config.Tty;
    ctx.res.writeHead(200, { ...commonHeaders(), 'Content-Type': tty ? 'application/vnd.docker.raw-stream' : 'application/vnd.docker.multiplexed-stream' });
    ctx.res.flushHeaders();
    for await (const rec2 of gen) {
      const text = timestamps ? `${rec2.time} ${rec2.log}` : rec2.log;
      const data = Buffer.from(text);
      ctx.res.write(tty ? data : frame(rec2.stream, data));
    }
    ctx.res.end();
    return HANDLED;
  });

  r.post('/containers/prune', async (ctx) => engine.prune.containersPrune(qFilters(ctx.query)));
}
