/**
 * `berth registry serve` and `berth registry gc`: berth's own registry
 * server. Neither talks to berthd.
 */
import type { Command } from '../command.ts';
import { CliError, println } from '../command.ts';
import type { AuthMode } from '../../registry/auth/access.ts';

const DEFAULT_ROOT = '/var/lib/berth-registry';

export const commands: Command[] = [
  {
    name: 'registry serve',
    use: 'berth registry serve [OPTIONS]',
    short: 'Run an OCI distribution registry',
    flags: [
      { name: 'addr', type: 'string', description: 'Address to listen on (host:port; port 0 picks a free one)', default: '127.0.0.1:5000' },
      { name: 'root', type: 'string', description: 'Directory holding the registry\'s storage', default: DEFAULT_ROOT },
      { name: 'htpasswd', type: 'string', description: 'htpasswd file (bcrypt, apr1 or SHA hashes) for authentication' },
      { name: 'auth', type: 'string', description: 'Authentication: "none", "basic" or "token" (default: basic with --htpasswd, else none)' },
      { name: 'token-realm', type: 'string', description: 'Token realm URL to announce (default: this server\'s /auth/token)' },
      { name: 'token-service', type: 'string', description: 'Service name in token challenges', default: 'berth-registry' },
      { name: 'token-secret', type: 'string', description: 'File with the token signing secret (default: random per start)' },
      { name: 'token-ttl', type: 'int', description: 'Token lifetime in seconds', default: 300 },
      { name: 'tls-cert', type: 'string', description: 'TLS certificate (PEM); serve HTTPS' },
      { name: 'tls-key', type: 'string', description: 'TLS private key (PEM)' },
      { name: 'read-only', type: 'bool', description: 'Refuse pushes and deletes' },
      { name: 'no-fsync', type: 'bool', description: 'Do not fsync blobs before they become visible' },
      { name: 'access-log', type: 'bool', description: 'Log every request to stderr' },
    ],
    maxArgs: 0,
    async run(ctx, f) {
      const { RegistryServer } = await import('../../registry/server.ts');
      const auth = f.str('auth');
      if (auth !== undefined && !['none', 'basic', 'token'].includes(auth)) throw new CliError(`invalid --auth ${JSON.stringify(auth)}: want none, basic or token`);
      let srv;
      try {
        srv = await RegistryServer.start({
          addr: f.str('addr') ?? '127.0.0.1:5000',
          root: f.str('root') ?? DEFAULT_ROOT,
          htpasswd: f.str('htpasswd'),
          auth: auth as AuthMode | undefined,
          tokenRealm: f.str('token-realm'),
          tokenService: f.str('token-service'),
          tokenSecretFile: f.str('token-secret'),
          tokenTtl: f.int('token-ttl'),
          tlsCert: f.str('tls-cert'),
          tlsKey: f.str('tls-key'),
          readOnly: f.bool('read-only'),
          durable: !f.bool('no-fsync'),
          accessLog: f.bool('access-log'),
        });
      } catch (err) {
        throw new CliError(`berth registry: ${(err as Error).message}`);
      }
      println(ctx, `berth registry listening on ${srv.url}`);
      await new Promise<void>((resolve) => {
        process.once('SIGINT', resolve);
        process.once('SIGTERM', resolve);
      });
      await srv.close();
    },
  },
  {
    name: 'registry gc',
    use: 'berth registry gc [OPTIONS]',
    short: 'Remove blobs no manifest refers to',
    flags: [
      { name: 'root', type: 'string', description: 'Directory holding the registry\'s storage', default: DEFAULT_ROOT },
      { name: 'dry-run', short: 'd', type: 'bool', description: 'Only print what would be removed' },
      { name: 'delete-untagged', short: 'm', type: 'bool', description: 'Also remove manifests no tag leads to' },
      { name: 'quiet', short: 'q', type: 'bool', description: 'Print only the summary' },
    ],
    maxArgs: 0,
    async run(ctx, f) {
      const { RegistryStorage } = await import('../../registry/storage.ts');
      const { UploadSessions } = await import('../../registry/uploads.ts');
      const { collectGarbage } = await import('../../registry/gc.ts');
      const { existsSync } = await import('node:fs');
      const root = f.str('root') ?? DEFAULT_ROOT;
      if (!existsSync(root)) throw new CliError(`berth registry gc: ${root}: no such directory`);
      const storage = new RegistryStorage(root);
      await storage.init();
      const dry = f.bool('dry-run');
      const r = await collectGarbage(storage, new UploadSessions(storage), {
        dryRun: dry,
        deleteUntagged: f.bool('delete-untagged'),
        uploadMaxAgeMs: 7 * 24 * 3600 * 1000,
        log: f.bool('quiet') ? undefined : (line) => println(ctx, line),
      });
      const verb = dry ? 'would free' : 'freed';
      println(ctx, `${r.blobsRemoved.length} blobs, ${r.manifestsRemoved.length} manifests, ${r.uploadsRemoved.length} stale uploads: ${verb} ${r.bytesFreed} bytes`);
    },
  },
];
