/**
 * Registry commands: pull, push, login, logout and manifest inspect.
 */
import { createInterface } from 'node:readline';
import type { Command, CliContext } from '../command.ts';
import { CliError, println } from '../command.ts';
import type { Flags } from '../flags.ts';
import { CredentialStore } from '../credentials.ts';
import { pullImage, pushImage } from '../pull.ts';
import type { AuthConfig } from '../../distribution/auth-config.ts';
import { authKeyForHost, registryHostOfAddress } from '../../distribution/auth-config.ts';
import { defaultCertsDirs, endpointsFor } from '../../distribution/endpoints.ts';
import { MANIFEST_ACCEPT, parseManifest } from '../../distribution/manifest.ts';
import { closeRegistryConnections, readAll, RegistryClient, RegistryError } from '../../distribution/registry-client.ts';
import { familiarString, parseReference } from '../../image/reference.ts';

async function readStdin(): Promise<string> {
  const chunks: Buffer[] = [];
  for await (const c of process.stdin) chunks.push(c as Buffer);
  return Buffer.concat(chunks).toString('utf8');
}

function prompt(question: string, hidden: boolean): Promise<string> {
  return new Promise((resolve) => {
    const rl = createInterface({ input: process.stdin, output: process.stderr, terminal: true });
    if (hidden) {
      // Echo nothing while the password is typed.
      (rl as unknown as { _writeToOutput: (s: string) => void })._writeToOutput = (s: string) => {
        if (s.startsWith(question)) process.stderr.write(question);
      };
    }
    rl.question(question, (answer) => {
      rl.close();
      if (hidden) process.stderr.write('\n');
      resolve(answer);
    });
  });
}

async function login(ctx: CliContext, f: Flags, args: string[]): Promise<void> {
  const server = args[0];
  const host = server ? registryHostOfAddress(server) : 'docker.io';
  const address = authKeyForHost(host);
  let username = f.str('username');
  let password = f.str('password');
  if (password !== undefined) ctx.err.write('WARNING! Using --password via the CLI is insecure. Use --password-stdin.\n');
  if (f.bool('password-stdin')) {
    if (password !== undefined) throw new CliError('--password and --password-stdin are mutually exclusive');
    if (!username) throw new CliError('Must provide --username with --password-stdin');
    password = (await readStdin()).replace(/\r?\n$/, '');
  }
  const store = new CredentialStore();
  let auth: AuthConfig | undefined;
  if (!username && password === undefined) {
    // Stored credentials are tried first, as docker does.
    const stored = await store.get(host);
    if (stored) {
      try {
        await ctx.client.post('/auth', { ...stored, serveraddress: address });
        println(ctx, 'Login Succeeded');
        return;
      } catch {
        // fall through to asking
      }
    }
  }
  if (!username || password === undefined) {
    if (!process.stdin.isTTY) throw new CliError('Error: Cannot perform an interactive login from a non TTY device');
    if (!username) username = (await prompt('Username: ', false)).trim();
    if (!username) throw new CliError('Error: Non-null Username Required');
    password = await prompt('Password: ', true);
  }
  if (!password) throw new CliError('Error: Password Required');
  auth = { username, password, serveraddress: address };
  const res = await ctx.client.post<{ Status?: string; IdentityToken?: string }>('/auth', auth);
  if (res?.IdentityToken) auth = { username, identitytoken: res.IdentityToken, serveraddress: address };
  await store.store(host, auth);
  println(ctx, res?.Status || 'Login Succeeded');
}

async function logout(ctx: CliContext, args: string[]): Promise<void> {
  const host = args[0] ? registryHostOfAddress(args[0]) : 'docker.io';
  const shown = args[0] && host !== 'docker.io' ? host : authKeyForHost(host);
  const store = new CredentialStore();
  if (!(await store.erase(host))) {
    println(ctx, `Not logged in to ${shown}`);
    return;
  }
  println(ctx, `Removing login credentials for ${shown}`);
}

/** `manifest inspect`: asks the registry directly, as docker's CLI does, with the stored credentials. */
async function manifestInspect(ctx: CliContext, f: Flags, args: string[]): Promise<void> {
  let ref;
  try {
    ref = parseReference(args[0]!);
  } catch (err) {
    throw new CliError((err as Error).message);
  }
  const reference = ref.digest ?? ref.tag ?? 'latest';
  const auth = await new CredentialStore().get(ref.domain);
  const insecure = f.bool('insecure') ? [ref.domain] : [];
  const eps = endpointsFor(ref.domain, { mirrors: [], insecure, certsDirs: defaultCertsDirs() });
  let lastErr: unknown;
  try {
    for (const ep of eps) {
      const client = new RegistryClient(ep, auth, 'berth-cli/0.1.0');
      try {
        await client.ping();
        const res = await client.expect('GET', `/v2/${ref.path}/manifests/${reference}`, [200], { scopes: [`repository:${ref.path}:pull`], headers: { Accept: MANIFEST_ACCEPT } });
        const raw = await readAll(res.body, 4 << 20);
        const parsed = parseManifest(raw, res.headers['content-type'], familiarString(ref));
        const text = JSON.stringify(JSON.parse(raw.toString()), null, '\t');
        if (f.bool('verbose')) {
          const { createHash } = await import('node:crypto');
          const digest = `sha256:${createHash('sha256').update(raw).digest('hex')}`;
          const verbose = {
            Ref: familiarString(ref).includes('/') || ref.domain !== 'docker.io' ? `${ref.domain}/${ref.path}:${reference}` : `docker.io/${ref.path}:${reference}`,
            Descriptor: { mediaType: parsed.mediaType, digest, size: raw.length },
            [parsed.kind === 'index' ? 'Index' : 'Manifest']: JSON.parse(raw.toString()) as unknown,
          };
          println(ctx, JSON.stringify(verbose, null, '\t'));
        } else println(ctx, text);
        return;
      } catch (err) {
        lastErr = err;
        if (err instanceof RegistryError && err.transport) continue;
        break;
      }
    }
  } finally {
    closeRegistryConnections();
  }
  if (lastErr instanceof RegistryError && (lastErr.code === 'MANIFEST_UNKNOWN' || lastErr.status === 404)) throw new CliError(`no such manifest: ${familiarString(ref)}`);
  throw new CliError((lastErr as Error)?.message ?? 'manifest inspect failed');
}

export const commands: Command[] = [
  {
    name: 'pull',
    use: 'berth pull [OPTIONS] NAME[:TAG|@DIGEST]',
    short: 'Download an image from a registry',
    flags: [
      { name: 'all-tags', short: 'a', type: 'bool', description: 'Download all tagged images in the repository' },
      { name: 'quiet', short: 'q', type: 'bool', description: 'Suppress verbose output' },
      { name: 'platform', type: 'string', description: 'Set platform if server is multi-platform capable' },
      { name: 'disable-content-trust', type: 'bool', description: 'Skip image verification (default true)', default: true },
    ],
    minArgs: 1,
    maxArgs: 1,
    async run(ctx, f, args) {
      const shown = await pullImage(ctx, args[0]!, { quiet: f.bool('quiet'), platform: f.str('platform') || process.env.DOCKER_DEFAULT_PLATFORM || undefined, allTags: f.bool('all-tags') });
      println(ctx, shown);
    },
  },
  {
    name: 'push',
    use: 'berth push [OPTIONS] NAME[:TAG]',
    short: 'Upload an image to a registry',
    flags: [
      { name: 'all-tags', short: 'a', type: 'bool', description: 'Push all tags of an image to the repository' },
      { name: 'quiet', short: 'q', type: 'bool', description: 'Suppress verbose output' },
      { name: 'disable-content-trust', type: 'bool', description: 'Skip image signing (default true)', default: true },
    ],
    minArgs: 1,
    maxArgs: 1,
    async run(ctx, f, args) {
      await pushImage(ctx, args[0]!, { quiet: f.bool('quiet'), allTags: f.bool('all-tags') });
    },
  },
  {
    name: 'login',
    use: 'berth login [OPTIONS] [SERVER]',
    short: 'Authenticate to a registry',
    flags: [
      { name: 'username', short: 'u', type: 'string', description: 'Username' },
      { name: 'password', short: 'p', type: 'string', description: 'Password' },
      { name: 'password-stdin', type: 'bool', description: 'Take the password from stdin' },
    ],
    maxArgs: 1,
    async run(ctx, f, args) {
      await login(ctx, f, args);
    },
  },
  {
    name: 'logout',
    use: 'berth logout [SERVER]',
    short: 'Log out from a registry',
    flags: [],
    maxArgs: 1,
    async run(ctx, _f, args) {
      await logout(ctx, args);
    },
  },
  {
    name: 'manifest inspect',
    use: 'berth manifest inspect [OPTIONS] [MANIFEST_LIST] MANIFEST',
    short: 'Display an image manifest, or manifest list',
    flags: [
      { name: 'insecure', type: 'bool', description: 'Allow communication with an insecure registry' },
      { name: 'verbose', short: 'v', type: 'bool', description: 'Output additional info including layers and platform' },
    ],
    minArgs: 1,
    maxArgs: 1,
    async run(ctx, f, args) {
      await manifestInspect(ctx, f, args);
    },
  },
];

