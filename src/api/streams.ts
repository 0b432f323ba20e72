import type { ServerResponse } from 'node:http';
import type { Duplex } from 'node:stream';
import type { Ctx } from './router.ts';
import { commonHeaders } from './server.ts';

/** docker's stream multiplexing header: [stream, 0, 0, 0, size (big-endian u32)]. */
export function frameHeader(stream: 0 | 1 | 2, size: number): Buffer {
  const h = Buffer.alloc(8);
  h[0] = stream;
  h.writeUInt32BE(size, 4);
  return h;
}

export function frame(stream: 'stdin' | 'stdout' | 'stderr', data: Buffer): Buffer {
  return Buffer.concat([frameHeader(stream === 'stdin' ? 0 : stream === 'stdout' ? 1 : 2, data.length), data]);
}

/** A bidirectional stream to the client: the upgraded socket, or the HTTP response. */
export interface ClientStream {
  write(data: Buffer): void;
  end(): void;
  /** Bytes the client sends (stdin); absent for plain HTTP responses. */
  input?: Duplex;
  onClose(fn: () => void): void;
}

/**
 * Take over the connection for an attach or exec stream: answer 101 when
 * the client asked to upgrade (the docker CLI does), else 200 with the raw
 * stream content type, as docker does for older clients.
 */
export function hijack(ctx: Ctx, tty: boolean): ClientStream {
  const contentType = tty ? 'application/vnd.docker.raw-stream' : 'application/vnd.docker.multiplexed-stream';
  if (ctx.upgrade) {
    const sock = ctx.upgrade.socket;
    const headers = Object.entries({ ...commonHeaders(), 'Content-Type': contentType, Connection: 'Upgrade', Upgrade: 'tcp' })
      .map(([k, v]) => `${k}: ${v}\r\n`).join('');
    sock.write(`HTTP/1.1 101 UPGRADED\r\n${headers}\r\n`);
    if (ctx.upgrade.head.length) sock.unshift(ctx.upgrade.head);
    return {
      write: (d) => { if (!sock.destroyed) sock.write(d); },
      end: () => { if (!sock.destroyed) sock.end(); },
      input: sock,
      onClose: (fn) => sock.once('close', fn),
    };
  }
  const res: ServerResponse = ctx.res;
  res.writeHead(200, { ...commonHeaders(), 'Content-Type': contentType });
  res.flushHeaders();
  return {
    write: (d) => { if (!res.writableEnded) res.write(d); },
    end: () => { if (!res.writableEnded) res.end(); },
    input: ctx.req.socket,
    onClose: (fn) => res.once('close', fn),
  };
}

/** Start a streamed JSON response (progress messages, events, stats). */
export function jsonStream(res: ServerResponse): { send: (v: unknown) => void; end: () => void } {
  res.writeHead(200, { ...commonHeaders(), 'Content-Type': 'application/json' });
  res.flushHeaders();
  return {
    send: (v) => { if (!res.writableEnded) res.write(JSON.stringify(v) + '\n'); },
    end: () => { if (!res.writableEnded) res.end(); },
  };
}
