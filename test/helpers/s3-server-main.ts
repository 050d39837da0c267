/**
 * Child-process entry of test/helpers/s3-server.ts: runs s3rver on 127.0.0.1 at a kernel-chosen
 * port, storing under the directory given as the first argument, with the buckets named by the
 * other arguments; prints `{"port": N}` on one stdout line once it accepts requests.
 *
 * Why a child: s3rver 3.7.1 encrypts ListObjectsV2 continuation tokens with single DES, which
 * OpenSSL 3 only has in its legacy provider; the parent starts this process with
 * `--openssl-legacy-provider` so paginated listings work, without changing the test process.
 *
 * Exits (closing the server and removing the directory) on SIGTERM/SIGINT or when stdin ends,
 * which is also what happens when the parent test process dies, so no server outlives its test.
 */
import { rm } from 'node:fs/promises';
import S3rver from 's3rver';

const [directory, ...buckets] = process.argv.slice(2);
if (directory === undefined || buckets.length === 0) {
  process.stderr.write('usage: s3-server-main DIRECTORY BUCKET...\n');
  process.exit(2);
}

const server = new S3rver({
  address: '127.0.0.1',
  port: 0,
  silent: true,
  directory,
  vhostBuckets: false,
  configureBuckets: buckets.map((name) => ({ name })),
});

let stopping = false;
function shutdown(): void {
  if (stopping) return;
  stopping = true;
  const closing = server.close().catch(() => undefined);
  server.httpServer?.closeAllConnections();
  void closing
    .then(() => rm(directory as string, { recursive: true, force: true }))
    .finally(() => process.exit(0));
}

process.on('SIGTERM', shutdown);
process.on('SIGINT', shutdown);
process.stdin.on('end', shutdown);
process.stdin.on('close', shutdown);
process.stdin.resume();

const address = await server.run();
process.stdout.write(`${JSON.stringify({ port: address.port })}\n`);
