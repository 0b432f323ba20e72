/**
 * exec, top and the attach websocket against a private berthd: both CLIs,
 * the raw Engine API (hijacked streams with docker's framing, half-close,
 * exec inspect and its errors), and an exec that outlives a SIGKILLed berthd.
 */
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { request } from 'node:http';
import { connect, createServer } from 'node:net';
import type { Socket } from 'node:net';
import { existsSync, readdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { spawnSync } from 'node:child_process';
import { TestDaemon } from '../helpers/daemon.ts';

const d = new TestDaemon('exec');
let tcpPort = 0;

async function freePort(): Promise<number> {
  const s = createServer();
  await new Promise<void>((r) => s.listen(0, '127.0.0.1', () => r()));
  const port = (s.address() as { port: number }).port;
  await new Promise((r) => s.close(r));
  return port;
}

before(async () => {
  tcpPort = await freePort();
  await d.start(['-H', `tcp://127.0.0.1:${tcpPort}`]);
  d.loadBusybox();
});

after(async () => {
  await d.cleanup();
});

/** One API call over the unix socket; the body parsed as JSON when it is JSON. */
function api(method: string, path: string, body?: unknown): Promise<{ status: number; body: any }> {
  return new Promise((resolve, reject) => {
    const data = body === undefined ? undefined : Buffer.from(JSON.stringify(body));
    const req = request({ socketPath: d.socket, method, path, headers: data ? { 'Content-Type': 'application/json', 'Content-Length': data.length } : {} }, (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (c: Buffer) => chunks.push(c));
      res.on('end', () => {
        const text = Buffer.concat(chunks).toString();
        let parsed: unknown = text;
        try {
          parsed = text ? JSON.parse(text) : undefined;
        } catch {
          // plain text
        }
        resolve({ status: res.statusCode ?? 0, body: parsed });
      });
    });
    req.on('error', reject);
    req.end(data);
  });
}

/** POST with Upgrade: tcp, as the docker CLI does; resolves with the raw socket after 101. */
function hijack(path: string, body: unknown, overTcp = false): Promise<{ sock: Socket; head: string; rest: Buffer }> {
  return new Promise((resolve, reject) => {
    const sock = overTcp ? connect(tcpPort, '127.0.0.1') : connect(d.socket);
    const data = Buffer.from(JSON.stringify(body));
    sock.on('connect', () => {
      sock.write(`POST ${path} HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\nUpgrade: tcp\r\nContent-Type: application/json\r\nContent-Length: ${data.length}\r\n\r\n`);
      sock.write(data);
    });
    let buf = Buffer.alloc(0);
    const onData = (c: Buffer) => {
      buf = Buffer.concat([buf, c]);
      const i = buf.indexOf('\r\n\r\n');
      if (i < 0) return;
      sock.off('data', onData);
      resolve({ sock, head: buf.subarray(0, i).toString(), rest: buf.subarray(i + 4) });
    };
    sock.on('data', onData);
    sock.on('error', reject);
  });
}

/** Everything the daemon sends until it closes the stream. */
function readAll(sock: Socket, first: Buffer): Promise<Buffer> {
  return new Promise((resolve) => {
    const chunks = [first];
    sock.on('data', (c: Buffer) => chunks.push(c));
    sock.on('close', () => resolve(Buffer.concat(chunks)));
  });
}

/** Split docker's 8-byte-header framing: [stream, 0, 0, 0, size(u32 BE)] + payload. */
function deframe(b: Buffer): Array<[number, string]> {
  const out: Array<[number, string]> = [];
  let off = 0;
  while (off + 8 <= b.length) {
    assert.deepEqual([...b.subarray(off + 1, off + 4)], [0, 0, 0], 'header padding');
    const size = b.readUInt32BE(off + 4);
    out.push([b[off]!, b.subarray(off + 8, off + 8 + size).toString()]);
    off += 8 + size;
  }
  assert.equal(off, b.length, 'no partial frame');
  return out;
}

async function until<T>(fn: () => T | undefined | false, what: string): Promise<T> {
  const deadline = Date.now() + 20_000;
  for (;;) {
    const v = fn();
    if (v) return v;
    if (Date.now() > deadline) throw new Error(`gave up waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

for (const cli of ['berth', 'docker'] as const) {
  const run = (args: string[], input?: string) => (cli === 'berth' ? d.berth(args, input) : d.docker(args, input));
  const name = `ex-${cli}`;

  test(`${cli}: exec output, exit code, stdin, environment, working dir, user and privileges`, () => {
    assert.equal(run(['run', '-d', '--name', name, '-e', 'FROM_CTR=c', '-w', '/etc', 'busybox', 'sleep', '1000']).code, 0);
    const r = run(['exec', name, 'sh', '-c', 'echo out; echo err >&2; exit 3']);
    assert.equal(r.code, 3);
    assert.equal(r.stdout, 'out\n');
    assert.equal(r.stderr, 'err\n');
    const envFile = join(d.dir, `exec-env-${cli}`);
    writeFileSync(envFile, '# comment\nFROM_FILE=f\n');
    const env = run(['exec', '-e', 'A=1', '--env-file', envFile, name, 'sh', '-c', 'echo $A $FROM_FILE $FROM_CTR $(pwd) $HOSTNAME']);
    assert.equal(env.code, 0, env.stderr);
    const host = run(['inspect', '-f', '{{.Config.Hostname}}', name]).stdout.trim();
    assert.equal(env.stdout, `1 f c /etc ${host}\n`);
    const wd = run(['exec', '-w', '/tmp', '-u', 'nobody', name, 'sh', '-c', 'echo $(pwd) $(id -u):$(id -g) $HOME']);
    assert.equal(wd.stdout, '/tmp 65534:65534 /home\n');
    assert.equal(run(['exec', '-u', '1234:5678', name, 'id']).stdout.trim().startsWith('uid=1234 gid=5678'), true);
    const capEff = (args: string[]) => run(['exec', ...args, name, 'sh', '-c', 'grep CapEff /proc/self/status']).stdout.trim().split(/\s+/)[1]!;
    const plain = BigInt(`0x${capEff([])}`);
    const priv = BigInt(`0x${capEff(['--privileged'])}`);
    assert.ok(priv > plain, 'a privileged exec has more capabilities');
    assert.equal(priv & (1n << 21n), 1n << 21n, 'CAP_SYS_ADMIN only when privileged');
    assert.equal(plain & (1n << 21n), 0n);
    // stdin, and its end reaching the process (EOF).
    const cat = run(['exec', '-i', name, 'sh', '-c', 'wc -l; echo eof'], 'a\nb\nc\n');
    assert.equal(cat.stdout.replace(/ +/g, ''), '3\neof\n');
    // -t without -i: a terminal, output through it (\r\n), nothing read from stdin.
    const t = run(['exec', '-t', name, 'sh', '-c', 'tty; echo $TERM']);
    assert.equal(t.code, 0, t.stderr);
    assert.match(t.stdout, /^\/dev\/pts\/\d+\r\nxterm\r\n$/);
    // Without -i the process reads nothing.
    assert.equal(run(['exec', name, 'sh', '-c', 'cat; echo none'], 'ignored\n').stdout, 'none\n');
  });

  test(`${cli}: exec exit codes 126 and 127, unknown user, detached exec`, async () => {
    const nf = run(['exec', name, 'no-such-cmd']);
    assert.equal(nf.code, 127);
    assert.match(nf.stdout + nf.stderr, /OCI runtime exec failed: .*executable file not found in \$PATH/);
    const ne = run(['exec', name, '/etc/passwd']);
    assert.equal(ne.code, 126);
    assert.match(ne.stdout + ne.stderr, /permission denied/);
    const nu = run(['exec', '-u', 'nosuchuser', name, 'true']);
    assert.equal(nu.code, 126);
    assert.match(nu.stdout + nu.stderr, /unable to find user nosuchuser: no matching entries in passwd file/);
    const det = run(['exec', '-d', name, 'sh', '-c', 'echo hidden; echo done > /tmp/detached']);
    assert.equal(det.code, 0, det.stderr);
    assert.equal(det.stdout, '');
    await until(() => run(['exec', name, 'cat', '/tmp/detached']).stdout === 'done\n', 'the detached exec');
    // Finished execs leave no monitor directory behind.
    const id = run(['inspect', '-f', '{{.Id}}', name]).stdout.trim();
    await until(() => readdirSync(join(d.execRoot, 'containers', id, 'execs')).length === 0, 'exec directories to go');
    assert.equal(run(['inspect', '-f', '{{json .ExecIDs}}', name]).stdout.trim(), 'null');
  });

  test(`${cli}: exec errors: stopped container, unknown container, bad flags; nothing is left behind`, () => {
    const stopped = `ex-stopped-${cli}`;
    assert.equal(run(['create', '--name', stopped, 'busybox', 'true']).code, 0);
    const r = run(['exec', stopped, 'true']);
    assert.notEqual(r.code, 0);
    assert.match(r.stderr, /Error response from daemon: container [0-9a-f]{64} is not running/);
    assert.equal(run(['inspect', '-f', '{{json .ExecIDs}}', stopped]).stdout.trim(), 'null');
    const nc = run(['exec', 'no-such-ctr', 'true']);
    assert.notEqual(nc.code, 0);
    assert.match(nc.stderr, /No such container: no-such-ctr/);
    const rel = run(['exec', '-w', 'relative', name, 'true']);
    assert.notEqual(rel.code, 0);
    assert.match(rel.stderr, /the working directory 'relative' is invalid, it needs to be an absolute path/);
    const keys = run(['exec', '--detach-keys', 'ctrl-', name, 'true']);
    assert.notEqual(keys.code, 0);
    assert.match(keys.stderr, /Invalid (detach|escape) keys \(ctrl-\) provided/);
    const tty = run(['exec', '-it', name, 'true'], '');
    assert.notEqual(tty.code, 0);
    assert.match(tty.stderr, /the input device is not a TTY/);
    assert.equal(run(['inspect', '-f', '{{json .ExecIDs}}', name]).stdout.trim(), 'null');
    assert.equal(run(['rm', stopped]).code, 0);
  });

  test(`${cli}: top lists the container's processes, exec'd ones included, with ps options`, async () => {
    const pid = run(['inspect', '-f', '{{.State.Pid}}', name]).stdout.trim();
    const top = run(['top', name]);
    assert.equal(top.code, 0, top.stderr);
    const lines = top.stdout.trim().split('\n');
    assert.match(lines[0]!, /^UID\s+PID\s+PPID\s+C\s+STIME\s+TTY\s+TIME\s+CMD$/);
    assert.ok(lines.some((l) => l.split(/\s+/)[1] === pid && /sleep 1000$/.test(l)), top.stdout);
    assert.ok(!lines.some((l) => /node|berthd/.test(l)), 'only the container\'s processes');
    assert.equal(run(['exec', '-d', name, 'sleep', '777']).code, 0);
    await until(() => run(['top', name, '-o', 'pid,args']).stdout.includes('sleep 777'), 'the exec in top');
    const custom = run(['top', name, '-o', 'pid,args']);
    assert.match(custom.stdout.split('\n')[0]!, /^PID\s+COMMAND$/);
    const stopped = run(['top', 'no-such-ctr']);
    assert.match(stopped.stderr, /No such container/);
    const bad = run(['top', name, '-o', 'pid,ppid=PID']);
    assert.notEqual(bad.code, 0);
    assert.match(bad.stderr, /is not allowed/);
    assert.equal(run(['rm', '-f', name]).code, 0);
  });
}

test('exec API: inspect before and after, ExecIDs, second start, unknown ids, bad requests', async () => {
  assert.equal(d.berth(['run', '-d', '--name', 'exapi', 'busybox', 'sleep', '1000']).code, 0);
  const created = await api('POST', '/v1.45/containers/exapi/exec', { Cmd: ['sh', '-c', 'exit 6'], AttachStdout: true, User: 'nobody', Privileged: true });
  assert.equal(created.status, 201);
  const id = created.body.Id as string;
  assert.match(id, /^[0-9a-f]{64}$/);
  const before = await api('GET', `/exec/${id}/json`);
  assert.equal(before.status, 200);
  assert.equal(before.body.Running, false);
  assert.equal(before.body.ExitCode, null);
  assert.deepEqual(before.body.ProcessConfig, { tty: false, entrypoint: 'sh', arguments: ['-c', 'exit 6'], privileged: true, user: 'nobody' });
  assert.equal(before.body.OpenStdout, true);
  assert.equal(before.body.OpenStdin, false);
  const ctr = await api('GET', '/containers/exapi/json');
  assert.deepEqual(ctr.body.ExecIDs, [id]);
  assert.equal(before.body.ContainerID, ctr.body.Id);
  const started = await api('POST', `/exec/${id}/start`, { Detach: true });
  assert.equal(started.status, 200);
  const done = await pollExec(id, (b) => !b.Running && b.ExitCode !== null);
  assert.equal(done.ExitCode, 6);
  assert.ok(done.Pid > 0);
  assert.equal((await api('GET', '/containers/exapi/json')).body.ExecIDs, null);
  const again = await api('POST', `/exec/${id}/start`, { Detach: true });
  assert.equal(again.status, 409);
  assert.match(again.body.message, /has already run/);
  for (const [m, p] of [['GET', '/exec/nope/json'], ['POST', '/exec/nope/start'], ['POST', '/exec/nope/resize?h=1&w=1']] as const) {
    const r = await api(m, p, m === 'POST' ? {} : undefined);
    assert.equal(r.status, 404, p);
    assert.equal(r.body.message, 'No such exec instance: nope');
  }
  assert.equal((await api('POST', '/containers/exapi/exec', { Cmd: [] })).status, 400);
  assert.match((await api('POST', '/containers/exapi/exec', { Cmd: [] })).body.message, /No exec command specified/);
  assert.equal((await api('POST', '/containers/exapi/exec', { Cmd: ['true'], DetachKeys: 'ctrl-1' })).status, 400);
  assert.equal((await api('POST', '/containers/nosuch/exec', { Cmd: ['true'] })).status, 404);
  assert.equal((await api('GET', '/containers/exapi/top?ps_args=-o%20pid%3DPID')).status, 200);
});

test('exec start over a hijacked stream: 8-byte framing, stdin half-close reaching the process', async () => {
  const { body } = await api('POST', '/containers/exapi/exec', { Cmd: ['sh', '-c', 'echo to-out; echo to-err >&2; cat; echo after-eof'], AttachStdin: true, AttachStdout: true, AttachStderr: true });
  const { sock, head, rest } = await hijack(`/v1.45/exec/${body.Id}/start`, { Detach: false, Tty: false });
  assert.match(head, /^HTTP\/1\.1 101 UPGRADED/);
  assert.match(head, /Content-Type: application\/vnd\.docker\.multiplexed-stream/);
  const all = readAll(sock, rest);
  sock.write('typed\n');
  sock.end(); // half-close: output must keep coming, the process sees EOF
  const frames = deframe(await all);
  const out = frames.filter(([s]) => s === 1).map(([, t]) => t).join('');
  const err = frames.filter(([s]) => s === 2).map(([, t]) => t).join('');
  assert.equal(out, 'to-out\ntyped\nafter-eof\n');
  assert.equal(err, 'to-err\n');
  assert.equal((await api('GET', `/exec/${body.Id}/json`)).body.ExitCode, 0);
});

test('an exec whose client vanishes (connection reset) gets end of input', async () => {
  const { body } = await api('POST', '/containers/exapi/exec', { Cmd: ['sh', '-c', 'cat; echo stdin-closed'], AttachStdin: true, AttachStdout: true });
  // Over TCP, where a connection can end with a reset (no FIN, so no half-close seen).
  const { sock } = await hijack(`/exec/${body.Id}/start`, { Detach: false, Tty: false }, true);
  await pollExec(body.Id, (b) => b.Running && b.Pid > 0);
  sock.resetAndDestroy();
  const done = await pollExec(body.Id, (b) => !b.Running);
  assert.equal(done.ExitCode, 0);
});

test('a run -i whose attach client vanishes gets end of input (StdinOnce)', async () => {
  const created = await api('POST', '/containers/create?name=stdinonce', { Image: 'busybox', Cmd: ['sh', '-c', 'cat; exit 11'], OpenStdin: true, StdinOnce: true, AttachStdin: true });
  assert.equal(created.status, 201);
  const { sock } = await hijack('/containers/stdinonce/attach?stream=1&stdin=1&stdout=1&stderr=1', {}, true);
  assert.equal((await api('POST', '/containers/stdinonce/start')).status, 204);
  sock.resetAndDestroy();
  const waited = await api('POST', '/containers/stdinonce/wait');
  assert.equal(waited.body.StatusCode, 11);
  assert.equal((await api('DELETE', '/containers/stdinonce')).status, 204);
});

test('exec with a TTY: raw stream, resize seen by the process, exit code', async () => {
  const { body } = await api('POST', '/containers/exapi/exec', { Cmd: ['sh', '-c', 'read x; stty size; exit 4'], AttachStdin: true, AttachStdout: true, AttachStderr: true, Tty: true, ConsoleSize: [10, 20] });
  const { sock, head, rest } = await hijack(`/exec/${body.Id}/start`, { Detach: false, Tty: true, ConsoleSize: [10, 20] });
  assert.match(head, /Content-Type: application\/vnd\.docker\.raw-stream/);
  const all = readAll(sock, rest);
  let r = await api('POST', `/exec/${body.Id}/resize?h=33&w=77`);
  assert.equal(r.status, 200);
  r = await api('POST', `/exec/${body.Id}/resize?h=-1&w=77`);
  assert.equal(r.status, 400);
  sock.write('go\r');
  const text = (await all).toString();
  assert.match(text, /33 77\r\n/);
  assert.ok(!text.includes('\x01\x00\x00\x00'), 'no stream headers in TTY mode');
  assert.equal((await api('GET', `/exec/${body.Id}/json`)).body.ExitCode, 4);
});

test('attach websocket: binary frames both ways (text before API 1.28), detach keys on a TTY', async () => {
  assert.equal(d.berth(['run', '-d', '-i', '--name', 'wsin', 'busybox', 'sh', '-c', 'while read l; do echo "got:$l"; done']).code, 0);
  const talk = (version: string) => new Promise<{ text: string; kinds: Set<string> }>((resolve, reject) => {
    const ws = new WebSocket(`ws://127.0.0.1:${tcpPort}/${version}/containers/wsin/attach/ws?stream=1&stdin=1&stdout=1&stderr=1`);
    ws.binaryType = 'arraybuffer';
    let text = '';
    const kinds = new Set<string>();
    ws.onopen = () => {
      ws.send(`hello-${version}\n`);
      ws.send(new TextEncoder().encode(`bin-${version}\n`));
    };
    ws.onmessage = (m) => {
      kinds.add(typeof m.data === 'string' ? 'text' : 'binary');
      text += typeof m.data === 'string' ? m.data : Buffer.from(m.data as ArrayBuffer).toString();
      if (text.includes(`got:bin-${version}`)) ws.close();
    };
    ws.onclose = () => resolve({ text, kinds });
    ws.onerror = () => reject(new Error('websocket error'));
  });
  const modern = await talk('v1.45');
  assert.equal(modern.text, 'got:hello-v1.45\ngot:bin-v1.45\n');
  assert.deepEqual([...modern.kinds], ['binary']);
  const old = await talk('v1.27');
  assert.deepEqual([...old.kinds], ['text']);
  assert.equal(old.text, 'got:hello-v1.27\ngot:bin-v1.27\n');

  assert.equal(d.berth(['run', '-d', '-it', '--name', 'wstty', 'busybox', 'sh']).code, 0);
  const closed = await new Promise<{ code: number; seen: string }>((resolve, reject) => {
    const ws = new WebSocket(`ws://127.0.0.1:${tcpPort}/containers/wstty/attach/ws?stream=1&stdin=1&stdout=1&detachKeys=ctrl-a`);
    ws.binaryType = 'arraybuffer';
    let seen = '';
    ws.onopen = () => ws.send('echo ws-$((5*5))\r');
    ws.onmessage = (m) => {
      seen += Buffer.from(m.data as ArrayBuffer).toString();
      if (seen.includes('ws-25\r\n')) ws.send('\x01');
    };
    ws.onclose = (e) => resolve({ code: e.code, seen });
    ws.onerror = () => reject(new Error('websocket error'));
  });
  assert.equal(closed.code, 1000);
  assert.match(closed.seen, /ws-25/);
  assert.equal(d.berth(['inspect', '-f', '{{.State.Running}}', 'wstty']).stdout.trim(), 'true');
  const bad = await new Promise<number>((resolve) => {
    const req = request({ host: '127.0.0.1', port: tcpPort, path: '/containers/wstty/attach/ws?detachKeys=bogus-key', headers: { Connection: 'Upgrade', Upgrade: 'websocket', 'Sec-WebSocket-Version': '13', 'Sec-WebSocket-Key': 'dGhlIHNhbXBsZSBub25jZQ==' } });
    req.on('response', (res) => resolve(res.statusCode ?? 0));
    req.on('upgrade', () => resolve(101));
    req.end();
  });
  assert.equal(bad, 400);
  assert.equal(d.berth(['rm', '-f', 'wsin', 'wstty']).code, 0);
});

test('an exec outlives a SIGKILLed berthd and is adopted by the next one', async () => {
  assert.equal(d.berth(['run', '-d', '--name', 'exlive', 'busybox', 'sleep', '1000']).code, 0);
  const { body } = await api('POST', '/containers/exlive/exec', { Cmd: ['sh', '-c', 'while [ ! -f /tmp/go ]; do sleep 0.05; done; exit 9'] });
  assert.equal((await api('POST', `/exec/${body.Id}/start`, { Detach: true })).status, 200);
  const pid = (await api('GET', `/exec/${body.Id}/json`)).body.Pid as number;
  assert.ok(pid > 0);
  await d.stop('SIGKILL');
  assert.ok(existsSync(`/proc/${pid}`), 'the exec keeps running without berthd');
  await d.start(['-H', `tcp://127.0.0.1:${tcpPort}`]);
  const adopted = await api('GET', `/exec/${body.Id}/json`);
  assert.equal(adopted.status, 200);
  assert.equal(adopted.body.Running, true);
  assert.equal(adopted.body.Pid, pid);
  assert.deepEqual((await api('GET', '/containers/exlive/json')).body.ExecIDs, [body.Id]);
  assert.equal(d.berth(['exec', 'exlive', 'touch', '/tmp/go']).code, 0);
  const st = await pollExec(body.Id, (b) => !b.Running);
  assert.equal(st.Running, false);
  assert.equal(st.ExitCode, 9);
  const cid = d.berth(['inspect', '-f', '{{.Id}}', 'exlive']).stdout.trim();
  assert.equal(d.berth(['rm', '-f', 'exlive']).code, 0);
  // No monitor of this container (or its execs) survives its removal.
  await until(() => !monitorsOf(cid), 'monitors to exit');
  assert.equal((await api('GET', `/exec/${body.Id}/json`)).status, 404);
});

/** Poll exec inspect until the predicate holds. */
async function pollExec(id: string, pred: (b: any) => boolean): Promise<any> {
  const deadline = Date.now() + 20_000;
  for (;;) {
    const b = (await api('GET', `/exec/${id}/json`)).body;
    if (pred(b)) return b;
    if (Date.now() > deadline) throw new Error(`exec ${id} never got there: ${JSON.stringify(b)}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

function monitorsOf(cid: string): boolean {
  const r = spawnSync('pgrep', ['-f', `berth-monitor --id ${cid}`], { encoding: 'utf8' });
  return r.stdout.trim() !== '';
}

test('run -it and attach refuse a TTY container without a terminal on stdin', () => {
  const r = d.berth(['run', '-it', 'busybox', 'true'], '');
  assert.equal(r.code, 1);
  assert.match(r.stderr, /the input device is not a TTY/);
  assert.equal(d.berth(['run', '-dit', '--name', 'notty', 'busybox', 'sh']).code, 0);
  for (const cli of ['berth', 'docker'] as const) {
    const a = cli === 'berth' ? d.berth(['attach', 'notty'], '') : d.docker(['attach', 'notty'], '');
    assert.equal(a.code, 1);
    assert.match(a.stderr, /the input device is not a TTY/);
  }
  assert.equal(d.berth(['inspect', '-f', '{{.State.Running}}', 'notty']).stdout.trim(), 'true');
  assert.equal(d.berth(['rm', '-f', 'notty']).code, 0);
});
