/**
 * The client configuration file docker keeps credentials in:
 * `$DOCKER_CONFIG/config.json` (default `~/.docker/config.json`, or the
 * directory given with `--config`). Credentials are stored in the file as
 * base64 `user:password` under `auths`, or — when `credHelpers` names a
 * helper for the registry or `credsStore` names a default one — handed to
 * `docker-credential-<name>` (get/store/erase, JSON on stdin/stdout).
 */
import { spawn } from 'node:child_process';
import { mkdirSync, readFileSync, renameSync, writeFileSync } from 'node:fs';
import { homedir } from 'node:os';
import { join } from 'node:path';
import type { AuthConfig } from '../distribution/auth-config.ts';
import { authKeyForHost, registryHostOfAddress } from '../distribution/auth-config.ts';
import { CliError } from './command.ts';

interface StoredAuth {
  auth?: string;
  email?: string;
  identitytoken?: string;
  registrytoken?: string;
}

interface ConfigFile {
  auths?: Record<string, StoredAuth>;
  credsStore?: string;
  credHelpers?: Record<string, string>;
  [k: string]: unknown;
}

let configDirOverride: string | undefined;

/** `--config DIR` given on the command line. */
export function setConfigDir(dir: string | undefined): void {
  configDirOverride = dir;
}

export function configDir(): string {
  return configDirOverride || process.env.DOCKER_CONFIG || join(homedir(), '.docker');
}

function runHelper(helper: string, action: 'get' | 'store' | 'erase', input: string): Promise<{ code: number; stdout: string; stderr: string }> {
  return new Promise((resolve, reject) => {
    const bin = `docker-credential-${helper}`;
    const p = spawn(bin, [action], { stdio: ['pipe', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    p.stdout.on('data', (d: Buffer) => (stdout += d.toString()));
    p.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
    p.on('error', (err: NodeJS.ErrnoException) => reject(new CliError(err.code === 'ENOENT' ? `error getting credentials - err: exec: "${bin}": executable file not found in $PATH` : err.message)));
    p.on('close', (code) => resolve({ code: code ?? 1, stdout, stderr }));
    p.stdin.on('error', () => undefined);
    p.stdin.end(input);
  });
}

export class CredentialStore {
  readonly path: string;
  private data: ConfigFile;

  constructor(dir = configDir()) {
    this.path = join(dir, 'config.json');
    let text: string | undefined;
    try {
      text = readFileSync(this.path, 'utf8');
    } catch {
      text = undefined;
    }
    try {
      this.data = text && text.trim() ? (JSON.parse(text) as ConfigFile) : {};
    } catch (err) {
      throw new CliError(`loading config file ${this.path}: ${(err as Error).message}`);
    }
  }

  private helperFor(host: string): string | undefined {
    const helpers = this.data.credHelpers ?? {};
    for (const [k, v] of Object.entries(helpers)) if (registryHostOfAddress(k) === host && v) return v;
    return this.data.credsStore || undefined;
  }

  /** The config.json key already used for the host (docker accepts several spellings), or the canonical one. */
  private keyFor(host: string): string {
    for (const k of Object.keys(this.data.auths ?? {})) if (registryHostOfAddress(k) === host) return k;
    return authKeyForHost(host);
  }

  /** Credentials for a registry host (`docker.io`, `localhost:5000`), if any are stored. */
  async get(host: string): Promise<AuthConfig | undefined> {
    const key = this.keyFor(host);
    const helper = this.helperFor(host);
    if (helper) {
      const r = await runHelper(helper, 'get', key);
      if (r.code !== 0) {
        if (/credentials not found/i.test(r.stdout + r.stderr)) return undefined;
        throw new CliError(`error getting credentials - err: ${(r.stdout || r.stderr).trim()}`);
      }
      const j = JSON.parse(r.stdout) as { Username?: string; Secret?: string; ServerURL?: string };
      if (!j.Username && !j.Secret) return undefined;
      if (j.Username === '<token>') return { identitytoken: j.Secret ?? '', serveraddress: key };
      return { username: j.Username ?? '', password: j.Secret ?? '', serveraddress: key };
    }
    const e = this.data.auths?.[key];
    if (!e) return undefined;
    const out: AuthConfig = { serveraddress: key };
    if (e.auth) {
      const plain = Buffer.from(e.auth, 'base64').toString('utf8');
      const i = plain.indexOf(':');
      if (i < 0) throw new CliError(`invalid auth configuration file ${this.path}: bad credentials for ${key}`);
      out.username = plain.slice(0, i);
      out.password = plain.slice(i + 1);
    }
    if (e.identitytoken) out.identitytoken = e.identitytoken;
    if (e.registrytoken) out.registrytoken = e.registrytoken;
    if (e.email) out.email = e.email;
    return out.username || out.identitytoken || out.registrytoken ? out : undefined;
  }

  async store(host: string, a: AuthConfig): Promise<void> {
    const key = this.keyFor(host);
    const helper = this.helperFor(host);
    this.data.auths ??= {};
    if (helper) {
      const secret = a.identitytoken || a.password || '';
      const r = await runHelper(helper, 'store', JSON.stringify({ ServerURL: key, Username: a.identitytoken ? '<token>' : a.username ?? '', Secret: secret }));
      if (r.code !== 0) throw new CliError(`error storing credentials - err: ${(r.stdout || r.stderr).trim()}`);
      // As docker does: the file still lists the registry, without secrets.
      this.data.auths[key] = {};
    } else {
      const e: StoredAuth = {};
      if (a.identitytoken) e.identitytoken = a.identitytoken;
      else e.auth = Buffer.from(`${a.username ?? ''}:${a.password ?? ''}`).toString('base64');
      this.data.auths[key] = e;
    }
    this.save();
  }

  /** Removes stored credentials; false when there were none. */
  async erase(host: string): Promise<boolean> {
    const key = this.keyFor(host);
    const helper = this.helperFor(host);
    let found = this.data.auths?.[key] !== undefined;
    if (helper) {
      const r = await runHelper(helper, 'erase', key);
      if (r.code === 0) found = true;
      else if (!/credentials not found/i.test(r.stdout + r.stderr)) throw new CliError(`error erasing credentials - err: ${(r.stdout || r.stderr).trim()}`);
    }
    if (this.data.auths) delete this.data.auths[key];
    this.save();
    return found;
  }

  private save(): void {
    const dir = this.path.slice(0, this.path.lastIndexOf('/'));
    mkdirSync(dir, { recursive: true, mode: 0o700 });
    const tmp = `${this.path}.tmp-${process.pid}`;
    writeFileSync(tmp, JSON.stringify(this.data, null, '\t') + '\n', { mode: 0o600 });
    renameSync(tmp, this.path);
  }
}
