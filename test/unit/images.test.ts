import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { createHash } from 'node:crypto';
import { mkdtemp, readdir, readFile, rm, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import { gzipSync } from 'node:zlib';
import { ContentStore } from '../../src/image/content-store.ts';
import { LayerStore, chainIds } from '../../src/image/layer-store.ts';
import { ImageStore } from '../../src/image/image-store.ts';
import { parseReference } from '../../src/image/reference.ts';
import { EventBus } from '../../src/engine/events.ts';
import type { EngineEvent } from '../../src/engine/events.ts';
import { ImageService, applyChanges } from '../../src/engine/images.ts';
import type { ContainerService } from '../../src/engine/containers.ts';
import type { ContainerRecord } from '../../src/engine/container-types.ts';
import type { DaemonConfig } from '../../src/daemon/config.ts';
import { BerthError } from '../../src/util/errors.ts';
import { packTar, readTar } from '../../src/util/tar.ts';
import type { TarBody, TarHeaderInput } from '../../src/util/tar.ts';
import { collect } from '../helpers/tmp.ts';

// ---------------------------------------------------------------------------
// Fixtures

interface Env {
  root: string;
  svc: ImageService;
  store: ImageStore;
  content: ContentStore;
  layers: LayerStore;
  events: EngineEvent[];
  containers: ContainerRecord[];
}

async function makeEnv(root: string): Promise<Env> {
  const content = new ContentStore(join(root, 'content'));
  const layers = new LayerStore(root);
  const store = new ImageStore(root, content, layers);
  await content.init();
  await layers.init();
  await store.init();
  const bus = new EventBus();
  const events: EngineEvent[] = [];
  bus.subscribe((e) => events.push(e));
  const containers: ContainerRecord[] = [];
  const fakeContainers = { list: () => containers } as unknown as ContainerService;
  const cfg = { dataRoot: root } as DaemonConfig;
  return { root, svc: new ImageService(cfg, store, content, layers, fakeContainers, bus), store, content, layers, events, containers };
}

async function withEnv(fn: (env: Env) => Promise<void>): Promise<void> {
  const root = await mkdtemp(join(tmpdir(), 'berth-images-test-'));
  try {
    await fn(await makeEnv(root));
  } finally {
    await rm(root, { recursive: true, force: true });
  }
}

async function tarOf(entries: { header: TarHeaderInput; body?: TarBody }[]): Promise<Buffer> {
  return collect(packTar(entries));
}

/** A layer tar holding the given files (a reproducible one: fixed times). */
async function layerTar(files: Record<string, string>): Promise<Buffer> {
  const entries: { header: TarHeaderInput; body?: TarBody }[] = [];
  const dirs = new Set<string>();
  for (const name of Object.keys(files).sort()) {
    const parts = name.split('/');
    for (let i = 1; i < parts.length; i++) {
      const d = parts.slice(0, i).join('/');
      if (!dirs.has(d)) {
        dirs.add(d);
        entries.push({ header: { name: d, type: 'directory', mode: 0o755, mtime: 1_600_000_000_000 } });
      }
    }
    entries.push({ header: { name, mode: 0o644, mtime: 1_600_000_000_000 }, body: Buffer.from(files[name]!) });
  }
  return tarOf(entries);
}

const sha = (b: Buffer | string): string => `sha256:${createHash('sha256').update(b).digest('hex')}`;

function configFor(diffIds: string[], extra: Record<string, unknown> = {}): Buffer {
  return Buffer.from(
    JSON.stringify({
      architecture: 'amd64',
      os: 'linux',
      created: '2024-01-01T00:00:00Z',
      config: { Env: ['PATH=/bin'], Cmd: ['sh'] },
      rootfs: { type: 'layers', diff_ids: diffIds },
      history: diffIds.map((_, i) => ({ created: '2024-01-01T00:00:00Z', created_by: `step ${i}` })),
      ...extra,
    }),
  );
}

function source(buf: Buffer, chunk = 7777): Readable {
  return Readable.from(
    (function* () {
      for (let i = 0; i < buf.length; i += chunk) yield buf.subarray(i, i + chunk);
    })(),
  );
}

interface ArchiveImage {
  config: Buffer;
  layers: Buffer[];
  tags: string[] | null;
}

/** A docker-archive in the pre-OCI layout: `<id>.json`, `<n>/layer.tar`, with shared layers as symlinks. */
async function dockerArchive(images: ArchiveImage[], opts: { gzipLayers?: boolean } = {}): Promise<Buffer> {
  const entries: { header: TarHeaderInput; body?: TarBody }[] = [];
  const manifest: unknown[] = [];
  const layerPath = new Map<string, string>();
  let n = 0;
  for (const img of images) {
    const cfgName = `${sha(img.config).slice(7)}.json`;
    entries.push({ header: { name: cfgName }, body: img.config });
    const paths: string[] = [];
    for (const l of img.layers) {
      const key = sha(l);
      let p = layerPath.get(key);
      if (!p) {
        const dir = `layer${n++}`;
        p = `${dir}/layer.tar`;
        entries.push({ header: { name: `${dir}/`, type: 'directory' } });
        entries.push({ header: { name: p }, body: opts.gzipLayers ? gzipSync(l) : l });
        layerPath.set(key, p);
      } else {
        // Old docker save wrote a repeated layer as a symlink to the first copy.
        const dir = `layer${n++}`;
        entries.push({ header: { name: `${dir}/`, type: 'directory' } });
        entries.push({ header: { name: `${dir}/layer.tar`, type: 'symlink', linkname: `../${p}` } });
        p = `${dir}/layer.tar`;
      }
      paths.push(p);
    }
    manifest.push({ Config: cfgName, RepoTags: img.tags, Layers: paths });
  }
  entries.push({ header: { name: 'manifest.json' }, body: Buffer.from(JSON.stringify(manifest)) });
  return tarOf(entries);
}

async function expectInvalid(p: Promise<unknown>, re: RegExp): Promise<void> {
  await assert.rejects(p, (err: unknown) => {
    assert.ok(err instanceof BerthError, `expected a BerthError, got ${String(err)}`);
    assert.equal(err.kind, 'InvalidParameter', err.message);
    assert.match(err.message, re);
    return true;
  });
}

async function assertClean(env: Env): Promise<void> {
  assert.equal(env.store.all().length, 0, 'no image recorded');
  assert.deepEqual(await env.layers.list(), [], 'no layer left behind');
  const tmp = await readdir(join(env.root, 'tmp')).catch(() => []);
  assert.deepEqual(tmp, [], 'temp dir removed');
  const blobs = await env.content.list();
  assert.deepEqual(blobs, [], 'no blob left behind');
}

function run(cmd: string, args: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    execFile(cmd, args, { maxBuffer: 16 << 20 }, (err, stdout, stderr) => {
      resolve({ code: err ? ((err as { code?: number }).code ?? 1) : 0, stdout: String(stdout), stderr: String(stderr) });
    });
  });
}

function container(id: string, image: string, running: boolean, layers: string[]): ContainerRecord {
  return {
    Id: id,
    Image: image,
    State: { Status: running ? 'running' : 'exited', Running: running, Paused: false, Restarting: false },
    berth: { layers, imageRef: image },
  } as unknown as ContainerRecord;
}

// ---------------------------------------------------------------------------
// Config changes

test('applyChanges: every allowed instruction, JSON and shell forms', () => {
  const c = applyChanges({ Env: ['PATH=/bin'] }, [
    'CMD echo "hi there"',
    'ENV A=1 B="two words"',
    'ENV LEGACY some value',
    'ENV C=${A}-$B',
    'EXPOSE 80 53/udp 8000-8001',
    'LABEL com.example="x y" other=z',
    'WORKDIR /app',
    'WORKDIR sub',
    'USER nobody',
    'VOLUME ["/data", "/logs"]',
    'VOLUME /cache',
    'ENTRYPOINT ["/bin/x", "-v"]',
    'STOPSIGNAL SIGQUIT',
    'ONBUILD RUN make',
  ]);
  assert.deepEqual(c.Cmd, ['/bin/sh', '-c', 'echo "hi there"']);
  assert.deepEqual(c.Env, ['PATH=/bin', 'A=1', 'B=two words', 'LEGACY=some value', 'C=1-two words']);
  assert.deepEqual(c.ExposedPorts, { '80/tcp': {}, '53/udp': {}, '8000/tcp': {}, '8001/tcp': {} });
  assert.deepEqual(c.Labels, { 'com.example': 'x y', other: 'z' });
  assert.equal(c.WorkingDir, '/app/sub');
  assert.equal(c.User, 'nobody');
  assert.deepEqual(c.Volumes, { '/data': {}, '/logs': {}, '/cache': {} });
  assert.deepEqual(c.Entrypoint, ['/bin/x', '-v']);
  assert.equal(c.StopSignal, 'SIGQUIT');
  assert.deepEqual(c.OnBuild, ['RUN make']);
  // An entrypoint set before any CMD drops the command.
  assert.equal(applyChanges({ Cmd: ['sh'] }, ['ENTRYPOINT top']).Cmd, null);
  assert.deepEqual(applyChanges({}, ['ENTRYPOINT top']).Entrypoint, ['/bin/sh', '-c', 'top']);
});

test('applyChanges: refuses what docker import refuses', () => {
  assert.throws(() => applyChanges({}, ['RUN echo']), /run is not a valid change command/);
  assert.throws(() => applyChanges({}, ['FROM busybox']), /from is not a valid change command/);
  assert.throws(() => applyChanges({}, ['EXPOSE 99999']), /invalid containerPort/);
  assert.throws(() => applyChanges({}, ['STOPSIGNAL NOPE']), /invalid signal/);
  assert.throws(() => applyChanges({}, ['ONBUILD ONBUILD RUN x']), /Chaining ONBUILD/);
  assert.throws(() => applyChanges({}, ['ENV']), /requires at least one argument/);
  assert.throws(() => applyChanges({}, ['ENV a="unterminated']), /double-quote/);
});

// ---------------------------------------------------------------------------
// Import

test('import: a gzipped rootfs becomes a one-layer image with the changes applied', async () => {
  await withEnv(async (env) => {
    const tar = await layerTar({ 'bin/hello': 'hello\n', 'etc/motd': 'hi\n' });
    const id = await env.svc.importImage(source(gzipSync(tar)), {
      repo: 'example/imported',
      tag: 'v1',
      message: 'from a test',
      changes: ['CMD ["/bin/hello"]', 'ENV X=1', 'LABEL a=b'],
    });
    assert.match(id, /^sha256:[a-f0-9]{64}$/);
    const img = env.store.get(id)!;
    assert.deepEqual(img.config.rootfs.diff_ids, [sha(tar)]);
    assert.equal(img.config.architecture, process.arch === 'x64' ? 'amd64' : img.config.architecture);
    assert.equal(img.config.os, 'linux');
    assert.equal(img.config.comment, 'from a test');
    assert.deepEqual(img.config.config?.Cmd, ['/bin/hello']);
    assert.deepEqual(img.config.config?.Env, ['X=1']);
    assert.equal(img.config.history?.length, 1);
    assert.equal(img.config.history?.[0]?.created_by, '');
    assert.equal(img.config.history?.[0]?.comment, 'from a test');
    // The uncompressed tar is kept exactly, under its diff ID.
    assert.deepEqual(await env.content.read(sha(tar)), tar);
    assert.equal(await readFile(join(env.layers.diffDir(chainIds([sha(tar)])[0]!), 'bin/hello'), 'utf8'), 'hello\n');
    assert.deepEqual(env.store.tagsOf(id), ['example/imported:v1']);
    assert.ok(env.events.some((e) => e.Action === 'import' && e.Actor.ID === id));
    assert.ok(env.events.some((e) => e.Action === 'tag' && e.Actor.Attributes.name === 'example/imported:v1'));

    const insp = await env.svc.inspect('example/imported:v1');
    assert.equal(insp.Id, id);
    assert.equal(insp.Comment, 'from a test');
    assert.deepEqual(insp.RootFS, { Type: 'layers', Layers: [sha(tar)] });
    assert.equal(insp.GraphDriver.Name, 'overlay2');
    assert.deepEqual(insp.Config.Labels, { a: 'b' });
    assert.equal(insp.Config.WorkingDir, '');
    assert.equal(insp.Config.Entrypoint, null);
    assert.ok(insp.Size > 0);

    const hist = await env.svc.history(id);
    assert.equal(hist.length, 1);
    assert.equal(hist[0]!.Id, id);
    assert.deepEqual(hist[0]!.Tags, ['example/imported:v1']);
    assert.equal(hist[0]!.Comment, 'from a test');
    assert.ok(hist[0]!.Size > 0);

    // Default comment, no tag.
    const id2 = await env.svc.importImage(source(await layerTar({ a: '1' })), {});
    assert.equal(env.store.get(id2)!.config.history?.[0]?.comment, 'Imported from -');
    assert.deepEqual(env.store.tagsOf(id2), []);
  });
});

test('import: bad change, bad repo, not-a-tar are refused and leave nothing', async () => {
  await withEnv(async (env) => {
    const tar = await layerTar({ a: '1' });
    await expectInvalid(env.svc.importImage(source(tar), { changes: ['RUN true'] }), /run is not a valid change command/);
    await expectInvalid(env.svc.importImage(source(tar), { repo: 'Example' }), /must be lowercase/);
    await expectInvalid(env.svc.importImage(source(tar), { repo: 'example', tag: 'bad tag' }), /invalid tag format/);
    await expectInvalid(env.svc.importImage(source(Buffer.alloc(0)), {}), /empty/);
    await expectInvalid(env.svc.importImage(source(Buffer.from('this is not a tar archive at all, just some text that goes on'.repeat(20))), {}), /tar/);
    await assertClean(env);
  });
});

// ---------------------------------------------------------------------------
// Load

test('load: docker-archive with two images sharing a layer (compressed layers, symlinked copies)', async () => {
  await withEnv(async (env) => {
    const base = await layerTar({ 'etc/os-release': 'ID=test\n', 'bin/sh': '#!fake\n' });
    const top = await layerTar({ 'app/run': 'run\n' });
    const cfgA = configFor([sha(base)]);
    const cfgB = configFor([sha(base), sha(top)], { config: { Labels: { tier: 'b' } } });
    const archive = await dockerArchive(
      [
        { config: cfgA, layers: [base], tags: ['example/a:latest'] },
        { config: cfgB, layers: [base, top], tags: ['example/b:1', 'example/b:2'] },
      ],
      { gzipLayers: true },
    );
    const msgs: object[] = [];
    await env.svc.load(source(archive), true, (m) => msgs.push(m));
    const idA = sha(cfgA);
    const idB = sha(cfgB);
    assert.ok(env.store.get(idA) && env.store.get(idB));
    assert.deepEqual(env.store.tagsOf(idA), ['example/a:latest']);
    assert.deepEqual(env.store.tagsOf(idB), ['example/b:1', 'example/b:2']);
    assert.deepEqual(msgs, [
      { stream: 'Loaded image: example/a:latest\n' },
      { stream: 'Loaded image: example/b:1\n' },
      { stream: 'Loaded image: example/b:2\n' },
    ]);
    // Two layers, shared, each with its exact uncompressed tar stored.
    assert.equal((await env.layers.list()).length, 2);
    assert.deepEqual(await env.content.read(sha(base)), base);
    assert.deepEqual(await env.content.read(sha(top)), top);
    assert.deepEqual(await readdir(join(env.root, 'tmp')), []);
    assert.equal(env.events.filter((e) => e.Action === 'load').length, 2);

    // Loading a new image under a tag another image holds renames the old one.
    const cfgC = configFor([sha(base)], { created: '2024-02-02T00:00:00Z' });
    const msgs2: object[] = [];
    await env.svc.load(source(await dockerArchive([{ config: cfgC, layers: [base], tags: ['example/a:latest'] }])), false, (m) => msgs2.push(m));
    const streams = msgs2.filter((m) => 'stream' in m);
    assert.deepEqual(streams, [
      { stream: `The image example/a:latest already exists, renaming the old one with ID ${idA} to empty string\n` },
      { stream: 'Loaded image: example/a:latest\n' },
    ]);
    assert.deepEqual(env.store.tagsOf(idA), []);

    // An untagged image reports its ID.
    const cfgD = configFor([sha(top)]);
    const msgs3: object[] = [];
    await env.svc.load(source(await dockerArchive([{ config: cfgD, layers: [top], tags: null }])), true, (m) => msgs3.push(m));
    assert.deepEqual(msgs3, [{ stream: `Loaded image ID: ${sha(cfgD)}\n` }]);
  });
});

test('load: an OCI image layout, gzip-compressed as a whole', async () => {
  await withEnv(async (env) => {
    const layer = await layerTar({ 'hello.txt': 'oci\n' });
    const gz = gzipSync(layer);
    const cfg = configFor([sha(layer)]);
    const manifest = Buffer.from(
      JSON.stringify({
        schemaVersion: 2,
        mediaType: 'application/vnd.oci.image.manifest.v1+json',
        config: { mediaType: 'application/vnd.oci.image.config.v1+json', digest: sha(cfg), size: cfg.length },
        layers: [{ mediaType: 'application/vnd.oci.image.layer.v1.tar+gzip', digest: sha(gz), size: gz.length }],
      }),
    );
    const index = {
      schemaVersion: 2,
      manifests: [
        {
          mediaType: 'application/vnd.oci.image.manifest.v1+json',
          digest: sha(manifest),
          size: manifest.length,
          annotations: { 'io.containerd.image.name': 'localhost:5000/oci/img:3', 'org.opencontainers.image.ref.name': '3' },
        },
      ],
    };
    const blob = (b: Buffer) => ({ header: { name: `blobs/sha256/${sha(b).slice(7)}` }, body: b });
    const archive = await tarOf([
      { header: { name: 'oci-layout' }, body: Buffer.from('{"imageLayoutVersion":"1.0.0"}') },
      { header: { name: 'index.json' }, body: Buffer.from(JSON.stringify(index)) },
      blob(cfg),
      blob(gz),
      blob(manifest),
    ]);
    const msgs: object[] = [];
    await env.svc.load(source(gzipSync(archive)), true, (m) => msgs.push(m));
    const id = sha(cfg);
    assert.deepEqual(env.store.tagsOf(id), ['localhost:5000/oci/img:3']);
    assert.equal(env.store.get(id)!.record.manifestDigest, sha(manifest));
    assert.deepEqual(msgs, [{ stream: 'Loaded image: localhost:5000/oci/img:3\n' }]);
    assert.deepEqual(await env.content.read(sha(layer)), layer);

    // A blob that does not match its descriptor is refused.
    const badIndex = { ...index, manifests: [{ ...index.manifests[0]!, size: manifest.length + 1 }] };
    await withEnv(async (env2) => {
      const bad = await tarOf([
        { header: { name: 'oci-layout' }, body: Buffer.from('{"imageLayoutVersion":"1.0.0"}') },
        { header: { name: 'index.json' }, body: Buffer.from(JSON.stringify(badIndex)) },
        blob(cfg),
        blob(gz),
        blob(manifest),
      ]);
      await expectInvalid(env2.svc.load(source(bad), true, () => {}), /descriptor says/);
      await assertClean(env2);
    });
  });
});

// ---------------------------------------------------------------------------
// Save

test('save: round trip into a second data root keeps IDs and tags; skopeo reads the archive both ways', async () => {
  await withEnv(async (env) => {
    const base = await layerTar({ 'etc/hostname': 'x\n', 'bin/tool': 'tool\n' });
    const top = await layerTar({ 'srv/data': 'data\n' });
    const cfgA = configFor([sha(base)]);
    const cfgB = configFor([sha(base), sha(top)]);
    await env.svc.load(
      source(
        await dockerArchive([
          { config: cfgA, layers: [base], tags: ['example/a:latest'] },
          { config: cfgB, layers: [base, top], tags: ['example/b:1'] },
        ]),
      ),
      true,
      () => {},
    );
    const importedId = await env.svc.importImage(source(await layerTar({ imported: 'yes' })), { repo: 'example/imp' });

    assert.throws(() => env.svc.save(['example/a', 'nope:latest']), (err: unknown) => err instanceof BerthError && err.kind === 'NotFound' && /No such image: nope:latest/.test(err.message));

    const tar = await collect(env.svc.save(['example/a', 'example/b:1', importedId]));
    const names: string[] = [];
    const files = new Map<string, Buffer>();
    for await (const e of readTar(Readable.from([tar]))) {
      names.push(e.header.name);
      files.set(e.header.name, await collect(e.body));
    }
    // Shared blobs appear once.
    assert.equal(names.length, new Set(names).size);
    assert.ok(files.has('oci-layout') && files.has('index.json') && files.has('manifest.json') && files.has('repositories'));
    const manifest = JSON.parse(files.get('manifest.json')!.toString()) as { Config: string; RepoTags: string[] | null; Layers: string[] }[];
    assert.equal(manifest.length, 3);
    assert.deepEqual(manifest[0]!.RepoTags, ['example/a:latest']);
    assert.equal(manifest[2]!.RepoTags, null);
    assert.deepEqual(manifest[1]!.Layers, [`blobs/sha256/${sha(base).slice(7)}`, `blobs/sha256/${sha(top).slice(7)}`]);
    assert.deepEqual(files.get(`blobs/sha256/${sha(base).slice(7)}`), base);
    for (const [name, body] of files) if (name.startsWith('blobs/sha256/') && body.length) assert.equal(sha(body).slice(7), name.slice(13));

    await withEnv(async (env2) => {
      const msgs: object[] = [];
      await env2.svc.load(source(tar), true, (m) => msgs.push(m));
      assert.deepEqual(env2.store.all().map((i) => i.record.id).sort(), [sha(cfgA), sha(cfgB), importedId].sort());
      assert.deepEqual(env2.store.tagsOf(sha(cfgA)), ['example/a:latest']);
      assert.deepEqual(env2.store.tagsOf(sha(cfgB)), ['example/b:1']);
      assert.deepEqual(env2.store.tagsOf(importedId), []);
      assert.ok(msgs.some((m) => (m as { stream?: string }).stream === `Loaded image ID: ${importedId}\n`));
    });

    // skopeo reads the same kind of archive as a docker-archive and as an OCI archive.
    const one = await collect(env.svc.save(['example/b:1']));
    const path = join(env.root, 'one.tar');
    await writeFile(path, one);
    const da = await run('skopeo', ['inspect', `docker-archive:${path}`]);
    assert.equal(da.code, 0, da.stderr);
    const dj = JSON.parse(da.stdout) as { Layers: string[]; RepoTags?: string[] };
    assert.deepEqual(dj.Layers, [sha(base), sha(top)]);
    const oa = await run('skopeo', ['inspect', `oci-archive:${path}`]);
    assert.equal(oa.code, 0, oa.stderr);
    assert.deepEqual((JSON.parse(oa.stdout) as { Layers: string[] }).Layers, [sha(base), sha(top)]);
    const cfgOut = await run('skopeo', ['inspect', '--config', `docker-archive:${path}`]);
    assert.equal(cfgOut.code, 0, cfgOut.stderr);
    assert.deepEqual((JSON.parse(cfgOut.stdout) as { rootfs: { diff_ids: string[] } }).rootfs.diff_ids, [sha(base), sha(top)]);
  });
});

test('save: a layer whose tar is not stored is regenerated from the extracted files, or refused when that cannot reproduce it', async () => {
  await withEnv(async (env) => {
    // layerTar writes entries as the layer differ does (sorted, fixed times, no owner names): reproducible.
    const layer = await layerTar({ 'x/y': 'z\n' });
    const cfg = configFor([sha(layer)]);
    await env.svc.load(source(await dockerArchive([{ config: cfg, layers: [layer], tags: ['regen:1'] }])), true, () => {});
    await env.content.delete(sha(layer));
    const tar = await collect(env.svc.save(['regen:1']));
    assert.ok(tar.length > layer.length);
    assert.deepEqual(await env.content.read(sha(layer)), layer);

    // Owner names and unsorted entries are not what the differ writes back.
    const odd = await tarOf([
      { header: { name: 'zz', uname: 'someone', mtime: 1_600_000_000_000 }, body: Buffer.from('1') },
      { header: { name: 'aa', uname: 'someone', mtime: 1_600_000_000_000 }, body: Buffer.from('2') },
    ]);
    const cfg2 = configFor([sha(odd)]);
    await env.svc.load(source(await dockerArchive([{ config: cfg2, layers: [odd], tags: ['regen:2'] }])), true, () => {});
    await env.content.delete(sha(odd));
    const it = env.svc.save(['regen:2'])[Symbol.asyncIterator]();
    await assert.rejects(it.next(), /cannot export layer .* do not reproduce it/);
    assert.equal(await env.content.has(sha(odd)), false);
  });
});

// ---------------------------------------------------------------------------
// Hostile and broken archives

test('load: bad archives are refused clearly and leave nothing behind', async () => {
  await withEnv(async (env) => {
    const good = await layerTar({ 'a/b': 'c\n' });
    const other = await layerTar({ 'd/e': 'f\n' });
    const cfg = configFor([sha(good)]);

    // Diff ID mismatch: the config names another layer.
    const mismatch = await dockerArchive([{ config: configFor([sha(other)]), layers: [good], tags: ['x:1'] }]);
    await expectInvalid(env.svc.load(source(mismatch), true, () => {}), /does not match its diff ID/);
    await assertClean(env);

    // Mismatch in the second of two images: neither is recorded.
    const two = await dockerArchive([
      { config: cfg, layers: [good], tags: ['x:1'] },
      { config: configFor([sha(good), sha(good)]), layers: [good, other], tags: ['x:2'] },
    ]);
    await expectInvalid(env.svc.load(source(two), true, () => {}), /does not match its diff ID/);
    await assertClean(env);

    // Truncated archive.
    const full = await dockerArchive([{ config: cfg, layers: [good], tags: ['x:1'] }]);
    await expectInvalid(env.svc.load(source(full.subarray(0, 1500)), true, () => {}), /truncated|unexpected EOF/);
    await assertClean(env);

    // manifest.json pointing outside the archive.
    const outside = await tarOf([{ header: { name: 'manifest.json' }, body: Buffer.from(JSON.stringify([{ Config: '../x', RepoTags: ['x:1'], Layers: [] }])) }]);
    await expectInvalid(env.svc.load(source(outside), true, () => {}), /points outside the archive/);
    await assertClean(env);

    // A layer path pointing outside, and a symlink leading outside.
    const outLayer = await tarOf([
      { header: { name: `${sha(cfg).slice(7)}.json` }, body: cfg },
      { header: { name: 'manifest.json' }, body: Buffer.from(JSON.stringify([{ Config: `${sha(cfg).slice(7)}.json`, Layers: ['../../etc/passwd'] }])) },
    ]);
    await expectInvalid(env.svc.load(source(outLayer), true, () => {}), /points outside the archive/);
    const outLink = await tarOf([
      { header: { name: `${sha(cfg).slice(7)}.json` }, body: cfg },
      { header: { name: 'l/layer.tar', type: 'symlink', linkname: '../../../etc/passwd' } },
      { header: { name: 'manifest.json' }, body: Buffer.from(JSON.stringify([{ Config: `${sha(cfg).slice(7)}.json`, Layers: ['l/layer.tar'] }])) },
    ]);
    await expectInvalid(env.svc.load(source(outLink), true, () => {}), /points outside the archive/);
    await assertClean(env);

    // Archive entries named to escape are refused while spooling; nothing is written outside.
    const escape = await tarOf([{ header: { name: '../../escaped-by-test' }, body: Buffer.from('x') }]);
    await expectInvalid(env.svc.load(source(escape), true, () => {}), /points outside the archive/);
    await assert.rejects(stat(join(env.root, '..', 'escaped-by-test')));
    await assert.rejects(stat(join(env.root, 'escaped-by-test')));
    await assertClean(env);

    // Missing config.
    const noConfig = await tarOf([{ header: { name: 'manifest.json' }, body: Buffer.from(JSON.stringify([{ Config: 'missing.json', RepoTags: ['x:1'], Layers: [] }])) }]);
    await expectInvalid(env.svc.load(source(noConfig), true, () => {}), /config "missing.json" is missing/);
    await assertClean(env);

    // A config whose content does not match the digest in its name.
    const wrongName = await tarOf([
      { header: { name: `${'0'.repeat(64)}.json` }, body: cfg },
      { header: { name: 'manifest.json' }, body: Buffer.from(JSON.stringify([{ Config: `${'0'.repeat(64)}.json`, Layers: ['l.tar'] }])) },
      { header: { name: 'l.tar' }, body: good },
    ]);
    await expectInvalid(env.svc.load(source(wrongName), true, () => {}), /does not match its digest/);

    // Malformed manifest.json, layer count mismatch, missing layer.
    await expectInvalid(env.svc.load(source(await tarOf([{ header: { name: 'manifest.json' }, body: Buffer.from('{nope') }])), true, () => {}), /not valid JSON/);
    const countMismatch = await tarOf([
      { header: { name: 'c.json' }, body: cfg },
      { header: { name: 'manifest.json' }, body: Buffer.from(JSON.stringify([{ Config: 'c.json', Layers: [] }])) },
    ]);
    await expectInvalid(env.svc.load(source(countMismatch), true, () => {}), /lists 0 layers but its config has 1/);
    const missingLayer = await tarOf([
      { header: { name: 'c.json' }, body: cfg },
      { header: { name: 'manifest.json' }, body: Buffer.from(JSON.stringify([{ Config: 'c.json', Layers: ['gone.tar'] }])) },
    ]);
    await expectInvalid(env.svc.load(source(missingLayer), true, () => {}), /layer "gone.tar" is missing/);

    // Not a tar at all; an empty tar.
    await expectInvalid(env.svc.load(source(Buffer.from('definitely not a tar file'.repeat(40))), true, () => {}), /invalid image archive/);
    await expectInvalid(env.svc.load(source(await tarOf([])), true, () => {}), /neither manifest.json nor index.json/);
    // A corrupt gzip stream.
    const gz = gzipSync(full);
    gz[gz.length - 12]! ^= 0xff;
    gz[40]! ^= 0xff;
    await expectInvalid(env.svc.load(source(gz), true, () => {}), /corrupt gzip|invalid/);
    await assertClean(env);
  });
});

// ---------------------------------------------------------------------------
// Tag, remove, prune

async function loadSimple(env: Env, files: Record<string, string>, tags: string[] | null, extra: Record<string, unknown> = {}): Promise<{ id: string; layer: Buffer }> {
  const layer = await layerTar(files);
  const cfg = configFor([sha(layer)], extra);
  await env.svc.load(source(await dockerArchive([{ config: cfg, layers: [layer], tags }])), true, () => {});
  return { id: sha(cfg), layer };
}

test('tag: references are validated; unknown images are not found', async () => {
  await withEnv(async (env) => {
    const { id } = await loadSimple(env, { f: '1' }, ['example/t:1']);
    await env.svc.tag('example/t:1', 'example/t', 'two');
    await env.svc.tag(id.slice(7, 19), 'localhost:5000/other');
    assert.deepEqual(env.store.tagsOf(id), ['example/t:1', 'example/t:two', 'localhost:5000/other:latest']);
    await expectInvalid(env.svc.tag(id, 'Bad/Name'), /must be lowercase/);
    await expectInvalid(env.svc.tag(id, 'example/t', 'bad tag!'), /invalid tag format/);
    await expectInvalid(env.svc.tag(id, 'example/t@sha256:' + 'a'.repeat(64)), /digest/);
    await assert.rejects(env.svc.tag('missing:1', 'x'), (e: unknown) => e instanceof BerthError && e.kind === 'NotFound');
    assert.ok(env.events.some((e) => e.Action === 'tag' && e.Actor.Attributes.name === 'example/t:two'));
  });
});

test('tag again and store again: LastTagTime moves (in memory at once, on disk just after), nothing else is rewritten', async () => {
  await withEnv(async (env) => {
    const { id } = await loadSimple(env, { f: '1' }, ['example/again:1']);
    const recordFile = join(env.root, 'images', `${id.slice(7)}.json`);
    const refsFile = join(env.root, 'images', 'references.json');
    const before = JSON.parse(await readFile(recordFile, 'utf8')) as { lastTagTime?: string };
    const refsBefore = await stat(refsFile);
    await new Promise((r) => setTimeout(r, 20));
    await env.svc.tag(id, 'example/again', '1');
    const now = env.store.get(id)!.record.lastTagTime!;
    assert.ok(now > (before.lastTagTime ?? ''), 'the time moved');
    await new Promise((r) => setImmediate(r));
    assert.equal((JSON.parse(await readFile(recordFile, 'utf8')) as { lastTagTime?: string }).lastTagTime, now);
    assert.equal((await stat(refsFile)).mtimeMs, refsBefore.mtimeMs, 'the references were not resaved');
    // The same config stored again is the same record, untouched.
    const recBefore = await stat(recordFile);
    const config = (await env.content.read(id)).toString();
    const again = await env.store.add(Buffer.from(config));
    assert.equal(again.id, id);
    assert.equal(again.lastTagTime, now);
    assert.equal((await stat(recordFile)).mtimeMs, recBefore.mtimeMs);
    // A tag moved from another image is saved at once.
    const other = await loadSimple(env, { f: '2' }, []);
    await env.svc.tag(other.id, 'example/again', '1');
    assert.equal((JSON.parse(await readFile(refsFile, 'utf8')) as Record<string, string>)['docker.io/example/again:1'], other.id);
  });
});

test('remove: untag versus delete, conflicts with containers, force', async () => {
  await withEnv(async (env) => {
    const { id, layer } = await loadSimple(env, { f: '1' }, ['example/r:1', 'example/r:2']);
    const chain = chainIds([sha(layer)])[0]!;

    // Removing one of two tags only untags.
    assert.deepEqual(await env.svc.remove('example/r:2'), [{ Untagged: 'example/r:2' }]);
    assert.ok(env.store.get(id));

    // By ID with tags in several repositories: refused unless forced.
    await env.svc.tag(id, 'example/other', 'x');
    await assert.rejects(env.svc.remove(id.slice(7, 19)), (e: unknown) => e instanceof BerthError && e.kind === 'Conflict' && /unable to delete [a-f0-9]{12} \(must be forced\) - image is referenced in multiple repositories/.test(e.message));

    // A stopped container using it blocks removal of the last reference and of the image.
    await env.svc.remove('example/other:x');
    env.containers.push(container('c'.repeat(64), id, false, [chain]));
    await assert.rejects(env.svc.remove('example/r:1'), (e: unknown) => e instanceof BerthError && e.kind === 'Conflict' && /unable to remove repository reference "example\/r:1" \(must force\) - container cccccccccccc is using its referenced image/.test(e.message));
    await assert.rejects(env.svc.remove(id), (e: unknown) => e instanceof BerthError && e.kind === 'Conflict' && /\(must be forced\) - image is being used by stopped container cccccccccccc/.test(e.message));

    // A running container cannot be forced.
    env.containers[0] = container('d'.repeat(64), id, true, [chain]);
    await assert.rejects(env.svc.remove(id, { force: true }), (e: unknown) => e instanceof BerthError && e.kind === 'Conflict' && /\(cannot be forced\) - image is being used by running container dddddddddddd/.test(e.message));

    // Forced with a stopped container: untagged, but its layers stay for the container.
    env.containers[0] = container('c'.repeat(64), id, false, [chain]);
    assert.deepEqual(await env.svc.remove(id, { force: true }), [{ Untagged: 'example/r:1' }]);
    assert.ok(await env.layers.has(chain));

    // Without containers the image goes, with its layer and its layer tar.
    env.containers.length = 0;
    const res = await env.svc.remove(id);
    assert.deepEqual(res, [{ Deleted: id }, { Deleted: chain }]);
    assert.equal(env.store.get(id), undefined);
    assert.equal(await env.layers.has(chain), false);
    assert.equal(await env.content.has(sha(layer)), false);
    assert.ok(env.events.some((e) => e.Action === 'delete' && e.Actor.ID === id));
    assert.ok(env.events.some((e) => e.Action === 'untag'));

    // Last tag by reference deletes the image; a shared layer survives.
    const a = await loadSimple(env, { shared: '1' }, ['example/s:a']);
    const b = await loadSimple(env, { shared: '1' }, ['example/s:b'], { created: '2024-05-05T00:00:00Z' });
    const out = await env.svc.remove('example/s:a');
    assert.deepEqual(out, [{ Untagged: 'example/s:a' }, { Deleted: a.id }]);
    assert.ok(await env.layers.has(chainIds([sha(b.layer)])[0]!));
    assert.ok(await env.content.has(sha(b.layer)));

    await assert.rejects(env.svc.remove('nothing:here'), (e: unknown) => e instanceof BerthError && e.kind === 'NotFound');
  });
});

test('remove: a digest reference untags only that digest', async () => {
  await withEnv(async (env) => {
    const { id } = await loadSimple(env, { g: '1' }, ['example/d:1']);
    const digest = `sha256:${'e'.repeat(64)}`;
    await env.store.tag(id, parseReference(`example/d@${digest}`));
    assert.deepEqual(env.store.digestsOf(id), [`example/d@${digest}`]);
    assert.deepEqual(await env.svc.remove(`example/d@${digest}`), [{ Untagged: `example/d@${digest}` }]);
    assert.deepEqual(env.store.tagsOf(id), ['example/d:1']);
    // Removing the last tag also drops digests of the same repository.
    await env.store.tag(id, parseReference(`example/d@${digest}`));
    const out = await env.svc.remove('example/d:1');
    assert.deepEqual(out.slice(0, 2), [{ Untagged: 'example/d:1' }, { Untagged: `example/d@${digest}` }]);
    assert.equal(env.store.get(id), undefined);
  });
});

test('prune: dangling only by default, all unused with dangling=false, until and label filters', async () => {
  await withEnv(async (env) => {
    const tagged = await loadSimple(env, { t: '1' }, ['example/p:1'], { config: { Labels: { keep: 'yes' } } });
    const dangling = await loadSimple(env, { d: '1' }, null);
    const used = await loadSimple(env, { u: '1' }, null);
    env.containers.push(container('f'.repeat(64), used.id, false, chainIds([sha(used.layer)])));

    const r1 = await env.svc.prune(new Map());
    assert.deepEqual(r1.ImagesDeleted?.map((d) => d.Deleted ?? d.Untagged), [dangling.id, chainIds([sha(dangling.layer)])[0]]);
    assert.ok(r1.SpaceReclaimed > 0);
    assert.ok(env.store.get(tagged.id) && env.store.get(used.id));

    // Label filters choose among unused images.
    const r2 = await env.svc.prune(new Map([['dangling', ['false']], ['label!', ['keep=yes']]]));
    assert.equal(r2.ImagesDeleted, null);
    assert.equal(r2.SpaceReclaimed, 0);
    const r3 = await env.svc.prune(new Map([['dangling', ['false']], ['until', ['2023-01-01T00:00:00Z']]]));
    assert.equal(r3.ImagesDeleted, null);
    const r4 = await env.svc.prune(new Map([['dangling', ['false']], ['label', ['keep']]]));
    assert.deepEqual(r4.ImagesDeleted?.slice(0, 2), [{ Untagged: 'example/p:1' }, { Deleted: tagged.id }]);
    assert.ok(env.store.get(used.id), 'an image in use is never pruned');

    await expectInvalid(env.svc.prune(new Map([['bogus', ['1']]])), /invalid filter 'bogus'/);
    await expectInvalid(env.svc.prune(new Map([['dangling', ['maybe']]])), /Invalid filter 'dangling=maybe'/);
  });
});

// ---------------------------------------------------------------------------
// List

test('list: summaries and filters', async () => {
  await withEnv(async (env) => {
    const old = await loadSimple(env, { o: '1' }, ['busybox:1.36', 'busybox:latest'], { created: '2020-01-01T00:00:00Z', config: { Labels: { a: '1' } } });
    const mid = await loadSimple(env, { m: '1' }, ['example/app:v2'], { created: '2022-01-01T00:00:00Z', config: { Labels: { a: '2', b: '' } } });
    const nu = await loadSimple(env, { n: '1' }, null, { created: '2024-06-01T00:00:00Z' });
    // An intermediate image: untagged parent of another image.
    const child = await loadSimple(env, { c: '1' }, ['example/child:1'], { created: '2024-07-01T00:00:00Z' });
    await env.store.update(child.id, { parent: nu.id });

    const ids = (l: { Id: string }[]): string[] => l.map((s) => s.Id);
    const all = await env.svc.list({ all: true, filters: new Map() });
    assert.deepEqual(ids(all), [child.id, nu.id, mid.id, old.id]);
    const top = await env.svc.list({ all: false, filters: new Map() });
    assert.deepEqual(ids(top), [child.id, mid.id, old.id]);

    const s = all.find((x) => x.Id === old.id)!;
    assert.deepEqual(s.RepoTags, ['busybox:1.36', 'busybox:latest']);
    assert.deepEqual(s.RepoDigests, []);
    assert.equal(s.Created, Date.parse('2020-01-01T00:00:00Z') / 1000);
    assert.equal(s.SharedSize, -1);
    assert.equal(s.Containers, -1);
    assert.deepEqual(s.Labels, { a: '1' });
    assert.ok(s.Size > 0);
    assert.equal(all.find((x) => x.Id === child.id)!.ParentId, nu.id);
    assert.deepEqual(all.find((x) => x.Id === nu.id)!.RepoTags, []);
    assert.deepEqual(all.find((x) => x.Id === nu.id)!.Labels, {});

    const f = (entries: [string, string[]][], allFlag = false) => env.svc.list({ all: allFlag, filters: new Map(entries) });
    assert.deepEqual(ids(await f([['dangling', ['true']]])), []);
    assert.deepEqual(ids(await f([['dangling', ['false']]], true)), [child.id, mid.id, old.id]);
    assert.deepEqual(ids(await f([['label', ['a']]])), [mid.id, old.id]);
    assert.deepEqual(ids(await f([['label', ['a=2']]])), [mid.id]);
    assert.deepEqual(ids(await f([['label', ['a', 'b']]])), [mid.id]);
    assert.deepEqual(ids(await f([['before', ['example/app:v2']]])), [old.id]);
    assert.deepEqual(ids(await f([['since', ['example/app:v2']]])), [child.id]);
    assert.deepEqual(ids(await f([['until', ['2021-01-01T00:00:00Z']]])), [old.id]);
    assert.deepEqual(ids(await f([['reference', ['busy*']]])), [old.id]);
    const onlyOld = await f([['reference', ['busybox:1.*']]]);
    assert.deepEqual(ids(onlyOld), [old.id]);
    assert.deepEqual(onlyOld[0]!.RepoTags, ['busybox:1.36']);
    assert.deepEqual(ids(await f([['reference', ['example/*']]])), [child.id, mid.id]);
    assert.deepEqual(ids(await f([['reference', ['example']]])), []);
    await expectInvalid(f([['nope', ['x']]]), /invalid filter 'nope'/);
    await assert.rejects(f([['before', ['missing:1']]]), (e: unknown) => e instanceof BerthError && e.kind === 'NotFound');

    // Once the child is gone the untagged image is dangling.
    await env.svc.remove('example/child:1', { noprune: true });
    assert.deepEqual(ids(await f([['dangling', ['true']]])), [nu.id]);

    env.containers.push(container('a'.repeat(64), mid.id, false, []));
    const counted = await env.svc.list({ all: false, filters: new Map(), sharedSize: true });
    assert.equal(counted.find((x) => x.Id === mid.id)!.Containers, 1);
    assert.equal(counted.find((x) => x.Id === mid.id)!.SharedSize, 0);
  });
});

test('history: newest first, sizes only for layers, image ID on top', async () => {
  await withEnv(async (env) => {
    const l1 = await layerTar({ one: '1' });
    const l2 = await layerTar({ two: '22' });
    const cfg = Buffer.from(
      JSON.stringify({
        architecture: 'amd64',
        os: 'linux',
        created: '2024-01-03T00:00:00Z',
        rootfs: { type: 'layers', diff_ids: [sha(l1), sha(l2)] },
        history: [
          { created: '2024-01-01T00:00:00Z', created_by: 'ADD one' },
          { created: '2024-01-02T00:00:00Z', created_by: 'ENV x=1', empty_layer: true },
          { created: '2024-01-03T00:00:00Z', created_by: 'ADD two', comment: 'c' },
        ],
      }),
    );
    await env.svc.load(source(await dockerArchive([{ config: cfg, layers: [l1, l2], tags: ['hist:1'] }])), true, () => {});
    const h = await env.svc.history('hist:1');
    assert.deepEqual(h.map((x) => [x.Id, x.CreatedBy, x.Size > 0, x.Tags]), [
      [sha(cfg), 'ADD two', true, ['hist:1']],
      ['<missing>', 'ENV x=1', false, null],
      ['<missing>', 'ADD one', true, null],
    ]);
    assert.equal(h[0]!.Created, Date.parse('2024-01-03T00:00:00Z') / 1000);
    assert.equal(h[0]!.Comment, 'c');
  });
});
