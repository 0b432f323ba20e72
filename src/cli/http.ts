/**
 * A small HTTP/1.1 client for the CLI's conversations with the daemon.
 *
 * Why not node:http: the first request through it lazily loads and compiles
 * a good part of Node's HTTP stack, ~15 ms that every `berth run` would pay
 * on top of Node's own start-up. The daemon speaks plain HTTP/1.1 on a unix
 * socket, so this needs only: one request per connection, Content-Length or
 * chunked bodies both ways, and the switch to a raw stream on 101.
 */
import { connect } from 'node:net';
import type { Socket } from 'node:net';
import { PassThrough } from 'node:stream';

export interface HttpTarget {
  socketPath?: string;
  host?: string;
  port?: number;
}

export interface HttpRequest {
  method: string;
  path: string;
  headers: Record<string, string>;
  body?: Buffer;
  /** A request body streamed with chunked encoding. */
  stream?: NodeJS.ReadableStream;
  /**
   * Connect at once but send only once this settles (a failure drops the
   * connection and fails the request): the connection is ready when the
   * request may go.
   */
  notBefore?: Promise<unknown>;
}

/** A response: its body is this stream. */
export class HttpResponse extends PassThrough {
  statusCode = 0;
  headers: Record<string, string> = {};
}

export interface Upgraded {
  status: number;
  socket: Socket;
}

function open(target: HttpTarget): Socket {
  return target.socketPath ? connect(target.socketPath) : connect(target.port ?? 2375, target.host ?? '127.0.0.1');
}

function head(req: HttpRequest, host: string): string {
  const lines = [`${req.method} ${req.path} HTTP/1.1`, `Host: ${host}`];
  const h = { ...req.headers };
  if (req.body) h['Content-Length'] = String(req.body.length);
  else if (req.stream) h['Transfer-Encoding'] = 'chunked';
  else if (req.method === 'POST' || req.method === 'PUT') h['Content-Length'] = '0';
  for (const [k, v] of Object.entries(h)) if (k.toLowerCase() !== 'host') lines.push(`${k}: ${v}`);
  return lines.join('\r\n') + '\r\n\r\n';
}

function parseHead(text: string): { status: number; headers: Record<string, string> } {
  const [statusLine = '', ...rest] = text.split('\r\n');
  const m = /^HTTP\/1\.[01] (\d{3})/.exec(statusLine);
  if (!m) throw new Error(`malformed response from the daemon: ${statusLine.slice(0, 80)}`);
  const headers: Record<string, string> = {};
  for (const l of rest) {
    const i = l.indexOf(':');
    if (i > 0) headers[l.slice(0, i).trim().toLowerCase()] = l.slice(i + 1).trim();
  }
  return { status: Number(m[1]), headers };
}

/** Decodes a chunked body incrementally. */
class Dechunker {
  private buf: Buffer = Buffer.alloc(0);
  private remaining = -1;
  done = false;
  push(chunk: Buffer, out: (b: Buffer) => void): void {
    this.buf = this.buf.length ? Buffer.concat([this.buf, chunk]) : chunk;
    for (;;) {
      if (this.remaining < 0) {
        const nl = this.buf.indexOf('\r\n');
        if (nl < 0) return;
        const size = parseInt(this.buf.subarray(0, nl).toString(), 16);
        this.buf = this.buf.subarray(nl + 2);
        if (size === 0) {
          this.done = true;
          return;
        }
        this.remaining = size;
      }
      if (this.remaining > 0) {
        if (this.buf.length === 0) return;
        const take = Math.min(this.remaining, this.buf.length);
        out(this.buf.subarray(0, take));
        this.buf = this.buf.subarray(take);
        this.remaining -= take;
      }
      if (this.remaining === 0) {
        if (this.buf.length < 2) return;
        this.buf = this.buf.subarray(2);
        this.remaining = -1;
      }
    }
  }
}

async function writeBody(sock: Socket, req: HttpRequest): Promise<void> {
  if (req.body) sock.write(req.body);
  if (!req.stream) return;
  for await (const c of req.stream as AsyncIterable<Buffer | string>) {
    const b = typeof c === 'string' ? Buffer.from(c) : c;
    if (b.length === 0) continue;
    sock.write(`${b.length.toString(16)}\r\n`);
    sock.write(b);
    if (!sock.write('\r\n')) await new Promise((r) => sock.once('drain', r));
  }
  sock.write('0\r\n\r\n');
}

/** Where a response's body goes as it arrives. */
interface BodySink {
  write(b: Buffer): void;
  end(): void;
  fail(err: Error): void;
}

/** A response read whole: for the small JSON answers most requests get. */
export interface BufferedResponse {
  statusCode: number;
  /** The body once it has all arrived; rejects if the connection fails first. */
  body: Promise<Buffer>;
  /** Drop the connection without waiting for the body. */
  abort(): void;
}

type Head = { status: number; headers: Record<string, string> };

/**
 * One request on its own connection. Resolves once the response head
 * arrives, with what `respond` makes of it (and the sink its body goes
 * to), or with the raw socket when the server switched protocols (101).
 */
function exchange<R>(target: HttpTarget, req: HttpRequest, respond: (head: Head, drop: () => void) => { result: R; sink: BodySink }): Promise<R | Upgraded> {
  return new Promise((resolve, reject) => {
    const sock = open(target);
    let headBuf = '';
    let sink: BodySink | undefined;
    let chunked: Dechunker | undefined;
    let left = -1;
    let ended = false;
    const finish = () => {
      if (sink && !ended) {
        ended = true;
        sink.end();
      }
      sock.destroy();
    };
    const onData = (d: Buffer) => {
      if (!sink) {
        headBuf += d.toString('latin1');
        const end = headBuf.indexOf('\r\n\r\n');
        if (end < 0) return;
        let parsed;
        try {
          parsed = parseHead(headBuf.slice(0, end));
        } catch (err) {
          sock.destroy();
          reject(err);
          return;
        }
        const rest = Buffer.from(headBuf.slice(end + 4), 'latin1');
        if (parsed.status === 101) {
          sock.off('data', onData);
          sock.off('end', finish);
          if (rest.length) sock.unshift(rest);
          resolve({ status: 101, socket: sock });
          return;
        }
        const made = respond(parsed, () => sock.destroy());
        sink = made.sink;
        if (parsed.headers['transfer-encoding']?.includes('chunked')) chunked = new Dechunker();
        else if (parsed.headers['content-length'] !== undefined) left = Number(parsed.headers['content-length']);
        else if (parsed.status === 204 || parsed.status === 304 || req.method === 'HEAD') left = 0;
        resolve(made.result);
        d = rest;
      }
      const out = sink;
      if (chunked) {
        chunked.push(d, (b) => out.write(b));
        if (chunked.done) finish();
      } else if (left >= 0) {
        const take = d.subarray(0, left);
        if (take.length) out.write(take);
        left -= take.length;
        if (left === 0) finish();
      } else if (d.length) {
        out.write(d);
      }
    };
    sock.on('data', onData);
    sock.on('end', finish);
    sock.on('error', (err) => {
      if (!sink) reject(err);
      else if (!ended) {
        // A connection that fails after the whole body arrived changes nothing.
        ended = true;
        sink.fail(err);
      }
    });
    const write = () => {
      // Head and a fixed body leave in one segment: the daemon reads both at once.
      sock.cork();
      sock.write(head(req, 'api.moby.localhost'));
      writeBody(sock, req).catch((err: Error) => sock.destroy(err));
      sock.uncork();
    };
    sock.once('connect', () => {
      if (!req.notBefore) write();
      else req.notBefore.then(write, (err: Error) => {
        sock.destroy();
        reject(err);
      });
    });
  });
}

/** Send a request; the response's body streams. */
export function send(target: HttpTarget, req: HttpRequest): Promise<HttpResponse | Upgraded> {
  return exchange(target, req, (h, drop) => {
    const res = new HttpResponse();
    // A caller that drops the response (destroy) drops the connection too.
    res.once('close', drop);
    res.statusCode = h.status;
    res.headers = h.headers;
    return { result: res, sink: { write: (b) => res.write(b), end: () => res.end(), fail: (err) => res.destroy(err) } };
  });
}

/**
 * Send a request; the response's body is gathered in memory. No stream
 * objects: on `berth run`'s path their first use costs more than the
 * request itself.
 */
export function sendBuffered(target: HttpTarget, req: HttpRequest): Promise<BufferedResponse | Upgraded> {
  return exchange(target, req, (h, drop) => {
    const chunks: Buffer[] = [];
    let settle!: { resolve: (b: Buffer) => void; reject: (e: Error) => void };
    const body = new Promise<Buffer>((resolve, reject) => {
      settle = { resolve, reject };
    });
    // A caller may drop the response without reading the body.
    body.catch(() => undefined);
    const result: BufferedResponse = {
      statusCode: h.status,
      body,
      abort: () => {
        drop();
        settle.reject(new Error('request aborted'));
      },
    };
    return { result, sink: { write: (b) => chunks.push(b), end: () => settle.resolve(Buffer.concat(chunks)), fail: (err) => settle.reject(err) } };
  });
}
