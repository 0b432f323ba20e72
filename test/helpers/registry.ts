/**
 * Debian's docker-registry (the distribution reference implementation) on a
 * free loopback port with filesystem storage in a test directory, plus a few
 * raw distribution-API calls for building test images blob by blob.
 */
import { spawn, spawnSync } from 'node:child_process';
import type { ChildProcess } from 'node:child_process';
import { createHash } from 'node:crypto';
import { closeSync, mkdirSync, openSync, readFileSync, writeFileSync, rmSync } from 'node:fs';
import { createServer } from 'node:net';
import { join } from 'node:path';

export const REGISTRY_BIN = '/usr/bin/docker-registry';

export function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const s = createServer();
    s.once('error', reject);
    s.listen(0, '127.0.0.1', () => {
      const port = (s.address() as { port: number }).port;
      s.close(() => resolve(port));
    });
  });
}

export function sha256(b: Buffer | string): string {
  return `sha256:${createHash('sha256').update(b).digest('hex')}`;
}

export class TestRegistry {
  readonly dir: string;
  readonly storage: string;
  port = 0;
  proc?: ChildProcess;
  private readonly users?: Record<string, string>;
  private readonly tls: boolean;
  private readonly token?: { realm: string; service: string; issuer: string; certPath: string };

  /**
   * `users` turns on htpasswd (bcrypt) authentication; `tls` serves HTTPS
   * with a self-signed certificate; `token` turns on bearer-token auth
   * against a token server (see token-server.ts).
   */
  constructor(dir: string, users?: Record<string, string>, tls = false, token?: { realm: string; service: string; issuer: string; certPath: string }) {
    this.dir = dir;
    this.storage = join(dir, 'storage');
    this.users = users;
    this.tls = tls;
    this.token = token;
  }

  get host(): string {
    return `127.0.0.1:${this.port}`;
  }

  get log(): string {
    try {
      return readFileSync(join(this.dir, 'registry.log'), 'utf8');
    } catch {
      return '';
    }
  }

  get url(): string {
    return `${this.tls ? 'https' : 'http'}://${this.host}`;
  }

  async start(): Promise<void> {
    mkdirSync(this.storage, { recursive: true });
    this.port = await freePort();
    let auth = '';
    if (this.users) {
      const htpasswd = join(this.dir, 'htpasswd');
      writeFileSync(htpasswd, '');
      for (const [u, p] of Object.entries(this.users)) {
        const r = spawnSync('htpasswd', ['-B', '-b', htpasswd, u, p], { encoding: 'utf8' });
        if (r.status !== 0) throw new Error(`htpasswd failed: ${r.stderr}`);
      }
      auth = `auth:\n  htpasswd:\n    realm: berth-test\n    path: ${htpasswd}\n`;
    }
    if (this.token) {
      auth = `auth:\n  token:\n    realm: ${this.token.realm}\n    service: ${this.token.service}\n    issuer: ${this.token.issuer}\n    rootcertbundle: ${this.token.certPath}\n`;
    }
    let tls = '';
    if (this.tls) {
      const r = spawnSync('openssl', ['req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-days', '2', '-subj', '/CN=127.0.0.1', '-addext', 'subjectAltName=IP:127.0.0.1', '-keyout', join(this.dir, 'key.pem'), '-out', join(this.dir, 'cert.pem')], { encoding: 'utf8' });
      if (r.status !== 0) throw new Error(`openssl failed: ${r.stderr}`);
      tls = `  tls:\n    certificate: ${join(this.dir, 'cert.pem')}\n    key: ${join(this.dir, 'key.pem')}\n`;
    }
    const config = join(this.dir, 'config.yml');
    writeFileSync(
      config,
      `version: 0.1\nlog:\n  level: info\n  accesslog:\n    disabled: false\nstorage:\n  filesystem:\n    rootdirectory: ${this.storage}\n  delete:\n    enabled: true\nhttp:\n  addr: ${this.host}\n  secret: berth-test-secret\n${tls}${auth}`,
    );
    // The log goes straight to a file, so it is complete whenever a test reads it.
    const fd = openSync(join(this.dir, 'registry.log'), 'a');
    this.proc = spawn(REGISTRY_BIN, ['serve', config], { stdio: ['ignore', fd, fd] });
    closeSync(fd);
    const deadline = Date.now() + 15000;
    while (Date.now() < deadline) {
      if (this.proc.exitCode !== null) throw new Error(`docker-registry exited: ${this.log}`);
      try {
        const r = spawnSync('curl', ['-sk', '-o', '/dev/null', '-w', '%{http_code}', `${this.url}/v2/`], { encoding: 'utf8' });
        if (r.stdout === '200' || r.stdout === '401') return;
      } catch {
        // not up yet
      }
      await new Promise((r) => setTimeout(r, 50));
    }
    throw new Error(`docker-registry did not start: ${this.log}`);
  }

  async stop(): Promise<void> {
    const p = this.proc;
    if (p && p.exitCode === null && p.signalCode === null) {
      const exited = new Promise((r) => p.once('exit', r));
      p.kill('SIGTERM');
      await exited;
    }
  }

  async cleanup(): Promise<void> {
    await this.stop();
    rmSync(this.dir, { recursive: true, force: true });
  }

  /** Where the filesystem driver keeps a blob's bytes. */
  blobDataPath(digest: string): string {
    const hex = digest.slice(7);
    return join(this.storage, 'docker', 'registry', 'v2', 'blobs', 'sha256', hex.slice(0, 2), hex, 'data');
  }

  /** Uploads a blob in one POST+PUT. */
  async putBlob(repo: string, data: Buffer): Promise<{ digest: string; size: number }> {
    const digest = sha256(data);
    const start = await fetch(`${this.url}/v2/${repo}/blobs/uploads/`, { method: 'POST' });
    if (start.status !== 202) throw new Error(`upload start: ${start.status} ${await start.text()}`);
    const loc = new URL(start.headers.get('location')!, this.url);
    loc.searchParams.set('digest', digest);
    const put = await fetch(loc, { method: 'PUT', body: data, headers: { 'Content-Type': 'application/octet-stream' } });
    if (put.status !== 201) throw new Error(`upload put: ${put.status} ${await put.text()}`);
    return { digest, size: data.length };
  }

  async putManifest(repo: string, reference: string, mediaType: string, body: unknown): Promise<{ digest: string; size: number }> {
    const bytes = Buffer.from(JSON.stringify(body));
    const r = await fetch(`${this.url}/v2/${repo}/manifests/${reference}`, { method: 'PUT', body: bytes, headers: { 'Content-Type': mediaType } });
    if (r.status !== 201) throw new Error(`manifest put: ${r.status} ${await r.text()}`);
    return { digest: sha256(bytes), size: bytes.length };
  }

  /** Lines of the access log that fetched the blob's bytes. */
  blobGets(digest: string): number {
    return this.log.split('\n').filter((l) => l.includes(`"GET /v2/`) && l.includes(`/blobs/${digest}`)).length;
  }
}

export interface BuiltImage {
  manifest: { digest: string; size: number; mediaType: string };
  config: { digest: string; size: number };
  layer: { digest: string; size: number };
}

/**
 * Pushes a one-layer image built from a rootfs tar: `compress` picks the
 * layer encoding, the manifest is OCI (zstd, plain) or Docker schema 2 (gzip).
 */
export async function pushTarImage(reg: TestRegistry, repo: string, tag: string | undefined, tar: Buffer, opts: { compress: 'gzip' | 'zstd' | 'none'; arch?: string; variant?: string; cmd?: string[] }): Promise<BuiltImage> {
  const zlib = await import('node:zlib');
  const layerBytes = opts.compress === 'gzip' ? zlib.gzipSync(tar) : opts.compress === 'zstd' ? zlib.zstdCompressSync(tar) : tar;
  const layer = await reg.putBlob(repo, layerBytes);
  const cfg = {
    architecture: opts.arch ?? 'amd64',
    os: 'linux',
    ...(opts.variant ? { variant: opts.variant } : {}),
    created: '2024-01-01T00:00:00Z',
    config: { Cmd: opts.cmd ?? ['sh'], Env: ['PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin'] },
    rootfs: { type: 'layers', diff_ids: [sha256(tar)] },
    history: [{ created: '2024-01-01T00:00:00Z', created_by: 'test' }],
  };
  const config = await reg.putBlob(repo, Buffer.from(JSON.stringify(cfg)));
  const oci = opts.compress !== 'gzip';
  const mediaType = oci ? 'application/vnd.oci.image.manifest.v1+json' : 'application/vnd.docker.distribution.manifest.v2+json';
  const layerType = opts.compress === 'zstd' ? 'application/vnd.oci.image.layer.v1.tar+zstd' : opts.compress === 'none' ? 'application/vnd.oci.image.layer.v1.tar' : 'application/vnd.docker.image.rootfs.diff.tar.gzip';
  const manifest = {
    schemaVersion: 2,
    mediaType,
    config: { mediaType: oci ? 'application/vnd.oci.image.config.v1+json' : 'application/vnd.docker.container.image.v1+json', ...config },
    layers: [{ mediaType: layerType, ...layer }],
  };
  const bytes = Buffer.from(JSON.stringify(manifest));
  const m = await reg.putManifest(repo, tag ?? sha256(bytes), mediaType, manifest);
  return { manifest: { ...m, mediaType }, config, layer };
}
