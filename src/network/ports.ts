/**
 * Published ports: validating docker's PortBindings, and reserving the host
 * ports. berth forwards published ports with DNAT rules, so nothing would
 * stop two containers (or a host program) from claiming the same port;
 * berthd holds a socket bound to each published port for as long as the
 * container runs, which makes "port in use" a clear error at start.
 */
import { createSocket } from 'node:dgram';
import type { Socket as UdpSocket } from 'node:dgram';
import { createServer } from 'node:net';
import type { Server } from 'node:net';
import type { PortBinding } from '../engine/container-types.ts';
import { parseIp } from './ipv4.ts';
import { BerthError, invalid } from '../util/errors.ts';

export interface PortRequest {
  proto: 'tcp' | 'udp';
  containerPort: number;
  hostIp: string;
  /** Inclusive host port range; [0, 0] for any free port. */
  hostPorts: [number, number];
}

export function parsePortKey(key: string): { port: number; proto: 'tcp' | 'udp' } {
  const m = /^(\d+)(?:\/(tcp|udp|sctp))?$/i.exec(key);
  const port = m ? Number(m[1]) : NaN;
  if (!m || !(port >= 1 && port <= 65535)) throw invalid(`invalid port specification: "${key}"`);
  const proto = (m[2] ?? 'tcp').toLowerCase();
  if (proto === 'sctp') throw invalid(`invalid port specification: "${key}": sctp is not supported`);
  return { port, proto: proto as 'tcp' | 'udp' };
}

function parseHostPorts(s: string, key: string): [number, number] {
  if (!s) return [0, 0];
  const m = /^(\d+)(?:-(\d+))?$/.exec(s);
  const lo = m ? Number(m[1]) : NaN;
  const hi = m?.[2] ? Number(m[2]) : lo;
  if (!m || !(lo >= 0 && lo <= 65535) || !(hi >= lo && hi <= 65535)) throw invalid(`invalid port specification: "${s}" for ${key}`);
  return [lo, hi];
}

/** The published ports a container asks for: its bindings, plus every exposed port with -P. */
export function portRequests(bindings: Record<string, PortBinding[] | null> | null | undefined, exposed: Record<string, object> | undefined, publishAll: boolean): PortRequest[] {
  const out: PortRequest[] = [];
  const seen = new Set<string>();
  for (const [key, list] of Object.entries(bindings ?? {})) {
    const { port, proto } = parsePortKey(key);
    seen.add(`${port}/${proto}`);
    for (const b of list?.length ? list : [{ HostIp: '', HostPort: '' }]) {
      const hostIp = b.HostIp ?? '';
      if (hostIp && parseIp(hostIp) === undefined) {
        if (hostIp.includes(':')) continue; // IPv6 bindings: berth publishes on IPv4 only
        throw invalid(`invalid host IP address: ${hostIp}`);
      }
      out.push({ proto, containerPort: port, hostIp: hostIp || '0.0.0.0', hostPorts: parseHostPorts(b.HostPort ?? '', key) });
    }
  }
  if (publishAll) {
    for (const key of Object.keys(exposed ?? {})) {
      const { port, proto } = parsePortKey(key);
      if (seen.has(`${port}/${proto}`)) continue;
      out.push({ proto, containerPort: port, hostIp: '0.0.0.0', hostPorts: [0, 0] });
    }
  }
  return out;
}

type Holder = Server | UdpSocket;

function bindOne(proto: 'tcp' | 'udp', ip: string, port: number): Promise<{ holder: Holder; port: number }> {
  return new Promise((resolve, reject) => {
    if (proto === 'tcp') {
      const srv = createServer((s) => s.destroy());
      srv.once('error', reject);
      srv.listen({ host: ip, port, exclusive: true, backlog: 1 }, () => {
        srv.removeListener('error', reject);
        srv.on('error', () => undefined);
        resolve({ holder: srv, port: (srv.address() as { port: number }).port });
      });
    } else {
      const s = createSocket('udp4');
      s.once('error', reject);
      s.bind({ address: ip, port, exclusive: true }, () => {
        s.removeListener('error', reject);
        s.on('error', () => undefined);
        resolve({ holder: s, port: s.address().port });
      });
    }
  });
}

function closeHolder(h: Holder): void {
  try {
    h.close();
  } catch {
    // already closed
  }
}

/** Host ports held for running containers. */
export class PortReservations {
  private readonly held = new Map<string, Holder[]>();

  /**
   * Bind every requested port (a free one from the range, or any), all or
   * nothing. `describe` words the error for one request.
   */
  async reserve(owner: string, reqs: PortRequest[], describe: (r: PortRequest, port: number) => string): Promise<number[]> {
    const holders: Holder[] = [];
    const ports: number[] = [];
    try {
      for (const r of reqs) {
        const [lo, hi] = r.hostPorts;
        let last: unknown;
        let got: { holder: Holder; port: number } | undefined;
        for (let p = lo; p <= hi && !got; p++) {
          try {
            got = await bindOne(r.proto, r.hostIp, p);
          } catch (err) {
            last = err;
          }
        }
        if (!got) {
          const code = (last as NodeJS.ErrnoException | undefined)?.code;
          const why = code === 'EADDRINUSE' ? 'address already in use' : code === 'EADDRNOTAVAIL' ? 'cannot assign requested address' : code === 'EACCES' ? 'permission denied' : String((last as Error | undefined)?.message ?? last);
          throw new BerthError('System', `${describe(r, lo)}: ${why}`);
        }
        holders.push(got.holder);
        ports.push(got.port);
      }
    } catch (err) {
      for (const h of holders) closeHolder(h);
      throw err;
    }
    this.held.set(owner, [...(this.held.get(owner) ?? []), ...holders]);
    return ports;
  }

  release(owner: string): void {
    for (const h of this.held.get(owner) ?? []) closeHolder(h);
    this.held.delete(owner);
  }

  releaseAll(): void {
    for (const k of [...this.held.keys()]) this.release(k);
  }
}
