/**
 * native/berth-netns run through the launcher, as berthd runs it: a
 * namespace with a veth endpoint on a bridge, its removal, and its errors
 * (each leaving no mount, file or interface behind).
 */
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { ROOT, TestDaemon } from '../helpers/daemon.ts';
import { NativeLauncher } from '../../src/runtime/launcher.ts';

const NATIVE = join(ROOT, 'native', 'build');
const HELPER = join(NATIVE, 'berth-netns');
// Only the daemon's directory, bridge name and addresses are used: no berthd runs.
const d = new TestDaemon('netns');
const launcher = new NativeLauncher(join(NATIVE, 'berth-launcher'));
/** Host-side names, one per test: a freed namespace's veth pair goes away asynchronously in the kernel. */
const hostIf = (n: number) => `vh${d.bridge.slice(2)}${n}`;

function mounted(path: string): boolean {
  return readFileSync('/proc/self/mounts', 'utf8').split('\n').some((l) => l.split(' ')[1] === path);
}

function linkExists(name: string): boolean {
  return spawnSync('ip', ['link', 'show', 'dev', name], { stdio: 'ignore' }).status === 0;
}

function inNs(path: string, args: string[]): string {
  const r = spawnSync('nsenter', [`--net=${path}`, 'ip', ...args], { encoding: 'utf8' });
  assert.equal(r.status, 0, r.stderr);
  return r.stdout;
}

before(() => {
  // Marked like a test daemon's bridge, so the leftover cleaner finds it after a crash.
  for (const args of [['link', 'add', d.bridge, 'type', 'bridge'], ['link', 'set', d.bridge, 'alias', `berth:${d.bridge}`], ['link', 'set', d.bridge, 'up']]) {
    const r = spawnSync('ip', args, { encoding: 'utf8' });
    assert.equal(r.status, 0, r.stderr);
  }
});

after(async () => {
  launcher.stop();
  await d.cleanup();
});

test('create: namespace with loopback, address, default route; the host end joins the bridge; destroy frees all', async () => {
  const ns = join(d.dir, 'ns1');
  writeFileSync(ns, '');
  const spec = ['eth0', hostIf(1), '02:42:0a:01:02:03', `${d.addr(0, 2)}/24`, d.addr(0, 1), '1400', d.bridge].join(',');
  const r = await launcher.runHelper([HELPER, 'create', ns, spec]);
  assert.equal(r.code, 0, r.output);
  assert.ok(mounted(ns));
  const addrs = inNs(ns, ['-o', 'addr', 'show']);
  assert.match(addrs, /lo\s+inet 127\.0\.0\.1\/8/);
  assert.match(addrs, new RegExp(`eth0\\s+inet ${d.addr(0, 2).replace(/\./g, '\\.')}/24`));
  assert.match(inNs(ns, ['link', 'show', 'eth0']), /mtu 1400 .*state UP[\s\S]*link\/ether 02:42:0a:01:02:03/);
  assert.match(inNs(ns, ['route', 'show', 'default']), new RegExp(`default via ${d.addr(0, 1).replace(/\./g, '\\.')} dev eth0`));
  const host = spawnSync('ip', ['-o', 'link', 'show', 'dev', hostIf(1)], { encoding: 'utf8' }).stdout;
  assert.match(host, new RegExp(`master ${d.bridge} state`));

  const gone = await launcher.runHelper([HELPER, 'destroy', ns]);
  assert.equal(gone.code, 0, gone.output);
  assert.ok(!mounted(ns));
  assert.ok(!existsSync(ns));
  // The kernel frees the namespace, and the veth pair with it, once nothing holds it.
  for (let i = 0; i < 250 && linkExists(hostIf(1)); i++) await new Promise((res) => setTimeout(res, 20));
  assert.ok(!linkExists(hostIf(1)), 'the host end of the pair is gone');
});

test('veth: a second endpoint in an existing namespace, without a default route', async () => {
  const ns = join(d.dir, 'ns2');
  writeFileSync(ns, '');
  assert.equal((await launcher.runHelper([HELPER, 'create', ns])).code, 0);
  const r = await launcher.runHelper([HELPER, 'veth', ns, ['eth1', hostIf(2), '02:42:0a:01:02:04', `${d.addr(1, 2)}/24`, '', '0', d.bridge].join(',')]);
  assert.equal(r.code, 0, r.output);
  assert.ok(inNs(ns, ['-o', 'addr', 'show', 'eth1']).includes(`inet ${d.addr(1, 2)}/24`));
  assert.equal(inNs(ns, ['route', 'show', 'default']).trim(), '');
  assert.equal((await launcher.runHelper([HELPER, 'destroy', ns])).code, 0);
  assert.ok(!existsSync(ns));
});

test('errors name the step and leave no namespace, file or interface behind', async () => {
  const ns = join(d.dir, 'ns3');
  const cases: Array<[string, RegExp]> = [
    [['eth0', hostIf(3), '02:42:0a:01:02:05', `${d.addr(2, 2)}/24`, '', '0', 'nosuchbridge0'].join(','), /finding the bridge \(nosuchbridge0\): No such device/],
    [['eth0', hostIf(3), 'zz:42:0a:01:02:05', `${d.addr(2, 2)}/24`, '', '0', d.bridge].join(','), /bad MAC address zz:42/],
    [['eth0', hostIf(3), '02:42:0a:01:02:05', '10.300.0.1/24', '', '0', d.bridge].join(','), /bad address 10\.300\.0\.1\/24/],
    ['eth0,only-three,fields', /bad endpoint spec/],
  ];
  for (const [spec, message] of cases) {
    writeFileSync(ns, '');
    const r = await launcher.runHelper([HELPER, 'create', ns, spec]);
    assert.equal(r.code, 1, spec);
    assert.match(r.output, message);
    assert.ok(!mounted(ns), `no namespace mounted after: ${r.output}`);
    assert.ok(!existsSync(ns), 'the namespace file is removed');
    assert.ok(!linkExists(hostIf(3)), 'no host interface left');
  }
  const usage = await launcher.runHelper([HELPER, 'bogus']);
  assert.equal(usage.code, 2);
  assert.match(usage.output, /usage: berth-netns/);
  const missing = await launcher.runHelper([join(NATIVE, 'no-such-helper')]);
  assert.equal(missing.code, 127);
  assert.match(missing.output, /exec .*no-such-helper: No such file or directory/);
});
