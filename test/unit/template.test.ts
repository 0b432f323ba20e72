import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { BerthError } from '../../src/util/errors.ts';
import { formatValue, goJSON, parseTemplate, sprintf } from '../../src/cli/format/template.ts';
import { renderFormatted, tabwrite, tabwriteText } from '../../src/cli/format/table.ts';

function run(src: string, data: unknown = {}): string {
  return parseTemplate(src).execute(data);
}

function invalidWith(message: string | RegExp): (err: unknown) => boolean {
  return (err: unknown) => {
    assert.ok(err instanceof BerthError, `expected BerthError, got ${String(err)}`);
    assert.equal(err.kind, 'InvalidParameter');
    if (typeof message === 'string') assert.equal(err.message, message);
    else assert.match(err.message, message);
    return true;
  };
}

/** A row shaped like the container list's context, including a method. */
function container(over: Record<string, unknown> = {}): Record<string, unknown> {
  const labels: Record<string, string> = { 'com.example': 'yes', 'a.b': 'dotted' };
  return {
    ID: '4c3f1e0d2b1a',
    Names: 'web',
    Image: 'busybox',
    State: 'running',
    Status: 'Up 3 seconds',
    Labels: labels,
    Label: (key: string) => labels[key] ?? '',
    Args: ['sh', '-c', 'sleep 1'],
    Mounts: [{ Source: '/data' }, { Source: '/logs' }],
    List: [1, 2, 3],
    ...over,
  };
}

describe('fields and printing', () => {
  test('field chains, dot and $', () => {
    const c = container();
    assert.equal(run('{{.ID}}', c), '4c3f1e0d2b1a');
    assert.equal(run('{{.A.B.C}}', { A: { B: { C: 'deep' } } }), 'deep');
    assert.equal(run('{{.}}', 'root'), 'root');
    assert.equal(run('{{with .Labels}}{{$.Names}}{{end}}', c), 'web');
    assert.equal(run('{{.Labels.foo}}', { Labels: { foo: 'bar' } }), 'bar');
  });

  test('method-like properties are called with the arguments that follow', () => {
    const c = container();
    assert.equal(run('{{.Label "com.example"}}', c), 'yes');
    assert.equal(run('{{"a.b" | .Label}}', c), 'dotted');
    assert.equal(run('{{.Sum 1 2}}', { Sum: (a: number, b: number) => a + b }), '3');
    class Ctx {
      name = 'n1';
      Upper(): string {
        return this.name.toUpperCase();
      }
    }
    assert.equal(run('{{.Upper}}', new Ctx()), 'N1');
  });

  test('missing keys print <no value>; Object builtins are not fields', () => {
    assert.equal(run('{{.Missing}}', {}), '<no value>');
    assert.equal(run('{{.Missing.Deeper}}', {}), '<no value>');
    assert.equal(run('{{.N}}', { N: null }), '<no value>');
    assert.equal(run('{{.constructor}}|{{.toString}}', {}), '<no value>|<no value>');
    assert.equal(parseTemplate('{{.}}').execute(undefined), '<no value>');
  });

  test('values print the way Go prints them', () => {
    assert.equal(run('{{.}}', ['a', 'b', 'c']), '[a b c]');
    assert.equal(run('{{.}}', { b: 2, a: 'x' }), 'map[a:x b:2]');
    assert.equal(run('{{.}}', {}), 'map[]');
    assert.equal(run('{{.}}', [null, 'a']), '[<nil> a]');
    assert.equal(run('{{.T}} {{.F}}', { T: true, F: false }), 'true false');
    assert.equal(run('{{.}}', 42), '42');
    assert.equal(run('{{.}}', 1.5), '1.5');
    assert.equal(run('{{.}}', 1234567.5), '1.2345675e+06');
    assert.equal(run('{{.}}', 0.00001), '1e-05');
    assert.equal(run('{{.}}', 1000000), '1000000');
    assert.equal(run('{{.}}', new Map([['k', 'v']])), 'map[k:v]');
  });

  test('a field of a non-object is an execution error', () => {
    assert.throws(
      () => run('{{.ID.X}}', container()),
      invalidWith('template: :1:2: executing "" at <.ID.X>: can\'t evaluate field X in type string'),
    );
    assert.throws(() => run('{{.List.X}}', container()), invalidWith(/can't evaluate field X in type \[\]interface \{\}/));
    assert.throws(() => run('{{.S "x"}}', { S: 'str' }), invalidWith(/S is not a method but has arguments/));
  });

  test('a throwing method is reported as a failed call', () => {
    const data = {
      F() {
        throw new Error('boom');
      },
    };
    assert.throws(() => run('{{.F}}', data), invalidWith(/error calling F: boom/));
  });
});

describe('literals, variables and pipelines', () => {
  test('string, number, bool and char literals', () => {
    assert.equal(run('{{"a\\tb\\u00e9\\x41"}}'), 'a\tbéA');
    assert.equal(run('{{`raw\\n`}}'), 'raw\\n');
    assert.equal(run('{{3}} {{-3}} {{0x1F}} {{1e3}} {{017}} {{1_000}} {{2.5}}'), '3 -3 31 1000 15 1000 2.5');
    assert.equal(run("{{'a'}} {{printf \"%c\" 'é'}}"), '97 é');
    assert.equal(run('{{true}} {{false}}'), 'true false');
  });

  test('variables: declare, assign, scope', () => {
    assert.equal(run('{{$x := .ID}}{{$x}}', container()), '4c3f1e0d2b1a');
    assert.equal(run('{{$x := 1}}{{if true}}{{$x = 2}}{{end}}{{$x}}'), '2');
    assert.equal(run('{{with $x := .A}}{{$x}}{{end}}', { A: 'v' }), 'v');
    assert.throws(() => parseTemplate('{{if true}}{{$y := 1}}{{end}}{{$y}}'), invalidWith(/undefined variable "\$y"/));
  });

  test('pipelines pass the value as the last argument', () => {
    assert.equal(run('{{"a" | printf "%s-%s" "b"}}'), 'b-a');
    assert.equal(run('{{.Names | upper | printf "<%s>"}}', container()), '<WEB>');
    assert.equal(run('{{(index .Mounts 1).Source}}', container()), '/logs');
    assert.equal(run('{{printf "%d" (len .List)}}', container()), '3');
  });

  test('trim markers and comments', () => {
    assert.equal(run('a {{- /* comment */ -}} b'), 'ab');
    assert.equal(run('{{- /* comment */ -}}'), '');
    assert.equal(run('x  \n  {{- "y" -}}  \n  z'), 'xyz');
    assert.equal(run('{{3 -}} < {{- 4}}'), '3<4');
    assert.equal(run('{{.A}}{{/* c */}}{{.B}}', { A: 1, B: 2 }), '12');
  });
});

describe('control structures', () => {
  test('if / else if / else', () => {
    const t = '{{if eq .State "running"}}up{{else if eq .State "paused"}}paused{{else}}down{{end}}';
    assert.equal(run(t, { State: 'running' }), 'up');
    assert.equal(run(t, { State: 'paused' }), 'paused');
    assert.equal(run(t, { State: 'exited' }), 'down');
  });

  test('truthiness follows Go', () => {
    const t = '{{if .}}T{{else}}F{{end}}';
    for (const v of ['', 0, false, null, undefined, [], {}]) assert.equal(run(t, v), 'F', JSON.stringify(v));
    for (const v of ['x', 1, true, [0], { a: 1 }]) assert.equal(run(t, v), 'T', JSON.stringify(v));
  });

  test('range over arrays, objects (sorted keys), numbers, with else', () => {
    assert.equal(run('{{range .Mounts}}{{.Source}} {{end}}', container()), '/data /logs ');
    assert.equal(run('{{range $i, $v := .List}}{{$i}}={{$v}},{{end}}', container()), '0=1,1=2,2=3,');
    assert.equal(run('{{range $k, $v := .}}{{$k}}={{$v}};{{end}}', { z: 1, a: 2, m: 3 }), 'a=2;m=3;z=1;');
    assert.equal(run('{{range $v := .}}{{$v}}{{end}}', ['a', 'b']), 'ab');
    assert.equal(run('{{range 3}}{{.}}{{end}}'), '012');
    assert.equal(run('{{range .Nothing}}x{{else}}empty{{end}}', {}), 'empty');
    assert.equal(run('{{range .}}x{{else}}empty{{end}}', []), 'empty');
    assert.throws(() => run('{{range .}}{{end}}', 'str'), invalidWith(/range can't iterate over str/));
  });

  test('break and continue', () => {
    assert.equal(run('{{range .}}{{if eq . 2}}{{continue}}{{end}}{{.}}{{end}}', [1, 2, 3]), '13');
    assert.equal(run('{{range .}}{{if eq . 2}}{{break}}{{end}}{{.}}{{end}}', [1, 2, 3]), '1');
    assert.throws(() => parseTemplate('{{break}}'), invalidWith(/\{\{break\}\} outside \{\{range\}\}/));
  });

  test('with / else with / else', () => {
    assert.equal(run('{{with .State}}{{.Status}}{{end}}', { State: { Status: 'running' } }), 'running');
    const t = '{{with .A}}a{{.}}{{else with .B}}b{{.}}{{else}}none{{end}}';
    assert.equal(run(t, { A: 1 }), 'a1');
    assert.equal(run(t, { B: 2 }), 'b2');
    assert.equal(run(t, {}), 'none');
  });

  test('define, template and block', () => {
    assert.equal(run('{{define "x"}}[{{.}}]{{end}}{{template "x" .ID}}', container()), '[4c3f1e0d2b1a]');
    assert.equal(run('{{block "y" .Names}}<{{.}}>{{end}}', container()), '<web>');
    assert.equal(run('{{define "a"}}A{{.}}{{end}}{{define "b"}}B{{template "a" .}}{{end}}{{template "b" 1}}'), 'BA1');
    assert.equal(run('{{define "v"}}{{$}}{{end}}{{template "v" "inner"}}', 'outer'), 'inner');
    assert.throws(() => run('{{template "nope"}}'), invalidWith(/template "nope" not defined/));
  });
});

describe('functions', () => {
  test("Go's comparison and logic builtins", () => {
    assert.equal(run('{{eq 1 1}} {{eq "a" "b"}} {{eq .S "a" "b" "c"}}', { S: 'c' }), 'true false true');
    assert.equal(run('{{ne 1 2}} {{lt 1 2}} {{le 2 2}} {{gt 1 2}} {{ge "b" "a"}}'), 'true true true false true');
    assert.equal(run('{{eq .M nil}} {{eq .S nil}}', { S: 'x' }), 'true false');
    assert.equal(run('{{and 1 0 "x"}} {{and 1 "x"}} {{or 0 "" "z"}} {{or 0 ""}} {{not 0}}'), '0 x z  true');
    // and/or stop early, so the erroring call is never made.
    assert.equal(run('{{or 1 (index .Nope 3)}}', {}), '1');
    assert.throws(() => run('{{eq .ID 1}}', container()), invalidWith(/incompatible types for comparison/));
  });

  test('len, index, slice', () => {
    const c = container();
    assert.equal(run('{{len .List}} {{len .Labels}} {{len "héllo"}}', c), '3 2 6');
    assert.equal(run('{{index .Labels "a.b"}}', c), 'dotted');
    assert.equal(run('{{index .M "a" 1}}', { M: { a: [0, 'one'] } }), 'one');
    assert.equal(run('{{index .M "zz"}}', { M: {} }), '<no value>');
    assert.equal(run('{{slice .ID 0 4}} {{slice .List 1}}', c), '4c3f [2 3]');
    assert.throws(() => run('{{index .List 5}}', c), invalidWith(/index out of range: 5/));
    assert.throws(() => run('{{len 3}}'), invalidWith(/len of type int/));
  });

  test('print, println, html, js, urlquery, call', () => {
    assert.equal(run('{{print 1 2 "a" 3 "b" "c"}}'), '1 2a3bc');
    assert.equal(run('{{println 1 "a"}}'), '1 a\n');
    assert.equal(run('{{print nil}}'), '<nil>');
    assert.equal(run('{{html "<a href=\'x\'>&\\""}}'), '&lt;a href=&#39;x&#39;&gt;&amp;&#34;');
    assert.equal(run('{{js "it\'s <b>=\\n"}}'), "it\\'s \\u003Cb\\u003E\\u003D\\u000A");
    assert.equal(run('{{urlquery "a b&c/é"}}'), 'a+b%26c%2F%C3%A9');
    // A function-valued property is a method, so call needs one that returns a function.
    assert.equal(run('{{call .MakeF "z"}}', { MakeF: () => (x: string) => `${x}!` }), 'z!');
    assert.equal(run('{{call $.MakeF}}', { MakeF: () => () => 'made' }), 'made');
  });

  test('printf verbs, widths and flags', () => {
    assert.equal(run('{{printf "%-10s|" .Names}}', container()), 'web       |');
    assert.equal(run('{{printf "%5s|%-5s|" "ab" "cd"}}'), '   ab|cd   |');
    assert.equal(run('{{printf "%d %v %t %q %x %X %o %03d %+d" 42 .L true "hi" 255 255 8 7 5}}', { L: [1, 2] }), '42 [1 2] true "hi" ff FF 10 007 +5');
    assert.equal(run('{{printf "%.2f|%8.3f|%e|%g|%.3g" 3.14159 -3.14159 123456.789 0.00001 1234.5678}}'), '3.14|  -3.142|1.234568e+05|1e-05|1.23e+03');
    assert.equal(run('{{printf "%6.2f%%" 12.3456}}'), ' 12.35%');
    assert.equal(run('{{printf "%T %T %T %T" "s" 1 1.5 .}}', []), 'string int float64 []interface {}');
    assert.equal(sprintf('%[2]s %[1]s', 'a', 'b'), 'b a');
    assert.equal(sprintf('%*d|%-*d|', 5, 1, 4, 2), '    1|2   |');
    assert.equal(sprintf('%#x %x %c %U', 255, 'hi', 65, 0x41), '0xff 6869 A U+0041');
    assert.equal(sprintf('%q %+q %#q', 'a\nb', 'é', 'x'), '"a\\nb" "\\u00e9" `x`');
  });

  test('printf argument mistakes are written into the output like Go', () => {
    assert.equal(sprintf('%d', 'x'), '%!d(string=x)');
    assert.equal(sprintf('%s', 5), '%!s(int=5)');
    assert.equal(sprintf('%d %s', 1), '1 %!s(MISSING)');
    assert.equal(sprintf('%d', 1, 'extra'), '1%!(EXTRA string=extra)');
    assert.equal(sprintf('%'), '%!(NOVERB)');
    assert.equal(sprintf('%v %s', null, null), '<nil> %!s(<nil>)');
  });

  test("docker's extra functions", () => {
    const c = container();
    assert.equal(run('{{join .Args ","}}', c), 'sh,-c,sleep 1');
    assert.equal(run('{{split "a,b,c" ","}}'), '[a b c]');
    assert.equal(run('{{index (split "a:b" ":") 1}}'), 'b');
    assert.equal(run('{{upper .Names}} {{lower "ABC"}} {{title "hello world-foo"}}', c), 'WEB abc Hello World-Foo');
    assert.equal(run('{{truncate .ID 4}}|{{truncate "ab" 5}}', c), '4c3f|ab');
    assert.equal(run('[{{pad "x" 2 1}}][{{pad "" 2 1}}]'), '[  x ][]');
    assert.throws(() => run('{{join .S " "}}', { S: 'x' }), invalidWith(/expected \[\]string; got string/));
    assert.throws(() => run('{{upper .L}}', { L: [1] }), invalidWith(/expected string; got \[\]interface \{\}/));
  });

  test('json encodes like Go: insertion order, HTML characters escaped', () => {
    const c = container();
    assert.equal(run('{{json .Labels}}', c), '{"com.example":"yes","a.b":"dotted"}');
    assert.equal(run('{{json .}}', { b: 1, a: [true, null], s: '<&>' }), '{"b":1,"a":[true,null],"s":"\\u003c\\u0026\\u003e"}');
    // Methods are not data, and leave no trace in the JSON.
    assert.equal(run('{{json .}}', { ID: 'x', Label: () => '' }), '{"ID":"x"}');
    assert.equal(run('{{json .}}', 'a\u2028\x01\n"\\'), '"a\\u2028\\u0001\\n\\"\\\\"');
    assert.equal(run('{{json .}}', []), '[]');
    assert.equal(run('{{json .Missing}}', {}), 'null');
    assert.equal(goJSON({ a: [1, { b: 2 }], e: {} }, '    '), '{\n    "a": [\n        1,\n        {\n            "b": 2\n        }\n    ],\n    "e": {}\n}');
  });

  test('extra functions can be supplied at parse time', () => {
    const t = parseTemplate('{{shout .}}', { funcs: { shout: (s) => `${String(s)}!` } });
    assert.equal(t.execute('hey'), 'hey!');
  });
});

describe('errors', () => {
  const cases: [string, string | RegExp][] = [
    ['{{.ID', 'template parsing error: template: :1: unclosed action'],
    ['a\n{{.ID', 'template parsing error: template: :2: unclosed action'],
    ['{{foo .ID}}', 'template parsing error: template: :1: function "foo" not defined'],
    ['{{if .ID}}', 'template parsing error: template: :1: unexpected EOF'],
    ['{{end}}', 'template parsing error: template: :1: unexpected {{end}}'],
    ['{{else}}', 'template parsing error: template: :1: unexpected {{else}}'],
    ['{{"abc}}', /unterminated quoted string/],
    ['{{/* x', /unclosed comment/],
    ['{{(.A}}', /unclosed left paren/],
    ['{{.A)}}', /unexpected right paren/],
    ['{{}}', /missing value for command/],
    ['{{.A !}}', /unexpected "!" in operand/],
    ['{{1 | 2}}', /non executable command in pipeline stage 2/],
    ['{{range .}}{{else if .}}{{end}}', /unexpected <if> in input/],
    ['{{"\\q"}}', /invalid syntax/],
    ['{{3x}}', /bad number syntax/],
  ];
  for (const [src, message] of cases) {
    test(`parse error: ${JSON.stringify(src)}`, () => {
      assert.throws(() => parseTemplate(src), invalidWith(message));
    });
  }

  test('execution errors name the place', () => {
    assert.throws(() => run('{{nil}}'), invalidWith('template: :1:2: executing "" at <nil>: nil is not a command'));
    assert.throws(() => run('{{"x" 1}}'), invalidWith(/can't give argument to non-function "x"/));
    assert.throws(() => run('{{len}}'), invalidWith(/wrong number of args for len: want 1 got 0/));
    assert.throws(() => run('a\n  {{.X.Y}}', { X: 3 }), invalidWith(/^template: :2:4: /));
  });
});

describe('tabwriter', () => {
  test('columns take the widest cell plus padding, at least ten wide; the last column is not padded', () => {
    const out = tabwrite([
      ['NETWORK ID', 'NAME', 'DRIVER', 'SCOPE'],
      ['0123456789ab', 'bridge', 'bridge', 'local'],
      ['ba9876543210', 'a_rather_long_network_name', 'null', 'local'],
    ]);
    assert.equal(
      out,
      'NETWORK ID     NAME                         DRIVER    SCOPE\n' +
        '0123456789ab   bridge                       bridge    local\n' +
        'ba9876543210   a_rather_long_network_name   null      local\n',
    );
  });

  test('padding and minimum width can be changed', () => {
    assert.equal(tabwrite([['a', 'b'], ['ccc', 'd']], 1, 0), 'a   b\nccc d\n');
  });

  test('a line without tabs ends the column block', () => {
    assert.equal(
      tabwriteText('A\tB\nsingle\nxxxxxxxxxxxxxx\ty\n'),
      'A         B\nsingle\nxxxxxxxxxxxxxx   y\n',
    );
  });

  test('counts characters, not bytes', () => {
    assert.equal(tabwrite([['héllo', 'x'], ['abc', 'y']], 1, 0), 'héllo x\nabc   y\n');
  });

  test('text without a final newline keeps it that way', () => {
    assert.equal(tabwriteText('a\tb'), 'a         b');
    assert.equal(tabwrite([]), '');
  });
});

describe('renderFormatted', () => {
  const rows = [
    container(),
    container({ ID: 'ffffeeeeddddcccc', Names: 'a_longer_name', State: 'exited' }),
  ];
  const headers = { ID: 'CONTAINER ID', Names: 'NAMES', State: 'STATE' };
  const defaultTable = 'table {{.ID}}\t{{.Image}}\t{{.Names}}';

  test('table with a template: header row from the header map, aligned columns', () => {
    const out = renderFormatted('table {{.ID}}\t{{.Names}}\t{{.State}}', rows, { defaultTable, headers });
    assert.equal(
      out,
      'CONTAINER ID       NAMES           STATE\n' +
        '4c3f1e0d2b1a       web             running\n' +
        'ffffeeeeddddcccc   a_longer_name   exited\n',
    );
  });

  test('a literal \\t from the shell separates columns', () => {
    const out = renderFormatted('table {{.ID}}\\t{{.Names}}', rows.slice(0, 1), { defaultTable, headers });
    assert.equal(out, 'CONTAINER ID   NAMES\n4c3f1e0d2b1a   web\n');
  });

  test('unknown fields, methods and functions in a header', () => {
    const out = renderFormatted('table {{.Image}}\t{{.Label "com.example"}}\t{{upper .Names}}', rows.slice(0, 1), {
      defaultTable,
      headers,
    });
    assert.equal(out, 'IMAGE     LABEL     NAMES\nbusybox   yes       WEB\n');
  });

  test('no format or bare "table" uses the default table; with no rows only the header', () => {
    const want = renderFormatted(defaultTable, rows, { defaultTable, headers });
    assert.equal(renderFormatted(undefined, rows, { defaultTable, headers }), want);
    assert.equal(renderFormatted('table', rows, { defaultTable, headers }), want);
    assert.equal(renderFormatted('', [], { defaultTable, headers }), 'CONTAINER ID   IMAGE     NAMES\n');
  });

  test('quiet prints IDs unless a custom format is given', () => {
    assert.equal(renderFormatted(undefined, rows, { defaultTable, quiet: true }), '4c3f1e0d2b1a\nffffeeeeddddcccc\n');
    assert.equal(renderFormatted('table', rows, { defaultTable, quiet: true, quietFormat: '{{.Names}}' }), 'web\na_longer_name\n');
    assert.equal(renderFormatted('{{.State}}', rows, { defaultTable, quiet: true }), 'running\nexited\n');
  });

  test('plain templates print one line per row', () => {
    assert.equal(renderFormatted('{{.ID}}: {{.Names}}', rows, { defaultTable }), '4c3f1e0d2b1a: web\nffffeeeeddddcccc: a_longer_name\n');
    assert.equal(renderFormatted('{{.ID}}\\t{{.Names}}', rows.slice(0, 1), { defaultTable }), '4c3f1e0d2b1a\tweb\n');
  });

  test('json prints one object per line', () => {
    const out = renderFormatted('json', [{ ID: 'a', Labels: 'x=<y>' }, { ID: 'b', Labels: '' }], { defaultTable });
    assert.equal(out, '{"ID":"a","Labels":"x=\\u003cy\\u003e"}\n{"ID":"b","Labels":""}\n');
  });

  test('template errors surface as invalid parameters', () => {
    assert.throws(() => renderFormatted('{{.ID', rows, { defaultTable }), invalidWith(/^template parsing error: /));
    assert.throws(() => renderFormatted('{{.ID.X}}', rows, { defaultTable }), invalidWith(/^template: /));
  });
});

test('formatValue is Go %v', () => {
  assert.equal(formatValue({ a: [1, 'x'], c: { d: null } }), 'map[a:[1 x] c:map[d:<nil>]]');
});
