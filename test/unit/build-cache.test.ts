/**
 * The build cache's entries: a round trip through memory and disk, a torn
 * entry (written without fsync, cut short by a crash) or one whose layers
 * are gone is a miss, and prune forgets what it held in memory too.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdirSync, writeFileSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { BuildCache } from '../../src/build/cache.ts';
import { LayerStore, chainIds } from '../../src/image/layer-store.ts';
import type { ImageStore } from '../../src/image/image-store.ts';
import type { ImageConfig } from '../../src/image/types.ts';

const DIFF = `sha256:${'a'.repeat(64)}`;

function config(diffIds: string[], label: string): ImageConfig {
  return { architecture: 'amd64', os: 'linux', config: { Labels: { label } }, rootfs: { type: 'layers', diff_ids: diffIds }, history: [] };
}

async function withCache(fn: (c: { cache: BuildCache; layers: LayerStore; root: string; fresh: () => Promise<BuildCache> }) => Promise<void>): Promise<void> {
  const root = await mkdtemp(join(tmpdir(), 'berth-build-cache-test-'));
  try {
    const layers = new LayerStore(root);
    await layers.init();
    const fresh = async (): Promise<BuildCache> => {
      const c = new BuildCache(root, layers);
      await c.init();
      return c;
    };
    await fn({ cache: await fresh(), layers, root, fresh });
  } finally {
    await rm(root, { recursive: true, force: true });
  }
}

test('entries: kept, read back after a restart, copies the caller may change', async () => {
  await withCache(async ({ cache, layers, fresh }) => {
    mkdirSync(layers.diffDir(chainIds([DIFF])[0]!), { recursive: true });
    const c = config([DIFF], 'one');
    await cache.put('k1', c);
    c.config!.Labels!.label = 'changed by the caller';
    const hit = await cache.get('k1');
    assert.equal(hit?.config?.Labels?.label, 'one');
    hit!.config!.Labels!.label = 'changed again';
    assert.equal((await cache.get('k1'))?.config?.Labels?.label, 'one');
    // Another daemon (a restart) reads it from disk.
    assert.equal((await (await fresh()).get('k1'))?.config?.Labels?.label, 'one');
    assert.equal(await cache.get('nope'), undefined);
  });
});

test('a torn entry and one whose layers are gone are misses; prune forgets the remembered ones', async () => {
  await withCache(async ({ cache, layers, root, fresh }) => {
    writeFileSync(join(root, 'build', 'cache', 'torn.json'), '{"config": {"rootfs"');
    assert.equal(await cache.get('torn'), undefined);
    await cache.put('nolayer', config([DIFF], 'x'));
    assert.equal(await cache.get('nolayer'), undefined, 'its layer is not in the store');
    mkdirSync(layers.diffDir(chainIds([DIFF])[0]!), { recursive: true });
    assert.ok(await cache.get('nolayer'));
    // df and prune read past the torn entry.
    const images = { all: () => [] } as unknown as ImageStore;
    assert.ok(Array.isArray(await (await fresh()).usage(images)));
    const pruned = await cache.prune(images);
    assert.deepEqual(pruned.deleted.sort(), ['nolayer', 'torn']);
    assert.equal(await cache.get('nolayer'), undefined, 'not answered from memory after prune');
  });
});
