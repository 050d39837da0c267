/**
 * IP addresses and networks of `cluster init` (src/multihost/ip-network.ts): parsing, canonical
 * text (checked against the WHATWG URL parser's IPv6 serialisation), CIDR validation, and the
 * smallest network holding a set of addresses — property-tested against node:net's BlockList as
 * an independent oracle: every address lies inside, and the next longer prefix does not hold them all.
 */
import assert from 'node:assert/strict';
import { BlockList } from 'node:net';
import { describe, it } from 'node:test';
import fc from 'fast-check';
import {
  cidrContains,
  defaultClientCidrs,
  familyBits,
  formatCidr,
  formatIpAddress,
  parseCidr,
  parseIpAddress,
  smallestNetwork,
  type IpAddress,
  type IpFamily,
} from '../../src/multihost/ip-network.js';

const PARAMS = { seed: 20_261_202, numRuns: 300, endOnFailure: true };

function addr(text: string): IpAddress {
  const a = parseIpAddress(text);
  assert.ok(a !== null, `${text} parses`);
  return a;
}

/** Sets of addresses of one family that share a random number of leading bits (interesting prefixes). */
function addressSet(family: IpFamily): fc.Arbitrary<IpAddress[]> {
  const bits = familyBits(family);
  const max = (1n << BigInt(bits)) - 1n;
  return fc
    .tuple(fc.bigInt({ min: 0n, max }), fc.integer({ min: 0, max: bits }), fc.array(fc.bigInt({ min: 0n, max }), { minLength: 0, maxLength: 8 }))
    .map(([base, varying, others]) => {
      const mask = (1n << BigInt(varying)) - 1n;
      return [base, ...others.map((o) => (base & ~mask) | (o & mask))].map((value) => ({ family, value }));
    });
}

function blockListOf(cidr: string): BlockList {
  const [net, prefix] = cidr.split('/');
  const list = new BlockList();
  const family = (net ?? '').includes(':') ? 'ipv6' : 'ipv4';
  list.addSubnet(net ?? '', Number(prefix), family);
  return list;
}

function holds(list: BlockList, a: IpAddress): boolean {
  return list.check(formatIpAddress(a), a.family === 4 ? 'ipv4' : 'ipv6');
}

void describe('ip-network: addresses', () => {
  void it('parses IPv4 and IPv6 forms and writes the canonical text', () => {
    const cases: [string, string][] = [
      ['10.0.0.1', '10.0.0.1'],
      ['0.0.0.0', '0.0.0.0'],
      ['255.255.255.255', '255.255.255.255'],
      ['fd00::1', 'fd00::1'],
      ['FD00:0000:0000:0000:0000:0000:0000:0001', 'fd00::1'],
      ['2001:db8:0:0:1:0:0:1', '2001:db8::1:0:0:1'],
      ['2001:db8::', '2001:db8::'],
      ['::', '::'],
      ['::1', '::1'],
      ['1:2:3:4:5:6:7:8', '1:2:3:4:5:6:7:8'],
      ['1:0:3:4:5:6:7:8', '1:0:3:4:5:6:7:8'],
      ['::ffff:10.0.0.1', '::ffff:a00:1'],
      ['64:ff9b::192.0.2.33', '64:ff9b::c000:221'],
    ];
    for (const [input, canonical] of cases) assert.equal(formatIpAddress(addr(input)), canonical, input);
  });

  void it('refuses what is not an address', () => {
    for (const text of ['', 'node1', '10.0.0', '10.0.0.1.2', '10.0.0.256', '010.0.0.1', '10.0.0.-1', ' 10.0.0.1', '1:2:3:4:5:6:7', '1:2:3:4:5:6:7:8:9', '1::2::3', ':::', '1:::2', 'fe80::1%eth0', '[fd00::1]', '12345::1', 'g::1', '1.2.3.4::', '::1.2.3', '1:2:3:4:5:6:7::8:9']) {
      assert.equal(parseIpAddress(text), null, JSON.stringify(text));
    }
  });

  void it('IPv6 canonical text is what the WHATWG URL parser writes, and it parses back (property)', () => {
    fc.assert(
      fc.property(fc.bigInt({ min: 0n, max: (1n << 128n) - 1n }), fc.integer({ min: 0, max: 7 }), fc.integer({ min: 0, max: 8 }), (value, zeroStart, zeroLength) => {
        // Runs of zero groups, so '::' placement is exercised.
        let v = value;
        for (let g = zeroStart; g < Math.min(8, zeroStart + zeroLength); g += 1) v &= ~(0xffffn << BigInt(16 * (7 - g)));
        const a: IpAddress = { family: 6, value: v };
        const text = formatIpAddress(a);
        assert.deepEqual(parseIpAddress(text), a);
        const url = new URL(`http://[${text}]/`).hostname.slice(1, -1);
        // URL writes an embedded IPv4 tail in hex too; it must agree exactly.
        assert.equal(text, url);
      }),
      PARAMS,
    );
  });

  void it('IPv4 text round-trips (property)', () => {
    fc.assert(
      fc.property(fc.bigInt({ min: 0n, max: (1n << 32n) - 1n }), (value) => {
        const a: IpAddress = { family: 4, value };
        assert.deepEqual(parseIpAddress(formatIpAddress(a)), a);
      }),
      PARAMS,
    );
  });
});

void describe('ip-network: CIDRs', () => {
  void it('parses networks and refuses host bits, bad prefixes and non-addresses', () => {
    const ok = parseCidr('10.0.0.0/24');
    assert.equal(ok.kind, 'ok');
    if (ok.kind === 'ok') assert.equal(formatCidr(ok.network), '10.0.0.0/24');
    const v6 = parseCidr('FD00:0::/64');
    assert.ok(v6.kind === 'ok' && formatCidr(v6.network) === 'fd00::/64');
    assert.ok(parseCidr('0.0.0.0/0').kind === 'ok');
    assert.ok(parseCidr('10.0.0.1/32').kind === 'ok');
    const hostBits = parseCidr('10.0.0.1/24');
    assert.ok(hostBits.kind === 'invalid' && hostBits.suggestion === '10.0.0.0/24');
    for (const text of ['10.0.0.0', '10.0.0.0/33', '10.0.0.0/-1', '10.0.0.0/024', '10.0.0.0/', 'fd00::/129', 'x/24', '10.0.0.0/24/1', '10.0.0.0/2a']) {
      assert.equal(parseCidr(text).kind, 'invalid', text);
    }
  });

  void it('contains', () => {
    const net = parseCidr('10.0.0.0/30');
    assert.ok(net.kind === 'ok');
    if (net.kind !== 'ok') return;
    assert.ok(cidrContains(net.network, addr('10.0.0.3')));
    assert.ok(!cidrContains(net.network, addr('10.0.0.4')));
    assert.ok(!cidrContains(net.network, addr('::a00:1')));
  });

  void it('smallest network: examples', () => {
    assert.equal(formatCidr(smallestNetwork([addr('10.0.0.1'), addr('10.0.0.2'), addr('10.0.0.3')])), '10.0.0.0/30');
    assert.equal(formatCidr(smallestNetwork([addr('10.0.0.1'), addr('10.0.0.9')])), '10.0.0.0/28');
    assert.equal(formatCidr(smallestNetwork([addr('10.0.1.5'), addr('10.0.2.5')])), '10.0.0.0/22');
    assert.equal(formatCidr(smallestNetwork([addr('10.0.0.7')])), '10.0.0.7/32');
    assert.equal(formatCidr(smallestNetwork([addr('1.0.0.0'), addr('200.0.0.0')])), '0.0.0.0/0');
    assert.equal(formatCidr(smallestNetwork([addr('fd00::11'), addr('fd00::12'), addr('fd00::13')])), 'fd00::10/126');
    assert.equal(formatCidr(smallestNetwork([addr('fd00::1')])), 'fd00::1/128');
    assert.deepEqual(defaultClientCidrs([addr('10.0.0.1'), addr('fd00::1'), addr('10.0.0.2'), addr('fd00::2')]), ['10.0.0.0/30', 'fd00::/126']);
    assert.throws(() => smallestNetwork([]), RangeError);
    assert.throws(() => smallestNetwork([addr('10.0.0.1'), addr('::1')]), RangeError);
  });

  for (const family of [4, 6] as const) {
    void it(`smallest network (IPv${family}, property): holds every address, and no longer prefix does`, () => {
      fc.assert(
        fc.property(addressSet(family), (addresses) => {
          const net = smallestNetwork(addresses);
          const cidr = formatCidr(net);
          assert.equal(net.network & ((1n << BigInt(familyBits(family) - net.prefix)) - 1n), 0n, `${cidr} has no host bits`);
          const parsed = parseCidr(cidr);
          assert.ok(parsed.kind === 'ok', `${cidr} parses back`);
          const oracle = blockListOf(cidr);
          for (const a of addresses) {
            assert.ok(cidrContains(net, a), `${formatIpAddress(a)} in ${cidr}`);
            assert.ok(holds(oracle, a), `${formatIpAddress(a)} in ${cidr} (BlockList)`);
          }
          if (net.prefix < familyBits(family)) {
            // Every network of prefix+1 bits misses one of them (there are exactly two candidates inside net).
            for (const half of [0n, 1n]) {
              const longer = { family, prefix: net.prefix + 1, network: net.network | (half << BigInt(familyBits(family) - net.prefix - 1)) };
              const longerOracle = blockListOf(formatCidr(longer));
              assert.ok(
                addresses.some((a) => !cidrContains(longer, a)),
                `${formatCidr(longer)} would hold them all`,
              );
              assert.ok(addresses.some((a) => !holds(longerOracle, a)), `${formatCidr(longer)} would hold them all (BlockList)`);
            }
          }
        }),
        PARAMS,
      );
    });
  }
});
