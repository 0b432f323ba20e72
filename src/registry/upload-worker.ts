/**
 * The upload writer's worker thread: it owns each session's running sha256
 * and appends the bytes the main thread copied into a shared ring to the
 * session's data file. The write of a batch (positional, in libuv's thread
 * pool) runs while this thread hashes it; the main thread is left only the
 * socket, so a push keeps several cores busy instead of one.
 *
 * Messages arrive in order; every `data` message is answered with the ring
 * bytes it frees, every request carrying `req` with a reply. Each ring is
 * used by one upload at a time, so its bytes are freed in the order they
 * were filled.
 */
import { createHash } from 'node:crypto';
import type { Hash } from 'node:crypto';
import { closeSync, fstatSync, ftruncateSync, openSync, readSync, write } from 'node:fs';
import { parentPort } from 'node:worker_threads';

export type WorkerRequest =
  | { op: 'open'; id: string; path: string; rebuild: boolean; req: number }
  | { op: 'begin'; id: string; path: string; req: number }
  | { op: 'ring'; ring: number; sab: SharedArrayBuffer }
  | { op: 'data'; id: string; ring: number; pos: number; len: number; waste: number }
  | { op: 'end'; id: string; ok: boolean; req: number }
  | { op: 'digest'; id: string; req: number }
  | { op: 'drop'; id: string };

export type WorkerReply = { req: number; value?: number | string; error?: string } | { ring: number; free: number };

interface Session {
  hash: Hash;
  fd?: number;
  start: number;
  /** Bytes of this chunk handed to write() so far. */
  written: number;
  inflight: number;
  idle: (() => void)[];
  saved?: Hash;
  error?: string;
}

const port = parentPort!;
const rings = new Map<number, Uint8Array>();
const sessions = new Map<string, Session>();

function session(id: string): Session {
  const s = sessions.get(id);
  if (!s) throw new Error(`upload ${id} is not open`);
  return s;
}

function hashFile(path: string, hash: Hash): number {
  const fd = openSync(path, 'r');
  const buf = Buffer.allocUnsafe(1 << 20);
  let total = 0;
  try {
    for (;;) {
      const n = readSync(fd, buf, 0, buf.length, null);
      if (n === 0) return total;
      hash.update(buf.subarray(0, n));
      total += n;
    }
  } finally {
    closeSync(fd);
  }
}

function handle(m: WorkerRequest): number | string | undefined {
  switch (m.op) {
    case 'open': {
      const hash = createHash('sha256');
      const size = m.rebuild ? hashFile(m.path, hash) : 0;
      sessions.set(m.id, { hash, start: 0, written: 0, inflight: 0, idle: [] });
      return size;
    }
    case 'begin': {
      const s = session(m.id);
      s.fd = openSync(m.path, 'r+');
      s.start = fstatSync(s.fd).size;
      s.written = 0;
      s.saved = s.hash.copy();
      s.error = undefined;
      return undefined;
    }
    case 'ring':
      rings.set(m.ring, new Uint8Array(m.sab));
      return undefined;
    case 'data': {
      const s = sessions.get(m.id);
      const free = () => port.postMessage({ ring: m.ring, free: m.len + m.waste } satisfies WorkerReply);
      if (!s || s.fd === undefined || s.error) {
        free();
        return undefined;
      }
      const view = rings.get(m.ring)!.subarray(m.pos, m.pos + m.len);
      const at = s.start + s.written;
      s.written += m.len;
      s.inflight++;
      writeAll(s.fd, view, at, (err) => {
        if (err) s.error ??= err.message;
        free();
        if (--s.inflight === 0) for (const f of s.idle.splice(0)) f();
      });
      s.hash.update(view);
      return undefined;
    }
    case 'end':
      return undefined; // answered by endChunk once the writes are done
    case 'digest':
      return session(m.id).hash.copy().digest('hex');
    case 'drop': {
      const s = sessions.get(m.id);
      sessions.delete(m.id);
      // Never close a descriptor a write is still using (its number could be reused).
      const close = () => {
        if (s?.fd !== undefined) closeSync(s.fd);
        if (s) s.fd = undefined;
      };
      if (s && s.inflight > 0) s.idle.push(close);
      else close();
      return undefined;
    }
  }
}

/** Positional write of all of `view`, continuing after short writes. */
function writeAll(fd: number, view: Uint8Array, at: number, done: (err: Error | null) => void): void {
  write(fd, view, 0, view.length, at, (err, n) => {
    if (err) done(err);
    else if (n < view.length) writeAll(fd, view.subarray(n), at + n, done);
    else done(null);
  });
}

/** Finish a chunk after its writes: keep it, or cut the file and restore the hash. */
function endChunk(m: Extract<WorkerRequest, { op: 'end' }>): void {
  const reply = (r: WorkerReply) => port.postMessage(r);
  let s: Session;
  try {
    s = session(m.id);
  } catch (err) {
    reply({ req: m.req, error: (err as Error).message });
    return;
  }
  if (s.inflight > 0) {
    s.idle.push(() => endChunk(m));
    return;
  }
  const fd = s.fd;
  s.fd = undefined;
  if (fd === undefined) {
    reply({ req: m.req, error: `upload ${m.id} has no chunk in progress` });
    return;
  }
  try {
    if (m.ok && !s.error) {
      reply({ req: m.req, value: s.written });
      return;
    }
    // All or nothing: forget this chunk.
    ftruncateSync(fd, s.start);
    s.hash = s.saved!;
    reply(s.error ? { req: m.req, error: s.error } : { req: m.req, value: undefined });
  } catch (err) {
    reply({ req: m.req, error: (err as Error).message });
  } finally {
    s.saved = undefined;
    closeSync(fd);
  }
}

port.on('message', (m: WorkerRequest) => {
  if (m.op === 'end') {
    endChunk(m);
    return;
  }
  let reply: WorkerReply | undefined;
  try {
    const value = handle(m);
    if ('req' in m) reply = { req: m.req, value };
  } catch (err) {
    if ('req' in m) reply = { req: m.req, error: (err as Error).message };
  }
  if (reply) port.postMessage(reply);
});
