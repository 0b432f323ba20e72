import { test } from 'node:test';
import assert from 'node:assert/strict';
import { BerthError } from '../../src/util/errors.ts';
import { parseSignal, signalName } from '../../src/util/signals.ts';

test('signal names, numbers and spellings', () => {
  const cases: Array<[string | number, string, number]> = [
    ['KILL', 'SIGKILL', 9],
    ['SIGKILL', 'SIGKILL', 9],
    ['sigkill', 'SIGKILL', 9],
    ['Kill', 'SIGKILL', 9],
    ['9', 'SIGKILL', 9],
    [9, 'SIGKILL', 9],
    ['sigterm', 'SIGTERM', 15],
    ['TERM', 'SIGTERM', 15],
    ['HUP', 'SIGHUP', 1],
    ['INT', 'SIGINT', 2],
    ['QUIT', 'SIGQUIT', 3],
    ['USR1', 'SIGUSR1', 10],
    ['USR2', 'SIGUSR2', 12],
    ['STKFLT', 'SIGSTKFLT', 16],
    ['CHLD', 'SIGCHLD', 17],
    ['CLD', 'SIGCHLD', 17],
    ['CONT', 'SIGCONT', 18],
    ['STOP', 'SIGSTOP', 19],
    ['WINCH', 'SIGWINCH', 28],
    ['IOT', 'SIGABRT', 6],
    ['POLL', 'SIGIO', 29],
    ['PWR', 'SIGPWR', 30],
    ['SYS', 'SIGSYS', 31],
    ['SIGRTMIN', 'SIGRTMIN', 34],
    ['SIGRTMIN+3', 'SIGRTMIN+3', 37],
    ['rtmin+15', 'SIGRTMIN+15', 49],
    ['SIGRTMAX-14', 'SIGRTMAX-14', 50],
    ['RTMAX-1', 'SIGRTMAX-1', 63],
    ['RTMAX', 'SIGRTMAX', 64],
    ['37', 'SIGRTMIN+3', 37],
    ['64', 'SIGRTMAX', 64],
    // Spelled from the far end, still resolved to the same number.
    ['RTMIN+20', 'SIGRTMAX-10', 54],
  ];
  for (const [input, name, number] of cases) {
    assert.deepEqual(parseSignal(input), { name, number }, String(input));
  }
});

test('unknown signals are refused', () => {
  for (const bad of ['FOO', 'SIGFOO', '', '0', 0, '65', 65, '-1', -1, '1.5', 1.5, 'SIG', 'RTMIN-1', 'RTMAX+1', 'RTMIN+31', '32', '33', 'SIGKILL ', 'KILL9']) {
    assert.throws(
      () => parseSignal(bad),
      (err: unknown) => err instanceof BerthError && err.kind === 'InvalidParameter' && err.message === `invalid signal: ${String(bad)}`,
      JSON.stringify(bad),
    );
  }
});

test('signalName', () => {
  assert.equal(signalName(15), 'SIGTERM');
  assert.equal(signalName(0), undefined);
  assert.equal(signalName(65), undefined);
});
