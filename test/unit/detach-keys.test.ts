import { test } from 'node:test';
import assert from 'node:assert/strict';
import { EscapeDetector, parseDetachKeys, validDetachKeys } from '../../src/util/detach-keys.ts';
import { buildExecProcess, mergeEnv } from '../../src/engine/exec-spec.ts';
import { parsePsOutput, validatePsArgs } from '../../src/engine/top.ts';

test('detach key specs parse as docker parses them', () => {
  assert.deepEqual([...parseDetachKeys('ctrl-p,ctrl-q')], [16, 17]);
  assert.deepEqual([...parseDetachKeys('ctrl-a')], [1]);
  assert.deepEqual([...parseDetachKeys('ctrl-@,ctrl-[,ctrl-\\,ctrl-],ctrl-^,ctrl-_')], [0, 27, 28, 29, 30, 31]);
  assert.deepEqual([...parseDetachKeys('a,b,ctrl-z')], [97, 98, 26]);
  assert.deepEqual([...parseDetachKeys('DEL')], [127]);
  assert.deepEqual([...parseDetachKeys('CTRL-X')], [24]);
  for (const bad of ['', 'ctrl-', 'ctrl-1', 'ab', 'ctrl-p,,ctrl-q', 'shift-a', 'é']) {
    assert.equal(validDetachKeys(bad), false, bad);
    assert.throws(() => parseDetachKeys(bad), /Invalid detach keys/);
  }
});

test('the escape detector swallows the sequence and passes everything else', () => {
  const d = new EscapeDetector(parseDetachKeys('ctrl-p,ctrl-q'));
  assert.equal(d.push(Buffer.from('ls\r')).toString(), 'ls\r');
  // A lone ctrl-p is held until the next byte decides.
  assert.equal(d.push(Buffer.from([16])).length, 0);
  assert.deepEqual([...d.push(Buffer.from('x'))], [16, 120]);
  // ctrl-p ctrl-p ctrl-q: the first ctrl-p is data, the rest detaches.
  assert.deepEqual([...d.push(Buffer.from([97, 16, 16]))], [97, 16]);
  assert.equal(d.detached, false);
  assert.deepEqual([...d.push(Buffer.from([17, 98]))], []);
  assert.equal(d.detached, true);
  // Split across chunks, single-key sequences, and a held prefix at end of input.
  const s = new EscapeDetector(parseDetachKeys('ctrl-a'));
  assert.deepEqual([...s.push(Buffer.from([104, 1, 105]))], [104]);
  assert.equal(s.detached, true);
  const e = new EscapeDetector(parseDetachKeys('a,b,c'));
  assert.equal(e.push(Buffer.from('xa')).toString(), 'x');
  assert.equal(e.push(Buffer.from('b')).toString(), '');
  assert.equal(e.flush().toString(), 'ab');
  assert.equal(e.push(Buffer.from('aab')).toString(), 'a');
  assert.equal(e.push(Buffer.from('c')).toString(), '');
  assert.equal(e.detached, true);
});

test('exec environment: the container env, then docker defaults, then the exec env', () => {
  assert.deepEqual(mergeEnv(['A=1', 'B=2'], ['B=3', 'C=4', 'A']), ['B=3', 'C=4']);
  const p = buildExecProcess({
    base: { user: { uid: 0, gid: 0 }, args: ['sh'], env: [], cwd: '/', capabilities: { bounding: ['CAP_CHOWN'], effective: ['CAP_CHOWN'], permitted: ['CAP_CHOWN'] }, noNewPrivileges: true },
    containerEnv: ['PATH=/bin', 'X=1'],
    hostname: 'h1',
    cmd: ['env'],
    env: ['X=2'],
    workingDir: '',
    containerWorkingDir: '/srv',
    user: { uid: 5, gid: 6, additionalGids: [7], home: '/' },
    tty: true,
    consoleSize: [24, 80],
  });
  assert.deepEqual(p.env, ['PATH=/bin', 'X=2', 'HOSTNAME=h1', 'TERM=xterm']);
  assert.equal(p.cwd, '/srv');
  assert.deepEqual(p.user, { uid: 5, gid: 6, additionalGids: [7] });
  assert.deepEqual(p.consoleSize, { height: 24, width: 80 });
  assert.equal(p.noNewPrivileges, true);
  assert.deepEqual(p.capabilities?.bounding, ['CAP_CHOWN']);
  assert.throws(() => buildExecProcess({ ...baseInput(), cmd: [] }), /No exec command specified/);
  assert.throws(() => buildExecProcess({ ...baseInput(), workingDir: 'rel' }), /needs to be an absolute path/);
});

function baseInput(): Parameters<typeof buildExecProcess>[0] {
  return { base: { user: { uid: 0, gid: 0 }, args: [], env: [], cwd: '/' }, containerEnv: [], hostname: 'h', cmd: ['true'], env: [], workingDir: '', containerWorkingDir: '', user: { uid: 0, gid: 0, additionalGids: [], home: '/' }, tty: false };
}

test('top: ps output narrowed to the container, long commands kept whole', () => {
  const out = 'UID   PID  PPID C STIME TTY TIME CMD\nroot  1 0 0 10:00 ? 00:00:01 /sbin/init\nroot  42 1 0 10:00 ? 00:00:00 sleep 100 extra args\nroot  43 42 0 10:00 ? 00:00:00 sh -c x\n';
  const r = parsePsOutput(out, new Set([42, 43]));
  assert.deepEqual(r.Titles, ['UID', 'PID', 'PPID', 'C', 'STIME', 'TTY', 'TIME', 'CMD']);
  assert.deepEqual(r.Processes, [['root', '42', '1', '0', '10:00', '?', '00:00:00', 'sleep 100 extra args'], ['root', '43', '42', '0', '10:00', '?', '00:00:00', 'sh -c x']]);
  assert.throws(() => parsePsOutput('USER COMMAND\nroot x\n', new Set()), /Couldn't find PID field/);
  assert.doesNotThrow(() => validatePsArgs('-o pid=PID,comm'));
  assert.throws(() => validatePsArgs('-o pid,ppid=PID'), /specifying "pid,ppid=PID" is not allowed/);
});
