import { test } from 'node:test';
import assert from 'node:assert/strict';
import { parseDockerfile, parseStages, parseKeyValues } from '../../src/build/parser.ts';
import { Expander, expandWord, expandWords } from '../../src/build/expand.ts';
import { DockerIgnore, globMatch } from '../../src/build/dockerignore.ts';
import { exposePorts, goDuration, healthHistory, parseGoDuration } from '../../src/build/instructions.ts';

test('instructions, comments, continuations and forms', () => {
  const df = parseDockerfile([
    '# a comment',
    'FROM busybox AS base',
    'RUN echo a \\',
    '  # comment inside',
    '  && echo b',
    'CMD ["sh", "-c", "echo hi"]',
    'ENTRYPOINT echo ep',
    'copy --from=base --chown=1:2 /a /b',
  ].join('\n'));
  assert.deepEqual(df.instructions.map((i) => i.cmd), ['FROM', 'RUN', 'CMD', 'ENTRYPOINT', 'COPY']);
  assert.equal(df.instructions[1]!.rest, 'echo a   && echo b');
  assert.equal(df.instructions[1]!.line, 3);
  assert.deepEqual(df.instructions[2]!.json, ['sh', '-c', 'echo hi']);
  assert.equal(df.instructions[3]!.json, undefined);
  assert.deepEqual(df.instructions[4]!.flags, [{ name: 'from', value: 'base' }, { name: 'chown', value: '1:2' }]);
  assert.equal(df.instructions[4]!.line, 8);
});

test('a bracketed shell form that is not JSON stays shell form', () => {
  const df = parseDockerfile('FROM x\nCMD [not json]\n');
  assert.equal(df.instructions[1]!.json, undefined);
  assert.equal(df.instructions[1]!.rest, '[not json]');
});

test('parser directives: escape, syntax, check; only at the top', () => {
  const df = parseDockerfile('# syntax=docker/dockerfile:1\n# escape=`\n# check=skip=all\nFROM x\nRUN echo a `\n  b\n');
  assert.equal(df.directives.escape, '`');
  assert.equal(df.directives.syntax, 'docker/dockerfile:1');
  assert.equal(df.directives.check, 'skip=all');
  assert.equal(df.instructions[1]!.rest, 'echo a   b');
  const late = parseDockerfile('FROM x\n# escape=`\nRUN echo a \\\n b\n');
  assert.equal(late.directives.escape, '\\');
  assert.equal(late.instructions[1]!.rest, 'echo a  b');
  assert.throws(() => parseDockerfile('# escape=x\nFROM a'), /invalid escape token/);
  assert.throws(() => parseDockerfile('# escape=`\n# escape=\\\nFROM a'), /only one escape parser directive/);
});

test('heredocs: bodies, quoting, <<- tab stripping, several per line', () => {
  const df = parseDockerfile('FROM x\nRUN <<EOF\necho $HOME\nEOF\nCOPY <<-"A" <<B /dst/\n\tline a\n\tA\nline b\nB\nRUN echo done\n');
  const run = df.instructions[1]!;
  assert.equal(run.heredocs.length, 1);
  assert.deepEqual(run.heredocs[0], { name: 'EOF', content: 'echo $HOME\n', expand: true });
  const copy = df.instructions[2]!;
  assert.deepEqual(copy.heredocs.map((h) => [h.name, h.content, h.expand]), [['A', 'line a\n', false], ['B', 'line b\n', true]]);
  assert.equal(df.instructions[3]!.rest, 'echo done');
  assert.throws(() => parseDockerfile('FROM x\nRUN <<EOF\nno end\n'), /line 2: unterminated heredoc EOF/);
});

test('errors name the line', () => {
  assert.throws(() => parseDockerfile('FROM x\n\nFOO bar\n'), /dockerfile parse error on line 3: unknown instruction: FOO/);
  assert.throws(() => parseDockerfile('FROM x\nCOPY --nope=1 a b\n'), /line 2: unknown flag: nope/);
  assert.throws(() => parseDockerfile('FROM a b\n'), /line 1: FROM requires either one or three arguments/);
  assert.throws(() => parseDockerfile('FROM x\nENV a=1 b\n'), /line 2: Syntax error - can't find = in "b"/);
  assert.throws(() => parseDockerfile('FROM x\nSHELL sh -c\n'), /line 2: SHELL requires the arguments to be in JSON form/);
  assert.throws(() => parseDockerfile('FROM x\nONBUILD ONBUILD RUN x\n'), /Chaining ONBUILD/);
  assert.throws(() => parseDockerfile('FROM x\nCOPY onlyone\n'), /line 2: COPY requires at least two arguments/);
  assert.throws(() => parseStages('RUN x\n'), /no build stage in current context/);
  assert.throws(() => parseStages('FROM a AS one\nFROM b AS one\n'), /duplicate name one/);
});

test('stages and global args', () => {
  const s = parseStages('ARG V=1\nARG B\nFROM busybox:$V AS one\nRUN x\nFROM one\nCOPY --from=one a b\n');
  assert.equal(s.globalArgs.length, 2);
  assert.equal(s.stages.length, 2);
  assert.equal(s.stages[0]!.name, 'one');
  assert.equal(s.stages[1]!.instructions.length, 1);
});

test('ENV/LABEL key values, legacy form', () => {
  assert.deepEqual(parseKeyValues('ENV', 'a=1 b="two words" c=x\\ y', '\\', 1), [['a', '1'], ['b', '"two words"'], ['c', 'x\\ y']]);
  assert.deepEqual(parseKeyValues('ENV', 'Z some value', '\\', 1), [['Z', 'some value']]);
});

test('substitution: plain, braces and modifiers', () => {
  const vars = new Map([['A', 'hello'], ['E', ''], ['P', '/usr/local/bin/tool.tar.gz']]);
  assert.equal(expandWord('$A ${A}x', vars), 'hello hellox');
  assert.equal(expandWord('${NOPE:-dflt} ${E:-empty} ${E-unset}', vars), 'dflt empty ');
  assert.equal(expandWord('${A:+set} ${NOPE:+set}. ${E+isset}', vars), 'set . isset');
  assert.throws(() => expandWord('${NOPE:?must be set}', vars), /NOPE: must be set/);
  assert.throws(() => expandWord('${E:?}', vars), /E: is not allowed to be unset/);
  assert.equal(expandWord('${E?}', vars), '');
  assert.equal(expandWord('${P#*/} ${P##*/}', vars), 'usr/local/bin/tool.tar.gz tool.tar.gz');
  assert.equal(expandWord('${P%.*} ${P%%.*}', vars), '/usr/local/bin/tool.tar /usr/local/bin/tool');
  assert.equal(expandWord('${A/l/L} ${A//l/L}', vars), 'heLlo heLLo');
  assert.equal(expandWord('${NOPE:-${A}!}', vars), 'hello!');
});

test('substitution: quoting and escapes', () => {
  const vars = new Map([['A', 'x y']]);
  assert.equal(expandWord("'$A' \"$A\" \\$A", vars), '$A x y $A');
  assert.deepEqual(expandWords('a "b c" $A \'d e\'', vars), ['a', 'b c', 'x y', 'd e']);
  assert.equal(new Expander((k) => vars.get(k), '`').word('`$A $A'), '$A x y');
  const used = new Expander((k) => vars.get(k));
  used.word('$A ${B:-c}');
  assert.deepEqual([...used.used].sort(), ['A', 'B']);
  assert.equal(new Expander((k) => vars.get(k)).heredoc('say "$A" \\$A\n'), 'say "x y" $A\n');
});

test('.dockerignore: patterns, ** and ! exceptions', () => {
  const ig = new DockerIgnore('# comment\n*.log\n!keep.log\nbuild/\n**/*.tmp\n/secret\n');
  assert.equal(ig.excluded('a.log'), true);
  assert.equal(ig.excluded('keep.log'), false);
  assert.equal(ig.excluded('build/out/x'), true);
  assert.equal(ig.excluded('deep/er/x.tmp'), true);
  assert.equal(ig.excluded('x.tmp'), true);
  assert.equal(ig.excluded('secret'), true);
  assert.equal(ig.excluded('src/main.c'), false);
  assert.equal(ig.excluded('sub/a.log'), false);
  assert.ok(globMatch('*.txt', 'a.txt'));
  assert.ok(!globMatch('*.txt', 'd/a.txt'));
  assert.ok(globMatch('fil?[0-9]', 'file7'));
});

test('config history formatting as the classic builder writes it', () => {
  assert.equal(goDuration(5e9), '5s');
  assert.equal(goDuration(90e9), '1m30s');
  assert.equal(goDuration(1.5e9), '1.5s');
  assert.equal(goDuration(3.6e12), '1h0m0s');
  assert.equal(parseGoDuration('interval', '1m30s'), 90e9);
  assert.throws(() => parseGoDuration('interval', '10x'), /invalid duration/);
  assert.equal(healthHistory({ Test: ['CMD-SHELL', 'echo ok'], Interval: 5e9, Retries: 2 }), '&{["CMD-SHELL" "echo ok"] "5s" "0s" "0s" \'\\x02\'}');
  assert.deepEqual(exposePorts(['80', '443/udp', '8000-8001']), { keys: ['80/tcp', '443/udp', '8000/tcp', '8001/tcp'], text: '443/udp 80 8000 8001' });
});
