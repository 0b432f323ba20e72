/**
 * Applying a layer of 10,000 small files (gzip): berth's extractor against
 * GNU tar extracting the same archive on the same filesystem, alternated.
 *
 *   node_modules/.bin/node bench/layer-apply.ts [rounds]
 */
import { execFileSync } from 'node:child_process';
import { createReadStream } from 'node:fs';
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { applyLayer, decompressStream } from '../src/image/layer.ts';
import { median } from './lib.ts';

const rounds = Number(process.argv[2] ?? 5);
const dir = await mkdtemp('/tmp/berth-bench-layer-');
try {
  const src = join(dir, 'src');
  for (let d = 0; d < 100; d++) {
    await mkdir(join(src, `d${d}`), { recursive: true });
    await Promise.all(Array.from({ length: 100 }, (_, f) => writeFile(join(src, `d${d}`, `f${f}`), `file ${d}/${f}\n`.repeat(40))));
  }
  const tarPath = join(dir, 'many.tar.gz');
  execFileSync('tar', ['-C', src, '-czf', tarPath, '.']);
  const gnu: number[] = [];
  const berth: number[] = [];
  for (let i = 0; i < rounds; i++) {
    const g = join(dir, `gnu${i}`);
    await mkdir(g);
    let t = performance.now();
    execFileSync('tar', ['-C', g, '-xzf', tarPath]);
    gnu.push(performance.now() - t);
    t = performance.now();
    await applyLayer(join(dir, `berth${i}`), decompressStream(createReadStream(tarPath)));
    berth.push(performance.now() - t);
  }
  console.log(`apply a gzip layer of 10,000 small files, ${rounds} alternated rounds`);
  console.log(`GNU tar -xzf     median ${median(gnu).toFixed(0)} ms`);
  console.log(`berth applyLayer median ${median(berth).toFixed(0)} ms  ${(median(berth) / median(gnu)).toFixed(2)}x GNU tar`);
} finally {
  await rm(dir, { recursive: true, force: true });
}
