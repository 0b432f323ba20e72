/**
 * Registry credentials as the Engine API carries them: the AuthConfig JSON,
 * base64url-encoded in the X-Registry-Auth header (pull, push) or sent as the
 * body of POST /auth. Shared by berthd and the CLI.
 */
import { invalid } from '../util/errors.ts';

export interface AuthConfig {
  username?: string;
  password?: string;
  /** base64("user:password"), as config.json stores it. */
  auth?: string;
  email?: string;
  serveraddress?: string;
  /** A refresh token the registry's token server handed out at login. */
  identitytoken?: string;
  /** A bearer token to send as it is. */
  registrytoken?: string;
}

/** The key docker uses for Docker Hub in config.json and as the login server address. */
export const DOCKER_HUB_AUTH_KEY = 'https://index.docker.io/v1/';

/**
 * Decodes the X-Registry-Auth header. Clients use URL-safe base64, with or
 * without padding; some send standard base64. An empty value means anonymous.
 */
export function decodeRegistryAuth(header: string | undefined): AuthConfig | undefined {
  if (!header) return undefined;
  const text = Buffer.from(header.replace(/-/g, '+').replace(/_/g, '/'), 'base64').toString('utf8').trim();
  if (text === '' || text === '{}') return undefined;
  let v: unknown;
  try {
    v = JSON.parse(text);
  } catch {
    throw invalid('invalid X-Registry-Auth header: not base64-encoded JSON');
  }
  if (typeof v !== 'object' || v === null || Array.isArray(v)) throw invalid('invalid X-Registry-Auth header: not a JSON object');
  return normaliseAuth(v as Record<string, unknown>);
}

/** Accepts docker's field spellings (lower case, or Go's capitalised names) and fills username/password from `auth`. */
export function normaliseAuth(v: Record<string, unknown>): AuthConfig {
  const get = (k: string): string | undefined => {
    for (const [key, val] of Object.entries(v)) if (key.toLowerCase() === k && typeof val === 'string' && val !== '') return val;
    return undefined;
  };
  const out: AuthConfig = {};
  const set = (k: keyof AuthConfig): void => {
    const val = get(k);
    if (val !== undefined) out[k] = val;
  };
  for (const k of ['username', 'password', 'auth', 'email', 'serveraddress', 'identitytoken', 'registrytoken'] as const) set(k);
  if (out.auth && out.username === undefined) {
    const plain = Buffer.from(out.auth, 'base64').toString('utf8');
    const i = plain.indexOf(':');
    if (i > 0) {
      out.username = plain.slice(0, i);
      out.password = plain.slice(i + 1);
    }
  }
  return out;
}

export function encodeRegistryAuth(a: AuthConfig): string {
  return Buffer.from(JSON.stringify(a)).toString('base64url');
}

/**
 * The host a login server address names: `https://index.docker.io/v1/` and
 * friends are Docker Hub (`docker.io`), a URL is reduced to its host[:port].
 */
export function registryHostOfAddress(address: string): string {
  let s = address.trim();
  s = s.replace(/^[a-z]+:\/\//i, '');
  s = s.replace(/\/.*$/, '');
  if (s === '' || s === 'index.docker.io' || s === 'docker.io' || s === 'registry-1.docker.io') return 'docker.io';
  return s.toLowerCase();
}

/** The key config.json files credentials under for a registry host. */
export function authKeyForHost(host: string): string {
  return host === 'docker.io' ? DOCKER_HUB_AUTH_KEY : host;
}
