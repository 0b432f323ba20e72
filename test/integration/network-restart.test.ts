/**
 * berthd restarts (cleanly and after SIGKILL) with containers on networks:
 * running containers keep their addresses, ports and names, nothing is
 * duplicated, whatever stopped meanwhile is cleaned up, and a clean
 * shutdown with nothing running leaves no bridge and no rule. Also the
 * macvlan driver, on a veth parent this test makes.
 */
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { readdirSync } from 'node:fs';
import { join } from 'node:path';
import { TestDaemon } from '../helpers/daemon.ts';
import { daemonLinks, eventually, freePort, httpGet, portsOf, rulesOf } from '../helpers/net.ts';

const d = new TestDaemon('netrs');
const parentA = `${d.bridge.replace(/^bt/, 'mp')}a`;
const parentB = `${d.bridge.replace(/^bt/, 'mp')}b`;

before(async () => {
  await d.start();
  d.loadBusybox();
});

after(async () => {
  spawnSync('ip', ['link', 'del', 'dev', parentA]);
  await d.cleanup();
});

function ok(r: { code: number; stdout: string; stderr: string }): string {
  assert.equal(r.code, 0, `${r.stderr}\n${r.stdout}\n--- daemon log ---\n${d.log.slice(-3000)}`);
  return r.stdout;
}

function sandboxFiles(): string[] {
  try {
    return readdirSync(join(d.execRoot, 'netns'));
  } catch {
    return [];
  }
}

test('after SIGKILL and restart: ports, names and addresses kept, nothing duplicated, stopped ones cleaned', async () => {
  const port = await freePort();
  ok(d.berth(['network', 'create', 'keep']));
  const net = JSON.parse(ok(d.berth(['network', 'inspect', 'keep'])))[0];
  const bridge = net.Options['com.docker.network.bridge.name'] ?? `br-${net.Id.slice(0, 12)}`;
  const web = ok(d.berth(['run', '-d', '--name', 'web', '--network', 'keep', '-p', `${port}:80`, 'busybox', 'httpd', '-f', '-p', '80', '-h', '/etc'])).trim();
  ok(d.berth(['run', '-d', '--name', 'doomed', '--network', 'keep', 'busybox', 'sleep', '300']));
  assert.equal(await eventually(() => httpGet('127.0.0.1', port, '/hostname')), `${web.slice(0, 12)}\n`);
  const rules = rulesOf(d.bridge);
  const links = daemonLinks(d.bridge);
  assert.equal(portsOf(bridge).length, 2);
  const webIp = ok(d.berth(['inspect', '-f', '{{.NetworkSettings.Networks.keep.IPAddress}}', 'web'])).trim();
  const doomedPid = Number(ok(d.berth(['inspect', '-f', '{{.State.Pid}}', 'doomed'])).trim());

  await d.stop('SIGKILL');
  // While berthd is away one container dies.
  process.kill(doomedPid, 'SIGKILL');
  await d.start();

  assert.deepEqual(rulesOf(d.bridge), rules, 'the same rules, none twice');
  assert.deepEqual(daemonLinks(d.bridge), links, 'the same bridges');
  assert.equal(await eventually(() => portsOf(bridge).length === 1), true, 'the dead container\'s veth is gone');
  assert.equal(await httpGet('127.0.0.1', port, '/hostname'), `${web.slice(0, 12)}\n`);
  const dns = ok(d.berth(['run', '--rm', '--network', 'keep', 'busybox', 'nslookup', 'web']));
  assert.match(dns, new RegExp(`Address: ${webIp.replace(/\./g, '\\.')}`));
  assert.equal(ok(d.berth(['inspect', '-f', '{{.State.Status}} {{.NetworkSettings.Networks.keep.IPAddress}}', 'doomed'])).trim(), 'exited');
  // The port is still berthd's: a second claim is refused.
  const again = d.berth(['run', '--rm', '-p', `${port}:80`, 'busybox', 'true']);
  assert.notEqual(again.code, 0);
  assert.match(again.stderr, /address already in use/);
  // A new container does not get the running one's address.
  const fresh = ok(d.berth(['run', '--rm', '--network', 'keep', 'busybox', 'ip', '-4', '-o', 'addr', 'show', 'eth0']));
  assert.doesNotMatch(fresh, new RegExp(`inet ${webIp.replace(/\./g, '\\.')}/`));

  // The restarted daemon manages what the old one made.
  ok(d.berth(['stop', '-t', '1', 'web']));
  assert.ok(!rulesOf(d.bridge).some((r) => r.includes(`--dport ${port} `)), 'DNAT removed at stop');
  assert.deepEqual(portsOf(bridge), []);
  ok(d.berth(['start', 'web']));
  assert.equal(await eventually(() => httpGet('127.0.0.1', port, '/hostname')), `${web.slice(0, 12)}\n`);
  ok(d.berth(['rm', '-f', 'web', 'doomed']));
  assert.deepEqual(sandboxFiles(), []);
  ok(d.berth(['network', 'rm', 'keep']));
  assert.deepEqual(daemonLinks(d.bridge), [d.bridge]);
});

test('a clean shutdown with nothing running removes the bridge and every rule; a start puts them back', async () => {
  ok(d.berth(['network', 'create', 'persisted']));
  await d.stop('SIGTERM');
  assert.deepEqual(daemonLinks(d.bridge), []);
  assert.deepEqual(rulesOf(d.bridge), []);
  await d.start();
  assert.equal(daemonLinks(d.bridge).length, 2, 'default bridge and the user network bridge');
  const out = ok(d.docker(['run', '--rm', '--network', 'persisted', 'busybox', 'ip', '-4', '-o', 'addr', 'show', 'eth0']));
  assert.match(out, /inet \d+\.\d+\.\d+\.\d+\//);
  ok(d.berth(['network', 'rm', 'persisted']));
});

for (const cli of ['berth', 'docker'] as const) {
  test(`${cli}: macvlan network on a veth parent`, () => {
    const run = (args: string[]) => (cli === 'berth' ? d.berth(args) : d.docker(args));
    spawnSync('ip', ['link', 'del', 'dev', parentA]);
    const mk = spawnSync('ip', ['link', 'add', parentA, 'type', 'veth', 'peer', 'name', parentB], { encoding: 'utf8' });
    assert.equal(mk.status, 0, mk.stderr);
    spawnSync('ip', ['link', 'set', parentA, 'up']);
    spawnSync('ip', ['link', 'set', parentB, 'up']);
    try {
      const net = `mv-${cli}`;
      const missing = run(['network', 'create', '-d', 'macvlan', '--subnet', d.subnet(6), net]);
      assert.notEqual(missing.code, 0);
      assert.match(missing.stderr, /parent/);
      ok(run(['network', 'create', '-d', 'macvlan', '-o', `parent=${parentA}`, '--subnet', d.subnet(6), net]));
      const target = d.addr(6, 10);
      ok(run(['run', '-d', '--name', `mv1-${cli}`, '--network', net, '--ip', target, 'busybox', 'sleep', '300']));
      const key = ok(run(['inspect', '-f', '{{.NetworkSettings.SandboxKey}}', `mv1-${cli}`])).trim();
      const link = spawnSync('nsenter', [`--net=${key}`, 'ip', '-d', '-o', 'link', 'show', 'eth0'], { encoding: 'utf8' }).stdout;
      assert.match(link, /macvlan mode bridge/);
      const out = ok(run(['run', '--rm', '--network', net, 'busybox', 'ping', '-c', '1', '-W', '2', target]));
      assert.match(out, /1 packets received/);
      ok(run(['rm', '-f', `mv1-${cli}`]));
      ok(run(['network', 'rm', net]));
      const left = spawnSync('ip', ['-o', 'link', 'show'], { encoding: 'utf8' }).stdout;
      const onParent = left.split('\n').filter((l) => l.includes(`@${parentA}:`) && !l.includes(`${parentB}@`));
      assert.deepEqual(onParent, [], 'no macvlan interfaces left on the parent');
    } finally {
      spawnSync('ip', ['link', 'del', 'dev', parentA]);
    }
  });
}
