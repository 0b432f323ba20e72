/**
 * Who may do what. Three modes: none (open registry), basic (htpasswd
 * checked on every request) and token (clients trade htpasswd credentials
 * for a short-lived bearer token at this server's realm, then present it).
 * Wrong credentials are counted per client address; too many in a minute
 * and that address is refused with TOOMANYREQUESTS for the rest of it.
 */
import type { IncomingMessage, ServerResponse } from 'node:http';
import { RegistryError, regError } from '../errors.ts';
import { Htpasswd } from './htpasswd.ts';
import { TokenSigner, formatScope, parseScope } from './token.ts';
import { readBodyBuffer } from '../http.ts';
import type { AccessEntry } from './token.ts';

export type AuthMode = 'none' | 'basic' | 'token';

export interface Principal {
  user: string;
  /** What a bearer token grants; undefined when the principal is unrestricted. */
  granted?: AccessEntry[];
}

export interface AuthOptions {
  mode: AuthMode;
  htpasswd?: Htpasswd;
  signer?: TokenSigner;
  /** Token realm URL; by default this server's own /auth/token as the client addressed it. */
  realm?: string;
  readOnly: boolean;
  tls: boolean;
  /** Wrong passwords allowed per client address per minute. */
  failureLimit?: number;
}

const BASIC_REALM = 'berth-registry';
const WINDOW_MS = 60_000;
export const TOKEN_PATH = '/auth/token';

export class Authenticator {
  private readonly opts: AuthOptions;
  private readonly failures = new Map<string, { count: number; since: number }>();
  constructor(opts: AuthOptions) {
    this.opts = opts;
  }

  get mode(): AuthMode {
    return this.opts.mode;
  }

  /** Check that the request may perform `needs` (empty: any authenticated client, as for `/v2/`). */
  authorize(req: IncomingMessage, needs: AccessEntry[]): Principal {
    const { mode } = this.opts;
    if (mode === 'none') return { user: '' };
    const header = req.headers.authorization ?? '';
    if (mode === 'basic') {
      const creds = parseBasic(header);
      if (!creds) throw this.unauthorized(req, needs, 'authentication required');
      this.checkPassword(req, creds.user, creds.password, () => this.unauthorized(req, needs, 'invalid username or password'));
      return { user: creds.user };
    }
    const m = /^Bearer\s+(\S+)$/i.exec(header);
    if (!m) throw this.unauthorized(req, needs, 'authentication required');
    const claims = this.opts.signer!.verify(m[1]!);
    if (typeof claims === 'string') throw this.unauthorized(req, needs, claims, 'invalid_token');
    const principal: Principal = { user: claims.sub, granted: claims.access };
    for (const need of needs) {
      if (this.allows(principal, need)) continue;
      // A token that names the resource but not the action was issued by a
      // policy that refused it: asking again would not help.
      const named = claims.access.some((a) => a.type === need.type && a.name === need.name);
      if (named) throw regError('DENIED', 'requested access to the resource is denied', { detail: [need] });
      throw this.unauthorized(req, needs, claims.sub ? 'insufficient scope' : 'authentication required', 'insufficient_scope');
    }
    return principal;
  }

  /** Does `p` hold every action of `need` (used for the optional pull side of a cross-repository mount too)? */
  allows(p: Principal, need: AccessEntry): boolean {
    if (!p.granted) return true;
    return need.actions.every((action) =>
      p.granted!.some((a) => a.type === need.type && a.name === need.name && (a.actions.includes(action) || a.actions.includes('*'))),
    );
  }

  /** What this server's policy lets an authenticated user have of what they asked for. */
  private grant(asked: AccessEntry): AccessEntry | undefined {
    if (asked.type === 'registry' && asked.name === 'catalog') return { ...asked, actions: ['*'] };
    if (asked.type !== 'repository') return undefined;
    const allowed = this.opts.readOnly ? ['pull'] : ['pull', 'push', 'delete'];
    const actions = asked.actions.includes('*') ? allowed : asked.actions.filter((a) => allowed.includes(a));
    return { ...asked, actions };
  }

  private checkPassword(req: IncomingMessage, user: string, password: string, fail: () => RegistryError): void {
    const ip = req.socket.remoteAddress ?? '';
    const now = Date.now();
    let rec = this.failures.get(ip);
    if (rec && now - rec.since > WINDOW_MS) {
      this.failures.delete(ip);
      rec = undefined;
    }
    const limit = this.opts.failureLimit ?? 20;
    if (rec && rec.count >= limit) {
      const retry = Math.ceil((rec.since + WINDOW_MS - now) / 1000);
      throw regError('TOOMANYREQUESTS', 'too many failed login attempts', { headers: { 'Retry-After': String(Math.max(retry, 1)) } });
    }
    if (this.opts.htpasswd?.verify(user, password)) return;
    if (rec) rec.count++;
    else this.failures.set(ip, { count: 1, since: now });
    throw fail();
  }

  private realm(req: IncomingMessage): string {
    return this.opts.realm ?? `${this.opts.tls ? 'https' : 'http'}://${req.headers.host ?? 'localhost'}${TOKEN_PATH}`;
  }

  private unauthorized(req: IncomingMessage, needs: AccessEntry[], message: string, error?: string): RegistryError {
    let challenge: string;
    if (this.opts.mode === 'basic') {
      challenge = `Basic realm="${BASIC_REALM}"`;
    } else {
      const signer = this.opts.signer!;
      challenge = `Bearer realm="${this.realm(req)}",service="${signer.service}"`;
      if (needs.length) challenge += `,scope="${needs.map(formatScope).join(' ')}"`;
      if (error) challenge += `,error="${error}"`;
    }
    return regError('UNAUTHORIZED', message, { headers: { 'WWW-Authenticate': challenge }, detail: needs.length ? needs : undefined });
  }

  /** The token realm: GET with basic auth (Docker token spec) or POST with a password grant (OAuth2). */
  async handleTokenRequest(req: IncomingMessage, res: ServerResponse, url: URL): Promise<void> {
    const signer = this.opts.signer;
    if (!signer) throw regError('UNSUPPORTED', 'token authentication is not enabled', { status: 404 });
    let user: string;
    let password: string;
    let scopes: string[];
    let oauth = false;
    if (req.method === 'GET') {
      scopes = url.searchParams.getAll('scope').flatMap((s) => s.split(' ')).filter(Boolean);
      if (!req.headers.authorization) {
        // Anonymous clients get a token that grants nothing, as public
        // registries do: the registry then answers 401 with the reason,
        // which clients report at once instead of retrying the realm.
        this.sendToken(res, '', [], false);
        return;
      }
      const creds = parseBasic(req.headers.authorization);
      if (!creds) {
        throw regError('UNAUTHORIZED', 'authentication required', { headers: { 'WWW-Authenticate': `Basic realm="${BASIC_REALM}"` } });
      }
      ({ user, password } = creds);
    } else if (req.method === 'POST') {
      oauth = true;
      const form = new URLSearchParams((await readBodyBuffer(req, 64 * 1024)).toString('utf8'));
      if (form.get('grant_type') !== 'password') {
        res.writeHead(400, { 'Content-Type': 'application/json' }).end(JSON.stringify({ error: 'unsupported_grant_type' }));
        return;
      }
      user = form.get('username') ?? '';
      password = form.get('password') ?? '';
      scopes = (form.get('scope') ?? '').split(' ').filter(Boolean);
    } else {
      throw regError('UNSUPPORTED', `method ${req.method} not allowed`, { status: 405 });
    }
    this.checkPassword(req, user, password, () =>
      regError('UNAUTHORIZED', 'invalid username or password', { headers: { 'WWW-Authenticate': `Basic realm="${BASIC_REALM}"` } }),
    );
    const access: AccessEntry[] = [];
    for (const s of scopes) {
      const asked = parseScope(s);
      const granted = asked && this.grant(asked);
      if (granted) access.push(granted);
    }
    this.sendToken(res, user, access, oauth);
  }

  private sendToken(res: ServerResponse, user: string, access: AccessEntry[], oauth: boolean): void {
    const signer = this.opts.signer!;
    const { token, claims } = signer.sign(user, access);
    const issuedAt = new Date(claims.iat * 1000).toISOString();
    const body = oauth
      ? { access_token: token, token_type: 'Bearer', expires_in: signer.ttl, issued_at: issuedAt, scope: access.map(formatScope).join(' ') }
      : { token, access_token: token, expires_in: signer.ttl, issued_at: issuedAt };
    res.writeHead(200, { 'Content-Type': 'application/json', 'Cache-Control': 'no-store' }).end(JSON.stringify(body));
  }
}

function parseBasic(header: string): { user: string; password: string } | undefined {
  const m = /^Basic\s+(\S+)$/i.exec(header);
  if (!m) return undefined;
  const decoded = Buffer.from(m[1]!, 'base64').toString('utf8');
  const i = decoded.indexOf(':');
  if (i < 0) return undefined;
  return { user: decoded.slice(0, i), password: decoded.slice(i + 1) };
}
