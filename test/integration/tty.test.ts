/**
 * Interactive use through a real pseudo-terminal (tmux) driving both CLIs:
 * run -it, typed commands answered by a shell in the container, terminal
 * size and resize, detach keys (default and custom) on run, attach and exec,
 * start -ai, and exit codes.
 */
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { readlinkSync } from 'node:fs';
import { TestDaemon, ROOT } from '../helpers/daemon.ts';
import { Tmux } from '../helpers/tmux.ts';

const d = new TestDaemon('tty');
const terminals: Tmux[] = [];

before(async () => {
  await d.start();
  d.loadBusybox();
});

after(async () => {
  for (const t of terminals) t.kill();
  await d.cleanup();
});

function terminal(name: string): Tmux {
  const env = { ...d.env(), PATH: `${ROOT}/bin:${process.env.PATH}` };
  const t = new Tmux(`berth-${d.dir.split('/').pop()}-${name}`, env, ROOT);
  terminals.push(t);
  return t;
}

for (const cli of ['berth', 'docker'] as const) {
  test(`${cli}: run -it gives a shell that answers, sees the terminal size and its changes, and detaches with ctrl-p ctrl-q`, async () => {
    const t = terminal(`run-${cli}`);
    const name = `tty-${cli}`;
    t.type(`${cli} run -it --name ${name} busybox sh; echo "run-rc=$?"`);
    await t.waitFor(/^\/ #\s*$/m, 'the container shell prompt');
    t.type('echo "$((6*7))-answer"');
    await t.waitFor(/^42-answer$/m);
    t.type('stty size; tty');
    await t.waitFor(/^40 120\s*\n\/dev\/pts\/\d+/m);
    t.resize(100, 30);
    t.type('stty size | sed s/^/resized:/');
    await t.waitFor(/^resized:30 100$/m);
    t.keys('C-p', 'C-q');
    // run leaves quietly with status 0 when detached.
    await t.waitFor(/run-rc=0$/m);
    // Back at the host shell: the CLI is found there (inside the container it is not).
    assert.equal(await t.shell(`${cli} inspect -f "state={{.State.Running}}" ${name}`, 'after-detach'), 0);
    await t.waitFor(/^state=true$/m);

    // attach again; the detach keys end it with docker's message and status 1.
    const a = terminal(`attach-${cli}`);
    a.type(`${cli} attach ${name}; echo "attach-rc=$?"`);
    // The prompt comes back by itself: attach nudges the size so the shell redraws it.
    await a.waitFor(/^\/ #\s*$/m, 'the redrawn prompt');
    a.type('echo "re$((1+1))attached"');
    await a.waitFor(/^re2attached$/m);
    a.keys('C-p', 'C-q');
    await a.waitFor(/read escape sequence/);
    await a.waitFor(/attach-rc=1/);
  });

  test(`${cli}: exec -it runs a shell with a terminal, returns its exit code, and custom --detach-keys leave it running`, async () => {
    const name = `tty-exec-${cli}`;
    assert.equal(d.berth(['run', '-d', '--name', name, 'busybox', 'sleep', '1000']).code, 0);
    const t = terminal(`exec-${cli}`);
    t.type(`${cli} exec -it -e GREETING=hey ${name} sh; echo "exec-rc=$?"`);
    await t.waitFor(/^\/ #\s*$/m);
    t.type('echo "$GREETING-$((3+4))-$TERM"; stty size; tty');
    await t.waitFor(/^hey-7-xterm\s*\n40 120\s*\n\/dev\/pts\/\d+/m);
    t.resize(90, 25);
    t.type('stty size | sed s/^/now:/');
    await t.waitFor(/^now:25 90$/m);
    t.type('exit 5');
    await t.waitFor(/exec-rc=5/);

    t.type(`${cli} exec -it --detach-keys ctrl-x,x ${name} sh; echo "exec2-rc=$?"`);
    await t.waitFor(/^\/ #\s*$/m);
    t.type('echo "still-$((2+2))"');
    await t.waitFor(/^still-4$/m);
    t.keys('C-x', 'x');
    await t.waitFor(/read escape sequence\s*\nexec2-rc=1/);
    // The detached exec is still running: it is listed in ExecIDs and its shell shows in top.
    const ids = d.berth(['inspect', '-f', '{{len .ExecIDs}}', name]);
    assert.equal(ids.stdout.trim(), '1', ids.stderr);
    const top = d.berth(['top', name, '-o', 'pid,args']);
    assert.match(top.stdout, /\bsh\b/);
    assert.equal(d.berth(['rm', '-f', name]).code, 0);
  });

  test(`${cli}: start -ai reattaches a stopped TTY container and returns its exit code`, async () => {
    const name = `tty-start-${cli}`;
    assert.equal(d.berth(['create', '-it', '--name', name, 'busybox', 'sh']).code, 0);
    const t = terminal(`start-${cli}`);
    t.type(`${cli} start -ai ${name}; echo "start-rc=$?"`);
    await t.waitFor(/^\/ #\s*$/m);
    t.type('echo "from-$((10+1))"');
    await t.waitFor(/^from-11$/m);
    t.type('exit 3');
    await t.waitFor(/start-rc=3/);
    const st = d.berth(['inspect', '-f', '{{.State.Status}} {{.State.ExitCode}}', name]);
    assert.equal(st.stdout.trim(), 'exited 3');
  });
}

test('a bad --detach-keys is refused before anything is created', async () => {
  // The docker CLI checks the keys only when the daemon refuses the attach (after its create).
  const r = d.docker(['run', '-i', '--detach-keys', 'ctrl-', '--name', 'badkeys', 'busybox', 'true']);
  assert.notEqual(r.code, 0);
  assert.match(r.stderr, /received 400/);
  d.berth(['rm', '-f', 'badkeys']);
  const ex = d.docker(['exec', '--detach-keys', 'ctrl-', 'nosuch', 'true']);
  assert.notEqual(ex.code, 0);
  const b = d.berth(['run', '-t', '--detach-keys', 'ctrl-', '--name', 'badkeys2', 'busybox', 'true']);
  assert.equal(b.code, 125);
  assert.match(b.stderr, /Invalid detach keys \(ctrl-\) provided/);
  assert.equal(d.berth(['ps', '-a', '--filter', 'name=badkeys2', '-q']).stdout.trim(), '');
});

for (const cli of ['berth', 'docker'] as const) {
  test(`${cli}: signals to an attached CLI without a TTY go to the container (--sig-proxy)`, async () => {
    const name = `sigproxy-${cli}`;
    const child = d.spawn(cli, ['run', '--name', name, 'busybox', 'sh', '-c', 'trap "echo got-int; exit 5" INT; echo ready; while true; do sleep 0.1; done']);
    let out = '';
    const exited = new Promise<number | null>((r) => child.on('exit', (code) => r(code)));
    await new Promise<void>((resolve) => child.stdout!.on('data', (c: Buffer) => {
      out += c.toString();
      if (out.includes('ready')) resolve();
    }));
    child.kill('SIGINT');
    assert.equal(await exited, 5);
    assert.equal(out, 'ready\ngot-int\n');

    // --sig-proxy=false (berth CLI; the docker CLI holds on to its first ^C): the signal ends the CLI, the container keeps running.
    const quiet = `${name}-off`;
    if (cli === 'berth') {
      const c2 = d.spawn(cli, ['run', '--sig-proxy=false', '--name', quiet, 'busybox', 'sh', '-c', 'echo ready; while true; do sleep 0.1; done']);
      const exited2 = new Promise<void>((r) => c2.on('exit', () => r()));
      await new Promise<void>((resolve) => c2.stdout!.on('data', (c: Buffer) => { if (c.toString().includes('ready')) resolve(); }));
      c2.kill('SIGINT');
      await exited2;
      assert.equal(d.berth(['inspect', '-f', '{{.State.Running}}', quiet]).stdout.trim(), 'true');
    }
    d.berth(['rm', '-f', name, quiet]);
  });
}

test('berth: a command reading its terminal, sent to the background with bg, stops as a fresh process would, until fg', async () => {
  const t = terminal('bg');
  // Report job changes at once; then make sure the CLI's helper waits for this terminal's commands.
  assert.equal(await t.shell('set -b; berth version >/dev/null; sleep 1', 'warm'), 0);
  t.type('berth run -i --rm --name tty-bg busybox cat');
  t.type('one');
  await t.waitFor(/^one\s*\n^one\s*$/m, 'the line typed, and cat\'s copy');
  // The helper (not a fresh process) has the command: its stdin is this terminal.
  const helpers = spawnSync('pgrep', ['-f', '--', '--cli-helper'], { encoding: 'utf8' }).stdout.split('\n').filter(Boolean);
  const onTerminal = helpers.filter((pid) => {
    try {
      return readlinkSync(`/proc/${pid}/fd/0`) === t.tty();
    } catch {
      return false;
    }
  });
  assert.equal(onTerminal.length, 1, 'a helper process runs the command');
  t.keys('C-z');
  await t.waitFor(/Stopped\s+berth run -i/);
  // bg: it reads the terminal, so it stops again (a fresh process would get SIGTTIN).
  t.type('bg');
  await t.waitFor(/Stopped\s+berth run -i/, 'the job stopped again in the background');
  t.type('fg; echo "fg-rc=$?"');
  t.type('two');
  await t.waitFor(/^two\s*\n^two\s*$/m);
  t.keys('C-d');
  await t.waitFor(/fg-rc=0/, 'the job, back in the foreground, ended normally');
});
