/**
 * A real S3-compatible server for tests: s3rver (npm, dev dependency) in a child process on a
 * kernel-chosen free loopback port, storing under a fresh directory in os.tmpdir(), with the
 * requested buckets made before it accepts requests. `stop()` ends the child (by its PID: SIGTERM,
 * then SIGKILL after a deadline) and removes the directory; it is idempotent, so call it from
 * `after` unconditionally. The child also exits when this process dies (its stdin closes).
 *
 * s3rver quirks to know: it needs OpenSSL's legacy provider for ListObjectsV2 continuation tokens
 * (hence the child, see s3-server-main.ts); it accepts any request signed with access key id
 * 'S3RVER' and does not verify SigV4 signatures (a wrong secret is not detected); it does not
 * support AbortMultipartUpload; it stores aws-chunked bodies verbatim (see
 * src/backup/s3-object-store.ts for the SDK settings that avoid them); and it lists keys in
 * directory-walk order rather than byte order across '/' (S3ObjectStore sorts).
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtemp, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import type { StoreConfig } from '../../src/backup/store-config.js';
import { LOOPBACK_HOST } from '../../src/shared/ports.js';

export interface S3TestServer {
  /** e.g. http://127.0.0.1:41234 */
  endpoint: string;
  bucket: string;
  accessKeyId: string;
  secretAccessKey: string;
  /** The server's storage directory (removed by stop). */
  directory: string;
  /** The server's process id. */
  pid: number;
  /** A store URL for `bucket` under `prefix`: s3://bucket/prefix?endpoint=... */
  url(prefix?: string): string;
  /** A StoreConfig for `bucket` under `prefix`, with the server's credentials. */
  storeConfig(prefix?: string): StoreConfig;
  stop(): Promise<void>;
}

export const S3RVER_ACCESS_KEY_ID = 'S3RVER';
export const S3RVER_SECRET_ACCESS_KEY = 'S3RVER';

export interface StartS3ServerOptions {
  /** Made before the server starts. Default 'pgpilot-test'. */
  bucket?: string;
  /** More buckets to make. */
  extraBuckets?: string[];
  /** Deadline for the server to report its port. Default 20 s. */
  startTimeoutMs?: number;
}

const STOP_DEADLINE_MS = 5_000;
const MAIN_SCRIPT = fileURLToPath(new URL('./s3-server-main.js', import.meta.url));

function trimSlashes(prefix: string): string {
  return prefix.replace(/^\/+|\/+$/g, '');
}

/** Resolves with the port the child prints, or rejects when it exits or the deadline passes first. */
function readPort(child: ChildProcess, timeoutMs: number): Promise<number> {
  return new Promise((resolve, reject) => {
    let stdout = '';
    let stderr = '';
    const timer = setTimeout(() => finish(new Error(`s3rver did not start within ${timeoutMs} ms: ${stderr.trim()}`)), timeoutMs);
    function finish(error: Error | null, port?: number): void {
      clearTimeout(timer);
      child.stdout?.off('data', onStdout);
      child.off('exit', onExit);
      if (error) reject(error);
      else resolve(port as number);
    }
    function onStdout(chunk: Buffer): void {
      stdout += chunk.toString('utf8');
      const newline = stdout.indexOf('\n');
      if (newline === -1) return;
      try {
        const { port } = JSON.parse(stdout.slice(0, newline)) as { port: number };
        finish(null, port);
      } catch (error) {
        finish(new Error(`s3rver printed ${JSON.stringify(stdout.slice(0, newline))}: ${String(error)}`));
      }
    }
    function onExit(code: number | null, signal: NodeJS.Signals | null): void {
      finish(new Error(`s3rver exited (code ${code}, signal ${signal}) before starting: ${stderr.trim()}`));
    }
    child.stdout?.on('data', onStdout);
    child.stderr?.on('data', (chunk: Buffer) => {
      stderr = (stderr + chunk.toString('utf8')).slice(-4000);
    });
    child.once('exit', onExit);
  });
}

function waitForExit(child: ChildProcess, timeoutMs: number): Promise<boolean> {
  if (child.exitCode !== null || child.signalCode !== null) return Promise.resolve(true);
  return new Promise((resolve) => {
    const timer = setTimeout(() => {
      child.off('exit', onExit);
      resolve(false);
    }, timeoutMs);
    function onExit(): void {
      clearTimeout(timer);
      resolve(true);
    }
    child.once('exit', onExit);
  });
}

export async function startS3Server(options: StartS3ServerOptions = {}): Promise<S3TestServer> {
  const bucket = options.bucket ?? 'pgpilot-test';
  const directory = await mkdtemp(path.join(os.tmpdir(), 'pgpilot-s3rver-'));
  const child = spawn(process.execPath, ['--openssl-legacy-provider', MAIN_SCRIPT, directory, bucket, ...(options.extraBuckets ?? [])], {
    stdio: ['pipe', 'pipe', 'pipe'],
    cwd: os.tmpdir(),
  });
  child.stdin?.on('error', () => undefined); // the child may be gone when we close its stdin

  let stopped = false;
  const stop = async (): Promise<void> => {
    if (stopped) return;
    stopped = true;
    try {
      if (child.exitCode === null && child.signalCode === null) {
        child.kill('SIGTERM');
        if (!(await waitForExit(child, STOP_DEADLINE_MS))) {
          child.kill('SIGKILL');
          await waitForExit(child, STOP_DEADLINE_MS);
        }
      }
      child.stdin?.destroy();
    } finally {
      await rm(directory, { recursive: true, force: true });
    }
  };

  let port: number;
  try {
    port = await readPort(child, options.startTimeoutMs ?? 20_000);
  } catch (error) {
    await stop();
    throw error;
  }
  // The child's output is no longer needed; keep draining it so it never blocks on a full pipe.
  child.stdout?.resume();
  child.stderr?.resume();

  const endpoint = `http://${LOOPBACK_HOST}:${port}`;
  return {
    endpoint,
    bucket,
    accessKeyId: S3RVER_ACCESS_KEY_ID,
    secretAccessKey: S3RVER_SECRET_ACCESS_KEY,
    directory,
    pid: child.pid ?? -1,
    url: (prefix = '') => `s3://${bucket}${trimSlashes(prefix) === '' ? '' : `/${trimSlashes(prefix)}`}?endpoint=${endpoint}`,
    storeConfig: (prefix = '') => ({
      kind: 's3',
      bucket,
      prefix: trimSlashes(prefix),
      endpoint,
      region: 'us-east-1',
      forcePathStyle: true,
      credentials: { accessKeyId: S3RVER_ACCESS_KEY_ID, secretAccessKey: S3RVER_SECRET_ACCESS_KEY },
    }),
    stop,
  };
}
