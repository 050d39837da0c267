/**
 * IP addresses and networks (CIDRs) as `cluster init` needs them (pure, no I/O): parsing host
 * addresses into one canonical text form, validating a client CIDR, and the smallest network that
 * holds a set of addresses (the default `--client-cidr`).
 *
 * Invariants:
 * - An address has exactly one canonical text: IPv4 dotted decimal without leading zeros; IPv6 in
 *   the RFC 5952 form (lower case, no leading zeros, the longest run of two or more zero groups
 *   written `::`) — the form node:net reports for a peer, so comparisons by text are exact.
 * - A CIDR is a network address with its prefix length; host bits set (`10.0.0.1/24`) are refused
 *   rather than silently masked, since they usually mean a typo.
 * - `smallestNetwork` returns the longest prefix whose network holds every address (property-tested
 *   in test/unit/multihost-ip-network.test.ts).
 */

export type IpFamily = 4 | 6;

export interface IpAddress {
  family: IpFamily;
  /** The address as an unsigned integer of 32 (IPv4) or 128 (IPv6) bits. */
  value: bigint;
}

export interface IpNetwork {
  family: IpFamily;
  /** The network address (host bits zero). */
  network: bigint;
  /** Prefix length: 0..32 (IPv4) or 0..128 (IPv6). */
  prefix: number;
}

export function familyBits(family: IpFamily): number {
  return family === 4 ? 32 : 128;
}

const IPV4_OCTET = /^(0|[1-9][0-9]{0,2})$/;
const IPV6_GROUP = /^[0-9a-fA-F]{1,4}$/;

function parseIpv4(text: string): bigint | null {
  const parts = text.split('.');
  if (parts.length !== 4) return null;
  let value = 0n;
  for (const part of parts) {
    if (!IPV4_OCTET.test(part)) return null;
    const octet = Number(part);
    if (octet > 255) return null;
    value = (value << 8n) | BigInt(octet);
  }
  return value;
}

function parseGroups(text: string): bigint[] | null {
  if (text === '') return [];
  const groups: bigint[] = [];
  const parts = text.split(':');
  for (const [index, part] of parts.entries()) {
    if (index === parts.length - 1 && part.includes('.')) {
      const v4 = parseIpv4(part);
      if (v4 === null) return null;
      groups.push(v4 >> 16n, v4 & 0xffffn);
      continue;
    }
    if (!IPV6_GROUP.test(part)) return null;
    groups.push(BigInt(`0x${part}`));
  }
  return groups;
}

function parseIpv6(text: string): bigint | null {
  if (text.length > 45 || text.includes('%')) return null;
  const halves = text.split('::');
  if (halves.length > 2) return null;
  let groups: bigint[];
  if (halves.length === 2) {
    const head = parseGroups(halves[0] ?? '');
    const tail = parseGroups(halves[1] ?? '');
    if (head === null || tail === null) return null;
    // An embedded IPv4 address is only allowed at the very end.
    if ((halves[0] ?? '').includes('.')) return null;
    const missing = 8 - head.length - tail.length;
    if (missing < 1) return null;
    groups = [...head, ...Array.from({ length: missing }, () => 0n), ...tail];
  } else {
    const all = parseGroups(text);
    if (all === null || all.length !== 8) return null;
    groups = all;
  }
  return groups.reduce((acc, g) => (acc << 16n) | g, 0n);
}

/** An IPv4 or IPv6 address (no zone id, no brackets), or null. */
export function parseIpAddress(text: string): IpAddress | null {
  if (text.includes(':')) {
    const value = parseIpv6(text);
    return value === null ? null : { family: 6, value };
  }
  const value = parseIpv4(text);
  return value === null ? null : { family: 4, value };
}

/** The canonical text of an address (see the header). */
export function formatIpAddress(address: IpAddress): string {
  if (address.family === 4) {
    return [24n, 16n, 8n, 0n].map((shift) => String((address.value >> shift) & 0xffn)).join('.');
  }
  const groups = [112n, 96n, 80n, 64n, 48n, 32n, 16n, 0n].map((shift) => (address.value >> shift) & 0xffffn);
  // The longest run of zero groups (at least two; the first on a tie) becomes '::'.
  let bestStart = -1;
  let bestLength = 1;
  for (let start = 0; start < 8; start += 1) {
    let length = 0;
    while (start + length < 8 && groups[start + length] === 0n) length += 1;
    if (length > bestLength) {
      bestStart = start;
      bestLength = length;
    }
  }
  const hex = (gs: bigint[]): string => gs.map((g) => g.toString(16)).join(':');
  if (bestStart === -1) return hex(groups);
  return `${hex(groups.slice(0, bestStart))}::${hex(groups.slice(bestStart + bestLength))}`;
}

function hostMask(family: IpFamily, prefix: number): bigint {
  return (1n << BigInt(familyBits(family) - prefix)) - 1n;
}

/** The network of `prefix` bits that holds `address`. */
export function networkOf(address: IpAddress, prefix: number): IpNetwork {
  return { family: address.family, network: address.value & ~hostMask(address.family, prefix), prefix };
}

export type CidrParse = { kind: 'ok'; network: IpNetwork } | { kind: 'invalid'; reason: string; suggestion?: string };

/** `ADDRESS/PREFIX` with the host bits zero. */
export function parseCidr(text: string): CidrParse {
  const slash = text.indexOf('/');
  if (slash === -1) return { kind: 'invalid', reason: 'has no /PREFIX (e.g. 10.0.0.0/24)' };
  const address = parseIpAddress(text.slice(0, slash));
  if (address === null) return { kind: 'invalid', reason: `${JSON.stringify(text.slice(0, slash).slice(0, 60))} is not an IP address` };
  const prefixText = text.slice(slash + 1);
  const bits = familyBits(address.family);
  if (!/^(0|[1-9][0-9]{0,2})$/.test(prefixText) || Number(prefixText) > bits) {
    return { kind: 'invalid', reason: `the prefix length must be a number 0..${bits}` };
  }
  const prefix = Number(prefixText);
  const network = networkOf(address, prefix);
  if (network.network !== address.value) {
    return { kind: 'invalid', reason: 'has host bits set', suggestion: formatCidr(network) };
  }
  return { kind: 'ok', network };
}

export function formatCidr(network: IpNetwork): string {
  return `${formatIpAddress({ family: network.family, value: network.network })}/${network.prefix}`;
}

export function cidrContains(network: IpNetwork, address: IpAddress): boolean {
  return network.family === address.family && networkOf(address, network.prefix).network === network.network;
}

/**
 * The smallest network (longest prefix) holding every address; all of one family, at least one.
 * The common prefix of the lowest and the highest address is the common prefix of all of them.
 */
export function smallestNetwork(addresses: readonly IpAddress[]): IpNetwork {
  const first = addresses[0];
  if (first === undefined) throw new RangeError('smallestNetwork needs at least one address');
  if (addresses.some((a) => a.family !== first.family)) throw new RangeError('smallestNetwork needs addresses of one family');
  let low = first.value;
  let high = first.value;
  for (const a of addresses) {
    if (a.value < low) low = a.value;
    if (a.value > high) high = a.value;
  }
  const bits = familyBits(first.family);
  const differing = low ^ high;
  const differingBits = differing === 0n ? 0 : differing.toString(2).length;
  return networkOf({ family: first.family, value: low }, bits - differingBits);
}

/** One smallest network per address family present (IPv4 first), as CIDR text. */
export function defaultClientCidrs(addresses: readonly IpAddress[]): string[] {
  const result: string[] = [];
  for (const family of [4, 6] as const) {
    const ofFamily = addresses.filter((a) => a.family === family);
    if (ofFamily.length > 0) result.push(formatCidr(smallestNetwork(ofFamily)));
  }
  return result;
}
