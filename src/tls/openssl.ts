/**
 * The one module for the `openssl` binary (Debian's openssl package, installed by
 * scripts/setup.sh): it signs X.509 certificates with the cluster CA. Keys are generated in
 * process (node:crypto, ECDSA P-256, PKCS#8 PEM) and only ever written to files of mode 0600;
 * openssl reads them from those files, never from argv or the environment.
 *
 * Why openssl and not a JS X.509 library: it is the tool operators already use to inspect and
 * check these files (`openssl x509 -text`, `openssl verify`), it is maintained and patched by the
 * distribution, and it adds no dependency tree to the CLI. Reading certificates (subject, SANs,
 * expiry, serial) needs no binary: node:crypto's X509Certificate does it (src/tls/certificate-info.ts).
 *
 * Invariants: a CA certificate has basicConstraints CA:TRUE and may only sign; a leaf has CA:FALSE,
 * digitalSignature only, and the extended key usages it was asked for; every SAN comes from the
 * typed request and is checked before it reaches the extension file (no injection into the
 * openssl config syntax).
 */
import { generateKeyPair, randomBytes } from 'node:crypto';
import { isIP } from 'node:net';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import { PgpilotError } from '../shared/errors.js';
import { runCommand } from '../shared/process-runner.js';

const generateKeyPairAsync = promisify(generateKeyPair);

/** What a leaf certificate is for: a server (that also authenticates as a client), or a client only. */
export type CertificateUsage = 'server-and-client' | 'client';

export interface LeafRequest {
  /** The certificate's subject CN (node name, `admin`, `etcd`). */
  commonName: string;
  /** Subject alternative names: addresses clients dial (IPv4/IPv6) and DNS names. */
  ipAddresses: readonly string[];
  dnsNames: readonly string[];
  usage: CertificateUsage;
  validDays: number;
}

const DNS_NAME = /^(?=.{1,253}$)([A-Za-z0-9_]([A-Za-z0-9_-]{0,61}[A-Za-z0-9])?)(\.[A-Za-z0-9_]([A-Za-z0-9_-]{0,61}[A-Za-z0-9])?)*$/;
const COMMON_NAME = /^[A-Za-z0-9][A-Za-z0-9 ._-]{0,63}$/;

function invalid(message: string): PgpilotError {
  return new PgpilotError('INPUT_INVALID', message, { exitCode: 2 });
}

/** A new ECDSA P-256 private key, PKCS#8 PEM. */
export async function generatePrivateKeyPem(): Promise<string> {
  const { privateKey } = await generateKeyPairAsync('ec', {
    namedCurve: 'P-256',
    privateKeyEncoding: { type: 'pkcs8', format: 'pem' },
    publicKeyEncoding: { type: 'spki', format: 'pem' },
  });
  return privateKey;
}

/** A random positive 128-bit serial number as openssl takes it (`0x...`). */
export function randomSerial(): string {
  const bytes = randomBytes(16);
  bytes[0] = ((bytes[0] ?? 0) & 0x7f) | 0x10;
  return `0x${bytes.toString('hex')}`;
}

/** The x509v3 extension section of a leaf (pure; unit-tested). */
export function leafExtensions(request: LeafRequest): string {
  if (!COMMON_NAME.test(request.commonName)) throw invalid(`certificate name ${JSON.stringify(request.commonName)} is not allowed`);
  const sans: string[] = [];
  for (const ip of new Set(request.ipAddresses)) {
    if (isIP(ip) === 0) throw invalid(`${JSON.stringify(ip)} is not an IP address`);
    sans.push(`IP:${ip}`);
  }
  for (const dns of new Set(request.dnsNames)) {
    if (!DNS_NAME.test(dns)) throw invalid(`${JSON.stringify(dns)} is not a DNS name`);
    sans.push(`DNS:${dns}`);
  }
  const lines = [
    'basicConstraints = critical, CA:FALSE',
    'keyUsage = critical, digitalSignature',
    `extendedKeyUsage = ${request.usage === 'client' ? 'clientAuth' : 'serverAuth, clientAuth'}`,
    'subjectKeyIdentifier = hash',
    'authorityKeyIdentifier = keyid',
  ];
  if (sans.length > 0) lines.push(`subjectAltName = ${sans.join(', ')}`);
  return `${lines.join('\n')}\n`;
}

/**
 * An openssl `req` config (pure): the subject CN and, for a self-signed certificate, its
 * extensions. The CN was checked against COMMON_NAME, so it cannot break the config syntax.
 */
export function requestConfig(commonName: string, x509Extensions: readonly string[]): string {
  if (!COMMON_NAME.test(commonName)) throw invalid(`certificate name ${JSON.stringify(commonName)} is not allowed`);
  const lines = ['[req]', 'prompt = no', 'distinguished_name = dn'];
  if (x509Extensions.length > 0) lines.push('x509_extensions = ext');
  lines.push('[dn]', `CN = ${commonName}`);
  if (x509Extensions.length > 0) lines.push('[ext]', ...x509Extensions);
  return `${lines.join('\n')}\n`;
}

function checkDays(days: number): number {
  if (!Number.isInteger(days) || days < 1 || days > 36_500) throw invalid(`validity of ${days} days is out of range`);
  return days;
}

async function withWorkDir<T>(fn: (dir: string) => Promise<T>): Promise<T> {
  const dir = await mkdtemp(path.join(tmpdir(), 'pgpilot-tls-'));
  try {
    return await fn(dir);
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}

async function openssl(args: readonly string[]): Promise<string> {
  try {
    const result = await runCommand('openssl', args, { timeoutMs: 30_000, env: { PATH: process.env['PATH'] ?? '/usr/bin:/bin', LANG: 'C' } });
    return result.stdout;
  } catch (error) {
    if (error instanceof PgpilotError && error.code === 'BINARY_MISSING') {
      throw new PgpilotError('BINARY_MISSING', 'openssl was not found', { hint: 'run scripts/setup.sh (installs Debian\'s openssl)', exitCode: 2, cause: error });
    }
    throw error;
  }
}

/** A self-signed CA certificate for `keyPem` (PEM). */
export async function createCaCertificate(options: { keyPem: string; commonName: string; validDays: number }): Promise<string> {
  return withWorkDir(async (dir) => {
    const keyFile = path.join(dir, 'ca.key');
    const configFile = path.join(dir, 'ca.cnf');
    await writeFile(keyFile, options.keyPem, { mode: 0o600 });
    await writeFile(
      configFile,
      requestConfig(options.commonName, ['basicConstraints = critical, CA:TRUE, pathlen:0', 'keyUsage = critical, keyCertSign, cRLSign', 'subjectKeyIdentifier = hash']),
      { mode: 0o600 },
    );
    return openssl([
      'req', '-x509', '-new', '-key', keyFile, '-sha256', '-config', configFile,
      '-days', String(checkDays(options.validDays)), '-set_serial', randomSerial(),
    ]);
  });
}

/** A leaf certificate for `keyPem`, signed by the CA (PEM). */
export async function issueLeafCertificate(options: { caCertPem: string; caKeyPem: string; keyPem: string; request: LeafRequest }): Promise<string> {
  const extensions = leafExtensions(options.request);
  return withWorkDir(async (dir) => {
    const files = { caCert: path.join(dir, 'ca.crt'), caKey: path.join(dir, 'ca.key'), key: path.join(dir, 'leaf.key'), csr: path.join(dir, 'leaf.csr'), ext: path.join(dir, 'leaf.ext'), cnf: path.join(dir, 'leaf.cnf') };
    await writeFile(files.caCert, options.caCertPem, { mode: 0o600 });
    await writeFile(files.caKey, options.caKeyPem, { mode: 0o600 });
    await writeFile(files.key, options.keyPem, { mode: 0o600 });
    await writeFile(files.ext, `[leaf]\n${extensions}`, { mode: 0o600 });
    await writeFile(files.cnf, requestConfig(options.request.commonName, []), { mode: 0o600 });
    await openssl(['req', '-new', '-key', files.key, '-config', files.cnf, '-out', files.csr]);
    return openssl([
      'x509', '-req', '-in', files.csr, '-CA', files.caCert, '-CAkey', files.caKey,
      '-set_serial', randomSerial(), '-sha256', '-days', String(checkDays(options.request.validDays)),
      '-extfile', files.ext, '-extensions', 'leaf',
    ]);
  });
}
