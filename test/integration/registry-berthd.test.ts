/**
 * berthd against `berth registry serve`: push through the berth CLI, pull
 * back through both the berth CLI and the docker CLI and run the image, a
 * multi-platform index put there by skopeo, and login with basic and token
 * authentication (htpasswd bcrypt).
 */
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { TestDaemon, ROOT } from '../helpers/daemon.ts';
import { BerthRegistry, removeDir, testDir, withAuthRegistry } from '../helpers/berth-registry.ts';
import { pushMultiPlatform } from '../helpers/oci-layout.ts';

const d = new TestDaemon('reg-berthd');
const dir = testDir('registry-berthd');
const reg = new BerthRegistry(join(dir, 'root'));

before(async () => {
  await reg.start();
  await d.start();
  d.loadBusybox();
});

after(async () => {
  await d.cleanup();
  await reg.stop();
  removeDir(dir);
});

test('berth push to the berth registry; berth and docker pull it back and run it', () => {
  const ref = `${reg.host}/library/busybox:v1`;
  assert.equal(d.berth(['tag', 'busybox:latest', ref]).code, 0);
  const push = d.berth(['push', ref]);
  assert.equal(push.code, 0, push.stderr + push.stdout);
  const digest = /digest: (sha256:[a-f0-9]{64})/.exec(push.stdout)?.[1];
  assert.ok(digest, push.stdout);
  assert.equal(d.berth(['rmi', ref]).code, 0);

  const pull = d.berth(['pull', ref]);
  assert.equal(pull.code, 0, pull.stderr);
  assert.match(pull.stdout, new RegExp(`Digest: ${digest}`));
  const run = d.berth(['run', '--rm', ref, 'echo', 'from the berth registry']);
  assert.equal(run.code, 0, run.stderr);
  assert.equal(run.stdout.trim(), 'from the berth registry');

  assert.equal(d.docker(['rmi', ref]).code, 0);
  const dpull = d.docker(['pull', ref]);
  assert.equal(dpull.code, 0, dpull.stderr);
  assert.match(dpull.stdout, new RegExp(`Digest: ${digest}`));
  const digests = d.docker(['image', 'inspect', '-f', '{{json .RepoDigests}}', ref]);
  assert.match(digests.stdout, new RegExp(`${reg.host}/library/busybox@${digest}`));
  const missing = d.berth(['pull', `${reg.host}/library/nothing:v1`]);
  assert.notEqual(missing.code, 0);
});

test('berthd pulls its platform from a multi-platform index on the berth registry', () => {
  pushMultiPlatform(ROOT, dir, reg.host);
  const pull = d.berth(['pull', '--platform', 'linux/amd64', `${reg.host}/multi/busybox:v1`]);
  assert.equal(pull.code, 0, pull.stderr);
  const arch = d.berth(['image', 'inspect', '-f', '{{.Architecture}}', `${reg.host}/multi/busybox:v1`]);
  assert.equal(arch.stdout.trim(), 'amd64');
  const run = d.berth(['run', '--rm', `${reg.host}/multi/busybox:v1`, 'echo', 'multi']);
  assert.equal(run.code, 0, run.stderr);
  assert.equal(run.stdout.trim(), 'multi');
});

for (const mode of ['basic', 'token'] as const) {
  test(`berth login, push and pull with ${mode} authentication`, async () => {
    await withAuthRegistry(dir, mode, (r) => {
      const ref = `${r.host}/secure/busybox:latest`;
      assert.equal(d.berth(['tag', 'busybox:latest', ref]).code, 0);
      const denied = d.berth(['push', ref]);
      assert.notEqual(denied.code, 0);
      assert.notEqual(d.berth(['login', '-u', 'alice', '--password-stdin', r.host], 'wrong').code, 0);
      const login = d.berth(['login', '-u', 'alice', '--password-stdin', r.host], 'bcrypt pass');
      assert.equal(login.code, 0, login.stderr);
      const push = d.berth(['push', ref]);
      assert.equal(push.code, 0, push.stderr + push.stdout);
      assert.equal(d.berth(['rmi', ref]).code, 0);
      const pull = d.docker(['pull', ref]);
      assert.equal(pull.code, 0, pull.stderr);
      assert.equal(d.berth(['logout', r.host]).code, 0);
      assert.equal(d.berth(['rmi', ref]).code, 0);
      assert.notEqual(d.berth(['pull', ref]).code, 0, 'no pull without credentials');
    });
  });
}
