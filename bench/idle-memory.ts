/**
 * Memory per idle container: N containers running `sleep`, and what the
 * engine spends on them beyond the containers' own processes — berth's
 * monitors plus berthd's growth, against Docker Engine's containerd-shims
 * plus dockerd's and containerd's growth, measured in the same run.
 * RSS counts shared pages once per process; PSS splits them, which is the
 * fairer figure for many copies of one small binary.
 *
 *   node_modules/.bin/node bench/idle-memory.ts [containers]
 */
import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { spawnSync } from 'node:child_process';
import { BenchBerthd, BenchDockerd, ROOT } from './lib.ts';

const N = Number(process.argv[2] ?? 100);

interface Mem {
  rss: number;
  pss: number;
}

/** RSS and PSS of one process in KiB (smaps_rollup; 0 if it is gone). */
function memOf(pid: number): Mem {
  try {
    const text = readFileSync(`/proc/${pid}/smaps_rollup`, 'utf8');
    const kb = (k: string) => Number(new RegExp(`^${k}:\\s+(\\d+) kB`, 'm').exec(text)?.[1] ?? 0);
    return { rss: kb('Rss'), pss: kb('Pss') };
  } catch {
    return { rss: 0, pss: 0 };
  }
}

function sum(ms: Mem[]): Mem {
  return ms.reduce((a, b) => ({ rss: a.rss + b.rss, pss: a.pss + b.pss }), { rss: 0, pss: 0 });
}

/** Processes whose command line mentions `needle` and whose program name matches `name`. */
function processes(needle: string, name: RegExp): number[] {
  const out: number[] = [];
  for (const p of readdirSync('/proc')) {
    if (!/^\d+$/.test(p)) continue;
    try {
      const argv = readFileSync(`/proc/${p}/cmdline`, 'utf8').split('\0');
      if (argv.join(' ').includes(needle) && name.test(argv[0] ?? '')) out.push(Number(p));
    } catch {
      // exited
    }
  }
  return out;
}

function pidFile(path: string): number {
  return Number(readFileSync(path, 'utf8').trim());
}

function run(bin: string, args: string[], env: NodeJS.ProcessEnv): string {
  const r = spawnSync(bin, args, { env, encoding: 'utf8' });
  if (r.status !== 0) throw new Error(`${bin} ${args.join(' ')}: ${r.stderr}`);
  return r.stdout;
}

async function settle(): Promise<void> {
  await new Promise((r) => setTimeout(r, 3000));
}

/** Engines to stop if the benchmark is interrupted (a signal skips `finally`). */
const running = new Set<() => Promise<void> | void>();
for (const sig of ['SIGINT', 'SIGTERM'] as const) {
  process.once(sig, () => {
    void Promise.all([...running].map((stop) => stop())).finally(() => process.exit(130));
  });
}

const kib = (n: number) => `${(n / 1024).toFixed(2)} MiB`;
const results: string[] = [];

async function measureBerth(): Promise<void> {
  const b = new BenchBerthd();
  const stop = () => b.stop();
  running.add(stop);
  try {
    process.stderr.write('berth: starting berthd\n');
    await b.start();
    const berth = join(ROOT, 'bin', 'berth');
    const berthd = pidFile(join(b.dir, 'exec', 'berthd.pid'));
    // One container started and removed first, so one-time costs (code paths, caches) are not counted as growth.
    run(berth, ['run', '--rm', 'busybox', 'true'], b.env);
    await settle();
    const base = memOf(berthd);
    process.stderr.write(`berth: starting ${N} containers\n`);
    for (let i = 0; i < N; i++) run(berth, ['run', '-d', 'busybox', 'sleep', '100000'], b.env);
    await settle();
    const monitors = processes(b.dir, /berth-monitor$/);
    const mon = sum(monitors.map(memOf));
    const after = memOf(berthd);
    const runc = processes(b.dir, /runc$/).length;
    const growth = { rss: after.rss - base.rss, pss: after.pss - base.pss };
    results.push(
      `berth: ${N} idle containers, ${monitors.length} monitors, ${runc} runc processes left running`,
      `  monitors      RSS ${kib(mon.rss)} (${kib(mon.rss / N)} each)   PSS ${kib(mon.pss)} (${kib(mon.pss / N)} each)`,
      `  berthd growth RSS ${kib(growth.rss)}   PSS ${kib(growth.pss)}`,
      `  per container RSS ${kib((mon.rss + growth.rss) / N)}   PSS ${kib((mon.pss + growth.pss) / N)}`,
    );
  } finally {
    running.delete(stop);
    b.stop();
  }
}

async function measureDocker(): Promise<void> {
  if (!BenchDockerd.available()) {
    results.push('Docker Engine: not installed, not measured');
    return;
  }
  const d = new BenchDockerd();
  const stop = () => d.stop();
  running.add(stop);
  try {
    process.stderr.write('docker: starting dockerd\n');
    await d.start();
    const dockerd = pidFile(join(d.dir, 'docker.pid'));
    const containerd = () => processes(d.dir, /(^|\/)containerd$/);
    run('docker', ['run', '--rm', 'busybox', 'true'], d.env);
    await settle();
    const base = sum([dockerd, ...containerd()].map(memOf));
    process.stderr.write(`docker: starting ${N} containers\n`);
    for (let i = 0; i < N; i++) run('docker', ['run', '-d', 'busybox', 'sleep', '100000'], d.env);
    await settle();
    const shims = processes(d.dir, /containerd-shim/);
    const shim = sum(shims.map(memOf));
    const after = sum([dockerd, ...containerd()].map(memOf));
    const growth = { rss: after.rss - base.rss, pss: after.pss - base.pss };
    results.push(
      `Docker Engine: ${N} idle containers, ${shims.length} containerd-shims`,
      `  shims         RSS ${kib(shim.rss)} (${kib(shim.rss / N)} each)   PSS ${kib(shim.pss)} (${kib(shim.pss / N)} each)`,
      `  dockerd+containerd growth RSS ${kib(growth.rss)}   PSS ${kib(growth.pss)}`,
      `  per container RSS ${kib((shim.rss + growth.rss) / N)}   PSS ${kib((shim.pss + growth.pss) / N)}`,
    );
  } finally {
    running.delete(stop);
    await d.stop();
  }
}

await measureBerth();
await measureDocker();
console.log(`idle memory per container (${N} containers running sleep)`);
for (const l of results) console.log(l);
