/**
 * `berth registry serve`: an OCI distribution (v1.1) registry over HTTP or
 * HTTPS, storing into a directory. Independent of berthd.
 */
import { createServer as createHttpServer } from 'node:http';
import type { IncomingMessage, Server, ServerResponse } from 'node:http';
import { createServer as createHttpsServer } from 'node:https';
import { readFileSync } from 'node:fs';
import type { AddressInfo } from 'node:net';
import { isValidRepositoryPath } from '../image/reference.ts';
import { errorMessage } from '../util/errors.ts';
import { Authenticator, TOKEN_PATH } from './auth/access.ts';
import type { AuthMode } from './auth/access.ts';
import { Htpasswd } from './auth/htpasswd.ts';
import { TokenSigner } from './auth/token.ts';
import { deleteBlob, deleteUpload, getBlob, getUpload, patchUpload, putUpload, startUpload } from './api-blobs.ts';
import { catalog, listTags, referrers } from './api-lists.ts';
import { deleteManifest, getManifest, putManifest } from './api-manifests.ts';
import { RegistryError, regError } from './errors.ts';
import { API_VERSION_HEADER, sendError, sendJson } from './http.ts';
import { allowedMethods, isWrite, matchRoute, requiredAccess } from './routes.ts';
import type { Ctx, Route } from './routes.ts';
import { RegistryStorage } from './storage.ts';
import { UploadSessions } from './uploads.ts';

export interface RegistryOptions {
  /** host:port, [v6]:port or :port; port 0 picks a free one. */
  addr: string;
  root: string;
  htpasswd?: string;
  tlsCert?: string;
  tlsKey?: string;
  readOnly?: boolean;
  /** Default: basic when an htpasswd file is given, else none. */
  auth?: AuthMode;
  tokenRealm?: string;
  tokenService?: string;
  tokenIssuer?: string;
  /** File whose bytes are the token signing secret (tokens then survive a restart). */
  tokenSecretFile?: string;
  tokenTtl?: number;
  /** fsync blobs before they become visible (default true). */
  durable?: boolean;
  /** Log every request to stderr. */
  accessLog?: boolean;
}

export function parseAddr(addr: string): { host: string; port: number } {
  const m = /^(?:\[([^\]]+)\]|([^:]*)):(\d+)$/.exec(addr);
  if (!m) throw new Error(`invalid address ${JSON.stringify(addr)}: want host:port`);
  const port = Number(m[3]);
  if (port > 65535) throw new Error(`invalid port in ${addr}`);
  return { host: m[1] ?? (m[2] || '0.0.0.0'), port };
}

export class RegistryServer {
  readonly storage: RegistryStorage;
  readonly uploads: UploadSessions;
  private readonly auth: Authenticator;
  private readonly readOnly: boolean;
  private readonly accessLog: boolean;
  private server?: Server;
  private tls = false;

  private constructor(opts: RegistryOptions, auth: Authenticator) {
    this.storage = new RegistryStorage(opts.root);
    this.uploads = new UploadSessions(this.storage, { durable: opts.durable ?? true });
    this.auth = auth;
    this.readOnly = opts.readOnly ?? false;
    this.accessLog = opts.accessLog ?? false;
  }

  static async start(opts: RegistryOptions): Promise<RegistryServer> {
    const mode: AuthMode = opts.auth ?? (opts.htpasswd ? 'basic' : 'none');
    if (mode !== 'none' && !opts.htpasswd) throw new Error(`--auth ${mode} needs --htpasswd`);
    if (Boolean(opts.tlsCert) !== Boolean(opts.tlsKey)) throw new Error('--tls-cert and --tls-key go together');
    const htpasswd = opts.htpasswd ? Htpasswd.load(opts.htpasswd) : undefined;
    const service = opts.tokenService ?? 'berth-registry';
    const signer =
      mode === 'token'
        ? new TokenSigner({ service, issuer: opts.tokenIssuer ?? 'berth-registry-token-issuer', ttl: opts.tokenTtl ?? 300, secret: opts.tokenSecretFile ? readFileSync(opts.tokenSecretFile) : undefined })
        : undefined;
    const tls = Boolean(opts.tlsCert);
    const auth = new Authenticator({ mode, htpasswd, signer, realm: opts.tokenRealm, readOnly: opts.readOnly ?? false, tls });
    const reg = new RegistryServer(opts, auth);
    reg.tls = tls;
    await reg.storage.init();
    const handler = (req: IncomingMessage, res: ServerResponse) => void reg.handle(req, res);
    // Large uploads take as long as they take: no whole-request timeout.
    const common = { requestTimeout: 0, headersTimeout: 60_000, keepAliveTimeout: 30_000 };
    const server = tls
      ? createHttpsServer({ ...common, cert: readFileSync(opts.tlsCert!), key: readFileSync(opts.tlsKey!) }, handler)
      : createHttpServer(common, handler);
    const { host, port } = parseAddr(opts.addr);
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen(port, host, () => {
        server.off('error', reject);
        resolve();
      });
    });
    reg.server = server;
    return reg;
  }

  get url(): string {
    const a = this.server!.address() as AddressInfo;
    const host = a.family === 'IPv6' ? `[${a.address}]` : a.address;
    return `${this.tls ? 'https' : 'http'}://${host}:${a.port}`;
  }

  async close(): Promise<void> {
    const s = this.server;
    if (!s) return;
    await new Promise<void>((resolve) => {
      s.close(() => resolve());
      s.closeAllConnections();
    });
    await this.uploads.close();
  }

  private async handle(req: IncomingMessage, res: ServerResponse): Promise<void> {
    if (this.accessLog) {
      const t0 = Date.now();
      res.once('close', () => process.stderr.write(`registry: ${req.method} ${req.url} ${res.statusCode} ${Date.now() - t0}ms\n`));
    }
    res.setHeader(API_VERSION_HEADER, 'registry/2.0');
    try {
      const url = new URL(req.url ?? '/', 'http://registry');
      const method = req.method ?? 'GET';
      if (url.pathname === TOKEN_PATH && this.auth.mode === 'token') {
        await this.auth.handleTokenRequest(req, res, url);
        return;
      }
      const route = matchRoute(url.pathname);
      if (!route) throw regError('UNSUPPORTED', `no such endpoint: ${url.pathname}`, { status: 404 });
      if ('name' in route && !isValidRepositoryPath(route.name)) {
        throw regError('NAME_INVALID', 'invalid repository name', { detail: { name: route.name } });
      }
      if (!allowedMethods(route).includes(method)) {
        throw regError('UNSUPPORTED', `method ${method} not allowed`, { status: 405, headers: { Allow: allowedMethods(route).join(', ') } });
      }
      const principal = this.auth.authorize(req, requiredAccess(route, method));
      if (this.readOnly && isWrite(method)) throw regError('UNSUPPORTED', 'the registry is in read-only mode', { status: 405 });
      await this.dispatch(route, { req, res, url, storage: this.storage, uploads: this.uploads, auth: this.auth, principal }, method);
    } catch (err) {
      if (err instanceof RegistryError) {
        sendError(req, res, err);
      } else if (req.destroyed || res.destroyed || (err as NodeJS.ErrnoException).code === 'ECONNRESET' || (err as NodeJS.ErrnoException).code === 'ERR_STREAM_PREMATURE_CLOSE') {
        // The client went away: nobody to answer.
        res.destroy();
      } else {
        process.stderr.write(`registry: ${req.method} ${req.url}: ${errorMessage(err)}\n`);
        if (res.headersSent) res.destroy();
        else sendJson(res, 500, { errors: [{ code: 'UNKNOWN', message: errorMessage(err) }] }, req.complete ? {} : { Connection: 'close' });
      }
    }
  }

  private async dispatch(route: Route, ctx: Ctx, method: string): Promise<void> {
    switch (route.kind) {
      case 'base':
        sendJson(ctx.res, 200, {});
        return;
      case 'catalog':
        return catalog(ctx);
      case 'blob':
        return method === 'DELETE' ? deleteBlob(ctx, route.name, route.digest) : getBlob(ctx, route.name, route.digest);
      case 'uploads':
        return startUpload(ctx, route.name);
      case 'upload':
        if (method === 'PATCH') return patchUpload(ctx, route.name, route.uuid);
        if (method === 'PUT') return putUpload(ctx, route.name, route.uuid);
        if (method === 'DELETE') return deleteUpload(ctx, route.name, route.uuid);
        return getUpload(ctx, route.name, route.uuid);
      case 'manifest':
        if (method === 'PUT') return putManifest(ctx, route.name, route.reference);
        if (method === 'DELETE') return deleteManifest(ctx, route.name, route.reference);
        return getManifest(ctx, route.name, route.reference);
      case 'tags':
        return listTags(ctx, route.name);
      case 'referrers':
        return referrers(ctx, route.name, route.digest);
    }
  }
}
