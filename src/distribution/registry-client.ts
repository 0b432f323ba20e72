/**
 * One conversation with one registry endpoint over the distribution API:
 * HTTP(S) with keep-alive connections, redirects for blob downloads, and
 * authentication as registries ask for it — a `WWW-Authenticate: Bearer`
 * challenge answered by fetching a token from the realm (anonymously, with
 * basic credentials or with an identity token), or `Basic` credentials sent
 * with every request. Tokens are cached per scope for the client's life.
 */
import http from 'node:http';
import https from 'node:https';
import type { IncomingHttpHeaders, IncomingMessage } from 'node:http';
import type { Readable } from 'node:stream';
import type { AuthConfig } from './auth-config.ts';
import type { Endpoint } from './endpoints.ts';

export interface RegistryResponse {
  status: number;
  headers: IncomingHttpHeaders;
  body: IncomingMessage;
  /** The URL that answered (after redirects). */
  url: string;
}

/** An error the registry answered with (or a transport failure, status 0). */
export class RegistryError extends Error {
  readonly status: number;
  /** The first error code of the registry's JSON body (MANIFEST_UNKNOWN, UNAUTHORIZED, …). */
  readonly code: string;
  constructor(status: number, code: string, message: string) {
    super(message);
    this.status = status;
    this.code = code;
  }
  /** Worth trying the next endpoint (mirror down, TLS refused, …) rather than giving up. */
  get transport(): boolean {
    return this.status === 0;
  }
}

export type RequestBody = Buffer | (() => Readable);

export interface RequestOptions {
  headers?: Record<string, string>;
  body?: RequestBody;
  /** Content length of a streamed body (else chunked). */
  length?: number;
  /** Token scopes this request needs (`repository:library/busybox:pull`). */
  scopes: string[];
  /** Don't follow redirects (upload Location answers). */
  noRedirect?: boolean;
}

interface Challenge {
  scheme: 'bearer' | 'basic';
  realm: string;
  service?: string;
}

const agents = new Map<string, http.Agent>();

function agentFor(endpoint: Endpoint, url: URL): http.Agent {
  const tls = url.protocol === 'https:' ? endpoint.tls : undefined;
  const key = `${url.protocol}//${url.host}|${tls?.insecure ? 'i' : ''}|${tls?.ca?.length ?? 0}|${tls?.cert ? 'c' : ''}`;
  let a = agents.get(key);
  if (!a) {
    const base = { keepAlive: true, maxSockets: 32, keepAliveMsecs: 10_000 };
    if (url.protocol === 'https:') {
      a = new https.Agent({
        ...base,
        rejectUnauthorized: !(tls?.insecure ?? false),
        ...(tls?.ca ? { ca: tls.ca } : {}),
        ...(tls?.cert ? { cert: tls.cert, key: tls.key } : {}),
      });
    } else a = new http.Agent(base);
    agents.set(key, a);
  }
  return a;
}

/** Drop pooled connections (the CLI does this before exiting). */
export function closeRegistryConnections(): void {
  for (const a of agents.values()) a.destroy();
  agents.clear();
}

/** Parses `Bearer realm="…",service="…"` (and Basic) challenges. */
export function parseChallenge(header: string | undefined): Challenge | undefined {
  if (!header) return undefined;
  const m = /^\s*(\w+)\s*(.*)$/.exec(header);
  if (!m) return undefined;
  const scheme = m[1]!.toLowerCase();
  if (scheme !== 'bearer' && scheme !== 'basic') return undefined;
  const params: Record<string, string> = {};
  const re = /(\w+)\s*=\s*(?:"((?:[^"\\]|\\.)*)"|([^\s,]+))/g;
  let p: RegExpExecArray | null;
  while ((p = re.exec(m[2]!)) !== null) params[p[1]!.toLowerCase()] = p[2] !== undefined ? p[2].replace(/\\(.)/g, '$1') : p[3]!;
  const out: Challenge = { scheme, realm: params.realm ?? '' };
  if (params.service !== undefined) out.service = params.service;
  return out;
}

/** Reads a whole (small) body. */
export async function readAll(body: AsyncIterable<Buffer | string>, limit = 64 << 20): Promise<Buffer> {
  const chunks: Buffer[] = [];
  let n = 0;
  for await (const c of body) {
    const b = typeof c === 'string' ? Buffer.from(c) : c;
    n += b.length;
    if (n > limit) throw new RegistryError(0, 'SIZE_INVALID', `response larger than ${limit} bytes`);
    chunks.push(b);
  }
  return Buffer.concat(chunks);
}

/** docker's wording of a registry error body: `manifest unknown: manifest unknown`. */
async function errorFromResponse(res: RegistryResponse, method: string): Promise<RegistryError> {
  let text = '';
  try {
    text = method === 'HEAD' ? '' : (await readAll(res.body, 1 << 20)).toString();
  } catch {
    // the body is only decoration
  }
  try {
    const j = JSON.parse(text) as { errors?: { code?: string; message?: string; detail?: unknown }[] };
    const e = j.errors?.[0];
    if (e && e.code) {
      const code = e.code;
      const words = code.toLowerCase().replace(/_/g, ' ');
      return new RegistryError(res.status, code, e.message ? `${words}: ${e.message}` : words);
    }
  } catch {
    // not JSON
  }
  const codeByStatus: Record<number, string> = { 401: 'UNAUTHORIZED', 403: 'DENIED', 404: 'NOT_FOUND', 416: 'RANGE_INVALID', 429: 'TOOMANYREQUESTS' };
  const statusText = http.STATUS_CODES[res.status] ?? '';
  return new RegistryError(res.status, codeByStatus[res.status] ?? 'UNKNOWN', `unexpected status from ${method} request to ${res.url}: ${res.status} ${statusText}`.trim());
}

export class RegistryClient {
  readonly endpoint: Endpoint;
  private readonly auth: AuthConfig | undefined;
  private challenge: Challenge | undefined;
  private readonly tokens = new Map<string, Promise<string>>();
  private readonly userAgent: string;

  constructor(endpoint: Endpoint, auth: AuthConfig | undefined, userAgent = 'berth/0.1.0') {
    this.endpoint = endpoint;
    this.auth = auth;
    this.userAgent = userAgent;
  }

  get hasCredentials(): boolean {
    return !!(this.auth && (this.auth.username || this.auth.identitytoken || this.auth.registrytoken));
  }

  /**
   * GET /v2/ once, as docker does before talking to an endpoint: it shows
   * whether the endpoint answers at all (so the next one can be tried
   * before any progress is reported) and learns its auth challenge.
   */
  async ping(): Promise<void> {
    const res = await this.send('GET', `${this.endpoint.url}/v2/`, { scopes: [] }, undefined);
    res.body.resume();
    if (res.status === 401) this.challenge = parseChallenge(res.headers['www-authenticate'] as string | undefined);
  }

  /** A request that must succeed with one of `ok` statuses; other answers become RegistryError. */
  async expect(method: string, path: string, ok: number[], opts: RequestOptions): Promise<RegistryResponse> {
    const res = await this.request(method, path, opts);
    if (!ok.includes(res.status)) throw await errorFromResponse(res, method);
    return res;
  }

  /** Sends a request, answering an auth challenge once. The caller owns (must consume or destroy) the body. */
  async request(method: string, path: string, opts: RequestOptions): Promise<RegistryResponse> {
    const url = /^https?:\/\//.test(path) ? path : this.endpoint.url + path;
    let res = await this.send(method, url, opts, await this.authorization(opts.scopes));
    if (res.status === 401) {
      const ch = parseChallenge(res.headers['www-authenticate'] as string | undefined);
      res.body.resume();
      if (ch && (!this.challenge || this.challenge.scheme !== ch.scheme || this.challenge.realm !== ch.realm)) {
        this.challenge = ch;
        this.tokens.clear();
        res = await this.send(method, url, opts, await this.authorization(opts.scopes));
      } else if (ch && ch.scheme === 'bearer') {
        // The token may have expired or lacked a scope: fetch a fresh one once.
        this.tokens.delete(opts.scopes.slice().sort().join(' '));
        res = await this.send(method, url, opts, await this.authorization(opts.scopes));
      } else {
        throw this.unauthorized(res);
      }
      if (res.status === 401) {
        res.body.resume();
        throw this.unauthorized(res);
      }
    }
    return res;
  }

  private unauthorized(res: RegistryResponse): RegistryError {
    if (this.challenge?.scheme === 'basic' && !this.hasCredentials) return new RegistryError(401, 'UNAUTHORIZED', 'no basic auth credentials');
    if (this.hasCredentials) return new RegistryError(401, 'UNAUTHORIZED', 'unauthorized: incorrect username or password');
    return new RegistryError(res.status, 'UNAUTHORIZED', 'unauthorized: authentication required');
  }

  private async authorization(scopes: string[]): Promise<string | undefined> {
    const ch = this.challenge;
    if (!ch) return undefined;
    if (ch.scheme === 'basic') {
      if (!this.auth?.username) return undefined;
      return `Basic ${Buffer.from(`${this.auth.username}:${this.auth.password ?? ''}`).toString('base64')}`;
    }
    if (this.auth?.registrytoken) return `Bearer ${this.auth.registrytoken}`;
    const key = scopes.slice().sort().join(' ');
    let t = this.tokens.get(key);
    if (!t) {
      t = this.fetchToken(ch, scopes);
      this.tokens.set(key, t);
      t.catch(() => this.tokens.delete(key));
    }
    return `Bearer ${await t}`;
  }

  private async fetchToken(ch: Challenge, scopes: string[]): Promise<string> {
    let realm: URL;
    try {
      realm = new URL(ch.realm);
    } catch {
      throw new RegistryError(401, 'UNAUTHORIZED', `invalid token realm in the registry's challenge: ${ch.realm}`);
    }
    let res: RegistryResponse;
    if (this.auth?.identitytoken) {
      const form = new URLSearchParams({ grant_type: 'refresh_token', refresh_token: this.auth.identitytoken, client_id: 'berth', access_type: 'offline' });
      if (ch.service) form.set('service', ch.service);
      if (scopes.length) form.set('scope', scopes.join(' '));
      res = await this.send('POST', realm.toString(), { scopes, body: Buffer.from(form.toString()), headers: { 'Content-Type': 'application/x-www-form-urlencoded' } }, undefined);
    } else {
      if (ch.service) realm.searchParams.set('service', ch.service);
      for (const s of scopes) realm.searchParams.append('scope', s);
      if (this.auth?.username) realm.searchParams.set('account', this.auth.username);
      const authz = this.auth?.username ? `Basic ${Buffer.from(`${this.auth.username}:${this.auth.password ?? ''}`).toString('base64')}` : undefined;
      res = await this.send('GET', realm.toString(), { scopes }, authz);
    }
    if (res.status === 401 || res.status === 403) {
      res.body.resume();
      throw new RegistryError(401, 'UNAUTHORIZED', this.hasCredentials ? 'unauthorized: incorrect username or password' : 'unauthorized: authentication required');
    }
    if (res.status !== 200) throw await errorFromResponse(res, 'GET');
    const j = JSON.parse((await readAll(res.body, 1 << 20)).toString()) as { token?: string; access_token?: string };
    const token = j.token ?? j.access_token;
    if (!token) throw new RegistryError(401, 'UNAUTHORIZED', `the token server at ${realm.origin} returned no token`);
    return token;
  }

  private send(method: string, url: string, opts: RequestOptions, authz: string | undefined, redirects = 0): Promise<RegistryResponse> {
    return new Promise((resolve, reject) => {
      const u = new URL(url);
      const headers: Record<string, string> = { 'User-Agent': this.userAgent, ...opts.headers };
      if (authz) headers.Authorization = authz;
      let stream: Readable | undefined;
      if (Buffer.isBuffer(opts.body)) headers['Content-Length'] = String(opts.body.length);
      else if (opts.body) {
        stream = opts.body();
        if (opts.length !== undefined) headers['Content-Length'] = String(opts.length);
      } else if (method === 'PUT' || method === 'POST' || method === 'PATCH') headers['Content-Length'] = '0';
      const mod = u.protocol === 'https:' ? https : http;
      const req = mod.request(u, { method, headers, agent: agentFor(this.endpoint, u) }, (res) => {
        const status = res.statusCode ?? 0;
        const loc = res.headers.location;
        if (!opts.noRedirect && (method === 'GET' || method === 'HEAD') && [301, 302, 303, 307, 308].includes(status) && loc) {
          res.resume();
          if (redirects >= 10) {
            reject(new RegistryError(0, 'UNKNOWN', `${method} "${url}": stopped after 10 redirects`));
            return;
          }
          const next = new URL(loc, u);
          // Credentials stay with the registry; storage backends get signed URLs.
          const keep = next.host === u.host ? authz : undefined;
          this.send(method, next.toString(), { ...opts, body: undefined }, keep, redirects + 1).then(resolve, reject);
          return;
        }
        resolve({ status, headers: res.headers, body: res, url });
      });
      req.on('error', (err: NodeJS.ErrnoException) => {
        stream?.destroy();
        reject(new RegistryError(0, err.code ?? 'UNKNOWN', `${method} "${url}": ${err.message}`));
      });
      if (Buffer.isBuffer(opts.body)) req.end(opts.body);
      else if (stream) {
        stream.on('error', (err) => req.destroy(err));
        stream.pipe(req);
      } else req.end();
    });
  }
}
