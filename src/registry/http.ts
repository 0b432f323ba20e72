/** Small HTTP pieces the registry's handlers share. */
import type { IncomingMessage, ServerResponse } from 'node:http';
import { RegistryError, regError } from './errors.ts';

export const API_VERSION_HEADER = 'Docker-Distribution-API-Version';

export function sendJson(res: ServerResponse, status: number, value: unknown, headers: Record<string, string | string[]> = {}, contentType = 'application/json'): void {
  const body = Buffer.from(JSON.stringify(value));
  res.writeHead(status, { ...headers, 'Content-Type': contentType, 'Content-Length': body.length });
  res.end(body);
}

export function sendEmpty(res: ServerResponse, status: number, headers: Record<string, string | string[] | number> = {}): void {
  res.writeHead(status, { ...headers, 'Content-Length': 0 });
  res.end();
}

export function sendError(req: IncomingMessage, res: ServerResponse, err: RegistryError): void {
  if (res.headersSent) {
    res.destroy();
    return;
  }
  const body = Buffer.from(err.body());
  const headers: Record<string, string | number> = { ...err.headers, 'Content-Type': 'application/json; charset=utf-8', 'Content-Length': body.length };
  // A request body nobody read would have to be drained before the next
  // request on this connection; closing is cheaper for a large one.
  if (!req.complete) headers.Connection = 'close';
  res.writeHead(err.status, headers);
  res.end(req.method === 'HEAD' ? undefined : body);
}

/** A request body small enough to hold in memory (manifests, forms); refused past `limit`. */
export async function readBodyBuffer(req: IncomingMessage, limit: number): Promise<Buffer> {
  const tooBig = () => regError('SIZE_INVALID', `request body larger than ${limit} bytes`, { status: 413 });
  if (Number(req.headers['content-length'] ?? 0) > limit) throw tooBig();
  const chunks: Buffer[] = [];
  let n = 0;
  for await (const c of req) {
    const chunk = c as Buffer;
    n += chunk.length;
    if (n > limit) throw tooBig();
    chunks.push(chunk);
  }
  return Buffer.concat(chunks);
}

/** Does the request carry a body (declared length above zero, or chunked)? */
export function hasBody(req: IncomingMessage): boolean {
  if (req.headers['transfer-encoding']) return true;
  return Number(req.headers['content-length'] ?? 0) > 0;
}

/** Content-Length when declared, as a number. */
export function declaredLength(req: IncomingMessage): number | undefined {
  const v = req.headers['content-length'];
  if (v === undefined) return undefined;
  const n = Number(v);
  if (!Number.isSafeInteger(n) || n < 0) throw regError('SIZE_INVALID', `invalid Content-Length: ${v}`);
  return n;
}

/**
 * A single `Range: bytes=…` request against a blob of `size` bytes: the
 * inclusive span to send, 'unsatisfiable', or undefined for the whole blob
 * (no header, or forms this server answers with the whole blob, as RFC 9110
 * allows: several ranges, other units).
 */
export function parseByteRange(header: string | undefined, size: number): { start: number; end: number } | 'unsatisfiable' | undefined {
  if (!header) return undefined;
  const m = /^bytes=(\d*)-(\d*)$/.exec(header.trim());
  if (!m || (m[1] === '' && m[2] === '')) return undefined;
  if (m[1] === '') {
    const suffix = Number(m[2]);
    if (suffix === 0 || size === 0) return 'unsatisfiable';
    return { start: Math.max(size - suffix, 0), end: size - 1 };
  }
  const start = Number(m[1]);
  const end = m[2] === '' ? size - 1 : Math.min(Number(m[2]), size - 1);
  if (start >= size || end < start) return 'unsatisfiable';
  return { start, end };
}

/** `Content-Range` of an upload chunk: `<start>-<end>` inclusive (a `bytes ` prefix and `/total` tolerated). */
export function parseContentRange(header: string | undefined): { start: number; end: number } | undefined {
  if (header === undefined) return undefined;
  const m = /^(?:bytes[ =])?(\d+)-(\d+)(?:\/(?:\d+|\*))?$/.exec(header.trim());
  if (!m) throw regError('BLOB_UPLOAD_INVALID', `invalid Content-Range: ${header}`, { status: 416 });
  const start = Number(m[1]);
  const end = Number(m[2]);
  if (end < start) throw regError('BLOB_UPLOAD_INVALID', `invalid Content-Range: ${header}`, { status: 416 });
  return { start, end };
}

/** Media types from Accept headers (several headers and comma lists), parameters dropped. */
export function acceptedTypes(req: IncomingMessage): string[] {
  const raw = req.headersDistinct.accept ?? [];
  return raw.flatMap((h) => h.split(',')).map((t) => t.split(';')[0]!.trim()).filter(Boolean);
}

/** The `Link` header value pointing to the next page. */
export function nextLink(path: string, params: Record<string, string>): string {
  return `<${path}?${new URLSearchParams(params).toString()}>; rel="next"`;
}
