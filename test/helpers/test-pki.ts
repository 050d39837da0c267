/**
 * Throwaway TLS material for tests: a CA and a server and a client certificate in a fresh temp
 * dir, made by the production code (src/tls/cluster-pki.ts + the real openssl), never by a
 * re-implementation of signing. The server certificate names loopback (127.0.0.1, ::1, localhost),
 * which is what every test server listens on. Call `makeTestPki` twice for "a certificate of
 * another CA". `cleanup()` removes the directory (keys included).
 */
import { chmod, mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import type { TlsFiles } from '../../src/config/schema.js';
import { ensureCa, issueLeaf, LEAF_VALID_DAYS, type CaPair } from '../../src/tls/cluster-pki.js';
import type { LeafRequest } from '../../src/tls/openssl.js';
import type { TlsMaterial } from '../../src/tls/tls-files.js';

export interface TestIdentity {
  /** caFile (this PKI's CA), certFile, keyFile. */
  files: TlsFiles;
  /** PEM contents: ca, cert, key. */
  material: TlsMaterial;
}

export interface TestPki {
  dir: string;
  caFile: string;
  caKeyFile: string;
  /** PEM of the CA certificate. */
  ca: string;
  caPair: CaPair;
  /** serverAuth + clientAuth, SANs 127.0.0.1, ::1, localhost. */
  server: TestIdentity;
  /** clientAuth only, no SANs (CN `test-client`). */
  client: TestIdentity;
  /** Issues one more leaf of this CA into the dir (e.g. with other SANs). */
  issue(name: string, request: Partial<LeafRequest>): Promise<TestIdentity>;
  cleanup(): Promise<void>;
}

export const LOOPBACK_SANS = { ipAddresses: ['127.0.0.1', '::1'], dnsNames: ['localhost'] } as const;

export async function makeTestPki(label = 'pki'): Promise<TestPki> {
  const dir = await mkdtemp(path.join(tmpdir(), `pgpilot-test-${label}-`));
  // Readable by other OS users (postgres) like a cluster's tls dir; keys stay 0600.
  await chmod(dir, 0o755);
  const caFile = path.join(dir, 'ca.crt');
  const caKeyFile = path.join(dir, 'ca.key');
  const caPair = await ensureCa({ caFile, caKeyFile }, label);

  const issue = async (name: string, request: Partial<LeafRequest>): Promise<TestIdentity> => {
    const files: TlsFiles = { caFile, certFile: path.join(dir, `${name}.crt`), keyFile: path.join(dir, `${name}.key`) };
    await issueLeaf(caPair, {
      certFile: files.certFile,
      keyFile: files.keyFile,
      request: {
        commonName: name,
        ipAddresses: [],
        dnsNames: [],
        usage: 'server-and-client',
        validDays: LEAF_VALID_DAYS,
        ...request,
      },
    });
    const [cert, key] = await Promise.all([readFile(files.certFile, 'utf8'), readFile(files.keyFile, 'utf8')]);
    return { files, material: { ca: caPair.certPem, cert, key } };
  };

  const server = await issue('test-server', { ...LOOPBACK_SANS, usage: 'server-and-client' });
  const client = await issue('test-client', { usage: 'client' });
  return {
    dir,
    caFile,
    caKeyFile,
    ca: caPair.certPem,
    caPair,
    server,
    client,
    issue,
    cleanup: () => rm(dir, { recursive: true, force: true }),
  };
}
