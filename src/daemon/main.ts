import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { readFile, writeFile, rm, mkdir } from 'node:fs/promises';
import type { Server } from 'node:http';
import { parseDaemonArgs, DAEMON_USAGE } from './config.ts';
import { Engine } from '../engine/engine.ts';
import { buildRouter } from '../api/api.ts';
import { listen } from '../api/server.ts';
import { log, setLogLevel } from '../util/log.ts';
import { errorMessage } from '../util/errors.ts';
import { processAlive } from '../util/signals.ts';
import { checkRuntime } from '../runtime/runtime-check.ts';

const here = dirname(fileURLToPath(import.meta.url));
/** The checkout root: this file is src/daemon/main.ts, or dist/src/daemon/main.js once built. */
const projectRoot = here.includes('/dist/') ? join(here, '..', '..', '..') : join(here, '..', '..');


/** One berthd per exec root: a second one would fight the first over the same monitors. */
async function takePidFile(path: string): Promise<void> {
  const old = Number((await readFile(path, 'utf8').catch(() => '')).trim());
  if (old && old !== process.pid && processAlive(old)) {
    const cmd = await readFile(`/proc/${old}/cmdline`, 'utf8').catch(() => '');
    if (cmd.includes('berthd') || cmd.includes('daemon/main')) {
      throw new Error(`berthd is already running with pid ${old} (pid file ${path})`);
    }
  }
  await writeFile(path, `${process.pid}\n`);
}

async function main(): Promise<void> {
  const parsed = parseDaemonArgs(process.argv.slice(2), join(projectRoot, 'native', 'build'));
  if (parsed === 'help') {
    process.stdout.write(DAEMON_USAGE);
    return;
  }
  const cfg = parsed;
  setLogLevel(cfg.logLevel);
  if (process.getuid?.() !== 0) throw new Error('berthd needs to be started with root privileges');
  checkRuntime(cfg.runtime, cfg.runtimePath);
  await mkdir(cfg.execRoot, { recursive: true, mode: 0o700 });
  const pidFile = join(cfg.execRoot, 'berthd.pid');
  await takePidFile(pidFile);
  const engine = new Engine(cfg);
  await engine.init();
  const router = buildRouter(engine);
  const servers: Server[] = [];
  for (const h of cfg.hosts) {
    servers.push(await listen(router, h));
    log.info('API listen on', { host: h });
  }
  log.info('berthd has completed initialization', { dataRoot: cfg.dataRoot, execRoot: cfg.execRoot });
  let stopping = false;
  const shutdown = async (sig: string) => {
    if (stopping) return;
    stopping = true;
    log.info('shutting down; running containers keep running', { signal: sig });
    engine.containers.detachAll();
    await engine.networks.shutdown().catch((err) => log.warn('network cleanup at shutdown failed', { error: errorMessage(err) }));
    engine.containers.stopLauncher();
    engine.builder.stop();
    for (const s of servers) {
      s.close();
      s.closeAllConnections();
    }
    await rm(pidFile, { force: true });
    process.exit(0);
  };
  process.on('SIGTERM', () => void shutdown('SIGTERM'));
  process.on('SIGINT', () => void shutdown('SIGINT'));
}

main().catch((err) => {
  process.stderr.write(`berthd: ${errorMessage(err)}\n`);
  process.exit(1);
});
