/**
 * SDK clients against berthd: docker-py (Debian's python3-docker), which
 * negotiates older API versions than the docker CLI.
 */
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { join } from 'node:path';
import { ROOT, TestDaemon } from '../helpers/daemon.ts';

const d = new TestDaemon('sdk');

before(async () => {
  await d.start();
  d.loadBusybox();
});

after(async () => {
  await d.cleanup();
});

test('docker-py: ping, version, info, images, run, detached lifecycle, errors at API 1.41, 1.45 and negotiated', () => {
  const r = spawnSync('python3', [join(ROOT, 'test', 'sdk', 'docker_py_check.py'), d.host], { encoding: 'utf8', timeout: 120_000 });
  assert.equal(r.status, 0, `${r.stdout}\n${r.stderr}`);
  assert.match(r.stdout, /errors ok/);
  assert.equal(d.berth(['ps', '-aq']).stdout.trim(), '', 'docker-py containers are gone');
});
