import { main } from './main.ts';

/**
 * How the process ends once the command is done: dist/berth.cjs (launch.ts)
 * puts a function here that ends it at once; without one (this file run
 * directly) the event loop simply drains.
 */
const finish = (globalThis as Record<symbol, unknown>)[Symbol.for('berth.finish')] as ((code: number) => void) | undefined;

main(process.argv.slice(2)).then(
  (code) => {
    process.exitCode = code;
    finish?.(code);
  },
  (err: unknown) => {
    process.stderr.write(`berth: ${(err as Error)?.stack ?? String(err)}\n`);
    process.exitCode = 1;
    finish?.(1);
  },
);
