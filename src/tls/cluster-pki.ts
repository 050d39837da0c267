/**
 * A cluster's certificates: one CA per cluster (created once, kept across rotations) and the leaf
 * certificates it signs. The caller says which leaves exist and where their files go (the local
 * provider: src/providers/local/local-tls.ts); this module creates, writes and renews them.
 *
 * Invariants:
 * - The CA key is written once with mode 0600 and never leaves its file; `ensureCa` never
 *   replaces an existing CA (a new CA would cut every node off from every other).
 * - A leaf's key and certificate are written to temp files and renamed into place, key first:
 *   a reader sees the old pair or the new pair, and for the short moment between the two renames
 *   a new key with the old certificate — a reload then fails and keeps serving the old context
 *   (postgres, PgBouncer) until the caller's reload after both renames.
 * - Private keys are 0600 and handed to their owner (`chown` hook) before they are renamed into
 *   place; certificates are 0644.
 * - Old certificates stay valid until they expire (there is no revocation list).
 */
import { existsSync, readFileSync } from 'node:fs';
import { chmod, rename, writeFile } from 'node:fs/promises';
import { PgpilotError } from '../shared/errors.js';
import { createCaCertificate, generatePrivateKeyPem, issueLeafCertificate, type LeafRequest } from './openssl.js';

/** CA validity: 10 years. Leaves: 1 year; the expiry alert fires 30 days before (monitoring/alerts.yml). */
export const CA_VALID_DAYS = 3650;
export const LEAF_VALID_DAYS = 365;

export interface CaFiles {
  caFile: string;
  caKeyFile: string;
}

export interface CaPair {
  certPem: string;
  keyPem: string;
}

export interface LeafPlan {
  certFile: string;
  keyFile: string;
  request: LeafRequest;
  /** Hands a file to the process that reads it (the postgres OS user for a node's key). */
  chown?: (file: string) => Promise<void>;
}

async function writeInPlace(file: string, content: string, mode: number, chown?: (file: string) => Promise<void>): Promise<void> {
  const temp = `${file}.tmp-${process.pid}`;
  await writeFile(temp, content, { mode });
  await chmod(temp, mode);
  if (chown !== undefined) await chown(temp);
  await rename(temp, file);
}

/** The cluster CA: read when it exists, else created (key 0600, certificate 0644). */
export async function ensureCa(files: CaFiles, clusterName: string): Promise<CaPair> {
  if (existsSync(files.caFile) || existsSync(files.caKeyFile)) {
    try {
      return { certPem: readFileSync(files.caFile, 'utf8'), keyPem: readFileSync(files.caKeyFile, 'utf8') };
    } catch (error) {
      throw new PgpilotError('TLS_MISSING', `the cluster CA of ${clusterName} cannot be read: ${(error as NodeJS.ErrnoException).code ?? String(error)}`, {
        hint: `${files.caFile} and ${files.caKeyFile} must both exist; pgpilot never replaces a cluster CA`,
        cause: error,
      });
    }
  }
  const keyPem = await generatePrivateKeyPem();
  const certPem = await createCaCertificate({ keyPem, commonName: `pgpilot ${clusterName} CA`, validDays: CA_VALID_DAYS });
  await writeInPlace(files.caKeyFile, keyPem, 0o600);
  await writeInPlace(files.caFile, certPem, 0o644);
  return { certPem, keyPem };
}

/** Issues (or renews: a new key and serial) one leaf and puts its files in place. */
export async function issueLeaf(ca: CaPair, leaf: LeafPlan): Promise<void> {
  const keyPem = await generatePrivateKeyPem();
  const certPem = await issueLeafCertificate({ caCertPem: ca.certPem, caKeyPem: ca.keyPem, keyPem, request: leaf.request });
  await writeInPlace(leaf.keyFile, keyPem, 0o600, leaf.chown);
  await writeInPlace(leaf.certFile, certPem, 0o644, leaf.chown);
}
