/**
 * `pgpilot haproxy-config NAME [--port N] [--replica-port N] [--output FILE]`: renders an HAProxy
 * configuration for an external load balancer in front of a cluster, local or through --context
 * (writes to the primary, reads to the replicas; see src/proxy/haproxy-config.ts) from the handle's topology. Ports that are
 * not given are chosen free on loopback and named in the output. Without --output the file goes to
 * stdout (and everything else to stderr, so it can be redirected as is); with --output it is
 * written atomically (temp file + rename, mode 0644), checked with `haproxy -c` when haproxy is
 * installed, and the command to run it is printed. Nothing is started: the user runs haproxy.
 */
import { connectionUrl } from '../../postgres/connection-url.js';
import { chmod, rename, rm, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { openClusterHandle } from '../../cluster/open-cluster-handle.js';
import { renderHaproxyConfig } from '../../proxy/haproxy-config.js';
import { checkHaproxyConfig, findHaproxyBinary } from '../../proxy/haproxy-process.js';
import { PgpilotError, errorMessage, isPgpilotError } from '../../shared/errors.js';
import { LOOPBACK_HOST, findFreePorts, isPortFree } from '../../shared/ports.js';
import type { Output } from '../output.js';

export interface HaproxyConfigOptions {
  home: string;
  name: string;
  /** `--context FILE` (else PGPILOT_CONTEXT, else the local cluster). */
  context?: string | undefined;
  /** Write port (the primary); free loopback port when absent. */
  port?: number;
  /** Read port (replicas, primary as fallback); free loopback port when absent. */
  replicaPort?: number;
  /** File to write; stdout when absent. */
  output?: string;
}

/** A word as a POSIX shell reads it: bare when safe, else single-quoted. */
function shellWord(word: string): string {
  return /^[A-Za-z0-9_./:=@%+-]+$/.test(word) ? word : `'${word.replace(/'/g, `'\\''`)}'`;
}

async function writeConfigFile(file: string, content: string): Promise<void> {
  const temp = path.join(path.dirname(file), `.${path.basename(file)}.tmp-${process.pid}`);
  try {
    await writeFile(temp, content, { mode: 0o644 });
    await chmod(temp, 0o644); // the umask may have narrowed it
    await rename(temp, file);
  } catch (error) {
    await rm(temp, { force: true }).catch(() => undefined);
    const code = (error as NodeJS.ErrnoException).code;
    if (code === 'ENOENT' || code === 'ENOTDIR' || code === 'EACCES' || code === 'EISDIR') {
      throw new PgpilotError('INPUT_INVALID', `cannot write ${file}: ${errorMessage(error)}`, {
        hint: 'choose a file in an existing directory you can write to',
        exitCode: 2,
      });
    }
    throw error;
  }
}

/** Free loopback ports for the ports not given, avoiding the given ones and every node port. */
async function choosePorts(given: Array<number | undefined>, taken: ReadonlySet<number>): Promise<number[]> {
  const used = new Set<number>([...taken, ...given.filter((p): p is number => p !== undefined)]);
  const chosen: number[] = [];
  for (const port of given) {
    if (port !== undefined) {
      chosen.push(port);
      continue;
    }
    // Bounded: a free port is almost never one of the few node ports.
    let pick: number | undefined;
    for (let attempt = 0; attempt < 20 && pick === undefined; attempt += 1) {
      const [candidate] = await findFreePorts(1);
      if (candidate !== undefined && !used.has(candidate)) pick = candidate;
    }
    if (pick === undefined) throw new PgpilotError('PORT_BUSY', 'could not find a free loopback port', { hint: 'pass --port and --replica-port', retryable: true });
    used.add(pick);
    chosen.push(pick);
  }
  return chosen;
}

export async function run(options: HaproxyConfigOptions, output: Output): Promise<number> {
  const handle = await openClusterHandle(options);
  const name = handle.name;
  const nodes = handle.nodes;
  const bindHost = LOOPBACK_HOST;
  const nodePorts = new Set(nodes.filter((n) => n.host === bindHost).flatMap((n) => [n.pgPort, n.apiPort, n.proxyPort]));
  for (const [label, port] of [['--port', options.port], ['--replica-port', options.replicaPort]] as const) {
    if (port !== undefined && (!Number.isInteger(port) || port < 1 || port > 65535)) {
      throw new PgpilotError('INPUT_INVALID', `${label} must be a port number from 1 to 65535 (got ${String(port)})`, {
        hint: 'omit it to pick a free port',
        exitCode: 2,
      });
    }
    if (port !== undefined && nodePorts.has(port)) {
      throw new PgpilotError('INPUT_INVALID', `${label} ${port} is already used by a node of ${name}`, {
        hint: 'choose another port, or omit it to pick a free one',
        exitCode: 2,
      });
    }
  }
  const [primaryPort, replicaPort] = (await choosePorts([options.port, options.replicaPort], nodePorts)) as [number, number];
  const file = options.output === undefined ? undefined : path.resolve(options.output);
  const regenerateCommand = [
    'pgpilot haproxy-config',
    name,
    `--port ${primaryPort}`,
    `--replica-port ${replicaPort}`,
    ...(file === undefined ? [] : [`--output ${shellWord(file)}`]),
    handle.contextFile === null ? `--home ${shellWord(options.home)}` : `--context ${shellWord(path.resolve(handle.contextFile))}`,
  ].join(' ');
  const config = renderHaproxyConfig({
    cluster: name,
    bindHost,
    primaryPort,
    replicaPort,
    nodes: nodes.map((n) => ({ name: n.name, host: n.host, pgPort: n.pgPort, apiPort: n.apiPort })),
    regenerateCommand,
    caFile: handle.caFile,
  });
  // Progress and explanations go to stderr when the config itself goes to stdout.
  const say = file === undefined ? (line: string) => output.err(line) : (line: string) => output.out(line);
  if (options.port === undefined) say(`picked free port ${primaryPort} for writes (pass --port to choose)`);
  if (options.replicaPort === undefined) say(`picked free port ${replicaPort} for reads (pass --replica-port to choose)`);
  for (const port of [options.port, options.replicaPort]) {
    if (port !== undefined && !(await isPortFree(port, bindHost))) say(`warning: ${bindHost}:${port} is in use right now; haproxy cannot start until it is free`);
  }

  if (file === undefined) {
    output.out(config.trimEnd());
    say(`writes: ${bindHost}:${primaryPort} (primary), reads: ${bindHost}:${replicaPort} (replicas, else the primary)`);
    say(`save it with --output FILE, then run: haproxy -f FILE`);
    return 0;
  }

  await writeConfigFile(file, config);
  say(`wrote ${file} for cluster ${name} (${nodes.length} node${nodes.length === 1 ? '' : 's'})`);
  say(`  writes: ${bindHost}:${primaryPort}  -> the primary (GET /primary on each node's API)`);
  say(`  reads:  ${bindHost}:${replicaPort}  -> streaming replicas (GET /replica), else the primary`);
  let binary: string | null = null;
  try {
    binary = findHaproxyBinary();
  } catch (error) {
    if (!isPgpilotError(error) || error.code !== 'BINARY_MISSING') throw error;
    say('note: haproxy is not installed here; run scripts/setup.sh (installs the haproxy package) to run it');
  }
  if (binary !== null) {
    const check = await checkHaproxyConfig(file, { binary });
    if (check.kind === 'error') {
      throw new PgpilotError('INTERNAL', `haproxy rejects the generated ${file}: ${check.errorText.split('\n').join(' | ')}`, {
        hint: 'this is a bug in pgpilot; please report it with the file',
      });
    }
    say('  checked with: haproxy -c -f ' + shellWord(file));
  }
  say(`run it with: haproxy -f ${shellWord(file)}`);
  say(`connect:     psql "${connectionUrl({ user: 'postgres', endpoints: [{ host: bindHost, port: primaryPort }], database: 'postgres', caFile: handle.caFile })}"   (password: ${handle.local === null ? `pgpilot status ${name} --context FILE --show-secrets` : `in ${handle.local.manifest.secretsFile}`})`);
  return 0;
}
