/**
 * Bearer tokens for the registry's token auth: JSON Web Tokens signed with
 * HMAC-SHA256 under a secret only this server knows (random per process
 * unless a secret file is given), carrying the granted access the way the
 * Docker token spec words it: `access: [{type, name, actions}]`.
 */
import { createHmac, randomBytes, timingSafeEqual } from 'node:crypto';

export interface AccessEntry {
  type: string;
  name: string;
  actions: string[];
}

export interface TokenClaims {
  iss: string;
  sub: string;
  aud: string;
  exp: number;
  nbf: number;
  iat: number;
  jti: string;
  access: AccessEntry[];
}

const CLOCK_SKEW = 60;

const b64url = (b: Buffer | string): string => Buffer.from(b).toString('base64url');

export class TokenSigner {
  private readonly secret: Buffer;
  readonly issuer: string;
  readonly service: string;
  readonly ttl: number;
  constructor(opts: { secret?: Buffer; issuer: string; service: string; ttl: number }) {
    this.secret = opts.secret ?? randomBytes(32);
    this.issuer = opts.issuer;
    this.service = opts.service;
    this.ttl = opts.ttl;
  }

  sign(sub: string, access: AccessEntry[], now = Math.floor(Date.now() / 1000)): { token: string; claims: TokenClaims } {
    const claims: TokenClaims = { iss: this.issuer, sub, aud: this.service, exp: now + this.ttl, nbf: now - 1, iat: now, jti: randomBytes(12).toString('hex'), access };
    const head = `${b64url(JSON.stringify({ alg: 'HS256', typ: 'JWT' }))}.${b64url(JSON.stringify(claims))}`;
    const sig = createHmac('sha256', this.secret).update(head).digest('base64url');
    return { token: `${head}.${sig}`, claims };
  }

  /** The claims of a token this server signed and that is valid now, or an error message. */
  verify(token: string, now = Math.floor(Date.now() / 1000)): TokenClaims | string {
    const parts = token.split('.');
    if (parts.length !== 3) return 'malformed token';
    const [h, p, s] = parts as [string, string, string];
    let header: { alg?: unknown };
    try {
      header = JSON.parse(Buffer.from(h, 'base64url').toString()) as { alg?: unknown };
    } catch {
      return 'malformed token header';
    }
    if (header.alg !== 'HS256') return 'unsupported token algorithm';
    const want = createHmac('sha256', this.secret).update(`${h}.${p}`).digest();
    const got = Buffer.from(s, 'base64url');
    if (got.length !== want.length || !timingSafeEqual(got, want)) return 'invalid token signature';
    let claims: TokenClaims;
    try {
      claims = JSON.parse(Buffer.from(p, 'base64url').toString()) as TokenClaims;
    } catch {
      return 'malformed token claims';
    }
    if (claims.iss !== this.issuer) return 'token has the wrong issuer';
    if (claims.aud !== this.service) return 'token has the wrong audience';
    if (typeof claims.exp !== 'number' || now > claims.exp + CLOCK_SKEW) return 'token has expired';
    if (typeof claims.nbf === 'number' && now + CLOCK_SKEW < claims.nbf) return 'token is not valid yet';
    if (!Array.isArray(claims.access)) return 'malformed token claims';
    return claims;
  }
}

/** `repository:foo/bar:pull,push` → an access entry (resource class suffixes like `repository(plugin)` dropped). */
export function parseScope(scope: string): AccessEntry | undefined {
  const first = scope.indexOf(':');
  const last = scope.lastIndexOf(':');
  if (first <= 0 || last === first) return undefined;
  const type = scope.slice(0, first).replace(/\(.*\)$/, '');
  const name = scope.slice(first + 1, last);
  const actions = scope.slice(last + 1).split(',').filter(Boolean);
  if (!name) return undefined;
  return { type, name, actions };
}

export function formatScope(a: AccessEntry): string {
  return `${a.type}:${a.name}:${a.actions.join(',')}`;
}
