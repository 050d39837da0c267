/**
 * src/tls/cluster-pki.ts and src/tls/certificate-info.ts with the real openssl, in a temp dir:
 * `ensureCa` creates a CA once and never replaces it; `issueLeaf` writes a leaf signed by that CA
 * (`isSignedBy`), with the requested SANs and usages, key 0600 and certificate 0644; re-issuing
 * gives a new key and serial and keeps the CA; `describeCertificate` reads what openssl wrote and
 * refuses what is not a certificate. The signature checks are cross-checked with `openssl verify`.
 */
import assert from 'node:assert/strict';
import { createPrivateKey, X509Certificate } from 'node:crypto';
import { existsSync, statSync } from 'node:fs';
import { mkdtemp, readdir, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { PgpilotError } from '../../src/shared/errors.js';
import { runCommand } from '../../src/shared/process-runner.js';
import { describeCertificate, describeCertificateFile, isSignedBy } from '../../src/tls/certificate-info.js';
import { CA_VALID_DAYS, ensureCa, issueLeaf, LEAF_VALID_DAYS, type CaPair } from '../../src/tls/cluster-pki.js';

const DAY_MS = 24 * 3600 * 1000;

let dir = '';
let caFiles = { caFile: '', caKeyFile: '' };
let ca: CaPair;

function mode(file: string): number {
  return statSync(file).mode & 0o777;
}

/** `openssl verify -CAfile ca cert` exit status (0: verified). */
async function opensslVerifies(caFile: string, certFile: string, purpose?: 'sslserver' | 'sslclient'): Promise<boolean> {
  const args = ['verify', '-CAfile', caFile, ...(purpose === undefined ? [] : ['-purpose', purpose]), certFile];
  try {
    await runCommand('openssl', args, { timeoutMs: 10_000 });
    return true;
  } catch {
    return false;
  }
}

before(async () => {
  dir = await mkdtemp(path.join(tmpdir(), 'pgpilot-pki-test-'));
  caFiles = { caFile: path.join(dir, 'ca.crt'), caKeyFile: path.join(dir, 'ca.key') };
  ca = await ensureCa(caFiles, 'demo');
});

after(async () => {
  await rm(dir, { recursive: true, force: true });
});

void describe('ensureCa', () => {
  void it('creates a CA certificate (CA:TRUE, 10 years, named after the cluster) and its key, 0644 and 0600', async () => {
    assert.equal(mode(caFiles.caFile), 0o644);
    assert.equal(mode(caFiles.caKeyFile), 0o600);
    assert.equal(await readFile(caFiles.caFile, 'utf8'), ca.certPem);
    assert.equal(await readFile(caFiles.caKeyFile, 'utf8'), ca.keyPem);
    const info = describeCertificate(ca.certPem);
    assert.equal(info.isCa, true);
    assert.equal(info.subject, 'CN=pgpilot demo CA');
    assert.equal(info.issuer, info.subject, 'self-signed');
    assert.ok(isSignedBy(ca.certPem, ca.certPem));
    const validMs = info.notAfterEpochMs - Date.parse(info.notBefore);
    assert.ok(Math.abs(validMs - CA_VALID_DAYS * DAY_MS) < 2 * DAY_MS, `valid ${validMs / DAY_MS} days`);
    assert.ok(new X509Certificate(ca.certPem).checkPrivateKey(createPrivateKey(ca.keyPem)));
  });

  void it('never replaces an existing CA: a second call returns the same files, unchanged', async () => {
    const before = { cert: await readFile(caFiles.caFile, 'utf8'), key: await readFile(caFiles.caKeyFile, 'utf8'), mtimeMs: statSync(caFiles.caFile).mtimeMs };
    const again = await ensureCa(caFiles, 'demo');
    assert.equal(again.certPem, before.cert);
    assert.equal(again.keyPem, before.key);
    assert.equal(await readFile(caFiles.caFile, 'utf8'), before.cert);
    assert.equal(statSync(caFiles.caFile).mtimeMs, before.mtimeMs);
  });

  void it('refuses (TLS_MISSING) when only one half of a CA exists, instead of making a new one', async () => {
    const half = { caFile: path.join(dir, 'half-ca.crt'), caKeyFile: path.join(dir, 'half-ca.key') };
    await writeFile(half.caFile, ca.certPem);
    await assert.rejects(ensureCa(half, 'demo'), (error: unknown) => error instanceof PgpilotError && error.code === 'TLS_MISSING');
    assert.ok(!existsSync(half.caKeyFile), 'no key was made up');
    assert.equal(await readFile(half.caFile, 'utf8'), ca.certPem);
  });
});

void describe('issueLeaf', () => {
  const leafFiles = (name: string): { certFile: string; keyFile: string } => ({ certFile: path.join(dir, `${name}.crt`), keyFile: path.join(dir, `${name}.key`) });

  void it('writes a server leaf signed by the CA with the requested SANs and usages, key 0600 and certificate 0644', async () => {
    const files = leafFiles('node1');
    const chowned: string[] = [];
    await issueLeaf(ca, {
      ...files,
      request: { commonName: 'node1', ipAddresses: ['127.0.0.1', '::1'], dnsNames: ['localhost', 'node1'], usage: 'server-and-client', validDays: LEAF_VALID_DAYS },
      chown: (file) => {
        chowned.push(file);
        return Promise.resolve();
      },
    });
    assert.equal(mode(files.keyFile), 0o600);
    assert.equal(mode(files.certFile), 0o644);
    // The hook sees the temp files before they are renamed into place (key first).
    assert.equal(chowned.length, 2);
    assert.ok(chowned[0]?.startsWith(`${files.keyFile}.tmp-`) && chowned[1]?.startsWith(`${files.certFile}.tmp-`), JSON.stringify(chowned));
    const pem = await readFile(files.certFile, 'utf8');
    const info = describeCertificate(pem);
    assert.equal(info.subject, 'CN=node1');
    assert.equal(info.issuer, 'CN=pgpilot demo CA');
    assert.equal(info.isCa, false);
    assert.deepEqual(info.subjectAltNames.sort(), ['DNS:localhost', 'DNS:node1', 'IP Address:0:0:0:0:0:0:0:1', 'IP Address:127.0.0.1'].sort());
    assert.ok(isSignedBy(pem, ca.certPem));
    const x509 = new X509Certificate(pem);
    assert.equal(x509.checkHost('node1'), 'node1');
    assert.equal(x509.checkIP('127.0.0.1'), '127.0.0.1');
    assert.equal(x509.checkHost('other'), undefined);
    assert.ok(x509.checkPrivateKey(createPrivateKey(await readFile(files.keyFile, 'utf8'))));
    const validMs = info.notAfterEpochMs - Date.parse(info.notBefore);
    assert.ok(Math.abs(validMs - LEAF_VALID_DAYS * DAY_MS) < 2 * DAY_MS);
    assert.ok(await opensslVerifies(caFiles.caFile, files.certFile, 'sslserver'));
    assert.ok(await opensslVerifies(caFiles.caFile, files.certFile, 'sslclient'));
  });

  void it('a client leaf verifies for client use only', async () => {
    const files = leafFiles('admin');
    await issueLeaf(ca, { ...files, request: { commonName: 'admin', ipAddresses: [], dnsNames: [], usage: 'client', validDays: 30 } });
    assert.ok(isSignedBy(await readFile(files.certFile, 'utf8'), ca.certPem));
    assert.ok(await opensslVerifies(caFiles.caFile, files.certFile, 'sslclient'));
    assert.equal(await opensslVerifies(caFiles.caFile, files.certFile, 'sslserver'), false, 'not usable as a server certificate');
    assert.deepEqual(describeCertificate(await readFile(files.certFile, 'utf8')).subjectAltNames, []);
  });

  void it('re-issuing writes a new key and serial, signed by the same, unchanged CA', async () => {
    const files = leafFiles('node2');
    const leaf = { ...files, request: { commonName: 'node2', ipAddresses: ['127.0.0.1'], dnsNames: [], usage: 'server-and-client' as const, validDays: 10 } };
    await issueLeaf(ca, leaf);
    const first = { cert: await readFile(files.certFile, 'utf8'), key: await readFile(files.keyFile, 'utf8') };
    await issueLeaf(ca, leaf);
    const second = { cert: await readFile(files.certFile, 'utf8'), key: await readFile(files.keyFile, 'utf8') };
    assert.notEqual(describeCertificate(second.cert).serial, describeCertificate(first.cert).serial);
    assert.notEqual(second.key, first.key);
    assert.ok(isSignedBy(first.cert, ca.certPem) && isSignedBy(second.cert, ca.certPem));
    assert.equal(await readFile(caFiles.caFile, 'utf8'), ca.certPem, 'the CA is kept');
    assert.equal((await ensureCa(caFiles, 'demo')).certPem, ca.certPem);
    // No temp file is left behind.
    assert.deepEqual((await readdir(dir)).filter((f) => f.includes('.tmp-')), []);
  });

  void it('a leaf of another CA is not signed by this one', async () => {
    const otherDir = await mkdtemp(path.join(tmpdir(), 'pgpilot-pki-other-'));
    try {
      const other = await ensureCa({ caFile: path.join(otherDir, 'ca.crt'), caKeyFile: path.join(otherDir, 'ca.key') }, 'other');
      const files = { certFile: path.join(otherDir, 'x.crt'), keyFile: path.join(otherDir, 'x.key') };
      await issueLeaf(other, { ...files, request: { commonName: 'node1', ipAddresses: ['127.0.0.1'], dnsNames: [], usage: 'server-and-client', validDays: 10 } });
      const pem = await readFile(files.certFile, 'utf8');
      assert.ok(isSignedBy(pem, other.certPem));
      assert.equal(isSignedBy(pem, ca.certPem), false);
      assert.equal(await opensslVerifies(caFiles.caFile, files.certFile), false);
      // Same subject name as the CA's own leaves does not help.
      assert.equal(describeCertificate(other.certPem).subject, 'CN=pgpilot other CA');
    } finally {
      await rm(otherDir, { recursive: true, force: true });
    }
  });

  void it('refuses a bad request before writing anything', async () => {
    const files = leafFiles('bad');
    await assert.rejects(
      issueLeaf(ca, { ...files, request: { commonName: 'bad\nCN=admin', ipAddresses: [], dnsNames: [], usage: 'client', validDays: 10 } }),
      (error: unknown) => error instanceof PgpilotError && error.code === 'INPUT_INVALID',
    );
    await assert.rejects(
      issueLeaf(ca, { ...files, request: { commonName: 'bad', ipAddresses: [], dnsNames: [], usage: 'client', validDays: 0 } }),
      (error: unknown) => error instanceof PgpilotError && error.code === 'INPUT_INVALID',
    );
    assert.ok(!existsSync(files.certFile) && !existsSync(files.keyFile));
  });
});

void describe('describeCertificate and isSignedBy', () => {
  void it('refuses what is not a PEM certificate (TLS_INVALID), and a missing file (TLS_MISSING)', () => {
    assert.throws(() => describeCertificate('not a certificate'), (error: unknown) => error instanceof PgpilotError && error.code === 'TLS_INVALID');
    assert.throws(() => describeCertificate(ca.keyPem), (error: unknown) => error instanceof PgpilotError && error.code === 'TLS_INVALID');
    assert.throws(() => describeCertificateFile(path.join(dir, 'missing.crt')), (error: unknown) => error instanceof PgpilotError && error.code === 'TLS_MISSING');
  });

  void it('reads the file the same as the PEM, with an upper-case hex serial and ISO dates', () => {
    const info = describeCertificateFile(caFiles.caFile);
    assert.deepEqual(info, describeCertificate(ca.certPem));
    assert.match(info.serial, /^[0-9A-F]+$/);
    assert.equal(new Date(info.notAfter).toISOString(), info.notAfter);
  });

  void it('isSignedBy is false for garbage rather than throwing', () => {
    assert.equal(isSignedBy('garbage', ca.certPem), false);
    assert.equal(isSignedBy(ca.certPem, 'garbage'), false);
  });
});
