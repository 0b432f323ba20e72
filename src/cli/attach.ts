/**
 * Streaming a container's or an exec's stdio through a hijacked connection,
 * shared by `run`, `start -a`, `attach` and `exec`.
 */
import type { Socket } from 'node:net';
import type { ApiClient } from './client.ts';
import { demux } from './client.ts';
import { EscapeDetector, detachKeysOrDefault, enterRawMode, monitorSize } from './tty.ts';
import { proxySignals } from './sig-proxy.ts';

export interface AttachOptions {
  stdin: boolean;
  stdout: boolean;
  stderr: boolean;
  tty: boolean;
  logs?: boolean;
  detachKeys?: string;
  /** Forward the CLI's signals to the container (only without a TTY). */
  sigProxy?: boolean;
}

/** How a pumped stream ended. */
export type PumpResult = 'ended' | 'detached';

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
 * Pump the streams until the daemon ends the output or the user types the
 * detach keys (TTY mode). `resizePath` is where terminal sizes go.
 */
export function pumpStreams(client: ApiClient, sock: Socket, o: AttachOptions & { resizePath: string; nudgeSize?: boolean }): Promise<PumpResult> {
  return new Promise((resolve) => {
    const out = process.stdout;
    const err = process.stderr;
    if (o.tty) sock.on('data', (d: Buffer) => out.write(d));
    else sock.on('data', demux((s, d) => (s === 2 ? err : out).write(d)));
    let restoreTty = () => undefined as void;
    let stopSize = () => undefined as void;
    // process.stdin is made on first use, and for a file or /dev/null that
    // loads Node's file streams: only touch it when stdin is attached.
    const input = o.stdin ? process.stdin : undefined;
    let finished = false;
    const finish = (how: PumpResult) => {
      if (finished) return;
      finished = true;
      restoreTty();
      stopSize();
      if (input) {
        input.removeAllListeners('data');
        input.pause();
        (input as unknown as { unref?: () => void }).unref?.();
      }
      resolve(how);
    };
    if (input) {
      if (o.tty) restoreTty = enterRawMode();
      const detector = o.tty ? new EscapeDetector(detachKeysOrDefault(o.detachKeys)) : undefined;
      input.on('data', (d: Buffer) => {
        const pass = detector ? detector.push(d) : d;
        if (pass.length && !sock.destroyed) sock.write(pass);
        if (detector?.detached) {
          sock.destroy();
          finish('detached');
        }
      });
      input.on('end', () => {
        if (detector) {
          const rest = detector.flush();
          if (rest.length && !sock.destroyed) sock.write(rest);
        }
        // Half-close: the daemon sees the end of input, output keeps coming.
        if (!sock.destroyed) sock.end();
      });
    } else {
      sock.end();
    }
    if (o.tty) stopSize = monitorSize(client, o.resizePath, o.nudgeSize);
    sock.on('end', () => finish('ended'));
    sock.on('close', () => finish('ended'));
    sock.on('error', () => finish('ended'));
  });
}

/** Pump a container attach (run, start -a, attach). */
export function pumpAttach(client: ApiClient, id: string, sock: Socket, o: AttachOptions, nudgeSize = false): Promise<PumpResult> {
  const stopProxy = o.sigProxy && !o.tty ? proxySignals(client, id) : () => undefined;
  return pumpStreams(client, sock, { ...o, resizePath: `/containers/${id}/resize`, nudgeSize }).finally(stopProxy);
}
