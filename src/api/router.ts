import type { IncomingMessage, ServerResponse } from 'node:http';
import type { Duplex } from 'node:stream';
import { invalid } from '../util/errors.ts';

export const API_VERSION = '1.51';
export const MIN_API_VERSION = '1.24';

/** One API request as a handler sees it. */
export interface Ctx {
  req: IncomingMessage;
  res: ServerResponse;
  params: Record<string, string>;
  query: URLSearchParams;
  /** The API version the client asked for (or the newest, when unversioned). */
  version: string;
  /** Set for requests that asked to upgrade the connection (attach, exec start). */
  upgrade?: { socket: Duplex; head: Buffer };
}

/** What a handler returns: a JSON value, or nothing when it wrote the response itself. */
export type Handler = (ctx: Ctx) => Promise<unknown> | unknown;

export interface Reply {
  status: number;
  body?: unknown;
  headers?: Record<string, string>;
}

export function reply(status: number, body?: unknown, headers?: Record<string, string>): Reply & { __reply: true } {
  return { status, body, headers, __reply: true };
}

export function isReply(v: unknown): v is Reply {
  return typeof v === 'object' && v !== null && (v as { __reply?: unknown }).__reply === true;
}

/** Written marker: the handler has taken over the response (streams, hijacks). */
export const HANDLED = Symbol('handled');

interface Route {
  method: string;
  re: RegExp;
  keys: string[];
  handler: Handler;
}

export class Router {
  private routes: Route[] = [];

  add(method: string, pattern: string, handler: Handler): void {
    const keys: string[] = [];
    // `{name}` matches one segment, `{name*}` the rest of the path (image names contain slashes).
    const src = pattern.replace(/\{(\w+)(\*?)\}/g, (_m, k: string, star: string) => {
      keys.push(k);
      return star ? '(.+)' : '([^/]+)';
    });
    this.routes.push({ method, re: new RegExp(`^${src}$`), keys, handler });
  }

  get(p: string, h: Handler): void { this.add('GET', p, h); }
  post(p: string, h: Handler): void { this.add('POST', p, h); }
  put(p: string, h: Handler): void { this.add('PUT', p, h); }
  delete(p: string, h: Handler): void { this.add('DELETE', p, h); }
  head(p: string, h: Handler): void { this.add('HEAD', p, h); }

  match(method: string, path: string): { handler: Handler; params: Record<string, string> } | 'method' | undefined {
    let pathMatched = false;
    for (const r of this.routes) {
      const m = r.re.exec(path);
      if (!m) continue;
      pathMatched = true;
      if (r.method !== method && !(method === 'HEAD' && r.method === 'GET')) continue;
      const params: Record<string, string> = {};
      r.keys.forEach((k, i) => { params[k] = decodeURIComponent(m[i + 1]!); });
      return { handler: r.handler, params };
    }
    return pathMatched ? 'method' : undefined;
  }
}

/** Split `/v1.45/containers/json` into the version and the path. */
export function splitVersion(path: string): { version: string; path: string } {
  const m = /^\/v(\d+\.\d+)(\/.*)$/.exec(path);
  if (!m) return { version: API_VERSION, path };
  return { version: m[1]!, path: m[2]! };
}

export function compareVersions(a: string, b: string): number {
  const [am, an] = a.split('.').map(Number) as [number, number];
  const [bm, bn] = b.split('.').map(Number) as [number, number];
  return am !== bm ? am - bm : an - bn;
}

export function versionAtLeast(ctx: Ctx, v: string): boolean {
  return compareVersions(ctx.version, v) >= 0;
}

/** Query helpers with docker's loose booleans (`1`, `true`, `True`). */
export function qBool(q: URLSearchParams, name: string, def = false): boolean {
  const v = q.get(name);
  if (v === null || v === '') return def;
  return !['0', 'false', 'False', 'FALSE', 'no'].includes(v);
}

export function qInt(q: URLSearchParams, name: string): number | undefined {
  const v = q.get(name);
  if (v === null || v === '') return undefined;
  const n = Number(v);
  if (!Number.isFinite(n)) throw invalid(`invalid value for ${name}: ${v}`);
  return n;
}

/** docker's `filters` query parameter: `{"label":["a=b"]}` or the old `{"label":{"a=b":true}}`. */
export function qFilters(q: URLSearchParams): Map<string, string[]> {
  const raw = q.get('filters');
  const out = new Map<string, string[]>();
  if (!raw) return out;
  let parsed: unknown;
  try {
    parsed = JSON.parse(raw);
  } catch {
    throw invalid(`invalid filter: ${raw}`);
  }
  if (typeof parsed !== 'object' || parsed === null) throw invalid('invalid filter: not an object');
  for (const [k, v] of Object.entries(parsed as Record<string, unknown>)) {
    if (Array.isArray(v)) out.set(k, v.map(String));
    else if (typeof v === 'object' && v !== null) out.set(k, Object.keys(v));
    else throw invalid(`invalid filter value for ${k}`);
  }
  return out;
}
