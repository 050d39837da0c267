/**
 * Configuration parsing (src/config/schema.ts, src/config/load.ts): the dynamic config's defaults
 * and its loop-wait/TTL refinement, the name rule, strictness about unknown keys, and the loading
 * contract: one CONFIG_INVALID error listing every problem with its path, results deep-frozen,
 * unreadable or non-JSON files reported as CONFIG_INVALID too.
 */
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { after, describe, it } from 'node:test';
import { deepFreeze, formatZodIssues, loadJsonFile, parseConfig } from '../../src/config/load.js';
import { agentConfigSchema, defaultDynamicConfig, dynamicConfigSchema, nameSchema, tagsSchema } from '../../src/config/schema.js';
import { PgpilotError } from '../../src/shared/errors.js';

function validAgentConfig(): Record<string, unknown> {
  return {
    cluster: 'demo',
    node: 'node1',
    host: '127.0.0.1',
    listenAddress: '127.0.0.1',
    pgPort: 15432,
    apiPort: 18008,
    proxyPort: 16432,
    replicaProxyPort: 17432,
    nodeDir: '/tmp/x/nodes/node1',
    dataDir: '/tmp/x/nodes/node1/pgdata',
    logFile: '/tmp/x/nodes/node1/agent.log',
    postgresLogFile: '/tmp/x/nodes/node1/postgres.log',
    binDir: '/usr/lib/postgresql/15/bin',
    secretsFile: '/tmp/x/secrets.json',
    etcdEndpoints: ['https://127.0.0.1:2379'],
    tls: { caFile: '/tmp/x/tls/ca.crt', certFile: '/tmp/x/nodes/node1/tls/node.crt', keyFile: '/tmp/x/nodes/node1/tls/node.key' },
  };
}

function configError(check: (error: PgpilotError) => void): (error: unknown) => boolean {
  return (error: unknown) => {
    assert.ok(error instanceof PgpilotError, `expected a PgpilotError, got ${String(error)}`);
    assert.equal(error.code, 'CONFIG_INVALID');
    assert.ok(error.hint !== undefined && error.hint.length > 0, 'a hint is given');
    check(error);
    return true;
  };
}

void describe('dynamicConfigSchema', () => {
  void it('has documented defaults', () => {
    assert.deepEqual(dynamicConfigSchema.parse({}), {
      ttlSeconds: 6,
      loopWaitMs: 1000,
      maximumLagOnFailoverBytes: 16 * 1024 * 1024,
      synchronous: 'off',
      synchronousStrict: false,
      synchronousNodeCount: 1,
      failsafe: false,
      backup: { schedule: '0 3 * * *', keepDaily: 7, keepWeekly: 4, keepDays: null },
      pooler: { enabled: false, poolMode: 'transaction', defaultPoolSize: 20 },
      postgresql: { parameters: {} },
    });
    assert.deepEqual(defaultDynamicConfig(), dynamicConfigSchema.parse({}));
    assert.notEqual(defaultDynamicConfig(), defaultDynamicConfig(), 'a fresh object each time');
  });

  void it('requires loopWaitMs < ttlSeconds / 2, reported on loopWaitMs', () => {
    assert.equal(dynamicConfigSchema.safeParse({ ttlSeconds: 2, loopWaitMs: 999 }).success, true);
    assert.equal(dynamicConfigSchema.safeParse({ ttlSeconds: 10, loopWaitMs: 4999 }).success, true);
    for (const bad of [{ ttlSeconds: 2, loopWaitMs: 1000 }, { ttlSeconds: 10, loopWaitMs: 5000 }, { ttlSeconds: 2 }]) {
      const result = dynamicConfigSchema.safeParse(bad);
      assert.equal(result.success, false, JSON.stringify(bad));
      assert.deepEqual(result.error?.issues.map((i) => i.path), [['loopWaitMs']]);
      assert.match(result.error?.issues[0]?.message ?? '', /less than half of ttlSeconds/);
    }
  });

  void it('bounds each field and rejects unknown keys', () => {
    for (const bad of [
      { ttlSeconds: 1 },
      { ttlSeconds: 601 },
      { ttlSeconds: 6.5 },
      { loopWaitMs: 99 },
      { maximumLagOnFailoverBytes: -1 },
      { synchronous: 'on' },
      { postgresql: { parameters: { work_mem: [] } } },
      { postgresql: { other: 1 } },
      { ttl: 6 },
    ]) {
      assert.equal(dynamicConfigSchema.safeParse(bad).success, false, JSON.stringify(bad));
    }
    const parsed = dynamicConfigSchema.parse({ synchronous: 'quorum', postgresql: { parameters: { work_mem: '8MB', max_connections: 50, fsync: true } } });
    assert.deepEqual(parsed.postgresql.parameters, { work_mem: '8MB', max_connections: 50, fsync: true });
  });
});

void describe('nameSchema', () => {
  void it('accepts DNS-label-like names of 1 to 32 characters', () => {
    for (const good of ['demo', 'a', 'app-db', 'a1', 'node10', 'x'.repeat(32), `a${'-'.repeat(30)}b`]) {
      assert.equal(nameSchema.safeParse(good).success, true, good);
    }
  });

  void it('rejects upper case, underscores, leading digits or dashes, trailing dashes, and 33 characters', () => {
    for (const bad of ['Bad_Name', 'Demo', 'bad_name', '-x', 'x-', '1abc', '', 'a.b', 'a b', 'x'.repeat(33), 'é']) {
      const result = nameSchema.safeParse(bad);
      assert.equal(result.success, false, JSON.stringify(bad));
      assert.match(result.error?.issues[0]?.message ?? '', /lower-case letters, digits and dashes/);
    }
  });
});

void describe('agentConfigSchema and tagsSchema', () => {
  void it('accepts a complete config and fills defaults', () => {
    const parsed = agentConfigSchema.parse(validAgentConfig());
    assert.deepEqual(parsed.tags, {});
    assert.deepEqual(parsed.allowedCidrs, ['127.0.0.1/32', '::1/128']);
  });

  void it('requires the node TLS files (there is no plain-text mode)', () => {
    const { tls, ...withoutTls } = validAgentConfig();
    assert.ok(tls !== undefined);
    assert.equal(agentConfigSchema.safeParse(withoutTls).success, false);
    assert.equal(agentConfigSchema.safeParse({ ...validAgentConfig(), tls: { caFile: '/ca', certFile: '/c' } }).success, false);
    assert.equal(agentConfigSchema.safeParse({ ...validAgentConfig(), tls: { caFile: '', certFile: '/c', keyFile: '/k' } }).success, false);
    assert.equal(agentConfigSchema.safeParse({ ...validAgentConfig(), tls: { caFile: '/ca', certFile: '/c', keyFile: '/k', verify: false } }).success, false);
    // etcd speaks TLS only: a plain-text endpoint is refused with the field named.
    const plain = agentConfigSchema.safeParse({ ...validAgentConfig(), etcdEndpoints: ['http://127.0.0.1:2379'] });
    assert.equal(plain.success, false);
    assert.match(JSON.stringify(plain.error?.issues), /https:\/\//);
  });

  void it('rejects unknown keys, at the top level and in tags', () => {
    const result = agentConfigSchema.safeParse({ ...validAgentConfig(), extra: true });
    assert.equal(result.success, false);
    assert.match(JSON.stringify(result.error?.issues), /extra/);
    assert.equal(agentConfigSchema.safeParse({ ...validAgentConfig(), tags: { nofailover: true, colour: 'red' } }).success, false);
    assert.equal(tagsSchema.safeParse({ priority: 1.5 }).success, false);
  });

  void it('rejects bad names, ports and endpoints', () => {
    for (const [key, value] of [
      ['node', 'Node_1'],
      ['cluster', '-x'],
      ['pgPort', 0],
      ['apiPort', 65536],
      ['etcdEndpoints', []],
      ['etcdEndpoints', ['not a url']],
    ] as const) {
      assert.equal(agentConfigSchema.safeParse({ ...validAgentConfig(), [key]: value }).success, false, `${key}=${JSON.stringify(value)}`);
    }
  });
});

void describe('parseConfig', () => {
  void it('throws CONFIG_INVALID listing every issue with its path', () => {
    const raw = { ...validAgentConfig(), node: 'Bad_Name', pgPort: 'x', tags: { priority: 'high' }, extra: 1 };
    assert.throws(
      () => parseConfig(agentConfigSchema, raw, '/etc/pgpilot/agent.json'),
      configError((error) => {
        assert.match(error.message, /^\/etc\/pgpilot\/agent\.json is invalid: /);
        assert.match(error.message, /node: must be 1-32 characters/);
        assert.match(error.message, /pgPort: /);
        assert.match(error.message, /tags\.priority: /);
        assert.match(error.message, /\(root\): .*extra/);
        assert.equal(error.message.split('; ').length, 4, error.message);
        assert.equal(error.retryable, false);
      }),
    );
  });

  void it('reports the refinement path of the dynamic config', () => {
    assert.throws(
      () => parseConfig(dynamicConfigSchema, { ttlSeconds: 2, loopWaitMs: 1500 }, 'etcd /config'),
      configError((error) => assert.match(error.message, /etcd \/config is invalid: loopWaitMs: loopWaitMs must be less than half/)),
    );
  });

  void it('returns the parsed value deep-frozen', () => {
    const parsed = parseConfig(dynamicConfigSchema, { postgresql: { parameters: { work_mem: '4MB' } } }, 'test');
    assert.equal(parsed.ttlSeconds, 6);
    assert.ok(Object.isFrozen(parsed));
    assert.ok(Object.isFrozen(parsed.postgresql));
    assert.ok(Object.isFrozen(parsed.postgresql.parameters));
    assert.throws(() => {
      (parsed as { ttlSeconds: number }).ttlSeconds = 60;
    }, TypeError);
    assert.throws(() => {
      (parsed.postgresql.parameters as Record<string, unknown>)['fsync'] = false;
    }, TypeError);
    const agent = parseConfig(agentConfigSchema, validAgentConfig(), 'agent');
    assert.ok(Object.isFrozen(agent.etcdEndpoints));
    assert.ok(Object.isFrozen(agent.allowedCidrs));
    assert.ok(Object.isFrozen(agent.tags));
  });

  void it('deepFreeze leaves primitives alone and freezes nested arrays', () => {
    assert.equal(deepFreeze(3), 3);
    assert.equal(deepFreeze(null), null);
    const value = deepFreeze({ a: [{ b: 1 }] });
    assert.ok(Object.isFrozen(value.a[0]));
  });

  void it('formatZodIssues joins path and message per issue', () => {
    const result = dynamicConfigSchema.safeParse({ ttlSeconds: 'x', postgresql: { parameters: { a: null } } });
    assert.equal(result.success, false);
    if (result.success) return;
    const text = formatZodIssues(result.error);
    assert.match(text, /^ttlSeconds: .+; postgresql\.parameters\.a: .+$/);
  });
});

void describe('loadJsonFile', () => {
  const dir = mkdtempSync(path.join(tmpdir(), 'pgpilot-config-test-'));
  after(() => rmSync(dir, { recursive: true, force: true }));

  void it('loads, validates and freezes a JSON file', () => {
    const file = path.join(dir, 'dynamic.json');
    writeFileSync(file, JSON.stringify({ ttlSeconds: 10, loopWaitMs: 2000 }));
    const parsed = loadJsonFile(dynamicConfigSchema, file);
    assert.equal(parsed.ttlSeconds, 10);
    assert.equal(parsed.loopWaitMs, 2000);
    assert.ok(Object.isFrozen(parsed));
  });

  void it('reports a missing file as CONFIG_INVALID with the errno code', () => {
    const file = path.join(dir, 'missing.json');
    assert.throws(
      () => loadJsonFile(dynamicConfigSchema, file),
      configError((error) => {
        assert.equal(error.message, `cannot read ${file}: ENOENT`);
        assert.ok(error.cause instanceof Error);
      }),
    );
  });

  void it('reports a directory given as a file as CONFIG_INVALID', () => {
    assert.throws(() => loadJsonFile(dynamicConfigSchema, dir), configError((error) => assert.match(error.message, /EISDIR/)));
  });

  void it('reports invalid JSON as CONFIG_INVALID', () => {
    const file = path.join(dir, 'broken.json');
    writeFileSync(file, '{"ttlSeconds": 6,');
    assert.throws(
      () => loadJsonFile(dynamicConfigSchema, file),
      configError((error) => {
        assert.equal(error.message, `${file} is not valid JSON`);
        assert.ok(error.cause instanceof SyntaxError);
      }),
    );
  });

  void it('reports schema problems with the file as the source', () => {
    const file = path.join(dir, 'bad.json');
    writeFileSync(file, JSON.stringify({ ttlSeconds: 1 }));
    assert.throws(() => loadJsonFile(dynamicConfigSchema, file), configError((error) => assert.match(error.message, new RegExp(`^${file.replace(/[.*+?^${}()|[\]\\/]/g, '\\$&')} is invalid: ttlSeconds: `))));
  });
});
