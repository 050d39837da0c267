/**
 * The pure planner of `pgpilot cluster init` (src/multihost/cluster-init.ts executes the plan):
 * from the operator's flags to the node list, the etcd placement, the ports, the client networks,
 * the certificates to sign, the files to write, the firewall openings and the warnings.
 *
 * Invariants:
 * - Every bad input is refused here, before anything is written: INPUT_INVALID (exit 2) with a
 *   one-line message and a hint. The message never quotes more than a short slice of the input.
 * - Host addresses are IP addresses (certificates carry them as IP SANs) in their canonical text
 *   (src/multihost/ip-network.ts); names and addresses are unique; 1..9 hosts.
 * - pgpilot's etcd runs on the first 3 hosts (the first 5 from 5 hosts on; every host when there
 *   are 1 or 2): an odd member count from 3 on, so one (or two) members may be lost. With
 *   `--etcd-endpoints`, no host runs a member.
 * - Every node certificate carries every node address, loopback, `localhost` and every node name,
 *   because a node's proxy passes TLS through to the leader (src/providers/local/local-tls.ts).
 * - The plan holds no secret (passwords, keys): those are made by the executor. It may hold S3
 *   credentials of the backup store (taken from the environment), which are never printed.
 */
import { MAX_NODES, MIN_NODES, NAME_PATTERN } from '../config/schema.js';
import { clientUrl } from '../etcd/etcd-server.js';
import { storeConfigSchema, toStoreConfigFile, type StoreConfig, type StoreConfigFile } from '../backup/store-config.js';
import { PgpilotError } from '../shared/errors.js';
import type { LeafRequest } from '../tls/openssl.js';
import { LEAF_VALID_DAYS } from '../tls/cluster-pki.js';
import { DEFAULT_HOST_PORTS, hostPortsSchema, type ClusterNode, type EtcdPlacement, type HostPorts } from './bundle.js';
import { cidrContains, defaultClientCidrs, formatCidr, formatIpAddress, parseCidr, parseIpAddress, type IpAddress, type IpNetwork } from './ip-network.js';

export const HOSTS_FORM = '--hosts node1=10.0.0.1,node2=10.0.0.2,node3=10.0.0.3 (NAME=IP, comma-separated, 1..9 hosts)';
/** External etcd endpoints accepted: at most this many. */
export const MAX_ETCD_ENDPOINTS = 15;
const LOOPBACK = ['127.0.0.1', '::1'];

export interface ClusterInitInput {
  cluster: string;
  /** The `--hosts` text: `node1=ADDR1,node2=ADDR2,...`. */
  hosts: string;
  /** The `--etcd-endpoints` text: comma-separated https URLs of an existing etcd. */
  etcdEndpoints?: string | undefined;
  /** The `--client-cidr` text: one or more comma-separated networks. */
  clientCidr?: string | undefined;
  /** Port overrides (`--pg-port` ...); the rest are DEFAULT_HOST_PORTS. */
  ports?: Partial<HostPorts>;
  /** The parsed `--backup-store` (with S3 credentials from the environment, if any). */
  backupStore?: StoreConfig | undefined;
  /** A random suffix for the etcd initial cluster token (the executor passes random hex). */
  tokenSuffix: string;
}

export interface PlannedHost extends ClusterNode {
  /** The host part of a URL (IPv6 in brackets). */
  urlHost: string;
}

export interface EtcdMemberPlan {
  name: string;
  host: string;
  clientUrl: string;
  peerUrl: string;
}

export type LeafId = { kind: 'admin' } | { kind: 'node'; node: string } | { kind: 'etcd'; node: string };

export interface PlannedLeaf {
  id: LeafId;
  request: LeafRequest;
}

export interface FirewallOpening {
  port: number;
  /** Which port (`pgPort`, ...) or `external etcd`. */
  what: string;
  /** Which hosts listen on it. */
  on: string;
  /** Who must be able to connect. */
  from: string;
}

export interface ClusterInitFiles {
  caCert: string;
  caKey: string;
  context: string;
  bundles: { node: string; file: string }[];
}

export interface ClusterInitPlan {
  cluster: string;
  nodes: PlannedHost[];
  ports: HostPorts;
  etcd: EtcdPlacement;
  /** pgpilot's etcd members (empty with external etcd). */
  etcdMembers: EtcdMemberPlan[];
  /** `name=https://addr:peer,...` of the members; null with external etcd. */
  initialCluster: string | null;
  initialClusterToken: string | null;
  clientCidrs: string[];
  /** True when --client-cidr was not given (the smallest network holding every host). */
  clientCidrsDefaulted: boolean;
  backupStore: StoreConfigFile | null;
  leaves: PlannedLeaf[];
  /** File names, relative to the output directory. */
  files: ClusterInitFiles;
  firewall: FirewallOpening[];
  warnings: string[];
}

function bad(message: string, hint: string): PgpilotError {
  return new PgpilotError('INPUT_INVALID', message, { hint, exitCode: 2 });
}

function short(text: string): string {
  return JSON.stringify(text.length > 60 ? `${text.slice(0, 60)}...` : text);
}

interface ParsedHost {
  name: string;
  address: IpAddress;
  host: string;
}

/** Parses and validates `--hosts`. */
export function parseHosts(text: string): ParsedHost[] {
  if (text.trim() === '') throw bad('--hosts is empty', HOSTS_FORM);
  const entries = text.split(',').map((e) => e.trim());
  if (entries.length > MAX_NODES) {
    throw bad(`--hosts names ${entries.length} hosts; a cluster has ${MIN_NODES}..${MAX_NODES}`, 'give at most 9 hosts (3 or 5 is the usual size)');
  }
  const hosts: ParsedHost[] = [];
  const names = new Set<string>();
  const addresses = new Map<string, string>();
  for (const entry of entries) {
    if (entry === '') throw bad('--hosts has an empty entry (two commas in a row, or a trailing comma)', HOSTS_FORM);
    const eq = entry.indexOf('=');
    if (eq === -1) throw bad(`--hosts entry ${short(entry)} is not NAME=IP`, HOSTS_FORM);
    const name = entry.slice(0, eq).trim();
    const addressText = entry.slice(eq + 1).trim();
    if (!NAME_PATTERN.test(name)) {
      throw bad(`host name ${short(name)} is not allowed`, 'names are 1-32 characters of lower-case letters, digits and dashes, starting with a letter (node1, db-a)');
    }
    const address = parseIpAddress(addressText.startsWith('[') && addressText.endsWith(']') ? addressText.slice(1, -1) : addressText);
    if (address === null) {
      throw bad(`the address of ${name}, ${short(addressText)}, is not an IP address`, 'give an IPv4 (10.0.0.1) or IPv6 (fd00::1) address: certificates carry it as an IP SAN; host names are not accepted');
    }
    const refusal = refusedAddress(address);
    if (refusal !== null) throw bad(`the address of ${name}, ${formatIpAddress(address)}, ${refusal}`, 'give the address the other hosts and the clients reach this host at');
    const host = formatIpAddress(address);
    if (names.has(name)) throw bad(`host name ${name} is given twice`, 'every host needs its own name');
    const other = addresses.get(host);
    if (other !== undefined) throw bad(`${other} and ${name} have the same address ${host}`, 'every host needs its own address (one node per host)');
    names.add(name);
    addresses.set(host, name);
    hosts.push({ name, address, host });
  }
  return hosts;
}

function refusedAddress(address: IpAddress): string | null {
  if (address.value === 0n) return 'is the unspecified address';
  if (address.family === 4 && address.value >> 28n === 0xen) return 'is a multicast address';
  if (address.family === 4 && address.value === 0xffffffffn) return 'is the broadcast address';
  if (address.family === 6 && address.value >> 120n === 0xffn) return 'is a multicast address';
  if (address.family === 6 && address.value >> 32n === 0xffffn) return 'is an IPv4-mapped IPv6 address (give the IPv4 address itself)';
  return null;
}

/** Parses and validates `--etcd-endpoints`: unique https://HOST:PORT URLs, normalized to their origin. */
export function parseEtcdEndpoints(text: string): string[] {
  const hint = '--etcd-endpoints https://10.0.0.11:2379,https://10.0.0.12:2379 (the client URLs of an existing etcd; TLS only)';
  if (text.trim() === '') throw bad('--etcd-endpoints is empty', hint);
  const entries = text.split(',').map((e) => e.trim());
  if (entries.length > MAX_ETCD_ENDPOINTS) throw bad(`--etcd-endpoints names ${entries.length} endpoints; at most ${MAX_ETCD_ENDPOINTS}`, hint);
  const endpoints: string[] = [];
  for (const entry of entries) {
    let url: URL;
    try {
      url = new URL(entry);
    } catch {
      throw bad(`etcd endpoint ${short(entry)} is not a URL`, hint);
    }
    if (url.protocol !== 'https:') throw bad(`etcd endpoint ${short(entry)} is not an https:// URL (pgpilot talks to etcd over TLS only)`, hint);
    if (url.username !== '' || url.password !== '') throw bad('an etcd endpoint must not carry credentials', 'pgpilot authenticates to etcd with TLS client certificates');
    if ((url.pathname !== '/' && url.pathname !== '') || url.search !== '' || url.hash !== '') {
      throw bad(`etcd endpoint ${short(entry)} has a path, query or fragment`, hint);
    }
    if (url.port === '') throw bad(`etcd endpoint ${short(entry)} has no port`, hint);
    const origin = `https://${url.host}`;
    if (endpoints.includes(origin)) throw bad(`etcd endpoint ${origin} is given twice`, hint);
    endpoints.push(origin);
  }
  return endpoints;
}

/** Parses `--client-cidr` (comma-separated networks); each must hold at least one host address. */
export function parseClientCidrs(text: string, hosts: readonly ParsedHost[]): string[] {
  const hint = '--client-cidr 10.0.0.0/24 (networks clients connect from, comma-separated; each must hold a host address)';
  if (text.trim() === '') throw bad('--client-cidr is empty', hint);
  const networks: IpNetwork[] = [];
  for (const entry of text.split(',').map((e) => e.trim())) {
    const parsed = parseCidr(entry);
    if (parsed.kind === 'invalid') {
      throw bad(`client network ${short(entry)} ${parsed.reason}`, parsed.suggestion === undefined ? hint : `did you mean ${parsed.suggestion}?`);
    }
    if (!hosts.some((h) => cidrContains(parsed.network, h.address))) {
      throw bad(
        `client network ${formatCidr(parsed.network)} holds none of the host addresses`,
        `a network that holds no host is most likely a typo; leave --client-cidr out for ${defaultClientCidrs(hosts.map((h) => h.address)).join(',')} (the smallest network holding every host)`,
      );
    }
    const text2 = formatCidr(parsed.network);
    if (!networks.some((n) => formatCidr(n) === text2)) networks.push(parsed.network);
  }
  return networks.map(formatCidr);
}

const PORT_FLAGS: Record<keyof HostPorts, string> = {
  pgPort: '--pg-port',
  proxyPort: '--proxy-port',
  replicaProxyPort: '--replica-proxy-port',
  poolerPort: '--pooler-port',
  apiPort: '--api-port',
  etcdClientPort: '--etcd-client-port',
  etcdPeerPort: '--etcd-peer-port',
};

/** The ports of every host: the defaults with the overrides, each 1..65535, all different. */
export function resolvePorts(overrides: Partial<HostPorts> = {}): HostPorts {
  const ports: HostPorts = { ...DEFAULT_HOST_PORTS };
  for (const key of Object.keys(PORT_FLAGS) as (keyof HostPorts)[]) {
    const value = overrides[key];
    if (value === undefined) continue;
    if (!Number.isInteger(value) || value < 1 || value > 65_535) throw bad(`${PORT_FLAGS[key]} ${value} is not a port`, 'a port is a whole number 1..65535');
    ports[key] = value;
  }
  const seen = new Map<number, keyof HostPorts>();
  for (const key of Object.keys(PORT_FLAGS) as (keyof HostPorts)[]) {
    const other = seen.get(ports[key]);
    if (other !== undefined) {
      throw bad(`${PORT_FLAGS[other]} and ${PORT_FLAGS[key]} are both ${ports[key]}`, `every port must differ; defaults: ${Object.entries(DEFAULT_HOST_PORTS).map(([k, v]) => `${PORT_FLAGS[k as keyof HostPorts]} ${v}`).join(', ')}`);
    }
    seen.set(ports[key], key);
  }
  return hostPortsSchema.parse(ports);
}

/** How many of `hostCount` hosts run a member of pgpilot's etcd: all of 1 or 2, 3 of 3..4, 5 from 5 on. */
export function etcdMemberCount(hostCount: number): number {
  if (hostCount <= 2) return hostCount;
  return hostCount >= 5 ? 5 : 3;
}

function urlHostOf(host: string): string {
  return host.includes(':') ? `[${host}]` : host;
}

function leafRequests(hosts: readonly PlannedHost[]): PlannedLeaf[] {
  const nodeIps = [...new Set([...hosts.map((h) => h.host), ...LOOPBACK])];
  const nodeDns = ['localhost', ...hosts.map((h) => h.name)];
  const leaves: PlannedLeaf[] = [
    { id: { kind: 'admin' }, request: { commonName: 'admin', ipAddresses: [], dnsNames: [], usage: 'client', validDays: LEAF_VALID_DAYS } },
  ];
  for (const h of hosts) {
    leaves.push({ id: { kind: 'node', node: h.name }, request: { commonName: h.name, ipAddresses: nodeIps, dnsNames: nodeDns, usage: 'server-and-client', validDays: LEAF_VALID_DAYS } });
  }
  for (const h of hosts.filter((x) => x.etcdMember)) {
    leaves.push({
      id: { kind: 'etcd', node: h.name },
      request: { commonName: `etcd-${h.name}`, ipAddresses: [...new Set([h.host, '127.0.0.1'])], dnsNames: ['localhost'], usage: 'server-and-client', validDays: LEAF_VALID_DAYS },
    });
  }
  return leaves;
}

function firewallOpenings(ports: HostPorts, etcd: EtcdPlacement, members: readonly EtcdMemberPlan[], clientCidrs: readonly string[]): FirewallOpening[] {
  const clients = `clients (${clientCidrs.join(', ')})`;
  const rows: FirewallOpening[] = [
    { port: ports.pgPort, what: 'postgres (pgPort)', on: 'every host', from: `every other host (replication, proxies to the leader); ${clients} for direct connections` },
    { port: ports.proxyPort, what: 'leader proxy (proxyPort)', on: 'every host', from: clients },
    { port: ports.replicaProxyPort, what: 'replica proxy (replicaProxyPort)', on: 'every host', from: clients },
    { port: ports.poolerPort, what: 'PgBouncer (poolerPort, after pooler enable)', on: 'every host', from: clients },
    { port: ports.apiPort, what: 'REST API (apiPort)', on: 'every host', from: 'every other host; the operator machine (--context); Prometheus' },
  ];
  if (etcd.kind === 'pgpilot') {
    const on = members.map((m) => m.name).join(', ');
    rows.push({ port: ports.etcdClientPort, what: 'etcd client (etcdClientPort)', on, from: 'every host (agents, watchdogs); the operator machine (--context)' });
    rows.push({ port: ports.etcdPeerPort, what: 'etcd peer (etcdPeerPort)', on, from: 'the other etcd member hosts only' });
  } else {
    for (const endpoint of etcd.endpoints) {
      const port = Number(new URL(endpoint).port);
      rows.push({ port, what: `external etcd ${endpoint}`, on: 'your etcd', from: 'every host; the operator machine (--context)' });
    }
  }
  return rows;
}

/** The plan of `cluster init` (pure; INPUT_INVALID on any bad input). */
export function planClusterInit(input: ClusterInitInput): ClusterInitPlan {
  if (!NAME_PATTERN.test(input.cluster)) {
    throw bad(`cluster name ${short(input.cluster)} is not allowed`, 'names are 1-32 characters of lower-case letters, digits and dashes, starting with a letter (demo, prod-eu)');
  }
  if (!/^[0-9a-f]{8,64}$/.test(input.tokenSuffix)) throw new PgpilotError('INTERNAL', 'the etcd token suffix must be 8..64 hex digits');
  const parsed = parseHosts(input.hosts);
  const ports = resolvePorts(input.ports);
  const external = input.etcdEndpoints === undefined ? null : parseEtcdEndpoints(input.etcdEndpoints);
  const memberCount = external === null ? etcdMemberCount(parsed.length) : 0;
  const nodes: PlannedHost[] = parsed.map((h, index) => ({ name: h.name, host: h.host, etcdMember: index < memberCount, urlHost: urlHostOf(h.host) }));
  const etcdMembers: EtcdMemberPlan[] = nodes
    .filter((n) => n.etcdMember)
    .map((n) => ({ name: n.name, host: n.host, clientUrl: clientUrl(n.host, ports.etcdClientPort), peerUrl: clientUrl(n.host, ports.etcdPeerPort) }));
  const etcd: EtcdPlacement = external === null ? { kind: 'pgpilot', endpoints: etcdMembers.map((m) => m.clientUrl) } : { kind: 'external', endpoints: external };
  const clientCidrs = input.clientCidr === undefined ? defaultClientCidrs(parsed.map((h) => h.address)) : parseClientCidrs(input.clientCidr, parsed);

  let backupStore: StoreConfigFile | null = null;
  if (input.backupStore !== undefined) {
    const file = toStoreConfigFile(input.backupStore);
    if (!storeConfigSchema.safeParse(file).success) {
      throw bad('the S3 credentials from the environment are not valid', 'AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY are printable ASCII without spaces');
    }
    backupStore = file;
  }

  const warnings: string[] = [];
  if (nodes.length === 1) warnings.push('1 host: for development only; there is no failover when the host is lost');
  if (nodes.length === 2 && external === null) warnings.push('2 hosts: an etcd cluster of 2 members cannot lose either of them (no failover when a host is lost); use 3 hosts');
  if (nodes.length === 2 && external !== null) warnings.push('2 hosts: a failover leaves no replica until the lost host is back; use 3 hosts');
  if (external !== null && external.length === 2) warnings.push('2 etcd endpoints: an etcd cluster of 2 members cannot lose either; 3 or 5 members are the usual sizes');
  if (input.backupStore === undefined) {
    warnings.push('no --backup-store: no WAL archive and no base backups; across hosts use an S3 store (docs/production.md "Backups across hosts")');
  } else if (input.backupStore.kind === 'fs') {
    warnings.push(`backup store ${backupStore?.url ?? ''} is a directory: it only works when it is the same shared storage mounted at that path on every host; an S3 store is the usual choice`);
  } else if (input.backupStore.credentials === undefined) {
    warnings.push('S3 backup store without credentials (AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY were not set): every host uses the AWS SDK default chain (e.g. an instance profile)');
  }
  if (clientCidrs.some((c) => c.endsWith('/0'))) warnings.push('a client network /0 lets clients connect from anywhere (still hostssl + SCRAM only)');

  const files: ClusterInitFiles = {
    caCert: `${input.cluster}.ca.crt`,
    caKey: `${input.cluster}.ca.key`,
    context: `${input.cluster}.context.json`,
    bundles: nodes.map((n) => ({ node: n.name, file: `${input.cluster}-${n.name}.bundle` })),
  };

  return {
    cluster: input.cluster,
    nodes,
    ports,
    etcd,
    etcdMembers,
    initialCluster: external === null ? etcdMembers.map((m) => `${m.name}=${m.peerUrl}`).join(',') : null,
    initialClusterToken: external === null ? `pgpilot-${input.cluster}-${input.tokenSuffix}` : null,
    clientCidrs,
    clientCidrsDefaulted: input.clientCidr === undefined,
    backupStore,
    leaves: leafRequests(nodes),
    files,
    firewall: firewallOpenings(ports, etcd, etcdMembers, clientCidrs),
    warnings,
  };
}
