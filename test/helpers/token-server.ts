/**
 * A minimal token server for docker-registry's `token` auth: it answers the
 * Bearer challenge's realm with an RS256 JWT whose x5c header carries a
 * self-signed certificate that the registry trusts (rootcertbundle). Basic
 * credentials decide who gets push; anonymous callers get pull.
 */
import { spawnSync } from 'node:child_process';
import { createPrivateKey, createSign, X509Certificate } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { createServer } from 'node:http';
import type { Server } from 'node:http';
import { join } from 'node:path';

export class TokenServer {
  readonly dir: string;
  readonly certPath: string;
  private readonly keyPath: string;
  private server?: Server;
  port = 0;
  readonly requests: { account?: string; scopes: string[] }[] = [];
  private readonly users: Record<string, string>;
  readonly service = 'berth-test-registry';
  readonly issuer = 'berth-test-issuer';

  constructor(dir: string, users: Record<string, string>) {
    this.dir = dir;
    this.certPath = join(dir, 'token-cert.pem');
    this.keyPath = join(dir, 'token-key.pem');
    this.users = users;
  }

  get realm(): string {
    return `http://127.0.0.1:${this.port}/token`;
  }

  async start(): Promise<void> {
    const r = spawnSync('openssl', ['req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-days', '2', '-subj', '/CN=berth-test-token', '-keyout', this.keyPath, '-out', this.certPath], { encoding: 'utf8' });
    if (r.status !== 0) throw new Error(`openssl: ${r.stderr}`);
    const key = createPrivateKey(readFileSync(this.keyPath));
    const der = new X509Certificate(readFileSync(this.certPath)).raw.toString('base64');
    this.server = createServer((req, res) => {
      const u = new URL(req.url ?? '/', 'http://x');
      let account: string | undefined;
      const authz = req.headers.authorization;
      if (authz?.startsWith('Basic ')) {
        const [user, pass] = Buffer.from(authz.slice(6), 'base64').toString().split(':');
        if (!user || this.users[user] !== pass) {
          res.writeHead(401, { 'Content-Type': 'application/json' });
          res.end('{"details":"incorrect username or password"}');
          return;
        }
        account = user;
      }
      const scopes = u.searchParams.getAll('scope');
      this.requests.push({ account, scopes });
      const access = scopes.flatMap((s) => {
        const [type, name, actions] = s.split(':');
        if (type !== 'repository' || !name || !actions) return [];
        const granted = actions.split(',').filter((a) => a === 'pull' || (a === 'push' && account !== undefined));
        return [{ type, name, actions: granted }];
      });
      const now = Math.floor(Date.now() / 1000);
      const b64 = (v: unknown): string => Buffer.from(JSON.stringify(v)).toString('base64url');
      const head = b64({ typ: 'JWT', alg: 'RS256', x5c: [der] });
      const body = b64({ iss: this.issuer, sub: account ?? '', aud: this.service, exp: now + 300, nbf: now - 10, iat: now, jti: String(Math.random()), access });
      const sig = createSign('RSA-SHA256').update(`${head}.${body}`).sign(key).toString('base64url');
      res.writeHead(200, { 'Content-Type': 'application/json' });
      res.end(JSON.stringify({ token: `${head}.${body}.${sig}`, expires_in: 300 }));
    });
    await new Promise<void>((resolve) => this.server!.listen(0, '127.0.0.1', () => resolve()));
    this.port = (this.server.address() as { port: number }).port;
  }

  stop(): Promise<void> {
    return new Promise((resolve) => (this.server ? this.server.close(() => resolve()) : resolve()));
  }
}
