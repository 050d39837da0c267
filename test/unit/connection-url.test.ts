/**
 * src/postgres/connection-url.ts, the one builder of the URLs pgpilot prints: every URL asks for
 * `sslmode=verify-full` with the cluster CA as `sslrootcert` (readable, `/` unescaped), in a fixed
 * order after target_session_attrs; user, password and database are percent-encoded; IPv6 hosts
 * are bracketed; node-postgres' own URL parser reads the single-host form back to exactly the
 * settings we meant (host, port, user, password, database, and sslmode/sslrootcert).
 */
import assert from 'node:assert/strict';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
// node-postgres' own URL parser (what `new pg.Client({ connectionString })` runs); it reads the
// sslrootcert file, so the parse tests point at a real file.
import { parse } from 'pg-connection-string';
import { connectionUrl } from '../../src/postgres/connection-url.js';

const CA = '/var/lib/pgpilot/clusters/demo/tls/ca.crt';
const CA_TEXT = '-----BEGIN CERTIFICATE-----\nnot checked by the parser\n-----END CERTIFICATE-----\n';
let dir = '';

before(async () => {
  dir = await mkdtemp(path.join(tmpdir(), 'pgpilot-url-'));
  await writeFile(path.join(dir, 'ca.crt'), CA_TEXT);
  await writeFile(path.join(dir, 'ca&x.crt'), CA_TEXT);
});

after(async () => {
  await rm(dir, { recursive: true, force: true });
});

void describe('connectionUrl', () => {
  void it('lists the endpoints and asks for verify-full TLS against the CA file', () => {
    assert.equal(
      connectionUrl({
        user: 'postgres',
        password: 'secret',
        endpoints: [
          { host: '127.0.0.1', port: 16432 },
          { host: '127.0.0.1', port: 16433 },
        ],
        database: 'postgres',
        caFile: CA,
        targetSessionAttrs: 'read-write',
      }),
      `postgresql://postgres:secret@127.0.0.1:16432,127.0.0.1:16433/postgres?target_session_attrs=read-write&sslmode=verify-full&sslrootcert=${CA}`,
    );
  });

  void it('without a password, target session attrs or application name', () => {
    assert.equal(
      connectionUrl({ user: 'app', endpoints: [{ host: 'db1', port: 5432 }], database: 'shop', caFile: CA }),
      `postgresql://app@db1:5432/shop?sslmode=verify-full&sslrootcert=${CA}`,
    );
    assert.equal(
      connectionUrl({ user: 'app', endpoints: [{ host: 'db1', port: 5432 }], database: 'shop', caFile: CA, applicationName: 'my app' }),
      `postgresql://app@db1:5432/shop?sslmode=verify-full&sslrootcert=${CA}&application_name=my%20app`,
    );
  });

  void it('always carries sslmode=verify-full and the sslrootcert, whatever the other options', () => {
    for (const targetSessionAttrs of [undefined, 'read-write', 'prefer-standby', 'any'] as const) {
      const url = connectionUrl({
        user: 'u',
        endpoints: [{ host: 'h', port: 1 }],
        database: 'd',
        caFile: CA,
        ...(targetSessionAttrs === undefined ? {} : { targetSessionAttrs }),
      });
      const query = new URLSearchParams(url.slice(url.indexOf('?') + 1));
      assert.equal(query.get('sslmode'), 'verify-full', url);
      assert.equal(query.get('sslrootcert'), CA, url);
      assert.equal(query.getAll('sslmode').length, 1);
    }
  });

  void it('percent-encodes user, password, database and the CA path, but keeps `/` readable', () => {
    const url = connectionUrl({
      user: 'ad min',
      password: 'p@ss:w/rd#%?&=',
      endpoints: [{ host: '127.0.0.1', port: 5432 }],
      database: 'my db',
      caFile: '/tmp/my certs/ca&x.crt',
    });
    assert.equal(url, `postgresql://ad%20min:${encodeURIComponent('p@ss:w/rd#%?&=')}@127.0.0.1:5432/my%20db?sslmode=verify-full&sslrootcert=/tmp/my%20certs/ca%26x.crt`);
    const caFile = path.join(dir, 'ca&x.crt');
    const parsed = parse(connectionUrl({ user: 'ad min', password: 'p@ss:w/rd#%?&=', endpoints: [{ host: '127.0.0.1', port: 5432 }], database: 'my db', caFile }));
    assert.equal(parsed.user, 'ad min');
    assert.equal(parsed.password, 'p@ss:w/rd#%?&=');
    assert.equal(parsed.database, 'my db');
    assert.equal(parsed.sslrootcert, caFile);
  });

  void it('brackets IPv6 hosts', () => {
    const url = connectionUrl({ user: 'u', endpoints: [{ host: '::1', port: 5432 }, { host: '127.0.0.1', port: 5433 }], database: 'd', caFile: CA });
    assert.ok(url.startsWith('postgresql://u@[::1]:5432,127.0.0.1:5433/d?'), url);
  });

  void it('node-postgres reads the single-host form back: host, port, credentials, verify-full and the CA contents', () => {
    const caFile = path.join(dir, 'ca.crt');
    const url = connectionUrl({ user: 'postgres', password: 'pw', endpoints: [{ host: '127.0.0.1', port: 16432 }], database: 'postgres', caFile, targetSessionAttrs: 'read-write' });
    const parsed = parse(url);
    assert.equal(parsed.host, '127.0.0.1');
    assert.equal(parsed.port, '16432');
    assert.equal(parsed.user, 'postgres');
    assert.equal(parsed.password, 'pw');
    assert.equal(parsed.database, 'postgres');
    assert.equal(parsed.sslmode, 'verify-full');
    assert.equal(parsed.sslrootcert, caFile);
    // The CA file's contents become the trust anchor; nothing turns verification off.
    assert.ok(typeof parsed.ssl === 'object' && parsed.ssl !== null);
    assert.equal(parsed.ssl.ca, CA_TEXT);
    assert.notEqual((parsed.ssl as { rejectUnauthorized?: boolean }).rejectUnauthorized, false);
  });
});
