/**
 * The chaos run's certificates, made by the outer process before anything starts (pgpilot has no
 * plain-text mode): a CA of its own for the run and the leaves it signs, with pgpilot's own signing
 * code (src/tls/cluster-pki.ts). Files: see layout.ts.
 *
 * - node certificates (n1..n3): server-and-client, SANs = every node's address + loopback, because a
 *   node's proxy passes TLS through to the leader and the leader's certificate must match whichever
 *   node address was dialled; the key is handed to the postgres OS user (postgres reads it and
 *   refuses a key it does not own); the agent and its watchdog present it to etcd as their client
 *   certificate;
 * - etcd members (one per host n1..n3): server-and-client (client and peer port: peers present it as
 *   their client certificate), SANs = that host's address + loopback only, so a member can only
 *   serve (and peer) as itself;
 * - harness: client only; the runner's identity towards etcd (waitForEtcd, the DCS reads of the
 *   checker). The workload, probe and checker reach postgres with the superuser's password over
 *   TLS verified against the run's CA (`verifyFullSsl`).
 */
import { mkdirSync, chmodSync } from 'node:fs';
import path from 'node:path';
import type { ClusterSecrets } from '../../src/config/schema.js';
import { givePostgres } from '../../src/postgres/initdb.js';
import { ensureCa, issueLeaf, LEAF_VALID_DAYS, type LeafPlan } from '../../src/tls/cluster-pki.js';
import { readTlsMaterial, type TlsMaterial } from '../../src/tls/tls-files.js';
import { CLUSTER_NAME, type RunLayout } from './layout.js';
import { NODE_NAMES, nodeAddress } from './topology.js';

const LOOPBACK_ADDRESSES = ['127.0.0.1', '::1'];

/** What the runner's clients need: the superuser's password (postgres) and the harness identity (CA + client certificate). */
export interface HarnessCredentials {
  secrets: ClusterSecrets;
  tls: TlsMaterial;
}

/** The leaves of a run (pure apart from the chown hook). */
export function chaosLeafPlans(layout: RunLayout): LeafPlan[] {
  const nodeAddresses = [...NODE_NAMES.map((n) => nodeAddress(n)), ...LOOPBACK_ADDRESSES];
  const plans: LeafPlan[] = [
    {
      certFile: layout.harnessCertFile,
      keyFile: layout.harnessKeyFile,
      request: { commonName: 'harness', ipAddresses: [], dnsNames: [], usage: 'client', validDays: LEAF_VALID_DAYS },
    },
  ];
  for (const name of NODE_NAMES) {
    const node = layout.node(name);
    plans.push({
      certFile: node.etcdCertFile,
      keyFile: node.etcdKeyFile,
      request: { commonName: `etcd-${name}`, ipAddresses: [nodeAddress(name), ...LOOPBACK_ADDRESSES], dnsNames: ['localhost'], usage: 'server-and-client', validDays: LEAF_VALID_DAYS },
    });
    plans.push({
      certFile: node.tlsCertFile,
      keyFile: node.tlsKeyFile,
      chown: givePostgres,
      request: { commonName: name, ipAddresses: nodeAddresses, dnsNames: ['localhost', ...NODE_NAMES], usage: 'server-and-client', validDays: LEAF_VALID_DAYS },
    });
  }
  return plans;
}

/** Creates the run's CA and every leaf. Returns the number of leaves written. */
export async function provisionChaosTls(layout: RunLayout): Promise<number> {
  mkdirSync(layout.tlsDir, { recursive: true });
  chmodSync(layout.tlsDir, 0o755);
  const ca = await ensureCa({ caFile: layout.caFile, caKeyFile: layout.caKeyFile }, CLUSTER_NAME);
  const plans = chaosLeafPlans(layout);
  for (const plan of plans) {
    mkdirSync(path.dirname(plan.certFile), { recursive: true });
    chmodSync(path.dirname(plan.certFile), 0o755);
    await issueLeaf(ca, plan);
  }
  return plans.length;
}

/** The runner's identity (CA + harness client certificate), read from the run's files. */
export function harnessTls(layout: RunLayout): TlsMaterial {
  return readTlsMaterial({ caFile: layout.caFile, certFile: layout.harnessCertFile, keyFile: layout.harnessKeyFile });
}
