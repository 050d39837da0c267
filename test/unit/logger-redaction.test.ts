/**
 * Secret redaction (src/shared/logger.ts): `redactSecrets` scrubs `password=...` (bare or
 * single-quoted, any case, spaces around `=`) and the password of postgres:// and postgresql://
 * URLs from free text while leaving the rest intact; a `createLogger` logger writing to a custom
 * destination replaces `password`, `apiToken`, `connectionString` (and token, conninfo, secrets)
 * fields, top level or one level down, with "[redacted]" and never emits their values.
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { createLogger, redactSecrets } from '../../src/shared/logger.js';

void describe('redactSecrets', () => {
  void it('redacts a bare password=value and keeps the other conninfo fields', () => {
    assert.equal(redactSecrets('host=db port=5432 password=secret user=postgres'), 'host=db port=5432 password=[redacted] user=postgres');
  });

  void it('redacts a single-quoted password, spaces included', () => {
    const out = redactSecrets("host=db password='with space \\'x' user=u");
    assert.ok(!out.includes('with space'), out);
    assert.match(out, /password=\[redacted\]/);
    assert.match(out, /^host=db /);
  });

  void it('redacts regardless of case and spaces around =', () => {
    assert.equal(redactSecrets('PASSWORD = hunter2'), 'PASSWORD = [redacted]');
    assert.equal(redactSecrets('Password=hunter2'), 'Password=[redacted]');
  });

  void it('redacts every occurrence', () => {
    const out = redactSecrets('password=one, then password=two');
    assert.ok(!out.includes('one') && !out.includes('two'), out);
  });

  void it('redacts the password of postgresql:// and postgres:// URLs, keeping user and host', () => {
    assert.equal(redactSecrets('postgresql://postgres:pw0rd@127.0.0.1:5432/postgres'), 'postgresql://postgres:[redacted]@127.0.0.1:5432/postgres');
    assert.equal(redactSecrets('dial postgres://app:s3cr%40t@db.example:5432/app failed'), 'dial postgres://app:[redacted]@db.example:5432/app failed');
    assert.equal(
      redactSecrets('url postgresql://postgres:pw@h1:1,h2:2/postgres?target_session_attrs=read-write'),
      'url postgresql://postgres:[redacted]@h1:1,h2:2/postgres?target_session_attrs=read-write',
    );
  });

  void it('leaves text without secrets and URLs without a password unchanged', () => {
    for (const text of ['connection refused', 'postgresql://postgres@127.0.0.1:5432/postgres', 'postgresql://127.0.0.1:5432/postgres', 'passwords are long']) {
      assert.equal(redactSecrets(text), text);
    }
  });
});

function capturingLogger(): { log: ReturnType<typeof createLogger>; lines: () => Array<Record<string, unknown>>; raw: () => string } {
  const chunks: string[] = [];
  const log = createLogger({ level: 'debug', destination: { write: (msg: string) => void chunks.push(msg) }, name: 'test' });
  return {
    log,
    raw: () => chunks.join(''),
    lines: () =>
      chunks
        .join('')
        .split('\n')
        .filter((l) => l.length > 0)
        .map((l) => JSON.parse(l) as Record<string, unknown>),
  };
}

void describe('createLogger redaction', () => {
  void it('redacts password, apiToken and connectionString fields at the top level', () => {
    const { log, lines, raw } = capturingLogger();
    log.info({ password: 'pw-secret-1', apiToken: 'tok-secret-2', connectionString: 'postgresql://u:pw-secret-3@h/db', node: 'node1' }, 'hello');
    const [line] = lines();
    assert.ok(line !== undefined);
    assert.equal(line['password'], '[redacted]');
    assert.equal(line['apiToken'], '[redacted]');
    assert.equal(line['connectionString'], '[redacted]');
    assert.equal(line['node'], 'node1');
    assert.equal(line['msg'], 'hello');
    assert.equal(line['name'], 'test');
    assert.ok(!/secret-\d/.test(raw()), raw());
  });

  void it('redacts the same fields one level down, and token, conninfo and secrets', () => {
    const { log, lines, raw } = capturingLogger();
    log.warn(
      {
        superuser: { name: 'postgres', password: 'pw-secret-4' },
        cluster: { apiToken: 'tok-secret-5', connectionString: 'cs-secret-6' },
        token: 'tok-secret-7',
        conninfo: 'host=h password=pw-secret-8',
        secrets: { apiToken: 'tok-secret-9' },
      },
      'nested',
    );
    const [line] = lines();
    assert.ok(line !== undefined);
    assert.deepEqual(line['superuser'], { name: 'postgres', password: '[redacted]' });
    assert.deepEqual(line['cluster'], { apiToken: '[redacted]', connectionString: '[redacted]' });
    assert.equal(line['token'], '[redacted]');
    assert.equal(line['conninfo'], '[redacted]');
    assert.equal(line['secrets'], '[redacted]');
    assert.ok(!/secret-\d/.test(raw()), raw());
  });

  void it('redacts fields bound on child loggers', () => {
    const { log, lines, raw } = capturingLogger();
    log.child({ component: 'api', apiToken: 'tok-secret-10' }).info('child');
    assert.equal(lines()[0]?.['apiToken'], '[redacted]');
    assert.equal(lines()[0]?.['component'], 'api');
    assert.ok(!raw().includes('tok-secret-10'));
  });

  void it('honours the level: debug lines are dropped at info', () => {
    const chunks: string[] = [];
    const log = createLogger({ level: 'info', destination: { write: (msg: string) => void chunks.push(msg) } });
    log.debug('quiet');
    log.info('loud');
    assert.equal(chunks.length, 1);
    assert.match(chunks[0] ?? '', /loud/);
  });
});
