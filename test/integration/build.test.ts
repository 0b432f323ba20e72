/**
 * The builder end to end: the docker CLI's classic builder and `berth build`
 * against a private berthd, images run, configs and history compared with
 * what docker records, the cache, BuildKit-style mounts, error cases, and
 * commit through both CLIs.
 */
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { chmodSync, mkdirSync, mkdtempSync, readFileSync, readdirSync, writeFileSync, existsSync, rmSync } from 'node:fs';
import { spawnSync } from 'node:child_process';
import { join } from 'node:path';
import { TestDaemon, BUSYBOX_TAR } from '../helpers/daemon.ts';
import { TestRegistry, pushTarImage } from '../helpers/registry.ts';
import type { RunResult } from '../helpers/daemon.ts';

let d: TestDaemon;
let work: string;
const CLASSIC = { DOCKER_BUILDKIT: '0' };

function dockerBuild(args: string[], input?: string | Buffer): RunResult {
  return d.cli2('docker', ['build', ...args], CLASSIC, input);
}

function ctx(name: string, files: Record<string, string>): string {
  const dir = join(work, name);
  for (const [p, content] of Object.entries(files)) {
    mkdirSync(join(dir, p, '..'), { recursive: true });
    writeFileSync(join(dir, p), content);
  }
  return dir;
}

/** How many steps a build took from the cache. */
function cached(r: RunResult): number {
  return (r.stdout.match(/Using cache/g) ?? []).length;
}

function inspect(img: string, fmt: string): string {
  const r = d.docker(['image', 'inspect', '-f', fmt, img]);
  assert.equal(r.code, 0, r.stderr);
  return r.stdout.trim();
}

/** Nothing a build made may outlive it: no containers, no mounts, no step directories. */
function assertClean(): void {
  assert.equal(d.berth(['ps', '-aq']).stdout.trim(), '');
  const mounts = readFileSync('/proc/self/mounts', 'utf8').split('\n').filter((l) => l.includes(d.dir));
  assert.deepEqual(mounts, []);
  assert.deepEqual(readdirSync(join(d.dataRoot, 'build', 'run')), []);
  assert.deepEqual(readdirSync(join(d.dataRoot, 'build', 'tmp')), []);
  const runtime = join(d.execRoot, 'runtime');
  assert.deepEqual(existsSync(runtime) ? readdirSync(runtime) : [], []);
}

before(async () => {
  d = new TestDaemon('build');
  await d.start();
  d.loadBusybox();
  work = mkdtempSync(join(d.dir, 'ctx-'));
});

after(async () => {
  await d.cleanup();
});

const EVERY = `# syntax=docker/dockerfile:1
ARG BASE=busybox
FROM $BASE AS builder
ARG GREETING=hello
RUN echo "$GREETING from builder" > /greeting.txt \\
 && mkdir -p /out && echo built > /out/artifact
FROM busybox AS unused
RUN exit 99
FROM busybox
LABEL org.example.name="every instruction" version=1
MAINTAINER someone@example.com
ENV APP_HOME=/app MODE="two words"
ENV LEGACY value with spaces
ARG COUNT=3
WORKDIR $APP_HOME
COPY src ./src
COPY --from=builder /greeting.txt /out/ /from-builder/
ADD files.tar /unpacked/
ADD plain.txt /plain/
COPY --chown=65534:65534 --chmod=600 owned.txt /owned.txt
RUN echo "count=$COUNT mode=$MODE" > run.txt && ls src > listing.txt
USER nobody
EXPOSE 8080 53/udp
VOLUME ["/data"]
STOPSIGNAL SIGTERM
HEALTHCHECK --interval=30s --timeout=3s --retries=4 CMD wget -q localhost || exit 1
SHELL ["/bin/sh", "-ec"]
ONBUILD RUN echo triggered > /tmp/onbuild.txt
ENTRYPOINT ["/bin/sh", "-c"]
CMD ["cat /app/run.txt"]
`;

function everyContext(): string {
  const dir = ctx('every', {
    Dockerfile: EVERY,
    'src/a.txt': 'a\n',
    'src/sub/b.txt': 'b\n',
    'plain.txt': 'plain\n',
    'owned.txt': 'mine\n',
    'tarsrc/inner/t.txt': 'from tar\n',
  });
  const r = spawnSync('tar', ['-cf', join(dir, 'files.tar'), '-C', join(dir, 'tarsrc'), '.']);
  assert.equal(r.status, 0);
  return dir;
}

test('docker CLI (classic builder) builds a multi-stage Dockerfile using every instruction', () => {
  const dir = everyContext();
  const r = dockerBuild(['-t', 'every:1', '-t', 'every:2', dir]);
  assert.equal(r.code, 0, r.stdout + r.stderr);
  assert.match(r.stdout, /Step 1\/\d+ : ARG BASE=busybox/);
  assert.match(r.stdout, /Successfully built [0-9a-f]{12}/);
  assert.match(r.stdout, /Successfully tagged every:1\n/);
  assert.match(r.stdout, /Successfully tagged every:2\n/);
  // The stage nobody needs is skipped (its RUN would fail).
  assert.doesNotMatch(r.stdout, /exit 99/);
  assert.equal(inspect('every:1', '{{.Id}}'), inspect('every:2', '{{.Id}}'));

  // The image runs: CMD through the exec-form entrypoint.
  const run = d.docker(['run', '--rm', 'every:1']);
  assert.equal(run.code, 0, run.stderr);
  assert.equal(run.stdout, 'count=3 mode=two words\n');
  const files = d.docker(['run', '--rm', '--entrypoint', 'sh', '-u', '0', 'every:1', '-c',
    'cat /app/src/a.txt /app/src/sub/b.txt /from-builder/greeting.txt /from-builder/artifact /unpacked/inner/t.txt /plain/plain.txt /owned.txt; ' +
    'cat /app/listing.txt; stat -c "%u:%g %a" /owned.txt; ls /from-builder; pwd']);
  assert.equal(files.code, 0, files.stderr);
  assert.equal(files.stdout, 'a\nb\nhello from builder\nbuilt\nfrom tar\nplain\nmine\na.txt\nsub\n65534:65534 600\nartifact\ngreeting.txt\n/app\n');

  // The config as docker's classic builder records it.
  const cfg = JSON.parse(inspect('every:1', '{{json .Config}}')) as Record<string, unknown>;
  assert.deepEqual(cfg.Cmd, ['cat /app/run.txt']);
  assert.deepEqual(cfg.Entrypoint, ['/bin/sh', '-c']);
  assert.deepEqual(cfg.Env, ['APP_HOME=/app', 'MODE=two words', 'LEGACY=value with spaces']);
  assert.deepEqual(cfg.Labels, { 'org.example.name': 'every instruction', version: '1' });
  assert.deepEqual(cfg.ExposedPorts, { '53/udp': {}, '8080/tcp': {} });
  assert.deepEqual(cfg.Volumes, { '/data': {} });
  assert.equal(cfg.WorkingDir, '/app');
  assert.equal(cfg.User, 'nobody');
  assert.equal(cfg.StopSignal, 'SIGTERM');
  assert.deepEqual(cfg.Healthcheck, { Test: ['CMD-SHELL', 'wget -q localhost || exit 1'], Interval: 30e9, Timeout: 3e9, Retries: 4 });
  assert.deepEqual(cfg.OnBuild, ['RUN echo triggered > /tmp/onbuild.txt']);
  assert.deepEqual(cfg.Shell, ['/bin/sh', '-ec']);
  assert.equal(cfg.ArgsEscaped, undefined);
  assert.equal(inspect('every:1', '{{.Author}}'), 'someone@example.com');

  const hist = d.docker(['history', '--no-trunc', '--format', '{{.CreatedBy}}', 'every:1']).stdout.split('\n');
  assert.equal(hist[0], '/bin/sh -ec #(nop)  CMD ["cat /app/run.txt"]');
  assert.equal(hist[1], '/bin/sh -ec #(nop)  ENTRYPOINT ["/bin/sh" "-c"]');
  assert.equal(hist[2], '/bin/sh -ec #(nop)  ONBUILD RUN echo triggered > /tmp/onbuild.txt');
  assert.equal(hist[3], '/bin/sh -ec #(nop)  SHELL [/bin/sh -ec]');
  assert.equal(hist[4], `/bin/sh -c #(nop)  HEALTHCHECK &{["CMD-SHELL" "wget -q localhost || exit 1"] "30s" "3s" "0s" '\\x04'}`);
  assert.equal(hist[5], '/bin/sh -c #(nop)  STOPSIGNAL SIGTERM');
  assert.equal(hist[6], '/bin/sh -c #(nop)  VOLUME [/data]');
  assert.equal(hist[7], '/bin/sh -c #(nop)  EXPOSE 53/udp 8080');
  assert.equal(hist[8], '/bin/sh -c #(nop)  USER nobody');
  assert.equal(hist[9], '|1 COUNT=3 /bin/sh -c echo "count=$COUNT mode=$MODE" > run.txt && ls src > listing.txt');
  assert.match(hist[14]!, /^\/bin\/sh -c #\(nop\) COPY dir:[0-9a-f]{64} in \.\/src $/);
  assert.equal(hist[15], '/bin/sh -c #(nop) WORKDIR /app');
  assert.equal(hist[16], '/bin/sh -c #(nop)  ARG COUNT=3');
  assert.equal(hist[19], '/bin/sh -c #(nop)  MAINTAINER someone@example.com');
  assertClean();

  // ONBUILD triggers run in a child build, and are not inherited.
  const child = ctx('child', { Dockerfile: 'FROM every:1\nUSER 0\n' });
  const c = dockerBuild(['-t', 'child', child]);
  assert.equal(c.code, 0, c.stdout + c.stderr);
  assert.match(c.stdout, /Executing 1 build trigger/);
  assert.equal(d.docker(['run', '--rm', '--entrypoint', 'cat', 'child', '/tmp/onbuild.txt']).stdout, 'triggered\n');
  assert.equal(inspect('child', '{{json .Config.OnBuild}}'), 'null');
});

test('the cache: reused when nothing changed, invalidated by content and args, survives a restart, pruned', async () => {
  const dir = ctx('cache', {
    Dockerfile: 'FROM busybox\nARG V=1\nCOPY f.txt /f.txt\nRUN echo $V $(cat /f.txt) > /out\nCMD ["cat", "/out"]\n',
    'f.txt': 'one\n',
  });
  const first = dockerBuild(['-t', 'cached', dir]);
  assert.equal(first.code, 0, first.stderr);
  assert.doesNotMatch(first.stdout, /Using cache/);
  const id1 = inspect('cached', '{{.Id}}');
  const second = dockerBuild(['-t', 'cached', dir]);
  assert.equal(cached(second), 4);
  assert.equal(inspect('cached', '{{.Id}}'), id1);

  await d.stop();
  await d.start();
  const third = d.berth(['build', '-t', 'cached', dir]);
  assert.equal(third.code, 0, third.stderr);
  assert.equal(cached(third), 4);
  assert.equal(inspect('cached', '{{.Id}}'), id1);

  // A build arg the RUN sees invalidates it.
  const arg = d.berth(['build', '--build-arg', 'V=2', '-t', 'cached', dir]);
  // (the ARG step itself is unchanged; what follows it sees another value)
  assert.equal(cached(arg), 1, arg.stdout);
  assert.equal(d.docker(['run', '--rm', 'cached']).stdout, '2 one\n');

  // Changed file content: the COPY and everything after it run again.
  writeFileSync(join(dir, 'f.txt'), 'two\n');
  const changed = d.berth(['build', '-t', 'cached', dir]);
  assert.equal(cached(changed), 1, changed.stdout);
  assert.match(changed.stdout, /Step 2\/5 : ARG V=1\n ---> Using cache/);
  assert.equal(d.docker(['run', '--rm', 'cached']).stdout, '1 two\n');

  const nocache = d.berth(['build', '--no-cache', '-t', 'cached', dir]);
  assert.doesNotMatch(nocache.stdout, /Using cache/);

  const pr = d.docker(['builder', 'prune', '-f']);
  assert.equal(pr.code, 0, pr.stderr);
  assert.match(pr.stdout, /Total reclaimed space/);
  const after = d.berth(['build', '-t', 'cached', dir]);
  assert.doesNotMatch(after.stdout, /Using cache/);
  assertClean();
});

test('the context: cached across both CLIs, only what COPY takes counts, large files and bind mounts read on a miss', () => {
  const dir = ctx('context', {
    'docker/Dockerfile': [
      'FROM busybox',
      'COPY app/ /app/',
      'RUN wc -c < /app/big > /big-size',
      'RUN --mount=type=bind,source=app,target=/mnt cat /mnt/a.txt > /from-bind',
      'CMD ["cat", "/app/a.txt"]',
      '',
    ].join('\n'),
    'app/a.txt': 'one\n',
    'app/sub/b.txt': 'b\n',
    'app/skip.log': 'ignored\n',
    'unused.txt': 'not copied\n',
    '.dockerignore': 'app/*.log\n',
  });
  // Larger than what the daemon keeps in memory per file: read back from the context written out.
  writeFileSync(join(dir, 'app', 'big'), Buffer.alloc(300 << 10, 'x'));
  const df = join(dir, 'docker', 'Dockerfile');
  const first = dockerBuild(['-f', df, '-t', 'ctxcache', dir]);
  assert.equal(first.code, 0, first.stderr);
  assert.equal(cached(first), 0);
  const id1 = inspect('ctxcache', '{{.Id}}');
  const run = (cmd: string): string => d.docker(['run', '--rm', 'ctxcache', 'cat', cmd]).stdout;
  assert.equal(run('/big-size').trim(), String(300 << 10));
  assert.equal(run('/from-bind'), 'one\n');
  assert.equal(d.docker(['run', '--rm', 'ctxcache', 'ls', '/app']).stdout, 'a.txt\nbig\nsub\n');

  // The same context through the other CLI: every step from the cache, the same image.
  const again = d.berth(['build', '-f', df, '-t', 'ctxcache', dir]);
  assert.equal(again.code, 0, again.stderr);
  assert.equal(cached(again), 4, again.stdout);
  assert.equal(inspect('ctxcache', '{{.Id}}'), id1);

  // Files the COPY does not take (not named, or excluded by .dockerignore) do not matter.
  writeFileSync(join(dir, 'unused.txt'), 'changed\n');
  writeFileSync(join(dir, 'app', 'skip.log'), 'changed too\n');
  for (const r of [dockerBuild(['-f', df, '-t', 'ctxcache', dir]), d.berth(['build', '-f', df, '-t', 'ctxcache', dir])]) {
    assert.equal(r.code, 0, r.stderr);
    assert.equal(cached(r), 4, r.stdout);
    assert.equal(inspect('ctxcache', '{{.Id}}'), id1);
  }

  // A copied file's mode is part of the key: the COPY and what follows run again.
  chmodSync(join(dir, 'app', 'sub', 'b.txt'), 0o600);
  const mode = d.berth(['build', '-f', df, '-t', 'ctxcache', dir]);
  assert.equal(mode.code, 0, mode.stderr);
  assert.equal(cached(mode), 0, mode.stdout);
  const id2 = inspect('ctxcache', '{{.Id}}');
  assert.notEqual(id2, id1);
  assert.match(d.docker(['run', '--rm', 'ctxcache', 'stat', '-c', '%a', '/app/sub/b.txt']).stdout, /^600/);

  // So is its content; the new content is what the image holds.
  writeFileSync(join(dir, 'app', 'a.txt'), 'two\n');
  const content = dockerBuild(['-f', df, '-t', 'ctxcache', dir]);
  assert.equal(content.code, 0, content.stderr);
  assert.equal(cached(content), 0, content.stdout);
  assert.notEqual(inspect('ctxcache', '{{.Id}}'), id2);
  assert.equal(d.docker(['run', '--rm', 'ctxcache']).stdout, 'two\n');
  assert.equal(run('/from-bind'), 'two\n');
  assertClean();
});

test('COPY from a heredoc: cached while its text is the same, copied again when it changes', () => {
  const dockerfile = (who: string): string => ['FROM busybox', 'ARG WHO=world', 'COPY <<EOF /greeting', `hello \${WHO} from ${who}`, 'EOF', 'CMD ["cat", "/greeting"]', ''].join('\n');
  const dir = ctx('heredoc-cache', { Dockerfile: dockerfile('one') });
  const first = d.berth(['build', '-t', 'heredoc-cache', dir]);
  assert.equal(first.code, 0, first.stderr);
  const id1 = inspect('heredoc-cache', '{{.Id}}');
  const again = dockerBuild(['-t', 'heredoc-cache', dir]);
  assert.equal(again.code, 0, again.stderr);
  assert.equal(cached(again), 3, again.stdout);
  assert.equal(inspect('heredoc-cache', '{{.Id}}'), id1);
  // Another value for an expanded variable is other text.
  const arg = d.berth(['build', '--build-arg', 'WHO=you', '-t', 'heredoc-cache', dir]);
  assert.equal(arg.code, 0, arg.stderr);
  assert.match(arg.stdout, /COPY <<EOF \/greeting\n(?! ---> Using cache)/);
  assert.equal(d.docker(['run', '--rm', 'heredoc-cache']).stdout, 'hello you from one\n');
  writeFileSync(join(dir, 'Dockerfile'), dockerfile('two'));
  const changed = dockerBuild(['-t', 'heredoc-cache', dir]);
  assert.equal(changed.code, 0, changed.stderr);
  assert.equal(cached(changed), 1, changed.stdout);
  assert.notEqual(inspect('heredoc-cache', '{{.Id}}'), id1);
  assert.equal(d.docker(['run', '--rm', 'heredoc-cache']).stdout, 'hello world from two\n');
  assertClean();
});

test('berth build: heredocs, cache mounts across builds, secrets never stored', () => {
  const dir = ctx('mounts', {
    Dockerfile: [
      'FROM busybox',
      'ARG WHO=world',
      'RUN <<EOF',
      'echo "hello $WHO" > /hello.txt',
      'echo second line >> /hello.txt',
      'EOF',
      'COPY <<EOF /etc/greeting',
      'greeting for ${WHO}',
      'EOF',
      'RUN cat <<-"END" > /quoted.txt',
      '\tno $WHO here',
      '\tEND',
      'RUN --mount=type=cache,target=/cache echo run >> /cache/log && wc -l < /cache/log > /cache-count',
      'RUN --mount=type=secret,id=token test "$(tr a-z A-Z < /run/secrets/token)" = HUNTER2 && echo ok > /secret-ok',
      'RUN --mount=type=secret,id=token,target=/etc/tok cat /etc/tok | wc -c > /secret-len',
      'RUN --mount=type=tmpfs,target=/scratch touch /scratch/x && mount | grep -q " /scratch " && echo tmpfs > /tmpfs-ok',
      'RUN --mount=type=bind,source=data,target=/ctx cat /ctx/d.txt > /bound.txt',
      'RUN --network=none ip link | grep -c "^[0-9]" > /links',
      '',
    ].join('\n'),
    'data/d.txt': 'bound\n',
    'secret.txt': 'hunter2',
  });
  const secret = join(dir, 'secret.txt');
  const r = d.berth(['build', '--secret', `id=token,src=${secret}`, '-t', 'mounts', dir]);
  assert.equal(r.code, 0, r.stdout + r.stderr);
  const out = d.berth(['run', '--rm', 'mounts', 'sh', '-c', 'cat /hello.txt /etc/greeting /quoted.txt /cache-count /secret-ok /secret-len /tmpfs-ok /bound.txt /links; ls -a /run /cache /scratch 2>&1; ls /etc/tok 2>&1']);
  assert.equal(out.code === 0 || out.code === 1, true, out.stderr);
  const lines = out.stdout.split('\n');
  assert.deepEqual(lines.slice(0, 10), ['hello world', 'second line', 'greeting for world', 'no $WHO here', '1', 'ok', '7', 'tmpfs', 'bound', '1']);
  // Mount points made for the step are not in the image.
  assert.doesNotMatch(out.stdout, /secrets/);
  assert.match(out.stdout, /ls: \/cache: No such file or directory/);
  assert.match(out.stdout, /ls: \/etc\/tok: No such file or directory/);
  // The secret's content is in no layer.
  const save = spawnSync('sh', ['-c', `grep -rl hunter2 ${join(d.dataRoot, 'layers')} ${join(d.dataRoot, 'content')} || true`], { encoding: 'utf8' });
  assert.equal(save.stdout.trim(), '');

  // The cache mount keeps its content across builds.
  const again = d.berth(['build', '--no-cache', '--secret', `id=token,src=${secret}`, '-t', 'mounts', dir]);
  assert.equal(again.code, 0, again.stderr);
  assert.equal(d.berth(['run', '--rm', 'mounts', 'cat', '/cache-count']).stdout, '2\n');

  // Without the secret the step fails: a required secret is not optional... but a plain mount is.
  const nosecret = d.berth(['build', '--no-cache', '-t', 'mounts-nosecret', dir]);
  assert.notEqual(nosecret.code, 0);
  assert.match(nosecret.stderr, /returned a non-zero code/);
  assertClean();
});

test('berth build: --target, --build-arg scoping, --label, -q, --iidfile, -f, .dockerignore', () => {
  const dir = ctx('flags', {
    'build.Dockerfile': [
      'ARG TAG=latest',
      'FROM busybox:${TAG} AS base',
      'RUN echo "tag=${TAG}" > /scoped',
      'ARG TAG',
      'RUN echo "tag=${TAG}" >> /scoped',
      'COPY . /ctx/',
      'FROM base AS final',
      'RUN exit 7',
      '',
    ].join('\n'),
    '.dockerignore': '*.log\n!keep.log\nsecret/\n',
    'a.log': 'x',
    'keep.log': 'k',
    'secret/s.txt': 's',
    'ok.txt': 'ok',
  });
  const iid = join(work, 'iid');
  const r = d.berth(['build', '-q', '-f', join(dir, 'build.Dockerfile'), '--target', 'base', '--label', 'team=core', '--iidfile', iid, '-t', 'flags', dir]);
  assert.equal(r.code, 0, r.stderr);
  assert.match(r.stdout.trim(), /^sha256:[0-9a-f]{64}$/);
  assert.equal(readFileSync(iid, 'utf8'), r.stdout.trim());
  assert.equal(inspect('flags', '{{.Id}}'), r.stdout.trim());
  assert.equal(inspect('flags', '{{index .Config.Labels "team"}}'), 'core');
  const files = d.berth(['run', '--rm', 'flags', 'sh', '-c', 'cat /scoped; ls -A /ctx']);
  assert.equal(files.stdout, 'tag=\ntag=latest\n.dockerignore\nbuild.Dockerfile\nkeep.log\nok.txt\n');

  // An unused --build-arg is reported.
  const warn = d.berth(['build', '--build-arg', 'NOPE=1', '--target', 'base', '-f', join(dir, 'build.Dockerfile'), dir]);
  assert.match(warn.stdout, /\[Warning\] One or more build-args \[NOPE\] were not consumed/);
});

test('contexts from stdin: a Dockerfile alone, a tar', () => {
  const df = 'FROM busybox\nRUN echo from-stdin > /s\n';
  const r = d.berth(['build', '-t', 'stdin1', '-'], df);
  assert.equal(r.code, 0, r.stderr);
  assert.equal(d.berth(['run', '--rm', 'stdin1', 'cat', '/s']).stdout, 'from-stdin\n');
  const viaDocker = dockerBuild(['-t', 'stdin2', '-'], df);
  assert.equal(viaDocker.code, 0, viaDocker.stderr);

  const dir = ctx('tarctx', { Dockerfile: 'FROM busybox\nCOPY x.txt /x.txt\n', 'x.txt': 'in tar\n' });
  const tar = spawnSync('tar', ['-c', '-C', dir, '.']).stdout;
  const t = d.berth(['build', '-t', 'stdin3', '-'], tar);
  assert.equal(t.code, 0, t.stderr);
  assert.equal(d.berth(['run', '--rm', 'stdin3', 'cat', '/x.txt']).stdout, 'in tar\n');
  const dt = dockerBuild(['-t', 'stdin4', '-'], tar);
  assert.equal(dt.code, 0, dt.stderr);
});

test('failures report the step, exit non-zero, tag nothing and leave nothing behind', () => {
  // Syntax error: the line is named, before any step runs.
  const bad = ctx('bad', { Dockerfile: 'FROM busybox\nRUN true\nFOO bar\n' });
  for (const cli of ['docker', 'berth'] as const) {
    const r = cli === 'docker' ? dockerBuild(['-t', 'bad', bad]) : d.berth(['build', '-t', 'bad', bad]);
    assert.notEqual(r.code, 0);
    assert.match(r.stderr, /dockerfile parse error on line 3: unknown instruction: FOO/);
  }
  // A failing RUN: its output and the step are shown; docker exits with the command's code.
  const fail = ctx('fail', { Dockerfile: 'FROM busybox\nRUN echo about to fail && echo on-stderr >&2 && exit 3\nRUN echo never\n' });
  const df = dockerBuild(['-t', 'failing', fail]);
  assert.equal(df.code, 3);
  assert.match(df.stdout, /Step 2\/3 : RUN echo about to fail/);
  assert.match(df.stdout + df.stderr, /about to fail/);
  assert.match(df.stdout + df.stderr, /on-stderr/);
  assert.match(df.stderr, /The command '\/bin\/sh -c echo about to fail && echo on-stderr >&2 && exit 3' returned a non-zero code: 3/);
  assert.doesNotMatch(df.stdout, /never/);
  const bf = d.berth(['build', '-t', 'failing', fail]);
  assert.equal(bf.code, 3);
  assert.match(bf.stderr, /returned a non-zero code: 3/);
  // A missing COPY source.
  const missing = ctx('missing', { Dockerfile: 'FROM busybox\nCOPY nothere.txt /x\n' });
  for (const cli of ['docker', 'berth'] as const) {
    const r = cli === 'docker' ? dockerBuild(['-t', 'missing', missing]) : d.berth(['build', '-t', 'missing', missing]);
    assert.notEqual(r.code, 0);
    assert.match(r.stderr, /COPY failed: file not found in build context or excluded by \.dockerignore: stat nothere\.txt: file does not exist/);
  }
  // A missing base image and an empty Dockerfile.
  const nobase = d.berth(['build', '-'], 'FROM nosuchimage\n');
  // (the base is pulled; tests allow loopback registries only, so the refusal names that)
  assert.notEqual(nobase.code, 0);
  assert.match(nobase.stderr, /pull access denied for nosuchimage|docker\.io is not on loopback/);
  const empty = d.berth(['build', '-'], '\n');
  assert.match(empty.stderr, /cannot be empty/);
  for (const t of ['bad', 'failing', 'missing']) assert.notEqual(d.berth(['image', 'inspect', t]).code, 0, `${t} must not be tagged`);
  assertClean();
});

test('commit through both CLIs: changes, message, author, config changes', () => {
  const run = d.berth(['run', '--name', 'tocommit', 'busybox', 'sh', '-c', 'echo committed > /c.txt && rm /bin/vi']);
  assert.equal(run.code, 0, run.stderr);
  const b = d.berth(['commit', '-m', 'my message', '-a', 'Ann <ann@example.com>', '-c', 'CMD ["cat", "/c.txt"]', '-c', 'ENV K=v', 'tocommit', 'committed:b']);
  assert.equal(b.code, 0, b.stderr);
  assert.match(b.stdout.trim(), /^sha256:[0-9a-f]{64}$/);
  assert.equal(d.berth(['run', '--rm', 'committed:b']).stdout, 'committed\n');
  assert.equal(d.berth(['run', '--rm', 'committed:b', 'sh', '-c', 'ls /bin/vi 2>&1; echo $K']).stdout, 'ls: /bin/vi: No such file or directory\nv\n');
  assert.equal(inspect('committed:b', '{{.Comment}}|{{.Author}}'), 'my message|Ann <ann@example.com>');
  const hist = d.docker(['history', '--no-trunc', '--format', '{{.CreatedBy}}|{{.Comment}}', 'committed:b']).stdout.split('\n')[0];
  assert.equal(hist, 'sh -c echo committed > /c.txt && rm /bin/vi|my message');

  // docker commit of a running container (paused while its layer is taken).
  const bg = d.docker(['run', '-d', '--name', 'running', 'busybox', 'sh', '-c', 'echo live > /live.txt; sleep 60']);
  assert.equal(bg.code, 0, bg.stderr);
  let tries = 0;
  while (d.docker(['exec', 'running', 'true']).code !== 0 && tries++ < 50) spawnSync('sleep', ['0.1']);
  const dc = d.docker(['commit', '--change', 'WORKDIR /srv', 'running', 'committed:d']);
  assert.equal(dc.code, 0, dc.stderr);
  assert.equal(d.docker(['inspect', '-f', '{{.State.Running}} {{.State.Paused}}', 'running']).stdout.trim(), 'true false');
  assert.equal(inspect('committed:d', '{{.Config.WorkingDir}}'), '/srv');
  assert.equal(d.docker(['run', '--rm', 'committed:d', 'cat', '/live.txt']).stdout, 'live\n');
  d.docker(['rm', '-f', 'running', 'tocommit']);
  const bad = d.berth(['commit', 'nosuchcontainer']);
  assert.notEqual(bad.code, 0);
  assert.match(bad.stderr, /No such container: nosuchcontainer/);
});

test('independent stages build at the same time', () => {
  // Two stages that each wait for the other's marker in a shared cache mount: only parallel execution finishes.
  const dir = ctx('parallel', {
    Dockerfile: [
      'FROM busybox AS a',
      'RUN --mount=type=cache,target=/sync,id=par touch /sync/a && i=0; while [ ! -e /sync/b ] && [ $i -lt 100 ]; do sleep 0.1; i=$((i+1)); done; test -e /sync/b',
      'FROM busybox AS b',
      'RUN --mount=type=cache,target=/sync,id=par touch /sync/b && i=0; while [ ! -e /sync/a ] && [ $i -lt 100 ]; do sleep 0.1; i=$((i+1)); done; test -e /sync/a',
      'FROM busybox',
      'COPY --from=a /bin/busybox /a',
      'COPY --from=b /bin/busybox /b',
      '',
    ].join('\n'),
  });
  const r = d.berth(['build', '--no-cache', dir]);
  assert.equal(r.code, 0, r.stdout + r.stderr);
  // Output still reads in Dockerfile order.
  const steps = [...r.stdout.matchAll(/Step (\d+)\/7/g)].map((m) => Number(m[1]));
  assert.deepEqual(steps, [1, 2, 3, 4, 5, 6, 7]);
  rmSync(join(work, 'parallel'), { recursive: true, force: true });
});

test('system df lists the build cache; a client that hangs up cancels the build', async () => {
  const dir = ctx('df', { Dockerfile: 'FROM busybox\nRUN --mount=type=cache,target=/c echo x > /c/x && echo layer > /layer\n' });
  assert.equal(d.berth(['build', '-t', 'dfimg', dir]).code, 0);
  const df = d.docker(['system', 'df', '-v', '--format', '{{json .BuildCache}}']);
  assert.equal(df.code, 0, df.stderr);
  const cache = JSON.parse(df.stdout) as Array<{ CacheType: string }>;
  assert.ok(cache.some((c) => c.CacheType === 'regular'), df.stdout);
  assert.ok(cache.some((c) => c.CacheType === 'exec.cachemount'), df.stdout);

  const slow = ctx('cancel', { Dockerfile: 'FROM busybox\nRUN sleep 2\nRUN echo after > /after\n' });
  const p = d.spawn('berth', ['build', '--no-cache', '-t', 'cancelled', slow]);
  let out = '';
  await new Promise<void>((resolve) => {
    p.stdout!.on('data', (b: Buffer) => {
      out += b.toString();
      if (out.includes('Running in')) resolve();
    });
  });
  p.kill('SIGKILL');
  // The running step finishes on its own; nothing after it runs and nothing stays.
  for (let i = 0; i < 100 && readdirSync(join(d.dataRoot, 'build', 'run')).length > 0; i++) await new Promise((r) => setTimeout(r, 100));
  await new Promise((r) => setTimeout(r, 300));
  assert.notEqual(d.berth(['image', 'inspect', 'cancelled']).code, 0);
  assertClean();
});

test('COPY --exclude and --parents; remote-only ADD flags are refused', () => {
  const dir = ctx('excl', {
    Dockerfile: 'FROM busybox\nCOPY --exclude=**/*.log --exclude=skip src /plain/\nCOPY --parents src/a/one.txt src/b/two.txt /par/\n',
    'src/a/one.txt': '1',
    'src/a/x.log': 'log',
    'src/b/two.txt': '2',
    'src/skip/s.txt': 's',
  });
  const r = d.berth(['build', '-t', 'excl', dir]);
  assert.equal(r.code, 0, r.stdout + r.stderr);
  const ls = d.berth(['run', '--rm', 'excl', 'sh', '-c', 'cd /plain && find . | sort; cd /par && find . -type f | sort']);
  assert.equal(ls.stdout, '.\n./a\n./a/one.txt\n./b\n./b/two.txt\n./src/a/one.txt\n./src/b/two.txt\n');
  const bad = d.berth(['build', '-'], 'FROM busybox\nADD --checksum=sha256:00 Dockerfile /x\n');
  assert.notEqual(bad.code, 0);
  assert.match(bad.stderr, /--checksum is only for remote sources/);
});

test('removing a built image drops its layers; the next build redoes what the cache lost', () => {
  const dir = ctx('rmi', { Dockerfile: 'FROM busybox\nRUN echo one > /one\nRUN echo two > /two\n' });
  assert.equal(d.berth(['build', '-t', 'rmi-me', dir]).code, 0);
  assert.equal(d.berth(['rmi', 'rmi-me']).code, 0);
  const again = d.berth(['build', '-t', 'rmi-me', dir]);
  assert.equal(again.code, 0, again.stderr);
  assert.equal(d.berth(['run', '--rm', 'rmi-me', 'cat', '/one', '/two']).stdout, 'one\ntwo\n');
});

test('berthd killed during a RUN: the next start clears the step container', async () => {
  const dir = ctx('crash', { Dockerfile: 'FROM busybox\nRUN sleep 3\n' });
  const p = d.spawn('berth', ['build', '--no-cache', dir]);
  let out = '';
  await new Promise<void>((resolve) => {
    p.stdout!.on('data', (b: Buffer) => {
      out += b.toString();
      if (out.includes('Running in')) resolve();
    });
  });
  await d.stop('SIGKILL');
  await new Promise((r) => p.once('exit', r));
  await d.start();
  // The monitor of the killed build lets its container finish; give it the time.
  for (let i = 0; i < 60 && readFileSync('/proc/self/mounts', 'utf8').includes(d.dir); i++) await new Promise((r) => setTimeout(r, 100));
  assertClean();
  assert.equal(d.berth(['build', '-q', '-'], 'FROM busybox\nRUN true\n').code, 0);
});

test('FROM an image not stored here pulls it from its registry; --pull pulls again', async () => {
  const reg = new TestRegistry(join(d.dir, 'registry'));
  await reg.start();
  try {
    await pushTarImage(reg, 'base/busybox', 'v1', readFileSync(BUSYBOX_TAR), { compress: 'gzip' });
    const df = `FROM ${reg.host}/base/busybox:v1\nRUN echo pulled > /p\n`;
    const r = d.berth(['build', '-t', 'frompull', '-'], df);
    assert.equal(r.code, 0, r.stdout + r.stderr);
    assert.match(r.stdout, /Pulling from base\/busybox|Downloaded newer image|Pull complete/);
    assert.equal(d.berth(['run', '--rm', 'frompull', 'cat', '/p']).stdout, 'pulled\n');
    const again = dockerBuild(['--pull', '-t', 'frompull', '-'], df);
    assert.equal(again.code, 0, again.stdout + again.stderr);
    assert.match(again.stdout, /Using cache/);
  } finally {
    await reg.cleanup();
  }
});
