/**
 * Bundles the berth CLI into one CommonJS file, dist/berth-cli.cjs, which
 * dist/berth.cjs (src/cli/launch.ts) runs with a V8 code cache. One file instead of some
 * twenty ES modules spares every command the module resolution and lets a
 * single code cache hold every function the command ran (see launch.ts).
 */
import { build } from 'esbuild';
import type { Plugin } from 'esbuild';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';

const ROOT = new URL('..', import.meta.url).pathname;

/**
 * The bundle runs as a plain script (launch.ts), where `import()` has no
 * loader behind it, so every dynamic import becomes a `require`:
 * - `berth registry serve` stays outside the bundle: the registry finds its
 *   helper programs and worker threads from its own module URL, so that
 *   command loads it from dist/ as an ES module (Node's require of ESM);
 * - Node's built-in modules imported lazily are required lazily.
 */
const noDynamicImport: Plugin = {
  name: 'no-dynamic-import',
  setup(b) {
    b.onResolve({ filter: /\/commands\/registry-server\.ts$/ }, () => ({ path: 'src/cli/commands/registry-server.js', namespace: 'dist' }));
    b.onResolve({ filter: /^node:/ }, (args) => (args.kind === 'dynamic-import' ? { path: args.path, namespace: 'builtin' } : undefined));
    b.onLoad({ filter: /.*/, namespace: 'dist' }, (args) => ({
      contents: `module.exports = require(require('node:path').join(__dirname, ${JSON.stringify(args.path)}));`,
      loader: 'js',
    }));
    b.onLoad({ filter: /.*/, namespace: 'builtin' }, (args) => ({ contents: `module.exports = require(${JSON.stringify(args.path)});`, loader: 'js' }));
  },
};

// Whitespace and comments out, names kept (stack traces stay readable); ASCII
// only, so the launcher can read the bundle as latin1 into V8's cheapest
// string. Together they halve what each command reads and converts.
const common = {
  absWorkingDir: ROOT, bundle: true, platform: 'node', format: 'cjs', target: 'node24',
  charset: 'ascii', minifyWhitespace: true, minifySyntax: true, logLevel: 'warning',
} as const;
await build({ ...common, entryPoints: ['src/cli/bin.ts'], outfile: 'dist/berth-cli.cjs', plugins: [noDynamicImport] });
// The entry point that runs it (bin/berth), CommonJS like the bundle.
await build({ ...common, entryPoints: ['src/cli/launch.ts'], outfile: 'dist/berth.cjs' });

// A dynamic import left in the bundle would fail only when its command runs;
// a character beyond ASCII (esbuild leaves those in regular expressions)
// would be misread as latin1.
const out = readFileSync(join(ROOT, 'dist/berth-cli.cjs'), 'utf8');
if (/\bimport\(/.test(out)) throw new Error('dist/berth-cli.cjs still has a dynamic import(); see noDynamicImport');
const wide = /[^\x00-\x7f]/.exec(out);
if (wide) throw new Error(`dist/berth-cli.cjs is not ASCII near: ${out.slice(Math.max(0, wide.index - 40), wide.index + 20)} (write the character as an escape in the source)`);
