/**
 * The registry's password hashes against Apache's htpasswd (an independent
 * implementation), and its bearer tokens and scopes.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { bcryptHash, bcryptVerify } from '../../src/registry/auth/bcrypt.ts';
import { apr1Verify } from '../../src/registry/auth/apr1.ts';
import { Htpasswd } from '../../src/registry/auth/htpasswd.ts';
import { TokenSigner, parseScope } from '../../src/registry/auth/token.ts';

function htpasswdHash(flag: string, password: string, extra: string[] = []): string {
  const r = spawnSync('htpasswd', ['-nb', flag, ...extra, 'u', password], { encoding: 'utf8' });
  assert.equal(r.status, 0, r.stderr);
  return r.stdout.trim().slice(2);
}

const PASSWORDS = ['', 'a', 'correct horse battery staple', 'päss wörd ✓', 'x'.repeat(71), 'y'.repeat(72), 'z'.repeat(100)];

test('bcrypt verifies htpasswd -B hashes and rejects wrong passwords', () => {
  for (const pw of PASSWORDS) {
    if (pw === '') continue; // htpasswd refuses empty bcrypt passwords on some versions
    const h = htpasswdHash('-B', pw, ['-C', '4']);
    assert.match(h, /^\$2y\$04\$/);
    assert.ok(bcryptVerify(pw, h), `verifies ${JSON.stringify(pw)}`);
    assert.ok(!bcryptVerify(`${pw}!`, h) || pw.length >= 72, `rejects a wrong password for ${JSON.stringify(pw)}`);
  }
  // Only the first 72 bytes count, as in every bcrypt.
  const long = htpasswdHash('-B', 'y'.repeat(72), ['-C', '4']);
  assert.ok(bcryptVerify('y'.repeat(72) + 'ignored', long));
  // $2a$ and $2b$ spell the same hash for these passwords.
  const h = htpasswdHash('-B', 'secret', ['-C', '5']);
  assert.ok(bcryptVerify('secret', h.replace('$2y$', '$2b$')));
  assert.ok(bcryptVerify('secret', h.replace('$2y$', '$2a$')));
  assert.equal(bcryptHash('secret', h), h);
  assert.ok(!bcryptVerify('secret', '$2y$05$short'));
});

test('apr1 verifies htpasswd -m hashes and rejects wrong passwords', () => {
  for (const pw of PASSWORDS) {
    const h = htpasswdHash('-m', pw);
    assert.match(h, /^\$apr1\$/);
    assert.ok(apr1Verify(pw, h), `verifies ${JSON.stringify(pw)}`);
    assert.ok(!apr1Verify(`${pw}!`, h));
  }
});

test('htpasswd files: bcrypt, apr1 and SHA users; unknown users and hashes refused', () => {
  const text = [htpasswdHash('-B', 'one', ['-C', '4']), htpasswdHash('-m', 'two'), htpasswdHash('-s', 'three')];
  const file = new Htpasswd(`# users\nalice:${text[0]}\nbob:${text[1]}\ncarol:${text[2]}\n`);
  assert.equal(file.size, 3);
  assert.ok(file.verify('alice', 'one'));
  assert.ok(file.verify('alice', 'one'), 'cached answer');
  assert.ok(!file.verify('alice', 'two'));
  assert.ok(file.verify('bob', 'two'));
  assert.ok(file.verify('carol', 'three'));
  assert.ok(!file.verify('dave', 'one'));
});

test('tokens: signed claims verify; tampering, expiry, another audience or key are refused', () => {
  const signer = new TokenSigner({ issuer: 'iss', service: 'svc', ttl: 60 });
  const { token } = signer.sign('alice', [{ type: 'repository', name: 'a/b', actions: ['pull'] }]);
  const claims = signer.verify(token);
  assert.ok(typeof claims !== 'string');
  assert.equal(claims.sub, 'alice');
  assert.deepEqual(claims.access, [{ type: 'repository', name: 'a/b', actions: ['pull'] }]);
  assert.equal(signer.verify(token, Math.floor(Date.now() / 1000) + 3600), 'token has expired');
  assert.equal(new TokenSigner({ issuer: 'iss', service: 'svc', ttl: 60 }).verify(token), 'invalid token signature');
  const [h, p, s] = token.split('.');
  const body = JSON.parse(Buffer.from(p!, 'base64url').toString());
  body.access[0].actions = ['pull', 'push'];
  assert.equal(signer.verify(`${h}.${Buffer.from(JSON.stringify(body)).toString('base64url')}.${s}`), 'invalid token signature');
  assert.equal(signer.verify('not.a-token'), 'malformed token');
  const secret = Buffer.from('shared secret');
  const a = new TokenSigner({ issuer: 'iss', service: 'svc', ttl: 60, secret });
  const b = new TokenSigner({ issuer: 'iss', service: 'other', ttl: 60, secret });
  assert.equal(b.verify(a.sign('x', []).token), 'token has the wrong audience');
});

test('scopes parse with nested names and resource classes', () => {
  assert.deepEqual(parseScope('repository:a/b/c:pull,push'), { type: 'repository', name: 'a/b/c', actions: ['pull', 'push'] });
  assert.deepEqual(parseScope('repository(plugin):x:pull'), { type: 'repository', name: 'x', actions: ['pull'] });
  assert.deepEqual(parseScope('registry:catalog:*'), { type: 'registry', name: 'catalog', actions: ['*'] });
  assert.equal(parseScope('nonsense'), undefined);
});
