/**
 * The CLI's entry point (src/cli/launch.ts, built into dist/berth.cjs): the
 * bundle runs with a per-command code cache, a bad or stale cache is never
 * used, and the quick exit keeps the exit status and all of the output.
 * Each test runs a copy of the built files in a directory of its own, so
 * the caches it makes and breaks are its own.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { copyFileSync, mkdirSync, readdirSync, readFileSync, statSync, utimesSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { withTmpDir } from '../helpers/tmp.ts';

const ROOT = new URL('../..', import.meta.url).pathname;
const NODE = join(ROOT, 'node_modules', '.bin', 'node');

/** dist/ and native/build/ as the launcher expects them, under `dir`. */
function install(dir: string): void {
  mkdirSync(join(dir, 'dist'));
  mkdirSync(join(dir, 'native', 'build'), { recursive: true });
  for (const f of ['berth.cjs', 'berth-cli.cjs']) copyFileSync(join(ROOT, 'dist', f), join(dir, 'dist', f));
  copyFileSync(join(ROOT, 'native', 'build', 'berth-exit.so'), join(dir, 'native', 'build', 'berth-exit.so'));
}

function berth(dir: string, args: string[]) {
  // No daemon is needed by these commands; a socket that does not exist makes sure.
  return spawnSync(NODE, [join(dir, 'dist', 'berth.cjs'), ...args], { encoding: 'utf8', env: { ...process.env, DOCKER_HOST: `unix://${dir}/none.sock` } });
}

const caches = (dir: string) => readdirSync(join(dir, '.cache', 'cli-code')).sort();

test('each command gets its code cache on its first run and reuses it', () => withTmpDir('berth-launch-', async (dir) => {
  install(dir);
  const first = berth(dir, ['run', '--help']);
  assert.equal(first.status, 0, first.stderr);
  assert.match(first.stdout, /Usage:\s+berth run \[OPTIONS\] IMAGE/);
  const [runCache] = caches(dir);
  assert.match(runCache!, /^run-\d+\.v8$/);
  const made = statSync(join(dir, '.cache', 'cli-code', runCache!)).mtimeMs;
  const again = berth(dir, ['run', '--help']);
  assert.equal(again.stdout, first.stdout);
  assert.equal(statSync(join(dir, '.cache', 'cli-code', runCache!)).mtimeMs, made, 'an accepted cache is not written again');
  berth(dir, ['ps', '--help']);
  assert.deepEqual(caches(dir).map((f) => f.split('-')[0]), ['ps', 'run']);
}));

test('a damaged cache is refused and replaced; a rebuilt bundle gets a new one', () => withTmpDir('berth-launch-', async (dir) => {
  install(dir);
  berth(dir, ['images', '--help']);
  const [name] = caches(dir);
  const path = join(dir, '.cache', 'cli-code', name!);
  const good = readFileSync(path);
  writeFileSync(path, Buffer.alloc(good.length, 0x5a));
  const r = berth(dir, ['images', '--help']);
  assert.equal(r.status, 0, r.stderr);
  assert.match(r.stdout, /List images/);
  assert.notDeepEqual(readFileSync(path), Buffer.alloc(good.length, 0x5a), 'the damaged cache was replaced');
  // A new bundle (another modification time) never meets the old cache.
  const bundle = join(dir, 'dist', 'berth-cli.cjs');
  const later = new Date(statSync(bundle).mtimeMs + 5000);
  utimesSync(bundle, later, later);
  berth(dir, ['images', '--help']);
  assert.equal(caches(dir).length, 2);
}));

test('the quick exit keeps the status and the whole output', () => withTmpDir('berth-launch-', async (dir) => {
  install(dir);
  const unknown = berth(dir, ['nosuchcommand']);
  assert.equal(unknown.status, 1);
  assert.match(unknown.stderr, /'nosuchcommand' is not a berth command/);
  const usage = berth(dir, ['run', '--zzz', 'busybox']);
  assert.equal(usage.status, 125);
  const noDaemon = berth(dir, ['ps']);
  assert.equal(noDaemon.status, 1);
  assert.match(noDaemon.stderr, /Cannot connect to the berth daemon/);
  // Usage text is the longest output that needs no daemon; through a pipe it arrives whole.
  const help = berth(dir, ['run', '--help']);
  assert.match(help.stdout, /--workdir string/);
  assert.ok(help.stdout.endsWith('\n'));
  // Without the helper the process exits the usual way, with the same results.
  const plain = join(dir, 'native', 'build', 'berth-exit.so');
  writeFileSync(plain, '');
  assert.equal(berth(dir, ['nosuchcommand']).status, 1);
  assert.equal(berth(dir, ['run', '--help']).stdout, help.stdout);
}));
