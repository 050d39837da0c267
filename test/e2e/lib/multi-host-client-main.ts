/**
 * The client of the multi-host e2e suite, run inside the suite's client namespace (the hosts'
 * addresses exist only in the namespaces): a writer through the cluster's printed connection
 * string and a split-brain probe on every host's own postgres, reporting on stdout, one JSON
 * object per line, until SIGTERM:
 *
 *   {"t":"ack","id":N,"atMs":T,"server":A}            INSERT of id N committed (acknowledged) by the postgres at A
 *   {"t":"fail","atMs":T,"error":"..."}              a write attempt failed (outcome unknown)
 *   {"t":"obs","node":H,"kind":K,"startMs":S,"endMs":E}  a probe observation (chaos/lib/probe.ts)
 *   {"t":"done"}                                     last line after SIGTERM
 *
 * Input (environment, never argv: the URL carries the password): MH_URL, the printed connection
 * string (`postgresql://user:pass@h1:p,h2:p/db?...&sslrootcert=CA`); MH_PROBE, `name=host:port,...`
 * of every postgres to probe. One writer per endpoint of the URL (below); each tries the endpoints
 * in order from the last one that worked (each leader-routing port reaches the leader), 5 s connect timeout (the
 * proxies hold new connections during a leader change), one write every 50 ms. No statement timeout: cancelling a commit that waits for a synchronous standby
 * would report success for a commit that was not replicated (the loss this suite looks for).
 */
import { readFileSync } from 'node:fs';
import { setTimeout as sleep } from 'node:timers/promises';
import pg from 'pg';
import { verifyFullSsl } from '../../../src/postgres/queries.js';
import { closeClient, errorText, nowMs, provesNotWritable } from '../../../chaos/lib/pg-client.js';

interface ParsedUrl {
  user: string;
  password: string;
  endpoints: Array<{ host: string; port: number }>;
  database: string;
  ca: string;
}

function parseUrl(url: string): ParsedUrl {
  const match = /^postgresql:\/\/([^:@]+):([^@]+)@([^/]+)\/([^?]+)\?(.*)$/.exec(url);
  if (match === null) throw new Error('MH_URL is not a postgresql://user:password@hosts/db?query URL');
  const [, user, password, hosts, database, query] = match as unknown as [string, string, string, string, string, string];
  const params = new URLSearchParams(query);
  const caFile = params.get('sslrootcert');
  if (caFile === null || params.get('sslmode') !== 'verify-full') throw new Error('MH_URL must ask for sslmode=verify-full with an sslrootcert');
  const endpoints = hosts.split(',').map((hp) => {
    const at = hp.lastIndexOf(':');
    return { host: hp.slice(0, at).replace(/^\[|\]$/g, ''), port: Number.parseInt(hp.slice(at + 1), 10) };
  });
  return { user: decodeURIComponent(user), password: decodeURIComponent(password), endpoints, database: decodeURIComponent(database), ca: readFileSync(caFile, 'utf8') };
}

function emit(event: Record<string, unknown>): void {
  process.stdout.write(`${JSON.stringify(event)}\n`);
}

let running = true;
process.on('SIGTERM', () => {
  running = false;
});
process.on('SIGINT', () => {
  running = false;
});

/**
 * One of `count` writers: ids `index + 1`, `index + 1 + count`, ...; it starts at endpoint
 * `index` and keeps to the last endpoint that worked. Several writers, so that one stuck on a
 * connection to a host that just died (its INSERT waits until the client-side bound) does not hide
 * when writes resume through the others.
 */
async function writer(target: ParsedUrl, index: number, count: number): Promise<void> {
  let id = index + 1 - count;
  let start = index % target.endpoints.length;
  while (running) {
    const beganMs = nowMs();
    id += count;
    let done = false;
    for (let k = 0; k < target.endpoints.length && !done && running; k += 1) {
      const at = (start + k) % target.endpoints.length;
      const endpoint = target.endpoints[at] as { host: string; port: number };
      const client = new pg.Client({
        host: endpoint.host,
        port: endpoint.port,
        user: target.user,
        password: target.password,
        database: target.database,
        ssl: verifyFullSsl(target.ca),
        // Longer than a leader change: the proxies hold new connections while there is no leader
        // and hand them to the new one, so a held connection measures when writes resume.
        connectionTimeoutMillis: 5_000,
        // Client-side only (no statement_timeout, see above): an INSERT on a connection to a host
        // that died never gets an answer; after this bound its outcome is unknown (not acknowledged).
        query_timeout: 10_000,
        application_name: 'mh-writer',
      });
      client.on('error', () => undefined);
      try {
        await client.connect();
        const result = await client.query<{ server: string }>('INSERT INTO mh_writes (id) VALUES ($1) RETURNING host(inet_server_addr()) AS server', [id]);
        emit({ t: 'ack', id, atMs: nowMs(), server: result.rows[0]?.server ?? null });
        start = at;
        done = true;
      } catch (error) {
        emit({ t: 'fail', atMs: nowMs(), error: errorText(error).slice(0, 200) });
      } finally {
        await closeClient(client);
      }
    }
    await sleep(Math.max(0, 50 - (nowMs() - beganMs)));
  }
}

async function probeOne(name: string, host: string, port: number, ca: string, user: string, password: string): Promise<void> {
  let client: pg.Client | null = null;
  while (running) {
    const startMs = nowMs();
    try {
      if (client === null) {
        client = new pg.Client({ host, port, user, password, database: 'postgres', ssl: verifyFullSsl(ca), connectionTimeoutMillis: 1_000, query_timeout: 2_000, application_name: 'mh-probe' });
        client.on('error', () => undefined);
        await client.connect();
      }
      await client.query('INSERT INTO mh_probe (node) VALUES ($1)', [name]);
      emit({ t: 'obs', node: name, kind: 'ok', startMs, endMs: nowMs() });
    } catch (error) {
      emit({ t: 'obs', node: name, kind: provesNotWritable(error) ? 'refused' : 'unknown', startMs, endMs: nowMs() });
      // A standby answering "read-only" keeps its session; anything else opens a new one next time.
      if ((error as { code?: unknown }).code !== '25006' && client !== null) {
        await closeClient(client);
        client = null;
      }
    }
    await sleep(Math.max(0, 100 - (nowMs() - startMs)));
  }
  if (client !== null) await closeClient(client);
}

async function main(): Promise<void> {
  const target = parseUrl(process.env['MH_URL'] ?? '');
  const probes = (process.env['MH_PROBE'] ?? '')
    .split(',')
    .filter((s) => s.length > 0)
    .map((entry) => {
      const [name, hostPort] = entry.split('=') as [string, string];
      const at = hostPort.lastIndexOf(':');
      return { name, host: hostPort.slice(0, at), port: Number.parseInt(hostPort.slice(at + 1), 10) };
    });
  const writers = target.endpoints.length;
  await Promise.all([...Array.from({ length: writers }, (_, i) => writer(target, i, writers)), ...probes.map((p) => probeOne(p.name, p.host, p.port, target.ca, target.user, target.password))]);
  emit({ t: 'done' });
}

main().then(
  () => process.exit(0),
  (error: unknown) => {
    process.stderr.write(`multi-host client: ${error instanceof Error ? error.message : String(error)}\n`);
    process.exit(1);
  },
);
