import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { BerthError } from '../../src/util/errors.ts';
import {
  ALL_CAPABILITIES,
  DEFAULT_CAPABILITIES,
  capabilitiesFromMask,
  computeCapabilities,
  hostBoundingCapabilities,
  normalizeCapability,
} from '../../src/runtime/capabilities.ts';

const ALL = [...ALL_CAPABILITIES];
const sortedDefault = ALL.filter((c) => DEFAULT_CAPABILITIES.includes(c));

test('capability tables', () => {
  assert.equal(ALL_CAPABILITIES.length, 41);
  assert.equal(ALL_CAPABILITIES[0], 'CAP_CHOWN');
  assert.equal(ALL_CAPABILITIES[21], 'CAP_SYS_ADMIN');
  assert.equal(ALL_CAPABILITIES[24], 'CAP_SYS_RESOURCE');
  assert.equal(ALL_CAPABILITIES[40], 'CAP_CHECKPOINT_RESTORE');
  assert.equal(new Set(ALL_CAPABILITIES).size, 41);
  assert.equal(DEFAULT_CAPABILITIES.length, 14);
  for (const c of DEFAULT_CAPABILITIES) assert.ok(ALL_CAPABILITIES.includes(c), c);
});

test('normalizeCapability', () => {
  assert.equal(normalizeCapability('net_admin'), 'CAP_NET_ADMIN');
  assert.equal(normalizeCapability('NET_ADMIN'), 'CAP_NET_ADMIN');
  assert.equal(normalizeCapability('CAP_NET_ADMIN'), 'CAP_NET_ADMIN');
  assert.equal(normalizeCapability('cap_net_admin'), 'CAP_NET_ADMIN');
  assert.equal(normalizeCapability('all'), 'ALL');
  for (const [bad, shown] of [['FOO', 'CAP_FOO'], ['cap_foo', 'CAP_FOO'], ['', 'CAP_'], ['CAP_ALL', 'CAP_ALL']]) {
    assert.throws(
      () => normalizeCapability(bad!),
      (err: unknown) => err instanceof BerthError && err.kind === 'InvalidParameter' && err.message === `unknown capability: "${shown}"`,
      bad,
    );
  }
});

test('capabilitiesFromMask', () => {
  assert.deepEqual(capabilitiesFromMask('0000000000000000'), []);
  assert.deepEqual(capabilitiesFromMask('0000000000200001'), ['CAP_CHOWN', 'CAP_SYS_ADMIN']);
  // This machine's kind: everything but CAP_SYS_RESOURCE.
  assert.deepEqual(capabilitiesFromMask('000001fffeffffff'), ALL.filter((c) => c !== 'CAP_SYS_RESOURCE'));
  // Bits the table does not know (future kernels) are ignored.
  assert.deepEqual(capabilitiesFromMask('ffffffffffffffff'), ALL);
});

test('hostBoundingCapabilities reads CapBnd', () => {
  const status = readFileSync('/proc/self/status', 'utf8');
  const hex = /^CapBnd:\s*([0-9a-f]+)$/m.exec(status)![1]!;
  assert.deepEqual(hostBoundingCapabilities(), capabilitiesFromMask(hex));
});

test('computeCapabilities follows add/drop rules', () => {
  const bounding = ALL;
  const c = (o: Parameters<typeof computeCapabilities>[0]) => computeCapabilities({ bounding, ...o });
  assert.deepEqual(c({}), sortedDefault);
  assert.deepEqual(c({ add: ['NET_ADMIN'] }), ALL.filter((x) => DEFAULT_CAPABILITIES.includes(x) || x === 'CAP_NET_ADMIN'));
  assert.deepEqual(c({ drop: ['chown', 'CAP_KILL'] }), sortedDefault.filter((x) => x !== 'CAP_CHOWN' && x !== 'CAP_KILL'));
  // Named in both: the add wins, as adds are applied after drops.
  assert.ok(c({ add: ['SYS_ADMIN'], drop: ['SYS_ADMIN'] }).includes('CAP_SYS_ADMIN'));
  assert.ok(c({ add: ['CHOWN'], drop: ['CHOWN'] }).includes('CAP_CHOWN'));
  // ALL in add: everything but the drops.
  assert.deepEqual(c({ add: ['ALL'], drop: ['MKNOD'] }), ALL.filter((x) => x !== 'CAP_MKNOD'));
  assert.deepEqual(c({ add: ['all'] }), ALL);
  // ALL in drop: only the adds.
  assert.deepEqual(c({ drop: ['ALL'], add: ['NET_BIND_SERVICE', 'chown'] }), ['CAP_CHOWN', 'CAP_NET_BIND_SERVICE']);
  assert.deepEqual(c({ drop: ['ALL'] }), []);
  // ALL in both: add is considered first, so everything is kept.
  assert.deepEqual(c({ add: ['ALL'], drop: ['ALL'] }), ALL);
  // Privileged ignores add/drop.
  assert.deepEqual(c({ privileged: true, drop: ['ALL'] }), ALL);
  // Duplicates collapse.
  assert.deepEqual(c({ add: ['CHOWN', 'CAP_CHOWN'] }), sortedDefault);
});

test('computeCapabilities never exceeds the bounding set', () => {
  const bounding = ALL.filter((x) => x !== 'CAP_SYS_RESOURCE' && x !== 'CAP_CHOWN');
  assert.deepEqual(computeCapabilities({ privileged: true, bounding }), bounding);
  assert.ok(!computeCapabilities({ add: ['SYS_RESOURCE'], bounding }).includes('CAP_SYS_RESOURCE'));
  assert.ok(!computeCapabilities({ bounding }).includes('CAP_CHOWN'));
  // With the host's own set (CAP_SYS_RESOURCE is missing here).
  const host = hostBoundingCapabilities();
  assert.deepEqual(computeCapabilities({ privileged: true }), host);
  for (const x of computeCapabilities({ add: ['ALL'] })) assert.ok(host.includes(x));
});

test('unknown names are refused, even when privileged', () => {
  for (const o of [{ add: ['FOO'] }, { drop: ['CAP_FOO'] }, { privileged: true, add: ['foo'] }]) {
    assert.throws(
      () => computeCapabilities({ bounding: ALL, ...o }),
      (err: unknown) => err instanceof BerthError && err.message === 'unknown capability: "CAP_FOO"',
    );
  }
});
