/**
 * Where an S3 store is (bucket, prefix, endpoint, region) and how it names itself, without the
 * AWS SDK: the WAL commands postgres runs for every segment load this, and load the SDK only when
 * they actually talk to S3 (src/backup/store-config.ts).
 */
import { PgpilotError } from '../shared/errors.js';
import { isValidObjectKey } from './object-store.js';

export interface S3Credentials {
  accessKeyId: string;
  secretAccessKey: string;
  sessionToken?: string;
}

export interface S3Location {
  bucket: string;
  /** Key prefix inside the bucket, '' for the bucket root; a trailing '/' is optional. */
  prefix: string;
  /** An S3-compatible endpoint such as http://127.0.0.1:9000; absent for AWS. */
  endpoint?: string;
  region: string;
  forcePathStyle: boolean;
}

export const DEFAULT_S3_REGION = 'us-east-1';
/** The store prefix without a trailing '/', validated like a key ('' for the bucket root). */
export function normalizeS3Prefix(prefix: string): string {
  const trimmed = prefix.replace(/\/+$/, '');
  if (trimmed !== '' && !isValidObjectKey(trimmed)) {
    throw new PgpilotError('INPUT_INVALID', `invalid S3 key prefix ${JSON.stringify(prefix.slice(0, 120))}`, {
      hint: "a prefix is a relative path of [A-Za-z0-9._/-], e.g. 'pgpilot/cluster-a'",
      exitCode: 2,
    });
  }
  return trimmed;
}

/** The endpoint without user info, query or fragment (never a secret), without a trailing '/'. */
export function sanitizeEndpoint(endpoint: string): string {
  try {
    const url = new URL(endpoint);
    return `${url.protocol}//${url.host}${url.pathname === '/' ? '' : url.pathname.replace(/\/+$/, '')}`;
  } catch {
    return '(invalid endpoint)';
  }
}

/**
 * How an S3 store names itself, in the URL form `parseStoreUrl` accepts:
 * `s3://bucket/prefix?endpoint=...&region=...&force-path-style=...`, query parts only when not default.
 */
export function describeS3Location(location: S3Location): string {
  const prefix = normalizeS3Prefix(location.prefix);
  const query: string[] = [];
  if (location.endpoint !== undefined) query.push(`endpoint=${sanitizeEndpoint(location.endpoint)}`);
  if (location.region !== DEFAULT_S3_REGION) query.push(`region=${location.region}`);
  const defaultPathStyle = location.endpoint !== undefined;
  if (location.forcePathStyle !== defaultPathStyle) query.push(`force-path-style=${String(location.forcePathStyle)}`);
  return `s3://${location.bucket}${prefix === '' ? '' : `/${prefix}`}${query.length > 0 ? `?${query.join('&')}` : ''}`;
}
