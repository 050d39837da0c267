/**
 * Pure renderer of an HAProxy (Debian 12: 2.6) configuration that puts one stable endpoint in
 * front of a pgpilot cluster: a write port that only reaches the node whose REST API answers
 * `GET /primary` with 200, and a read port that reaches nodes answering `GET /replica` with 200,
 * falling back to the primary when no replica is up. TCP mode (HAProxy never parses the postgres
 * protocol); the health checks are HTTPS requests to each node's agent API, verified against the
 * cluster CA (`check-ssl verify required ca-file`).
 *
 * Invariants and why:
 * - Only the agent decides who is primary; HAProxy merely follows `/primary`, which is 200 only on
 *   the writable leader holding the etcd key. At most one server of the write section can pass
 *   that check at a time, so the write port never spreads writes over two nodes.
 * - `on-marked-down shutdown-sessions`: when a node stops answering 200 (demoted, fenced, dead),
 *   its established sessions are cut at once, so a client is never left writing to (or waiting on)
 *   a former primary; it reconnects and lands on the new one.
 * - Read fallback servers do not run their own checks: they `track` the write section's servers,
 *   so "the primary" means exactly the same thing on both ports and no extra check load is added.
 * - Never two write servers up at once, by timing alone. The agent stops answering 200 on the old
 *   primary *before* it releases the key, and the new primary answers 200 only after taking it.
 *   The write section marks a server down on its first failed check (`fall 1`: at most inter +
 *   check timeout after the old primary stops answering 200) and up only after two good checks
 *   `fastinter` apart (`rise 2`, fastinter = inter + check timeout, HAProxy's interval for a
 *   server in transition), so the new primary cannot come up before the old one went down. With
 *   `rise 1` (measured) a switchover left both up for a moment and new write connections alternated
 *   between the new primary and the demoted one. Defaults (inter 500 ms, check timeout 500 ms,
 *   fastinter 1 s): the old primary is out within 1 s, the new one in 1-1.5 s after it is
 *   promoted; measured on a local 3-node switchover, a client opening a connection every 50 ms
 *   saw a write gap of 2.2-2.5 s (2.7-3.6 s with inter 1 s), demote and promote included.
 *   Until the old primary is marked down (<= inter + check timeout), a new write connection can
 *   still reach it: refused while its postgres is stopped (HAProxy redispatches, then fails), or
 *   read-only once it is back as a standby; never a second writable node.
 *   The price of `fall 1` is that one check answered later than the check timeout (2 s) cuts the
 *   primary's sessions; with 500 ms that happened under a saturating pgbench on 2 cores, so the
 *   timeout is 2 s. A hung agent's old primary can then stay "up" for up to inter + 2 s while the
 *   new one comes up, but it cannot take writes: its postmaster is killed by the fencing watchdog
 *   at its lease deadline, before any other node may promote.
 * - The read section is more tolerant (fall 2, rise 1, fastinter inter/2): a replica reached
 *   through it briefly after it stopped qualifying is harmless.
 * - HAProxy 2.6 considers every server up until its first check completes (it has no
 *   `init-state`), so during the first interval after HAProxy starts a write connection may reach a
 *   replica; postgres refuses writes there, so the risk is an error, never a split write.
 * - `noreuseport`: a second HAProxy started on the same ports (a stale file, a forgotten copy)
 *   fails to bind instead of silently sharing the port and splitting clients between two views.
 * - Long-lived database connections: client/server timeouts of 30 minutes with TCP keepalives,
 *   connect timeout 5 s.
 * Bad input (names, hosts, ports, duplicates, port clashes) is refused with INPUT_INVALID rather
 * than rendered into a file HAProxy would reject or, worse, accept with a different meaning.
 */
import net from 'node:net';
import { NAME_PATTERN } from '../config/schema.js';
import { PgpilotError } from '../shared/errors.js';

/** How long HAProxy waits for a /primary or /replica answer before counting the check as failed. */
export const CHECK_TIMEOUT_MS = 2_000;

export interface HaproxyNode {
  name: string;
  host: string;
  pgPort: number;
  apiPort: number;
}

export interface HaproxyConfigInput {
  cluster: string;
  /** Address the write, read (and stats) ports listen on. */
  bindHost: string;
  /** Port for writes: reaches the current primary only. */
  primaryPort: number;
  /** Port for reads: replicas, or the primary when no replica is up. */
  replicaPort: number;
  /** Optional HAProxy statistics page (HTTP) on this port. */
  statsPort?: number;
  nodes: HaproxyNode[];
  /** Health-check interval per server; default 500 ms. */
  checkIntervalMs?: number;
  /** Connection limit per port (frontend) and process; default 1000. */
  maxConnections?: number;
  /** The command that regenerates this file, for the header comment. */
  regenerateCommand?: string;
  /** The cluster CA: health checks speak HTTPS to the agents and verify their certificates against it. */
  caFile: string;
}

export const DEFAULT_CHECK_INTERVAL_MS = 500;
export const DEFAULT_MAX_CONNECTIONS = 1000;
const MIN_CHECK_INTERVAL_MS = 100;
const MAX_CHECK_INTERVAL_MS = 60_000;
const MAX_MAX_CONNECTIONS = 100_000;

/** Section (proxy) names used in the rendered file, e.g. for `track` or the stats page. */
export function haproxySectionNames(cluster: string): { primary: string; replicas: string; stats: string } {
  return { primary: `${cluster}-primary`, replicas: `${cluster}-replicas`, stats: `${cluster}-stats` };
}

/** Host names (RFC 1123 labels) or IP addresses; nothing HAProxy could read as another token. */
const HOST_NAME_PATTERN = /^(?=.{1,253}$)[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*$/;

function invalid(message: string, hint: string): PgpilotError {
  return new PgpilotError('INPUT_INVALID', message, { hint, exitCode: 2 });
}

function checkPort(label: string, value: unknown): number {
  if (typeof value !== 'number' || !Number.isInteger(value) || value < 1 || value > 65535) {
    throw invalid(`invalid ${label} ${String(value)}`, 'ports are whole numbers from 1 to 65535');
  }
  return value;
}

function checkHost(label: string, value: unknown): string {
  if (typeof value !== 'string' || (net.isIP(value) === 0 && !HOST_NAME_PATTERN.test(value))) {
    throw invalid(`invalid ${label} ${JSON.stringify(value)}`, 'use an IP address or a host name (letters, digits, dots, dashes)');
  }
  return value;
}

function checkName(label: string, value: unknown): string {
  if (typeof value !== 'string' || !NAME_PATTERN.test(value)) {
    throw invalid(`invalid ${label} ${JSON.stringify(value)}`, 'names are 1-32 lower-case letters, digits and dashes, starting with a letter');
  }
  return value;
}

function checkWholeNumber(label: string, value: number, min: number, max: number): number {
  if (!Number.isInteger(value) || value < min || value > max) {
    throw invalid(`invalid ${label} ${String(value)}`, `use a whole number from ${min} to ${max}`);
  }
  return value;
}

function isWildcard(host: string): boolean {
  return host === '0.0.0.0' || host === '::';
}

/** `host:port` as HAProxy reads it: IPv6 addresses in brackets. */
function address(host: string, port: number): string {
  return net.isIPv6(host) ? `[${host}]:${port}` : `${host}:${port}`;
}

/** Validates everything and returns the normalised input; throws INPUT_INVALID on the first problem. */
export function validateHaproxyConfigInput(input: HaproxyConfigInput): Required<Omit<HaproxyConfigInput, 'statsPort'>> & { statsPort: number | null } {
  const cluster = checkName('cluster name', input.cluster);
  const bindHost = checkHost('bind address', input.bindHost);
  const primaryPort = checkPort('write port', input.primaryPort);
  const replicaPort = checkPort('read port', input.replicaPort);
  const statsPort = input.statsPort === undefined ? null : checkPort('stats port', input.statsPort);
  const ownPorts = [primaryPort, replicaPort, ...(statsPort === null ? [] : [statsPort])];
  if (new Set(ownPorts).size !== ownPorts.length) {
    throw invalid(`the write, read and stats ports must differ (got ${ownPorts.join(', ')})`, 'choose distinct ports, or omit them to pick free ones');
  }
  if (!Array.isArray(input.nodes) || input.nodes.length === 0) {
    throw invalid(`cluster ${cluster} has no nodes to balance`, 'the cluster manifest lists its nodes; recreate the cluster if it is empty');
  }
  const names = new Set<string>();
  const endpoints = new Set<string>();
  const nodes = input.nodes.map((node) => {
    const name = checkName('node name', node.name);
    const host = checkHost(`host of node ${name}`, node.host);
    const pgPort = checkPort(`postgres port of node ${name}`, node.pgPort);
    const apiPort = checkPort(`API port of node ${name}`, node.apiPort);
    if (names.has(name)) throw invalid(`node ${name} is listed twice`, 'every node needs a distinct name');
    names.add(name);
    for (const endpoint of [address(host, pgPort), address(host, apiPort)]) {
      if (endpoints.has(endpoint)) throw invalid(`address ${endpoint} is used twice (node ${name})`, 'every node needs its own postgres and API ports');
      endpoints.add(endpoint);
    }
    if (host === bindHost || isWildcard(bindHost)) {
      const clash = ownPorts.find((p) => p === pgPort || p === apiPort);
      if (clash !== undefined) {
        throw invalid(`port ${clash} is already node ${name}'s postgres or API port`, 'choose other ports, or omit them to pick free ones');
      }
    }
    return { name, host, pgPort, apiPort };
  });
  const checkIntervalMs = checkWholeNumber('check interval (ms)', input.checkIntervalMs ?? DEFAULT_CHECK_INTERVAL_MS, MIN_CHECK_INTERVAL_MS, MAX_CHECK_INTERVAL_MS);
  const maxConnections = checkWholeNumber('connection limit', input.maxConnections ?? DEFAULT_MAX_CONNECTIONS, 1, MAX_MAX_CONNECTIONS);
  const regenerateCommand = input.regenerateCommand ?? `pgpilot haproxy-config ${cluster} --port ${primaryPort} --replica-port ${replicaPort}`;
  if (/[\r\n]/.test(regenerateCommand)) throw invalid('the regenerate command must be one line', 'remove line breaks');
  // A path is one token of HAProxy's config: no blanks, quotes, `#` or line breaks.
  if (!/^\/[^\s"'#\\]+$/.test(input.caFile)) throw invalid(`CA file ${JSON.stringify(input.caFile)} cannot be written to an HAProxy config`, 'use an absolute path without blanks, quotes or #');
  return { cluster, bindHost, primaryPort, replicaPort, statsPort, nodes, checkIntervalMs, maxConnections, regenerateCommand, caFile: input.caFile };
}

/** The HAProxy configuration text (ends with a newline). Pure: same input, same text. */
export function renderHaproxyConfig(input: HaproxyConfigInput): string {
  const c = validateHaproxyConfigInput(input);
  const sections = haproxySectionNames(c.cluster);
  const interMs = c.checkIntervalMs;
  // The agent API answers from memory, but on a host saturated by the database (measured: pgbench
  // on 2 cores) an answer can take longer than 500 ms, and with `fall 1` one late answer would cut
  // every session of a healthy primary. So a check may take up to 2 s; the fast path of a
  // switchover does not depend on it, since the stepping-down agent answers 503 at once.
  const checkTimeoutMs = CHECK_TIMEOUT_MS;
  // The agents' APIs speak HTTPS only: every check verifies the agent's certificate against the
  // cluster CA. Client traffic itself stays TCP pass-through (postgres' own TLS, end to end).
  const checkTls = `check-ssl verify required ca-file ${c.caFile}`;
  // Write side: see the header; fastinter >= inter + a prompt answer keeps old-down before new-up.
  const writeServerDefaults = `default-server inter ${interMs}ms fastinter ${interMs + Math.min(500, interMs)}ms downinter ${interMs}ms fall 1 rise 2`;
  const readServerDefaults = `default-server inter ${interMs}ms fastinter ${Math.max(MIN_CHECK_INTERVAL_MS, Math.floor(interMs / 2))}ms downinter ${interMs}ms fall 2 rise 1`;
  const lines: string[] = [
    `# HAProxy configuration for the pgpilot cluster ${c.cluster}, generated by pgpilot. Do not edit:`,
    `# changes are lost when it is regenerated with:`,
    `#   ${c.regenerateCommand}`,
    `# Run it with: haproxy -f THIS_FILE   (check it with: haproxy -c -f THIS_FILE)`,
    `#`,
    `# writes: ${address(c.bindHost, c.primaryPort)} -> the node whose API answers GET /primary with 200`,
    `# reads:  ${address(c.bindHost, c.replicaPort)} -> nodes answering GET /replica with 200, else the primary`,
    `# Nodes: ${c.nodes.map((n) => n.name).join(', ')}. A node added to or removed from the cluster needs a regenerated file.`,
    `# Until its first health check (within ${interMs} ms of start) HAProxy 2.6 treats a server as up.`,
    '',
    'global',
    `    maxconn ${c.maxConnections}`,
    '    # One HAProxy per port: a second copy (say, of a stale file) must fail to bind, not share it.',
    '    noreuseport',
    '',
    'defaults',
    '    mode tcp',
    `    maxconn ${c.maxConnections}`,
    '    option tcpka',
    '    option redispatch',
    '    retries 2',
    '    timeout connect 5s',
    '    timeout client 30m',
    '    timeout server 30m',
    `    timeout check ${checkTimeoutMs}ms`,
    '    timeout queue 10s',
  ];
  if (c.statsPort !== null) {
    lines.push(
      '',
      `listen ${sections.stats}`,
      '    mode http',
      `    bind ${address(c.bindHost, c.statsPort)}`,
      '    timeout client 30s',
      '    timeout server 30s',
      '    stats enable',
      '    stats uri /',
      '    stats refresh 5s',
    );
  }
  lines.push(
    '',
    `# Writes: only the primary passes GET /primary; its sessions are cut when it stops passing.`,
    `# fall 1 / rise 2 with fastinter = inter + check timeout: the old primary is always marked down`,
    `# before a new one can be marked up, so writes never alternate between two nodes.`,
    `listen ${sections.primary}`,
    `    bind ${address(c.bindHost, c.primaryPort)}`,
    `    ${writeServerDefaults}`,
    '    option httpchk',
    '    http-check send meth GET uri /primary',
    '    http-check expect status 200',
    ...c.nodes.map((n) => `    server ${n.name} ${address(n.host, n.pgPort)} check port ${n.apiPort} ${checkTls} on-marked-down shutdown-sessions`),
    '',
    `# Reads: streaming replicas within the lag limit (GET /replica); the primary as a backup that`,
    `# tracks the write section's check, used only while no replica is up.`,
    `listen ${sections.replicas}`,
    `    bind ${address(c.bindHost, c.replicaPort)}`,
    `    ${readServerDefaults}`,
    '    balance leastconn',
    '    option httpchk',
    '    http-check send meth GET uri /replica',
    '    http-check expect status 200',
    ...c.nodes.map(
      (n) => `    server ${n.name} ${address(n.host, n.pgPort)} check port ${n.apiPort} ${checkTls} on-marked-down shutdown-sessions on-marked-up shutdown-backup-sessions`,
    ),
    ...c.nodes.map((n) => `    server ${n.name}-as-primary ${address(n.host, n.pgPort)} backup track ${sections.primary}/${n.name} on-marked-down shutdown-sessions`),
    '',
  );
  return lines.join('\n');
}
