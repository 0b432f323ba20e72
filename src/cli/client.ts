/**
 * The berth CLI's Engine API client: HTTP/1.1 over the daemon's unix socket
 * (or loopback TCP), with docker's hijacked streams for attach and exec.
 */
import type { Socket } from 'node:net';
import { send, sendBuffered, HttpResponse } from './http.ts';
import type { BufferedResponse, HttpRequest, HttpTarget, Upgraded } from './http.ts';

export const CLIENT_API_VERSION = '1.51';

export class ApiError extends Error {
  readonly status: number;
  constructor(status: number, message: string) {
    super(message);
    this.status = status;
  }
}

export type Endpoint = HttpTarget;

/** Resolve `-H` / DOCKER_HOST into where to connect. */
export function parseHost(host: string | undefined): Endpoint {
  const h = host || process.env.BERTH_HOST || process.env.DOCKER_HOST || 'unix:///run/berth/berth.sock';
  if (h.startsWith('unix://')) return { socketPath: h.slice(7) };
  if (h.startsWith('/')) return { socketPath: h };
  const m = /^(?:tcp|http):\/\/([^:/]+|\[[^\]]+\]):(\d+)\/?$/.exec(h);
  if (m) return { host: m[1]!.replace(/^\[|\]$/g, ''), port: Number(m[2]) };
  throw new Error(`unable to parse docker host \`${h}\``);
}

export type Query = Record<string, string | number | boolean | string[] | undefined>;

function queryString(q: Query | undefined): string {
  if (!q) return '';
  const sp = new URLSearchParams();
  for (const [k, v] of Object.entries(q)) {
    if (v === undefined) continue;
    if (Array.isArray(v)) for (const x of v) sp.append(k, x);
    else sp.append(k, typeof v === 'boolean' ? (v ? '1' : '0') : String(v));
  }
  const s = sp.toString();
  return s ? `?${s}` : '';
}

async function readBody(res: AsyncIterable<Buffer | string>): Promise<Buffer> {
  const chunks: Buffer[] = [];
  for await (const c of res) chunks.push(typeof c === 'string' ? Buffer.from(c) : c);
  return Buffer.concat(chunks);
}

/** The daemon's `{"message": …}` error body, or the text as it came. */
function errorFromBody(status: number, body: Buffer): ApiError {
  let msg = body.toString().trim();
  try {
    msg = (JSON.parse(msg) as { message?: string }).message ?? msg;
  } catch {
    // not JSON: keep the text
  }
  return new ApiError(status, msg || `status ${status}`);
}

async function errorFrom(res: HttpResponse): Promise<ApiError> {
  return errorFromBody(res.statusCode, await readBody(res));
}

/** What POST /containers/{id}/wait answers. */
export interface WaitStatus {
  StatusCode: number;
  Error?: { Message: string } | null;
}

type RequestOpts = { query?: Query; body?: unknown; headers?: Record<string, string>; stream?: NodeJS.ReadableStream; upgrade?: boolean; notBefore?: Promise<unknown> };

export class ApiClient {
  readonly endpoint: Endpoint;
  constructor(endpoint: Endpoint) {
    this.endpoint = endpoint;
  }

  private connectError(err: NodeJS.ErrnoException): Error {
    if (err.code === 'ENOENT' || err.code === 'ECONNREFUSED') {
      const where = this.endpoint.socketPath ? `unix://${this.endpoint.socketPath}` : `tcp://${this.endpoint.host}:${this.endpoint.port}`;
      return new Error(`Cannot connect to the berth daemon at ${where}. Is the berth daemon running?`);
    }
    return err;
  }

  private request(method: string, path: string, opts: RequestOpts): HttpRequest {
    const headers: Record<string, string> = { 'User-Agent': 'berth-cli/0.1.0', ...opts.headers };
    let body: Buffer | undefined;
    if (opts.body !== undefined) {
      body = Buffer.from(JSON.stringify(opts.body));
      headers['Content-Type'] = 'application/json';
    }
    if (opts.upgrade) {
      headers.Connection = 'Upgrade';
      headers.Upgrade = 'tcp';
    }
    return { method, path: `/v${CLIENT_API_VERSION}${path}${queryString(opts.query)}`, headers, body, stream: opts.stream, notBefore: opts.notBefore };
  }

  private async send(method: string, path: string, opts: RequestOpts): Promise<HttpResponse | Upgraded> {
    try {
      return await send(this.endpoint, this.request(method, path, opts));
    } catch (err) {
      throw this.connectError(err as NodeJS.ErrnoException);
    }
  }

  /** Send a request; resolves with the response once its head arrives. Non-2xx become ApiError. */
  async raw(method: string, path: string, opts: { query?: Query; body?: unknown; headers?: Record<string, string>; stream?: NodeJS.ReadableStream } = {}): Promise<HttpResponse> {
    const res = await this.send(method, path, opts);
    if (!(res instanceof HttpResponse)) {
      res.socket.destroy();
      throw new ApiError(res.status, 'unexpected protocol switch');
    }
    if (res.statusCode >= 400) throw await errorFrom(res);
    return res;
  }

  /** Send a request whose answer is read whole; resolves once its head arrives. Non-2xx become ApiError. */
  private async buffered(method: string, path: string, opts: { query?: Query; body?: unknown; notBefore?: Promise<unknown> } = {}): Promise<BufferedResponse> {
    let res: BufferedResponse | Upgraded;
    try {
      res = await sendBuffered(this.endpoint, this.request(method, path, opts));
    } catch (err) {
      throw this.connectError(err as NodeJS.ErrnoException);
    }
    if (!('body' in res)) {
      res.socket.destroy();
      throw new ApiError(res.status, 'unexpected protocol switch');
    }
    if (res.statusCode >= 400) throw errorFromBody(res.statusCode, await res.body);
    return res;
  }

  async json<T>(method: string, path: string, opts: { query?: Query; body?: unknown; notBefore?: Promise<unknown> } = {}): Promise<T> {
    const b = await (await this.buffered(method, path, opts)).body;
    if (b.length === 0) return undefined as T;
    return JSON.parse(b.toString()) as T;
  }

  /**
   * Register a wait for a container's exit. The daemon answers the head as
   * soon as the wait is in place, so a start sent after this resolves cannot
   * be missed; `status` resolves at the exit (or the removal).
   */
  async waitExit(id: string, condition: 'next-exit' | 'removed' | 'not-running'): Promise<{ status: Promise<WaitStatus>; cancel(): void }> {
    const res = await this.buffered('POST', `/containers/${id}/wait`, { query: { condition } });
    const status = res.body.then((b) => JSON.parse(b.toString()) as WaitStatus);
    // If the start fails the daemon may close the wait early; callers report that, not this.
    status.catch(() => undefined);
    return { status, cancel: () => res.abort() };
  }

  get<T>(path: string, query?: Query): Promise<T> {
    return this.json<T>('GET', path, { query });
  }

  post<T>(path: string, body?: unknown, query?: Query): Promise<T> {
    return this.json<T>('POST', path, { query, body });
  }

  /** POST /containers/{id}/start, its connection made now and the request sent once `after` settles. */
  startAfter(id: string, after: Promise<unknown>): Promise<void> {
    return this.json<void>('POST', `/containers/${id}/start`, { notBefore: after });
  }

  async delete(path: string, query?: Query): Promise<unknown> {
    return this.json('DELETE', path, { query });
  }

  /** Read a JSON-lines response (progress, events) message by message. */
  async *jsonLines<T>(res: AsyncIterable<Buffer | string>): AsyncGenerator<T> {
    let buf = '';
    for await (const chunk of res) {
      buf += chunk.toString();
      let i: number;
      while ((i = buf.indexOf('\n')) >= 0) {
        const line = buf.slice(0, i).trim();
        buf = buf.slice(i + 1);
        if (line) yield JSON.parse(line) as T;
      }
    }
    if (buf.trim()) yield JSON.parse(buf) as T;
  }

  /** POST with `Upgrade: tcp` and take the raw socket once the daemon switches protocols. */
  async hijack(path: string, query?: Query, body?: unknown): Promise<Socket> {
    const res = await this.send('POST', path, { query, body, upgrade: true });
    if (res instanceof HttpResponse) {
      if (res.statusCode >= 400) throw await errorFrom(res);
      throw new ApiError(res.statusCode, `the daemon did not switch protocols (status ${res.statusCode})`);
    }
    return res.socket;
  }

  close(): void {
    // Every request has its own connection, closed when its response ends.
  }
}

/** Split docker's multiplexed stream into stdout/stderr writes. */
export function demux(onData: (stream: number, data: Buffer) => void): (chunk: Buffer) => void {
  let buf: Buffer = Buffer.alloc(0);
  return (chunk: Buffer) => {
    buf = buf.length ? Buffer.concat([buf, chunk]) : chunk;
    while (buf.length >= 8) {
      const size = buf.readUInt32BE(4);
      if (buf.length < 8 + size) break;
      onData(buf[0]!, buf.subarray(8, 8 + size));
      buf = buf.subarray(8 + size);
    }
  };
}
