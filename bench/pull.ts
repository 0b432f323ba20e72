/**
 * Time to pull a ~200 MB Debian image from a local registry (Debian's
 * docker-registry on loopback): berth CLI and docker CLI against berthd,
 * and docker CLI against Docker Engine (dockerd started privately, the
 * registry being on 127.0.0.0/8 and so insecure by default, also listed with
 * --insecure-registry). Each round removes the image first, so every pull
 * downloads, verifies and extracts all of it. Prints medians and ratios.
 *
 * The image is `debootstrap --variant=minbase bookworm` from the machine's
 * apt mirror as debootstrap leaves it (about 200 MB, its downloaded .debs
 * included), made once into .cache/bench-debian.tar. When debootstrap cannot reach the mirror the
 * rootfs is built from /usr of this machine instead (said so in the output).
 *
 *   node_modules/.bin/node bench/pull.ts [rounds]
 */
import { spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { BenchBerthd, BenchDockerd, ROOT, median, mean, timeMs } from './lib.ts';
import { TestRegistry } from '../test/helpers/registry.ts';

const rounds = Number(process.argv[2] ?? 3);
const cache = join(ROOT, '.cache');
const rootfs = join(cache, 'bench-debian-rootfs');
const tarPath = join(cache, 'bench-debian.tar');

function aptMirror(): string {
  for (const f of ['/etc/apt/sources.list.d/debian.sources', '/etc/apt/sources.list']) {
    if (!existsSync(f)) continue;
    const text = readFileSync(f, 'utf8');
    const m = /^URIs:\s*(\S+)/m.exec(text) ?? /^deb\s+(?:\[[^\]]*\]\s+)?(\S+)\s+bookworm/m.exec(text);
    if (m) return m[1]!;
  }
  return 'http://deb.debian.org/debian';
}

/** The image's rootfs as a tar, made once. */
function prepareTar(): string {
  if (existsSync(tarPath)) return readFileSync(`${tarPath}.source`, 'utf8').trim();
  let source: string;
  const mirror = aptMirror();
  // A finished debootstrap has removed its own /debootstrap work directory.
  const done = existsSync(join(rootfs, 'usr', 'bin', 'apt')) && !existsSync(join(rootfs, 'debootstrap'));
  let status = 0;
  if (!done) {
    process.stderr.write(`debootstrap --variant=minbase bookworm from ${mirror}\n`);
    rmSync(rootfs, { recursive: true, force: true });
    status = spawnSync('debootstrap', ['--variant=minbase', 'bookworm', rootfs, mirror], { stdio: ['ignore', 'ignore', 'inherit'] }).status ?? 1;
  }
  if (status === 0) {
    source = `debootstrap --variant=minbase bookworm from ${mirror}`;
  } else {
    process.stderr.write('debootstrap failed: building the rootfs from this machine\'s /usr instead\n');
    rmSync(rootfs, { recursive: true, force: true });
    spawnSync('mkdir', ['-p', rootfs]);
    spawnSync('cp', ['-a', '/usr', '/etc', rootfs]);
    source = "a copy of this machine's /usr and /etc (debootstrap could not reach the mirror)";
  }
  // Device nodes stay out, as in any image: the runtime provides /dev.
  const t = spawnSync('tar', ['--numeric-owner', '--exclude=./dev/*', '-C', rootfs, '-cf', tarPath, '.'], { stdio: 'inherit' });
  if (t.status !== 0) throw new Error('tar failed');
  spawnSync('sh', ['-c', `printf '%s\\n' "$1" > "$2"`, 'sh', source, `${tarPath}.source`]);
  return source;
}

const source = prepareTar();
const regDir = mkdtempSync('/tmp/berth-bench-registry-');
const reg = new TestRegistry(regDir);
const berth = new BenchBerthd();
const dockerd = BenchDockerd.available() ? new BenchDockerd() : undefined;
const berthBin = join(ROOT, 'bin', 'berth');
const samples: Record<string, number[]> = { berthCli: [], dockerCliOnBerthd: [], dockerEngine: [] };
let compressed = 0;

function run(cmd: string, args: string[], env: NodeJS.ProcessEnv): string {
  const r = spawnSync(cmd, args, { env, encoding: 'utf8', maxBuffer: 64 << 20 });
  if (r.status !== 0) throw new Error(`${cmd} ${args.join(' ')}: ${r.stderr}`);
  return r.stdout;
}

try {
  await reg.start();
  const ref = `${reg.host}/bench/debian:bookworm`;
  process.stderr.write('starting berthd\n');
  await berth.start();
  if (dockerd) {
    process.stderr.write('starting Docker Engine\n');
    await dockerd.start(['--insecure-registry', reg.host]);
  }
  process.stderr.write(`importing and pushing ${(statSync(tarPath).size / 1e6).toFixed(0)} MB\n`);
  run(berthBin, ['import', '-c', 'CMD ["bash"]', tarPath, ref], berth.env);
  run(berthBin, ['push', ref], berth.env);
  const manifest = JSON.parse(run(berthBin, ['manifest', 'inspect', ref], berth.env)) as { layers: { size: number }[] };
  compressed = manifest.layers.reduce((a, l) => a + l.size, 0);
  run(berthBin, ['rmi', ref], berth.env);

  const clean = (bin: string, env: NodeJS.ProcessEnv): void => {
    spawnSync(bin, ['rmi', '-f', ref], { env, stdio: 'ignore' });
  };
  // One warm-up each: page cache, compile cache, connection set-up.
  clean(berthBin, berth.env);
  timeMs(berthBin, ['pull', '-q', ref], berth.env);
  if (dockerd) {
    timeMs('docker', ['pull', '-q', ref], dockerd.env);
    clean('docker', dockerd.env);
  }
  process.stderr.write('measuring\n');
  for (let i = 0; i < rounds; i++) {
    clean(berthBin, berth.env);
    samples.berthCli!.push(timeMs(berthBin, ['pull', '-q', ref], berth.env));
    clean(berthBin, berth.env);
    samples.dockerCliOnBerthd!.push(timeMs('docker', ['pull', '-q', ref], berth.env));
    if (dockerd) {
      clean('docker', dockerd.env);
      samples.dockerEngine!.push(timeMs('docker', ['pull', '-q', ref], dockerd.env));
    }
  }
} finally {
  berth.stop();
  await dockerd?.stop();
  await reg.cleanup();
}

const row = (name: string, xs: number[]): string => {
  if (!xs.length) return `${name.padEnd(30)} (not measured: Docker Engine is not installed)`;
  return `${name.padEnd(30)} median ${(median(xs) / 1000).toFixed(2).padStart(6)} s  mean ${(mean(xs) / 1000).toFixed(2).padStart(6)} s`;
};
console.log(`pull of a ${(statSync(tarPath).size / 1e6).toFixed(0)} MB image (${(compressed / 1e6).toFixed(0)} MB gzip) from docker-registry on loopback, ${rounds} alternated rounds`);
console.log(`image: ${source}`);
console.log(row('berth CLI -> berthd', samples.berthCli!));
console.log(row('docker CLI -> berthd', samples.dockerCliOnBerthd!));
console.log(row('docker CLI -> Docker Engine', samples.dockerEngine!));
if (samples.dockerEngine!.length) {
  console.log(`Docker Engine / berthd (berth CLI): ${(median(samples.dockerEngine!) / median(samples.berthCli!)).toFixed(2)}x`);
  console.log(`Docker Engine / berthd (docker CLI): ${(median(samples.dockerEngine!) / median(samples.dockerCliOnBerthd!)).toFixed(2)}x`);
}
