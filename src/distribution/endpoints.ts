/**
 * Which URLs serve a registry, and how to talk to them, as dockerd decides:
 *
 * - Docker Hub names (`docker.io/...`) go to the configured registry mirrors
 *   first, in order, then to registry-1.docker.io.
 * - A registry listed with --insecure-registry (host[:port] or a CIDR that
 *   its address falls in), and anything on 127.0.0.0/8 or ::1, is insecure:
 *   HTTPS without certificate checks first, then plain HTTP.
 * - Otherwise HTTPS, trusting the system CAs plus `ca.crt` (any `*.crt`)
 *   from `certs.d/<host[:port]>/`, with a client certificate from a
 *   `*.cert`/`*.key` pair there. The certs.d directories read are docker's
 *   /etc/docker/certs.d, berth's /etc/berth/certs.d and `<data-root>/certs.d`.
 */
import { readdirSync, readFileSync } from 'node:fs';
import { isIP } from 'node:net';
import { join } from 'node:path';
import { getCACertificates } from 'node:tls';
import { BerthError, invalid } from '../util/errors.ts';

export interface TlsSettings {
  ca?: string[];
  cert?: Buffer;
  key?: Buffer;
  /** Skip certificate verification (insecure registries). */
  insecure: boolean;
}

export interface Endpoint {
  /** `https://host:port` or `http://host:port`, no trailing slash; may carry a path for mirrors. */
  url: string;
  /** The registry's name as references spell it (`docker.io`, `localhost:5000`). */
  domain: string;
  mirror: boolean;
  tls?: TlsSettings;
}

export interface RegistrySettings {
  mirrors: string[];
  insecure: string[];
  certsDirs: string[];
}

export const DOCKER_HUB_HOST = 'registry-1.docker.io';

export function defaultCertsDirs(dataRoot?: string): string[] {
  const dirs = ['/etc/docker/certs.d', '/etc/berth/certs.d'];
  if (dataRoot) dirs.push(join(dataRoot, 'certs.d'));
  return dirs;
}

function splitHostPort(hostport: string): { host: string; port?: string } {
  const m = /^\[([^\]]+)\](?::(\d+))?$/.exec(hostport);
  if (m) return { host: m[1]!, port: m[2] };
  const i = hostport.lastIndexOf(':');
  if (i > 0 && hostport.indexOf(':') === i) return { host: hostport.slice(0, i), port: hostport.slice(i + 1) };
  return { host: hostport };
}

function ipv4ToInt(ip: string): number {
  return ip.split('.').reduce((acc, p) => ((acc << 8) | Number(p)) >>> 0, 0);
}

function inCidr(ip: string, cidr: string): boolean {
  const [net, bitsStr] = cidr.split('/');
  if (!net || bitsStr === undefined) return false;
  if (isIP(ip) !== 4 || isIP(net) !== 4) return false;
  const bits = Number(bitsStr);
  if (!(bits >= 0 && bits <= 32)) return false;
  const mask = bits === 0 ? 0 : (~0 << (32 - bits)) >>> 0;
  return (ipv4ToInt(ip) & mask) === (ipv4ToInt(net) & mask);
}

/** True when the registry at `hostport` is spoken to without certificate checks (or over plain HTTP). */
export function isInsecure(hostport: string, insecure: string[]): boolean {
  const { host } = splitHostPort(hostport);
  for (const entry of insecure) {
    const e = entry.replace(/^[a-z]+:\/\//i, '').replace(/\/+$/, '');
    if (e === hostport || e === host) return true;
    if (e.includes('/') && inCidr(host === 'localhost' ? '127.0.0.1' : host, e)) return true;
  }
  // Loopback is insecure by default, as dockerd's 127.0.0.0/8 entry makes it.
  if (host === 'localhost' || host === '::1') return true;
  return isIP(host) === 4 && inCidr(host, '127.0.0.0/8');
}

/** CA certificates and a client key pair from certs.d/<hostport>/ in every directory that has one. */
export function certsFor(hostport: string, dirs: string[]): { ca: string[]; cert?: Buffer; key?: Buffer } {
  const ca: string[] = [];
  let cert: Buffer | undefined;
  let key: Buffer | undefined;
  for (const d of dirs) {
    const dir = join(d, hostport.replace(/^\[|\]$/g, ''));
    let files: string[];
    try {
      files = readdirSync(dir).sort();
    } catch {
      continue;
    }
    for (const f of files) {
      if (f.endsWith('.crt')) ca.push(readFileSync(join(dir, f), 'utf8'));
      else if (f.endsWith('.cert')) {
        const keyFile = join(dir, `${f.slice(0, -5)}.key`);
        try {
          key = readFileSync(keyFile);
          cert = readFileSync(join(dir, f));
        } catch {
          throw invalid(`missing key ${keyFile} for client certificate ${join(dir, f)}`);
        }
      }
    }
  }
  return { ca, cert, key };
}

let systemCas: string[] | undefined;
function baseCas(): string[] {
  // Node's bundled roots plus the ones the system trusts (/etc/ssl/certs).
  systemCas ??= [...new Set([...getCACertificates('bundled'), ...getCACertificates('system')])];
  return systemCas;
}

function tlsFor(hostport: string, s: RegistrySettings): TlsSettings {
  const extra = certsFor(hostport, s.certsDirs);
  const out: TlsSettings = { insecure: isInsecure(hostport, s.insecure) };
  if (extra.ca.length) out.ca = [...baseCas(), ...extra.ca];
  if (extra.cert) out.cert = extra.cert;
  if (extra.key) out.key = extra.key;
  return out;
}

/**
 * With BERTH_REGISTRY_LOOPBACK_ONLY=1 in the environment (the test suite
 * sets it) berth contacts registries on loopback only: a name that would
 * need a DNS lookup or a remote address (Docker Hub with no mirror, say) is
 * refused before any packet leaves the machine.
 */
function loopbackOnly(): boolean {
  return process.env.BERTH_REGISTRY_LOOPBACK_ONLY === '1';
}

function isLoopbackHost(hostport: string): boolean {
  const { host } = splitHostPort(hostport);
  return host === 'localhost' || host === '::1' || (isIP(host) === 4 && inCidr(host, '127.0.0.0/8'));
}

/** The endpoints to try for a registry domain, best first. */
export function endpointsFor(domain: string, s: RegistrySettings): Endpoint[] {
  const all = allEndpointsFor(domain, s);
  if (!loopbackOnly()) return all;
  const allowed = all.filter((e) => isLoopbackHost(new URL(e.url).host));
  if (!allowed.length) throw new BerthError('NotFound', `registry ${domain} is not on loopback and BERTH_REGISTRY_LOOPBACK_ONLY=1 allows loopback registries only`);
  return allowed;
}

function allEndpointsFor(domain: string, s: RegistrySettings): Endpoint[] {
  const out: Endpoint[] = [];
  if (domain === 'docker.io') {
    for (const m of s.mirrors) {
      let u: URL;
      try {
        u = new URL(m);
      } catch {
        throw invalid(`invalid registry mirror: ${m}`);
      }
      const url = `${u.protocol}//${u.host}${u.pathname.replace(/\/+$/, '')}`;
      const ep: Endpoint = { url, domain, mirror: true };
      if (u.protocol === 'https:') ep.tls = tlsFor(u.host, s);
      out.push(ep);
    }
    out.push({ url: `https://${DOCKER_HUB_HOST}`, domain, mirror: false, tls: tlsFor(DOCKER_HUB_HOST, s) });
    return out;
  }
  const tls = tlsFor(domain, s);
  out.push({ url: `https://${domain}`, domain, mirror: false, tls });
  if (tls.insecure) out.push({ url: `http://${domain}`, domain, mirror: false });
  return out;
}
