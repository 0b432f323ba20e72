/**
 * Images through both CLIs against one private berthd: import, list and its
 * filters and formats, tag and rmi, save and load (files, pipes, skopeo),
 * prune, and archives that must be refused without leaving anything behind.
 */
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { spawnSync } from 'node:child_process';
import { existsSync, readFileSync, readdirSync, writeFileSync } from 'node:fs';
import { request } from 'node:http';
import { join } from 'node:path';
import { TestDaemon, BERTH, BUSYBOX_TAR } from '../helpers/daemon.ts';

const d = new TestDaemon('img');

before(async () => {
  await d.start();
  d.loadBusybox();
});

after(async () => {
  await d.cleanup();
});

// ---------------------------------------------------------------------------
// Archives made by hand, so the loader is tested against input berth did not write

interface Entry {
  name: string;
  data?: Buffer;
  type?: 'file' | 'dir' | 'symlink';
  linkname?: string;
}

function octal(n: number, width: number): string {
  return n.toString(8).padStart(width - 1, '0') + '\0';
}

/** A plain ustar archive; names are written as given, `..` and all. */
function tar(entries: Entry[]): Buffer {
  const blocks: Buffer[] = [];
  for (const e of entries) {
    const data = e.data ?? Buffer.alloc(0);
    const h = Buffer.alloc(512);
    h.write(e.name, 0, 100, 'utf8');
    h.write(octal(e.type === 'dir' ? 0o755 : 0o644, 8), 100, 'ascii');
    h.write(octal(0, 8), 108, 'ascii');
    h.write(octal(0, 8), 116, 'ascii');
    h.write(octal(e.type === 'file' || e.type === undefined ? data.length : 0, 12), 124, 'ascii');
    h.write(octal(1_600_000_000, 12), 136, 'ascii');
    h.write('        ', 148, 'ascii');
    h.write(e.type === 'dir' ? '5' : e.type === 'symlink' ? '2' : '0', 156, 'ascii');
    if (e.linkname) h.write(e.linkname, 157, 100, 'utf8');
    h.write('ustar\0', 257, 'ascii');
    h.write('00', 263, 'ascii');
    let sum = 0;
    for (const b of h) sum += b;
    h.write(octal(sum, 7) + ' ', 148, 'ascii');
    blocks.push(h);
    if (e.type === 'file' || e.type === undefined) {
      blocks.push(data);
      const rest = data.length % 512;
      if (rest) blocks.push(Buffer.alloc(512 - rest));
    }
  }
  blocks.push(Buffer.alloc(1024));
  return Buffer.concat(blocks);
}

const sha256 = (b: Buffer): string => createHash('sha256').update(b).digest('hex');

/** A docker-archive with one image of one layer, in the layout `docker save` used before OCI. */
function dockerArchive(layer: Buffer, tag: string, config: Record<string, unknown> = {}): Buffer {
  const cfg = Buffer.from(
    JSON.stringify({
      architecture: 'amd64',
      os: 'linux',
      config: {},
      rootfs: { type: 'layers', diff_ids: [`sha256:${sha256(layer)}`] },
      ...config,
    }),
  );
  const cfgName = `${sha256(cfg)}.json`;
  const manifest = Buffer.from(JSON.stringify([{ Config: cfgName, RepoTags: [tag], Layers: ['layer0/layer.tar'] }]));
  return tar([
    { name: cfgName, data: cfg },
    { name: 'layer0/', type: 'dir' },
    { name: 'layer0/layer.tar', data: layer },
    { name: 'manifest.json', data: manifest },
  ]);
}

// ---------------------------------------------------------------------------
// Helpers

/** One raw API call, for the status codes the CLIs do not show. */
function api(method: string, path: string): Promise<{ status: number; body: string }> {
  return new Promise((resolve, reject) => {
    const req = request({ socketPath: d.socket, method, path, headers: { Host: 'berth' } }, (res) => {
      let body = '';
      res.setEncoding('utf8');
      res.on('data', (c: string) => (body += c));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, body }));
    });
    req.on('error', reject);
    req.end();
  });
}

/** A shell pipeline between two CLI processes, so binary archives never pass through a JavaScript string. */
function sh(script: string): { code: number; stdout: string; stderr: string } {
  const r = spawnSync('sh', ['-c', script], { env: d.env(), encoding: 'utf8', timeout: 120_000 });
  return { code: r.status ?? -1, stdout: r.stdout, stderr: r.stderr };
}

const lines = (s: string): string[] => s.split('\n').filter(Boolean);
const busyboxTar = readFileSync(BUSYBOX_TAR);

for (const cli of ['berth', 'docker'] as const) {
  const run = (args: string[], input?: string | Buffer) => (cli === 'berth' ? d.berth(args, input) : d.docker(args, input));
  const bin = cli === 'berth' ? BERTH : 'docker';
  const ids = (): string[] => lines(run(['images', '-a', '-q', '--no-trunc']).stdout).sort();
  const idOf = (ref: string): string => {
    const r = run(['image', 'inspect', '-f', '{{.Id}}', ref]);
    assert.equal(r.code, 0, r.stderr);
    return r.stdout.trim();
  };
  const importTar = (ref: string, changes: string[] = []): string => {
    const r = run(['import', ...changes.flatMap((c) => ['-c', c]), BUSYBOX_TAR, ref]);
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stdout, /^sha256:[a-f0-9]{64}\n$/);
    return r.stdout.trim();
  };

  test(`${cli}: import from a file and from stdin with --change and --message`, () => {
    const changes = ['-c', 'CMD ["echo","hi"]', '-c', 'ENV A=b', '-c', 'WORKDIR /tmp', '-m', 'msg'];
    const fromFile = run(['import', ...changes, BUSYBOX_TAR, `imp-${cli}:file`]);
    assert.equal(fromFile.code, 0, fromFile.stderr);
    assert.match(fromFile.stdout, /^sha256:[a-f0-9]{64}\n$/);
    const fromStdin = run(['import', ...changes, '-', `imp-${cli}:stdin`], busyboxTar);
    assert.equal(fromStdin.code, 0, fromStdin.stderr);
    assert.match(fromStdin.stdout, /^sha256:[a-f0-9]{64}\n$/);
    assert.equal(idOf(`imp-${cli}:file`), fromFile.stdout.trim());
    assert.equal(idOf(`imp-${cli}:stdin`), fromStdin.stdout.trim());

    for (const tag of ['file', 'stdin']) {
      const ref = `imp-${cli}:${tag}`;
      const hi = run(['run', '--rm', ref]);
      assert.equal(hi.code, 0, hi.stderr);
      assert.equal(hi.stdout, 'hi\n');
      const env = run(['run', '--rm', ref, 'sh', '-c', 'echo $A $(pwd)']);
      assert.equal(env.stdout, 'b /tmp\n', env.stderr);
      // Only the fields set are shown, as the image-spec config has them.
      const cfg = run(['image', 'inspect', '-f', '{{json .Config}}', ref]);
      assert.equal(cfg.code, 0, cfg.stderr);
      assert.deepEqual(JSON.parse(cfg.stdout), { Env: ['A=b'], Cmd: ['echo', 'hi'], WorkingDir: '/tmp' });
      assert.equal(run(['image', 'inspect', '-f', '{{.Comment}} {{.Os}}', ref]).stdout, 'msg linux\n');
      const hist = run(['history', ref]);
      assert.equal(hist.code, 0, hist.stderr);
      assert.match(lines(hist.stdout)[0]!, /^IMAGE\s+CREATED\s+CREATED BY\s+SIZE\s+COMMENT$/);
      assert.match(lines(hist.stdout)[1]!, /^[a-f0-9]{12}\s+.* ago\s+2\.14MB\s+msg$/);
      assert.equal(run(['history', '--format', '{{.Comment}}', ref]).stdout, 'msg\n');
    }
    // Without -H the absolute time gets its own heading; JSON lists fields sorted.
    const absolute = lines(run(['history', '-H=false', `imp-${cli}:file`]).stdout);
    assert.match(absolute[0]!, /^IMAGE\s+CREATED AT\s+CREATED BY\s+SIZE\s+COMMENT$/);
    assert.match(absolute[1]!, /^[a-f0-9]{12}\s+\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(Z|[+-]\d\d:\d\d)\s+2140160\s+msg$/);
    const histJson = JSON.parse(run(['history', '--format', 'json', `imp-${cli}:file`]).stdout) as Record<string, string>;
    assert.deepEqual(Object.keys(histJson), ['Comment', 'CreatedAt', 'CreatedBy', 'CreatedSince', 'ID', 'Size']);
    assert.equal(histJson.ID, fromFile.stdout.slice(7, 19));

    // Without a message the comment names the source.
    const plain = importTar(`imp-${cli}:plain`);
    assert.equal(run(['history', '--format', '{{.Comment}}', plain]).stdout, 'Imported from -\n');
    const rm = run(['rmi', `imp-${cli}:file`, `imp-${cli}:stdin`, `imp-${cli}:plain`]);
    assert.equal(rm.code, 0, rm.stderr);
  });

  test(`${cli}: images: table header, -a, -q, --digests, --no-trunc`, () => {
    // A creation date 10–99 years back prints as "NN years ago", as wide as the
    // CREATED heading's column, so the header line is docker's default one.
    const repo = `old-${cli}`;
    const archive = dockerArchive(busyboxTar, `${repo}:1`, { created: '2000-01-01T00:00:00Z' });
    const load = run(['load'], archive);
    assert.equal(load.code, 0, load.stderr);
    assert.equal(load.stdout, `Loaded image: ${repo}:1\n`);
    const id = idOf(`${repo}:1`);

    const table = lines(run(['images', repo]).stdout);
    assert.equal(table[0], 'REPOSITORY   TAG       IMAGE ID       CREATED        SIZE');
    assert.match(table[1]!, new RegExp(`^${repo.padEnd(13)}1         ${id.slice(7, 19)}   \\d\\d years ago   2\\.14MB$`));
    assert.equal(table.length, 2);

    const digests = lines(run(['images', '--digests', repo]).stdout);
    assert.equal(digests[0], 'REPOSITORY   TAG       DIGEST    IMAGE ID       CREATED        SIZE');
    assert.match(digests[1]!, new RegExp(`^${repo}\\s+1\\s+<none>\\s+${id.slice(7, 19)}\\s+\\d\\d years ago\\s+2\\.14MB$`));

    const noTrunc = lines(run(['images', '--no-trunc', repo]).stdout);
    assert.match(noTrunc[0]!, /^REPOSITORY\s+TAG\s+IMAGE ID\s+CREATED\s+SIZE$/);
    assert.match(noTrunc[1]!, new RegExp(`^${repo}\\s+1\\s+${id}\\s+`));

    const quiet = lines(run(['images', '-q']).stdout);
    assert.ok(quiet.every((l) => /^[a-f0-9]{12}$/.test(l)), quiet.join(','));
    assert.equal(new Set(quiet).size, quiet.length, 'one line per image, however many tags');
    assert.ok(quiet.includes(id.slice(7, 19)));
    const all = lines(run(['images', '-a', '-q']).stdout);
    for (const q of quiet) assert.ok(all.includes(q));
    assert.deepEqual(lines(run(['images', '-q', '--no-trunc', repo]).stdout), [id]);
    assert.equal(run(['rmi', `${repo}:1`]).code, 0);
  });

  test(`${cli}: images --filter dangling, reference, label`, () => {
    const dangling = importTar(`dang-${cli}:1`);
    const current = importTar(`dang-${cli}:1`);
    assert.notEqual(dangling, current);
    const labelled = importTar(`lbl-${cli}:1`, [`LABEL suite=images-${cli} other=x`]);
    assert.equal(run(['tag', 'busybox', `busybox:ref-${cli}`]).code, 0);

    const dang = lines(run(['images', '--filter', 'dangling=true', '-q', '--no-trunc']).stdout);
    assert.ok(dang.includes(dangling), 'the image that lost its tag is dangling');
    assert.ok(!dang.includes(current));
    assert.ok(!dang.includes(labelled));
    const dangNames = lines(run(['images', '-f', 'dangling=true', '--format', '{{.Repository}}:{{.Tag}}']).stdout);
    assert.ok(dangNames.length > 0 && dangNames.every((n) => n === '<none>:<none>'), dangNames.join(','));
    const notDang = lines(run(['images', '--filter', 'dangling=false', '-q', '--no-trunc']).stdout);
    assert.ok(notDang.includes(current) && !notDang.includes(dangling));

    const ref = run(['images', '--filter', 'reference=busy*', '--format', '{{.Repository}}:{{.Tag}}']);
    assert.equal(ref.code, 0, ref.stderr);
    assert.deepEqual(lines(ref.stdout).sort(), ['busybox:latest', `busybox:ref-${cli}`].sort());
    assert.deepEqual(lines(run(['images', '--filter', `reference=busybox:ref-${cli}`, '--format', '{{.Repository}}:{{.Tag}}']).stdout), [`busybox:ref-${cli}`]);
    assert.deepEqual(lines(run(['images', '--filter', 'reference=nomatch*', '-q']).stdout), []);

    assert.deepEqual(lines(run(['images', '--filter', `label=suite=images-${cli}`, '-q', '--no-trunc']).stdout), [labelled]);
    assert.deepEqual(lines(run(['images', '--filter', `label=suite=images-${cli}`, '--filter', 'label=other', '-q', '--no-trunc']).stdout), [labelled]);
    assert.deepEqual(lines(run(['images', '--filter', 'label=suite=nope', '-q']).stdout), []);
    const badFilter = run(['images', '--filter', 'nosuchfilter=1']);
    assert.notEqual(badFilter.code, 0);
    assert.match(badFilter.stderr, /invalid filter 'nosuchfilter'/);

    const rm = run(['rmi', `dang-${cli}:1`, dangling, `lbl-${cli}:1`, `busybox:ref-${cli}`]);
    assert.equal(rm.code, 0, rm.stderr);
  });

  test(`${cli}: images --format`, () => {
    const id = importTar(`fmt-${cli}:1`);
    const tmpl = run(['images', '--format', '{{.Repository}}:{{.Tag}}', `fmt-${cli}`]);
    assert.equal(tmpl.stdout, `fmt-${cli}:1\n`);
    const withHeader = lines(run(['images', '--format', 'table {{.Repository}}\t{{.ID}}', `fmt-${cli}`]).stdout);
    assert.deepEqual(withHeader, [`REPOSITORY   IMAGE ID`, `${`fmt-${cli}`.padEnd(13)}${id.slice(7, 19)}`]);
    for (const format of ['json', '{{json .}}']) {
      const out = lines(run(['images', '--format', format, `fmt-${cli}`]).stdout);
      assert.equal(out.length, 1);
      const obj = JSON.parse(out[0]!) as Record<string, string>;
      // docker's CLI writes these objects with sorted keys.
      assert.deepEqual(Object.keys(obj), [...Object.keys(obj)].sort());
      assert.deepEqual(Object.keys(obj).sort(), ['Containers', 'CreatedAt', 'CreatedSince', 'Digest', 'ID', 'Repository', 'SharedSize', 'Size', 'Tag', 'UniqueSize', 'VirtualSize']);
      assert.equal(obj.Repository, `fmt-${cli}`);
      assert.equal(obj.Tag, '1');
      assert.equal(obj.ID, id.slice(7, 19));
      assert.equal(obj.Digest, '<none>');
      assert.equal(obj.Size, '2.14MB');
      assert.match(obj.CreatedAt!, /^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d [+-]\d{4} \S+$/);
    }
    assert.equal(run(['rmi', `fmt-${cli}:1`]).code, 0);
  });

  test(`${cli}: tag, rmi of a tag, of the last reference, of an image in use, rmi -f`, async () => {
    const busybox = idOf('busybox');
    const tag = run(['tag', 'busybox', `tagged-${cli}:v1`]);
    assert.equal(tag.code, 0, tag.stderr);
    assert.equal(tag.stdout, '');
    assert.equal(idOf(`tagged-${cli}:v1`), busybox);
    // A tag to a name with a registry and a nested path.
    assert.equal(run(['tag', busybox.slice(7, 19), `localhost:5000/a/b-${cli}`]).code, 0);
    assert.equal(idOf(`localhost:5000/a/b-${cli}:latest`), busybox);
    assert.equal(run(['rmi', `localhost:5000/a/b-${cli}`]).stdout, `Untagged: localhost:5000/a/b-${cli}:latest\n`);

    const several = run(['rmi', busybox.slice(7, 19)]);
    assert.equal(several.code, 1);
    assert.equal(several.stderr, `Error response from daemon: conflict: unable to delete ${busybox.slice(7, 19)} (must be forced) - image is referenced in multiple repositories\n`);
    const untag = run(['rmi', `tagged-${cli}:v1`]);
    assert.equal(untag.code, 0, untag.stderr);
    assert.equal(untag.stdout, `Untagged: tagged-${cli}:v1\n`);
    assert.equal(idOf('busybox'), busybox, 'the image stays while another tag names it');

    const before = ids();
    const last = importTar(`last-${cli}:1`);
    const del = run(['rmi', `last-${cli}:1`]);
    assert.equal(del.code, 0, del.stderr);
    assert.equal(del.stdout, `Untagged: last-${cli}:1\nDeleted: ${last}\n`);
    assert.deepEqual(ids(), before);

    const used = importTar(`used-${cli}:1`, ['CMD ["echo","still-runs"]']);
    const ctr = `user-${cli}`;
    const create = run(['create', '--name', ctr, `used-${cli}:1`]);
    assert.equal(create.code, 0, create.stderr);
    const byId = run(['rmi', used.slice(7, 19)]);
    assert.equal(byId.code, 1);
    assert.match(byId.stderr, /^Error response from daemon: conflict: unable to delete [a-f0-9]{12} \(must be forced\) - image is being used by stopped container [a-f0-9]{12}\n$/);
    const status = await api('DELETE', `/v1.51/images/${used}`);
    assert.equal(status.status, 409);
    assert.match((JSON.parse(status.body) as { message: string }).message, /image is being used by stopped container/);
    const byName = run(['rmi', `used-${cli}:1`]);
    assert.equal(byName.code, 1);
    assert.match(byName.stderr, /conflict: unable to remove repository reference "used-\w+:1" \(must force\) - container [a-f0-9]{12} is using its referenced image [a-f0-9]{12}/);
    assert.equal(idOf(`used-${cli}:1`), used, 'a refused rmi changes nothing');

    const forced = run(['rmi', '-f', `used-${cli}:1`]);
    assert.equal(forced.code, 0, forced.stderr);
    assert.match(forced.stdout, new RegExp(`^Untagged: used-${cli}:1\\n`));
    assert.equal(run(['image', 'inspect', `used-${cli}:1`]).code, 1);
    // The container keeps its root filesystem.
    const start = run(['start', '-a', ctr]);
    assert.equal(start.code, 0, start.stderr);
    assert.equal(start.stdout, 'still-runs\n');
    assert.equal(run(['rm', ctr]).code, 0);
    // Whatever the forced removal had to keep goes once the container is gone.
    run(['rmi', used]);
    assert.deepEqual(ids(), before);
  });

  test(`${cli}: save -o, rmi, load -i; save | load through pipes; skopeo reads the archive`, () => {
    const a = `save-a-${cli}:1`;
    const b = `save-b-${cli}:1`;
    const idA = importTar(a, ['CMD ["echo","from-a"]']);
    const idB = importTar(b, ['CMD ["echo","from-b"]']);
    const file = join(d.dir, `saved-${cli}.tar`);
    const save = run(['save', '-o', file, a, b]);
    assert.equal(save.code, 0, save.stderr);
    assert.equal(save.stdout, '');
    assert.ok(existsSync(file));

    const inspectA = spawnSync('skopeo', ['inspect', `docker-archive:${file}:${a}`], { encoding: 'utf8' });
    assert.equal(inspectA.status, 0, inspectA.stderr);
    const info = JSON.parse(inspectA.stdout) as { Os: string; Architecture: string; Layers: string[] };
    assert.equal(info.Os, 'linux');
    assert.equal(info.Layers.length, 1);
    const cfg = spawnSync('skopeo', ['inspect', '--config', `docker-archive:${file}:${b}`], { encoding: 'utf8' });
    assert.equal(cfg.status, 0, cfg.stderr);
    assert.deepEqual((JSON.parse(cfg.stdout) as { config: { Cmd: string[] } }).config.Cmd, ['echo', 'from-b']);
    assert.equal(`sha256:${sha256(Buffer.from(spawnSync('skopeo', ['inspect', '--raw', '--config', `docker-archive:${file}:${a}`]).stdout))}`, idA, 'the config is saved byte for byte');

    const rm = run(['rmi', a, b]);
    assert.equal(rm.code, 0, rm.stderr);
    assert.equal(run(['image', 'inspect', a]).code, 1);
    const load = run(['load', '-i', file]);
    assert.equal(load.code, 0, load.stderr);
    assert.deepEqual(lines(load.stdout).sort(), [`Loaded image: ${a}`, `Loaded image: ${b}`]);
    assert.equal(idOf(a), idA, 'the same image comes back');
    assert.equal(idOf(b), idB);
    assert.equal(run(['run', '--rm', a]).stdout, 'from-a\n');
    assert.equal(run(['run', '--rm', b]).stdout, 'from-b\n');

    // Loading what is already there names it again.
    const again = run(['load'], readFileSync(file));
    assert.equal(again.code, 0, again.stderr);
    assert.deepEqual(lines(again.stdout).sort(), [`Loaded image: ${a}`, `Loaded image: ${b}`]);

    assert.equal(run(['rmi', b]).code, 0);
    const single = join(d.dir, `single-${cli}.tar`);
    // Straight through a pipe, with the image still there: it is named again.
    const direct = sh(`"${bin}" save ${a} | "${bin}" load`);
    assert.equal(direct.code, 0, direct.stderr);
    assert.equal(direct.stdout, `Loaded image: ${a}\n`);
    // Through stdout into a file, then back through stdin once the image is gone.
    const saved = sh(`"${bin}" save ${a} > "${single}"`);
    assert.equal(saved.code, 0, saved.stderr);
    assert.equal(run(['rmi', a]).code, 0);
    const pipe = sh(`cat "${single}" | "${bin}" load`);
    assert.equal(pipe.code, 0, pipe.stderr);
    assert.equal(pipe.stdout, `Loaded image: ${a}\n`);
    assert.equal(idOf(a), idA);
    assert.equal(run(['run', '--rm', a]).stdout, 'from-a\n');
    // A one-image archive needs no name for skopeo.
    const whole = spawnSync('skopeo', ['inspect', `docker-archive:${single}`], { encoding: 'utf8' });
    assert.equal(whole.status, 0, whole.stderr);
    assert.deepEqual((JSON.parse(whole.stdout) as { Layers: string[] }).Layers, [`sha256:${sha256(busyboxTar)}`]);

    // Saved by ID, the archive names no tag, and loading it says so.
    const byIdFile = join(d.dir, `byid-${cli}.tar`);
    const byId = run(['save', '-o', byIdFile, idA.slice(7, 19)]);
    assert.equal(byId.code, 0, byId.stderr);
    const untagged = run(['load', '-i', byIdFile]);
    assert.equal(untagged.code, 0, untagged.stderr);
    assert.equal(untagged.stdout, `Loaded image ID: ${idA}\n`);
    const noDir = run(['save', '-o', join(d.dir, 'no-such-dir', 'x.tar'), a]);
    assert.equal(noDir.code, 1);
    assert.equal(noDir.stderr, `failed to save image: invalid output path: stat ${join(d.dir, 'no-such-dir')}: no such file or directory\n`);
    const missing = run(['save', '-o', join(d.dir, `missing-${cli}.tar`), 'nosuchimage:1']);
    assert.notEqual(missing.code, 0);
    assert.match(missing.stderr, /No such image: nosuchimage:1/);
    assert.equal(existsSync(join(d.dir, `missing-${cli}.tar`)), false, 'a failed save leaves no file');
    assert.equal(run(['rmi', a]).code, 0);
  });

  test(`${cli}: image prune -f removes dangling images only; -a keeps images in use`, () => {
    const dangling = importTar(`prune-${cli}:1`);
    const tagged = importTar(`prune-${cli}:1`);
    const prune = run(['image', 'prune', '-f']);
    assert.equal(prune.code, 0, prune.stderr);
    assert.match(prune.stdout, new RegExp(`^Deleted Images:\\n(.*\\n)*deleted: ${dangling}\\n`));
    assert.match(prune.stdout, /\nTotal reclaimed space: \S+\n$/);
    const left = ids();
    assert.ok(!left.includes(dangling));
    assert.ok(left.includes(tagged));
    assert.ok(left.includes(idOf('busybox')));
    const nothing = run(['image', 'prune', '-f']);
    assert.equal(nothing.stdout, 'Total reclaimed space: 0B\n');

    const keep = importTar(`keep-${cli}:1`);
    const ctr = run(['create', '--name', `keeper-${cli}`, `keep-${cli}:1`, 'true']);
    assert.equal(ctr.code, 0, ctr.stderr);
    const all = run(['image', 'prune', '-a', '-f']);
    assert.equal(all.code, 0, all.stderr);
    assert.match(all.stdout, new RegExp(`untagged: prune-${cli}:1\\n`));
    assert.match(all.stdout, /untagged: busybox:latest\n/);
    assert.deepEqual(ids(), [keep], 'only the image a container uses is left');
    assert.equal(run(['rm', `keeper-${cli}`]).code, 0);
    assert.equal(run(['rmi', keep]).code, 0);
    d.loadBusybox();
  });

  test(`${cli}: load refuses garbage, truncated and hostile archives and adds nothing`, () => {
    const layersDir = join(d.dataRoot, 'layers');
    const blobsDir = join(d.dataRoot, 'content', 'blobs', 'sha256');
    const before = { ids: ids(), layers: readdirSync(layersDir).sort(), blobs: readdirSync(blobsDir).sort() };
    const sentinels = [join(d.dataRoot, 'evil'), join(d.dataRoot, 'tmp', 'evil'), join(d.dir, 'evil'), join(d.dir, `escaped-${cli}`), join(d.dir, `escaped-link-${cli}`), '/tmp/evil'];
    for (const s of sentinels) assert.equal(existsSync(s), false, `${s} exists before the test`);

    const saved = join(d.dir, `whole-${cli}.tar`);
    assert.equal(run(['save', '-o', saved, 'busybox']).code, 0);
    const whole = readFileSync(saved);
    const escapeLayer = tar([{ name: `${'../'.repeat(12)}${d.dir.slice(1)}/escaped-${cli}`, data: Buffer.from('x') }]);
    const linkLayer = tar([
      { name: 'link', type: 'symlink', linkname: d.dir },
      { name: `link/escaped-link-${cli}`, data: Buffer.from('y') },
    ]);
    const cases: [string, Buffer, RegExp][] = [
      ['text', Buffer.from('this is not a tar archive\n'), /invalid image archive|tar|EOF/i],
      ['random', Buffer.from(Array.from({ length: 4096 }, (_, i) => (i * 7919 + 13) % 251)), /invalid image archive|tar header/i],
      ['truncated', whole.subarray(0, Math.floor(whole.length / 2)), /unexpected EOF|truncated/i],
      ['dotdot entry', tar([{ name: '../../evil', data: Buffer.from('pwned') }, { name: 'manifest.json', data: Buffer.from('[]') }]), /outside/],
      ['absolute entry', tar([{ name: '/tmp/evil', data: Buffer.from('pwned') }]), /invalid image archive/],
      ['no manifest', tar([{ name: 'hello.txt', data: Buffer.from('hi') }]), /neither manifest\.json nor index\.json/],
      ['escaping layer', dockerArchive(escapeLayer, `evil-${cli}:1`), /outside/],
      ['symlink layer', dockerArchive(linkLayer, `evil-${cli}:2`), /symlink/],
      ['wrong diff id', dockerArchive(busyboxTar, `evil-${cli}:3`, { rootfs: { type: 'layers', diff_ids: [`sha256:${'0'.repeat(64)}`] } }), /does not match|mismatch/],
    ];
    for (const [what, bytes, wording] of cases) {
      const file = join(d.dir, `bad-${cli}.tar`);
      writeFileSync(file, bytes);
      for (const r of [run(['load', '-i', file]), run(['load'], bytes)]) {
        assert.notEqual(r.code, 0, `${what}: ${r.stdout}`);
        assert.match(r.stderr, wording, what);
        assert.doesNotMatch(r.stdout, /Loaded image/, what);
      }
      assert.deepEqual(ids(), before.ids, `${what}: no image added`);
      assert.deepEqual(readdirSync(layersDir).sort(), before.layers, `${what}: no layer left`);
      assert.deepEqual(readdirSync(blobsDir).sort(), before.blobs, `${what}: no blob left`);
      for (const s of sentinels) assert.equal(existsSync(s), false, `${what}: ${s} was written`);
    }
    const tmp = join(d.dataRoot, 'tmp');
    if (existsSync(tmp)) assert.deepEqual(readdirSync(tmp), [], 'load spools are removed');

    const missing = run(['load', '-i', join(d.dir, 'no-such-file.tar')]);
    assert.notEqual(missing.code, 0);
    assert.match(missing.stderr, /no such file or directory/);
  });

  test(`${cli}: import of garbage, tag to an invalid name, unknown images`, () => {
    const before = ids();
    const garbage = join(d.dir, `garbage-${cli}`);
    writeFileSync(garbage, Buffer.from(Array.from({ length: 4096 }, (_, i) => (i * 31 + 7) % 256)));
    for (const r of [run(['import', garbage, `garbage-${cli}:1`]), run(['import', '-', `garbage-${cli}:1`], readFileSync(garbage))]) {
      assert.notEqual(r.code, 0);
      assert.match(r.stderr, /tar/);
      assert.equal(r.stdout, '');
    }
    const escape = run(['import', '-', `garbage-${cli}:2`], tar([{ name: `${'../'.repeat(12)}${d.dir.slice(1)}/imported-${cli}`, data: Buffer.from('x') }]));
    assert.notEqual(escape.code, 0);
    assert.match(escape.stderr, /outside/);
    assert.equal(existsSync(join(d.dir, `imported-${cli}`)), false);
    assert.equal(run(['import', join(d.dir, 'no-such-file'), 'x:1']).code, 1);
    const badChange = run(['import', '-c', 'RUN echo hi', BUSYBOX_TAR, `garbage-${cli}:4`]);
    assert.notEqual(badChange.code, 0);
    assert.match(badChange.stderr, /run is not a valid change command/);
    assert.deepEqual(ids(), before, 'nothing imported');

    const upper = run(['tag', 'busybox', 'UPPER:bad']);
    assert.equal(upper.code, 1);
    assert.equal(upper.stderr, 'Error parsing reference: "UPPER:bad" is not a valid repository/tag: invalid reference format: repository name (library/UPPER) must be lowercase\n');
    const digestTag = run(['tag', 'busybox', `busybox@sha256:${'a'.repeat(64)}`]);
    assert.equal(digestTag.code, 1);
    assert.match(digestTag.stderr, /refusing to create a tag with a digest reference/);
    const noSource = run(['tag', 'nosuchimage', 'x:1']);
    assert.equal(noSource.code, 1);
    assert.equal(noSource.stderr, 'Error response from daemon: No such image: nosuchimage:latest\n');

    const rmi = run(['rmi', 'nosuchimage']);
    assert.equal(rmi.code, 1);
    assert.equal(rmi.stderr, 'Error response from daemon: No such image: nosuchimage:latest\n');
    const several = run(['rmi', 'nosuch1:1', `sha256:${'0'.repeat(64)}`]);
    assert.equal(several.code, 1);
    assert.equal(several.stderr, `Error response from daemon: No such image: nosuch1:1\nError response from daemon: No such image: sha256:${'0'.repeat(64)}\n`);
    const badName = run(['rmi', 'UPPER']);
    assert.equal(badName.code, 1);
    assert.match(badName.stderr, /invalid reference format/);
    const insp = run(['image', 'inspect', 'nosuchimage']);
    assert.equal(insp.code, 1);
    assert.match(insp.stderr, /No such image: nosuchimage/);
    assert.equal(run(['history', 'nosuchimage']).code, 1);
    assert.deepEqual(ids(), before);
  });

  test(`${cli}: inspect an image by ID prefix, name:tag and full ID`, async () => {
    const id = importTar(`insp-${cli}:1`, ['LABEL k=v']);
    const hex = id.slice(7);
    for (const ref of [hex.slice(0, 12), hex.slice(0, 8), hex, id, `insp-${cli}:1`, `docker.io/library/insp-${cli}:1`]) {
      const r = run(['image', 'inspect', '-f', '{{.Id}} {{index .Config.Labels "k"}} {{.RepoTags}}', ref]);
      assert.equal(r.code, 0, `${ref}: ${r.stderr}`);
      assert.equal(r.stdout, `${id} v [insp-${cli}:1]\n`, ref);
    }
    const generic = run(['inspect', '--type', 'image', '-f', '{{.Id}}', hex.slice(0, 12)]);
    assert.equal(generic.stdout, `${id}\n`, generic.stderr);
    const full = JSON.parse(run(['image', 'inspect', id]).stdout) as Array<Record<string, unknown>>;
    assert.equal(full.length, 1);
    assert.equal(full[0]!.Id, id);
    assert.deepEqual(full[0]!.RootFS, { Type: 'layers', Layers: [`sha256:${sha256(busyboxTar)}`] });
    // A name alone means its latest tag, which this image does not have.
    const latest = run(['image', 'inspect', '-f', '{{.Id}}', `insp-${cli}`]);
    assert.equal(latest.code, 1);
    assert.match(latest.stderr, new RegExp(`No such image: insp-${cli}`));
    const missing = await api('GET', `/v1.51/images/insp-${cli}/json`);
    assert.equal(missing.status, 404);
    assert.equal(missing.body.trim(), JSON.stringify({ message: `No such image: insp-${cli}:latest` }));
    assert.equal(run(['image', 'inspect', '-f', '{{.Id}}', `insp-${cli}:2`]).code, 1);
    assert.equal(run(['rmi', `insp-${cli}:1`]).code, 0);
  });
}

test('both CLIs word image errors the same', () => {
  for (const args of [
    ['tag', 'busybox', 'UPPER:bad'],
    ['rmi', 'nosuchimage'],
    ['rmi', 'nosuchimage:1', 'busybox:nosuchtag'],
    ['image', 'prune', '--filter', 'nosuch=1', '-f'],
    ['images', '--filter', 'dangling=maybe'],
    ['history', 'nosuchimage'],
    ['save', '-o', '/nonexistent-berth-dir/x.tar', 'busybox'],
    ['save', 'nosuchimage'],
    ['load', '-i', '/nonexistent-berth-file.tar'],
  ]) {
    const b = d.berth(args);
    const k = d.docker(args);
    assert.equal(b.code, k.code, args.join(' '));
    assert.equal(b.stderr, k.stderr, args.join(' '));
    assert.equal(b.stdout, k.stdout, args.join(' '));
  }
});

test('old API versions still get the container-shaped image config', async () => {
  const r = await api('GET', '/v1.43/images/busybox/json');
  assert.equal(r.status, 200);
  const img = JSON.parse(r.body) as { Config: Record<string, unknown>; ContainerConfig: Record<string, unknown>; VirtualSize: number; Size: number };
  assert.equal(img.Config.Hostname, '');
  assert.equal(img.Config.Entrypoint, null);
  assert.deepEqual(img.Config.Cmd, ['sh']);
  assert.equal(img.ContainerConfig.Image, '');
  assert.equal(img.VirtualSize, img.Size);
  const now = JSON.parse((await api('GET', '/v1.51/images/busybox/json')).body) as { Config: Record<string, unknown> };
  assert.deepEqual(now.Config, { Cmd: ['sh'] });
});
