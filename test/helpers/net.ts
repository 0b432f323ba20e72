/**
 * Network test helpers: free ports on loopback, talking to published ports,
 * a fake upstream resolver on 127.0.0.1, and views of what a daemon put on
 * the host (veths on its bridges, its iptables rules).
 */
import { createSocket } from 'node:dgram';
import { createServer, connect } from 'node:net';
import { execFileSync, spawn, spawnSync } from 'node:child_process';
import { mkdirSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { ROOT, BUSYBOX_TAR } from './daemon.ts';
import type { TestDaemon } from './daemon.ts';

/** A port nobody listens on right now (TCP and UDP). */
export async function freePort(): Promise<number> {
  for (;;) {
    const port = await new Promise<number>((resolve) => {
      const s = createServer();
      s.listen(0, '0.0.0.0', () => {
        const p = (s.address() as { port: number }).port;
        s.close(() => resolve(p));
      });
    });
    const udpFree = await new Promise<boolean>((resolve) => {
      const u = createSocket('udp4');
      u.once('error', () => resolve(false));
      u.bind(port, '0.0.0.0', () => u.close(() => resolve(true)));
    });
    if (udpFree) return port;
  }
}

/** GET a path over plain HTTP/1.0 from host:port; the body, or '' when nothing answers. */
export function httpGet(host: string, port: number, path: string): Promise<string> {
  return new Promise((resolve) => {
    const s = connect({ host, port });
    let data = '';
    s.setTimeout(3000, () => s.destroy());
    s.on('connect', () => s.write(`GET ${path} HTTP/1.0\r\nHost: x\r\n\r\n`));
    s.on('data', (d: Buffer) => { data += d.toString(); });
    s.on('error', () => resolve(''));
    s.on('close', () => {
      const i = data.indexOf('\r\n\r\n');
      resolve(i >= 0 ? data.slice(i + 4) : '');
    });
  });
}

/** Send a datagram and wait for one back; '' after a second of silence. */
export function udpRoundTrip(host: string, port: number, msg: string): Promise<string> {
  return new Promise((resolve) => {
    const s = createSocket('udp4');
    const t = setTimeout(() => { s.close(); resolve(''); }, 1000);
    s.on('message', (m) => { clearTimeout(t); s.close(); resolve(m.toString()); });
    s.on('error', () => { clearTimeout(t); s.close(); resolve(''); });
    s.send(msg, port, host);
  });
}

/** Retry an async check until it returns something truthy (servers in containers start asynchronously). */
export async function eventually<T>(fn: () => Promise<T> | T, tries = 40): Promise<T> {
  let last = await fn();
  for (let i = 1; i < tries && !last; i++) {
    await new Promise((r) => setTimeout(r, 150));
    last = await fn();
  }
  return last;
}

/**
 * A resolver on 127.0.0.1 answering every A query with `answer`, in a child
 * process (the tests block in spawnSync while containers query it). `names()`
 * lists the names it was asked for.
 */
export async function fakeResolver(answer: string): Promise<{ port: number; names: () => string[]; close: () => void }> {
  const script = `
    const dgram = require('node:dgram');
    const s = dgram.createSocket('udp4');
    s.on('message', (msg, r) => {
      let off = 12; const labels = [];
      while (msg[off]) { labels.push(msg.subarray(off + 1, off + 1 + msg[off]).toString()); off += msg[off] + 1; }
      process.stdout.write('Q ' + labels.join('.') + '\\n');
      const isA = msg.readUInt16BE(off + 1) === 1;
      const h = Buffer.from(msg.subarray(0, 12));
      h.writeUInt16BE(0x8180, 2); h.writeUInt16BE(isA ? 1 : 0, 6); h.writeUInt16BE(0, 8); h.writeUInt16BE(0, 10);
      const rr = Buffer.from([0xc0, 0x0c, 0, 1, 0, 1, 0, 0, 0, 60, 0, 4, ${answer.split('.').map(Number).join(', ')}]);
      const q = msg.subarray(12, off + 5);
      s.send(isA ? Buffer.concat([h, q, rr]) : Buffer.concat([h, q]), r.port, r.address);
    });
    s.bind(0, '127.0.0.1', () => process.stdout.write('PORT ' + s.address().port + '\\n'));
  `;
  const child = spawn(process.execPath, ['-e', script], { stdio: ['ignore', 'pipe', 'inherit'] });
  let out = '';
  child.stdout!.on('data', (d: Buffer) => { out += d.toString(); });
  const port = await eventually(() => Number(/PORT (\d+)/.exec(out)?.[1] ?? 0), 100);
  if (!port) throw new Error('fake resolver did not start');
  return {
    port,
    names: () => out.split('\n').filter((l) => l.startsWith('Q ')).map((l) => l.slice(2)),
    close: () => child.kill('SIGKILL'),
  };
}

/** Host interfaces enslaved to a bridge (a container's veth ends). */
export function portsOf(bridge: string): string[] {
  const out = spawnSync('ip', ['-o', 'link', 'show', 'master', bridge], { encoding: 'utf8' }).stdout ?? '';
  return out.split('\n').filter(Boolean).map((l) => l.split(':')[1]!.trim().replace(/@.*$/, ''));
}

/** The rules in this daemon's chains, sorted (nat and filter). */
export function rulesOf(bridge: string): string[] {
  const out: string[] = [];
  for (const t of ['nat', 'filter']) {
    const text = spawnSync('iptables', ['-t', t, '-S'], { encoding: 'utf8' }).stdout ?? '';
    out.push(...text.split('\n').filter((l) => l.includes(`-${bridge}`)).map((l) => `${t} ${l}`));
  }
  return out.sort();
}

/** Links made by this daemon (its bridges carry the alias berth:<default bridge>). */
export function daemonLinks(bridge: string): string[] {
  const links = JSON.parse(execFileSync('ip', ['-j', 'link', 'show'], { encoding: 'utf8' })) as Array<{ ifname: string; ifalias?: string }>;
  return links.filter((l) => l.ifalias === `berth:${bridge}`).map((l) => l.ifname).sort();
}

/** Import busybox plus a static UDP echo server as `udpecho:latest`. */
export function loadUdpEcho(d: TestDaemon): void {
  const dir = join(d.dir, 'udpecho');
  mkdirSync(join(dir, 'root'), { recursive: true });
  execFileSync('tar', ['-C', join(dir, 'root'), '-xf', BUSYBOX_TAR]);
  execFileSync('gcc', ['-static', '-O2', '-o', join(dir, 'root', 'udp-echo'), join(ROOT, 'test', 'fixtures', 'udp-echo.c')]);
  execFileSync('tar', ['-C', join(dir, 'root'), '-cf', join(dir, 'img.tar'), '.']);
  const r = d.berth(['import', '-c', 'CMD ["/udp-echo", "9999"]', '-c', 'EXPOSE 9999/udp', join(dir, 'img.tar'), 'udpecho:latest']);
  if (r.code !== 0) throw new Error(`import failed: ${r.stderr}`);
  rmSync(dir, { recursive: true, force: true });
}
