/**
 * Reading certificates (pure over PEM text, node:crypto's X509Certificate): subject, issuer,
 * serial, validity and SANs, for `pgpilot certs show`, `status --json`'s `tls` and the expiry
 * metric. Nothing here trusts a certificate; it only describes one.
 */
import { X509Certificate } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { PgpilotError } from '../shared/errors.js';

export interface CertificateInfo {
  subject: string;
  issuer: string;
  /** Upper-case hex, as openssl prints it. */
  serial: string;
  notBefore: string;
  /** ISO 8601. */
  notAfter: string;
  notAfterEpochMs: number;
  /** `IP Address:127.0.0.1`, `DNS:node1`, ... as node:crypto lists them. */
  subjectAltNames: string[];
  isCa: boolean;
}

export function describeCertificate(pem: string): CertificateInfo {
  let cert: X509Certificate;
  try {
    cert = new X509Certificate(pem);
  } catch (error) {
    throw new PgpilotError('TLS_INVALID', 'not a PEM certificate', { cause: error });
  }
  const notAfterEpochMs = Date.parse(cert.validTo);
  return {
    subject: cert.subject.replace(/\n/g, ', '),
    issuer: cert.issuer.replace(/\n/g, ', '),
    serial: cert.serialNumber.toUpperCase(),
    notBefore: new Date(Date.parse(cert.validFrom)).toISOString(),
    notAfter: new Date(notAfterEpochMs).toISOString(),
    notAfterEpochMs,
    subjectAltNames: (cert.subjectAltName ?? '').split(',').map((s) => s.trim()).filter((s) => s.length > 0),
    isCa: cert.ca,
  };
}

/** The certificate in `file`, described; TLS_MISSING when it cannot be read. */
export function describeCertificateFile(file: string): CertificateInfo {
  let pem: string;
  try {
    pem = readFileSync(file, 'utf8');
  } catch (error) {
    throw new PgpilotError('TLS_MISSING', `cannot read the certificate ${file}: ${(error as NodeJS.ErrnoException).code ?? String(error)}`, {
      hint: 'clusters created before pgpilot had TLS have no certificates: create the cluster anew (restore from a backup keeps the data)',
      cause: error,
    });
  }
  return describeCertificate(pem);
}

/** True when `certPem` was signed by `caPem` (signature check only; expiry is not checked here). */
export function isSignedBy(certPem: string, caPem: string): boolean {
  try {
    return new X509Certificate(certPem).verify(new X509Certificate(caPem).publicKey);
  } catch {
    return false;
  }
}
