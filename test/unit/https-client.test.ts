/**
 * src/shared/https-client.ts against a real `https.createServer` on 127.0.0.1 with certificates of
 * a throwaway CA (test/helpers/test-pki.ts): it answers with the CA that signed the server, refuses
 * `http://` URLs without dialling, refuses a server certificate of another CA and one that does not
 * name the host dialled, presents a client certificate when given (and a server that requires one
 * refuses it otherwise), and is bounded: a server that never answers fails within the timeout, and
 * an answer over the size limit fails instead of being buffered.
 */
import assert from 'node:assert/strict';
import https from 'node:https';
import type { AddressInfo, Socket } from 'node:net';
import type { TLSSocket } from 'node:tls';
import { after, before, describe, it } from 'node:test';
import { httpsRequest, jsonBody } from '../../src/shared/https-client.js';
import { SystemClock } from '../../src/shared/clock.js';
import { makeTestPki, type TestPki } from '../helpers/test-pki.js';

const clock = new SystemClock();
let pki: TestPki;
let other: TestPki;
const servers: https.Server[] = [];
const sockets = new Set<Socket>();

/** Starts an HTTPS server on 127.0.0.1 with `options`; every socket is tracked so `after` can end it. */
async function serve(options: https.ServerOptions, handler: Parameters<typeof https.createServer>[1]): Promise<string> {
  const server = https.createServer(options, handler);
  server.on('connection', (socket: Socket) => {
    sockets.add(socket);
    socket.on('close', () => sockets.delete(socket));
  });
  server.on('tlsClientError', () => undefined);
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  servers.push(server);
  return `https://127.0.0.1:${(server.address() as AddressInfo).port}`;
}

let plainUrl = '';
let mtlsUrl = '';
let silentUrl = '';
let hugeUrl = '';
let foreignUrl = '';
let wrongNameUrl = '';
let requests = 0;

before(async () => {
  pki = await makeTestPki('https-client');
  other = await makeTestPki('https-other');
  const serverTls = { cert: pki.server.material.cert, key: pki.server.material.key };
  plainUrl = await serve(serverTls, (req, res) => {
    requests += 1;
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      res.setHeader('content-type', 'application/json');
      res.end(JSON.stringify({ method: req.method, path: req.url, auth: req.headers.authorization ?? null, body: Buffer.concat(chunks).toString('utf8') }));
    });
  });
  mtlsUrl = await serve({ ...serverTls, ca: pki.ca, requestCert: true, rejectUnauthorized: true }, (req, res) => {
    const peer = (req.socket as TLSSocket).getPeerCertificate();
    res.end(JSON.stringify({ client: peer.subject?.CN ?? null }));
  });
  silentUrl = await serve(serverTls, () => undefined);
  hugeUrl = await serve(serverTls, (_req, res) => {
    const chunk = Buffer.alloc(256 * 1024, 'x');
    let sent = 0;
    const pump = (): void => {
      while (sent < 64 && res.write(chunk)) sent += 1;
      if (sent >= 64) res.end();
      else res.once('drain', pump);
    };
    res.on('error', () => undefined);
    pump();
  });
  foreignUrl = await serve({ cert: other.server.material.cert, key: other.server.material.key }, (_req, res) => res.end('should never be read'));
  const noLoopback = await pki.issue('elsewhere', { ipAddresses: ['10.9.8.7'], dnsNames: ['elsewhere.example'] });
  wrongNameUrl = await serve({ cert: noLoopback.material.cert, key: noLoopback.material.key }, (_req, res) => res.end('should never be read'));
});

after(async () => {
  for (const socket of sockets) socket.destroy();
  await Promise.all(servers.map((server) => new Promise<void>((resolve) => server.close(() => resolve()))));
  await pki.cleanup();
  await other.cleanup();
});

void describe('httpsRequest', () => {
  void it('GETs and POSTs over TLS verified against the CA, with headers and a JSON body', async () => {
    const get = await httpsRequest(`${plainUrl}/status`, { timeoutMs: 5_000, tls: { ca: pki.ca }, headers: { authorization: 'Bearer x' } });
    assert.equal(get.status, 200);
    assert.equal(get.ok, true);
    assert.deepEqual(jsonBody(get), { method: 'GET', path: '/status', auth: 'Bearer x', body: '' });
    const post = await httpsRequest(new URL('/restart', plainUrl), { method: 'POST', body: '{"a":1}', timeoutMs: 5_000, tls: { ca: pki.ca } });
    assert.deepEqual(jsonBody(post), { method: 'POST', path: '/restart', auth: null, body: '{"a":1}' });
    // By name too: the certificate names localhost.
    const byName = await httpsRequest(plainUrl.replace('127.0.0.1', 'localhost'), { timeoutMs: 5_000, tls: { ca: pki.ca } });
    assert.equal(byName.status, 200);
  });

  void it('refuses an http:// URL without dialling it', async () => {
    const before = requests;
    await assert.rejects(httpsRequest(plainUrl.replace('https:', 'http:'), { timeoutMs: 1_000, tls: { ca: pki.ca } }), /plain-text|HTTPS only/);
    assert.equal(requests, before, 'nothing reached the server');
  });

  void it('rejects a server whose certificate another CA signed', async () => {
    await assert.rejects(httpsRequest(foreignUrl, { timeoutMs: 5_000, tls: { ca: pki.ca } }), /certificate/i);
    // The same server is fine for a client of the other CA (the control).
    assert.equal((await httpsRequest(foreignUrl, { timeoutMs: 5_000, tls: { ca: other.ca } })).status, 200);
  });

  void it('rejects a certificate of the right CA that does not name the host dialled', async () => {
    await assert.rejects(httpsRequest(wrongNameUrl, { timeoutMs: 5_000, tls: { ca: pki.ca } }), /altnames|IP|host/i);
  });

  void it('never falls back to the system trust store: a server of our CA is refused when another CA is given', async () => {
    await assert.rejects(httpsRequest(plainUrl, { timeoutMs: 5_000, tls: { ca: other.ca } }), /certificate/i);
  });

  void it('presents the client certificate when given; a server requiring one refuses the client without it', async () => {
    const withCert = await httpsRequest(mtlsUrl, { timeoutMs: 5_000, tls: pki.client.material });
    assert.equal(withCert.status, 200);
    assert.deepEqual(jsonBody(withCert), { client: 'test-client' });
    await assert.rejects(httpsRequest(mtlsUrl, { timeoutMs: 5_000, tls: { ca: pki.ca } }));
    await assert.rejects(httpsRequest(mtlsUrl, { timeoutMs: 5_000, tls: { ...other.client.material, ca: pki.ca } }), 'a client certificate of another CA');
  });

  void it('fails within its timeout when the server never answers', async () => {
    const startedMs = clock.nowMs();
    await assert.rejects(httpsRequest(silentUrl, { timeoutMs: 400, tls: { ca: pki.ca } }));
    const tookMs = clock.nowMs() - startedMs;
    assert.ok(tookMs >= 350 && tookMs < 2_000, `took ${tookMs} ms`);
  });

  void it('fails on an answer larger than its size bound instead of buffering it', async () => {
    // 64 x 256 KiB = 16 MiB, over the 4 MiB bound.
    await assert.rejects(httpsRequest(hugeUrl, { timeoutMs: 10_000, tls: { ca: pki.ca } }), /larger than/);
  });

  void it('jsonBody is null for a body that is not JSON', () => {
    assert.equal(jsonBody({ status: 200, ok: true, text: 'not json' }), null);
  });
});
