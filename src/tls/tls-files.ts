/**
 * A TLS identity as the processes use it: the cluster CA plus a certificate and its key, read from
 * their PEM files. Clients verify the peer against the CA only (never the system store: only the
 * cluster CA may vouch for a member), and hostnames/IPs against the certificate's SANs.
 */
import { readFileSync } from 'node:fs';
import type { TlsFiles } from '../config/schema.js';
import { PgpilotError } from '../shared/errors.js';

export interface TlsMaterial {
  ca: string;
  cert: string;
  key: string;
}

/** The PEM contents of `files`; TLS_MISSING (with the file) when one cannot be read. */
export function readTlsMaterial(files: TlsFiles): TlsMaterial {
  const read = (file: string): string => {
    try {
      return readFileSync(file, 'utf8');
    } catch (error) {
      throw new PgpilotError('TLS_MISSING', `cannot read ${file}: ${(error as NodeJS.ErrnoException).code ?? String(error)}`, {
        hint: 'the cluster certificates are missing or unreadable; `pgpilot certs rotate NAME` writes new node and client certificates',
        cause: error,
      });
    }
  };
  return { ca: read(files.caFile), cert: read(files.certFile), key: read(files.keyFile) };
}

/** Just the CA (a client that authenticates with a password, not a certificate). */
export function readCaFile(caFile: string): string {
  return readTlsMaterial({ caFile, certFile: caFile, keyFile: caFile }).ca;
}
