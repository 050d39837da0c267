/**
 * `ObjectStore` over S3 or any S3-compatible server (MinIO, Ceph RGW, s3rver in tests) with
 * `@aws-sdk/client-s3`; stream bodies go through `@aws-sdk/lib-storage`'s `Upload` (multipart for
 * anything above one part), buffers through one PutObject. Store key `k` is the S3 key `<prefix>/k`.
 *
 * Invariants:
 * - Atomic put comes from S3 itself: a PutObject or a completed multipart upload replaces the
 *   object whole; a failed multipart upload is aborted (`leavePartsOnError: false`) and never
 *   becomes visible.
 * - Fails fast when the endpoint is down: connection timeout 5 s, socket idle timeout 60 s, at most
 *   3 attempts, so an unreachable store is STORE_UNAVAILABLE within seconds, not minutes.
 * - Checksums are sent only where the API requires them (`requestChecksumCalculation:
 *   'WHEN_REQUIRED'`): the SDK's default (CRC32 in an aws-chunked trailer on every upload) is not
 *   understood by several S3-compatible servers, which then store the chunk framing as data.
 *   Integrity of backups is checked end to end by the backup layer (checksums in metadata).
 * - Listing follows continuation tokens to the end (bounded by MAX_LIST_PAGES; a server that says
 *   "truncated" without a new token is an error, not a loop) and sorts the result itself, since
 *   some compatible servers do not return keys in byte order. Keys under the prefix that are not
 *   valid store keys (written by other tools) are skipped: the store can neither read nor delete them.
 * - HeadObject answers a missing bucket with a bare 404 (a HEAD response has no body to say
 *   NoSuchBucket), so `head` then says "absent"; every other call reports the missing bucket.
 * - Error messages name the store by `description` and never contain credentials: SDK messages
 *   are cut to one line and scrubbed of the configured key id, secret and session token, and the
 *   SDK error (which carries the raw HTTP response) is not attached as the cause.
 */
import {
  DeleteObjectsCommand,
  GetObjectCommand,
  HeadObjectCommand,
  ListObjectsV2Command,
  PutObjectCommand,
  S3Client,
  type ListObjectsV2CommandOutput,
} from '@aws-sdk/client-s3';
import { Upload } from '@aws-sdk/lib-storage';
import { Readable } from 'node:stream';
import { PgpilotError, errorMessage } from '../shared/errors.js';
import { normalizeS3Prefix, describeS3Location, type S3Credentials, type S3Location } from './s3-location.js';

export { DEFAULT_S3_REGION, describeS3Location, normalizeS3Prefix, sanitizeEndpoint, type S3Credentials, type S3Location } from './s3-location.js';
import {
  assertValidObjectKey,
  assertValidObjectKeys,
  assertValidObjectPrefix,
  compareKeys,
  isValidObjectKey,
  storeUnavailable,
  validatedMetadata,
  type ObjectHead,
  type ObjectInfo,
  type ObjectStore,
  type PutOptions,
} from './object-store.js';

export interface S3ObjectStoreOptions extends S3Location {
  /** Absent: the AWS SDK's default chain (AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY, profiles, instance roles). */
  credentials?: S3Credentials;
  /** Multipart part size for stream bodies (at least 5 MiB; 10,000 parts at most, so 16 MiB allows 160 GiB). */
  partSizeBytes?: number;
  /** Parts uploaded at once; memory use is about queueSize * partSizeBytes. */
  queueSize?: number;
  connectionTimeoutMs?: number;
  socketTimeoutMs?: number;
  maxAttempts?: number;
}

export const DEFAULT_PART_SIZE_BYTES = 16 * 1024 * 1024;
const MIN_PART_SIZE_BYTES = 5 * 1024 * 1024;
/** S3's limit on keys per DeleteObjects request. */
const DELETE_BATCH_SIZE = 1000;
/** 100,000 pages of 1,000 keys: far beyond any archive we keep, small enough to end a broken server's loop. */
const MAX_LIST_PAGES = 100_000;
const MAX_REASON_LENGTH = 200;

interface SdkErrorShape {
  name?: string;
  code?: string;
  message?: string;
  $metadata?: { httpStatusCode?: number };
}

function sdkError(error: unknown): SdkErrorShape {
  return error !== null && typeof error === 'object' ? error : {};
}

function isNotFound(error: unknown): boolean {
  const { name, $metadata } = sdkError(error);
  return name === 'NoSuchKey' || name === 'NotFound' || ($metadata?.httpStatusCode === 404 && name !== 'NoSuchBucket');
}

export class S3ObjectStore implements ObjectStore {
  readonly description: string;
  private readonly client: S3Client;
  private readonly bucket: string;
  /** '' or ends with '/'. */
  private readonly keyPrefix: string;
  private readonly partSizeBytes: number;
  private readonly queueSize: number;
  /** Strings that must never appear in a message (credentials), longest first. */
  private readonly secrets: string[];

  constructor(options: S3ObjectStoreOptions) {
    if (options.bucket.length === 0) {
      throw new PgpilotError('INPUT_INVALID', 'the S3 bucket name is empty', { hint: 's3://BUCKET[/PREFIX]', exitCode: 2 });
    }
    const prefix = normalizeS3Prefix(options.prefix);
    this.bucket = options.bucket;
    this.keyPrefix = prefix === '' ? '' : `${prefix}/`;
    this.description = describeS3Location({ ...options, prefix });
    this.partSizeBytes = Math.max(MIN_PART_SIZE_BYTES, options.partSizeBytes ?? DEFAULT_PART_SIZE_BYTES);
    this.queueSize = Math.max(1, options.queueSize ?? 2);
    const { credentials } = options;
    this.secrets = [credentials?.secretAccessKey, credentials?.sessionToken, credentials?.accessKeyId]
      .filter((value): value is string => typeof value === 'string' && value.length >= 4)
      .sort((a, b) => b.length - a.length);
    // pgpilot runs on Node 20, which this SDK release supports; its "future releases will need
    // Node 22" warning would otherwise land on the CLI's stderr. Set only when the user has not.
    process.env.AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED ??= 'true';
    this.client = new S3Client({
      region: options.region,
      ...(options.endpoint === undefined ? {} : { endpoint: options.endpoint }),
      forcePathStyle: options.forcePathStyle,
      ...(credentials === undefined ? {} : { credentials: { ...credentials } }),
      maxAttempts: options.maxAttempts ?? 3,
      requestHandler: {
        connectionTimeout: options.connectionTimeoutMs ?? 5_000,
        socketTimeout: options.socketTimeoutMs ?? 60_000,
      },
      requestChecksumCalculation: 'WHEN_REQUIRED',
      responseChecksumValidation: 'WHEN_REQUIRED',
    });
  }

  async put(key: string, body: Buffer | Readable, options: PutOptions = {}): Promise<void> {
    assertValidObjectKey(key);
    const metadata = validatedMetadata(options.metadata);
    const params = { Bucket: this.bucket, Key: this.keyPrefix + key, Metadata: metadata };
    if (Buffer.isBuffer(body)) {
      try {
        await this.client.send(new PutObjectCommand({ ...params, Body: body, ContentLength: body.length }));
      } catch (error) {
        throw this.mapError(error, `cannot write ${key}`);
      }
      return;
    }
    // An error of the caller's stream is theirs: rethrown as it is, not as an unavailable store.
    let bodyError: unknown = null;
    const onBodyError = (error: unknown) => {
      bodyError ??= error;
    };
    body.on('error', onBodyError);
    try {
      const upload = new Upload({
        client: this.client,
        params: { ...params, Body: body },
        partSize: this.partSizeBytes,
        queueSize: this.queueSize,
        leavePartsOnError: false,
      });
      await upload.done();
    } catch (error) {
      if (bodyError !== null) throw bodyError instanceof Error ? bodyError : new Error(errorMessage(bodyError));
      throw this.mapError(error, `cannot write ${key}`);
    } finally {
      body.off('error', onBodyError);
    }
  }

  async get(key: string): Promise<Readable | null> {
    assertValidObjectKey(key);
    try {
      const output = await this.client.send(new GetObjectCommand({ Bucket: this.bucket, Key: this.keyPrefix + key }));
      const body = output.Body;
      if (body instanceof Readable) return body;
      if (body === undefined) return Readable.from([]);
      return Readable.from(Buffer.from(await body.transformToByteArray()));
    } catch (error) {
      if (isNotFound(error)) return null;
      throw this.mapError(error, `cannot read ${key}`);
    }
  }

  async getBuffer(key: string): Promise<Buffer | null> {
    assertValidObjectKey(key);
    try {
      const output = await this.client.send(new GetObjectCommand({ Bucket: this.bucket, Key: this.keyPrefix + key }));
      if (output.Body === undefined) return Buffer.alloc(0);
      const bytes = await output.Body.transformToByteArray();
      return Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength);
    } catch (error) {
      if (isNotFound(error)) return null;
      throw this.mapError(error, `cannot read ${key}`);
    }
  }

  async head(key: string): Promise<ObjectHead | null> {
    assertValidObjectKey(key);
    try {
      const output = await this.client.send(new HeadObjectCommand({ Bucket: this.bucket, Key: this.keyPrefix + key }));
      return {
        key,
        sizeBytes: output.ContentLength ?? 0,
        lastModifiedMs: output.LastModified?.getTime() ?? 0,
        metadata: { ...(output.Metadata ?? {}) },
      };
    } catch (error) {
      if (isNotFound(error)) return null;
      throw this.mapError(error, `cannot read ${key}`);
    }
  }

  async list(prefix: string): Promise<ObjectInfo[]> {
    assertValidObjectPrefix(prefix);
    const found: ObjectInfo[] = [];
    let token: string | undefined;
    const seenTokens = new Set<string>();
    for (let page = 0; ; page += 1) {
      if (page >= MAX_LIST_PAGES) {
        throw storeUnavailable(this.description, `listing ${prefix} did not end after ${MAX_LIST_PAGES} pages`);
      }
      let output: ListObjectsV2CommandOutput;
      try {
        output = await this.client.send(
          new ListObjectsV2Command({
            Bucket: this.bucket,
            Prefix: this.keyPrefix + prefix,
            ...(token === undefined ? {} : { ContinuationToken: token }),
          }),
        );
      } catch (error) {
        throw this.mapError(error, `cannot list ${prefix === '' ? 'the store' : prefix}`);
      }
      for (const object of output.Contents ?? []) {
        const s3Key = object.Key ?? '';
        if (!s3Key.startsWith(this.keyPrefix)) continue;
        const key = s3Key.slice(this.keyPrefix.length);
        if (!isValidObjectKey(key)) continue;
        found.push({ key, sizeBytes: object.Size ?? 0, lastModifiedMs: object.LastModified?.getTime() ?? 0 });
      }
      if (output.IsTruncated !== true) break;
      token = output.NextContinuationToken;
      if (token === undefined || token === '' || seenTokens.has(token)) {
        throw storeUnavailable(this.description, `listing ${prefix} is truncated without a new continuation token`);
      }
      seenTokens.add(token);
    }
    return found.sort((a, b) => compareKeys(a.key, b.key));
  }

  async delete(keys: readonly string[]): Promise<void> {
    assertValidObjectKeys(keys);
    const unique = [...new Set(keys)];
    for (let start = 0; start < unique.length; start += DELETE_BATCH_SIZE) {
      const batch = unique.slice(start, start + DELETE_BATCH_SIZE);
      let errors: Array<{ Key?: string; Code?: string }>;
      try {
        const output = await this.client.send(
          new DeleteObjectsCommand({
            Bucket: this.bucket,
            Delete: { Objects: batch.map((key) => ({ Key: this.keyPrefix + key })), Quiet: true },
          }),
        );
        errors = output.Errors ?? [];
      } catch (error) {
        throw this.mapError(error, `cannot delete ${batch.length} object(s)`);
      }
      const failed = errors.filter((entry) => entry.Code !== 'NoSuchKey');
      if (failed.length > 0) {
        const first = failed[0];
        throw storeUnavailable(
          this.description,
          this.scrub(`cannot delete ${failed.length} object(s), first ${first?.Key ?? '?'}: ${first?.Code ?? 'unknown error'}`),
        );
      }
    }
  }

  close(): Promise<void> {
    this.client.destroy();
    return Promise.resolve();
  }

  private scrub(text: string): string {
    let result = text;
    for (const secret of this.secrets) result = result.split(secret).join('[redacted]');
    return result;
  }

  /** One line, no secret: the SDK's error name, HTTP status and first message line. */
  private mapError(error: unknown, what: string): unknown {
    if (error instanceof PgpilotError) return error;
    const { name, code, message, $metadata } = sdkError(error);
    const status = $metadata?.httpStatusCode;
    const label = [name && name !== 'Error' ? name : undefined, code, status === undefined ? undefined : `HTTP ${status}`]
      .filter((part): part is string => typeof part === 'string' && part.length > 0)
      .join(', ');
    const firstLine = (message ?? errorMessage(error)).split('\n')[0]?.trim() ?? '';
    let reason = [label, firstLine].filter((part) => part.length > 0).join(': ');
    if (name === 'NoSuchBucket') reason = `bucket ${this.bucket} does not exist (${reason})`;
    if (reason.length === 0) reason = 'unknown error';
    if (reason.length > MAX_REASON_LENGTH) reason = `${reason.slice(0, MAX_REASON_LENGTH)}...`;
    reason = this.scrub(reason);
    return storeUnavailable(this.description, `${what}: ${reason}`, new Error(reason));
  }
}
