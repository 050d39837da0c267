/**
 * The pure halves of pg_rewind (src/postgres/rewind.ts): `rewindArgs` targets the given data
 * directory and points --source-server at the leader through a conninfo that names host, port,
 * user, database and the 0600 passfile, and never carries a password; `rewindOutcome` reads
 * "no rewind required" as not-needed and anything else (pg_rewind's "Done!") as rewound.
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { rewindArgs, rewindOutcome } from '../../src/postgres/rewind.js';

const OPTIONS = {
  dataDir: '/var/lib/pgpilot/node2/pgdata',
  source: { host: '10.0.0.7', port: 5433, user: 'postgres' },
  passfile: '/var/lib/pgpilot/node2/pgpass',
  caFile: '/var/lib/pgpilot/clusters/demo/tls/ca.crt',
};

function sourceConninfo(args: string[]): string {
  const arg = args.find((a) => a.startsWith('--source-server='));
  assert.ok(arg !== undefined, `no --source-server in ${JSON.stringify(args)}`);
  return arg.slice('--source-server='.length);
}

/** Parses `k=v k='quoted v'` (libpq conninfo) into a map. */
function parseConninfo(text: string): Map<string, string> {
  const fields = new Map<string, string>();
  const pattern = /([a-z_]+)=('((?:\\.|[^'\\])*)'|\S+)/g;
  for (const match of text.matchAll(pattern)) {
    const value = match[3] !== undefined ? match[3].replace(/\\(.)/g, '$1') : (match[2] ?? '');
    fields.set(match[1] ?? '', value);
  }
  return fields;
}

void describe('rewindArgs', () => {
  void it('targets the data directory and asks for progress', () => {
    const args = rewindArgs(OPTIONS);
    assert.ok(args.includes(`--target-pgdata=${OPTIONS.dataDir}`));
    assert.ok(args.includes('--progress'));
    assert.equal(args.filter((a) => a.startsWith('--target-pgdata=')).length, 1);
    assert.equal(args.filter((a) => a.startsWith('--source-server=')).length, 1);
  });

  void it('the source conninfo names host, port, user, database and passfile', () => {
    const fields = parseConninfo(sourceConninfo(rewindArgs(OPTIONS)));
    assert.equal(fields.get('host'), '10.0.0.7');
    assert.equal(fields.get('port'), '5433');
    assert.equal(fields.get('user'), 'postgres');
    assert.equal(fields.get('dbname'), 'postgres');
    assert.equal(fields.get('passfile'), OPTIONS.passfile);
  });

  void it('the source conninfo asks for TLS verified against the cluster CA and the host name', () => {
    const fields = parseConninfo(sourceConninfo(rewindArgs(OPTIONS)));
    assert.equal(fields.get('sslmode'), 'verify-full');
    assert.equal(fields.get('sslrootcert'), OPTIONS.caFile);
  });

  void it('never carries a password, on the conninfo or anywhere in argv', () => {
    const args = rewindArgs(OPTIONS);
    assert.ok(!parseConninfo(sourceConninfo(args)).has('password'));
    assert.ok(!args.some((a) => /password/i.test(a)), JSON.stringify(args));
  });

  void it('quotes a passfile path with spaces and quotes so it stays one conninfo value', () => {
    const passfile = "/tmp/it's a dir/pgpass";
    const conninfo = sourceConninfo(rewindArgs({ ...OPTIONS, passfile }));
    const fields = parseConninfo(conninfo);
    assert.equal(fields.get('passfile'), passfile);
    assert.equal(fields.get('host'), '10.0.0.7');
  });

  void it('quotes a CA path with spaces so it stays one conninfo value', () => {
    const caFile = "/tmp/it's a dir/ca.crt";
    const fields = parseConninfo(sourceConninfo(rewindArgs({ ...OPTIONS, caFile })));
    assert.equal(fields.get('sslrootcert'), caFile);
    assert.equal(fields.get('sslmode'), 'verify-full');
  });
});

void describe('rewindOutcome', () => {
  void it('"no rewind required" is not-needed (any case, anywhere in the output)', () => {
    assert.deepEqual(rewindOutcome('pg_rewind: source and target cluster are on the same timeline\npg_rewind: no rewind required\n'), {
      kind: 'not-needed',
    });
    assert.deepEqual(rewindOutcome('pg_rewind: No Rewind Required'), { kind: 'not-needed' });
  });

  void it('"Done!" is rewound', () => {
    const output = [
      'pg_rewind: servers diverged at WAL location 0/3000060 on timeline 1',
      'pg_rewind: rewinding from last common checkpoint at 0/2000060 on timeline 1',
      'pg_rewind: Done!',
    ].join('\n');
    assert.deepEqual(rewindOutcome(output), { kind: 'rewound' });
  });
});
