/**
 * The pure halves of src/tls/openssl.ts: `leafExtensions` writes only what the typed request says
 * (CA:FALSE, digitalSignature, the asked-for extended key usages, the SANs) and refuses anything
 * that is not an IP address, a DNS name or a plain common name — a newline, `,`, `=` or `[` could
 * otherwise add extensions or sections to the openssl config; `requestConfig` writes the subject
 * and the self-signed extensions under the same checks; `randomSerial` is a positive 128-bit hex.
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { leafExtensions, randomSerial, requestConfig, type LeafRequest } from '../../src/tls/openssl.js';
import { PgpilotError } from '../../src/shared/errors.js';

const request: LeafRequest = {
  commonName: 'node1',
  ipAddresses: ['127.0.0.1', '::1', '10.0.0.5'],
  dnsNames: ['localhost', 'node1', 'db.example.com'],
  usage: 'server-and-client',
  validDays: 365,
};

function isInputInvalid(error: unknown): boolean {
  return error instanceof PgpilotError && error.code === 'INPUT_INVALID';
}

/** `name = value` lines of an extension section. */
function extensionMap(text: string): Map<string, string> {
  const map = new Map<string, string>();
  for (const line of text.split('\n').filter((l) => l.length > 0)) {
    const match = /^([A-Za-z]+) = (.*)$/.exec(line);
    assert.ok(match?.[1] !== undefined && match[2] !== undefined, `not an extension line: ${JSON.stringify(line)}`);
    assert.ok(!map.has(match[1]), `duplicate ${match[1]}`);
    map.set(match[1], match[2]);
  }
  return map;
}

void describe('leafExtensions', () => {
  void it('a server-and-client leaf: CA:FALSE, signature only, serverAuth + clientAuth, every SAN', () => {
    const ext = extensionMap(leafExtensions(request));
    assert.equal(ext.get('basicConstraints'), 'critical, CA:FALSE');
    assert.equal(ext.get('keyUsage'), 'critical, digitalSignature');
    assert.equal(ext.get('extendedKeyUsage'), 'serverAuth, clientAuth');
    assert.equal(ext.get('subjectAltName'), 'IP:127.0.0.1, IP:::1, IP:10.0.0.5, DNS:localhost, DNS:node1, DNS:db.example.com');
    assert.ok(leafExtensions(request).endsWith('\n'));
  });

  void it('a client leaf is clientAuth only, and without SANs has no subjectAltName line', () => {
    const ext = extensionMap(leafExtensions({ ...request, usage: 'client', ipAddresses: [], dnsNames: [] }));
    assert.equal(ext.get('extendedKeyUsage'), 'clientAuth');
    assert.ok(!ext.has('subjectAltName'));
    assert.doesNotMatch(leafExtensions({ ...request, usage: 'client' }), /serverAuth|CA:TRUE|keyCertSign/);
  });

  void it('lists a repeated SAN once', () => {
    const ext = extensionMap(leafExtensions({ ...request, ipAddresses: ['127.0.0.1', '127.0.0.1'], dnsNames: ['a', 'a'] }));
    assert.equal(ext.get('subjectAltName'), 'IP:127.0.0.1, DNS:a');
  });

  void it('refuses what is not an IP address', () => {
    for (const ip of ['127.0.0.1, DNS:evil.com', '127.0.0.1\nbasicConstraints = CA:TRUE', '256.1.1.1', 'localhost', '', '10.0.0.0/8', ' 127.0.0.1']) {
      assert.throws(() => leafExtensions({ ...request, ipAddresses: [ip] }), isInputInvalid, JSON.stringify(ip));
    }
  });

  void it('refuses what is not a DNS name (no way to smuggle another SAN or extension in)', () => {
    for (const dns of ['evil.com, IP:1.2.3.4', 'a\nbasicConstraints = CA:TRUE', 'a=b', 'a b', '', '-lead.example', 'x'.repeat(64), 'a..b', 'a;b', '[ext]', '*.example.com']) {
      assert.throws(() => leafExtensions({ ...request, dnsNames: [dns] }), isInputInvalid, JSON.stringify(dns));
    }
  });

  void it('refuses a common name that could break the config: newline, `,`, `=`, `/`, brackets, empty, too long', () => {
    for (const commonName of ['node1\nCN = admin', 'a,b', 'a=b', 'CN=admin', 'a/b', '[ext]', '', ' lead', 'x'.repeat(65), 'a\rb', 'a"b']) {
      assert.throws(() => leafExtensions({ ...request, commonName }), isInputInvalid, JSON.stringify(commonName));
    }
    // Plain names pass: letters, digits, space, dot, dash, underscore.
    for (const commonName of ['node1', 'pgpilot demo CA', 'etcd', 'a.b-c_d']) assert.doesNotThrow(() => leafExtensions({ ...request, commonName }));
  });
});

void describe('requestConfig', () => {
  void it('names the subject and, when given, the x509 extensions section', () => {
    const text = requestConfig('pgpilot demo CA', ['basicConstraints = critical, CA:TRUE, pathlen:0']);
    assert.deepEqual(text.split('\n'), [
      '[req]',
      'prompt = no',
      'distinguished_name = dn',
      'x509_extensions = ext',
      '[dn]',
      'CN = pgpilot demo CA',
      '[ext]',
      'basicConstraints = critical, CA:TRUE, pathlen:0',
      '',
    ]);
  });

  void it('has no extensions section for a CSR', () => {
    const text = requestConfig('node1', []);
    assert.equal(text, '[req]\nprompt = no\ndistinguished_name = dn\n[dn]\nCN = node1\n');
  });

  void it('refuses a common name that could add a line, a section or another attribute', () => {
    for (const name of ['node1\n[ext]\nbasicConstraints = CA:TRUE', 'a, O=evil', 'x=y', '']) {
      assert.throws(() => requestConfig(name, []), isInputInvalid, JSON.stringify(name));
    }
  });
});

void describe('randomSerial', () => {
  void it('is a positive 128-bit hex number, different each time', () => {
    const serials = new Set(Array.from({ length: 50 }, () => randomSerial()));
    assert.equal(serials.size, 50);
    for (const serial of serials) {
      assert.match(serial, /^0x[0-9a-f]{32}$/);
      // High bit clear (positive in DER), and not a short number.
      const first = Number.parseInt(serial.slice(2, 4), 16);
      assert.ok(first < 0x80 && first >= 0x10, serial);
    }
  });
});
