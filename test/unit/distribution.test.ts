/**
 * The registry client's pure parts: endpoint choice, auth header decoding,
 * challenge parsing, manifest parsing and platform selection, progress bars.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { decodeRegistryAuth, encodeRegistryAuth, registryHostOfAddress, authKeyForHost } from '../../src/distribution/auth-config.ts';
import { endpointsFor, isInsecure } from '../../src/distribution/endpoints.ts';
import { parseManifest, selectPlatform, normalisePlatform, Schema1Error } from '../../src/distribution/manifest.ts';
import { parseChallenge } from '../../src/distribution/registry-client.ts';
import { progressBar } from '../../src/distribution/progress.ts';
import type { Index } from '../../src/image/types.ts';

const D = (c: string): string => `sha256:${c.repeat(64)}`;

/** Run with BERTH_REGISTRY_LOOPBACK_ONLY set as given (the suite sets it to 1). */
function withLoopbackOnly<T>(value: string | undefined, fn: () => T): T {
  const saved = process.env.BERTH_REGISTRY_LOOPBACK_ONLY;
  if (value === undefined) delete process.env.BERTH_REGISTRY_LOOPBACK_ONLY;
  else process.env.BERTH_REGISTRY_LOOPBACK_ONLY = value;
  try {
    return fn();
  } finally {
    if (saved === undefined) delete process.env.BERTH_REGISTRY_LOOPBACK_ONLY;
    else process.env.BERTH_REGISTRY_LOOPBACK_ONLY = saved;
  }
}

/** endpointsFor as it answers on a machine that may reach any registry (no packet is sent). */
const openEndpoints = (domain: string, s: Parameters<typeof endpointsFor>[1]) => withLoopbackOnly(undefined, () => endpointsFor(domain, s));

test('BERTH_REGISTRY_LOOPBACK_ONLY: loopback registries and mirrors only, refused before any lookup', () => {
  withLoopbackOnly('1', () => {
    assert.throws(() => endpointsFor('docker.io', { mirrors: [], insecure: [], certsDirs: [] }), /registry docker\.io is not on loopback/);
    assert.throws(() => endpointsFor('registry.example:5000', { mirrors: [], insecure: [], certsDirs: [] }), /not on loopback/);
    const hub = endpointsFor('docker.io', { mirrors: ['http://127.0.0.1:5999'], insecure: [], certsDirs: [] });
    assert.deepEqual(hub.map((e) => e.url), ['http://127.0.0.1:5999']);
    assert.deepEqual(endpointsFor('localhost:5000', { mirrors: [], insecure: [], certsDirs: [] }).map((e) => e.url), ['https://localhost:5000', 'http://localhost:5000']);
  });
});

test('X-Registry-Auth: url-safe base64 with or without padding, auth field split, empty is anonymous', () => {
  const enc = encodeRegistryAuth({ username: 'u', password: 'p?>~', serveraddress: 'localhost:5000' });
  assert.deepEqual(decodeRegistryAuth(enc), { username: 'u', password: 'p?>~', serveraddress: 'localhost:5000' });
  const std = Buffer.from(JSON.stringify({ auth: Buffer.from('alice:pw:x').toString('base64') })).toString('base64');
  assert.deepEqual(decodeRegistryAuth(std), { auth: Buffer.from('alice:pw:x').toString('base64'), username: 'alice', password: 'pw:x' });
  assert.equal(decodeRegistryAuth('e30='), undefined);
  assert.equal(decodeRegistryAuth(''), undefined);
  assert.throws(() => decodeRegistryAuth(Buffer.from('not json').toString('base64')), /X-Registry-Auth/);
  assert.equal(registryHostOfAddress('https://index.docker.io/v1/'), 'docker.io');
  assert.equal(registryHostOfAddress('http://LocalHost:5000/'), 'localhost:5000');
  assert.equal(authKeyForHost('docker.io'), 'https://index.docker.io/v1/');
});

test('insecure registries: loopback by default, listed hosts and CIDRs', () => {
  assert.equal(isInsecure('127.0.0.1:5000', []), true);
  assert.equal(isInsecure('127.9.9.9', []), true);
  assert.equal(isInsecure('localhost:5000', []), true);
  assert.equal(isInsecure('10.1.2.3:5000', []), false);
  assert.equal(isInsecure('10.1.2.3:5000', ['10.0.0.0/8']), true);
  assert.equal(isInsecure('reg.example:443', ['reg.example:443']), true);
  assert.equal(isInsecure('reg.example', []), false);
});

test('endpoints: mirrors first for Docker Hub, HTTPS then HTTP for insecure registries, HTTPS only otherwise', () => {
  const s = { mirrors: ['http://127.0.0.1:5001/'], insecure: [], certsDirs: [] };
  assert.deepEqual(openEndpoints('docker.io', s).map((e) => [e.url, e.mirror]), [['http://127.0.0.1:5001', true], ['https://registry-1.docker.io', false]]);
  assert.deepEqual(openEndpoints('127.0.0.1:5000', s).map((e) => e.url), ['https://127.0.0.1:5000', 'http://127.0.0.1:5000']);
  assert.deepEqual(openEndpoints('reg.example', s).map((e) => e.url), ['https://reg.example']);
  assert.equal(openEndpoints('127.0.0.1:5000', s)[0]!.tls!.insecure, true);
});

test('auth challenges', () => {
  assert.deepEqual(parseChallenge('Bearer realm="https://auth.example/token",service="registry.example",scope="repository:a/b:pull"'), { scheme: 'bearer', realm: 'https://auth.example/token', service: 'registry.example' });
  assert.deepEqual(parseChallenge('Basic realm="x"'), { scheme: 'basic', realm: 'x' });
  assert.equal(parseChallenge('Negotiate abc'), undefined);
  assert.equal(parseChallenge(undefined), undefined);
});

test('manifests: kinds told apart, schema 1 refused clearly, malformed refused', () => {
  const m = { schemaVersion: 2, mediaType: 'application/vnd.docker.distribution.manifest.v2+json', config: { mediaType: 'x', digest: D('a'), size: 1 }, layers: [{ mediaType: 'y', digest: D('b'), size: 2 }] };
  assert.equal(parseManifest(Buffer.from(JSON.stringify(m)), undefined, 'x').kind, 'manifest');
  const idx = { schemaVersion: 2, manifests: [] };
  assert.equal(parseManifest(Buffer.from(JSON.stringify(idx)), 'application/vnd.oci.image.index.v1+json', 'x').kind, 'index');
  assert.throws(() => parseManifest(Buffer.from(JSON.stringify({ schemaVersion: 1, name: 'a', tag: 'b', fsLayers: [] })), 'application/vnd.docker.distribution.manifest.v1+prettyjws', 'a:b'), (e: unknown) => e instanceof Schema1Error && /schema 1/.test((e as Error).message));
  assert.throws(() => parseManifest(Buffer.from('{'), undefined, 'x'), /not JSON/);
  assert.throws(() => parseManifest(Buffer.from(JSON.stringify({ ...m, config: { digest: 'sha256:zz', size: 1, mediaType: 'x' } })), undefined, 'x'), /bad descriptor/);
});

test('platform selection from an index', () => {
  const desc = (arch: string, variant?: string, os = 'linux') => ({ mediaType: 'application/vnd.oci.image.manifest.v1+json', digest: D(arch[0]!), size: 1, platform: { os, architecture: arch, ...(variant ? { variant } : {}) } });
  const index: Index = { schemaVersion: 2, manifests: [desc('unknown', undefined, 'unknown'), desc('arm', 'v6'), desc('arm', 'v7'), desc('arm64', 'v8'), desc('amd64')] };
  assert.equal(selectPlatform(index, { os: 'linux', architecture: 'amd64' })?.platform?.architecture, 'amd64');
  assert.equal(selectPlatform(index, { os: 'linux', architecture: 'arm64' })?.platform?.variant, 'v8');
  assert.equal(selectPlatform(index, { os: 'linux', architecture: 'arm', variant: 'v7' })?.platform?.variant, 'v7');
  assert.equal(selectPlatform(index, { os: 'linux', architecture: 's390x' }), undefined);
  assert.deepEqual(normalisePlatform({ os: 'Linux', architecture: 'x86_64' }), { os: 'linux', architecture: 'amd64' });
});

test("progress bar as docker's daemon renders it", () => {
  assert.equal(progressBar({}), '');
  assert.equal(progressBar({ current: 500, total: 1000 }), `[${'='.repeat(25)}>${' '.repeat(25)}]     500B/1kB`);
  assert.equal(progressBar({ current: 2_000_000 }), '     2MB');
});

test('certs.d: CAs and a client key pair for one registry, as docker reads them', async () => {
  const { mkdtempSync, mkdirSync, writeFileSync, rmSync } = await import('node:fs');
  const { join } = await import('node:path');
  const dir = mkdtempSync('/tmp/berth-unit-certs-');
  try {
    mkdirSync(join(dir, 'reg.example:5000'));
    writeFileSync(join(dir, 'reg.example:5000', 'ca.crt'), 'CA-PEM');
    writeFileSync(join(dir, 'reg.example:5000', 'client.cert'), 'CERT-PEM');
    writeFileSync(join(dir, 'reg.example:5000', 'client.key'), 'KEY-PEM');
    const [ep] = openEndpoints('reg.example:5000', { mirrors: [], insecure: [], certsDirs: ['/nonexistent', dir] });
    assert.equal(ep!.tls!.insecure, false);
    assert.ok(ep!.tls!.ca!.includes('CA-PEM'));
    assert.ok(ep!.tls!.ca!.length > 1, 'system CAs are kept alongside');
    assert.equal(ep!.tls!.cert!.toString(), 'CERT-PEM');
    assert.equal(ep!.tls!.key!.toString(), 'KEY-PEM');
    const [other] = openEndpoints('other.example', { mirrors: [], insecure: [], certsDirs: [dir] });
    assert.equal(other!.tls!.ca, undefined);
    mkdirSync(join(dir, 'bad.example'));
    writeFileSync(join(dir, 'bad.example', 'client.cert'), 'CERT-PEM');
    assert.throws(() => openEndpoints('bad.example', { mirrors: [], insecure: [], certsDirs: [dir] }), /missing key/);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});
