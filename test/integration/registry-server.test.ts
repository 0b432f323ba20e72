/**
 * `berth registry serve` through plain HTTP requests (every endpoint, and
 * the error cases: wrong digest, truncated upload, bad manifests, missing
 * auth, bad tokens, read-only), skopeo copying single- and multi-platform
 * images into and out of it, basic auth with htpasswd bcrypt and apr1
 * files, token auth, HTTPS with a self-signed certificate, and gc.
 */
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, readFileSync, readdirSync, writeFileSync } from 'node:fs';
import { connect } from 'node:net';
import { join } from 'node:path';
import { BERTH, ROOT } from '../helpers/daemon.ts';
import { BerthRegistry, removeDir, testDir } from '../helpers/berth-registry.ts';
import { blob, busyboxTar, descriptor, image, imageBlobs, index, sha256, tinyTar, writeLayout } from '../helpers/oci-layout.ts';
import type { Blob } from '../helpers/oci-layout.ts';

const OCI_MANIFEST = 'application/vnd.oci.image.manifest.v1+json';
const OCI_INDEX = 'application/vnd.oci.image.index.v1+json';
const DOCKER_MANIFEST = 'application/vnd.docker.distribution.manifest.v2+json';
const DOCKER_LIST = 'application/vnd.docker.distribution.manifest.list.v2+json';

const dir = testDir('registry');
const reg = new BerthRegistry(join(dir, 'root'));

before(async () => {
  await reg.start();
});

after(async () => {
  await reg.stop();
  removeDir(dir);
});

interface Res {
  status: number;
  headers: Headers;
  body: Buffer;
  json: () => { errors?: { code: string; message: string }[] } & Record<string, unknown>;
}

async function call(method: string, url: string, opts: { headers?: Record<string, string>; body?: Buffer | string } = {}): Promise<Res> {
  const r = await fetch(url, { method, headers: opts.headers, body: opts.body, redirect: 'manual' });
  const body = Buffer.from(await r.arrayBuffer());
  return { status: r.status, headers: r.headers, body, json: () => JSON.parse(body.toString()) };
}

const errCode = (r: Res): string | undefined => r.json().errors?.[0]?.code;

async function pushBlob(base: string, repo: string, b: Blob | Buffer): Promise<string> {
  const bytes = Buffer.isBuffer(b) ? b : b.bytes;
  const d = sha256(bytes);
  const r = await call('POST', `${base}/v2/${repo}/blobs/uploads/?digest=${d}`, { body: bytes, headers: { 'Content-Type': 'application/octet-stream' } });
  assert.equal(r.status, 201, r.body.toString());
  return d;
}

async function putManifest(base: string, repo: string, ref: string, m: Blob, headers: Record<string, string> = {}): Promise<Res> {
  return call('PUT', `${base}/v2/${repo}/manifests/${ref}`, { body: m.bytes, headers: { 'Content-Type': m.mediaType, ...headers } });
}

async function pushImage(base: string, repo: string, tag: string, im: ReturnType<typeof image>): Promise<void> {
  await pushBlob(base, repo, im.config);
  for (const l of im.layers) await pushBlob(base, repo, l);
  const r = await putManifest(base, repo, tag, im.manifest);
  assert.equal(r.status, 201, r.body.toString());
}

function skopeo(args: string[]): { code: number; out: string } {
  const r = spawnSync('skopeo', args, { encoding: 'utf8', timeout: 120_000 });
  return { code: r.status ?? -1, out: `${r.stdout}${r.stderr}` };
}

function berth(args: string[]): { code: number; stdout: string; stderr: string } {
  const r = spawnSync(BERTH, args, { encoding: 'utf8', timeout: 60_000 });
  return { code: r.status ?? -1, stdout: r.stdout, stderr: r.stderr };
}

/** Files under a directory, recursively (to show nothing was left behind). */
function filesUnder(d: string): string[] {
  if (!existsSync(d)) return [];
  return readdirSync(d, { recursive: true, withFileTypes: true }).filter((e) => e.isFile()).map((e) => join(e.parentPath, e.name));
}

// ---------------------------------------------------------------------------
// Base endpoint and errors

test('/v2/ answers 200 with the API version header; unknown endpoints and methods are refused in the error shape', async () => {
  const r = await call('GET', `${reg.url}/v2/`);
  assert.equal(r.status, 200);
  assert.equal(r.headers.get('docker-distribution-api-version'), 'registry/2.0');
  assert.deepEqual(r.json(), {});
  const nope = await call('GET', `${reg.url}/v2/foo/bar/nothing`);
  assert.equal(nope.status, 404);
  assert.ok(errCode(nope));
  const bad = await call('POST', `${reg.url}/v2/foo/manifests/latest`);
  assert.equal(bad.status, 405);
  assert.equal(errCode(bad), 'UNSUPPORTED');
  const name = await call('GET', `${reg.url}/v2/Bad_Name/tags/list`);
  assert.equal(name.status, 400);
  assert.equal(errCode(name), 'NAME_INVALID');
  assert.equal(name.headers.get('docker-distribution-api-version'), 'registry/2.0');
});

// ---------------------------------------------------------------------------
// Blobs and uploads

test('monolithic upload (POST ?digest) then HEAD, GET and ranged GET', async () => {
  const data = Buffer.from('hello, registry blob\n');
  const d = sha256(data);
  const r = await call('POST', `${reg.url}/v2/blobs/mono/blobs/uploads/?digest=${d}`, { body: data });
  assert.equal(r.status, 201);
  assert.equal(r.headers.get('location'), `/v2/blobs/mono/blobs/${d}`);
  assert.equal(r.headers.get('docker-content-digest'), d);
  const head = await call('HEAD', `${reg.url}/v2/blobs/mono/blobs/${d}`);
  assert.equal(head.status, 200);
  assert.equal(head.headers.get('content-length'), String(data.length));
  assert.equal(head.headers.get('docker-content-digest'), d);
  const get = await call('GET', `${reg.url}/v2/blobs/mono/blobs/${d}`);
  assert.deepEqual(get.body, data);
  const part = await call('GET', `${reg.url}/v2/blobs/mono/blobs/${d}`, { headers: { Range: 'bytes=7-14' } });
  assert.equal(part.status, 206);
  assert.equal(part.headers.get('content-range'), `bytes 7-14/${data.length}`);
  assert.equal(part.body.toString(), 'registry');
  const tail = await call('GET', `${reg.url}/v2/blobs/mono/blobs/${d}`, { headers: { Range: 'bytes=-5' } });
  assert.equal(tail.body.toString(), 'blob\n');
  const past = await call('GET', `${reg.url}/v2/blobs/mono/blobs/${d}`, { headers: { Range: 'bytes=1000-' } });
  assert.equal(past.status, 416);
  assert.equal(past.headers.get('content-range'), `bytes */${data.length}`);
  // Other repositories do not see it until it is mounted or pushed there.
  const other = await call('GET', `${reg.url}/v2/blobs/other/blobs/${d}`);
  assert.equal(other.status, 404);
  assert.equal(errCode(other), 'BLOB_UNKNOWN');
});

test('POST then PUT, chunked PATCH with Content-Range, status, out-of-order chunk refused with 416', async () => {
  const data = Buffer.alloc(300_000);
  for (let i = 0; i < data.length; i++) data[i] = (i * 7) & 0xff;
  const d = sha256(data);
  const start = await call('POST', `${reg.url}/v2/blobs/chunked/blobs/uploads/`);
  assert.equal(start.status, 202);
  const uuid = start.headers.get('docker-upload-uuid')!;
  assert.match(uuid, /^[0-9a-f-]{36}$/);
  let loc = new URL(start.headers.get('location')!, reg.url).toString();
  assert.equal(start.headers.get('range'), '0-0');

  const c1 = await call('PATCH', loc, { body: data.subarray(0, 100_000), headers: { 'Content-Range': '0-99999', 'Content-Type': 'application/octet-stream' } });
  assert.equal(c1.status, 202);
  assert.equal(c1.headers.get('range'), '0-99999');
  loc = new URL(c1.headers.get('location')!, reg.url).toString();

  const gap = await call('PATCH', loc, { body: data.subarray(150_000, 200_000), headers: { 'Content-Range': '150000-199999' } });
  assert.equal(gap.status, 416);
  assert.equal(gap.headers.get('range'), '0-99999');

  const status = await call('GET', loc);
  assert.equal(status.status, 204);
  assert.equal(status.headers.get('range'), '0-99999');

  // A chunk without Content-Range is appended (docker's streaming PATCH).
  const c2 = await call('PATCH', loc, { body: data.subarray(100_000, 200_000) });
  assert.equal(c2.headers.get('range'), '0-199999');
  // The last chunk comes with the PUT.
  const put = await call('PUT', `${loc}?digest=${d}`, { body: data.subarray(200_000), headers: { 'Content-Range': '200000-299999' } });
  assert.equal(put.status, 201, put.body.toString());
  assert.equal(put.headers.get('docker-content-digest'), d);
  const get = await call('GET', `${reg.url}/v2/blobs/chunked/blobs/${d}`);
  assert.ok(get.body.equals(data));
  const gone = await call('GET', loc);
  assert.equal(gone.status, 404);
  assert.equal(errCode(gone), 'BLOB_UPLOAD_UNKNOWN');
});

test('a wrong digest is refused with DIGEST_INVALID and nothing becomes visible or stays behind', async () => {
  const before = filesUnder(join(reg.root, 'blobs'));
  const data = Buffer.from('the real content');
  const claimed = sha256('something else');
  const mono = await call('POST', `${reg.url}/v2/blobs/wrong/blobs/uploads/?digest=${claimed}`, { body: data });
  assert.equal(mono.status, 400);
  assert.equal(errCode(mono), 'DIGEST_INVALID');

  const start = await call('POST', `${reg.url}/v2/blobs/wrong/blobs/uploads/`);
  const loc = new URL(start.headers.get('location')!, reg.url).toString();
  await call('PATCH', loc, { body: data });
  const put = await call('PUT', `${loc}?digest=${claimed}`);
  assert.equal(put.status, 400);
  assert.equal(errCode(put), 'DIGEST_INVALID');
  for (const d of [claimed, sha256(data)]) assert.equal((await call('HEAD', `${reg.url}/v2/blobs/wrong/blobs/${d}`)).status, 404);
  assert.equal((await call('GET', loc)).status, 404);
  assert.deepEqual(filesUnder(join(reg.root, 'blobs')), before);
  assert.deepEqual(filesUnder(join(reg.root, 'uploads')), []);

  const malformed = await call('PUT', `${loc.replace(/[^/]+$/, start.headers.get('docker-upload-uuid')!)}?digest=sha256:xyz`);
  assert.equal(malformed.status, 400);
  assert.equal(errCode(malformed), 'DIGEST_INVALID');
  const missing = await call('GET', `${reg.url}/v2/blobs/wrong/blobs/not-a-digest`);
  assert.equal(missing.status, 400);
  assert.equal(errCode(missing), 'DIGEST_INVALID');
});

/** Send a request by hand and hang up part-way through its body. */
function truncatedRequest(url: string, head: string, part: Buffer): Promise<void> {
  const u = new URL(url);
  return new Promise((resolve, reject) => {
    const s = connect(Number(u.port), u.hostname, () => {
      s.write(head);
      s.write(part, () => setTimeout(() => s.destroy(), 100));
    });
    s.on('close', () => resolve());
    s.on('error', reject);
  });
}

test('a truncated upload leaves the session where it was and no blob', async () => {
  const data = Buffer.alloc(64 * 1024, 'x');
  const d = sha256(data);
  const start = await call('POST', `${reg.url}/v2/blobs/trunc/blobs/uploads/`);
  const path = start.headers.get('location')!;
  const loc = new URL(path, reg.url).toString();
  await call('PATCH', loc, { body: data.subarray(0, 1000), headers: { 'Content-Range': '0-999' } });
  // The client promises 63 KiB more but sends 10 KiB and hangs up.
  const head = `PATCH ${path} HTTP/1.1\r\nHost: ${reg.host}\r\nContent-Type: application/octet-stream\r\nContent-Range: 1000-${data.length - 1}\r\nContent-Length: ${data.length - 1000}\r\n\r\n`;
  await truncatedRequest(loc, head, data.subarray(1000, 11000));
  let status = await call('GET', loc);
  for (let i = 0; i < 50 && status.headers.get('range') !== '0-999'; i++) {
    await new Promise((r) => setTimeout(r, 50));
    status = await call('GET', loc);
  }
  assert.equal(status.status, 204);
  assert.equal(status.headers.get('range'), '0-999');
  // Resume from the offset the registry reports, and finish. The range is
  // 0-999 before and after the registry has seen the cut chunk end, so the
  // resume may still meet it "in progress" for a moment: that answer is retried.
  const resume = () => call('PUT', `${loc}?digest=${d}`, { body: data.subarray(1000), headers: { 'Content-Range': `1000-${data.length - 1}` } });
  let put = await resume();
  for (let i = 0; i < 50 && put.status === 416 && put.body.toString().includes('in progress'); i++) {
    await new Promise((r) => setTimeout(r, 50));
    put = await resume();
  }
  assert.equal(put.status, 201, put.body.toString());
  assert.ok((await call('GET', `${reg.url}/v2/blobs/trunc/blobs/${d}`)).body.equals(data));

  // A monolithic upload cut short makes no blob and leaves no session.
  const other = Buffer.alloc(50_000, 'y');
  const od = sha256(other);
  const mhead = `POST /v2/blobs/trunc/blobs/uploads/?digest=${od} HTTP/1.1\r\nHost: ${reg.host}\r\nContent-Length: ${other.length}\r\n\r\n`;
  await truncatedRequest(reg.url, mhead, other.subarray(0, 20_000));
  await new Promise((r) => setTimeout(r, 200));
  assert.equal((await call('HEAD', `${reg.url}/v2/blobs/trunc/blobs/${od}`)).status, 404);
  assert.deepEqual(filesUnder(join(reg.root, 'uploads')), []);

  // A chunk whose length disagrees with its Content-Range is refused.
  const s2 = await call('POST', `${reg.url}/v2/blobs/trunc/blobs/uploads/`);
  const l2 = new URL(s2.headers.get('location')!, reg.url).toString();
  const bad = await call('PATCH', l2, { body: Buffer.alloc(10), headers: { 'Content-Range': '0-19' } });
  assert.equal(bad.status, 400);
  assert.equal(errCode(bad), 'SIZE_INVALID');
  assert.equal((await call('GET', l2)).headers.get('range'), '0-0');
  assert.equal((await call('DELETE', l2)).status, 204);
});

test('large and concurrent uploads come out byte for byte (the writer ring wraps many times)', async () => {
  const make = (n: number, seed: number) => {
    const b = Buffer.allocUnsafe(n);
    let x = seed;
    for (let i = 0; i < n; i += 4) {
      x = (x * 1103515245 + 12345) >>> 0;
      b.writeUInt32LE(x, i);
    }
    return b;
  };
  const blobs = [make(20 << 20, 1), make(12 << 20, 2), make(12 << 20, 3), make(3 << 20, 4)];
  // One monolithic, the others chunked in uneven pieces, all at once.
  await Promise.all(blobs.map(async (data, i) => {
    const d = sha256(data);
    if (i === 0) return pushBlob(reg.url, 'big/blobs', data);
    const start = await call('POST', `${reg.url}/v2/big/blobs/blobs/uploads/`);
    let loc = new URL(start.headers.get('location')!, reg.url).toString();
    const piece = 3_000_001 + i;
    for (let off = 0; off < data.length; off += piece) {
      const end = Math.min(off + piece, data.length);
      const r = await call('PATCH', loc, { body: data.subarray(off, end), headers: { 'Content-Range': `${off}-${end - 1}` } });
      assert.equal(r.status, 202, r.body.toString());
      loc = new URL(r.headers.get('location')!, reg.url).toString();
    }
    const put = await call('PUT', `${loc}?digest=${d}`);
    assert.equal(put.status, 201, put.body.toString());
    return d;
  }));
  // Twice each over kept-alive connections: large bodies leave through
  // native/berth-sendfile, and the connection must stay usable after it.
  for (let round = 0; round < 2; round++) {
    for (const data of blobs) {
      const got = await call('GET', `${reg.url}/v2/big/blobs/blobs/${sha256(data)}`);
      assert.equal(got.status, 200);
      assert.ok(got.body.equals(data));
    }
  }
  const big = blobs[0]!;
  const part = await call('GET', `${reg.url}/v2/big/blobs/blobs/${sha256(big)}`, { headers: { Range: 'bytes=1000-6000999' } });
  assert.equal(part.status, 206);
  assert.ok(part.body.equals(big.subarray(1000, 6001000)));
  // A client that hangs up half-way through a pull does not disturb the server.
  const url = new URL(`${reg.url}/v2/big/blobs/blobs/${sha256(big)}`);
  await new Promise<void>((resolve, reject) => {
    const s = connect(Number(url.port), url.hostname, () => s.write(`GET ${url.pathname} HTTP/1.1\r\nHost: ${url.host}\r\n\r\n`));
    s.once('data', () => s.destroy());
    s.on('close', () => resolve());
    s.on('error', reject);
  });
  assert.ok((await call('GET', `${reg.url}/v2/big/blobs/blobs/${sha256(big)}`)).body.equals(big));
});

test('an upload session survives a registry restart and completes with the right digest', async () => {
  const data = Buffer.alloc(5_000_000, 'r');
  data.write('restart', 100);
  const start = await call('POST', `${reg.url}/v2/restart/app/blobs/uploads/`);
  const path = start.headers.get('location')!;
  const first = await call('PATCH', new URL(path, reg.url).toString(), { body: data.subarray(0, 2_000_000), headers: { 'Content-Range': '0-1999999' } });
  assert.equal(first.status, 202);
  await reg.stop();
  await reg.start();
  const loc = new URL(path, reg.url).toString();
  const status = await call('GET', loc);
  assert.equal(status.status, 204);
  assert.equal(status.headers.get('range'), '0-1999999');
  const put = await call('PUT', `${loc}?digest=${sha256(data)}`, { body: data.subarray(2_000_000), headers: { 'Content-Range': `2000000-${data.length - 1}` } });
  assert.equal(put.status, 201, put.body.toString());
  assert.ok((await call('GET', `${reg.url}/v2/restart/app/blobs/${sha256(data)}`)).body.equals(data));
});

test('cancel an upload; cross-repository mount; blob DELETE', async () => {
  const s = await call('POST', `${reg.url}/v2/blobs/cancel/blobs/uploads/`);
  const loc = new URL(s.headers.get('location')!, reg.url).toString();
  assert.equal((await call('DELETE', loc)).status, 204);
  const again = await call('DELETE', loc);
  assert.equal(again.status, 404);
  assert.equal(errCode(again), 'BLOB_UPLOAD_UNKNOWN');

  const d = await pushBlob(reg.url, 'blobs/source', Buffer.from('mount me'));
  const mount = await call('POST', `${reg.url}/v2/blobs/target/blobs/uploads/?mount=${d}&from=blobs/source`);
  assert.equal(mount.status, 201);
  assert.equal(mount.headers.get('location'), `/v2/blobs/target/blobs/${d}`);
  assert.equal((await call('GET', `${reg.url}/v2/blobs/target/blobs/${d}`)).body.toString(), 'mount me');
  // Mounting what the source does not have starts an ordinary upload.
  const fallback = await call('POST', `${reg.url}/v2/blobs/target/blobs/uploads/?mount=${sha256('nope')}&from=blobs/source`);
  assert.equal(fallback.status, 202);
  await call('DELETE', new URL(fallback.headers.get('location')!, reg.url).toString());

  const del = await call('DELETE', `${reg.url}/v2/blobs/target/blobs/${d}`);
  assert.equal(del.status, 202);
  assert.equal((await call('HEAD', `${reg.url}/v2/blobs/target/blobs/${d}`)).status, 404);
  assert.equal((await call('HEAD', `${reg.url}/v2/blobs/source/blobs/${d}`)).status, 200);
  assert.equal(errCode(await call('DELETE', `${reg.url}/v2/blobs/target/blobs/${d}`)), 'BLOB_UNKNOWN');
});

// ---------------------------------------------------------------------------
// Manifests

const amd = image('amd64', tinyTar('amd', 'amd64\n'));
const arm = image('arm64', tinyTar('arm', 'arm64\n'));

test('manifest PUT validates: bad JSON, missing blobs, type mismatch, digest mismatch, schema 1', async () => {
  const repo = 'man/check';
  const missing = await putManifest(reg.url, repo, 'v1', amd.manifest);
  assert.equal(missing.status, 400);
  const codes = missing.json().errors!.map((e) => e.code);
  assert.deepEqual(codes, ['MANIFEST_BLOB_UNKNOWN', 'MANIFEST_BLOB_UNKNOWN']);
  await pushBlob(reg.url, repo, amd.config);
  await pushBlob(reg.url, repo, amd.layers[0]!);

  const notJson = await call('PUT', `${reg.url}/v2/${repo}/manifests/v1`, { body: '{"schemaVersion": 2,', headers: { 'Content-Type': OCI_MANIFEST } });
  assert.equal(notJson.status, 400);
  assert.equal(errCode(notJson), 'MANIFEST_INVALID');
  const mismatch = await call('PUT', `${reg.url}/v2/${repo}/manifests/v1`, { body: amd.manifest.bytes, headers: { 'Content-Type': DOCKER_MANIFEST } });
  assert.equal(errCode(mismatch), 'MANIFEST_INVALID');
  const schema1 = await call('PUT', `${reg.url}/v2/${repo}/manifests/v1`, { body: JSON.stringify({ schemaVersion: 1, name: repo, tag: 'v1', fsLayers: [] }), headers: { 'Content-Type': 'application/vnd.docker.distribution.manifest.v1+prettyjws' } });
  assert.equal(errCode(schema1), 'MANIFEST_INVALID');
  const wrongDigest = await putManifest(reg.url, repo, sha256('other'), amd.manifest);
  assert.equal(wrongDigest.status, 400);
  assert.equal(errCode(wrongDigest), 'DIGEST_INVALID');
  const badSize = blob(OCI_MANIFEST, JSON.stringify({ schemaVersion: 2, mediaType: OCI_MANIFEST, config: descriptor(amd.config), layers: [{ ...descriptor(amd.layers[0]!), size: 1 }] }));
  assert.equal(errCode(await putManifest(reg.url, repo, 'v1', badSize)), 'MANIFEST_INVALID');
  const badTag = await putManifest(reg.url, repo, '-bad', amd.manifest);
  assert.equal(badTag.status, 400);
  assert.equal((await call('GET', `${reg.url}/v2/${repo}/manifests/v1`)).status, 404);
});

test('manifests by tag and digest, content negotiation, HEAD, tags with ?tag=, delete by tag and digest', async () => {
  const repo = 'man/ok';
  await pushImage(reg.url, repo, 'v1', amd);
  const got = await call('GET', `${reg.url}/v2/${repo}/manifests/v1`, { headers: { Accept: `${OCI_MANIFEST}, ${OCI_INDEX}` } });
  assert.equal(got.status, 200);
  assert.equal(got.headers.get('content-type'), OCI_MANIFEST);
  assert.equal(got.headers.get('docker-content-digest'), amd.manifest.digest);
  assert.ok(got.body.equals(amd.manifest.bytes), 'stored byte for byte');
  const head = await call('HEAD', `${reg.url}/v2/${repo}/manifests/${amd.manifest.digest}`);
  assert.equal(head.status, 200);
  assert.equal(head.headers.get('content-length'), String(amd.manifest.size));
  // A client that only reads Docker manifests is not handed an OCI one.
  const refused = await call('GET', `${reg.url}/v2/${repo}/manifests/v1`, { headers: { Accept: DOCKER_MANIFEST } });
  assert.equal(refused.status, 404);
  assert.equal(errCode(refused), 'MANIFEST_UNKNOWN');
  assert.equal((await call('GET', `${reg.url}/v2/${repo}/manifests/v1`, { headers: { Accept: '*/*' } })).status, 200);

  // Docker schema2 image and a manifest list: a client without list support gets the amd64 entry.
  const dAmd = image('amd64', tinyTar('d', 'docker amd64\n'), { docker: true });
  const dArm = image('arm64', tinyTar('d', 'docker arm64\n'), { docker: true });
  await pushImage(reg.url, repo, 'docker-amd64', dAmd);
  await pushImage(reg.url, repo, 'docker-arm64', dArm);
  const list = blob(DOCKER_LIST, JSON.stringify({
    schemaVersion: 2,
    mediaType: DOCKER_LIST,
    manifests: [
      descriptor(dArm.manifest, { platform: { architecture: 'arm64', os: 'linux' } }),
      descriptor(dAmd.manifest, { platform: { architecture: 'amd64', os: 'linux' } }),
    ],
  }));
  const putList = await putManifest(reg.url, repo, 'multi', list);
  assert.equal(putList.status, 201, putList.body.toString());
  const asList = await call('GET', `${reg.url}/v2/${repo}/manifests/multi`, { headers: { Accept: `${DOCKER_LIST}, ${DOCKER_MANIFEST}` } });
  assert.equal(asList.headers.get('content-type'), DOCKER_LIST);
  const oldClient = await call('GET', `${reg.url}/v2/${repo}/manifests/multi`, { headers: { Accept: DOCKER_MANIFEST } });
  assert.equal(oldClient.status, 200);
  assert.equal(oldClient.headers.get('content-type'), DOCKER_MANIFEST);
  assert.equal(oldClient.headers.get('docker-content-digest'), dAmd.manifest.digest);

  // An index whose entries are not in the repository is refused.
  const orphan = index([{ image: arm, arch: 'arm64' }]);
  const bad = await putManifest(reg.url, repo, 'orphan', orphan);
  assert.equal(bad.status, 400);
  assert.equal(errCode(bad), 'MANIFEST_BLOB_UNKNOWN');

  // PUT by digest with several tags.
  const tagged = await putManifest(reg.url, repo, `${amd.manifest.digest}?tag=a1&tag=a2`, amd.manifest);
  assert.equal(tagged.status, 201);
  assert.equal(tagged.headers.get('oci-tag'), 'a1, a2');
  assert.equal(tagged.headers.get('location'), `/v2/${repo}/manifests/${amd.manifest.digest}`);

  // Delete a tag: only the tag goes.
  assert.equal((await call('DELETE', `${reg.url}/v2/${repo}/manifests/a2`)).status, 202);
  assert.equal((await call('GET', `${reg.url}/v2/${repo}/manifests/a2`)).status, 404);
  assert.equal((await call('GET', `${reg.url}/v2/${repo}/manifests/a1`)).status, 200);
  // Delete by digest: the manifest and every tag pointing at it.
  assert.equal((await call('DELETE', `${reg.url}/v2/${repo}/manifests/${amd.manifest.digest}`)).status, 202);
  for (const ref of ['a1', 'v1', amd.manifest.digest]) {
    const r = await call('GET', `${reg.url}/v2/${repo}/manifests/${ref}`);
    assert.equal(r.status, 404);
    assert.equal(errCode(r), 'MANIFEST_UNKNOWN');
  }
  assert.equal(errCode(await call('DELETE', `${reg.url}/v2/${repo}/manifests/${amd.manifest.digest}`)), 'MANIFEST_UNKNOWN');
});

test('tags list and catalog paginate with n, last and Link', async () => {
  const repo = 'pages/tags';
  await pushImage(reg.url, repo, 'd', amd);
  for (const t of ['b', 'a', 'c']) assert.equal((await putManifest(reg.url, repo, t, amd.manifest)).status, 201);
  const all = await call('GET', `${reg.url}/v2/${repo}/tags/list`);
  assert.deepEqual(all.json(), { name: repo, tags: ['a', 'b', 'c', 'd'] });
  const p1 = await call('GET', `${reg.url}/v2/${repo}/tags/list?n=2`);
  assert.deepEqual(p1.json().tags, ['a', 'b']);
  assert.equal(p1.headers.get('link'), `</v2/${repo}/tags/list?n=2&last=b>; rel="next"`);
  const p2 = await call('GET', `${reg.url}/v2/${repo}/tags/list?n=2&last=b`);
  assert.deepEqual(p2.json().tags, ['c', 'd']);
  assert.equal(p2.headers.get('link'), null);
  const zero = await call('GET', `${reg.url}/v2/${repo}/tags/list?n=0`);
  assert.deepEqual(zero.json().tags, []);
  assert.equal(zero.headers.get('link'), null);
  const unknown = await call('GET', `${reg.url}/v2/pages/nothing/tags/list`);
  assert.equal(unknown.status, 404);
  assert.equal(errCode(unknown), 'NAME_UNKNOWN');

  const cat = await call('GET', `${reg.url}/v2/_catalog`);
  const repos = cat.json().repositories as string[];
  assert.ok(repos.includes(repo) && repos.includes('man/ok'));
  assert.deepEqual(repos, [...repos].sort());
  const c1 = await call('GET', `${reg.url}/v2/_catalog?n=1`);
  assert.deepEqual(c1.json().repositories, [repos[0]]);
  assert.equal(c1.headers.get('link'), `</v2/_catalog?n=1&last=${encodeURIComponent(repos[0]!)}>; rel="next"`);
  const c2 = await call('GET', `${reg.url}/v2/_catalog?n=1&last=${repos[0]}`);
  assert.deepEqual(c2.json().repositories, [repos[1]]);
});

test('referrers API: subject accepted before it exists, OCI-Subject, artifactType filter, removal with the referrer', async () => {
  const repo = 'refs/app';
  const empty = blob('application/vnd.oci.empty.v1+json', '{}');
  await pushBlob(reg.url, repo, empty);
  const sig = blob(OCI_MANIFEST, JSON.stringify({
    schemaVersion: 2,
    mediaType: OCI_MANIFEST,
    artifactType: 'application/vnd.example.signature',
    config: descriptor(empty),
    layers: [descriptor(empty)],
    subject: descriptor(amd.manifest),
    annotations: { 'org.example.signed-by': 'tests' },
  }));
  // The subject is not in the repository yet: still accepted.
  const put = await putManifest(reg.url, repo, sig.digest, sig);
  assert.equal(put.status, 201, put.body.toString());
  assert.equal(put.headers.get('oci-subject'), amd.manifest.digest);
  await pushImage(reg.url, repo, 'v1', amd);

  const list = await call('GET', `${reg.url}/v2/${repo}/referrers/${amd.manifest.digest}`);
  assert.equal(list.status, 200);
  assert.equal(list.headers.get('content-type'), OCI_INDEX);
  assert.deepEqual(list.json(), {
    schemaVersion: 2,
    mediaType: OCI_INDEX,
    manifests: [{ mediaType: OCI_MANIFEST, digest: sig.digest, size: sig.size, artifactType: 'application/vnd.example.signature', annotations: { 'org.example.signed-by': 'tests' } }],
  });
  const filtered = await call('GET', `${reg.url}/v2/${repo}/referrers/${amd.manifest.digest}?artifactType=application/vnd.example.sbom`);
  assert.equal(filtered.headers.get('oci-filters-applied'), 'artifactType');
  assert.deepEqual(filtered.json().manifests, []);
  const kept = await call('GET', `${reg.url}/v2/${repo}/referrers/${amd.manifest.digest}?artifactType=application/vnd.example.signature`);
  assert.equal((kept.json().manifests as unknown[]).length, 1);
  // Never 404, even for a repository that does not exist.
  const none = await call('GET', `${reg.url}/v2/refs/none/referrers/${amd.manifest.digest}`);
  assert.equal(none.status, 200);
  assert.deepEqual(none.json().manifests, []);
  assert.equal(errCode(await call('GET', `${reg.url}/v2/${repo}/referrers/bogus`)), 'DIGEST_INVALID');

  assert.equal((await call('DELETE', `${reg.url}/v2/${repo}/manifests/${sig.digest}`)).status, 202);
  assert.deepEqual((await call('GET', `${reg.url}/v2/${repo}/referrers/${amd.manifest.digest}`)).json().manifests, []);
});

// ---------------------------------------------------------------------------
// skopeo

/** The busybox image as an OCI layout (made once). */
function busyboxLayout(): { src: string; bb: ReturnType<typeof image> } {
  const bb = image('amd64', busyboxTar(ROOT));
  const src = join(dir, 'layout-busybox');
  if (!existsSync(join(src, 'index.json'))) writeLayout(src, imageBlobs(bb), bb.manifest, 'latest');
  return { src, bb };
}

test('skopeo copies an image into the registry and back out unchanged', () => {
  const { src, bb } = busyboxLayout();
  const push = skopeo(['copy', '--dest-tls-verify=false', `oci:${src}:latest`, `docker://${reg.host}/library/busybox:latest`]);
  assert.equal(push.code, 0, push.out);
  const inspect = skopeo(['inspect', '--tls-verify=false', `docker://${reg.host}/library/busybox:latest`]);
  assert.equal(inspect.code, 0, inspect.out);
  assert.equal(JSON.parse(inspect.out).Digest, bb.manifest.digest);
  const out = join(dir, 'out-busybox');
  const pull = skopeo(['copy', '--src-tls-verify=false', `docker://${reg.host}/library/busybox:latest`, `dir:${out}`]);
  assert.equal(pull.code, 0, pull.out);
  assert.ok(readFileSync(join(out, bb.layers[0]!.digest.slice(7))).equals(bb.layers[0]!.bytes));
  assert.ok(readFileSync(join(out, 'manifest.json')).equals(bb.manifest.bytes));
  // docker-archive round trip too (skopeo converts to Docker schema2 on the way).
  const arch = join(dir, 'busybox-archive.tar');
  assert.equal(skopeo(['copy', '--src-tls-verify=false', `docker://${reg.host}/library/busybox:latest`, `docker-archive:${arch}:busybox:latest`]).code, 0);
  const back = skopeo(['copy', '--dest-tls-verify=false', `docker-archive:${arch}`, `docker://${reg.host}/archived/busybox:v1`]);
  assert.equal(back.code, 0, back.out);
  const raw = skopeo(['inspect', '--raw', '--tls-verify=false', `docker://${reg.host}/archived/busybox:v1`]);
  assert.equal(JSON.parse(raw.out).mediaType, DOCKER_MANIFEST);
});

test('skopeo copies a multi-platform index in and out, and picks one platform', () => {
  const bb = image('amd64', busyboxTar(ROOT));
  const idx = index([{ image: bb, arch: 'amd64' }, { image: arm, arch: 'arm64' }]);
  const src = join(dir, 'layout-multi');
  writeLayout(src, [...imageBlobs(bb), ...imageBlobs(arm), idx], idx, 'multi');
  const push = skopeo(['copy', '--all', '--dest-tls-verify=false', `oci:${src}:multi`, `docker://${reg.host}/multi/busybox:v1`]);
  assert.equal(push.code, 0, push.out);
  const raw = skopeo(['inspect', '--raw', '--tls-verify=false', `docker://${reg.host}/multi/busybox:v1`]);
  const got = JSON.parse(raw.out) as { mediaType: string; manifests: { platform: { architecture: string } }[] };
  assert.equal(got.mediaType, OCI_INDEX);
  assert.deepEqual(got.manifests.map((m) => m.platform.architecture), ['amd64', 'arm64']);
  assert.equal(sha256(raw.out), idx.digest, 'the index is stored byte for byte');

  const armOut = join(dir, 'out-arm');
  const one = skopeo(['copy', '--override-arch', 'arm64', '--src-tls-verify=false', `docker://${reg.host}/multi/busybox:v1`, `dir:${armOut}`]);
  assert.equal(one.code, 0, one.out);
  assert.ok(readFileSync(join(armOut, 'manifest.json')).equals(arm.manifest.bytes));

  const allOut = join(dir, 'out-all');
  const all = skopeo(['copy', '--all', '--src-tls-verify=false', `docker://${reg.host}/multi/busybox:v1`, `oci:${allOut}:v1`]);
  assert.equal(all.code, 0, all.out);
  const layoutIndex = JSON.parse(readFileSync(join(allOut, 'index.json'), 'utf8')) as { manifests: { digest: string }[] };
  assert.equal(layoutIndex.manifests[0]!.digest, idx.digest, 'the index comes back byte for byte');
  for (const b of [...imageBlobs(bb), ...imageBlobs(arm)]) assert.ok(existsSync(join(allOut, 'blobs', 'sha256', b.digest.slice(7))), b.digest);
});

// ---------------------------------------------------------------------------
// gc, read-only (these restart the shared server on the same root)

test('gc removes unreferenced blobs only (dry run first), and images still copy out', async () => {
  const repo = 'gc/app';
  const keep = image('amd64', tinyTar('keep', 'kept\n'));
  await pushImage(reg.url, repo, 'v1', keep);
  const loose = await pushBlob(reg.url, repo, Buffer.from('uploaded but never referenced'));
  const gone = image('amd64', tinyTar('gone', 'deleted\n'));
  await pushImage(reg.url, repo, 'old', gone);
  assert.equal((await call('DELETE', `${reg.url}/v2/${repo}/manifests/${gone.manifest.digest}`)).status, 202);
  const blobFile = (d: string) => join(reg.root, 'blobs', 'sha256', d.slice(7));

  await reg.stop();
  const dry = berth(['registry', 'gc', '--dry-run', '--root', reg.root]);
  assert.equal(dry.code, 0, dry.stderr);
  assert.match(dry.stdout, new RegExp(`would remove blob ${loose}`));
  assert.ok(existsSync(blobFile(loose)), 'dry run removes nothing');

  const gc = berth(['registry', 'gc', '--root', reg.root]);
  assert.equal(gc.code, 0, gc.stderr);
  assert.match(gc.stdout, /freed \d+ bytes/);
  for (const d of [loose, gone.manifest.digest, gone.config.digest, gone.layers[0]!.digest]) assert.ok(!existsSync(blobFile(d)), `${d} removed`);
  for (const d of [keep.manifest.digest, keep.config.digest, keep.layers[0]!.digest, amd.manifest.digest]) assert.ok(existsSync(blobFile(d)), `${d} kept`);

  await reg.start();
  assert.equal((await call('HEAD', `${reg.url}/v2/${repo}/blobs/${loose}`)).status, 404);
  assert.equal((await call('HEAD', `${reg.url}/v2/${repo}/blobs/${keep.layers[0]!.digest}`)).status, 200);
  const out = join(dir, 'out-after-gc');
  const pull = skopeo(['copy', '--all', '--src-tls-verify=false', `docker://${reg.host}/multi/busybox:v1`, `oci:${out}:v1`]);
  assert.equal(pull.code, 0, pull.out);

  const missing = berth(['registry', 'gc', '--root', join(dir, 'no-such-root')]);
  assert.notEqual(missing.code, 0);
  assert.match(missing.stderr, /no such directory/);
});

test('--read-only serves pulls and refuses pushes and deletes with 405 UNSUPPORTED', async () => {
  await reg.stop();
  await reg.start(['--read-only']);
  try {
    assert.equal((await call('GET', `${reg.url}/v2/man/ok/manifests/multi`)).status, 200);
    const post = await call('POST', `${reg.url}/v2/ro/blobs/uploads/`);
    assert.equal(post.status, 405);
    assert.equal(errCode(post), 'UNSUPPORTED');
    assert.equal(errCode(await call('DELETE', `${reg.url}/v2/man/ok/manifests/multi`)), 'UNSUPPORTED');
    assert.equal(errCode(await putManifest(reg.url, 'man/ok', 'x', amd.manifest)), 'UNSUPPORTED');
    const push = skopeo(['copy', '--dest-tls-verify=false', `oci:${busyboxLayout().src}:latest`, `docker://${reg.host}/ro/busybox:latest`]);
    assert.notEqual(push.code, 0);
    const pull = skopeo(['inspect', '--tls-verify=false', `docker://${reg.host}/library/busybox:latest`]);
    assert.equal(pull.code, 0, pull.out);
  } finally {
    await reg.stop();
    await reg.start();
  }
});

// ---------------------------------------------------------------------------
// Authentication and TLS: their own servers

function htpasswdFile(path: string): void {
  const b = spawnSync('htpasswd', ['-cbB', path, 'alice', 'bcrypt pass']);
  assert.equal(b.status, 0, b.stderr?.toString());
  const m = spawnSync('htpasswd', ['-bm', path, 'bob', 'apr1-pass']);
  assert.equal(m.status, 0, m.stderr?.toString());
  assert.match(readFileSync(path, 'utf8'), /alice:\$2y\$.*\nbob:\$apr1\$/);
}

const basic = (user: string, pass: string) => ({ Authorization: `Basic ${Buffer.from(`${user}:${pass}`).toString('base64')}` });

test('basic auth with an htpasswd file of bcrypt and apr1 hashes; repeated failures are throttled', async () => {
  const root = join(dir, 'auth-basic');
  mkdirSync(root);
  const pw = join(root, 'htpasswd');
  htpasswdFile(pw);
  const r = new BerthRegistry(join(root, 'data'));
  await r.start(['--htpasswd', pw]);
  try {
    const anon = await call('GET', `${r.url}/v2/`);
    assert.equal(anon.status, 401);
    assert.equal(errCode(anon), 'UNAUTHORIZED');
    assert.equal(anon.headers.get('www-authenticate'), 'Basic realm="berth-registry"');
    assert.equal((await call('GET', `${r.url}/v2/`, { headers: basic('alice', 'wrong') })).status, 401);
    assert.equal((await call('GET', `${r.url}/v2/`, { headers: basic('alice', 'bcrypt pass') })).status, 200);
    assert.equal((await call('GET', `${r.url}/v2/`, { headers: basic('bob', 'apr1-pass') })).status, 200);
    assert.equal((await call('GET', `${r.url}/v2/_catalog`)).status, 401);

    const { src } = busyboxLayout();
    const noCreds = skopeo(['copy', '--dest-tls-verify=false', `oci:${src}:latest`, `docker://${r.host}/auth/busybox:latest`]);
    assert.notEqual(noCreds.code, 0);
    assert.match(noCreds.out, /unauthorized|authentication required/i);
    const push = skopeo(['copy', '--dest-tls-verify=false', '--dest-creds', 'alice:bcrypt pass', `oci:${src}:latest`, `docker://${r.host}/auth/busybox:latest`]);
    assert.equal(push.code, 0, push.out);
    const pull = skopeo(['inspect', '--tls-verify=false', '--creds', 'bob:apr1-pass', `docker://${r.host}/auth/busybox:latest`]);
    assert.equal(pull.code, 0, pull.out);

    // Wrong passwords from one address: after 20 in a minute, 429 with Retry-After.
    let last: Res | undefined;
    for (let i = 0; i < 21; i++) last = await call('GET', `${r.url}/v2/`, { headers: basic('alice', `guess${i}`) });
    assert.equal(last!.status, 429);
    assert.equal(errCode(last!), 'TOOMANYREQUESTS');
    assert.ok(Number(last!.headers.get('retry-after')) > 0);
  } finally {
    await r.stop();
  }
});

test('token auth: Bearer challenge, realm issues signed tokens, bad and foreign tokens refused, read-only denies push', async () => {
  const root = join(dir, 'auth-token');
  mkdirSync(root);
  const pw = join(root, 'htpasswd');
  htpasswdFile(pw);
  const r = new BerthRegistry(join(root, 'data'));
  await r.start(['--htpasswd', pw, '--auth', 'token']);
  try {
    const realm = `${r.url}/auth/token`;
    const anon = await call('GET', `${r.url}/v2/`);
    assert.equal(anon.status, 401);
    assert.equal(anon.headers.get('www-authenticate'), `Bearer realm="${realm}",service="berth-registry"`);
    const scoped = await call('GET', `${r.url}/v2/tok/app/tags/list`);
    assert.equal(scoped.headers.get('www-authenticate'), `Bearer realm="${realm}",service="berth-registry",scope="repository:tok/app:pull"`);

    // Anonymous clients get a token that grants nothing.
    const anonToken = await call('GET', `${realm}?service=berth-registry&scope=repository:tok/app:pull`);
    assert.equal(anonToken.status, 200);
    const anonUse = await call('GET', `${r.url}/v2/tok/app/tags/list`, { headers: { Authorization: `Bearer ${anonToken.json().token}` } });
    assert.equal(anonUse.status, 401);
    assert.equal(anonUse.json().errors![0]!.message, 'authentication required');
    assert.equal((await call('GET', `${realm}?service=berth-registry`, { headers: basic('alice', 'nope') })).status, 401);
    const issued = await call('GET', `${realm}?service=berth-registry&scope=repository:tok/app:pull,push`, { headers: basic('alice', 'bcrypt pass') });
    assert.equal(issued.status, 200);
    const token = issued.json().token as string;
    assert.equal(issued.json().access_token, token);
    const bearer = (t: string) => ({ Authorization: `Bearer ${t}` });
    assert.equal((await call('GET', `${r.url}/v2/`, { headers: bearer(token) })).status, 200);
    const blobUp = await call('POST', `${r.url}/v2/tok/app/blobs/uploads/?digest=${sha256('tok')}`, { body: 'tok', headers: bearer(token) });
    assert.equal(blobUp.status, 201);

    const [h, p, s] = token.split('.');
    const forged = `${h}.${p}.${s!.slice(0, -2)}${s!.endsWith('AA') ? 'BB' : 'AA'}`;
    const bad = await call('GET', `${r.url}/v2/`, { headers: bearer(forged) });
    assert.equal(bad.status, 401);
    assert.match(bad.headers.get('www-authenticate')!, /error="invalid_token"/);
    const claims = JSON.parse(Buffer.from(p!, 'base64url').toString());
    claims.access = [{ type: 'repository', name: 'other/app', actions: ['pull', 'push'] }];
    const tampered = `${h}.${Buffer.from(JSON.stringify(claims)).toString('base64url')}.${s}`;
    assert.equal((await call('GET', `${r.url}/v2/other/app/tags/list`, { headers: bearer(tampered) })).status, 401);
    const foreign = await call('GET', `${r.url}/v2/other/app/tags/list`, { headers: bearer(token) });
    assert.equal(foreign.status, 401);
    assert.match(foreign.headers.get('www-authenticate')!, /scope="repository:other\/app:pull",error="insufficient_scope"/);

    // OAuth2 password grant (what containerd tries first).
    const form = new URLSearchParams({ grant_type: 'password', username: 'bob', password: 'apr1-pass', service: 'berth-registry', scope: 'repository:tok/app:pull', client_id: 'test' });
    const oauth = await call('POST', realm, { body: form.toString(), headers: { 'Content-Type': 'application/x-www-form-urlencoded' } });
    assert.equal(oauth.status, 200);
    assert.equal(oauth.json().scope, 'repository:tok/app:pull');
    assert.equal((await call('GET', `${r.url}/v2/tok/app/blobs/${sha256('tok')}`, { headers: bearer(oauth.json().access_token as string) })).status, 200);

    const { src } = busyboxLayout();
    const push = skopeo(['copy', '--dest-tls-verify=false', '--dest-creds', 'alice:bcrypt pass', `oci:${src}:latest`, `docker://${r.host}/tok/busybox:latest`]);
    assert.equal(push.code, 0, push.out);
    const pull = skopeo(['inspect', '--tls-verify=false', '--creds', 'bob:apr1-pass', `docker://${r.host}/tok/busybox:latest`]);
    assert.equal(pull.code, 0, pull.out);
    assert.notEqual(skopeo(['inspect', '--tls-verify=false', '--creds', 'bob:wrong', `docker://${r.host}/tok/busybox:latest`]).code, 0);

    await r.stop();
    await r.start(['--htpasswd', pw, '--auth', 'token', '--read-only']);
    const ro = await call('GET', `${r.url}/auth/token?service=berth-registry&scope=repository:tok/app:pull,push`, { headers: basic('alice', 'bcrypt pass') });
    const roToken = ro.json().token as string;
    const claimsRo = JSON.parse(Buffer.from(roToken.split('.')[1]!, 'base64url').toString());
    assert.deepEqual(claimsRo.access, [{ type: 'repository', name: 'tok/app', actions: ['pull'] }]);
    const denied = await call('POST', `${r.url}/v2/tok/app/blobs/uploads/`, { headers: bearer(roToken) });
    assert.equal(denied.status, 403);
    assert.equal(errCode(denied), 'DENIED');
    assert.equal((await call('GET', `${r.url}/v2/tok/app/tags/list`, { headers: bearer(roToken) })).status, 200);
  } finally {
    await r.stop();
  }
});

test('HTTPS with a self-signed certificate: curl and skopeo verify it; plain HTTP is not served', async () => {
  const root = join(dir, 'tls');
  mkdirSync(join(root, 'certs'), { recursive: true });
  const cert = join(root, 'certs', 'ca.crt');
  const key = join(root, 'key.pem');
  const o = spawnSync('openssl', ['req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-days', '1', '-subj', '/CN=127.0.0.1', '-addext', 'subjectAltName=IP:127.0.0.1', '-keyout', key, '-out', cert], { encoding: 'utf8' });
  assert.equal(o.status, 0, o.stderr);
  const r = new BerthRegistry(join(root, 'data'));
  await r.start(['--tls-cert', cert, '--tls-key', key]);
  try {
    assert.match(r.url, /^https:\/\/127\.0\.0\.1:\d+$/);
    const c = spawnSync('curl', ['-sS', '--cacert', cert, `${r.url}/v2/`], { encoding: 'utf8' });
    assert.equal(c.status, 0, c.stderr);
    assert.equal(c.stdout, '{}');
    assert.notEqual(spawnSync('curl', ['-sS', `${r.url}/v2/`]).status, 0, 'an unknown CA is refused');
    const plain = spawnSync('curl', ['-sS', '-o', '/dev/null', '-w', '%{http_code}', `http://${r.host}/v2/`], { encoding: 'utf8' });
    assert.notEqual(plain.stdout, '200');

    const { src } = busyboxLayout();
    const push = skopeo(['copy', '--dest-cert-dir', join(root, 'certs'), `oci:${src}:latest`, `docker://${r.host}/tls/busybox:latest`]);
    assert.equal(push.code, 0, push.out);
    const pull = skopeo(['inspect', '--cert-dir', join(root, 'certs'), `docker://${r.host}/tls/busybox:latest`]);
    assert.equal(pull.code, 0, pull.out);
    assert.notEqual(skopeo(['inspect', `docker://${r.host}/tls/busybox:latest`]).code, 0, 'skopeo without the CA refuses');
  } finally {
    await r.stop();
  }
});

test('berth registry serve refuses bad flags with a clear message', async () => {
  const bad = berth(['registry', 'serve', '--addr', 'nonsense', '--root', join(dir, 'x')]);
  assert.notEqual(bad.code, 0);
  assert.match(bad.stderr, /invalid address "nonsense"/);
  const tokenNoUsers = berth(['registry', 'serve', '--auth', 'token', '--root', join(dir, 'x')]);
  assert.notEqual(tokenNoUsers.code, 0);
  assert.match(tokenNoUsers.stderr, /--auth token needs --htpasswd/);
  const badAuth = berth(['registry', 'serve', '--auth', 'magic']);
  assert.match(badAuth.stderr, /invalid --auth "magic"/);
  const certOnly = berth(['registry', 'serve', '--tls-cert', '/nonexistent', '--root', join(dir, 'x')]);
  assert.match(certOnly.stderr, /--tls-cert and --tls-key go together/);
  const badHash = join(dir, 'plain.htpasswd');
  writeFileSync(badHash, 'carol:plaintext\n');
  const plain = berth(['registry', 'serve', '--htpasswd', badHash, '--root', join(dir, 'x')]);
  assert.match(plain.stderr, /unsupported password hash for carol/);
  const help = berth(['registry', 'serve', '--help']);
  assert.equal(help.code, 0);
  assert.match(help.stdout, /--htpasswd string/);
  // The port is taken: a clear error, no hang.
  const taken = berth(['registry', 'serve', '--addr', reg.host, '--root', join(dir, 'x')]);
  assert.notEqual(taken.code, 0);
  assert.match(taken.stderr, /EADDRINUSE/);
});
