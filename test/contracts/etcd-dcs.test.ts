/**
 * EtcdDcs against the DCS contract on a real etcd (started here with `startEtcd`, on free
 * loopback ports, in a fresh temp dir), with TLS on and client certificates required exactly as
 * pgpilot runs it (a throwaway CA from test/helpers/test-pki.ts); plus the failure paths: nothing
 * listening, a server that accepts connections but never answers, one dead endpoint among
 * several, and clients that etcd must refuse (no client certificate, a certificate of another
 * CA) or that must refuse etcd (it is not vouched for by their CA). Invariant: the etcd this file
 * starts is stopped by its PID in `after()` (SIGTERM, then SIGKILL after a deadline) and its
 * directory and the PKIs removed, whatever the tests did.
 */
import assert from 'node:assert/strict';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { after, describe, it } from 'node:test';
import { EtcdDcs } from '../../src/dcs/etcd-dcs.js';
import { revokeLeaseOverHttp } from '../../src/dcs/etcd-http-lease.js';
import { clientUrl, startEtcd, waitForEtcd } from '../../src/etcd/etcd-server.js';
import { SystemClock } from '../../src/shared/clock.js';
import { PgpilotError } from '../../src/shared/errors.js';
import { httpsRequest } from '../../src/shared/https-client.js';
import { stopOwnedProcess } from '../../src/shared/pid.js';
import { findFreePorts, LOOPBACK_HOST } from '../../src/shared/ports.js';
import { makeTestPki, type TestPki } from '../helpers/test-pki.js';
import { runDcsContract, uniquePrefix } from './dcs-contract.js';

const clock = new SystemClock();

interface RunningEtcd {
  pid: number;
  dir: string;
  endpoint: string;
}

let pkiMaking: Promise<{ ours: TestPki; other: TestPki }> | null = null;

/** This file's CA (etcd's server certificate and the clients' certificates) and another, unrelated CA. */
function pkis(): Promise<{ ours: TestPki; other: TestPki }> {
  pkiMaking ??= (async () => ({ ours: await makeTestPki('etcd-dcs'), other: await makeTestPki('etcd-other') }))();
  return pkiMaking;
}

/** A client identity of this file's CA, as the agents use it (PEM). */
async function clientTls(): Promise<{ ca: string; cert: string; key: string }> {
  return (await pkis()).ours.client.material;
}

let etcdStarting: Promise<RunningEtcd> | null = null;

/** Starts the file's one etcd on first use. */
function runningEtcd(): Promise<RunningEtcd> {
  etcdStarting ??= (async () => {
    const { ours } = await pkis();
    const dir = await mkdtemp(path.join(os.tmpdir(), 'pgpilot-etcd-dcs-'));
    const [clientPort, peerPort] = await findFreePorts(2);
    if (clientPort === undefined || peerPort === undefined) throw new Error('no free ports');
    const logFile = path.join(dir, 'etcd.log');
    const { pid } = await startEtcd({
      name: 'contract',
      dataDir: path.join(dir, 'data'),
      clientPort,
      peerPort,
      logFile,
      detached: false,
      tls: ours.server.files,
    });
    const endpoint = clientUrl(LOOPBACK_HOST, clientPort);
    const running = { pid, dir, endpoint };
    try {
      await waitForEtcd(endpoint, ours.client.material, clock, 15_000, { logFile, pid });
    } catch (error) {
      const log = await readFile(logFile, 'utf8').catch(() => '');
      throw new Error(`etcd did not start: ${String(error)}\n${log.slice(-2_000)}`);
    }
    return running;
  })();
  return etcdStarting;
}

after(async () => {
  const running = etcdStarting === null ? null : await etcdStarting.catch(() => null);
  if (running !== null) {
    // The data dir is on etcd's command line: it marks the PID as ours.
    const outcome = await stopOwnedProcess({ pid: running.pid, marker: running.dir }, clock, { graceMs: 5_000 });
    assert.notEqual(outcome, 'killed', 'etcd should stop on SIGTERM');
    await rm(running.dir, { recursive: true, force: true });
  }
  const made = pkiMaking === null ? null : await pkiMaking.catch(() => null);
  if (made !== null) {
    await made.ours.cleanup();
    await made.other.cleanup();
  }
});

runDcsContract('EtcdDcs', async () => {
  const { endpoint } = await runningEtcd();
  const tls = await clientTls();
  const dcs = new EtcdDcs({ endpoints: [endpoint], tls });
  const second = new EtcdDcs({ endpoints: [endpoint], tls });
  return {
    dcs,
    second,
    advanceMs: (ms: number) => clock.sleep(ms),
    close: async () => {
      await dcs.close();
      await second.close();
    },
  };
});

function isUnavailable(error: unknown): boolean {
  return error instanceof PgpilotError && error.code === 'DCS_UNAVAILABLE' && error.retryable && error.hint !== undefined;
}

void describe('EtcdDcs failure paths', () => {
  void it('fails get with DCS_UNAVAILABLE within ~3 s when nothing listens on the endpoint', async () => {
    const [port] = await findFreePorts(1);
    const dcs = new EtcdDcs({ endpoints: [clientUrl(LOOPBACK_HOST, port ?? 1)], tls: await clientTls() });
    try {
      const startedMs = clock.nowMs();
      await assert.rejects(dcs.get('/pgpilot-contract/unreachable'), isUnavailable);
      assert.ok(clock.nowMs() - startedMs < 3_000, `took ${clock.nowMs() - startedMs} ms`);
      // Fails again (fast) rather than being blocked by a circuit breaker or retries.
      await assert.rejects(dcs.keepAlive('123'), isUnavailable, 'keepAlive cannot reach etcd: an error, not false');
      await assert.rejects(dcs.watchPrefix('/pgpilot-contract/', () => undefined), isUnavailable);
    } finally {
      await dcs.close();
    }
  });

  void it('bounds a call by the operation timeout when the server accepts but never answers', async () => {
    const sockets = new Set<net.Socket>();
    const silent = net.createServer((socket) => {
      sockets.add(socket);
      socket.on('error', () => undefined);
    });
    await new Promise<void>((resolve) => silent.listen(0, LOOPBACK_HOST, resolve));
    const address = silent.address();
    assert.ok(address !== null && typeof address === 'object');
    const dcs = new EtcdDcs({ endpoints: [clientUrl(LOOPBACK_HOST, address.port)], operationTimeoutMs: 500, tls: await clientTls() });
    try {
      const startedMs = clock.nowMs();
      await assert.rejects(dcs.get('/pgpilot-contract/silent'), isUnavailable);
      const tookMs = clock.nowMs() - startedMs;
      assert.ok(tookMs >= 400 && tookMs < 1_500, `took ${tookMs} ms`);
    } finally {
      await dcs.close();
      for (const socket of sockets) socket.destroy();
      await new Promise<void>((resolve) => silent.close(() => resolve()));
    }
  });

  void it('keeps working when one of several endpoints refuses connections', async () => {
    const { endpoint } = await runningEtcd();
    const [deadPort] = await findFreePorts(1);
    const dcs = new EtcdDcs({ endpoints: [clientUrl(LOOPBACK_HOST, deadPort ?? 1), endpoint], tls: await clientTls() });
    try {
      const key = `${uniquePrefix('two-endpoints')}k`;
      for (let round = 0; round < 8; round += 1) {
        await dcs.put(key, String(round));
        assert.equal(await dcs.get(key), String(round));
      }
    } finally {
      await dcs.close();
    }
  });

  void it('passes over a member that accepts connections but never answers (a partitioned host)', async () => {
    const { endpoint } = await runningEtcd();
    const sockets = new Set<net.Socket>();
    const silent = net.createServer((socket) => {
      sockets.add(socket);
      socket.on('error', () => undefined);
    });
    await new Promise<void>((resolve) => silent.listen(0, LOOPBACK_HOST, resolve));
    const address = silent.address();
    assert.ok(address !== null && typeof address === 'object');
    const dcs = new EtcdDcs({ endpoints: [clientUrl(LOOPBACK_HOST, address.port), endpoint], tls: await clientTls() });
    try {
      const key = `${uniquePrefix('silent-member')}k`;
      await dcs.put(key, 'v').catch(() => undefined);
      // The client picks a member at random per call: without passing over the silent one, a round
      // (two calls) avoids it with probability 1/4, so about 9 of 12 rounds fail (3 or fewer: about
      // 1 in 2500). With it, one round fails at most; the bound leaves room for a slow machine
      // where a call to the real etcd misses its deadline now and then.
      let failures = 0;
      for (let round = 0; round < 12; round += 1) {
        const ok = await dcs.keepAlive('1').then(
          () => true,
          () => false,
        );
        const read = ok ? await dcs.get(key).then(() => true, () => false) : false;
        if (!ok || !read) failures += 1;
      }
      assert.ok(failures <= 3, `${failures} of 12 rounds timed out on the silent member`);
    } finally {
      await dcs.close();
      for (const socket of sockets) socket.destroy();
      await new Promise<void>((resolve) => silent.close(() => resolve()));
    }
  });

  void it('fails every call with DCS_UNAVAILABLE after close', async () => {
    const { endpoint } = await runningEtcd();
    const dcs = new EtcdDcs({ endpoints: [endpoint], tls: await clientTls() });
    await dcs.close();
    await dcs.close();
    await assert.rejects(dcs.get('/pgpilot-contract/closed'), (error: unknown) => error instanceof PgpilotError && error.code === 'DCS_UNAVAILABLE');
  });
});

void describe('revokeLeaseOverHttp (the watchdog path) against the same etcd', () => {
  void it('revokes a lease the gRPC client granted, deleting its keys; an unknown lease counts as revoked', async () => {
    const { endpoint } = await runningEtcd();
    const tls = await clientTls();
    const dcs = new EtcdDcs({ endpoints: [endpoint], tls });
    try {
      const key = `${uniquePrefix('http-revoke')}leader`;
      const leaseId = await dcs.grantLease(30);
      await dcs.put(key, 'node1', { leaseId });
      assert.equal(await dcs.get(key), 'node1');
      const [deadPort] = await findFreePorts(1);
      // A dead endpoint first: the next one is tried.
      await revokeLeaseOverHttp([clientUrl(LOOPBACK_HOST, deadPort ?? 1), endpoint], leaseId, tls);
      assert.equal(await dcs.get(key), null, 'the lease and its key are gone');
      assert.equal(await dcs.keepAlive(leaseId), false);
      await revokeLeaseOverHttp([endpoint], leaseId, tls);
    } finally {
      await dcs.close();
    }
  });

  void it('fails with DCS_UNAVAILABLE, bounded, when no endpoint answers', async () => {
    const [deadPort] = await findFreePorts(1);
    const tls = await clientTls();
    const startedMs = clock.nowMs();
    await assert.rejects(revokeLeaseOverHttp([clientUrl(LOOPBACK_HOST, deadPort ?? 1)], '12345', tls, { timeoutMs: 500 }), isUnavailable);
    assert.ok(clock.nowMs() - startedMs < 2_000);
    await assert.rejects(revokeLeaseOverHttp([clientUrl(LOOPBACK_HOST, deadPort ?? 1)], 'x', tls), /not an etcd lease id/);
  });

  void it('cannot revoke with a certificate of another CA: the lease and its key stay', async () => {
    const { endpoint } = await runningEtcd();
    const { other } = await pkis();
    const tls = await clientTls();
    const dcs = new EtcdDcs({ endpoints: [endpoint], tls });
    try {
      const key = `${uniquePrefix('http-revoke-foreign')}leader`;
      const leaseId = await dcs.grantLease(30);
      await dcs.put(key, 'node1', { leaseId });
      // Another CA's client certificate, trusting our CA (so only etcd's check can refuse it).
      await assert.rejects(revokeLeaseOverHttp([endpoint], leaseId, { ...other.client.material, ca: tls.ca }, { timeoutMs: 2_000 }), isUnavailable);
      assert.equal(await dcs.get(key), 'node1', 'the refused revoke changed nothing');
      await dcs.revokeLease(leaseId);
    } finally {
      await dcs.close();
    }
  });
});

void describe('etcd refuses clients without a certificate of the cluster CA', () => {
  /** etcd's JSON gateway read of `key`, over HTTPS with the given identity. */
  const rangeOver = async (endpoint: string, tls: { ca: string; cert?: string; key?: string }, key: string): Promise<number> => {
    const response = await httpsRequest(`${endpoint}/v3/kv/range`, {
      method: 'POST',
      body: JSON.stringify({ key: Buffer.from(key).toString('base64') }),
      timeoutMs: 3_000,
      tls,
    });
    return response.status;
  };

  void it('serves a client with a certificate of its CA (the control for the refusals below)', async () => {
    const { endpoint } = await runningEtcd();
    assert.equal(await rangeOver(endpoint, await clientTls(), '/pgpilot-contract/tls-control'), 200);
  });

  void it('refuses a TLS client that presents no certificate', async () => {
    const { endpoint } = await runningEtcd();
    const { ours } = await pkis();
    await assert.rejects(rangeOver(endpoint, { ca: ours.ca }, '/pgpilot-contract/no-cert'), (error: unknown) => error instanceof Error && !/refusing a plain-text/.test(error.message));
    await assert.rejects(rangeOver(endpoint.replace(/^https:/, 'http:'), { ca: ours.ca }, '/pgpilot-contract/no-cert'), /plain-text/, 'and the client never falls back to http');
  });

  void it('refuses a client whose certificate was signed by another CA', async () => {
    const { endpoint } = await runningEtcd();
    const { ours, other } = await pkis();
    await assert.rejects(rangeOver(endpoint, { ...other.client.material, ca: ours.ca }, '/pgpilot-contract/foreign'));
    const foreign = new EtcdDcs({ endpoints: [endpoint], tls: { ...other.client.material, ca: ours.ca }, operationTimeoutMs: 2_000 });
    try {
      await assert.rejects(foreign.get('/pgpilot-contract/foreign'), isUnavailable);
      await assert.rejects(foreign.put('/pgpilot-contract/foreign', 'x'), isUnavailable);
    } finally {
      await foreign.close();
    }
    // Nothing was written by the refused client.
    const dcs = new EtcdDcs({ endpoints: [endpoint], tls: await clientTls() });
    try {
      assert.equal(await dcs.get('/pgpilot-contract/foreign'), null);
    } finally {
      await dcs.close();
    }
  });

  void it('a client that trusts only another CA refuses etcd (the server is verified too)', async () => {
    const { endpoint } = await runningEtcd();
    const { ours, other } = await pkis();
    // Our valid client certificate, but the CA to verify etcd with is the other one.
    await assert.rejects(rangeOver(endpoint, { ...ours.client.material, ca: other.ca }, '/pgpilot-contract/untrusted-server'), /certificate/i);
    const wary = new EtcdDcs({ endpoints: [endpoint], tls: { ...ours.client.material, ca: other.ca }, operationTimeoutMs: 2_000 });
    try {
      await assert.rejects(wary.get('/pgpilot-contract/untrusted-server'), isUnavailable);
    } finally {
      await wary.close();
    }
  });
});
