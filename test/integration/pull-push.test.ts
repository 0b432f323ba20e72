/**
 * Pull and push against Debian's docker-registry on loopback, through the
 * berth CLI and the docker CLI: round trips between two daemons, mounts,
 * chunked uploads, all tags, pull by digest, a Docker Hub mirror, zstd and
 * multi-platform images, a dropped connection resumed, two pulls sharing
 * one download, and bad registries (wrong digest, truncated blob, bad
 * manifest, missing auth) refused with nothing left behind.
 */
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, readdirSync, rmSync, truncateSync, writeFileSync } from 'node:fs';
import { connect, createServer } from 'node:net';
import type { Server, Socket } from 'node:net';
import { join } from 'node:path';
import { TestDaemon, BUSYBOX_TAR } from '../helpers/daemon.ts';
import { TestRegistry, pushTarImage, sha256 } from '../helpers/registry.ts';
import { TokenServer } from '../helpers/token-server.ts';

const a = new TestDaemon('dist-a');
const b = new TestDaemon('dist-b');
let reg: TestRegistry;
let authReg: TestRegistry;
let mirrored: TestDaemon;
const regDir = mkdtempSync(`/tmp/berth-test-${process.env.BERTH_TEST_RUN ?? 'x'}-registry-`);
writeFileSync(join(regDir, 'owner'), `${process.pid}\n`);

before(async () => {
  reg = new TestRegistry(join(regDir, 'open'));
  await reg.start();
  authReg = new TestRegistry(join(regDir, 'auth'), { alice: 's3cret-pw' });
  await authReg.start();
  await a.start();
  await b.start();
  a.loadBusybox();
  mirrored = new TestDaemon('dist-m');
  await mirrored.start(['--registry-mirror', reg.url]);
});

after(async () => {
  await a.cleanup();
  await b.cleanup();
  await mirrored.cleanup();
  await reg.cleanup();
  await authReg.cleanup();
  rmSync(regDir, { recursive: true, force: true });
});

/** The busybox rootfs plus a marker file, so each test image has layers of its own. */
function busyboxWith(marker: string): Buffer {
  const dir = mkdtempSync(join(regDir, 'rootfs-'));
  assert.equal(spawnSync('tar', ['-C', dir, '-xf', BUSYBOX_TAR]).status, 0);
  writeFileSync(join(dir, 'marker'), `${marker}\n`);
  const out = spawnSync('tar', ['-C', dir, '-cf', '-', '.'], { maxBuffer: 64 << 20 }).stdout;
  rmSync(dir, { recursive: true, force: true });
  return out;
}

/** Runs a CLI without blocking this process (the test's own proxy must keep serving meanwhile). */
function runAsync(d: TestDaemon, bin: 'berth' | 'docker', args: string[]): Promise<{ code: number; out: string }> {
  return new Promise((resolve) => {
    const p = d.spawn(bin, args);
    p.stdin!.end();
    let out = '';
    p.stdout!.on('data', (x: Buffer) => (out += x.toString()));
    p.stderr!.on('data', (x: Buffer) => (out += x.toString()));
    p.on('close', (code) => resolve({ code: code ?? -1, out }));
  });
}

/** Everything a pull could leave behind in a daemon's data root. */
function storeState(d: TestDaemon): string {
  const list = (p: string): string[] => (existsSync(p) ? readdirSync(p).sort() : []);
  return JSON.stringify({
    blobs: list(join(d.dataRoot, 'content', 'blobs', 'sha256')),
    ingest: list(join(d.dataRoot, 'content', 'ingest')),
    layers: list(join(d.dataRoot, 'layers')),
    images: list(join(d.dataRoot, 'images')).filter((f) => f !== 'references.json'),
    refs: existsSync(join(d.dataRoot, 'images', 'references.json')) ? readFileSync(join(d.dataRoot, 'images', 'references.json'), 'utf8') : '',
  });
}

function ok(r: { code: number; stdout: string; stderr: string }, what: string): string {
  assert.equal(r.code, 0, `${what} failed: ${r.stderr}${r.stdout}`);
  return r.stdout;
}

test('push from one daemon, pull into another, run it; RepoDigests and re-push', () => {
  const ref = `${reg.host}/round/busybox:v1`;
  ok(a.berth(['tag', 'busybox', ref]), 'tag');
  const push = ok(a.berth(['push', ref]), 'push');
  assert.match(push, new RegExp(`The push refers to repository \\[${reg.host}/round/busybox\\]`));
  assert.match(push, /: Pushed\n/);
  const digest = /v1: digest: (sha256:[a-f0-9]{64}) size: \d+/.exec(push)?.[1];
  assert.ok(digest, push);
  // The pushing daemon now knows the repository digest.
  const digests = JSON.parse(ok(a.berth(['image', 'inspect', '-f', '{{json .RepoDigests}}', ref]), 'inspect')) as string[];
  assert.ok(digests.includes(`${reg.host}/round/busybox@${digest}`), String(digests));

  // Pushing again sends nothing.
  const again = ok(a.docker(['push', ref]), 'docker push');
  assert.match(again, /Layer already exists/);
  assert.match(again, new RegExp(`v1: digest: ${digest}`));

  const pull = ok(b.docker(['pull', ref]), 'docker pull');
  assert.match(pull, /v1: Pulling from round\/busybox/);
  assert.match(pull, /Pull complete/);
  assert.match(pull, new RegExp(`Digest: ${digest}`));
  assert.match(pull, new RegExp(`Status: Downloaded newer image for ${reg.host}/round/busybox:v1`));
  assert.equal(ok(b.berth(['run', '--rm', ref, 'echo', 'pulled-ok']), 'run'), 'pulled-ok\n');
  const bDigests = JSON.parse(ok(b.docker(['image', 'inspect', '-f', '{{json .RepoDigests}}', ref]), 'inspect b')) as string[];
  assert.deepEqual(bDigests, [`${reg.host}/round/busybox@${digest}`]);
  // Same image ID on both sides: the config came through byte for byte.
  assert.equal(ok(b.berth(['image', 'inspect', '-f', '{{.Id}}', ref]), 'id b'), ok(a.berth(['image', 'inspect', '-f', '{{.Id}}', 'busybox']), 'id a'));

  const upToDate = ok(b.berth(['pull', ref]), 'pull again');
  assert.match(upToDate, /Status: Image is up to date/);
  assert.doesNotMatch(upToDate, /Pulling fs layer/);

  // By digest, quietly: only the reference is printed.
  const byDigest = b.berth(['pull', '-q', `${reg.host}/round/busybox@${digest}`]);
  assert.equal(ok(byDigest, 'pull by digest'), `${reg.host}/round/busybox@${digest}\n`);
  assert.equal(ok(b.docker(['pull', '-q', ref]), 'docker pull -q'), `${ref}\n`);
});

test('a blob the registry holds in another repository is mounted, not uploaded', () => {
  ok(a.berth(['tag', 'busybox', `${reg.host}/mount-src/bb:1`]), 'tag');
  ok(a.berth(['push', `${reg.host}/mount-src/bb:1`]), 'push src');
  ok(a.berth(['tag', 'busybox', `${reg.host}/mount-dst/bb:1`]), 'tag');
  const out = ok(a.berth(['push', `${reg.host}/mount-dst/bb:1`]), 'push dst');
  assert.match(out, /Mounted from mount-src\/bb/);
});

test('push and pull --all-tags; a large layer goes up in chunks and comes back intact', () => {
  const dir = mkdtempSync(join(a.dir, 'big-'));
  mkdirSync(join(dir, 'data'));
  writeFileSync(join(dir, 'data', 'blob.bin'), randomBytes(40 << 20));
  assert.equal(spawnSync('tar', ['-C', dir, '-cf', join(dir, 'big.tar'), 'data']).status, 0);
  ok(a.berth(['import', join(dir, 'big.tar'), `${reg.host}/tags/big:one`]), 'import');
  ok(a.berth(['tag', 'busybox', `${reg.host}/tags/big:two`]), 'tag');
  const push = ok(a.berth(['push', '--all-tags', `${reg.host}/tags/big`]), 'push -a');
  assert.match(push, /one: digest: sha256:/);
  assert.match(push, /two: digest: sha256:/);
  // The 40 MB layer went up as PATCH chunks with Content-Range.
  assert.ok(reg.log.split('\n').filter((l) => l.includes('"PATCH /v2/tags/big/blobs/uploads/')).length >= 2, 'expected chunked PATCH uploads');
  const pull = ok(b.berth(['pull', '--all-tags', `${reg.host}/tags/big`]), 'pull -a');
  assert.match(pull, /one: Pulling from tags\/big/);
  assert.match(pull, /two: Pulling from tags\/big/);
  assert.match(pull, new RegExp(`${reg.host}/tags/big\\n$`));
  const tags = ok(b.berth(['images', '--format', '{{.Tag}}', `${reg.host}/tags/big`]), 'images').split('\n').filter(Boolean).sort();
  assert.deepEqual(tags, ['one', 'two']);
  assert.equal(ok(b.berth(['image', 'inspect', '-f', '{{.Id}}', `${reg.host}/tags/big:one`]), 'id'), ok(a.berth(['image', 'inspect', '-f', '{{.Id}}', `${reg.host}/tags/big:one`]), 'id a'));
  // The gzip blob made for the push is remembered: a second push sends the same digest.
  const again = ok(a.berth(['push', `${reg.host}/tags/big:one`]), 'push again');
  assert.match(again, /Layer already exists/);
  assert.equal(/one: digest: (\S+)/.exec(again)?.[1], /one: digest: (\S+)/.exec(push)?.[1]);
});

test('the docker CLI pulls Docker Hub names through a registry mirror', () => {
  ok(a.berth(['tag', 'busybox', `${reg.host}/library/busybox:latest`]), 'tag');
  ok(a.berth(['push', '-q', `${reg.host}/library/busybox:latest`]), 'seed mirror');
  const pull = ok(mirrored.docker(['pull', 'busybox']), 'docker pull busybox');
  assert.match(pull, /Using default tag: latest/);
  assert.match(pull, /latest: Pulling from library\/busybox/);
  assert.match(pull, /docker.io\/library\/busybox:latest\n$/);
  assert.equal(ok(mirrored.docker(['run', '--rm', 'busybox', 'echo', 'from-mirror']), 'run'), 'from-mirror\n');
  assert.match(ok(mirrored.berth(['pull', 'docker.io/library/busybox:latest']), 'berth pull'), /Image is up to date for busybox:latest/);
  assert.match(ok(mirrored.docker(['info']), 'info'), new RegExp(`Registry Mirrors:\\n\\s+${reg.url}`));
});

test('a zstd-compressed OCI image and an uncompressed one pull and run', async () => {
  await pushTarImage(reg, 'zstd/busybox', 'v1', busyboxWith('zstd'), { compress: 'zstd' });
  const pull = ok(b.berth(['pull', `${reg.host}/zstd/busybox:v1`]), 'pull zstd');
  assert.match(pull, /Pull complete/);
  assert.equal(ok(b.docker(['run', '--rm', `${reg.host}/zstd/busybox:v1`, 'cat', '/marker']), 'run zstd'), 'zstd\n');
  await pushTarImage(reg, 'plain/busybox', 'v1', busyboxWith('plain'), { compress: 'none' });
  ok(b.docker(['pull', `${reg.host}/plain/busybox:v1`]), 'pull plain');
  assert.equal(ok(b.berth(['run', '--rm', `${reg.host}/plain/busybox:v1`, 'cat', '/marker']), 'run plain'), 'plain\n');
  // A zstd image pushes back with its zstd layer and an OCI manifest.
  ok(b.berth(['tag', `${reg.host}/zstd/busybox:v1`, `${reg.host}/zstd/copy:v1`]), 'tag');
  ok(b.berth(['push', `${reg.host}/zstd/copy:v1`]), 'push zstd');
  const m = JSON.parse(ok(b.berth(['manifest', 'inspect', `${reg.host}/zstd/copy:v1`]), 'manifest inspect')) as { mediaType: string; layers: { mediaType: string }[] };
  assert.equal(m.mediaType, 'application/vnd.oci.image.manifest.v1+json');
  assert.equal(m.layers[0]!.mediaType, 'application/vnd.oci.image.layer.v1.tar+zstd');
});

test('a multi-platform index: this host by default, --platform to choose, a missing platform refused', async () => {
  const amd = await pushTarImage(reg, 'multi/img', undefined, busyboxWith('multi-amd64'), { compress: 'gzip', arch: 'amd64' });
  const marker = spawnSync('tar', ['-cf', '-', '-C', '/etc', 'hostname'], { maxBuffer: 1 << 20 }).stdout;
  const arm = await pushTarImage(reg, 'multi/img', undefined, marker, { compress: 'gzip', arch: 'arm64', variant: 'v8' });
  const index = {
    schemaVersion: 2,
    mediaType: 'application/vnd.oci.image.index.v1+json',
    manifests: [
      { mediaType: arm.manifest.mediaType, digest: arm.manifest.digest, size: arm.manifest.size, platform: { os: 'linux', architecture: 'arm64', variant: 'v8' } },
      { mediaType: amd.manifest.mediaType, digest: amd.manifest.digest, size: amd.manifest.size, platform: { os: 'linux', architecture: 'amd64' } },
    ],
  };
  const idx = await reg.putManifest('multi/img', 'latest', index.mediaType, index);
  const ref = `${reg.host}/multi/img:latest`;
  const pull = ok(b.docker(['pull', ref]), 'pull index');
  assert.match(pull, new RegExp(`Digest: ${idx.digest}`));
  assert.equal(ok(b.docker(['image', 'inspect', '-f', '{{.Architecture}}', ref]), 'arch'), 'amd64\n');
  assert.equal(ok(b.berth(['run', '--rm', ref, 'cat', '/marker']), 'run'), 'multi-amd64\n');
  const digests = JSON.parse(ok(b.berth(['image', 'inspect', '-f', '{{json .RepoDigests}}', ref]), 'digests')) as string[];
  assert.deepEqual(digests, [`${reg.host}/multi/img@${idx.digest}`]);

  ok(b.berth(['pull', '--platform', 'linux/arm64', ref]), 'pull arm64');
  assert.equal(ok(b.berth(['image', 'inspect', '-f', '{{.Architecture}}/{{.Variant}}', ref]), 'arch'), 'arm64/v8\n');

  const before = storeState(b);
  const none = b.docker(['pull', '--platform', 'linux/s390x', ref]);
  assert.notEqual(none.code, 0);
  assert.match(none.stderr, /no matching manifest for linux\/s390x in the manifest list entries/);
  assert.equal(storeState(b), before);

  const dist = JSON.parse(ok(b.berth(['manifest', 'inspect', ref]), 'manifest inspect')) as { manifests: { platform: { architecture: string } }[] };
  assert.deepEqual(dist.manifests.map((m) => m.platform.architecture), ['arm64', 'amd64']);
});

test('GET /distribution/{name}/json describes what the registry holds', () => {
  const r = spawnSync('curl', ['-sS', '--unix-socket', b.socket, `http://localhost/v1.51/distribution/${reg.host}/multi/img:latest/json`], { encoding: 'utf8' });
  const j = JSON.parse(r.stdout) as { Descriptor: { mediaType: string; digest: string }; Platforms: { architecture: string }[] };
  assert.equal(j.Descriptor.mediaType, 'application/vnd.oci.image.index.v1+json');
  assert.deepEqual(j.Platforms.map((p) => p.architecture).sort(), ['amd64', 'arm64']);
});

/** A TCP relay to the registry that cuts the first big response short, once. */
function flakyProxy(target: number, cutAfter: number): Promise<{ server: Server; port: number; cuts: () => number }> {
  let cuts = 0;
  const server = createServer((client: Socket) => {
    const up = connect(target, '127.0.0.1');
    let seen = 0;
    client.on('error', () => undefined);
    up.on('error', () => client.destroy());
    client.pipe(up);
    up.on('data', (d: Buffer) => {
      seen += d.length;
      if (cuts === 0 && seen > cutAfter) {
        cuts++;
        client.write(d.subarray(0, d.length - (seen - cutAfter)));
        client.destroy();
        up.destroy();
        return;
      }
      client.write(d);
    });
    up.on('end', () => client.end());
  });
  return new Promise((resolve) => server.listen(0, '127.0.0.1', () => resolve({ server, port: (server.address() as { port: number }).port, cuts: () => cuts })));
}

test('a pull whose connection drops mid-layer resumes and completes', async () => {
  const big = mkdtempSync(join(a.dir, 'flaky-'));
  writeFileSync(join(big, 'noise.bin'), randomBytes(8 << 20));
  const tar = spawnSync('tar', ['-cf', '-', '-C', big, 'noise.bin'], { maxBuffer: 64 << 20 }).stdout;
  await pushTarImage(reg, 'flaky/img', 'v1', tar, { compress: 'none' });
  const proxy = await flakyProxy(reg.port, 3 << 20);
  try {
    const ref = `127.0.0.1:${proxy.port}/flaky/img:v1`;
    const r = await runAsync(b, 'berth', ['pull', ref]);
    assert.equal(r.code, 0, r.out);
    assert.match(r.out, /Pull complete/);
    assert.equal(proxy.cuts(), 1);
    assert.equal(ok(b.berth(['image', 'inspect', '-f', '{{index .RootFS.Layers 0}}', ref]), 'inspect'), `${sha256(tar)}\n`);
  } finally {
    proxy.server.close();
  }
});

test('two pulls of the same image at once share one download', async () => {
  const big = mkdtempSync(join(a.dir, 'shared-'));
  writeFileSync(join(big, 'noise.bin'), randomBytes(24 << 20));
  const tar = spawnSync('tar', ['-cf', '-', '-C', big, 'noise.bin'], { maxBuffer: 64 << 20 }).stdout;
  const img = await pushTarImage(reg, 'shared/img', 'v1', tar, { compress: 'gzip' });
  const ref = `${reg.host}/shared/img:v1`;
  const [r1, r2] = await Promise.all([runAsync(b, 'berth', ['pull', ref]), runAsync(b, 'docker', ['pull', ref])]);
  assert.equal(r1.code, 0, r1.out);
  assert.equal(r2.code, 0, r2.out);
  assert.equal(reg.blobGets(img.layer.digest), 1, 'the layer was fetched more than once');
});

test('a blob whose bytes do not match its digest is refused and nothing is kept', async () => {
  const tar = spawnSync('tar', ['-cf', '-', '-C', '/etc', 'os-release'], { maxBuffer: 1 << 20 }).stdout;
  const img = await pushTarImage(reg, 'bad/digest', 'v1', tar, { compress: 'gzip' });
  const p = reg.blobDataPath(img.layer.digest);
  const bytes = readFileSync(p);
  bytes[bytes.length - 5] ^= 0xff;
  writeFileSync(p, bytes);
  const before = storeState(b);
  for (const bin of ['berth', 'docker'] as const) {
    const r = bin === 'berth' ? b.berth(['pull', `${reg.host}/bad/digest:v1`]) : b.docker(['pull', `${reg.host}/bad/digest:v1`]);
    assert.notEqual(r.code, 0);
    assert.match(r.stdout + r.stderr, /digest mismatch|does not match its diff ID|corrupt gzip/);
    assert.equal(storeState(b), before);
  }
});

test('a truncated blob is refused and nothing is kept', async () => {
  const tar = spawnSync('tar', ['-cf', '-', '-C', '/etc', 'os-release', 'hostname'], { maxBuffer: 1 << 20 }).stdout;
  const img = await pushTarImage(reg, 'bad/truncated', 'v1', tar, { compress: 'gzip' });
  truncateSync(reg.blobDataPath(img.layer.digest), Math.floor(img.layer.size / 2));
  const before = storeState(b);
  const r = b.berth(['pull', `${reg.host}/bad/truncated:v1`]);
  assert.notEqual(r.code, 0);
  assert.match(r.stderr, /truncated/);
  assert.equal(storeState(b), before);
});

test('bad manifests are refused: tampered bytes, layers that do not match the config', async () => {
  const tar = spawnSync('tar', ['-cf', '-', '-C', '/etc', 'hostname'], { maxBuffer: 1 << 20 }).stdout;
  const img = await pushTarImage(reg, 'bad/manifest', 'v1', tar, { compress: 'gzip' });
  const before = storeState(b);
  const mp = reg.blobDataPath(img.manifest.digest);
  writeFileSync(mp, readFileSync(mp, 'utf8').replace('"schemaVersion":2', '"schemaVersion":2 '));
  const tampered = b.docker(['pull', `${reg.host}/bad/manifest:v1`]);
  assert.notEqual(tampered.code, 0);
  assert.match(tampered.stderr, /manifest verification failed/);
  const byDigest = b.berth(['pull', `${reg.host}/bad/manifest@${img.manifest.digest}`]);
  assert.notEqual(byDigest.code, 0);
  assert.match(byDigest.stderr, /manifest verification failed for digest/);
  assert.equal(storeState(b), before);

  // A well-formed manifest with two layers for a config that lists one.
  const extra = await reg.putBlob('bad/layers', Buffer.from(randomBytes(64)));
  const good = await pushTarImage(reg, 'bad/layers', 'v1', tar, { compress: 'gzip' });
  const m = {
    schemaVersion: 2,
    mediaType: 'application/vnd.docker.distribution.manifest.v2+json',
    config: { mediaType: 'application/vnd.docker.container.image.v1+json', ...good.config },
    layers: [
      { mediaType: 'application/vnd.docker.image.rootfs.diff.tar.gzip', ...good.layer },
      { mediaType: 'application/vnd.docker.image.rootfs.diff.tar.gzip', ...extra },
    ],
  };
  await reg.putManifest('bad/layers', 'v2', m.mediaType, m);
  const mismatch = b.berth(['pull', `${reg.host}/bad/layers:v2`]);
  assert.notEqual(mismatch.code, 0);
  assert.match(mismatch.stderr, /2 layers but the config lists 1 diff IDs/);
  assert.equal(storeState(b), before);
});

test('an unknown image is reported as docker reports it', () => {
  const r = b.docker(['pull', `${reg.host}/no/such:thing`]);
  assert.equal(r.code, 1);
  assert.equal(r.stderr.trim(), `Error response from daemon: manifest for ${reg.host}/no/such:thing not found: manifest unknown: manifest unknown`);
  for (const cli of ['berth', 'docker'] as const) {
    const push = cli === 'berth' ? b.berth(['push', `${reg.host}/not/here:1`]) : b.docker(['push', `${reg.host}/not/here:1`]);
    assert.notEqual(push.code, 0);
    assert.match(push.stderr, new RegExp(`tag does not exist: ${reg.host}/not/here:1`));
  }
});

test('a registry that wants credentials: refused without them, login/logout through both CLIs', () => {
  const ref = `${authReg.host}/private/bb:1`;
  ok(a.berth(['tag', 'busybox', ref]), 'tag');
  const noAuth = a.berth(['push', ref]);
  assert.notEqual(noAuth.code, 0);
  assert.match(noAuth.stdout + noAuth.stderr, /no basic auth credentials/);
  const before = storeState(b);
  const noAuthPull = b.docker(['pull', ref]);
  assert.notEqual(noAuthPull.code, 0);
  assert.match(noAuthPull.stderr, /no basic auth credentials/);
  assert.equal(storeState(b), before);

  const wrong = a.berth(['login', '-u', 'alice', '-p', 'wrong', authReg.host]);
  assert.notEqual(wrong.code, 0);
  assert.match(wrong.stderr, /401 Unauthorized/);
  const configPath = join(a.dir, 'docker-config', 'config.json');
  assert.ok(!existsSync(configPath) || !readFileSync(configPath, 'utf8').includes(authReg.host));

  const login = a.berth(['login', '-u', 'alice', '--password-stdin', authReg.host], 's3cret-pw\n');
  assert.equal(ok(login, 'login'), 'Login Succeeded\n');
  const cfg = JSON.parse(readFileSync(configPath, 'utf8')) as { auths: Record<string, { auth: string }> };
  assert.equal(Buffer.from(cfg.auths[authReg.host]!.auth, 'base64').toString(), 'alice:s3cret-pw');
  assert.match(ok(a.berth(['push', ref]), 'push with auth'), /1: digest: sha256:/);

  // The docker CLI logs in through berthd's /auth and stores the same entry.
  const dlogin = b.docker(['login', '-u', 'alice', '--password-stdin', authReg.host], 's3cret-pw\n');
  assert.match(ok(dlogin, 'docker login'), /Login Succeeded/);
  ok(b.docker(['pull', ref]), 'docker pull with auth');
  assert.equal(ok(b.berth(['run', '--rm', ref, 'echo', 'private-ok']), 'run'), 'private-ok\n');

  assert.equal(ok(a.berth(['logout', authReg.host]), 'logout'), `Removing login credentials for ${authReg.host}\n`);
  assert.ok(!JSON.parse(readFileSync(configPath, 'utf8')).auths[authReg.host]);
  assert.equal(ok(a.berth(['logout', authReg.host]), 'logout again'), `Not logged in to ${authReg.host}\n`);
  const after = a.berth(['pull', ref]);
  assert.match(after.stdout + after.stderr, /Image is up to date|no basic auth credentials/);
});

test('credentials kept by a credential helper (credsStore)', () => {
  const dir = join(a.dir, 'helper-config');
  const bin = join(a.dir, 'helper-bin');
  mkdirSync(dir, { recursive: true });
  mkdirSync(bin, { recursive: true });
  const store = join(a.dir, 'helper-store.json');
  // A tiny credential helper speaking docker's protocol, keeping secrets in a file.
  writeFileSync(
    join(bin, 'docker-credential-berthtest'),
    `#!/bin/sh\nset -e\nSTORE=${store}\n[ -f "$STORE" ] || echo '{}' > "$STORE"\ncase "$1" in\n` +
      `store) python3 -c 'import json,sys; s=json.load(open(sys.argv[1])); c=json.load(sys.stdin); s[c["ServerURL"]]=c; json.dump(s,open(sys.argv[1],"w"))' "$STORE" ;;\n` +
      `get) python3 -c 'import json,sys; s=json.load(open(sys.argv[1])); k=sys.stdin.read().strip(); c=s.get(k)\nif not c: print("credentials not found in native keychain"); sys.exit(1)\nprint(json.dumps(c))' "$STORE" ;;\n` +
      `erase) python3 -c 'import json,sys; s=json.load(open(sys.argv[1])); k=sys.stdin.read().strip(); s.pop(k,None); json.dump(s,open(sys.argv[1],"w"))' "$STORE" ;;\nesac\n`,
    { mode: 0o755 },
  );
  writeFileSync(join(dir, 'config.json'), JSON.stringify({ credsStore: 'berthtest' }));
  const env = { DOCKER_CONFIG: dir, PATH: `${bin}:${process.env.PATH}` };
  ok(a.cli2('berth', ['login', '-u', 'alice', '--password-stdin', authReg.host], env, 's3cret-pw\n'), 'login via helper');
  const saved = JSON.parse(readFileSync(store, 'utf8')) as Record<string, { Username: string; Secret: string }>;
  assert.equal(saved[authReg.host]?.Secret, 's3cret-pw');
  const cfg = JSON.parse(readFileSync(join(dir, 'config.json'), 'utf8')) as { auths: Record<string, object> };
  assert.deepEqual(cfg.auths[authReg.host], {});
  ok(a.cli2('berth', ['push', `${authReg.host}/private/bb:1`], env), 'push with helper credentials');
  ok(a.cli2('berth', ['logout', authReg.host], env), 'logout via helper');
  assert.equal(JSON.parse(readFileSync(store, 'utf8'))[authReg.host], undefined);
});

test('a loopback registry serving HTTPS with a self-signed certificate is used over HTTPS', async () => {
  const tlsReg = new TestRegistry(join(regDir, 'tls'), undefined, true);
  await tlsReg.start();
  try {
    const ref = `${tlsReg.host}/secure/bb:1`;
    ok(a.berth(['tag', 'busybox', ref]), 'tag');
    assert.match(ok(a.berth(['push', ref]), 'push over https'), /1: digest: sha256:/);
    ok(b.docker(['pull', ref]), 'pull over https');
    assert.equal(ok(b.berth(['run', '--rm', ref, 'echo', 'tls-ok']), 'run'), 'tls-ok\n');
    assert.match(tlsReg.log, /TLS handshake error|"GET \/v2\/secure\/bb\/manifests\/1 HTTP\/1.1" 200/);
  } finally {
    await tlsReg.cleanup();
  }
});

test('a registry with bearer-token auth: anonymous pull, push only with a login, tokens asked with the right scopes', async () => {
  const tokens = new TokenServer(join(regDir), { bob: 'tok3n-pw' });
  await tokens.start();
  const tokReg = new TestRegistry(join(regDir, 'token'), undefined, false, { realm: tokens.realm, service: tokens.service, issuer: tokens.issuer, certPath: tokens.certPath });
  await tokReg.start();
  try {
    const ref = `${tokReg.host}/tok/bb:1`;
    ok(a.berth(['tag', 'busybox', ref]), 'tag');
    // The CLIs run asynchronously: the token server lives in this process.
    const denied = await runAsync(a, 'berth', ['push', ref]);
    assert.notEqual(denied.code, 0);
    assert.match(denied.out, /unauthorized|denied/);

    const wrong = await runAsync(a, 'berth', ['login', '-u', 'bob', '-p', 'nope', tokReg.host]);
    assert.notEqual(wrong.code, 0);
    assert.match(wrong.out, /401 Unauthorized/);
    const login = await new Promise<{ code: number; out: string }>((resolve) => {
      const p = a.spawn('berth', ['login', '-u', 'bob', '--password-stdin', tokReg.host]);
      let out = '';
      p.stdout!.on('data', (x: Buffer) => (out += x.toString()));
      p.stderr!.on('data', (x: Buffer) => (out += x.toString()));
      p.on('close', (code) => resolve({ code: code ?? -1, out }));
      p.stdin!.end('tok3n-pw\n');
    });
    assert.equal(login.code, 0, login.out);
    const push = await runAsync(a, 'berth', ['push', ref]);
    assert.equal(push.code, 0, push.out);
    assert.ok(tokens.requests.some((r) => r.account === 'bob' && r.scopes.includes('repository:tok/bb:pull,push')), JSON.stringify(tokens.requests));

    const pull = await runAsync(b, 'docker', ['pull', ref]);
    assert.equal(pull.code, 0, pull.out);
    assert.ok(tokens.requests.some((r) => r.account === undefined && r.scopes.includes('repository:tok/bb:pull')));
    assert.equal(ok(b.berth(['run', '--rm', ref, 'echo', 'token-ok']), 'run'), 'token-ok\n');
    ok(a.berth(['logout', tokReg.host]), 'logout');
  } finally {
    await tokReg.cleanup();
    await tokens.stop();
  }
});
