/** `berth network …` and `berth port`: the network API as docker's CLI presents it. */
import type { Command, CliContext } from '../command.ts';
import { CliError, println } from '../command.ts';
import { ApiError } from '../client.ts';
import { renderFormatted } from '../format/table.ts';
import { parseFilterFlags } from '../filters.ts';
import { printInspected } from './inspect.ts';
import { confirmRemoval } from '../prompt.ts';

interface NetworkJson {
  Name: string;
  Id: string;
  Created: string;
  Driver: string;
  Scope: string;
  Internal: boolean;
  EnableIPv6: boolean;
  Labels: Record<string, string>;
}

function keyValues(list: string[], what: string): Record<string, string> {
  const out: Record<string, string> = {};
  for (const kv of list) {
    const i = kv.indexOf('=');
    if (i <= 0 && what !== 'label') throw new CliError(`invalid key/value pair format in ${what}: ${kv}`, 1);
    out[i < 0 ? kv : kv.slice(0, i)] = i < 0 ? '' : kv.slice(i + 1);
  }
  return out;
}

/** Run `fn` for each argument, reporting failures the way docker does: all of them, then exit 1. */
async function eachArg(ctx: CliContext, args: string[], fn: (a: string) => Promise<void>): Promise<void> {
  const errors: string[] = [];
  for (const a of args) {
    try {
      await fn(a);
    } catch (err) {
      errors.push(err instanceof ApiError ? `Error response from daemon: ${err.message}` : (err as Error).message);
    }
  }
  if (errors.length) throw new CliError(errors.join('\n'), 1);
}

export const commands: Command[] = [
  {
    name: 'network create',
    use: 'berth network create [OPTIONS] NETWORK',
    short: 'Create a network',
    flags: [
      { name: 'driver', short: 'd', type: 'string', description: 'Driver to manage the Network', default: 'bridge' },
      { name: 'subnet', type: 'list', description: 'Subnet in CIDR format that represents a network segment' },
      { name: 'gateway', type: 'list', description: 'IPv4 or IPv6 Gateway for the master subnet' },
      { name: 'ip-range', type: 'list', description: 'Allocate container ip from a sub-range' },
      { name: 'aux-address', type: 'list', description: 'Auxiliary IPv4 or IPv6 addresses used by Network driver' },
      { name: 'internal', type: 'bool', description: 'Restrict external access to the network' },
      { name: 'attachable', type: 'bool', description: 'Enable manual container attachment' },
      { name: 'ipv6', type: 'bool', description: 'Enable or disable IPv6 networking' },
      { name: 'label', type: 'list', description: 'Set metadata on a network' },
      { name: 'opt', short: 'o', type: 'list', description: 'Set driver specific options' },
      { name: 'ipam-driver', type: 'string', description: 'IP Address Management Driver', default: 'default' },
      { name: 'ipam-opt', type: 'list', description: 'Set IPAM driver specific options' },
    ],
    minArgs: 1,
    maxArgs: 1,
    async run(ctx, f, args) {
      const subnets = f.list('subnet');
      const gateways = f.list('gateway');
      const ranges = f.list('ip-range');
      if (gateways.length > subnets.length) throw new CliError('every ip-range or gateway must have a corresponding subnet', 1);
      if (ranges.length > subnets.length) throw new CliError('every ip-range or gateway must have a corresponding subnet', 1);
      const aux = keyValues(f.list('aux-address'), 'aux-address');
      const config = subnets.map((s, i) => ({ Subnet: s, ...(gateways[i] ? { Gateway: gateways[i] } : {}), ...(ranges[i] ? { IPRange: ranges[i] } : {}), ...(i === 0 && Object.keys(aux).length ? { AuxiliaryAddresses: aux } : {}) }));
      const res = await ctx.client.post<{ Id: string }>('/networks/create', {
        Name: args[0],
        Driver: f.str('driver'),
        Internal: f.bool('internal'),
        Attachable: f.bool('attachable'),
        EnableIPv6: f.bool('ipv6'),
        IPAM: { Driver: f.str('ipam-driver'), Config: config, Options: keyValues(f.list('ipam-opt'), 'ipam-opt') },
        Options: keyValues(f.list('opt'), 'opt'),
        Labels: keyValues(f.list('label'), 'label'),
      });
      println(ctx, res.Id);
    },
  },
  {
    name: 'network ls',
    use: 'berth network ls [OPTIONS]',
    short: 'List networks',
    flags: [
      { name: 'filter', short: 'f', type: 'list', description: 'Provide filter values (e.g. "driver=bridge")' },
      { name: 'format', type: 'string', description: 'Format output using a custom template' },
      { name: 'quiet', short: 'q', type: 'bool', description: 'Only display network IDs' },
      { name: 'no-trunc', type: 'bool', description: 'Do not truncate the output' },
    ],
    maxArgs: 0,
    async run(ctx, f) {
      const list = await ctx.client.get<NetworkJson[]>('/networks', { filters: parseFilterFlags(f.list('filter')) });
      const noTrunc = f.bool('no-trunc');
      if (f.bool('quiet')) {
        for (const n of list) println(ctx, noTrunc ? n.Id : n.Id.slice(0, 12));
        return;
      }
      const rows = list.map((n) => ({
        ID: noTrunc ? n.Id : n.Id.slice(0, 12), Name: n.Name, Driver: n.Driver, Scope: n.Scope, IPv6: String(n.EnableIPv6), Internal: String(n.Internal),
        Labels: Object.entries(n.Labels ?? {}).map(([k, v]) => `${k}=${v}`).join(','), CreatedAt: n.Created, Label: (k: string) => n.Labels?.[k] ?? '',
      }));
      ctx.out.write(renderFormatted(f.str('format'), rows, {
        defaultTable: 'table {{.ID}}\t{{.Name}}\t{{.Driver}}\t{{.Scope}}',
        headers: { ID: 'NETWORK ID', Name: 'NAME', Driver: 'DRIVER', Scope: 'SCOPE', IPv6: 'IPV6', Internal: 'INTERNAL', Labels: 'LABELS', CreatedAt: 'CREATED AT' },
      }));
    },
  },
  {
    name: 'network inspect',
    use: 'berth network inspect [OPTIONS] NETWORK [NETWORK...]',
    short: 'Display detailed information on one or more networks',
    flags: [
      { name: 'format', short: 'f', type: 'string', description: 'Format output using a custom template' },
      { name: 'verbose', short: 'v', type: 'bool', description: 'Verbose output for diagnostics' },
    ],
    minArgs: 1,
    async run(ctx, f, args) {
      const found: unknown[] = [];
      const errors: string[] = [];
      for (const a of args) {
        try {
          found.push(await ctx.client.get(`/networks/${encodeURIComponent(a)}`));
        } catch (err) {
          if (!(err instanceof ApiError) || err.status !== 404) throw err;
          errors.push(`Error response from daemon: ${err.message}`);
        }
      }
      printInspected(ctx, f.str('format'), found, errors);
    },
  },
  {
    name: 'network rm',
    use: 'berth network rm [OPTIONS] NETWORK [NETWORK...]',
    short: 'Remove one or more networks',
    flags: [{ name: 'force', short: 'f', type: 'bool', description: 'Do not error if the network does not exist' }],
    minArgs: 1,
    async run(ctx, f, args) {
      await eachArg(ctx, args, async (a) => {
        try {
          await ctx.client.delete(`/networks/${encodeURIComponent(a)}`);
        } catch (err) {
          if (f.bool('force') && err instanceof ApiError && err.status === 404) return;
          throw err;
        }
        println(ctx, a);
      });
    },
  },
  {
    name: 'network prune',
    use: 'berth network prune [OPTIONS]',
    short: 'Remove all unused networks',
    flags: [
      { name: 'force', short: 'f', type: 'bool', description: 'Do not prompt for confirmation' },
      { name: 'filter', type: 'list', description: 'Provide filter values (e.g. "until=<timestamp>")' },
    ],
    maxArgs: 0,
    async run(ctx, f) {
      if (!f.bool('force') && !(await confirmRemoval(ctx, ' all custom networks not used by at least one container.'))) return 0;
      const r = await ctx.client.post<{ NetworksDeleted: string[] | null }>('/networks/prune', undefined, { filters: parseFilterFlags(f.list('filter')) });
      if (r.NetworksDeleted?.length) {
        println(ctx, 'Deleted Networks:');
        for (const n of r.NetworksDeleted) println(ctx, n);
        println(ctx);
      }
    },
  },
  {
    name: 'network connect',
    use: 'berth network connect [OPTIONS] NETWORK CONTAINER',
    short: 'Connect a container to a network',
    flags: [
      { name: 'alias', type: 'list', description: 'Add network-scoped alias for the container' },
      { name: 'ip', type: 'string', description: 'IPv4 address (e.g., "172.30.100.104")' },
      { name: 'link', type: 'list', description: 'Add link to another container' },
      { name: 'driver-opt', type: 'list', description: 'driver options for the network' },
    ],
    minArgs: 2,
    maxArgs: 2,
    async run(ctx, f, args) {
      await ctx.client.post(`/networks/${encodeURIComponent(args[0]!)}/connect`, {
        Container: args[1],
        EndpointConfig: {
          Aliases: f.list('alias'),
          ...(f.str('ip') ? { IPAMConfig: { IPv4Address: f.str('ip') } } : {}),
          Links: f.list('link'),
          DriverOpts: keyValues(f.list('driver-opt'), 'driver-opt'),
        },
      });
    },
  },
  {
    name: 'network disconnect',
    use: 'berth network disconnect [OPTIONS] NETWORK CONTAINER',
    short: 'Disconnect a container from a network',
    flags: [{ name: 'force', short: 'f', type: 'bool', description: 'Force the container to disconnect from a network' }],
    minArgs: 2,
    maxArgs: 2,
    async run(ctx, f, args) {
      await ctx.client.post(`/networks/${encodeURIComponent(args[0]!)}/disconnect`, { Container: args[1], Force: f.bool('force') });
    },
  },
  {
    name: 'port',
    use: 'berth port CONTAINER [PRIVATE_PORT[/PROTO]]',
    short: 'List port mappings or a specific mapping for the container',
    flags: [],
    minArgs: 1,
    maxArgs: 2,
    async run(ctx, _f, args) {
      const c = await ctx.client.get<{ NetworkSettings: { Ports?: Record<string, Array<{ HostIp: string; HostPort: string }> | null> } }>(`/containers/${encodeURIComponent(args[0]!)}/json`);
      const ports = c.NetworkSettings.Ports ?? {};
      const want = args[1];
      if (want) {
        const key = want.includes('/') ? want : `${want}/tcp`;
        const binds = ports[key];
        if (!binds?.length) throw new CliError(`Error: No public port '${key}' published for ${args[0]}`, 1);
        for (const b of binds) println(ctx, `${b.HostIp}:${b.HostPort}`);
        return;
      }
      const keys = Object.keys(ports).sort((a, b) => parseInt(a) - parseInt(b) || a.localeCompare(b));
      for (const k of keys) for (const b of ports[k] ?? []) println(ctx, `${k} -> ${b.HostIp}:${b.HostPort}`);
    },
  },
];
