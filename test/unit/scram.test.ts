import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createHash, createHmac, pbkdf2Sync } from 'node:crypto';
import { isScramVerifier, scramSha256Verifier } from '../../src/postgres/scram.js';
import { PgpilotError } from '../../src/shared/errors.js';

void test('scramSha256Verifier has the PostgreSQL format and is deterministic for a given salt', () => {
  const salt = Buffer.from('0123456789abcdef', 'utf8');
  const verifier = scramSha256Verifier('pencil', { salt, iterations: 4096 });
  assert.match(verifier, /^SCRAM-SHA-256\$4096:[A-Za-z0-9+/=]+\$[A-Za-z0-9+/=]+:[A-Za-z0-9+/=]+$/);
  assert.ok(isScramVerifier(verifier));
  assert.equal(verifier, scramSha256Verifier('pencil', { salt, iterations: 4096 }));
  const [head, keys] = verifier.split('$').slice(1);
  assert.equal(head, `4096:${salt.toString('base64')}`);
  // Independent recomputation of RFC 5802's keys.
  const salted = pbkdf2Sync('pencil', salt, 4096, 32, 'sha256');
  const clientKey = createHmac('sha256', salted).update('Client Key').digest();
  const storedKey = createHash('sha256').update(clientKey).digest('base64');
  const serverKey = createHmac('sha256', salted).update('Server Key').digest('base64');
  assert.equal(keys, `${storedKey}:${serverKey}`);
});

void test('scramSha256Verifier matches a verifier computed by PostgreSQL 15', () => {
  // Recorded from a real server: CREATE ROLE r PASSWORD 'secret-pw'; SELECT rolpassword FROM pg_authid.
  const recorded =
    'SCRAM-SHA-256$4096:hDsc+egTOvkrZjIHeNpCdw==$wManB+tuw9R8FZbGhuFeLIqGuicJwZg9rAWk89XYSwE=:vXq6SFMqO9dzJ9t8jCy95jCuESq5Qi9ZZQSCOom5KSU=';
  const salt = Buffer.from('hDsc+egTOvkrZjIHeNpCdw==', 'base64');
  const ours = scramSha256Verifier('secret-pw', { salt, iterations: 4096 });
  assert.equal(ours, recorded);
  assert.ok(isScramVerifier(ours));
});

void test('scramSha256Verifier uses a fresh 16-byte salt and 4096 iterations by default', () => {
  const a = scramSha256Verifier('same');
  const b = scramSha256Verifier('same');
  assert.notEqual(a, b);
  const [iterations, saltB64] = (a.split('$')[1] ?? '').split(':');
  assert.equal(iterations, '4096');
  assert.equal(Buffer.from(saltB64 ?? '', 'base64').length, 16);
  assert.ok(!a.includes('same'));
});

void test('scramSha256Verifier refuses passwords clients would normalise differently', () => {
  assert.throws(() => scramSha256Verifier(''), PgpilotError);
  assert.throws(() => scramSha256Verifier('a\u00a0b'), PgpilotError);
  assert.throws(() => scramSha256Verifier('ﬁ'), PgpilotError); // NFKC turns the ligature into "fi"
  assert.ok(isScramVerifier(scramSha256Verifier('pässwörd')));
  assert.throws(() => scramSha256Verifier('x', { iterations: 0 }), PgpilotError);
});
