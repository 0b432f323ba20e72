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
import { closeSync, mkdirSync, readFileSync, renameSync, statSync, writeFileSync, writeSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import { Script } from 'node:vm';

// Node gives the main script's absolute path: dist/berth.cjs.
const dist = dirname(process.argv[1]!);
const bundlePath = join(dist, 'berth-cli.cjs');
const cacheDir = join(dist, '..', '.cache', 'cli-code');
const nativeBuild = join(dist, '..', 'native', 'build');
const bundleRequire = createRequire(bundlePath);

/**
 * Loads one of the CLI's native hooks for what its constructor does. They
 * are not Node addons, so Node's complaint after loading is expected; a
 * missing file leaves the process to go on the plain way.
 */
function runNative(name: string): void {
  try {
    process.dlopen({ exports: {} }, join(nativeBuild, name));
  } catch {
    // expected (see above)
  }
}

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

/** The bundle's text and the modification time it had when read. */
interface Bundle {
  source: string;
  mtimeMs: number;
}

function readBundle(): Bundle {
  for (;;) {
    const mtimeMs = statSync(bundlePath).mtimeMs;
    // ASCII by construction (scripts/bundle-cli.ts checks): latin1 is exact and cheapest.
    const source = readFileSync(bundlePath, 'latin1');
    // Rebuilt while being read: read again, so that text and time agree.
    if (statSync(bundlePath).mtimeMs === mtimeMs) return { source, mtimeMs };
  }
}

function runBundle({ source, mtimeMs }: Bundle): void {
  // V8 checks a cache against the source's length only; the bundle's
  // modification time in the name keeps a rebuilt bundle from old code.
  const cachePath = join(cacheDir, `${cacheKey(process.argv.slice(2))}-${Math.floor(mtimeMs)}.v8`);
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
  run(module.exports, bundleRequire, module, bundlePath, dist);
}

/** Variables berth-exit.so needs, set again only as it is loaded. */
const exitEnv: Record<string, string> = {};

/**
 * The helper process (native/berth-cli-helper.h): started ahead of time by
 * the previous command, it does what every command needs before one
 * arrives, then waits in berth-cli-serve.so, which returns with the caller's
 * stdio, working directory, umask and environment in place of its own and
 * the arguments in a memfd. Returns the bundle, or undefined when
 * this process is an ordinary command.
 */
function takeCommand(): Bundle | undefined {
  if (process.env.BERTH_CLI_SERVE !== '1' || process.argv[2] !== '--cli-helper') {
    takeHookVariables(); // somebody else's, if there are any
    return undefined;
  }
  let bundle = readBundle();
  // The modules every command loads, so that nobody waits for them.
  for (const m of ['node:net', 'node:stream', 'node:string_decoder', 'node:crypto', 'node:tty']) bundleRequire(m);
  runNative('berth-cli-serve.so');
  const { BERTH_CLI_ARGV_FD, ...forExit } = takeHookVariables();
  Object.assign(exitEnv, forExit);
  const fd = Number(BERTH_CLI_ARGV_FD);
  // Without a command the hook has already ended the process; this is a
  // helper started by hand or without the hook.
  if (!Number.isInteger(fd)) process.exit(0);
  const args = readFileSync(fd, 'utf8').split('\0').slice(0, -1);
  closeSync(fd);
  process.argv.splice(2, Infinity, ...args);
  tellWhenReadingTerminal();
  // A CLI rebuilt while this helper waited: its key names the new files, so the new text runs.
  if (statSync(bundlePath).mtimeMs !== bundle.mtimeMs) bundle = readBundle();
  // Node keeps the working directory it saw at start-up; this makes it look again.
  process.chdir('.');
  // Dates follow TZ only when it is set through process.env.
  const tz = process.env.TZ;
  if (tz === undefined) delete process.env.TZ;
  else process.env.TZ = tz;
  return bundle;
}

/**
 * The client learns when the command takes stdin and that is a terminal:
 * sent to the background later (`bg`), such a command would be stopped by
 * the kernel as a fresh process, and the client stops it so (see
 * native/berth-cli.c). The CLI touches process.stdin only to read it.
 */
function tellWhenReadingTerminal(): void {
  const status = Number(exitEnv.BERTH_CLI_STATUS_FD);
  const stdin = Object.getOwnPropertyDescriptor(process, 'stdin');
  const { isatty } = bundleRequire('node:tty') as typeof import('node:tty');
  if (!Number.isInteger(status) || !stdin?.get || !isatty(0)) return;
  let told = false;
  Object.defineProperty(process, 'stdin', {
    configurable: true,
    enumerable: stdin.enumerable,
    get() {
      if (!told) {
        told = true;
        try {
          writeSync(status, 'R');
        } catch {
          // the client is gone; its watch ends this process
        }
      }
      return stdin.get!.call(process);
    },
  });
}

/**
 * The hook's descriptors (berth-cli-serve.so's) out of the command's
 * environment, where a child process would inherit them; returned for the
 * helper that has just taken a command.
 */
function takeHookVariables(): Record<string, string> {
  const taken: Record<string, string> = {};
  for (const name of ['BERTH_CLI_ARGV_FD', 'BERTH_CLI_STATUS_FD']) {
    const value = process.env[name];
    if (value !== undefined) taken[name] = value;
    delete process.env[name];
  }
  return taken;
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
  // process.exit() emits 'exit', then calls reallyExit: that is where the hook goes in.
  const proc = process as unknown as { reallyExit(code?: number): never };
  const reallyExit = proc.reallyExit.bind(process);
  proc.reallyExit = (code?: number) => {
    Object.assign(process.env, exitEnv, { BERTH_EXIT_STATUS: String(code ?? 0) });
    runNative('berth-exit.so');
    return reallyExit(code);
  };
  (globalThis as Record<symbol, unknown>)[Symbol.for('berth.finish')] = (code: number) => process.exit(code);
  // An error nobody caught ends the command as a failed one, through the same exit.
  process.on('uncaughtException', (err) => {
    process.stderr.write(`berth: ${err?.stack ?? String(err)}\n`);
    process.exit(1);
  });
}

const bundle = takeCommand() ?? readBundle();
exitQuickly();
runBundle(bundle);
