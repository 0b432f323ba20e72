/**
 * `run --rm busybox true`: berth CLI and docker CLI against berthd, Docker
 * Engine (when installed), and the runc floor, alternated round by round so
 * that all see the same machine load. Prints medians and ratios.
 *
 *   node_modules/.bin/node bench/run-latency.ts [rounds]
 */
import { join } from 'node:path';
import { BenchBerthd, BenchDockerd, Hung, RuncFloor, ROOT, mean, median, timeMs } from './lib.ts';

const rounds = Number(process.argv[2] ?? 30);
const berth = new BenchBerthd();
const floor = new RuncFloor();
const dockerd = BenchDockerd.available() ? new BenchDockerd() : undefined;
let dockerHangs = 0;
const samples: Record<string, number[]> = { floor: [], berthCli: [], berthCliFresh: [], dockerCliOnBerthd: [], dockerEngine: [] };

try {
  process.stderr.write('starting berthd\n');
  await berth.start();
  if (dockerd) {
    process.stderr.write('starting Docker Engine\n');
    await dockerd.start();
  }
  process.stderr.write('measuring\n');
  const berthBin = join(ROOT, 'bin', 'berth');
  const args = ['run', '--rm', 'busybox', 'true'];
  // The berth CLI as it normally runs (its helper process waiting), and in a
  // fresh Node process every time (no helper).
  const berthCli = () => {
    const t = timeMs(berthBin, args, berth.env);
    berth.waitForCliHelper();
    return t;
  };
  const fresh = { ...berth.env, BERTH_CLI_HELPER: 'off' };
  // Warm-up: page cache, compile cache, first-use costs.
  for (let i = 0; i < 3; i++) {
    floor.run();
    berthCli();
    timeMs(berthBin, args, fresh);
    timeMs('docker', args, berth.env);
    if (dockerd) try { timeMs('docker', args, dockerd.env, 20_000); } catch (err) { if (!(err instanceof Hung)) throw err; }
  }
  for (let i = 0; i < rounds; i++) {
    samples.floor!.push(floor.run());
    samples.berthCli!.push(berthCli());
    samples.berthCliFresh!.push(timeMs(berthBin, args, fresh));
    samples.dockerCliOnBerthd!.push(timeMs('docker', args, berth.env));
    if (dockerd) {
      // Docker Engine here now and then loses a container's exit and hangs
      // the run; such a round is counted apart rather than timed.
      try {
        samples.dockerEngine!.push(timeMs('docker', args, dockerd.env, 20_000));
      } catch (err) {
        if (!(err instanceof Hung)) throw err;
        dockerHangs++;
      }
    }
  }
} finally {
  await berth.stop();
  floor.cleanup();
  await dockerd?.stop();
}

const f = median(samples.floor!);
const row = (name: string, xs: number[]) => {
  if (!xs.length) return `${name.padEnd(34)} (not measured: Docker Engine is not installed)`;
  const m = median(xs);
  return `${name.padEnd(34)} median ${m.toFixed(1).padStart(6)} ms  mean ${mean(xs).toFixed(1).padStart(6)} ms  ${(m / f).toFixed(2)}x floor`;
};
console.log(`run --rm busybox true, ${rounds} alternated rounds`);
console.log(row('runc run (floor)', samples.floor!));
console.log(row('berth CLI -> berthd', samples.berthCli!));
console.log(row('berth CLI, no helper -> berthd', samples.berthCliFresh!));
console.log(row('docker CLI -> berthd', samples.dockerCliOnBerthd!));
console.log(row('docker CLI -> Docker Engine', samples.dockerEngine!));
if (dockerHangs) console.log(`Docker Engine hung in ${dockerHangs} of ${rounds} rounds (killed after 20 s, not counted)`);
if (samples.dockerEngine!.length) {
  console.log(`Docker Engine / berth CLI: ${(median(samples.dockerEngine!) / median(samples.berthCli!)).toFixed(2)}x`);
}
