/**
 * Build benchmark: a reference Dockerfile (a dozen steps: a directory COPY,
 * several RUNs, config instructions) built cold and then fully cached,
 * through berthd and through Docker Engine's classic builder (a private
 * dockerd, DOCKER_BUILDKIT=0) in the same run. Prints median times and ratios.
 *
 *   node_modules/.bin/node bench/build.ts [rounds]
 */
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { BenchBerthd, BenchDockerd, Hung, ROOT, median, timeMs } from './lib.ts';

const ROUNDS = Number(process.argv[2] ?? 5);

const DOCKERFILE = `FROM busybox
LABEL org.example.bench=build
ENV APP=/app MODE=bench
ARG VERSION=1.0
WORKDIR /app
COPY src/ /app/src/
RUN mkdir -p /app/out && ls -R src > /app/out/listing
RUN cat src/*.txt | wc -c > /app/out/size
RUN chmod -R go-w /app/out && touch /app/out/done
RUN echo "$VERSION" > /app/out/version
USER 1000
EXPOSE 8080
CMD ["cat", "/app/out/listing"]
`;

function makeContext(): string {
  const dir = mkdtempSync('/tmp/berth-bench-build-ctx-');
  writeFileSync(join(dir, 'Dockerfile'), DOCKERFILE);
  for (let i = 0; i < 20; i++) {
    const sub = join(dir, 'src', `pkg${i % 4}`);
    mkdirSync(sub, { recursive: true });
    writeFileSync(join(sub, `f${i}.txt`), `file ${i}\n`.repeat(50));
    writeFileSync(join(dir, 'src', `top${i}.txt`), `top ${i}\n`);
  }
  return dir;
}

interface Result { cold: number[]; cached: number[]; hung: number }

/** Rounds of (empty the cache, cold build, cached build); a build that hangs is killed after 60 s and counted apart. */
function measure(cmd: string, env: NodeJS.ProcessEnv, ctx: string, prune: () => void): Result {
  const r: Result = { cold: [], cached: [], hung: 0 };
  for (let i = 0; i < ROUNDS; i++) {
    try {
      prune();
      const cold = timeMs(cmd, ['build', '-t', 'bench:build', ctx], env, 60_000);
      const cached = timeMs(cmd, ['build', '-t', 'bench:build', ctx], env, 60_000);
      r.cold.push(cold);
      r.cached.push(cached);
    } catch (err) {
      if (!(err instanceof Hung)) throw err;
      r.hung++;
    }
  }
  return r;
}

const ctx = makeContext();
const berth = new BenchBerthd();
const berthBin = join(ROOT, 'bin', 'berth');
let dockerd: BenchDockerd | undefined;
const fmt = (x: number): string => `${x.toFixed(0).padStart(6)} ms`;
try {
  await berth.start();
  const benv = berth.env;
  const b = measure(berthBin, benv, ctx, () => timeMs(berthBin, ['builder', 'prune', '-f'], benv));
  const bd = measure('docker', { ...benv, DOCKER_BUILDKIT: '0' }, ctx, () => timeMs(berthBin, ['builder', 'prune', '-f'], benv));
  console.log(`build benchmark: ${DOCKERFILE.trim().split('\n').length} steps, ${ROUNDS} rounds, median`);
  console.log(`                         cold        cached`);
  console.log(`berth CLI → berthd    ${fmt(median(b.cold))}   ${fmt(median(b.cached))}`);
  console.log(`docker CLI → berthd   ${fmt(median(bd.cold))}   ${fmt(median(bd.cached))}`);
  if (!BenchDockerd.available()) {
    console.log('dockerd not installed: no Docker Engine comparison');
  } else {
    try {
      dockerd = new BenchDockerd();
      await dockerd.start();
      const denv = { ...dockerd.env, DOCKER_BUILDKIT: '0' };
      // The classic builder's cache is its intermediate images: removing the image and pruning dangling ones empties it.
      const d = measure('docker', denv, ctx, () => {
        timeMs('sh', ['-c', 'docker rmi -f bench:build >/dev/null 2>&1; docker image prune -f >/dev/null; true'], denv, 60_000);
      });
      if (d.hung) console.log(`Docker Engine hung in ${d.hung} of ${ROUNDS} rounds (killed after 60 s, not counted)`);
      if (!d.cold.length) throw new Error('no Docker Engine round finished');
      console.log(`docker CLI → dockerd  ${fmt(median(d.cold))}   ${fmt(median(d.cached))}`);
      console.log(`dockerd/berthd (docker CLI both): cold ${(median(d.cold) / median(bd.cold)).toFixed(2)}x, cached ${(median(d.cached) / median(bd.cached)).toFixed(2)}x`);
      console.log(`dockerd/berthd (each its own CLI): cold ${(median(d.cold) / median(b.cold)).toFixed(2)}x, cached ${(median(d.cached) / median(b.cached)).toFixed(2)}x`);
    } catch (err) {
      console.log(`Docker Engine run failed or hung: ${(err as Error).message.split('\n')[0]}`);
    }
  }
} finally {
  berth.stop();
  await dockerd?.stop();
  rmSync(ctx, { recursive: true, force: true });
}
