/**
 * Stream a byte range of a file to an HTTP response with a few reused
 * buffers: one is filled from the file while the others are being written
 * to the socket. A fresh buffer per read (what fs.ReadStream does) makes the
 * garbage collector the largest cost of serving big blobs.
 */
import { spawn } from 'node:child_process';
import { existsSync } from 'node:fs';
import { open } from 'node:fs/promises';
import type { ServerResponse } from 'node:http';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { TLSSocket } from 'node:tls';

const CHUNK = 1 << 20;
/** Buffers in rotation: reads run ahead of the socket by up to BUFFERS - 1 chunks. */
const BUFFERS = 4;

function writeChunk(res: ServerResponse, chunk: Buffer): Promise<void> {
  return new Promise((resolve, reject) => {
    const onClose = () => reject(Object.assign(new Error('client closed the connection'), { code: 'ECONNRESET' }));
    res.once('close', onClose);
    res.write(chunk, (err) => {
      res.off('close', onClose);
      if (err) reject(err);
      else resolve();
    });
  });
}

/** Below this size a process start costs more than the copies it saves. */
const SENDFILE_MIN = 4 << 20;

const here = dirname(fileURLToPath(import.meta.url));
const projectRoot = here.includes('/dist/') ? join(here, '..', '..', '..') : join(here, '..', '..');
const SENDFILE_HELPER = join(projectRoot, 'native', 'build', 'berth-sendfile');
let helperAvailable: boolean | undefined;

/**
 * Send a byte range of a file as the body of `res`, whose headers are set
 * (Content-Length included). Large ranges on plain-TCP connections go through
 * native/berth-sendfile: the kernel copies page cache to socket, no bytes
 * pass through this process. Otherwise, and over TLS, buffers in rotation.
 */
export async function sendFileRange(res: ServerResponse, path: string, start: number, end: number): Promise<void> {
  helperAvailable ??= existsSync(SENDFILE_HELPER);
  const socket = res.socket;
  if (helperAvailable && end - start + 1 >= SENDFILE_MIN && socket && !(socket instanceof TLSSocket)) {
    await sendWithHelper(res, path, start, end - start + 1);
    return;
  }
  await sendBuffered(res, path, start, end);
}

/**
 * The headers go out first (an empty write flushes them; its callback says
 * they reached the kernel), then the helper writes the body on a duplicate
 * of the socket's descriptor while this process leaves the socket alone.
 * Node's response then ends with no bytes of its own: it does not count the
 * body against Content-Length, and the connection stays usable.
 */
async function sendWithHelper(res: ServerResponse, path: string, start: number, length: number): Promise<void> {
  await writeChunk(res, Buffer.alloc(0));
  // The descriptor number, not the Socket: given a Socket, child_process
  // would stop reading it (it treats it as the child's from then on), and
  // the next request on this keep-alive connection would never be read.
  const fd = (res.socket as unknown as { _handle?: { fd?: number } })._handle?.fd;
  if (fd === undefined || fd < 0) {
    await sendBuffered(res, path, start, start + length - 1);
    return;
  }
  const child = spawn(SENDFILE_HELPER, [path, String(start), String(length)], { stdio: ['ignore', fd, 'pipe'] });
  let stderr = '';
  child.stderr!.on('data', (d: Buffer) => { stderr += d.toString(); });
  const status = await new Promise<number | string>((resolve) => {
    child.once('error', (err) => resolve(err.message));
    child.once('close', (code, signal) => resolve(code ?? signal ?? 'unknown'));
  });
  if (status !== 0) {
    // The client has part of a body: only closing the connection tells it.
    res.destroy();
    throw Object.assign(new Error(`sending ${path}: ${stderr.trim() || `helper exited with ${status}`}`), { code: 'ECONNRESET' });
  }
  res.end();
}

async function sendBuffered(res: ServerResponse, path: string, start: number, end: number): Promise<void> {
  const fh = await open(path, 'r');
  const slots = Array.from({ length: BUFFERS }, () => ({ buf: Buffer.allocUnsafeSlow(CHUNK), written: Promise.resolve() }));
  try {
    let pos = start;
    for (let i = 0; pos <= end; i++) {
      const slot = slots[i % BUFFERS]!;
      // The buffer's previous contents must have reached the socket before it is refilled.
      await slot.written;
      const want = Math.min(CHUNK, end - pos + 1);
      const { bytesRead } = await fh.read(slot.buf, 0, want, pos);
      if (bytesRead === 0) throw new Error(`${path} ended at ${pos}, before ${end + 1}`);
      slot.written = writeChunk(res, slot.buf.subarray(0, bytesRead));
      slot.written.catch(() => undefined);
      pos += bytesRead;
    }
    await Promise.all(slots.map((s) => s.written));
    res.end();
  } finally {
    await fh.close();
  }
}
