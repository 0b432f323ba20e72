/**
 * Streaming a container's stdio through a hijacked connection, shared by
 * `run`, `start -a` and `attach`.
 */
import type { Socket } from 'node:net';
import type { ApiClient } from './client.ts';
import { demux } from './client.ts';

export interface AttachOptions {
  stdin: boolean;
  stdout: boolean;
  stderr: boolean;
  tty: boolean;
  logs?: boolean;
  detachKeys?: string;
}

/** Open the attach stream. Resolves once the daemon has switched protocols. */
export async function openAttach(client: ApiClient, id: string, o: AttachOptions): Promise<Socket> {
  return client.hijack(`/containers/${id}/attach`, {
    stream: true,
    stdin: o.stdin,
    stdout: o.stdout,
    stderr: o.stderr,
    ...(o.logs ? { logs: true } : {}),
    ...(o.detachKeys ? { detachKeys: o.detachKeys } : {}),
  });
}

/**
 * Pump the streams until the daemon ends the output. Resolves when output is
 * done (the container exited or detached).
 */
export function pumpAttach(client: ApiClient, id: string, sock: Socket, o: AttachOptions): Promise<void> {
  return new Promise((resolve) => {
    const out = process.stdout;
    const err = process.stderr;
    if (o.tty) {
      sock.on('data', (d: Buffer) => out.write(d));
    } else {
      sock.on('data', demux((s, d) => (s === 2 ? err : out).write(d)));
    }
    let restoreTty = () => undefined as void;
    if (o.stdin) {
      const input = process.stdin;
      if (o.tty && input.isTTY) {
        input.setRawMode(true);
        restoreTty = () => input.setRawMode(false);
      }
      input.on('data', (d: Buffer) => sock.write(d));
      input.on('end', () => sock.end());
    }
    if (o.tty && process.stdout.isTTY) {
      const resize = () => {
        client.post(`/containers/${id}/resize`, undefined, { h: process.stdout.rows, w: process.stdout.columns }).catch(() => undefined);
      };
      process.stdout.on('resize', resize);
      resize();
    }
    const done = () => {
      restoreTty();
      if (o.stdin) process.stdin.pause();
      resolve();
    };
    sock.on('end', done);
    sock.on('close', done);
    sock.on('error', done);
  });
}
