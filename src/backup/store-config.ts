/**
 * Where backups go: the store URL a user types, the store config file that records it, and the
 * factory from config to `ObjectStore`.
 *
 * Accepted URLs (parseStoreUrl):
 *   /abs/path                       a directory (FsObjectStore)
 *   file:///abs/path                the same
 *   s3://bucket[/prefix][?endpoint=http://127.0.0.1:9000][&region=us-east-1][&force-path-style=true|false]
 * `region` defaults to us-east-1; `force-path-style` defaults to true when an endpoint is given
 * (S3-compatible servers rarely have per-bucket DNS names) and false otherwise (AWS).
 *
 * The config file (JSON, mode 0600, written atomically) is `{ "url": ..., "accessKeyId"?,
 * "secretAccessKey"?, "sessionToken"? }`. Invariant: credentials live only in that file (or the
 * AWS SDK's default chain when the file has none), never in the URL: a URL with user info is
 * rejected, so a URL is always safe to print, log, and record in cluster.json. `describeStore`
 * prints the URL back (it round-trips through parseStoreUrl) and never includes credentials.
 */
import { readFile } from 'node:fs/promises';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { z } from 'zod';
import { parseConfig } from '../config/load.js';
import { PgpilotError, errorMessage } from '../shared/errors.js';
import { describeFsLocation, FsObjectStore, writeFileDurably, type FsObjectStoreOptions } from './fs-object-store.js';
import type { ObjectStore } from './object-store.js';
import type { Readable } from 'node:stream';
import type { ObjectHead, ObjectInfo, PutOptions } from './object-store.js';
import { DEFAULT_S3_REGION, describeS3Location, normalizeS3Prefix, type S3Credentials } from './s3-location.js';
import type { S3ObjectStoreOptions } from './s3-object-store.js';

export type StoreConfig =
  | { kind: 'fs'; rootDir: string }
  | {
      kind: 's3';
      bucket: string;
      /** '' or a relative path without a trailing '/'. */
      prefix: string;
      endpoint?: string;
      region: string;
      forcePathStyle: boolean;
      credentials?: S3Credentials;
    };

export const ACCEPTED_STORE_URLS =
  'accepted: /abs/path, file:///abs/path, or s3://BUCKET[/PREFIX][?endpoint=http://HOST:PORT&region=REGION&force-path-style=true|false]';

const BUCKET_NAME = /^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$/;
const REGION_NAME = /^[a-z0-9-]{1,64}$/;
const S3_QUERY_KEYS = new Set(['endpoint', 'region', 'force-path-style']);

const credentialText = z.string().min(1).max(1024).regex(/^[\x21-\x7e]+$/, 'printable ASCII without spaces');

/** The store config file. */
export const storeConfigSchema = z
  .object({
    url: z.string().min(1),
    accessKeyId: credentialText.optional(),
    secretAccessKey: credentialText.optional(),
    sessionToken: credentialText.optional(),
  })
  .strict()
  .refine((file) => (file.accessKeyId === undefined) === (file.secretAccessKey === undefined), {
    message: 'accessKeyId and secretAccessKey go together (both or neither)',
    path: ['secretAccessKey'],
  })
  .refine((file) => file.sessionToken === undefined || file.accessKeyId !== undefined, {
    message: 'sessionToken needs accessKeyId and secretAccessKey',
    path: ['sessionToken'],
  });

export type StoreConfigFile = z.infer<typeof storeConfigSchema>;

function badUrl(reason: string): PgpilotError {
  // Never echo the whole URL: a mistyped one may carry a secret.
  return new PgpilotError('INPUT_INVALID', `invalid backup store URL: ${reason}`, { hint: ACCEPTED_STORE_URLS, exitCode: 2 });
}

function fsConfig(rootDir: string): StoreConfig {
  if (!path.isAbsolute(rootDir)) throw badUrl('a directory must be an absolute path');
  const normalized = path.resolve(rootDir);
  if (normalized === '/') throw badUrl('the root directory / cannot be a backup store');
  return { kind: 'fs', rootDir: normalized };
}

function parseEndpoint(value: string): string {
  let url: URL;
  try {
    url = new URL(value);
  } catch {
    throw badUrl('endpoint is not a URL (e.g. endpoint=http://127.0.0.1:9000)');
  }
  if (url.protocol !== 'http:' && url.protocol !== 'https:') throw badUrl('endpoint must be an http:// or https:// URL');
  if (url.username !== '' || url.password !== '') {
    throw badUrl('endpoint must not contain credentials; put accessKeyId/secretAccessKey in the store config file');
  }
  if (url.search !== '' || url.hash !== '') throw badUrl('endpoint must not have a query or fragment');
  if (url.pathname !== '/' && url.pathname !== '') throw badUrl('endpoint must not have a path (the bucket goes after s3://)');
  return `${url.protocol}//${url.host}`;
}

function parseS3Url(url: string): StoreConfig {
  let parsed: URL;
  try {
    parsed = new URL(url);
  } catch {
    throw badUrl('not a URL');
  }
  if (parsed.username !== '' || parsed.password !== '') {
    throw badUrl('credentials do not go in the URL; put accessKeyId/secretAccessKey in the store config file');
  }
  if (parsed.hash !== '') throw badUrl('no #fragment allowed');
  const bucket = parsed.hostname;
  if (parsed.port !== '') throw badUrl('s3://BUCKET takes no port; give the server as ?endpoint=http://HOST:PORT');
  if (!BUCKET_NAME.test(bucket) || bucket.includes('..')) {
    throw badUrl(`bucket name ${JSON.stringify(bucket)}: 3..63 characters of a-z 0-9 . - starting and ending with a letter or digit`);
  }
  // The prefix from the text as typed: the URL parser would silently resolve 'a/../b' to 'b'.
  const typedPath = url.slice('s3://'.length).split(/[?#]/)[0] ?? '';
  const slash = typedPath.indexOf('/');
  let rawPrefix: string;
  try {
    rawPrefix = slash === -1 ? '' : decodeURIComponent(typedPath.slice(slash + 1));
  } catch {
    throw badUrl('the prefix is not valid percent-encoding');
  }
  let prefix: string;
  try {
    prefix = normalizeS3Prefix(rawPrefix);
  } catch {
    throw badUrl(`prefix ${JSON.stringify(rawPrefix.slice(0, 120))}: a relative path of [A-Za-z0-9._/-] without empty or '.'-starting segments`);
  }
  const params = parsed.searchParams;
  for (const key of params.keys()) {
    if (!S3_QUERY_KEYS.has(key)) throw badUrl(`unknown query parameter ${JSON.stringify(key.slice(0, 40))}`);
  }
  for (const key of S3_QUERY_KEYS) {
    if (params.getAll(key).length > 1) throw badUrl(`query parameter ${key} given twice`);
  }
  const endpointValue = params.get('endpoint');
  const endpoint = endpointValue === null ? undefined : parseEndpoint(endpointValue);
  const region = params.get('region') ?? DEFAULT_S3_REGION;
  if (!REGION_NAME.test(region)) throw badUrl(`region ${JSON.stringify(region.slice(0, 40))}: lower-case letters, digits and '-'`);
  const pathStyle = params.get('force-path-style');
  if (pathStyle !== null && pathStyle !== 'true' && pathStyle !== 'false') throw badUrl('force-path-style must be true or false');
  const forcePathStyle = pathStyle === null ? endpoint !== undefined : pathStyle === 'true';
  return {
    kind: 's3',
    bucket,
    prefix,
    ...(endpoint === undefined ? {} : { endpoint }),
    region,
    forcePathStyle,
  };
}

/** A store URL (see the header) to a config without credentials. Bad input: INPUT_INVALID with the accepted forms. */
export function parseStoreUrl(url: string): StoreConfig {
  if (typeof url !== 'string' || url.trim() === '') throw badUrl('empty');
  if (url !== url.trim()) throw badUrl('leading or trailing spaces');
  if (url.startsWith('/')) return fsConfig(url);
  if (url.startsWith('file:')) {
    let parsed: URL;
    try {
      parsed = new URL(url);
    } catch {
      throw badUrl('not a file URL');
    }
    if (parsed.host !== '' && parsed.host !== 'localhost') throw badUrl('a file URL names a local path: file:///abs/path');
    if (parsed.search !== '' || parsed.hash !== '') throw badUrl('a file URL takes no query or fragment');
    let rootDir: string;
    try {
      rootDir = fileURLToPath(parsed);
    } catch (error) {
      throw badUrl(`not a local file path (${errorMessage(error)})`);
    }
    return fsConfig(rootDir);
  }
  if (url.startsWith('s3://')) return parseS3Url(url);
  const scheme = /^([a-zA-Z][a-zA-Z0-9+.-]*):/.exec(url)?.[1];
  throw badUrl(scheme === undefined ? 'a directory must be an absolute path' : `unsupported scheme ${scheme}:`);
}

/** The store's URL, without credentials; parseStoreUrl(describeStore(c)) gives c back (less credentials). */
export function describeStore(config: StoreConfig): string {
  switch (config.kind) {
    case 'fs':
      return describeFsLocation(config.rootDir);
    case 's3':
      return describeS3Location(config);
  }
}

/** Reads and validates a store config file (CONFIG_INVALID naming the file on any problem). */
export async function readStoreConfigFile(file: string): Promise<StoreConfig> {
  let text: string;
  try {
    text = await readFile(file, 'utf8');
  } catch (error) {
    throw new PgpilotError('CONFIG_INVALID', `cannot read ${file}: ${(error as NodeJS.ErrnoException).code ?? errorMessage(error)}`, {
      hint: 'check the path and its permissions (the file is 0600: readable by its owner only)',
      cause: error,
    });
  }
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch {
    // No cause: the parser's message quotes the text, which may hold a secret.
    throw new PgpilotError('CONFIG_INVALID', `${file} is not valid JSON`, { hint: `fix or restore ${file}` });
  }
  const raw = parseConfig(storeConfigSchema, json, file);
  let config: StoreConfig;
  try {
    config = parseStoreUrl(raw.url);
  } catch (error) {
    throw new PgpilotError('CONFIG_INVALID', `${file} is invalid: url: ${errorMessage(error)}`, {
      hint: `fix the url in ${file}; ${ACCEPTED_STORE_URLS}`,
    });
  }
  if (raw.accessKeyId === undefined || raw.secretAccessKey === undefined) return config;
  if (config.kind !== 's3') {
    throw new PgpilotError('CONFIG_INVALID', `${file} is invalid: credentials are only for s3:// stores`, {
      hint: `remove accessKeyId/secretAccessKey from ${file}`,
    });
  }
  return {
    ...config,
    credentials: {
      accessKeyId: raw.accessKeyId,
      secretAccessKey: raw.secretAccessKey,
      ...(raw.sessionToken === undefined ? {} : { sessionToken: raw.sessionToken }),
    },
  };
}

/** The file form of a config: its URL plus, for S3, the credentials. */
export function toStoreConfigFile(config: StoreConfig): StoreConfigFile {
  const file: StoreConfigFile = { url: describeStore(config) };
  if (config.kind === 's3' && config.credentials !== undefined) {
    file.accessKeyId = config.credentials.accessKeyId;
    file.secretAccessKey = config.credentials.secretAccessKey;
    if (config.credentials.sessionToken !== undefined) file.sessionToken = config.credentials.sessionToken;
  }
  return file;
}

/** Writes the config file atomically with mode 0600 (it may hold a secret key). */
export async function writeStoreConfigFile(file: string, config: StoreConfig): Promise<void> {
  const content = toStoreConfigFile(config);
  const checked = storeConfigSchema.safeParse(content);
  if (!checked.success) {
    throw new PgpilotError('INPUT_INVALID', 'the store config cannot be written: its credentials are not valid', {
      hint: 'accessKeyId and secretAccessKey are printable ASCII without spaces',
      exitCode: 2,
    });
  }
  await writeFileDurably(file, `${JSON.stringify(content, null, 2)}\n`, 0o600);
}

export function openObjectStore(config: StoreConfig, fsOptions: FsObjectStoreOptions = {}): ObjectStore {
  switch (config.kind) {
    case 'fs':
      return new FsObjectStore(config.rootDir, fsOptions);
    case 's3':
      return new LazyS3ObjectStore({
        bucket: config.bucket,
        prefix: config.prefix,
        ...(config.endpoint === undefined ? {} : { endpoint: config.endpoint }),
        region: config.region,
        forcePathStyle: config.forcePathStyle,
        ...(config.credentials === undefined ? {} : { credentials: config.credentials }),
      });
  }
}

/**
 * The S3 store, with the AWS SDK loaded on first use (about 130 ms of start-up for every process
 * that imports it, and postgres starts one `wal push` per WAL segment).
 */
class LazyS3ObjectStore implements ObjectStore {
  readonly description: string;
  private store: Promise<ObjectStore> | null = null;

  constructor(private readonly options: S3ObjectStoreOptions) {
    this.description = describeS3Location({ ...options, prefix: normalizeS3Prefix(options.prefix) });
  }

  private real(): Promise<ObjectStore> {
    this.store ??= import('./s3-object-store.js').then((m) => new m.S3ObjectStore(this.options));
    return this.store;
  }

  async put(key: string, body: Buffer | Readable, options?: PutOptions): Promise<void> {
    return (await this.real()).put(key, body, options);
  }

  async get(key: string): Promise<Readable | null> {
    return (await this.real()).get(key);
  }

  async getBuffer(key: string): Promise<Buffer | null> {
    return (await this.real()).getBuffer(key);
  }

  async head(key: string): Promise<ObjectHead | null> {
    return (await this.real()).head(key);
  }

  async list(prefix: string): Promise<ObjectInfo[]> {
    return (await this.real()).list(prefix);
  }

  async delete(keys: readonly string[]): Promise<void> {
    return (await this.real()).delete(keys);
  }

  async close(): Promise<void> {
    if (this.store !== null) await (await this.store).close();
  }
}
