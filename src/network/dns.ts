/**
 * The embedded DNS server of a user-defined network. It listens on the
 * network's gateway address (UDP and TCP, port 53), answers A and PTR
 * queries for the containers on that network (names, aliases, short IDs)
 * and forwards everything else to the upstream resolvers: the container's
 * own --dns servers, else the daemon's, else the host's.
 */
import { createSocket } from 'node:dgram';
import type { Socket as UdpSocket } from 'node:dgram';
import { createServer } from 'node:net';
import type { Server, Socket } from 'node:net';

export interface Upstream {
  host: string;
  port: number;
}

export interface DnsResolver {
  /** IPv4 addresses for a name as seen from the client at `from`, or undefined when not ours. */
  lookup(name: string, from: string): string[] | undefined;
  /** The name for one of our addresses (reverse lookups). */
  reverse(ip: string): string | undefined;
  upstreams(from: string): Upstream[];
}

const TYPE_A = 1;
const TYPE_PTR = 12;
const TYPE_AAAA = 28;
const RCODE_SERVFAIL = 2;
const RCODE_NXDOMAIN = 3;

interface Question {
  id: number;
  flags: number;
  name: string;
  type: number;
  /** Offset just past the question section. */
  end: number;
}

export function parseQuestion(msg: Buffer): Question | undefined {
  if (msg.length < 12 || msg.readUInt16BE(4) !== 1) return undefined;
  const labels: string[] = [];
  let off = 12;
  while (off < msg.length) {
    const len = msg[off]!;
    off++;
    if (len === 0) break;
    if (len > 63 || off + len > msg.length) return undefined;
    labels.push(msg.subarray(off, off + len).toString('latin1'));
    off += len;
  }
  if (off + 4 > msg.length) return undefined;
  return { id: msg.readUInt16BE(0), flags: msg.readUInt16BE(2), name: labels.join('.').toLowerCase(), type: msg.readUInt16BE(off), end: off + 4 };
}

function encodeName(name: string): Buffer {
  const parts = name.split('.').filter(Boolean).map((l) => {
    const b = Buffer.from(l, 'latin1');
    return Buffer.concat([Buffer.from([b.length]), b]);
  });
  return Buffer.concat([...parts, Buffer.from([0])]);
}

/** A response to `query` with the given answers (each an rdata of `type`). */
export function buildAnswer(query: Buffer, q: Question, type: number, rdatas: Buffer[], rcode = 0): Buffer {
  const header = Buffer.alloc(12);
  header.writeUInt16BE(q.id, 0);
  // QR, the query's opcode and RD, AA and RA set.
  header.writeUInt16BE(0x8000 | (q.flags & 0x7900) | 0x0400 | 0x0080 | rcode, 2);
  header.writeUInt16BE(1, 4);
  header.writeUInt16BE(rdatas.length, 6);
  const answers = rdatas.map((rd) => {
    const a = Buffer.alloc(12);
    a.writeUInt16BE(0xc00c, 0); // pointer to the question's name
    a.writeUInt16BE(type, 2);
    a.writeUInt16BE(1, 4);
    a.writeUInt32BE(600, 6);
    a.writeUInt16BE(rd.length, 10);
    return Buffer.concat([a, rd]);
  });
  return Buffer.concat([header, query.subarray(12, q.end), ...answers]);
}

function ipBytes(ip: string): Buffer {
  return Buffer.from(ip.split('.').map(Number));
}

export class DnsServer {
  private udp?: UdpSocket;
  private tcp?: Server;
  private readonly resolver: DnsResolver;
  readonly address: string;

  constructor(address: string, resolver: DnsResolver) {
    this.address = address;
    this.resolver = resolver;
  }

  async start(): Promise<void> {
    const udp = createSocket({ type: 'udp4', reuseAddr: true });
    await new Promise<void>((resolve, reject) => {
      udp.once('error', reject);
      udp.bind(53, this.address, () => {
        udp.off('error', reject);
        resolve();
      });
    });
    udp.on('error', () => undefined);
    udp.on('message', (msg, rinfo) => {
      void this.answer(msg, rinfo.address).then((res) => {
        if (res) udp.send(res, rinfo.port, rinfo.address);
      });
    });
    this.udp = udp;
    const tcp = createServer((sock) => this.serveTcp(sock));
    await new Promise<void>((resolve) => {
      tcp.once('error', () => resolve()); // DNS over TCP is a nicety; UDP is what resolvers use.
      tcp.listen(53, this.address, () => resolve());
    });
    if (tcp.listening) this.tcp = tcp;
  }

  stop(): void {
    this.udp?.close();
    this.udp = undefined;
    this.tcp?.close();
    this.tcp = undefined;
  }

  private serveTcp(sock: Socket): void {
    let buf = Buffer.alloc(0);
    sock.on('error', () => undefined);
    sock.on('data', (d: Buffer) => {
      buf = Buffer.concat([buf, d]);
      while (buf.length >= 2 && buf.length >= 2 + buf.readUInt16BE(0)) {
        const msg = buf.subarray(2, 2 + buf.readUInt16BE(0));
        buf = buf.subarray(2 + msg.length);
        void this.answer(Buffer.from(msg), sock.remoteAddress?.replace(/^::ffff:/, '') ?? '').then((res) => {
          if (!res || sock.destroyed) return;
          const len = Buffer.alloc(2);
          len.writeUInt16BE(res.length);
          sock.write(Buffer.concat([len, res]));
        });
      }
    });
  }

  /** Answer one query (or forward it); undefined drops it. */
  async answer(msg: Buffer, from: string): Promise<Buffer | undefined> {
    const q = parseQuestion(msg);
    if (!q) return undefined;
    const name = q.name.replace(/\.$/, '');
    if (q.type === TYPE_PTR) {
      const m = /^(\d+)\.(\d+)\.(\d+)\.(\d+)\.in-addr\.arpa$/.exec(name);
      const host = m ? this.resolver.reverse(`${m[4]}.${m[3]}.${m[2]}.${m[1]}`) : undefined;
      if (host) return buildAnswer(msg, q, TYPE_PTR, [encodeName(host)]);
    } else {
      const ips = this.resolver.lookup(name, from);
      if (ips && ips.length) {
        // Our names have IPv4 addresses only: an empty answer for other types, not NXDOMAIN.
        return buildAnswer(msg, q, TYPE_A, q.type === TYPE_A ? ips.map(ipBytes) : []);
      }
      if (q.type === TYPE_AAAA && ips) return buildAnswer(msg, q, TYPE_A, []);
    }
    const ups = this.resolver.upstreams(from);
    if (ups.length === 0) return buildAnswer(msg, q, TYPE_A, [], RCODE_NXDOMAIN);
    for (const u of ups) {
      const res = await forward(msg, u);
      if (res) return res;
    }
    return buildAnswer(msg, q, TYPE_A, [], RCODE_SERVFAIL);
  }
}

/** Send a query to an upstream resolver over UDP; the answer, or undefined after a timeout. */
function forward(msg: Buffer, u: Upstream, ms = 2000): Promise<Buffer | undefined> {
  return new Promise((resolve) => {
    const s = createSocket(u.host.includes(':') ? 'udp6' : 'udp4');
    const done = (r: Buffer | undefined) => {
      clearTimeout(timer);
      s.close();
      resolve(r);
    };
    const timer = setTimeout(() => done(undefined), ms);
    s.on('error', () => done(undefined));
    s.on('message', (res) => {
      if (res.length >= 2 && res.readUInt16BE(0) === msg.readUInt16BE(0)) done(res);
    });
    s.send(msg, u.port, u.host);
  });
}
