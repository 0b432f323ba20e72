/**
 * Blob push and pull throughput on loopback: berth's registry against
 * Debian's docker-registry (distribution 2.8), both with filesystem storage
 * in a temporary directory, in the same run, alternated round by round.
 * curl is the client for both (streams files, no client-side hashing), so
 * the figures are the servers'. Prints MB/s medians and berth/distribution
 * ratios.
 *
 *   node_modules/.bin/node bench/registry.ts [size-MB] [rounds] [chunk-MB]
 */
import { spawn, spawnSync } from 'node:child_process';
import type { ChildProcess } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import { createReadStream, existsSync, mkdtempSync, openSync, closeSync, readFileSync, rmSync, writeFileSync, writeSync } from 'node:fs';
import { join } from 'node:path';
import { ROOT, median, waitFor } from './lib.ts';

const sizeMB = Number(process.argv[2] ?? 256);
const rounds = Number(process.argv[3] ?? 3);
const chunkMB = Number(process.argv[4] ?? 16);
// Storage on tmpfs by default (BENCH_DIR to choose): the figures are then the
// servers' and loopback's, not the disk's write-back.
const dir = mkdtempSync(join(process.env.BENCH_DIR ?? (existsSync('/dev/shm') ? '/dev/shm' : '/tmp'), 'berth-bench-registry-'));
const blobPath = join(dir, 'blob');

function freePortish(): number {
  return 20000 + Math.floor(Math.random() * 20000);
}

function curl(args: string[]): string {
  const r = spawnSync('curl', ['-sS', '--fail-with-body', ...args], { encoding: 'utf8', maxBuffer: 1 << 20 });
  if (r.status !== 0) throw new Error(`curl ${args.join(' ')}: ${r.stderr}${r.stdout}`);
  return r.stdout;
}

function location(headers: string, base: string): string {
  const m = /^location:\s*(\S+)/im.exec(headers);
  if (!m) throw new Error(`no Location in:\n${headers}`);
  return new URL(m[1]!, base).toString();
}

async function sha256File(path: string): Promise<string> {
  const h = createHash('sha256');
  for await (const c of createReadStream(path, { highWaterMark: 1 << 20 })) h.update(c as Buffer);
  return `sha256:${h.digest('hex')}`;
}

interface Target {
  name: string;
  base: string;
  proc: ChildProcess;
}

async function startBerth(): Promise<Target> {
  const proc = spawn(join(ROOT, 'bin', 'berth'), ['registry', 'serve', '--addr', '127.0.0.1:0', '--root', join(dir, 'berth')], { stdio: ['ignore', 'pipe', 'inherit'] });
  let out = '';
  proc.stdout!.on('data', (d: Buffer) => { out += d.toString(); });
  await waitFor(() => /listening on (\S+)/.test(out), 15000, 'berth registry');
  return { name: 'berth', base: /listening on (\S+)/.exec(out)![1]!, proc };
}

async function startDistribution(): Promise<Target> {
  const port = freePortish();
  const config = join(dir, 'distribution.yml');
  writeFileSync(config, [
    'version: 0.1',
    'log:',
    '  level: error',
    '  accesslog:',
    '    disabled: true',
    'storage:',
    '  filesystem:',
    `    rootdirectory: ${join(dir, 'distribution')}`,
    '  delete:',
    '    enabled: true',
    'http:',
    `  addr: 127.0.0.1:${port}`,
    '',
  ].join('\n'));
  const proc = spawn('docker-registry', ['serve', config], { stdio: 'ignore' });
  const base = `http://127.0.0.1:${port}`;
  await waitFor(() => spawnSync('curl', ['-sf', `${base}/v2/`]).status === 0, 15000, 'docker-registry');
  return { name: 'distribution', base, proc };
}

/** Make the blob distinct for this round (first bytes) and return its digest. */
async function freshBlob(): Promise<string> {
  const fd = openSync(blobPath, 'r+');
  writeSync(fd, randomBytes(32), 0, 32, 0);
  closeSync(fd);
  return sha256File(blobPath);
}

/** CPU seconds (user + system) a process and its reaped children (berth-sendfile) have used so far, from /proc. */
function cpuSeconds(pid: number): number {
  const fields = readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1]!.split(' ');
  return (Number(fields[11]) + Number(fields[12]) + Number(fields[13]) + Number(fields[14])) / 100;
}

let current: Target | undefined;
const cpu: Record<string, Record<string, number[]>> = {};

/** Wall seconds of `fn`; the server's CPU seconds are recorded under `kind`. */
function timed(fn: () => void, kind = ''): number {
  const pid = current!.proc.pid!;
  const c0 = cpuSeconds(pid);
  const t0 = process.hrtime.bigint();
  fn();
  const t = Number(process.hrtime.bigint() - t0) / 1e9;
  ((cpu[current!.name] ??= {})[kind] ??= []).push(cpuSeconds(pid) - c0);
  return t;
}

function pushMonolithic(t: Target, repo: string, digest: string): number {
  return timed(() => {
    const loc = location(curl(['-X', 'POST', '-D', '-', '-o', '/dev/null', `${t.base}/v2/${repo}/blobs/uploads/`]), t.base);
    const u = new URL(loc);
    u.searchParams.set('digest', digest);
    curl(['-X', 'PUT', '-H', 'Content-Type: application/octet-stream', '-T', blobPath, '-o', '/dev/null', u.toString()]);
  }, 'monolithic');
}

function pushChunked(t: Target, repo: string, digest: string, chunks: string[], chunkSize: number): number {
  return timed(() => {
    let loc = location(curl(['-X', 'POST', '-D', '-', '-o', '/dev/null', `${t.base}/v2/${repo}/blobs/uploads/`]), t.base);
    let off = 0;
    for (const c of chunks) {
      const len = Math.min(chunkSize, sizeMB * 1024 * 1024 - off);
      loc = location(curl(['-X', 'PATCH', '-D', '-', '-o', '/dev/null', '-H', 'Content-Type: application/octet-stream', '-H', `Content-Range: ${off}-${off + len - 1}`, '-T', c, loc]), t.base);
      off += len;
    }
    const u = new URL(loc);
    u.searchParams.set('digest', digest);
    curl(['-X', 'PUT', '-o', '/dev/null', u.toString()]);
  }, 'chunked');
}

function pull(t: Target, repo: string, digest: string): number {
  return timed(() => curl(['-o', '/dev/null', `${t.base}/v2/${repo}/blobs/${digest}`]), 'pull');
}

const targets: Target[] = [];
try {
  process.stderr.write(`writing a ${sizeMB} MB random blob\n`);
  const fd = openSync(blobPath, 'w');
  const mb = randomBytes(1 << 20);
  for (let i = 0; i < sizeMB; i++) {
    writeSync(fd, randomBytes(64));
    writeSync(fd, mb, 0, mb.length - 64);
  }
  closeSync(fd);
  const chunkSize = chunkMB * 1024 * 1024;
  spawnSync('split', ['-b', String(chunkSize), '-d', '-a', '4', blobPath, join(dir, 'chunk.')]);
  process.stderr.write('starting the registries\n');
  targets.push(await startBerth(), await startDistribution());
  const results: Record<string, Record<string, number[]>> = {};
  for (const t of targets) results[t.name] = { monolithic: [], chunked: [], pull: [] };
  for (let r = 0; r < rounds + 1; r++) {
    for (const t of r % 2 ? [...targets].reverse() : targets) {
      current = t;
      const digest = await freshBlob();
      // The chunk files are cut from the blob as it was; refresh the first.
      spawnSync('split', ['-b', String(chunkSize), '-d', '-a', '4', blobPath, join(dir, 'chunk.')]);
      const chunks = spawnSync('sh', ['-c', `ls ${dir}/chunk.*`], { encoding: 'utf8' }).stdout.trim().split('\n');
      const mono = pushMonolithic(t, `bench/mono${r}`, digest);
      const pulled = pull(t, `bench/mono${r}`, digest);
      const digest2 = await freshBlob();
      spawnSync('split', ['-b', String(chunkSize), '-d', '-a', '4', blobPath, join(dir, 'chunk.')]);
      const chunked = pushChunked(t, `bench/chunked${r}`, digest2, chunks, chunkSize);
      if (r === 0) {
        // warm-up: forget its CPU samples too
        for (const k of Object.keys(cpu[t.name] ?? {})) cpu[t.name]![k] = [];
        continue;
      }
      results[t.name]!.monolithic!.push(sizeMB / mono);
      results[t.name]!.pull!.push(sizeMB / pulled);
      results[t.name]!.chunked!.push(sizeMB / chunked);
    }
  }
  console.log(`blob throughput on loopback, ${sizeMB} MB random blob, ${rounds} rounds (median MB/s), chunks of ${chunkMB} MB, client curl`);
  for (const kind of ['monolithic', 'chunked', 'pull']) {
    const b = median(results.berth![kind]!);
    const d = median(results.distribution![kind]!);
    console.log(`${(kind === 'pull' ? 'pull' : `push ${kind}`).padEnd(16)} berth ${b.toFixed(0).padStart(6)} MB/s   docker-registry ${d.toFixed(0).padStart(6)} MB/s   berth/docker-registry ${(b / d).toFixed(2)}x`);
    // Server CPU per GB moved: independent of what else the machine is doing.
    const bc = (median(cpu.berth![kind]!) * 1024) / sizeMB;
    const dc = (median(cpu.distribution![kind]!) * 1024) / sizeMB;
    console.log(`${''.padEnd(16)} server CPU s/GB: berth ${bc.toFixed(2)}  docker-registry ${dc.toFixed(2)}  docker-registry/berth ${(dc / bc).toFixed(2)}x`);
  }
} finally {
  for (const t of targets) t.proc.kill('SIGTERM');
  rmSync(dir, { recursive: true, force: true });
}
