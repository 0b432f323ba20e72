/**
 * What networking costs. (1) `run --rm busybox true` with --network none
 * against the default bridge (and a user network), for berth and Docker
 * Engine, rounds alternated so all see the same load. (2) Throughput of a
 * published TCP port on loopback: the host writes into a container that
 * discards, through 127.0.0.1:<published port>, and straight to the
 * container's address as the baseline without NAT.
 *
 *   node_modules/.bin/node bench/network.ts [rounds] [megabytes]
 */
import { connect } from 'node:net';
import { spawnSync } from 'node:child_process';
import { join } from 'node:path';
import { BenchBerthd, BenchDockerd, ROOT, mean, median, waitFor } from './lib.ts';

const rounds = Number(process.argv[2] ?? 20);
const megabytes = Number(process.argv[3] ?? 512);
const berth = new BenchBerthd();
// Docker Engine gets a bridge and subnet of its own (10.250.x.0/24, x from the pid), removed at the end.
const dockerd = BenchDockerd.available() ? new BenchDockerd({ network: { subnet24: `10.250.${process.pid % 250}.0/24` } }) : undefined;
const berthBin = join(ROOT, 'bin', 'berth');
const lat: Record<string, number[]> = {};
const tput: Record<string, number[]> = {};

const failures: Record<string, number> = {};
const lastError: Record<string, string> = {};

/** Time one command; a run that fails or hangs (20 s) is counted, not timed. */
function timeMs(cmd: string, args: string[], env: NodeJS.ProcessEnv, name = ''): number | undefined {
  const t0 = process.hrtime.bigint();
  const r = spawnSync(cmd, args, { env, stdio: ['ignore', 'ignore', 'pipe'], timeout: 20_000 });
  if (r.status !== 0) {
    failures[name] = (failures[name] ?? 0) + 1;
    lastError[name] = r.error ? r.error.message : `exit ${r.status}: ${r.stderr.toString().trim().slice(0, 200)}`;
    return undefined;
  }
  return Number(process.hrtime.bigint() - t0) / 1e6;
}

function cli(bin: string, env: NodeJS.ProcessEnv, args: string[]): string {
  const r = spawnSync(bin, args, { env, encoding: 'utf8' });
  if (r.status !== 0) throw new Error(`${bin} ${args.join(' ')}: ${r.stderr}`);
  return r.stdout.trim();
}

/** Send `mb` megabytes to host:port and wait for the receiver to close; MB/s. */
function blast(host: string, port: number, mb: number): Promise<number> {
  return new Promise((resolve, reject) => {
    const chunk = Buffer.alloc(1024 * 1024, 120);
    const s = connect({ host, port });
    let t0 = 0n;
    let sent = 0;
    s.on('error', reject);
    const pump = () => {
      while (sent < mb) {
        sent++;
        if (!s.write(chunk)) return void s.once('drain', pump);
      }
      s.end();
    };
    s.on('connect', () => { t0 = process.hrtime.bigint(); pump(); });
    s.on('close', () => resolve(mb / (Number(process.hrtime.bigint() - t0) / 1e9)));
    s.resume();
  });
}

async function sinkReady(host: string, port: number): Promise<void> {
  await waitFor(() => spawnSync('bash', ['-c', `exec 3<>/dev/tcp/${host}/${port} && exec 3>&-`]).status === 0, 10000, `sink at ${host}:${port}`);
  await new Promise((r) => setTimeout(r, 200));
}

// nc hands the connection to `cat`, which reads it to the end (nc alone would stop at its own stdin's EOF).
function measureLatency(cases: Array<[string, string, NodeJS.ProcessEnv, string[]]>): void {
  for (const [, bin, env, extra] of cases) for (let i = 0; i < 2; i++) timeMs(bin, ['run', '--rm', ...extra, 'busybox', 'true'], env);
  for (let i = 0; i < rounds; i++) {
    for (const [name, bin, env, extra] of cases) {
      const t = timeMs(bin, ['run', '--rm', ...extra, 'busybox', 'true'], env, name);
      if (t !== undefined) (lat[name] ??= []).push(t);
    }
  }
}

const SINK = ['sh', '-c', "while true; do nc -l -p 5001 -e sh -c 'cat > /dev/null'; done"];

try {
  process.stderr.write('starting berthd\n');
  await berth.start();
  if (dockerd) {
    process.stderr.write('starting Docker Engine (own bridge, iptables on)\n');
    await dockerd.start();
  }
  cli(berthBin, berth.env, ['network', 'create', 'benchnet']);
  if (dockerd) cli('docker', dockerd.env, ['network', 'create', '--subnet', `10.251.${process.pid % 250}.0/24`, 'benchnet']);
  const berthCases: Array<[string, string, NodeJS.ProcessEnv, string[]]> = [
    ['berth --network none', berthBin, berth.env, ['--network', 'none']],
    ['berth default bridge', berthBin, berth.env, []],
    ['berth user network', berthBin, berth.env, ['--network', 'benchnet']],
    ['berth bridge + -p', berthBin, berth.env, ['-p', '127.0.0.1::80']],
  ];
  const dockerCases: Array<[string, string, NodeJS.ProcessEnv, string[]]> = [];
  if (dockerd) {
    dockerCases.push(
      ['docker --network none', 'docker', dockerd.env, ['--network', 'none']],
      ['docker default bridge', 'docker', dockerd.env, []],
      ['docker user network', 'docker', dockerd.env, ['--network', 'benchnet']],
      ['docker bridge + -p', 'docker', dockerd.env, ['-p', '127.0.0.1::80']],
    );
  }
  process.stderr.write('measuring berth run --rm\n');
  measureLatency(berthCases);

  process.stderr.write('measuring published-port throughput\n');
  const engines: Array<[string, string, NodeJS.ProcessEnv]> = [['berth', berthBin, berth.env]];
  if (dockerd) engines.push(['docker', 'docker', dockerd.env]);
  for (const [name, bin, env] of engines) {
    const id = cli(bin, env, ['run', '-d', '-p', '127.0.0.1::5001', 'busybox', ...SINK]);
    const port = Number(/:(\d+)$/.exec(cli(bin, env, ['port', id, '5001/tcp']).split('\n')[0]!)?.[1]);
    const ip = cli(bin, env, ['inspect', '-f', '{{.NetworkSettings.IPAddress}}', id]);
    await sinkReady('127.0.0.1', port);
    for (let i = 0; i < 3; i++) {
      (tput[`${name}: 127.0.0.1:published`] ??= []).push(await blast('127.0.0.1', port, megabytes));
      await sinkReady('127.0.0.1', port);
      (tput[`${name}: container address`] ??= []).push(await blast(ip, 5001, megabytes));
      await sinkReady(ip, 5001);
    }
    cli(bin, env, ['rm', '-f', id]);
  }
  spawnSync(berthBin, ['network', 'rm', 'benchnet'], { env: berth.env });
  await berth.stop();
  // Docker Engine's run --rm hangs now and then on this machine while berthd runs beside it
  // (both program iptables); its latency is measured alone, after berthd has stopped.
  process.stderr.write('measuring Docker Engine run --rm\n');
  measureLatency(dockerCases);
} finally {
  spawnSync(berthBin, ['network', 'rm', 'benchnet'], { env: berth.env });
  await berth.stop();
  if (dockerd) spawnSync('docker', ['network', 'rm', 'benchnet'], { env: dockerd.env });
  await dockerd?.stop();
}

const none = (engine: string) => median(lat[`${engine} --network none`] ?? [0]);
console.log(`run --rm busybox true, ${rounds} rounds, cases alternated within each engine (median, mean, added over --network none)`);
for (const [name, xs] of Object.entries(lat)) {
  const engine = name.split(' ')[0]!;
  console.log(`${name.padEnd(26)} median ${median(xs).toFixed(1).padStart(6)} ms  mean ${mean(xs).toFixed(1).padStart(6)} ms  +${(median(xs) - none(engine)).toFixed(1)} ms`);
}
console.log(`\npublished TCP port, ${megabytes} MB per transfer into busybox nc, best of 3`);
for (const [name, xs] of Object.entries(tput)) console.log(`${name.padEnd(34)} ${Math.max(...xs).toFixed(0).padStart(6)} MB/s  (median ${median(xs).toFixed(0)})`);
if (!dockerd) console.log('(Docker Engine is not installed: berth only)');
for (const [name, n] of Object.entries(failures)) if (name) console.log(`${name}: ${n} run(s) failed or hung and were not timed (last: ${lastError[name]})`);
