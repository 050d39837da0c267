/**
 * `isAuthorized` (src/api/auth.ts) accepts exactly `Authorization: Bearer <token>` with the
 * cluster token: the scheme is case-insensitive and surrounding/inner runs of whitespace are
 * tolerated, while a missing header, another scheme, a wrong token (same or different length),
 * an empty token or extra words are all refused.
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { isAuthorized } from '../../src/api/auth.js';

const TOKEN = 'k'.repeat(40);

void describe('isAuthorized', () => {
  void it('accepts the right token with the Bearer scheme', () => {
    assert.equal(isAuthorized(`Bearer ${TOKEN}`, TOKEN), true);
  });

  void it('refuses a wrong token of the same length', () => {
    assert.equal(isAuthorized(`Bearer ${'x'.repeat(40)}`, TOKEN), false);
    assert.equal(isAuthorized(`Bearer ${TOKEN.slice(0, -1)}X`, TOKEN), false);
  });

  void it('refuses a token of the wrong length (prefix, longer, empty) without throwing', () => {
    assert.equal(isAuthorized(`Bearer ${TOKEN.slice(0, 39)}`, TOKEN), false);
    assert.equal(isAuthorized(`Bearer ${TOKEN}k`, TOKEN), false);
    assert.equal(isAuthorized('Bearer ', TOKEN), false);
    assert.equal(isAuthorized('Bearer', TOKEN), false);
  });

  void it('refuses a missing or empty header', () => {
    assert.equal(isAuthorized(undefined, TOKEN), false);
    assert.equal(isAuthorized('', TOKEN), false);
  });

  void it('refuses other schemes and a bare token', () => {
    assert.equal(isAuthorized(`Basic ${TOKEN}`, TOKEN), false);
    assert.equal(isAuthorized(`Token ${TOKEN}`, TOKEN), false);
    assert.equal(isAuthorized(TOKEN, TOKEN), false);
    assert.equal(isAuthorized(`Bearer:${TOKEN}`, TOKEN), false);
  });

  void it('treats the scheme case-insensitively', () => {
    assert.equal(isAuthorized(`bearer ${TOKEN}`, TOKEN), true);
    assert.equal(isAuthorized(`BEARER ${TOKEN}`, TOKEN), true);
    assert.equal(isAuthorized(`bEaReR ${TOKEN}`, TOKEN), true);
  });

  void it('tolerates extra whitespace around and between the parts, but the token itself is exact', () => {
    assert.equal(isAuthorized(`  Bearer    ${TOKEN}  `, TOKEN), true);
    assert.equal(isAuthorized(`Bearer\t${TOKEN}`, TOKEN), true);
    assert.equal(isAuthorized(`Bearer ${TOKEN} extra`, TOKEN), false);
    assert.equal(isAuthorized(`Bearer ${TOKEN.slice(0, 20)} ${TOKEN.slice(20)}`, TOKEN), false);
  });

  void it('compares the token case-sensitively', () => {
    const mixed = 'AbCdEfGhIjKlMnOpQrStUvWxYz0123456789abcd';
    assert.equal(isAuthorized(`Bearer ${mixed}`, mixed), true);
    assert.equal(isAuthorized(`Bearer ${mixed.toLowerCase()}`, mixed), false);
  });

  void it('compares by UTF-8 bytes, so a multi-byte token of equal character count does not match', () => {
    // 'é' is 2 bytes: same string length as 'e', different byte length (no timingSafeEqual throw).
    assert.equal(isAuthorized('Bearer é'.padEnd(47, 'k'), TOKEN), false);
  });
});
