/**
 * Networking through both CLIs against a private berthd with its own
 * default bridge, subnets and iptables chains: the default bridge, user
 * networks with embedded DNS, isolation, connect/disconnect, published TCP
 * and UDP ports, the none/host/container modes, and bad input. Traffic goes
 * only to 127.0.0.1 and to containers on bridges this test's daemon made.
 */
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { createServer } from 'node:net';
import type { Server } from 'node:net';
import { readdirSync } from 'node:fs';
import { join } from 'node:path';
import { TestDaemon } from '../helpers/daemon.ts';
import { daemonLinks, eventually, fakeResolver, freePort, httpGet, loadUdpEcho, portsOf, rulesOf, udpRoundTrip } from '../helpers/net.ts';

const d = new TestDaemon('net');
let resolver: Awaited<ReturnType<typeof fakeResolver>>;

before(async () => {
  resolver = await fakeResolver('10.123.45.67');
  await d.start(['--dns', `127.0.0.1:${resolver.port}`]);
  d.loadBusybox();
  loadUdpEcho(d);
});

after(async () => {
  resolver.close();
  await d.cleanup();
});

type Cli = 'berth' | 'docker';
const runner = (cli: Cli) => (args: string[]) => (cli === 'berth' ? d.berth(args) : d.docker(args));

function ok(r: { code: number; stdout: string; stderr: string }, what = ''): string {
  assert.equal(r.code, 0, `${what} failed: ${r.stderr}\n${r.stdout}\n--- daemon log ---\n${d.log.slice(-3000)}`);
  return r.stdout;
}

function ipOf(ctr: string, net: string): string {
  return ok(d.berth(['inspect', '-f', `{{(index .NetworkSettings.Networks "${net}").IPAddress}}`, ctr])).trim();
}

function sandboxFiles(): string[] {
  try {
    return readdirSync(join(d.execRoot, 'netns'));
  } catch {
    return [];
  }
}

test('berthd makes its default bridge from its own pool, and rules in its own chains', () => {
  const net = JSON.parse(ok(d.berth(['network', 'inspect', 'bridge'])))[0];
  const subnet: string = net.IPAM.Config[0].Subnet;
  const pool = d.addressPool.split('.').slice(0, 2).join('.');
  assert.ok(subnet.startsWith(`${pool}.`), `${subnet} should come from ${d.addressPool}`);
  assert.equal(net.Options['com.docker.network.bridge.name'], d.bridge);
  assert.deepEqual(daemonLinks(d.bridge), [d.bridge]);
  const rules = rulesOf(d.bridge);
  assert.ok(rules.some((r) => r.includes(`-A POSTROUTING -j BERTH-POST-${d.bridge}`)), rules.join('\n'));
  assert.ok(rules.some((r) => r.includes(`-s ${subnet} ! -o ${d.bridge} -j MASQUERADE`)), rules.join('\n'));
  const ls = ok(d.docker(['network', 'ls', '--format', '{{.Name}} {{.Driver}}']));
  assert.deepEqual(ls.trim().split('\n').sort(), ['bridge bridge', 'host host', 'none null']);
});

for (const cli of ['berth', 'docker'] as const) {
  const run = runner(cli);

  test(`${cli}: run uses the default bridge: address, default route, /etc/hosts`, () => {
    const net = JSON.parse(ok(run(['network', 'inspect', 'bridge'])))[0];
    const gw: string = net.IPAM.Config[0].Gateway;
    const prefix = gw.split('.').slice(0, 3).join('.');
    const out = ok(run(['run', '--rm', '--hostname', `h-${cli}`, 'busybox', 'sh', '-c', 'ip -4 -o addr show eth0; ip route; cat /etc/hosts']));
    const m = new RegExp(`inet (${prefix.replace(/\./g, '\\.')}\\.\\d+)/24`).exec(out);
    assert.ok(m, out);
    assert.match(out, new RegExp(`default via ${gw} dev eth0`));
    assert.match(out, new RegExp(`${m![1]!.replace(/\./g, '\\.')}\\th-${cli}`));
    assert.deepEqual(portsOf(d.bridge), [], 'the veth goes with the container');
  });

  test(`${cli}: a published TCP port is answered at 127.0.0.1, port shows it, rm takes the rule away`, async () => {
    const fixed = await freePort();
    const id = ok(run(['run', '-d', '-p', `${fixed}:80`, '-p', '127.0.0.1::80', 'busybox', 'httpd', '-f', '-p', '80', '-h', '/etc'])).trim();
    const ports = ok(run(['port', id]));
    const random = Number(/80\/tcp -> 127\.0\.0\.1:(\d+)/.exec(ports)?.[1]);
    assert.ok(random > 0, ports);
    assert.match(ports, new RegExp(`80/tcp -> 0\\.0\\.0\\.0:${fixed}`));
    const hostname = id.slice(0, 12);
    assert.equal(await eventually(() => httpGet('127.0.0.1', fixed, '/hostname')), `${hostname}\n`);
    assert.equal(await httpGet('127.0.0.1', random, '/hostname'), `${hostname}\n`);
    // Other containers reach it through the host's address on their bridge.
    const gw = JSON.parse(ok(run(['network', 'inspect', 'bridge'])))[0].IPAM.Config[0].Gateway as string;
    const viaHost = ok(run(['run', '--rm', 'busybox', 'sh', '-c', `printf 'GET /hostname HTTP/1.0\\r\\n\\r\\n' | nc ${gw} ${fixed}`]));
    assert.match(viaHost, new RegExp(`\\r\\n\\r\\n${hostname}\\n$`));
    const ps = ok(run(['ps', '--filter', `id=${id}`, '--format', '{{.Ports}}']));
    assert.match(ps, new RegExp(`0\\.0\\.0\\.0:${fixed}->80/tcp`));
    assert.ok(rulesOf(d.bridge).some((r) => r.includes(`--dport ${fixed} -j DNAT`)));
    ok(run(['rm', '-f', id]));
    assert.ok(!rulesOf(d.bridge).some((r) => r.includes(`--dport ${fixed} `)), 'DNAT rule removed');
    assert.equal(await httpGet('127.0.0.1', fixed, '/hostname'), '');
    assert.deepEqual(sandboxFiles(), []);
  });

  test(`${cli}: a published UDP port is answered from the host`, async () => {
    const port = await freePort();
    const id = ok(run(['run', '-d', '-p', `127.0.0.1:${port}:9999/udp`, 'udpecho'])).trim();
    assert.equal(await eventually(() => udpRoundTrip('127.0.0.1', port, `ping-${cli}`)), `ping-${cli}`);
    // -P publishes the image's EXPOSEd port on a free host port.
    const all = ok(run(['run', '-d', '-P', 'udpecho'])).trim();
    const p = Number(/9999\/udp -> 0\.0\.0\.0:(\d+)/.exec(ok(run(['port', all])))?.[1]);
    assert.ok(p > 0);
    assert.equal(await eventually(() => udpRoundTrip('127.0.0.1', p, 'again')), 'again');
    ok(run(['rm', '-f', id, all]));
  });

  test(`${cli}: containers reach each other by name and alias on a user network`, async () => {
    const i = cli === 'berth' ? 0 : 1;
    const net = `dns-${cli}`;
    ok(run(['network', 'create', '--subnet', d.subnet(i), net]));
    ok(run(['run', '-d', '--name', `srv-${cli}`, '--network', net, '--network-alias', `web-${cli}`, 'busybox', 'httpd', '-f', '-p', '80', '-h', '/etc']));
    const ip = ipOf(`srv-${cli}`, net);
    assert.ok(ip.startsWith(d.addr(i, 0).replace(/\.0$/, '.')), ip);
    const out = ok(run(['run', '--rm', '--network', net, 'busybox', 'sh', '-c', `cat /etc/resolv.conf; nslookup srv-${cli}; nslookup web-${cli}; printf 'GET /hostname HTTP/1.0\\r\\n\\r\\n' | nc web-${cli} 80`]));
    assert.match(out, new RegExp(`nameserver ${d.addr(i, 1).replace(/\./g, '\\.')}`));
    assert.match(out, /options ndots:0/);
    assert.equal(out.match(new RegExp(`Address: ${ip.replace(/\./g, '\\.')}`, 'g'))?.length, 2, out);
    assert.match(out, /HTTP\/1\.[01] 200/);
    // Names the network does not know go to the upstream resolver (one on 127.0.0.1 here).
    const fwd = ok(run(['run', '--rm', '--network', net, 'busybox', 'nslookup', `upstream-${cli}.example`]));
    assert.match(fwd, /Address: 10\.123\.45\.67/);
    assert.ok(await eventually(() => resolver.names().includes(`upstream-${cli}.example`)), 'the query reached the upstream');
    ok(run(['rm', '-f', `srv-${cli}`]));
    const gone = run(['run', '--rm', '--network', net, 'busybox', 'nslookup', `srv-${cli}`]);
    assert.doesNotMatch(gone.stdout, new RegExp(`Address: ${ip.replace(/\./g, '\\.')}`), 'a removed container no longer resolves');
    ok(run(['network', 'rm', net]));
  });

  test(`${cli}: containers on different networks cannot reach each other`, () => {
    const a = `iso-a-${cli}`;
    const b = `iso-b-${cli}`;
    ok(run(['network', 'create', a]));
    ok(run(['network', 'create', b]));
    ok(run(['run', '-d', '--name', `in-a-${cli}`, '--network', a, 'busybox', 'sleep', '300']));
    const ipA = ipOf(`in-a-${cli}`, a);
    const same = run(['run', '--rm', '--network', a, 'busybox', 'ping', '-c', '1', '-W', '2', ipA]);
    assert.equal(same.code, 0, `same network must work: ${same.stdout}${same.stderr}`);
    const across = run(['run', '--rm', '--network', b, 'busybox', 'ping', '-c', '1', '-W', '1', ipA]);
    assert.notEqual(across.code, 0, 'ping across networks must fail');
    const name = run(['run', '--rm', '--network', b, 'busybox', 'nslookup', `in-a-${cli}`]);
    assert.doesNotMatch(name.stdout, new RegExp(ipA.replace(/\./g, '\\.')), 'names of another network do not resolve');
    ok(run(['rm', '-f', `in-a-${cli}`]));
    ok(run(['network', 'rm', a, b]));
  });

  test(`${cli}: connect and disconnect a running container`, () => {
    const n1 = `cd1-${cli}`;
    const n2 = `cd2-${cli}`;
    ok(run(['network', 'create', n1]));
    ok(run(['network', 'create', n2]));
    const c = `mover-${cli}`;
    ok(run(['run', '-d', '--name', c, '--network', n1, 'busybox', 'sleep', '300']));
    ok(run(['network', 'connect', '--alias', `moved-${cli}`, n2, c]));
    const ip2 = ipOf(c, n2);
    assert.match(ip2, /^\d+\.\d+\.\d+\.\d+$/);
    const reach = ok(run(['run', '--rm', '--network', n2, 'busybox', 'sh', '-c', `nslookup moved-${cli} && ping -c 1 -W 2 moved-${cli}`]));
    assert.match(reach, new RegExp(`Address: ${ip2.replace(/\./g, '\\.')}`));
    const inspect = JSON.parse(ok(run(['network', 'inspect', n2])))[0];
    assert.equal(Object.values(inspect.Containers as Record<string, { Name: string }>)[0]?.Name, c);
    const dup = run(['network', 'connect', n2, c]);
    assert.notEqual(dup.code, 0);
    assert.match(dup.stderr, /already exists in network/);
    ok(run(['network', 'disconnect', n2, c]));
    assert.deepEqual(Object.keys(JSON.parse(ok(run(['inspect', '-f', '{{json .NetworkSettings.Networks}}', c])))), [n1]);
    // The pinger gets an address of its own: the freed one would be handed out again.
    const pinger = ip2.replace(/\d+$/, (x) => String(Number(x) + 100));
    const after = run(['run', '--rm', '--network', n2, '--ip', pinger, 'busybox', 'ping', '-c', '1', '-W', '1', ip2]);
    assert.notEqual(after.code, 0, 'the address is gone after disconnect');
    const again = run(['network', 'disconnect', n2, c]);
    assert.notEqual(again.code, 0);
    assert.match(again.stderr, /is not connected to network/);
    ok(run(['rm', '-f', c]));
    ok(run(['network', 'rm', n1, n2]));
  });

  test(`${cli}: --network none, host and container:<name>`, () => {
    const none = ok(run(['run', '--rm', '--network', 'none', 'busybox', 'ip', '-o', 'link']));
    assert.deepEqual(none.trim().split('\n').map((l) => l.split(':')[1]!.trim()), ['lo']);
    const host = ok(run(['run', '--rm', '--network', 'host', 'busybox', 'ip', '-o', 'link']));
    assert.match(host, new RegExp(`: ${d.bridge}:`), 'the host network shows the daemon bridge');
    const target = `target-${cli}`;
    ok(run(['run', '-d', '--name', target, 'busybox', 'sleep', '300']));
    const ip = ipOf(target, 'bridge');
    const joined = ok(run(['run', '--rm', '--network', `container:${target}`, 'busybox', 'sh', '-c', 'ip -4 -o addr show eth0; hostname']));
    assert.match(joined, new RegExp(`inet ${ip.replace(/\./g, '\\.')}/`));
    const tgtHost = ok(run(['inspect', '-f', '{{.Config.Hostname}}', target])).trim();
    assert.match(joined, new RegExp(`^${tgtHost}$`, 'm'));
    const conflict = run(['run', '--rm', '--network', `container:${target}`, '-p', '8080:80', 'busybox', 'true']);
    assert.notEqual(conflict.code, 0);
    ok(run(['rm', '-f', target]));
    const missing = run(['run', '--rm', '--network', 'container:no-such-ctr', 'busybox', 'true']);
    assert.notEqual(missing.code, 0);
    assert.match(missing.stderr, /No such container: no-such-ctr/);
  });

  test(`${cli}: --dns, --dns-search, --dns-option, --add-host (host-gateway), --link`, () => {
    const gw = JSON.parse(ok(run(['network', 'inspect', 'bridge'])))[0].IPAM.Config[0].Gateway as string;
    const out = ok(run(['run', '--rm', '--dns', '10.53.0.1', '--dns-search', 'corp.test', '--dns-option', 'ndots:3', '--add-host', 'db.test:10.1.2.3', '--add-host', 'hostbox:host-gateway', 'busybox', 'sh', '-c', 'cat /etc/resolv.conf /etc/hosts']));
    assert.match(out, /^nameserver 10\.53\.0\.1$/m);
    assert.match(out, /^search corp\.test$/m);
    assert.match(out, /^options ndots:3$/m);
    assert.match(out, /^10\.1\.2\.3\tdb\.test$/m);
    assert.match(out, new RegExp(`^${gw.replace(/\./g, '\\.')}\\thostbox$`, 'm'));
    const linked = `linked-${cli}`;
    ok(run(['run', '-d', '--name', linked, 'busybox', 'sleep', '300']));
    const ip = ipOf(linked, 'bridge');
    const hosts = ok(run(['run', '--rm', '--link', `${linked}:lk`, 'busybox', 'sh', '-c', 'cat /etc/hosts; ping -c 1 -W 2 lk']));
    assert.match(hosts, new RegExp(`^${ip.replace(/\./g, '\\.')}\\tlk .*${linked}$`, 'm'));
    assert.match(hosts, /1 packets received/);
    ok(run(['rm', '-f', linked]));
  });

  test(`${cli}: network create, ls, inspect, rm and prune`, () => {
    const n = `life-${cli}`;
    const id = ok(run(['network', 'create', '--label', 'suite=net', '--subnet', d.subnet(cli === 'berth' ? 2 : 3), '--gateway', d.addr(cli === 'berth' ? 2 : 3, 254), '--ip-range', `${d.addr(cli === 'berth' ? 2 : 3, 128)}/25`, '-o', 'com.docker.network.driver.mtu=1400', n])).trim();
    assert.match(id, /^[a-f0-9]{64}$/);
    const fmt = ok(run(['network', 'inspect', '-f', '{{.Name}} {{.Driver}} {{(index .IPAM.Config 0).Gateway}} {{.Labels}}', n])).trim();
    assert.equal(fmt, `${n} bridge ${d.addr(cli === 'berth' ? 2 : 3, 254)} map[suite:net]`);
    const ls = ok(run(['network', 'ls', '--filter', 'label=suite=net', '--format', '{{.Name}}'])).trim();
    assert.equal(ls, n);
    ok(run(['network', 'create', '--label', 'suite=net', '--internal', `unused-${cli}`]));
    ok(run(['run', '-d', '--name', `user-${cli}`, '--network', n, 'busybox', 'sleep', '300']));
    const ip = ipOf(`user-${cli}`, n);
    assert.ok(Number(ip.split('.')[3]) >= 128, `address ${ip} comes from the ip-range`);
    const fixedIp = d.addr(cli === 'berth' ? 2 : 3, 20);
    const own = ok(run(['run', '--rm', '--network', n, '--ip', fixedIp, '--mac-address', '02:42:de:ad:be:ef', 'busybox', 'sh', '-c', 'ip -4 -o addr show eth0; cat /sys/class/net/eth0/address']));
    assert.match(own, new RegExp(`inet ${fixedIp.replace(/\./g, '\\.')}/24`));
    assert.match(own, /^02:42:de:ad:be:ef$/m);
    const taken = run(['run', '--rm', '--network', n, '--ip', ip, 'busybox', 'true']);
    assert.notEqual(taken.code, 0);
    assert.match(taken.stderr, /Address already in use/);
    const mtu = ok(run(['run', '--rm', '--network', n, 'busybox', 'cat', '/sys/class/net/eth0/mtu'])).trim();
    assert.equal(mtu, '1400');
    const inUse = run(['network', 'rm', n]);
    assert.notEqual(inUse.code, 0);
    assert.match(inUse.stderr, /has active endpoints/);
    const pruned = ok(run(['network', 'prune', '-f', '--filter', 'label=suite=net']));
    assert.match(pruned, new RegExp(`unused-${cli}`));
    assert.doesNotMatch(pruned, new RegExp(`^${n}$`, 'm'));
    ok(run(['rm', '-f', `user-${cli}`]));
    assert.equal(ok(run(['network', 'rm', n])).trim(), n);
    const predefined = run(['network', 'rm', 'bridge']);
    assert.notEqual(predefined.code, 0);
    assert.match(predefined.stderr, /pre-defined network and cannot be removed/);
    assert.deepEqual(daemonLinks(d.bridge), [d.bridge], 'network bridges are gone');
  });

  test(`${cli}: bad input gets a clear error and leaves nothing behind`, async () => {
    const before = { links: daemonLinks(d.bridge), rules: rulesOf(d.bridge), ctrs: ok(run(['ps', '-aq'])) };
    const n = `bad-${cli}`;
    const i = cli === 'berth' ? 4 : 5;
    ok(run(['network', 'create', '--subnet', d.subnet(i), n]));
    const linksWithNet = daemonLinks(d.bridge);
    const overlap = run(['network', 'create', '--subnet', `${d.addr(i, 128)}/25`, `${n}-2`]);
    assert.notEqual(overlap.code, 0);
    assert.match(overlap.stderr, /overlaps/);
    const gw = run(['network', 'create', '--subnet', d.subnet(6), '--gateway', '192.0.2.99', `${n}-3`]);
    assert.notEqual(gw.code, 0);
    assert.match(gw.stderr, /no matching subnet for gateway 192\.0\.2\.99/);
    const cidr = run(['network', 'create', '--subnet', '300.1.2.0/24', `${n}-4`]);
    assert.notEqual(cidr.code, 0);
    assert.match(cidr.stderr, /invalid CIDR address: 300\.1\.2\.0\/24/);
    const dup = run(['network', 'create', n]);
    assert.notEqual(dup.code, 0);
    assert.match(dup.stderr, /already exists/);
    const driver = run(['network', 'create', '-d', 'nosuchdriver', `${n}-5`]);
    assert.notEqual(driver.code, 0);
    assert.match(driver.stderr, /plugin not found/);
    const parent = run(['network', 'create', '-d', 'macvlan', '-o', 'parent=nosuchif0', `${n}-6`]);
    assert.notEqual(parent.code, 0);
    assert.match(parent.stderr, /parent interface was not found on the host: nosuchif0/);
    assert.deepEqual(daemonLinks(d.bridge), linksWithNet, 'failed creates make no bridge');
    assert.equal(ok(run(['network', 'ls', '-q', '--filter', `name=${n}-`])), '');

    const unknown = run(['run', '--rm', '--network', 'no-such-net', 'busybox', 'true']);
    assert.equal(unknown.code, 125);
    assert.match(unknown.stderr, /network no-such-net not found/);
    const outside = run(['run', '--rm', '--network', n, '--ip', '192.0.2.50', 'busybox', 'true']);
    assert.equal(outside.code, 125);
    assert.match(outside.stderr, /no configured subnet or ip-range contain the IP address 192\.0\.2\.50/);
    const onDefault = run(['run', '--rm', '--ip', '10.9.9.9', 'busybox', 'true']);
    assert.equal(onDefault.code, 125);
    assert.match(onDefault.stderr, /user defined networks only/);
    const malformed = run(['run', '--rm', '-p', '80x', 'busybox', 'true']);
    assert.equal(malformed.code, 125);
    assert.match(malformed.stderr, /invalid containerPort: 80x|Invalid containerPort: 80x/i);
    const badHost = run(['run', '--rm', '--add-host', 'x:not-an-ip', 'busybox', 'true']);
    assert.notEqual(badHost.code, 0);
    assert.match(badHost.stderr, /invalid IP address in add-host: "not-an-ip"/i);

    // A host port someone else holds: the start fails, nothing stays set up.
    const port = await freePort();
    const holder: Server = createServer();
    await new Promise<void>((r) => holder.listen(port, '0.0.0.0', () => r()));
    try {
      const taken = run(['run', '-d', '--name', `taken-${cli}`, '-p', `${port}:80`, 'busybox', 'sleep', '300']);
      assert.notEqual(taken.code, 0);
      assert.match(taken.stderr, new RegExp(`0\\.0\\.0\\.0:${port}.*address already in use`));
      assert.equal(ok(run(['inspect', '-f', '{{.State.Status}}', `taken-${cli}`])).trim(), 'created');
      ok(run(['rm', `taken-${cli}`]));
    } finally {
      holder.close();
    }
    // Two containers asking for one port: the second is refused, the first keeps it.
    const first = ok(run(['run', '-d', '-p', `${port}:80`, 'busybox', 'httpd', '-f', '-p', '80', '-h', '/etc'])).trim();
    const second = run(['run', '--rm', '-p', `${port}:80`, 'busybox', 'true']);
    assert.notEqual(second.code, 0);
    assert.match(second.stderr, /address already in use/);
    assert.equal(await eventually(() => httpGet('127.0.0.1', port, '/hostname')), `${first.slice(0, 12)}\n`);
    ok(run(['rm', '-f', first]));

    ok(run(['network', 'rm', n]));
    assert.deepEqual(daemonLinks(d.bridge), before.links);
    assert.deepEqual(rulesOf(d.bridge), before.rules);
    assert.equal(ok(run(['ps', '-aq'])), before.ctrs);
    assert.deepEqual(sandboxFiles(), []);
    assert.deepEqual(portsOf(d.bridge), []);
  });
}

test('50 containers on one network all resolve by name', () => {
  const net = 'fifty';
  ok(d.berth(['network', 'create', net]));
  const names = Array.from({ length: 50 }, (_, i) => `c${i}`);
  for (const n of names) ok(d.berth(['run', '-d', '--name', n, '--network', net, 'busybox', 'sleep', '600']), n);
  const ips = new Map(names.map((n) => [n, ipOf(n, net)]));
  assert.equal(new Set(ips.values()).size, 50, 'every container has its own address');
  const script = names.map((n) => `nslookup ${n} | grep '^Address: ' | tail -1 | sed 's/^/${n} /'`).join('; ');
  const out = ok(d.berth(['run', '--rm', '--network', net, 'busybox', 'sh', '-c', script]));
  const got = new Map(out.trim().split('\n').map((l) => l.split(' Address: ') as [string, string]));
  for (const n of names) assert.equal(got.get(n), ips.get(n), `${n} resolves to its address`);
  ok(d.berth(['rm', '-f', ...names]));
  ok(d.berth(['network', 'rm', net]));
  assert.deepEqual(portsOf(d.bridge), []);
});
