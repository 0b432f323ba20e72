/**
 * Docker Engine against `berth registry serve`: docker push (its streaming
 * PATCH uploads and cross-repository mounts), docker pull of what it pushed
 * and of a multi-platform index skopeo put there, the pulled image running,
 * and docker login with basic and token authentication.
 */
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { BUSYBOX_TAR, ROOT } from '../helpers/daemon.ts';
import { TestDockerd } from '../helpers/dockerd.ts';
import { BerthRegistry, removeDir, testDir, withAuthRegistry } from '../helpers/berth-registry.ts';
import { pushMultiPlatform } from '../helpers/oci-layout.ts';

const skip = TestDockerd.available() ? false : 'Docker Engine (dockerd) is not installed';
const dir = testDir('registry-docker');
const dockerd = new TestDockerd(join(dir, 'dockerd'));
const reg = new BerthRegistry(join(dir, 'root'));

before(async () => {
  if (skip) return;
  await reg.start();
  await dockerd.start();
});

after(async () => {
  await reg.stop();
  if (!skip) await dockerd.stop();
  removeDir(dir);
});

test('docker pushes to the berth registry and pulls back an image that runs', { skip }, () => {
  const imp = dockerd.docker(['import', '-c', 'CMD ["sh"]', BUSYBOX_TAR, 'busybox:latest']);
  assert.equal(imp.code, 0, imp.stderr);
  const ref = `${reg.host}/library/busybox:latest`;
  assert.equal(dockerd.docker(['tag', 'busybox:latest', ref]).code, 0);
  const push = dockerd.docker(['push', ref]);
  assert.equal(push.code, 0, push.stderr + push.stdout);
  const digest = /digest: (sha256:[a-f0-9]{64})/.exec(push.stdout)?.[1];
  assert.ok(digest, push.stdout);
  // A second repository: docker mounts the layer instead of uploading it again.
  const other = `${reg.host}/other/busybox:v1`;
  assert.equal(dockerd.docker(['tag', 'busybox:latest', other]).code, 0);
  const push2 = dockerd.docker(['push', other]);
  assert.equal(push2.code, 0, push2.stderr);
  assert.match(push2.stdout, /Mounted from library\/busybox/);

  assert.equal(dockerd.docker(['rmi', ref, other, 'busybox:latest']).code, 0);
  const pull = dockerd.docker(['pull', ref]);
  assert.equal(pull.code, 0, pull.stderr);
  assert.match(pull.stdout, new RegExp(`Digest: ${digest}`));
  const run = dockerd.docker(['run', '--rm', '--network', 'none', ref, 'echo', 'pulled and running']);
  assert.equal(run.code, 0, run.stderr);
  assert.equal(run.stdout.trim(), 'pulled and running');
  const missing = dockerd.docker(['pull', `${reg.host}/library/nothing:latest`]);
  assert.notEqual(missing.code, 0);
  assert.match(missing.stderr, /manifest unknown|not found/i);
});

test('docker pulls the platform it wants from a multi-platform index', { skip }, () => {
  const idx = pushMultiPlatform(ROOT, dir, reg.host);
  const pull = dockerd.docker(['pull', '--platform', 'linux/amd64', `${reg.host}/multi/busybox:v1`]);
  assert.equal(pull.code, 0, pull.stderr);
  assert.match(pull.stdout, new RegExp(`Digest: ${idx.digest}`));
  const arch = dockerd.docker(['image', 'inspect', '-f', '{{.Architecture}}', `${reg.host}/multi/busybox:v1`]);
  assert.equal(arch.stdout.trim(), 'amd64');
});

for (const mode of ['basic', 'token'] as const) {
  test(`docker login, push and pull with ${mode} authentication`, { skip }, async () => {
    if (dockerd.docker(['image', 'inspect', 'busybox:latest']).code !== 0) {
      assert.equal(dockerd.docker(['import', '-c', 'CMD ["sh"]', BUSYBOX_TAR, 'busybox:latest']).code, 0);
    }
    await withAuthRegistry(dir, mode, (r) => {
      const ref = `${r.host}/secure/busybox:latest`;
      assert.equal(dockerd.docker(['tag', 'busybox:latest', ref]).code, 0);
      const denied = dockerd.docker(['push', ref]);
      assert.notEqual(denied.code, 0);
      assert.match(denied.stderr + denied.stdout, /no basic auth credentials|unauthorized|authentication required|requested access to the resource is denied/i);
      const badLogin = dockerd.docker(['login', '-u', 'alice', '--password-stdin', r.host], 'wrong');
      assert.notEqual(badLogin.code, 0);
      const login = dockerd.docker(['login', '-u', 'alice', '--password-stdin', r.host], 'bcrypt pass');
      assert.equal(login.code, 0, login.stderr);
      const push = dockerd.docker(['push', ref]);
      assert.equal(push.code, 0, push.stderr);
      assert.equal(dockerd.docker(['rmi', ref]).code, 0);
      const pull = dockerd.docker(['pull', ref]);
      assert.equal(pull.code, 0, pull.stderr);
      assert.equal(dockerd.docker(['logout', r.host]).code, 0);
      assert.equal(dockerd.docker(['rmi', ref]).code, 0);
      const anon = dockerd.docker(['pull', ref]);
      assert.notEqual(anon.code, 0);
    });
  });
}

writeFileSync(join(dir, 'owner'), `${process.pid}\n`);
