/**
 * The berth CLI's context tar: every file (large ones streamed in pieces),
 * directory and symlink of the context in name order, .dockerignore
 * honoured with its exceptions, the named files kept, extra files first.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdirSync, symlinkSync, writeFileSync, chmodSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { packContext } from '../../src/cli/context-pack.ts';
import { DockerIgnore } from '../../src/build/dockerignore.ts';
import { readTar } from '../../src/util/tar.ts';

test('packContext: contents, order, modes, .dockerignore with exceptions, extra files', async () => {
  const dir = await mkdtemp(join(tmpdir(), 'berth-context-pack-test-'));
  try {
    const big = Buffer.alloc((1 << 20) * 2 + 123);
    for (let i = 0; i < big.length; i++) big[i] = (i * 7) & 0xff;
    mkdirSync(join(dir, 'src', 'deep'), { recursive: true });
    mkdirSync(join(dir, 'logs'));
    writeFileSync(join(dir, 'src', 'big.bin'), big);
    writeFileSync(join(dir, 'src', 'deep', 'a.txt'), 'a\n');
    writeFileSync(join(dir, 'src', 'run.sh'), '#!/bin/sh\n');
    chmodSync(join(dir, 'src', 'run.sh'), 0o755);
    symlinkSync('deep/a.txt', join(dir, 'src', 'link'));
    writeFileSync(join(dir, 'logs', 'x.log'), 'x');
    writeFileSync(join(dir, 'logs', 'keep.log'), 'kept');
    writeFileSync(join(dir, 'Dockerfile'), 'FROM scratch\n');
    writeFileSync(join(dir, '.dockerignore'), 'logs\n!logs/keep.log\nDockerfile\n.dockerignore\n');
    const ignore = new DockerIgnore('logs\n!logs/keep.log\nDockerfile\n.dockerignore\n');
    const got: Array<{ name: string; type: string; mode: number; data: Buffer; link: string }> = [];
    for await (const e of readTar(packContext(dir, ignore, new Set(['Dockerfile', '.dockerignore']), [{ name: '.dockerfile.x', data: Buffer.from('FROM busybox\n') }]))) {
      const parts: Buffer[] = [];
      for await (const c of e.body) parts.push(c);
      got.push({ name: e.header.name, type: e.header.type, mode: e.header.mode, data: Buffer.concat(parts), link: e.header.linkname });
    }
    assert.deepEqual(got.map((e) => `${e.type} ${e.name}`), [
      'file .dockerfile.x', 'file .dockerignore', 'file Dockerfile', 'file logs/keep.log',
      'directory src/', 'file src/big.bin', 'directory src/deep/', 'file src/deep/a.txt', 'symlink src/link', 'file src/run.sh',
    ]);
    const by = new Map(got.map((e) => [e.name, e]));
    assert.ok(by.get('src/big.bin')!.data.equals(big));
    assert.equal(by.get('.dockerfile.x')!.data.toString(), 'FROM busybox\n');
    assert.equal(by.get('logs/keep.log')!.data.toString(), 'kept');
    assert.equal(by.get('src/run.sh')!.mode & 0o777, 0o755);
    assert.equal(by.get('src/link')!.link, 'deep/a.txt');
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
});
