import { createServer } from 'node:http';
import type { IncomingMessage, Server, ServerResponse } from 'node:http';
import type { Duplex } from 'node:stream';
import { chmod, mkdir, unlink } from 'node:fs/promises';
import { dirname } from 'node:path';
import { API_VERSION, HANDLED, MIN_API_VERSION, compareVersions, isReply, splitVersion } from './router.ts';
import type { Ctx, Router } from './router.ts';
import { errorKind, errorMessage, invalid, isErrno, notFound } from '../util/errors.ts';
import type { ErrorKind } from '../util/errors.ts';
import { log } from '../util/log.ts';

const STATUS: Record<ErrorKind, number> = {
  NotFound: 404,
  Conflict: 409,
  InvalidParameter: 400,
  Forbidden: 403,
  Unauthorized: 401,
  NotModified: 304,
  Unavailable: 503,
  System: 500,
};

export function statusOf(err: unknown): number {
  return STATUS[errorKind(err)];
}

/** Headers every response carries; clients read the API version and OS from them. */
export function commonHeaders(): Record<string, string> {
  return {
    'Api-Version': API_VERSION,
    'Docker-Experimental': 'false',
    Ostype: 'linux',
    Server: `Berth/0.1.0 (linux)`,
  };
}

/** Read a request body as JSON; an empty body is `undefined`. */
export async function readJsonBody<T>(req: IncomingMessage): Promise<T | undefined> {
  const chunks: Buffer[] = [];
  for await (const c of req) chunks.push(c as Buffer);
  const text = Buffer.concat(chunks).toString('utf8').trim();
  if (!text) return undefined;
  try {
    return JSON.parse(text) as T;
  } catch (err) {
    throw invalid(`invalid JSON: ${(err as Error).message}`);
  }
}

function sendError(res: ServerResponse, err: unknown): void {
  const status = statusOf(err);
  if (status === 500) log.error('request failed', { error: errorMessage(err), stack: (err as Error)?.stack });
  if (res.headersSent) {
    // A streaming response already started: the error goes into the stream, as docker does.
    res.end(JSON.stringify({ errorDetail: { message: errorMessage(err) }, error: errorMessage(err) }) + '\n');
    return;
  }
  res.writeHead(status, { ...commonHeaders(), 'Content-Type': 'application/json' });
  res.end(status === 304 ? undefined : JSON.stringify({ message: errorMessage(err) }) + '\n');
}

function sendUpgradeError(socket: Duplex, err: unknown): void {
  const status = statusOf(err);
  const body = JSON.stringify({ message: errorMessage(err) }) + '\n';
  socket.end(`HTTP/1.1 ${status} Error\r\nContent-Type: application/json\r\nContent-Length: ${Buffer.byteLength(body)}\r\nApi-Version: ${API_VERSION}\r\n\r\n${body}`);
}

/** Validate the requested API version against the range berth serves. */
function checkVersion(version: string): void {
  if (compareVersions(version, API_VERSION) > 0) {
    throw invalid(`client version ${version} is too new. Maximum supported API version is ${API_VERSION}`);
  }
  if (compareVersions(version, MIN_API_VERSION) < 0) {
    throw invalid(`client version ${version} is too old. Minimum supported API version is ${MIN_API_VERSION}, please upgrade your client to a newer version`);
  }
}

async function dispatch(router: Router, req: IncomingMessage, res: ServerResponse | undefined, upgrade?: Ctx['upgrade']): Promise<void> {
  const url = new URL(req.url ?? '/', 'http://berth');
  const { version, path } = splitVersion(url.pathname.replace(/\/+$/, '') || '/');
  checkVersion(version);
  const m = router.match(req.method ?? 'GET', path);
  if (m === undefined) throw notFound('page not found');
  if (m === 'method') throw invalid(`method ${req.method} not allowed for ${path}`);
  const ctx: Ctx = { req, res: res as ServerResponse, params: m.params, query: url.searchParams, version, upgrade };
  const out = await m.handler(ctx);
  if (out === HANDLED || (res && res.writableEnded)) return;
  if (!res) return;
  if (isReply(out)) {
    const headers: Record<string, string> = { ...commonHeaders(), ...out.headers };
    if (out.body === undefined) {
      res.writeHead(out.status, headers);
      res.end();
    } else {
      const text = typeof out.body === 'string' ? out.body : JSON.stringify(out.body) + '\n';
      res.writeHead(out.status, { 'Content-Type': typeof out.body === 'string' ? 'text/plain; charset=utf-8' : 'application/json', ...headers });
      res.end(req.method === 'HEAD' ? undefined : text);
    }
    return;
  }
  if (out === undefined) {
    res.writeHead(204, commonHeaders());
    res.end();
    return;
  }
  res.writeHead(200, { ...commonHeaders(), 'Content-Type': 'application/json' });
  res.end(JSON.stringify(out) + '\n');
}

/** Serve the router on one `-H` address: `unix:///path`, `tcp://host:port` or `fd://` is not supported. */
export async function listen(router: Router, host: string): Promise<Server> {
  const server = createServer({ keepAliveTimeout: 60_000, requestTimeout: 0, headersTimeout: 60_000 });
  server.on('request', (req: IncomingMessage, res: ServerResponse) => {
    if (log.enabled('debug')) log.debug('request', { method: req.method, url: req.url });
    dispatch(router, req, res).catch((err) => sendError(res, err));
  });
  server.on('upgrade', (req: IncomingMessage, socket: Duplex, head: Buffer) => {
    if (log.enabled('debug')) log.debug('upgrade request', { method: req.method, url: req.url });
    socket.on('error', () => undefined);
    dispatch(router, req, undefined, { socket, head }).catch((err) => sendUpgradeError(socket, err));
  });
  const m = /^(unix|tcp):\/\/(.*)$/.exec(host);
  if (!m) throw invalid(`invalid host: ${host} (use unix:///path/to/socket or tcp://127.0.0.1:port)`);
  if (m[1] === 'unix') {
    const path = m[2]!;
    await mkdir(dirname(path), { recursive: true });
    try {
      await unlink(path);
    } catch (err) {
      if (!isErrno(err, 'ENOENT')) throw err;
    }
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen(path, () => resolve());
    });
    await chmod(path, 0o660);
  } else {
    const [h, p] = splitHostPort(m[2]!);
    if (!['127.0.0.1', 'localhost', '::1'].includes(h)) {
      throw invalid(`refusing to listen on ${host}: TCP is only served on loopback (mutual TLS is not configured)`);
    }
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen(Number(p), h, () => resolve());
    });
  }
  return server;
}

function splitHostPort(s: string): [string, string] {
  const i = s.lastIndexOf(':');
  if (i < 0) return [s, '2375'];
  return [s.slice(0, i).replace(/^\[|\]$/g, ''), s.slice(i + 1)];
}
