/**
 * `berth stats`: live resource usage per container, computed from the stats
 * API the way docker's CLI computes it (CPU % from the cgroup and host CPU
 * deltas, memory without the page cache, network and block I/O totals).
 */
import type { Command, CliContext } from '../command.ts';
import { CliError } from '../command.ts';
import { renderFormatted } from '../format/table.ts';
import type { StatsJSON } from '../../engine/stats.ts';

const DEFAULT_FORMAT = 'table {{.ID}}\t{{.Name}}\t{{.CPUPerc}}\t{{.MemUsage}}\t{{.MemPerc}}\t{{.NetIO}}\t{{.BlockIO}}\t{{.PIDs}}';

const HEADERS: Record<string, string> = {
  Container: 'CONTAINER', ID: 'CONTAINER ID', Name: 'NAME', CPUPerc: 'CPU %', MemUsage: 'MEM USAGE / LIMIT', MemPerc: 'MEM %',
  NetIO: 'NET I/O', BlockIO: 'BLOCK I/O', PIDs: 'PIDS',
};

/** Go's %.Ng: N significant digits, trailing zeros dropped. */
function sig(v: number, digits: number): string {
  return String(Number(v.toPrecision(digits)));
}

/** docker's HumanSizeWithPrecision(x, 3): decimal units. */
export function decimalSize(n: number): string {
  const units = ['B', 'kB', 'MB', 'GB', 'TB', 'PB'];
  let i = 0;
  while (n >= 1000 && i < units.length - 1) {
    n /= 1000;
    i++;
  }
  return `${sig(n, 3)}${units[i]}`;
}

/** docker's BytesSize: binary units, 4 significant digits. */
export function binarySize(n: number): string {
  const units = ['B', 'KiB', 'MiB', 'GiB', 'TiB', 'PiB'];
  let i = 0;
  while (n >= 1024 && i < units.length - 1) {
    n /= 1024;
    i++;
  }
  return `${sig(n, 4)}${units[i]}`;
}

export interface StatsRow {
  Container: string;
  ID: string;
  Name: string;
  CPUPerc: string;
  MemUsage: string;
  MemPerc: string;
  NetIO: string;
  BlockIO: string;
  PIDs: string;
}

/** One table row from a stats sample, as docker's CLI derives it. */
export function statsRow(s: StatsJSON, asGiven: string, noTrunc = false): StatsRow {
  const cpuDelta = s.cpu_stats.cpu_usage.total_usage - s.precpu_stats.cpu_usage.total_usage;
  const sysDelta = (s.cpu_stats.system_cpu_usage ?? 0) - (s.precpu_stats.system_cpu_usage ?? 0);
  const cpus = s.cpu_stats.online_cpus || s.cpu_stats.cpu_usage.percpu_usage?.length || 1;
  const cpu = sysDelta > 0 && cpuDelta > 0 ? (cpuDelta / sysDelta) * cpus * 100 : 0;
  const ms = s.memory_stats;
  const st = ms.stats ?? {};
  // Page cache that can be dropped does not count, as in docker.
  const inactive = st.total_inactive_file ?? st.inactive_file ?? 0;
  const mem = Math.max(0, (ms.usage ?? 0) - (inactive < (ms.usage ?? 0) ? inactive : 0));
  const limit = ms.limit ?? 0;
  let rx = 0;
  let tx = 0;
  for (const n of Object.values(s.networks ?? {})) {
    rx += n.rx_bytes;
    tx += n.tx_bytes;
  }
  let read = 0;
  let write = 0;
  for (const e of s.blkio_stats.io_service_bytes_recursive ?? []) {
    const op = e.op.toLowerCase();
    if (op === 'read') read += e.value;
    else if (op === 'write') write += e.value;
  }
  const running = s.read !== '0001-01-01T00:00:00Z';
  return {
    Container: asGiven,
    ID: noTrunc ? s.id : s.id.slice(0, 12),
    Name: s.name.replace(/^\//, ''),
    CPUPerc: running ? `${cpu.toFixed(2)}%` : '0.00%',
    MemUsage: `${binarySize(mem)} / ${binarySize(limit)}`,
    MemPerc: `${(limit > 0 ? (mem / limit) * 100 : 0).toFixed(2)}%`,
    NetIO: `${decimalSize(rx)} / ${decimalSize(tx)}`,
    BlockIO: `${decimalSize(read)} / ${decimalSize(write)}`,
    PIDs: String(s.pids_stats.current ?? 0),
  };
}

interface Summary {
  Id: string;
}

async function targets(ctx: CliContext, args: string[], all: boolean): Promise<string[]> {
  if (args.length) return args;
  const list = await ctx.client.get<Summary[]>('/containers/json', { all: all || undefined });
  return list.map((c) => c.Id);
}

async function oneSample(ctx: CliContext, ref: string): Promise<StatsJSON> {
  return ctx.client.get<StatsJSON>(`/containers/${encodeURIComponent(ref)}/stats`, { stream: false });
}

export const commands: Command[] = [
  {
    name: 'stats',
    aliases: ['container stats'],
    use: 'berth stats [OPTIONS] [CONTAINER...]',
    short: 'Display a live stream of container(s) resource usage statistics',
    flags: [
      { name: 'all', short: 'a', type: 'bool', description: 'Show all containers (default shows just running)' },
      { name: 'format', type: 'string', description: 'Format output using a custom template' },
      { name: 'no-stream', type: 'bool', description: 'Disable streaming stats and only pull the first result' },
      { name: 'no-trunc', type: 'bool', description: 'Do not truncate output' },
    ],
    async run(ctx, f, args) {
      const format = f.str('format');
      const noTrunc = f.bool('no-trunc');
      const render = (rows: StatsRow[]) => renderFormatted(format, rows as unknown as Record<string, unknown>[], { defaultTable: DEFAULT_FORMAT, headers: HEADERS });
      if (f.bool('no-stream')) {
        const refs = await targets(ctx, args, f.bool('all'));
        const errors: string[] = [];
        const rows: StatsRow[] = [];
        const samples = await Promise.all(refs.map((r) => oneSample(ctx, r).catch((err: Error) => err)));
        samples.forEach((s, i) => {
          if (s instanceof Error) errors.push(`Error response from daemon: ${s.message}`);
          else rows.push(statsRow(s, refs[i]!, noTrunc));
        });
        ctx.out.write(render(rows));
        if (errors.length) throw new CliError(errors.join('\n'), 1);
        return 0;
      }
      // Streaming: one stats stream per container, the whole table redrawn each second.
      const latest = new Map<string, StatsRow>();
      const watched = new Set<string>();
      const failures: string[] = [];
      const watch = (ref: string) => {
        if (watched.has(ref)) return;
        watched.add(ref);
        void (async () => {
          try {
            const res = await ctx.client.raw('GET', `/containers/${encodeURIComponent(ref)}/stats`, { query: { stream: true } });
            for await (const s of ctx.client.jsonLines<StatsJSON>(res)) latest.set(ref, statsRow(s, ref, noTrunc));
          } catch (err) {
            if (args.length) failures.push(`Error response from daemon: ${(err as Error).message}`);
          }
          if (!args.length) {
            latest.delete(ref);
            watched.delete(ref);
          }
        })();
      };
      for (const r of await targets(ctx, args, f.bool('all'))) watch(r);
      for (;;) {
        await new Promise((r) => setTimeout(r, 1000));
        if (failures.length && failures.length >= args.length && args.length) throw new CliError(failures.join('\n'), 1);
        if (!args.length) for (const r of await targets(ctx, args, f.bool('all'))) watch(r);
        const rows = [...latest.values()];
        ctx.out.write(`\x1b[2J\x1b[H${render(rows)}`);
      }
    },
  },
];
