/**
 * berthd's iptables rules: NAT for outbound traffic, DNAT for published
 * ports, forwarding and isolation between networks. All of them live in
 * chains named after this daemon (its default bridge), so two daemons never
 * touch each other's rules. Each sync rewrites the chains whole in one
 * `iptables-restore --noflush` (declaring a chain there empties it), which
 * makes a sync after a crash or restart converge: no duplicates, no leaks.
 */
import { run } from './cmd.ts';
import type { PortMapping } from './types.ts';

export interface FirewallBridge {
  device: string;
  subnet: string;
  internal: boolean;
}

export interface FirewallState {
  bridges: FirewallBridge[];
  ports: PortMapping[];
}

interface Jump {
  table: 'nat' | 'filter';
  chain: string;
  rule: string;
  /** Insert at the top (FORWARD) rather than append. */
  first?: boolean;
}

export class Firewall {
  readonly dnat: string;
  readonly post: string;
  readonly fwd: string;
  readonly iso1: string;
  readonly iso2: string;
  private readonly jumps: Jump[];

  constructor(tag: string) {
    const t = tag.replace(/[^A-Za-z0-9_.-]/g, '_').slice(0, 15);
    this.dnat = `BERTH-${t}`;
    this.post = `BERTH-POST-${t}`;
    this.fwd = `BERTH-FWD-${t}`;
    this.iso1 = `BERTH-ISO1-${t}`;
    this.iso2 = `BERTH-ISO2-${t}`;
    this.jumps = [
      { table: 'nat', chain: 'PREROUTING', rule: `-m addrtype --dst-type LOCAL -j ${this.dnat}` },
      { table: 'nat', chain: 'OUTPUT', rule: `-m addrtype --dst-type LOCAL -j ${this.dnat}` },
      { table: 'nat', chain: 'POSTROUTING', rule: `-j ${this.post}` },
      { table: 'filter', chain: 'FORWARD', rule: `-j ${this.fwd}`, first: true },
    ];
  }

  private chainsOf(table: 'nat' | 'filter'): string[] {
    return table === 'nat' ? [this.dnat, this.post] : [this.fwd, this.iso1, this.iso2];
  }

  /** The rules for a state, as iptables-restore input. */
  render(state: FirewallState): string {
    const nat: string[] = [];
    const post: string[] = [];
    const fwd: string[] = [`-A ${this.fwd} -j ${this.iso1}`];
    const iso1: string[] = [];
    const iso2: string[] = [];
    for (const b of state.bridges) {
      if (!b.internal) post.push(`-A ${this.post} -s ${b.subnet} ! -o ${b.device} -j MASQUERADE`);
      post.push(`-A ${this.post} -o ${b.device} -m addrtype --src-type LOCAL -j MASQUERADE`);
      fwd.push(`-A ${this.fwd} -o ${b.device} -m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT`);
      fwd.push(`-A ${this.fwd} -i ${b.device} -o ${b.device} -j ACCEPT`);
      if (b.internal) {
        fwd.push(`-A ${this.fwd} -i ${b.device} ! -o ${b.device} -j DROP`);
        fwd.push(`-A ${this.fwd} -o ${b.device} ! -i ${b.device} -j DROP`);
      }
      iso1.push(`-A ${this.iso1} -i ${b.device} ! -o ${b.device} -j ${this.iso2}`);
      iso2.push(`-A ${this.iso2} -o ${b.device} -j DROP`);
    }
    for (const p of state.ports) {
      const dst = p.hostIp && p.hostIp !== '0.0.0.0' ? ` -d ${p.hostIp}/32` : '';
      nat.push(`-A ${this.dnat}${dst} -p ${p.proto} -m ${p.proto} --dport ${p.hostPort} -j DNAT --to-destination ${p.containerIp}:${p.containerPort}`);
      post.push(`-A ${this.post} -s ${p.containerIp}/32 -d ${p.containerIp}/32 -p ${p.proto} -m ${p.proto} --dport ${p.containerPort} -j MASQUERADE`);
      // Published ports are let in before the isolation chain can drop them.
      fwd.splice(1, 0, `-A ${this.fwd} -d ${p.containerIp}/32 -o ${p.device} -p ${p.proto} -m ${p.proto} --dport ${p.containerPort} -j ACCEPT`);
    }
    const bridgesOut = state.bridges.filter((b) => !b.internal).map((b) => `-A ${this.fwd} -i ${b.device} ! -o ${b.device} -j ACCEPT`);
    return [
      '*nat',
      ...this.chainsOf('nat').map((c) => `:${c} - [0:0]`),
      ...nat,
      ...post,
      'COMMIT',
      '*filter',
      ...this.chainsOf('filter').map((c) => `:${c} - [0:0]`),
      ...fwd,
      ...bridgesOut,
      ...iso1,
      ...iso2,
      'COMMIT',
      '',
    ].join('\n');
  }

  /** Create the chains (empty) and exactly one jump to each from the built-in chains. */
  async init(state: FirewallState): Promise<void> {
    await this.sync(state);
    const lines = await this.jumpFixes(true);
    if (lines) await run('iptables-restore', ['--noflush'], lines);
  }

  async sync(state: FirewallState): Promise<void> {
    await run('iptables-restore', ['--noflush'], this.render(state));
  }

  /** Remove the jumps and the chains (clean shutdown with nothing running). */
  async remove(): Promise<void> {
    const fixes = await this.jumpFixes(false);
    const out: string[] = [];
    for (const table of ['nat', 'filter'] as const) {
      const mine = fixes.split('\n').filter((l) => l.startsWith(`#${table} `)).map((l) => l.slice(table.length + 2));
      out.push(`*${table}`, ...this.chainsOf(table).map((c) => `:${c} - [0:0]`), ...mine, ...this.chainsOf(table).map((c) => `-X ${c}`), 'COMMIT');
    }
    await run('iptables-restore', ['--noflush'], out.join('\n') + '\n');
  }

  /**
   * Compare the built-in chains with the jumps we want: with `want` true,
   * restore input that adds missing jumps and deletes duplicates; with
   * false, lines (prefixed `#table `) that delete every jump.
   */
  private async jumpFixes(want: boolean): Promise<string> {
    const out: string[] = [];
    const byTable = new Map<string, string[]>();
    for (const table of ['nat', 'filter'] as const) {
      const save = await run('iptables', ['-t', table, '-S']);
      const lines: string[] = [];
      for (const j of this.jumps.filter((x) => x.table === table)) {
        const have = save.split('\n').filter((l) => l.trim() === `-A ${j.chain} ${j.rule}`).length;
        if (!want) for (let i = 0; i < have; i++) lines.push(`-D ${j.chain} ${j.rule}`);
        else if (have === 0) lines.push(j.first ? `-I ${j.chain} 1 ${j.rule}` : `-A ${j.chain} ${j.rule}`);
        else for (let i = 1; i < have; i++) lines.push(`-D ${j.chain} ${j.rule}`);
      }
      byTable.set(table, lines);
    }
    if (!want) {
      for (const [t, ls] of byTable) for (const l of ls) out.push(`#${t} ${l}`);
      return out.join('\n');
    }
    for (const [t, ls] of byTable) if (ls.length) out.push(`*${t}`, ...ls, 'COMMIT');
    return out.length ? out.join('\n') + '\n' : '';
  }
}
