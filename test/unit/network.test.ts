/** The pure parts of networking: CIDR math, address allocation, port specs, the DNS codec, firewall rules. */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { carve, contains, formatIp, overlaps, parseIp, parseSubnet, subnetString } from '../../src/network/ipv4.ts';
import { AddressPool } from '../../src/network/ipam.ts';
import { portRequests } from '../../src/network/ports.ts';
import { parsePortSpecs } from '../../src/cli/port-specs.ts';
import { DnsServer, parseQuestion } from '../../src/network/dns.ts';
import { Firewall } from '../../src/network/firewall.ts';
import { Sandboxes } from '../../src/network/sandbox.ts';
import { existsSync, mkdirSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { withTmpDir } from '../helpers/tmp.ts';

test('subnets: parse, contain, overlap, carve', () => {
  assert.equal(subnetString(parseSubnet('10.1.2.3/24')), '10.1.2.0/24');
  assert.throws(() => parseSubnet('300.1.1.0/24'), /invalid CIDR address/);
  assert.throws(() => parseSubnet('10.0.0.0/33'), /invalid CIDR address/);
  assert.ok(contains(parseSubnet('10.1.0.0/16'), parseIp('10.1.200.9')!));
  assert.ok(!contains(parseSubnet('10.1.0.0/16'), parseIp('10.2.0.1')!));
  assert.ok(overlaps(parseSubnet('10.1.0.0/16'), parseSubnet('10.1.5.0/24')));
  assert.ok(!overlaps(parseSubnet('10.1.0.0/24'), parseSubnet('10.1.1.0/24')));
  assert.deepEqual([...carve(parseSubnet('10.0.0.0/22'), 24)].map(subnetString), ['10.0.0.0/24', '10.0.1.0/24', '10.0.2.0/24', '10.0.3.0/24']);
  assert.equal(formatIp(parseIp('192.168.255.1')!), '192.168.255.1');
});

test('address pool: gateway and broadcast skipped, ip-range, --ip checks, release', () => {
  const p = new AddressPool({ Subnet: '10.5.0.0/29', Gateway: '10.5.0.1' });
  const got = [p.allocate(), p.allocate(), p.allocate(), p.allocate(), p.allocate()];
  assert.deepEqual(got, ['10.5.0.2', '10.5.0.3', '10.5.0.4', '10.5.0.5', '10.5.0.6']);
  assert.throws(() => p.allocate(), /no available IPv4 addresses/);
  p.release('10.5.0.4');
  assert.equal(p.allocate(), '10.5.0.4');
  const r = new AddressPool({ Subnet: '10.6.0.0/24', IPRange: '10.6.0.128/25' });
  assert.equal(r.allocate(), '10.6.0.128');
  assert.equal(r.allocate('10.6.0.9'), '10.6.0.9');
  assert.throws(() => r.allocate('10.6.0.9'), /Address already in use/);
  assert.throws(() => r.allocate('10.6.0.1'), /Address already in use/);
  assert.throws(() => r.allocate('10.7.0.9'), /no configured subnet or ip-range contain the IP address 10\.7\.0\.9/);
});

test('port specs: docker CLI forms become bindings; the daemon validates them', () => {
  const s = parsePortSpecs(['8080:80', '127.0.0.1::53/udp', '9000-9001:7000-7001', '81', '5000-5010:90'], ['443', '6000-6001/udp']);
  assert.deepEqual(s.bindings['80/tcp'], [{ HostIp: '', HostPort: '8080' }]);
  assert.deepEqual(s.bindings['53/udp'], [{ HostIp: '127.0.0.1', HostPort: '' }]);
  assert.deepEqual(s.bindings['7001/tcp'], [{ HostIp: '', HostPort: '9001' }]);
  assert.deepEqual(s.bindings['81/tcp'], [{ HostIp: '', HostPort: '' }]);
  assert.deepEqual(s.bindings['90/tcp'], [{ HostIp: '', HostPort: '5000-5010' }]);
  assert.ok('443/tcp' in s.exposed && '6001/udp' in s.exposed);
  assert.throws(() => parsePortSpecs(['80x'], []), /invalid containerPort: 80x/);
  assert.throws(() => parsePortSpecs(['1:2:3:4'], []), /invalid port format/);
  assert.throws(() => parsePortSpecs(['8000-8002:80-81'], []), /invalid ranges/);
  const reqs = portRequests({ '80/tcp': [{ HostIp: '', HostPort: '8080' }] }, { '80/tcp': {}, '53/udp': {} }, true);
  assert.deepEqual(reqs.map((r) => `${r.hostIp}:${r.hostPorts.join('-')}->${r.containerPort}/${r.proto}`), ['0.0.0.0:8080-8080->80/tcp', '0.0.0.0:0-0->53/udp']);
  assert.throws(() => portRequests({ 'abc/tcp': [] }, undefined, false), /invalid port specification/);
  assert.throws(() => portRequests({ '80/tcp': [{ HostIp: 'nope', HostPort: '1' }] }, undefined, false), /invalid host IP address/);
});

function query(name: string, type: number): Buffer {
  const labels = name.split('.').map((l) => Buffer.concat([Buffer.from([l.length]), Buffer.from(l)]));
  const tail = Buffer.alloc(4);
  tail.writeUInt16BE(type, 0);
  tail.writeUInt16BE(1, 2);
  return Buffer.concat([Buffer.from([0x12, 0x34, 0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 0]), ...labels, Buffer.from([0]), tail]);
}

test('embedded DNS: A answers for our names, empty AAAA, PTR, NXDOMAIN without upstreams', async () => {
  const dns = new DnsServer('127.0.0.1', {
    lookup: (n) => (n === 'web' ? ['10.0.0.5', '10.0.0.6'] : undefined),
    reverse: (ip) => (ip === '10.0.0.5' ? 'web.net' : undefined),
    upstreams: () => [],
  });
  const a = (await dns.answer(query('Web', 1), '10.0.0.9'))!;
  assert.equal(a.readUInt16BE(0), 0x1234);
  assert.equal(a.readUInt16BE(6), 2, 'two answers');
  assert.deepEqual([...a.subarray(a.length - 4)], [10, 0, 0, 6]);
  const aaaa = (await dns.answer(query('web', 28), '10.0.0.9'))!;
  assert.equal(aaaa.readUInt16BE(6), 0);
  assert.equal(aaaa.readUInt16BE(2) & 0xf, 0, 'NOERROR');
  const ptr = (await dns.answer(query('5.0.0.10.in-addr.arpa', 12), '10.0.0.9'))!;
  assert.ok(ptr.includes(Buffer.from([3, ...Buffer.from('web'), 3, ...Buffer.from('net'), 0])));
  const nx = (await dns.answer(query('other', 1), '10.0.0.9'))!;
  assert.equal(nx.readUInt16BE(2) & 0xf, 3);
  assert.equal(parseQuestion(Buffer.from([1, 2, 3])), undefined);
});

test('firewall: rules live in chains named after the daemon, ports DNATed, networks isolated', () => {
  const fw = new Firewall('bt123');
  const text = fw.render({
    bridges: [{ device: 'bt123', subnet: '10.1.0.0/24', internal: false }, { device: 'br-x', subnet: '10.2.0.0/24', internal: true }],
    ports: [{ proto: 'udp', hostIp: '127.0.0.1', hostPort: 5353, containerIp: '10.1.0.2', containerPort: 53, device: 'bt123' }],
  });
  assert.match(text, /^:BERTH-bt123 - \[0:0\]$/m);
  assert.match(text, /-A BERTH-bt123 -d 127\.0\.0\.1\/32 -p udp -m udp --dport 5353 -j DNAT --to-destination 10\.1\.0\.2:53/);
  assert.match(text, /-A BERTH-POST-bt123 -s 10\.1\.0\.0\/24 ! -o bt123 -j MASQUERADE/);
  assert.doesNotMatch(text, /-s 10\.2\.0\.0\/24 ! -o br-x -j MASQUERADE/, 'no NAT out of an internal network');
  assert.match(text, /-A BERTH-FWD-bt123 -i br-x ! -o br-x -j DROP/);
  assert.match(text, /-A BERTH-ISO2-bt123 -o bt123 -j DROP/);
  for (const line of text.split('\n').filter((l) => l.startsWith('-A '))) assert.match(line, /^-A BERTH-[A-Z0-9]*-?bt123 /);
});

test('sandbox removals: a failed one does not make the next skip its work, and settle waits for all', () => withTmpDir('berth-sandbox-', async (dir) => {
  // No namespace is mounted here, so removal is only the files' (no helper runs).
  const sb = new Sandboxes(dir, join(import.meta.dirname, '..', '..', 'native', 'build'));
  await sb.init();
  const stuck = join(sb.dir, 'c1');
  mkdirSync(stuck);
  writeFileSync(join(stuck, 'x'), ''); // a directory with something in it: rm without recursion fails
  await assert.rejects(sb.destroy('c1'));
  rmSync(stuck, { recursive: true });
  writeFileSync(stuck, '');
  await sb.destroy('c1');
  assert.equal(existsSync(stuck), false, 'the removal after a failed one did its work');

  // settle(): every removal runs to its end even when one fails first.
  mkdirSync(join(sb.dir, 'c2'));
  writeFileSync(join(sb.dir, 'c2', 'x'), '');
  writeFileSync(join(sb.dir, 'c3'), '');
  writeFileSync(join(sb.dir, 'c3.json'), '{}');
  const failing = sb.destroy('c2');
  const fine = sb.destroy('c3');
  failing.catch(() => undefined);
  await assert.rejects(sb.settle());
  // Already done when settle() answers, not merely started.
  assert.equal(existsSync(join(sb.dir, 'c3')), false);
  assert.equal(existsSync(join(sb.dir, 'c3.json')), false);
  await fine;
}));
