import { test } from 'node:test';
import assert from 'node:assert/strict';
import { BerthError } from '../../src/util/errors.ts';
import {
  familiarName,
  familiarString,
  fullName,
  isDigest,
  isFullImageId,
  isShortIdPrefix,
  parseDigest,
  parseReference,
  parseRepoAndTag,
  refString,
  registryHost,
  withDefaultTag,
  type Reference,
} from '../../src/image/reference.ts';

const HEX = 'a'.repeat(32) + '0123456789abcdef0123456789abcdef';
const DIGEST = `sha256:${HEX}`;

function invalidWith(message: string | RegExp): (err: unknown) => boolean {
  return (err: unknown) => {
    assert.ok(err instanceof BerthError, `expected BerthError, got ${String(err)}`);
    assert.equal(err.kind, 'InvalidParameter');
    if (typeof message === 'string') assert.equal(err.message, message);
    else assert.match(err.message, message);
    return true;
  };
}

test('valid references normalise like docker', () => {
  const cases: Array<[string, Reference]> = [
    ['busybox', { domain: 'docker.io', path: 'library/busybox' }],
    ['busybox:1.36', { domain: 'docker.io', path: 'library/busybox', tag: '1.36' }],
    ['library/busybox', { domain: 'docker.io', path: 'library/busybox' }],
    ['docker.io/busybox', { domain: 'docker.io', path: 'library/busybox' }],
    ['index.docker.io/library/busybox', { domain: 'docker.io', path: 'library/busybox' }],
    ['index.docker.io/busybox:x', { domain: 'docker.io', path: 'library/busybox', tag: 'x' }],
    ['foo/bar', { domain: 'docker.io', path: 'foo/bar' }],
    ['foo/bar/baz', { domain: 'docker.io', path: 'foo/bar/baz' }],
    ['localhost/foo', { domain: 'localhost', path: 'foo' }],
    ['localhost:5000/a/b:c', { domain: 'localhost:5000', path: 'a/b', tag: 'c' }],
    ['127.0.0.1:5000/x@' + DIGEST, { domain: '127.0.0.1:5000', path: 'x', digest: DIGEST }],
    ['x:tag@' + DIGEST, { domain: 'docker.io', path: 'library/x', tag: 'tag', digest: DIGEST }],
    ['example.com/a.b_c__d---e/f-g', { domain: 'example.com', path: 'a.b_c__d---e/f-g' }],
    ['[::1]:5000/foo:bar', { domain: '[::1]:5000', path: 'foo', tag: 'bar' }],
    ['Registry.Example.COM/foo', { domain: 'Registry.Example.COM', path: 'foo' }],
    // Upper case marks the first component as a domain, as clients treat it.
    ['Foo/bar', { domain: 'Foo', path: 'bar' }],
    ['busybox:_under.score-dash', { domain: 'docker.io', path: 'library/busybox', tag: '_under.score-dash' }],
    ['busybox:' + 'T'.repeat(128), { domain: 'docker.io', path: 'library/busybox', tag: 'T'.repeat(128) }],
    // 64 hex is refused only as the whole string; with a namespace it is a name.
    ['foo/' + HEX, { domain: 'docker.io', path: 'foo/' + HEX }],
  ];
  for (const [input, want] of cases) {
    assert.deepEqual(parseReference(input), want, input);
  }
});

test('invalid references are refused with docker wording', () => {
  const fmt = 'invalid reference format';
  const cases: Array<[string, string | RegExp]> = [
    ['', fmt],
    ['a//b', fmt],
    ['a:', fmt],
    [':tag', fmt],
    ['-a', fmt],
    ['a-', fmt],
    ['a..b', fmt],
    ['a___b', fmt],
    ['a:b:c', fmt],
    ['a/', fmt],
    ['/a', fmt],
    ['a@', fmt],
    ['a@sha256', fmt],
    ['a@sha256:abc', fmt],
    ['busybox:' + 't'.repeat(129), fmt],
    ['busybox:-tag', fmt],
    ['busybox:.tag', fmt],
    ['a b', fmt],
    ['localhost:port/foo', fmt],
    ['-host.com/foo', fmt],
    ['UPPER', 'invalid reference format: repository name (library/UPPER) must be lowercase'],
    ['Busybox:latest', 'invalid reference format: repository name (library/Busybox) must be lowercase'],
    ['foo/Bar', 'invalid reference format: repository name (foo/Bar) must be lowercase'],
    ['localhost:5000/Foo', 'invalid reference format: repository name (Foo) must be lowercase'],
    [HEX, `invalid repository name (${HEX}), cannot specify 64-byte hexadecimal strings`],
    ['x@sha256:' + HEX.toUpperCase(), /invalid digest format/],
    ['x@sha256:' + HEX.slice(1), /invalid digest format/],
    ['x@md5:' + HEX, /unsupported digest algorithm/],
    ['example.com/' + 'a'.repeat(250), /must not be more than 255 characters/],
  ];
  for (const [input, want] of cases) {
    assert.throws(() => parseReference(input), invalidWith(want), JSON.stringify(input));
  }
});

test('names and strings for display and for the wire', () => {
  const bb = parseReference('busybox');
  assert.equal(familiarName(bb), 'busybox');
  assert.equal(fullName(bb), 'docker.io/library/busybox');
  assert.equal(familiarString(bb), 'busybox:latest');
  assert.equal(refString(bb), 'docker.io/library/busybox:latest');
  assert.deepEqual(withDefaultTag(bb), { domain: 'docker.io', path: 'library/busybox', tag: 'latest' });

  const dig = parseReference(`busybox@${DIGEST}`);
  assert.equal(familiarString(dig), `busybox@${DIGEST}`);
  assert.equal(refString(dig), `docker.io/library/busybox@${DIGEST}`);
  assert.equal(withDefaultTag(dig).tag, undefined);

  const both = parseReference(`foo/bar:v1@${DIGEST}`);
  assert.equal(familiarName(both), 'foo/bar');
  assert.equal(familiarString(both), `foo/bar:v1@${DIGEST}`);

  assert.equal(familiarName(parseReference('docker.io/library/a/b')), 'library/a/b');
  assert.equal(familiarString(parseReference('localhost:5000/x:y')), 'localhost:5000/x:y');
  assert.equal(familiarName(parseReference('index.docker.io/library/busybox')), 'busybox');
});

test('registry host', () => {
  assert.equal(registryHost(parseReference('busybox')), 'registry-1.docker.io');
  assert.equal(registryHost(parseReference('foo/bar')), 'registry-1.docker.io');
  assert.equal(registryHost(parseReference('localhost:5000/foo')), 'localhost:5000');
  assert.equal(registryHost(parseReference('quay.io/a/b')), 'quay.io');
});

test('repo and tag given separately', () => {
  assert.deepEqual(parseRepoAndTag('busybox', 'musl'), { domain: 'docker.io', path: 'library/busybox', tag: 'musl' });
  assert.deepEqual(parseRepoAndTag('busybox'), { domain: 'docker.io', path: 'library/busybox' });
  assert.deepEqual(parseRepoAndTag('busybox', ''), { domain: 'docker.io', path: 'library/busybox' });
  // The separate tag replaces one inside the repository string.
  assert.deepEqual(parseRepoAndTag('busybox:old', 'new'), { domain: 'docker.io', path: 'library/busybox', tag: 'new' });
  // A digest in the tag parameter pins the image and drops the tag.
  assert.deepEqual(parseRepoAndTag('busybox:old', DIGEST), { domain: 'docker.io', path: 'library/busybox', digest: DIGEST });
  assert.deepEqual(parseRepoAndTag('localhost:5000/a', 'b'), { domain: 'localhost:5000', path: 'a', tag: 'b' });
  assert.throws(() => parseRepoAndTag('busybox', 'bad:tag'), invalidWith('invalid tag format: bad:tag'));
  assert.throws(() => parseRepoAndTag('busybox', 'x'.repeat(129)), invalidWith(/invalid tag format/));
  assert.throws(() => parseRepoAndTag('BAD', 'x'), invalidWith(/must be lowercase/));
});

test('digests and IDs', () => {
  assert.deepEqual(parseDigest(DIGEST), { algorithm: 'sha256', hex: HEX });
  assert.deepEqual(parseDigest('sha512:' + HEX + HEX), { algorithm: 'sha512', hex: HEX + HEX });
  assert.ok(isDigest(DIGEST));
  for (const bad of ['', 'sha256', 'sha256:', HEX, `sha256:${HEX}0`, `sha256:${HEX.toUpperCase()}`, `sha256:${HEX.slice(2)}`, `md5:${HEX}`, `:${HEX}`, `sha256:${HEX.slice(1)}g`]) {
    assert.equal(isDigest(bad), false, bad);
    assert.throws(() => parseDigest(bad), invalidWith(/digest/), bad);
  }
  assert.ok(isFullImageId(HEX));
  assert.ok(isFullImageId(DIGEST));
  assert.equal(isFullImageId(HEX.slice(1)), false);
  assert.equal(isFullImageId(HEX.toUpperCase()), false);
  assert.equal(isFullImageId(`sha512:${HEX}`), false);
  assert.ok(isShortIdPrefix('a'));
  assert.ok(isShortIdPrefix('0123abcd'));
  assert.ok(isShortIdPrefix(HEX));
  assert.equal(isShortIdPrefix(''), false);
  assert.equal(isShortIdPrefix(HEX + 'a'), false);
  assert.equal(isShortIdPrefix('busybox'), false);
  assert.equal(isShortIdPrefix('ABC'), false);
});
