/**
 * Which member records an agent believes (pure). A member record tells other agents where to
 * stream from (`host`, `port`) and where to send REST calls (`apiUrl`: failsafe checks, position
 * queries), so a record written by anyone who can write etcd could point them at any machine.
 * Invariants: a record is used only when it sits under its own name's key, its `apiUrl` is a
 * plain http(s) URL and both its `apiUrl` host and its postgres `host` are among the cluster's
 * known node addresses (`knownHosts` of the agent config; without it, the agent's own host and
 * loopback); `isKnownUrl` is the same check that the REST peer clients apply before every call.
 */
import { memberNameFromKey, type ClusterKeys } from '../dcs/keys.js';
import { parseMemberRecord, type MemberRecord } from '../state/member-record.js';

export const LOOPBACK_HOSTS: readonly string[] = ['127.0.0.1', '::1', 'localhost'];

/** The hosts an agent may talk to: the configured node addresses, else its own host and loopback. */
export function knownHostsFor(config: { host: string; knownHosts?: readonly string[] | undefined }): string[] {
  const hosts = config.knownHosts !== undefined && config.knownHosts.length > 0 ? config.knownHosts : [config.host, ...LOOPBACK_HOSTS];
  return [...new Set(hosts.map(normalizeHost))];
}

function normalizeHost(host: string): string {
  return host.trim().toLowerCase().replace(/^\[(.*)\]$/, '$1');
}

/** True when `host` is one of `knownHosts` (case-insensitive, IPv6 brackets ignored). */
export function isKnownHost(host: string, knownHosts: readonly string[]): boolean {
  const wanted = normalizeHost(host);
  return knownHosts.some((h) => normalizeHost(h) === wanted);
}

/** True for an http(s) URL without credentials whose host is one of `knownHosts`. */
export function isKnownUrl(url: string, knownHosts: readonly string[]): boolean {
  let parsed: URL;
  try {
    parsed = new URL(url);
  } catch {
    return false;
  }
  if (parsed.protocol !== 'http:' && parsed.protocol !== 'https:') return false;
  if (parsed.username !== '' || parsed.password !== '') return false;
  return isKnownHost(parsed.hostname, knownHosts);
}

export interface IgnoredMember {
  key: string;
  name: string;
  reason: string;
}

/** The readable member records of a prefix read, split into trusted ones and ignored ones (with why). */
export function trustedMemberRecords(all: ReadonlyMap<string, string>, keys: ClusterKeys, knownHosts: readonly string[]): { members: MemberRecord[]; ignored: IgnoredMember[] } {
  const members: MemberRecord[] = [];
  const ignored: IgnoredMember[] = [];
  for (const [key, value] of all) {
    const name = memberNameFromKey(keys, key);
    if (name === null) continue;
    const record = parseMemberRecord(value);
    if (record === null) continue;
    const reason =
      record.name !== name
        ? `its record names ${JSON.stringify(record.name.slice(0, 64))}`
        : !isKnownUrl(record.apiUrl, knownHosts)
          ? `its apiUrl ${JSON.stringify(record.apiUrl.slice(0, 200))} is not on a known node address`
          : !isKnownHost(record.host, knownHosts)
            ? `its host ${JSON.stringify(record.host.slice(0, 200))} is not a known node address`
            : null;
    if (reason === null) members.push(record);
    else ignored.push({ key, name, reason });
  }
  return { members, ignored };
}
