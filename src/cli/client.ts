/**
 * The berth CLI's Engine API client: HTTP/1.1 over the daemon's unix socket
 * (or loopback TCP), with docker's hijacked streams for attach and exec.
 */
import type { IncomingMessage, RequestOptions } from 'node:http';

// An ESM `import` of node:http builds its whole export namespace, which loads
// parts of Node that the CLI never uses and costs ~25 ms of every command's
// start-up; the CommonJS module from getBuiltinModule does not.
const { request, Agent } = process.getBuiltinModule('node:http');
import type { Socket } from 'node:net';

export const CLIENT_API_VERSION = '1.51';

export class ApiError extends Error {
  readonly status: number;
  constructor(status: number, message: string) {
    super(message);
    this.status = status;
  }
}

export interface Endpoint {
  socketPath?: string;
  host?: string;
  port?: number;
}

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

async function readBody(res: IncomingMessage): Promise<Buffer> {
  const chunks: Buffer[] = [];
  for await (const c of res) chunks.push(c as Buffer);
  return Buffer.concat(chunks);
}

export class ApiClient {
  readonly endpoint: Endpoint;
  private readonly agent = new Agent({ keepAlive: true });
  constructor(endpoint: Endpoint) {
    this.endpoint = endpoint;
  }

  private options(method: string, path: string, q?: Query, headers: Record<string, string> = {}): RequestOptions {
    return {
      ...this.endpoint,
      agent: this.agent,
      method,
      path: `/v${CLIENT_API_VERSION}${path}${queryString(q)}`,
      headers: { Host: 'api.moby.localhost', 'User-Agent': 'berth-cli/0.1.0', ...headers },
    };
  }

  /** Send a request; resolves with the response once its headers arrive. Non-2xx become ApiError. */
  raw(method: string, path: string, opts: { query?: Query; body?: unknown; headers?: Record<string, string>; stream?: NodeJS.ReadableStream } = {}): Promise<IncomingMessage> {
    const headers: Record<string, string> = { ...opts.headers };
    let payload: Buffer | undefined;
    if (opts.body !== undefined) {
      payload = Buffer.from(JSON.stringify(opts.body));
      headers['Content-Type'] = 'application/json';
      headers['Content-Length'] = String(payload.length);
    }
    return new Promise((resolve, reject) => {
      const req = request(this.options(method, path, opts.query, headers), (res) => {
        if ((res.statusCode ?? 500) >= 400) {
          readBody(res).then((b) => {
            let msg = b.toString().trim();
            try {
              msg = (JSON.parse(msg) as { message?: string }).message ?? msg;
            } catch {
              // not JSON: keep the text
            }
            reject(new ApiError(res.statusCode ?? 500, msg || `status ${res.statusCode}`));
          }, reject);
          return;
        }
        resolve(res);
      });
      req.on('error', (err: NodeJS.ErrnoException) => reject(this.connectError(err)));
      if (opts.stream) {
        opts.stream.pipe(req);
      } else {
        req.end(payload);
      }
    });
  }

  private connectError(err: NodeJS.ErrnoException): Error {
    if (err.code === 'ENOENT' || err.code === 'ECONNREFUSED') {
      const where = this.endpoint.socketPath ? `unix://${this.endpoint.socketPath}` : `tcp://${this.endpoint.host}:${this.endpoint.port}`;
      return new Error(`Cannot connect to the berth daemon at ${where}. Is the berth daemon running?`);
    }
    return err;
  }

  async json<T>(method: string, path: string, opts: { query?: Query; body?: unknown } = {}): Promise<T> {
    const res = await this.raw(method, path, opts);
    const b = await readBody(res);
    if (b.length === 0) return undefined as T;
    return JSON.parse(b.toString()) as T;
  }

  get<T>(path: string, query?: Query): Promise<T> {
    return this.json<T>('GET', path, { query });
  }

  post<T>(path: string, body?: unknown, query?: Query): Promise<T> {
    return this.json<T>('POST', path, { query, body });
  }

  async delete(path: string, query?: Query): Promise<unknown> {
    return this.json('DELETE', path, { query });
  }

  /** Read a JSON-lines response (progress, events) message by message. */
  async *jsonLines<T>(res: IncomingMessage): AsyncGenerator<T> {
    let buf = '';
    for await (const chunk of res) {
      buf += (chunk as Buffer).toString();
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
  hijack(path: string, query?: Query, body?: unknown): Promise<Socket> {
    const payload = body === undefined ? undefined : Buffer.from(JSON.stringify(body));
    const headers: Record<string, string> = { Connection: 'Upgrade', Upgrade: 'tcp' };
    if (payload) {
      headers['Content-Type'] = 'application/json';
      headers['Content-Length'] = String(payload.length);
    }
    return new Promise((resolve, reject) => {
      const req = request({ ...this.options('POST', path, query, headers), agent: false });
      req.on('upgrade', (_res, socket, head) => {
        if (head.length) socket.unshift(head);
        resolve(socket);
      });
      req.on('response', (res) => {
        readBody(res).then((b) => {
          let msg = b.toString().trim();
          try {
            msg = (JSON.parse(msg) as { message?: string }).message ?? msg;
          } catch {
            // keep text
          }
          reject(new ApiError(res.statusCode ?? 500, msg));
        }, reject);
      });
      req.on('error', (err: NodeJS.ErrnoException) => reject(this.connectError(err)));
      req.end(payload);
    });
  }

  close(): void {
    this.agent.destroy();
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
