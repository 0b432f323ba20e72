/**
 * The berth CLI's helper process (native/berth-cli-helper.h): a command is
 * handed to a Node process started ahead of time, which runs it with the
 * caller's stdio, working directory, umask, environment and signals, as a
 * fresh process would; the next helper takes its place. Without a usable
 * helper the command runs in a fresh process, and helpers end when idle,
 * when their directory goes, or when the CLI is rebuilt.
 */
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, spawnSync } from 'node:child_process';
import type { ChildProcess } from 'node:child_process';
import { copyFileSync, existsSync, mkdirSync, readdirSync, readFileSync, statSync, symlinkSync, utimesSync } from 'node:fs';
import { join } from 'node:path';
import { TestDaemon, ROOT } from '../helpers/daemon.ts';
import { processAlive } from '../../src/util/signals.ts';

const d = new TestDaemon('clihelper');
const BERTH_CLI = join(ROOT, 'native', 'build', 'berth-cli');
let dirs = 0;

before(async () => {
  await d.start();
  d.loadBusybox();
});

after(() => d.cleanup());

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));



/** A helper directory of its own for one test (inside the daemon's, so its cleanup ends the helpers). */
function helperDir(): string {
  return join(d.dir, `cli${dirs++}`);
}

function sockets(dir: string): string[] {
  return existsSync(dir) ? readdirSync(dir).filter((f) => f.endsWith('.sock')) : [];
}

/** The pid of the helper waiting in `dir`, once it listens. */
async function waiting(dir: string): Promise<number> {
  for (let i = 0; i < 200; i++) {
    const [sock] = sockets(dir);
    // A socket whose helper is dead may still be there (see the test of that).
    const pid = sock ? Number(readFileSync(join(dir, sock.replace(/\.sock$/, '.lock')), 'utf8')) : 0;
    if (pid && processAlive(pid)) return pid;
    await sleep(25);
  }
  throw new Error(`no helper started in ${dir}`);
}

async function gone(pid: number, what: string): Promise<void> {
  for (let i = 0; i < 200 && processAlive(pid); i++) await sleep(25);
  assert.ok(!processAlive(pid), what);
}

function berth(dir: string, args: string[], opts: { input?: string; env?: Record<string, string> } = {}) {
  return d.cli2('berth', args, { BERTH_CLI_HELPER_DIR: dir, ...opts.env }, opts.input);
}

/** Runs a command with a helper waiting, and checks that the helper took it. */
async function served(dir: string, args: string[], opts: { input?: string; env?: Record<string, string> } = {}) {
  const helper = await waiting(dir);
  const r = berth(dir, args, opts);
  await gone(helper, `the helper ${helper} ran ${args.join(' ')}`);
  return r;
}

function spawnBerth(dir: string, args: string[]): ChildProcess {
  return spawn(BERTH_CLI, args, { env: { ...d.env(), BERTH_CLI_HELPER_DIR: dir }, stdio: ['pipe', 'pipe', 'pipe'] });
}

function output(p: ChildProcess, pattern: RegExp): Promise<string> {
  let out = '';
  return new Promise((resolve, reject) => {
    p.stdout!.on('data', (b: Buffer) => {
      out += b.toString();
      if (pattern.test(out)) resolve(out);
    });
    p.once('exit', () => reject(new Error(`exited before ${pattern}: ${out}`)));
  });
}

const exited = (p: ChildProcess) => new Promise<{ code: number | null; signal: string | null }>((r) => p.once('exit', (code, signal) => r({ code, signal })));

test('a command goes to the waiting helper, with its output and status, and a new helper takes its place', async () => {
  const dir = helperDir();
  const first = berth(dir, ['version', '--format', '{{.Client.Version}}']);
  assert.equal(first.code, 0, first.stderr);
  const helper = await waiting(dir);
  assert.equal(statSync(dir).mode & 0o777, 0o700);
  const r = await served(dir, ['run', '--rm', 'busybox', 'sh', '-c', 'echo out; echo err >&2; exit 3']);
  assert.equal(r.code, 3);
  assert.equal(r.stdout, 'out\n');
  assert.equal(r.stderr, 'err\n');
  const next = await waiting(dir);
  assert.notEqual(next, helper);
  // A bad command fails the same way in the helper as in a fresh process.
  const bad = await served(dir, ['nosuchcommand']);
  const fresh = berth(dir, ['nosuchcommand'], { env: { BERTH_CLI_HELPER: 'off' } });
  assert.deepEqual([bad.code, bad.stderr], [fresh.code, fresh.stderr]);
  assert.notEqual(bad.code, 0);
});

test("the helper runs the command with the caller's stdin, working directory, umask and environment", async () => {
  const dir = helperDir();
  berth(dir, ['version']);
  const piped = await served(dir, ['run', '-i', '--rm', 'busybox', 'cat'], { input: 'piped through\n' });
  assert.equal(piped.stdout, 'piped through\n');

  // A relative path and the umask, as the caller's shell has them.
  const work = join(d.dir, 'work');
  mkdirSync(work);
  const helper = await waiting(dir);
  const save = spawnSync('sh', ['-c', `umask 077; exec ${BERTH_CLI} save -o rel.tar busybox`], { cwd: work, env: { ...d.env(), BERTH_CLI_HELPER_DIR: dir }, encoding: 'utf8' });
  assert.equal(save.status, 0, save.stderr);
  await gone(helper, 'the helper ran save');
  assert.equal(statSync(join(work, 'rel.tar')).mode & 0o777, 0o600);

  // Each command's own environment: the daemon it talks to, and its time zone.
  const elsewhere = await served(dir, ['ps'], { env: { DOCKER_HOST: `unix://${d.dir}/none.sock`, BERTH_HOST: `unix://${d.dir}/none.sock` } });
  assert.equal(elsewhere.code, 1);
  assert.match(elsewhere.stderr, /none\.sock/);
  const tokyo = await served(dir, ['images', '--format', '{{.CreatedAt}}', 'busybox'], { env: { TZ: 'Asia/Tokyo' } });
  const utc = await served(dir, ['images', '--format', '{{.CreatedAt}}', 'busybox'], { env: { TZ: 'UTC' } });
  assert.match(tokyo.stdout, /\+0900/);
  assert.match(utc.stdout, /\+0000/);
});

test('signals reach the command; a client killed outright takes its command with it', async () => {
  const dir = helperDir();
  berth(dir, ['version']);
  await waiting(dir);
  const trapped = spawnBerth(dir, ['run', '--rm', '--name', 'sig-int', 'busybox', 'sh', '-c', 'trap "echo got INT; exit 7" INT; echo ready; sleep 30 & wait']);
  const trappedEnd = exited(trapped);
  await output(trapped, /ready/);
  trapped.kill('SIGINT');
  const out = output(trapped, /got INT/);
  assert.deepEqual(await trappedEnd, { code: 7, signal: null });
  await out.catch(() => undefined);

  // `logs -f` through a waiting helper (a fresh process first makes sure
  // there is one: a helper that died of a signal started no successor).
  assert.equal(berth(dir, ['run', '-d', '--name', 'sig-logs', 'busybox', 'sh', '-c', 'echo line; sleep 60']).code, 0);
  const follow = async () => {
    assert.equal(berth(dir, ['version']).code, 0);
    const pid = await waiting(dir);
    const client = spawnBerth(dir, ['logs', '-f', 'sig-logs']);
    const end = exited(client);
    await output(client, /line/);
    return { helper: pid, client, end };
  };

  // A command that does not catch SIGTERM dies of it, and so does its client.
  const term = await follow();
  term.client.kill('SIGTERM');
  assert.deepEqual(await term.end, { code: null, signal: 'SIGTERM' });
  await gone(term.helper, 'the helper that ran logs -f ended with it');

  // SIGKILL cannot be passed on: the helper's watch sees the client gone.
  const killed = await follow();
  killed.client.kill('SIGKILL');
  await killed.end;
  await gone(killed.helper, 'the helper whose client was killed');

  // Ctrl-Z stops the helper with its client; killed while stopped, it still goes.
  const stopped = await follow();
  stopped.client.kill('SIGTSTP');
  const state = (pid: number) => readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1]![0];
  for (let i = 0; i < 100 && state(stopped.helper) !== 'T'; i++) await sleep(20);
  assert.equal(state(stopped.helper), 'T', 'the helper is stopped');
  assert.equal(state(stopped.client.pid!), 'T', 'the client is stopped');
  stopped.client.kill('SIGKILL');
  await stopped.end;
  await gone(stopped.helper, 'the stopped helper whose client was killed');
  assert.equal(berth(dir, ['rm', '-f', 'sig-logs']).code, 0);
});

test('a caller in another world gets a helper of its own; a peer that differs from the helper is refused', async () => {
  const dir = helperDir();
  berth(dir, ['version']);
  const plain = await waiting(dir);
  // A lower soft limit on descriptors is no other world: Node raises it to the hard limit as it starts.
  const hard = spawnSync('sh', ['-c', 'ulimit -Hn'], { encoding: 'utf8' }).stdout.trim();
  const low = spawnSync('sh', ['-c', `ulimit -Sn 256; exec ${BERTH_CLI} version --format '{{.Client.Version}}'`], { env: { ...d.env(), BERTH_CLI_HELPER_DIR: dir }, encoding: 'utf8' });
  assert.equal(low.status, 0, low.stderr);
  await gone(plain, `the helper ran the command of a caller whose soft limit is 256 (hard ${hard})`);
  const plainAgain = await waiting(dir);
  // Another priority (and so another key): a fresh process, then a helper of its own.
  const niced = spawnSync('nice', ['-n', '5', BERTH_CLI, 'version', '--format', '{{.Client.Version}}'], { env: { ...d.env(), BERTH_CLI_HELPER_DIR: dir }, encoding: 'utf8' });
  assert.equal(niced.status, 0, niced.stderr);
  for (let i = 0; i < 200 && sockets(dir).length < 2; i++) await sleep(25);
  assert.equal(sockets(dir).length, 2, 'a second helper for the niced caller');
  assert.ok(processAlive(plainAgain), 'the plain caller\'s helper was not used');

  // A peer with no_new_privs set connects to the plain helper's socket and
  // sends a well-formed request: the helper drops it and keeps waiting.
  const sock = join(dir, sockets(dir).find((f) => readFileSync(join(dir, f.replace(/\.sock$/, '.lock')), 'utf8').trim() === String(plainAgain))!);
  const py = [
    'import os, socket, struct, sys',
    's = socket.socket(socket.AF_UNIX); s.connect(sys.argv[1])',
    "args = b'version\\0'; env = b'A=b\\0'",
    "body = struct.pack('I', 1) + args + struct.pack('I', 1) + env + struct.pack('I', 0o22)",
    "msg = struct.pack('I', len(body)) + body",
    "socket.send_fds(s, [msg], [0, 1, 2, os.open('.', os.O_PATH)])",
    'try:',
    "    print('answer', s.recv(1))",
    'except ConnectionResetError:',
    "    print('answer', b'')",
  ].join('\n');
  const r = spawnSync('setpriv', ['--no-new-privs', 'python3', '-c', py, sock], { encoding: 'utf8', timeout: 10_000 });
  assert.equal(r.stdout.trim(), "answer b''", r.stderr);
  assert.ok(processAlive(plainAgain), 'the helper is still waiting');
  // The same request from an ordinary peer is taken: the check is what refused it.
  const ok = spawnSync('python3', ['-c', py, sock], { encoding: 'utf8', timeout: 10_000 });
  assert.equal(ok.stdout.split('\n')[0], "answer b'A'", ok.stderr);
  await gone(plainAgain, 'the helper served the ordinary peer');
});

test('several commands at once all finish, whichever of them the helper takes', async () => {
  const dir = helperDir();
  berth(dir, ['version']);
  await waiting(dir);
  const runs = Array.from({ length: 4 }, (_, i) => spawnBerth(dir, ['run', '--rm', 'busybox', 'echo', `n${i}`]));
  const outs = await Promise.all(runs.map(async (p) => {
    let out = '';
    p.stdout!.on('data', (b: Buffer) => { out += b.toString(); });
    const end = await exited(p);
    return { ...end, out };
  }));
  assert.deepEqual(outs.map((o) => o.out).sort(), ['n0\n', 'n1\n', 'n2\n', 'n3\n']);
  assert.ok(outs.every((o) => o.code === 0));
});

test('without a usable helper the command runs in a fresh process', async () => {
  // Turned off: nothing waits afterwards.
  const off = helperDir();
  assert.equal(berth(off, ['version'], { env: { BERTH_CLI_HELPER: 'off' } }).code, 0);
  await sleep(500);
  assert.deepEqual(sockets(off), []);

  // A helper that died leaves its socket: the next command runs anyway and starts a new one.
  const dir = helperDir();
  berth(dir, ['version']);
  const dead = await waiting(dir);
  process.kill(dead, 'SIGKILL');
  await gone(dead, 'killed');
  assert.equal(sockets(dir).length, 1, 'the dead helper left its socket');
  const r = berth(dir, ['run', '--rm', 'busybox', 'echo', 'still']);
  assert.equal(r.stdout, 'still\n', r.stderr);
  assert.notEqual(await waiting(dir), dead);

  // A directory others may enter is not used.
  const open = helperDir();
  mkdirSync(open, { mode: 0o755 });
  assert.equal(berth(open, ['version']).code, 0);
  await sleep(500);
  assert.deepEqual(readdirSync(open), []);

  // Closed stdio cannot be handed over.
  const closed = spawnSync('sh', ['-c', `exec <&-; exec ${BERTH_CLI} version --format '{{.Client.Version}}'`], { env: { ...d.env(), BERTH_CLI_HELPER_DIR: dir }, encoding: 'utf8' });
  assert.equal(closed.status, 0, closed.stderr);
  assert.match(closed.stdout, /^\d+\.\d+\.\d+\n$/);
});

test('a helper ends when idle, when its directory is removed, and when the CLI is rebuilt', async () => {
  const idle = helperDir();
  berth(idle, ['version'], { env: { BERTH_CLI_HELPER_IDLE: '1' } });
  const h1 = await waiting(idle);
  await gone(h1, 'idle helper');
  assert.deepEqual(readdirSync(idle), [], 'an idle helper removes its socket and lock');

  // Told to end while waiting, a helper takes its socket and lock file with it.
  const ended = helperDir();
  berth(ended, ['version']);
  const h4 = await waiting(ended);
  process.kill(h4, 'SIGTERM');
  await gone(h4, 'helper sent SIGTERM');
  assert.deepEqual(readdirSync(ended), []);

  const removed = helperDir();
  berth(removed, ['version']);
  const h2 = await waiting(removed);
  spawnSync('rm', ['-rf', removed]);
  await gone(h2, 'helper whose directory was removed');

  // A copy of the CLI's files, so that "rebuilding" it touches nothing else.
  const copy = join(d.dir, 'checkout');
  for (const sub of ['dist', 'native/build', 'node_modules/.bin']) mkdirSync(join(copy, sub), { recursive: true });
  for (const f of ['dist/berth.cjs', 'dist/berth-cli.cjs', 'native/build/berth-cli', 'native/build/berth-cli-watch', 'native/build/berth-cli-serve.so', 'native/build/berth-exit.so']) copyFileSync(join(ROOT, f), join(copy, f));
  spawnSync('chmod', ['+x', join(copy, 'native/build/berth-cli'), join(copy, 'native/build/berth-cli-watch')]);
  symlinkSync(join(ROOT, 'node_modules/.bin/node'), join(copy, 'node_modules/.bin/node'));
  const rebuilt = helperDir();
  const env = { ...d.env(), BERTH_CLI_HELPER_DIR: rebuilt };
  assert.equal(spawnSync(join(copy, 'native/build/berth-cli'), ['version'], { env }).status, 0);
  const h3 = await waiting(rebuilt);
  const later = new Date(Date.now() + 5000);
  utimesSync(join(copy, 'dist/berth-cli.cjs'), later, later);
  await gone(h3, 'helper of a rebuilt CLI');
});
