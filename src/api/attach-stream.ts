/**
 * What a client's input does on an attach or exec stream, shared by the
 * hijacked endpoints and the websocket one:
 *  - stdin not attached: input is ignored;
 *  - TTY: input goes through the detach-key detector; the sequence (or the
 *    end of input) ends this client's stream, the process keeps running;
 *  - no TTY: input is the process's stdin, its end closes stdin (for a
 *    container only with StdinOnce, which the engine decides).
 */
import type { Duplex } from 'node:stream';
import type { AttachHandle } from '../engine/containers.ts';
import { invalid } from '../util/errors.ts';
import { DEFAULT_DETACH_KEYS, EscapeDetector, parseDetachKeys } from '../util/detach-keys.ts';

export interface InputSource {
  on(event: 'data', fn: (d: Buffer) => void): unknown;
  on(event: 'end', fn: () => void): unknown;
  /** A socket may have been paused while its request body was read. */
  resume?(): unknown;
}

export interface InputOptions {
  stdin: boolean;
  tty: boolean;
  /** The requested sequence; empty means docker's default. Validated by the caller. */
  detachKeys: string;
  /** End this client's stream (detach). */
  end: () => void;
}

export function connectInput(input: InputSource | undefined, handle: AttachHandle, o: InputOptions): void {
  if (!input) return;
  if (!o.stdin) {
    // Read and drop, so that the client going away is noticed.
    input.on('data', () => undefined);
    input.resume?.();
    return;
  }
  if (!o.tty) {
    input.on('data', (d) => handle.stdin(d));
    input.on('end', () => handle.closeStdin());
    input.resume?.();
    return;
  }
  const detector = new EscapeDetector(parseDetachKeys(o.detachKeys || DEFAULT_DETACH_KEYS));
  let done = false;
  const detach = () => {
    if (done) return;
    done = true;
    handle.detach();
    o.end();
  };
  input.on('data', (d) => {
    if (done) return;
    const pass = detector.push(d);
    if (pass.length) handle.stdin(pass);
    if (detector.detached) detach();
  });
  input.on('end', () => {
    if (done) return;
    const rest = detector.flush();
    if (rest.length) handle.stdin(rest);
    detach();
  });
  input.resume?.();
}

/**
 * The JSON body of a request that asked to upgrade (exec start): Node hands
 * over the connection right after the head, so the body (Content-Length
 * bytes) is read from what came with the head and then from the socket.
 * Whatever follows the body is left in `upgrade.head` for the stream.
 */
export async function readUpgradeBody<T>(req: { headers: Record<string, string | string[] | undefined> }, upgrade: { socket: Duplex; head: Buffer }): Promise<T | undefined> {
  const len = Number(req.headers['content-length'] ?? 0);
  if (!Number.isInteger(len) || len <= 0) return undefined;
  let buf = upgrade.head;
  const sock = upgrade.socket;
  while (buf.length < len) {
    const chunk = await new Promise<Buffer | null>((resolve) => {
      const onData = (d: Buffer) => { cleanup(); resolve(d); };
      const onEnd = () => { cleanup(); resolve(null); };
      const cleanup = () => { sock.off('data', onData); sock.off('end', onEnd); sock.off('close', onEnd); sock.pause(); };
      sock.on('data', onData);
      sock.once('end', onEnd);
      sock.once('close', onEnd);
    });
    if (!chunk) break;
    buf = Buffer.concat([buf, chunk]);
  }
  upgrade.head = buf.subarray(len);
  const text = buf.subarray(0, len).toString('utf8').trim();
  if (!text) return undefined;
  try {
    return JSON.parse(text) as T;
  } catch (err) {
    throw invalid(`invalid JSON: ${(err as Error).message}`);
  }
}
