/**
 * Events: history replay with --since/--until, filters, formats, live
 * streaming, container and image actions with docker's names and
 * attributes, through both CLIs and the API.
 */
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { request } from 'node:http';
import { join } from 'node:path';
import { TestDaemon } from '../helpers/daemon.ts';

const d = new TestDaemon('ev');
let t0 = '';

before(async () => {
  await d.start();
  t0 = (Date.now() / 1000).toFixed(3);
  d.loadBusybox();
});

after(async () => {
  await d.cleanup();
});

function apiGet(path: string): Promise<{ status: number; body: string }> {
  return new Promise((resolve, reject) => {
    const req = request({ socketPath: d.socket, method: 'GET', path }, (res) => {
      let body = '';
      res.on('data', (c: Buffer) => (body += c.toString()));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, body }));
    });
    req.on('error', reject);
    req.end();
  });
}

const nowArg = (): string => (Date.now() / 1000).toFixed(3);

interface Ev {
  status?: string;
  id?: string;
  from?: string;
  Type: string;
  Action: string;
  Actor: { ID: string; Attributes: Record<string, string> };
  scope: string;
  time: number;
  timeNano: number;
}

for (const cli of ['berth', 'docker'] as const) {
  const run = (args: string[], input?: string) => (cli === 'berth' ? d.berth(args, input) : d.docker(args, input));

  test(`${cli}: a container's life in events, with its labels, replayed by --since/--until`, () => {
    const name = `ev-life-${cli}`;
    const since = nowArg();
    const id = run(['run', '-d', '--name', name, '-l', `team=${cli}`, 'busybox', 'sleep', '30']).stdout.trim();
    assert.equal(run(['stop', '-t', '0', name]).code, 0);
    run(['rename', name, `${name}-2`]);
    run(['rm', `${name}-2`]);
    const until = nowArg();
    const r = run(['events', '--since', since, '--until', until, '--filter', `container=${id}`, '--format', '{{.Type}} {{.Action}} {{.Actor.Attributes.name}} {{.Actor.Attributes.team}} {{.Actor.Attributes.image}}']);
    assert.equal(r.code, 0, r.stderr);
    const lines = r.stdout.trim().split('\n');
    // stop -t 0: the stop signal, then SIGKILL at once (sleep as PID 1 ignores SIGTERM).
    assert.deepEqual(lines.map((l) => l.split(' ')[1]), ['create', 'start', 'kill', 'kill', 'die', 'stop', 'rename', 'destroy']);
    assert.equal(lines[0], `container create ${name} ${cli} busybox`);
    assert.equal(lines[7], `container destroy ${name}-2 ${cli} busybox`);
    // The default form: RFC 3339 time with nanoseconds, then sorted attributes.
    const plain = run(['events', '--since', since, '--until', until, '--filter', `container=${id}`, '--filter', 'event=die']);
    assert.match(plain.stdout, new RegExp(`^\\d{4}-\\d\\d-\\d\\dT\\d\\d:\\d\\d:\\d\\d\\.\\d{9}(Z|[+-]\\d\\d:\\d\\d) container die ${id} \\(execDuration=\\d+, exitCode=137, image=busybox, name=${name}, team=${cli}\\)\\n$`));
    // label filters; a name prefix matches as in docker.
    const byLabel = run(['events', '--since', since, '--until', until, '--filter', `label=team=${cli}`, '--filter', 'event=start', '--format', '{{.ID}}']);
    assert.equal(byLabel.stdout, `${id}\n`);
    const byName = run(['events', '--since', since, '--until', until, '--filter', `container=ev-life-${cli}`, '--filter', 'event=create', '--format', '{{.Status}}']);
    assert.equal(byName.stdout, 'create\n');
  });

  test(`${cli}: --format json is docker's event JSON`, () => {
    const since = nowArg();
    const id = run(['create', '--name', `ev-json-${cli}`, 'busybox', 'true']).stdout.trim();
    run(['rm', id]);
    const r = run(['events', '--since', since, '--until', nowArg(), '--filter', `container=${id}`, '--format', 'json']);
    const evs = r.stdout.trim().split('\n').map((l) => JSON.parse(l) as Ev);
    assert.deepEqual(evs.map((e) => e.Action), ['create', 'destroy']);
    const e = evs[0]!;
    assert.deepEqual(Object.keys(e), ['status', 'id', 'from', 'Type', 'Action', 'Actor', 'scope', 'time', 'timeNano']);
    assert.equal(e.status, 'create');
    assert.equal(e.id, id);
    assert.equal(e.from, 'busybox');
    assert.equal(e.scope, 'local');
    assert.equal(Math.floor(e.timeNano / 1e9), e.time);
  });

  test(`${cli}: live events stream until the client stops or --until passes`, async () => {
    const name = `ev-live-${cli}`;
    const p = d.spawn(cli, ['events', '--filter', `container=${name}`, '--format', '{{.Action}}']);
    let out = '';
    p.stdout!.on('data', (c: Buffer) => (out += c.toString()));
    // The subscription is in place once the daemon counts a listener.
    for (let i = 0; i < 200; i++) {
      const info = run(['info', '--format', '{{.NEventsListener}}']).stdout.trim();
      if (info !== '0') break;
      await new Promise((r) => setTimeout(r, 25));
    }
    run(['run', '--rm', '--name', name, 'busybox', 'true']);
    for (let i = 0; i < 400 && !out.includes('destroy'); i++) await new Promise((r) => setTimeout(r, 25));
    p.kill();
    await new Promise((r) => p.once('exit', r));
    assert.deepEqual(out.trim().split('\n'), ['create', 'attach', 'start', 'die', 'destroy']);
    // --until a moment ahead: the stream ends by itself.
    const q = d.spawn(cli, ['events', '--until', (Date.now() / 1000 + 1).toFixed(3)]);
    const code = await new Promise((r) => q.once('exit', r));
    assert.equal(code, 0);
  });

  test(`${cli}: image events: import, tag, save, untag, delete`, () => {
    const since = nowArg();
    assert.equal(run(['tag', 'busybox', `evimg-${cli}:1`]).code, 0);
    const tar = join(d.dir, `save-${cli}.tar`);
    assert.equal(run(['save', '-o', tar, `evimg-${cli}:1`]).code, 0);
    assert.equal(run(['rmi', `evimg-${cli}:1`]).code, 0);
    const r = run(['events', '--since', since, '--until', nowArg(), '--filter', 'type=image', '--format', '{{.Action}} {{.Actor.Attributes.name}} {{.Actor.ID}}']);
    const lines = r.stdout.trim().split('\n').map((l) => l.split(' '));
    assert.deepEqual(lines.map((l) => l[0]), ['tag', 'save', 'untag']);
    assert.equal(lines[0]![1], `evimg-${cli}:1`);
    assert.match(lines[1]![2]!, /^sha256:[a-f0-9]{64}$/);
    assert.equal(lines[1]![1], lines[1]![2], 'save and untag name the image by its ID');
    const byImage = run(['events', '--since', t0, '--until', nowArg(), '--filter', `image=evimg-${cli}`, '--format', '{{.Action}}']);
    assert.equal(byImage.stdout, 'tag\n');
    const imported = run(['events', '--since', t0, '--until', nowArg(), '--filter', 'event=import', '--format', '{{.Type}}']);
    assert.equal(imported.stdout, 'image\n');
  });

  test(`${cli}: bad filters and times are refused`, () => {
    let r = run(['events', '--until', nowArg(), '--filter', 'foo=bar']);
    assert.notEqual(r.code, 0);
    assert.match(r.stderr, /invalid filter 'foo'/);
    r = run(['events', '--since', '2000000000', '--until', '1000000000']);
    assert.notEqual(r.code, 0);
    assert.match(r.stderr, /cannot be after `until` time/);
    r = run(['events', '--until', 'not-a-time']);
    assert.notEqual(r.code, 0);
  });
}

test('API: since/until in nanoseconds, filters as JSON, the legacy fields for images', async () => {
  const since = nowArg();
  d.berth(['tag', 'busybox', 'evapi:1']);
  d.berth(['rmi', 'evapi:1']);
  const r = await apiGet(`/events?since=${since}&until=${nowArg()}&filters=${encodeURIComponent(JSON.stringify({ type: ['image'] }))}`);
  assert.equal(r.status, 200);
  const evs = r.body.trim().split('\n').map((l) => JSON.parse(l) as Ev);
  assert.deepEqual(evs.map((e) => [e.status, e.Action]), [['tag', 'tag'], ['untag', 'untag']]);
  assert.equal(evs[0]!.from, undefined);
  // Raw timeNano keeps all its digits.
  assert.match(r.body, /"timeNano":\d{19}/);
  const bad = await apiGet(`/events?until=${nowArg()}&filters=${encodeURIComponent(JSON.stringify({ type: ['bogus'] }))}`);
  assert.equal(bad.status, 400);
});
