/**
 * The berth CLI's entry point: setup builds it into dist/berth.cjs, which
 * bin/berth runs. It is CommonJS on purpose: an ES module's import of
 * node:fs loads all of fs/promises, readline and stream/promises with it.
 *
 * It runs the bundled CLI, dist/berth-cli.cjs (built by setup from bin.ts),
 * through V8 with a code cache of its own. Why not Node's compile cache:
 * that cache is taken right after a module is compiled, when V8 has only
 * the top level; every function a command runs is parsed and compiled again
 * on every run. A cache taken when the command has finished holds all of
 * them. The cache is kept per command (`run`, `ps`, …) because each one runs
 * different code, and is written only when there is none or V8 refuses it
 * (another Node), so a normal run only reads it.
 */
import { mkdirSync, readFileSync, renameSync, statSync, writeFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import { Script } from 'node:vm';

// Node gives the main script's absolute path: dist/berth.cjs.
const dist = dirname(process.argv[1]!);
const bundlePath = join(dist, 'berth-cli.cjs');
const cacheDir = join(dist, '..', '.cache', 'cli-code');

/** The command's cache name: its first word, when that is a plain one. */
function cacheKey(argv: string[]): string {
  const word = argv.find((a) => !a.startsWith('-'));
  return word && /^[a-z][a-z-]{0,30}$/.test(word) ? word : 'other';
}

function readOrUndefined(path: string): Buffer | undefined {
  try {
    return readFileSync(path);
  } catch {
    return undefined;
  }
}

function runBundle(): void {
  // ASCII by construction (scripts/bundle-cli.ts checks): latin1 is exact and cheapest.
  const source = readFileSync(bundlePath, 'latin1');
  // V8 checks a cache against the source's length only; the bundle's
  // modification time in the name keeps a rebuilt bundle from old code.
  const cachePath = join(cacheDir, `${cacheKey(process.argv.slice(2))}-${Math.floor(statSync(bundlePath).mtimeMs)}.v8`);
  const cachedData = readOrUndefined(cachePath);
  const script = new Script(`(function (exports, require, module, __filename, __dirname) {${source}\n})`, { filename: bundlePath, cachedData });
  if (!cachedData || script.cachedDataRejected) {
    process.once('exit', () => {
      // Best effort: a read-only checkout just runs without the cache.
      try {
        mkdirSync(cacheDir, { recursive: true });
        const tmp = `${cachePath}.${process.pid}`;
        writeFileSync(tmp, script.createCachedData());
        renameSync(tmp, cachePath);
      } catch {
        // not cached this time
      }
    });
  }
  const module = { exports: {} };
  const run = script.runInThisContext() as (e: object, r: NodeJS.Require, m: object, f: string, d: string) => void;
  run(module.exports, createRequire(bundlePath), module, bundlePath, dist);
}

/**
 * Once the command is over, end the process without Node's teardown (see
 * native/berth-exit.c), and without waiting for the event loop to drain:
 * connections to the daemon still closing, signal handlers being removed.
 * bin.ts calls this when main() has settled; the 'exit' listeners (the code
 * cache's, a terminal's restore) run first, as with process.exit(). Output
 * is already written: stdout and stderr are synchronous on Linux. A Node
 * run with options of its own (--cpu-prof, coverage, …) exits the usual
 * way, since those write their results during the teardown.
 */
function exitQuickly(): void {
  if (process.execArgv.length > 0 || process.env.NODE_OPTIONS || process.env.NODE_V8_COVERAGE) return;
  const helper = join(dist, '..', 'native', 'build', 'berth-exit.so');
  (globalThis as Record<symbol, unknown>)[Symbol.for('berth.finish')] = (code: number) => {
    process.emit('exit', code);
    process.env.BERTH_EXIT_STATUS = String(code);
    try {
      process.dlopen({ exports: {} }, helper);
    } catch {
      // no helper: the usual exit (the 'exit' listeners ran once: they are `once`)
    }
    process.exit(code);
  };
}

exitQuickly();
runBundle();
