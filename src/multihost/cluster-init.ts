/**
 * The executor of `pgpilot cluster init` (the plan: src/multihost/plan-cluster-init.ts). In the
 * output directory it writes:
 *
 *   NAME.ca.crt (0644), NAME.ca.key (0600)   the cluster CA; the key is in no bundle nor the context
 *   NAME-<node>.bundle (0600)                  one node bundle per host (nodeBundleSchema)
 *   NAME.context.json (0600)                   the admin context (clusterContextSchema)
 *
 * Invariants:
 * - Nothing is written when any of those files exists, unless `force` (CLUSTER_EXISTS, exit 2):
 *   checked before any work and again just before the files go into place.
 * - Everything is made in a private staging directory inside the output directory (0700) and only
 *   renamed into place once every certificate is signed and every file is validated against its
 *   schema: a failed init (openssl missing, disk full) leaves the output directory as it was.
 *   Each file appears atomically (rename); the CA goes in first, the context last.
 * - Fresh secrets and a fresh CA every time (with `force` too: a re-init is a new cluster).
 * - Private keys and secrets are never logged or printed; progress lines name files only.
 */
import { randomBytes } from 'node:crypto';
import { existsSync } from 'node:fs';
import { mkdir, mkdtemp, rename, rm, stat } from 'node:fs/promises';
import path from 'node:path';
import type { Clock } from '../shared/clock.js';
import { PgpilotError, errorMessage } from '../shared/errors.js';
import { writeFileDurably } from '../backup/fs-object-store.js';
import { generateSecrets } from '../providers/local/cluster-store.js';
import { ensureCa } from '../tls/cluster-pki.js';
import { generatePrivateKeyPem, issueLeafCertificate } from '../tls/openssl.js';
import { BUNDLE_KIND, CONTEXT_KIND, clusterContextSchema, nodeBundleSchema, type ClusterContext, type NodeBundle } from './bundle.js';
import type { ClusterInitPlan, LeafId } from './plan-cluster-init.js';
import type { ClusterSecrets } from '../config/schema.js';

export interface ClusterInitDeps {
  clock: Clock;
  progress: (line: string) => void;
  /** Fresh secrets (default: generateSecrets); tests may pin them. */
  secrets?: () => ClusterSecrets;
}

export interface ClusterInitResult {
  outDir: string;
  /** Absolute paths of what was written. */
  files: { caCert: string; caKey: string; context: string; bundles: { node: string; file: string }[] };
}

/** A random hex suffix for the etcd initial cluster token. */
export function randomTokenSuffix(): string {
  return randomBytes(8).toString('hex');
}

function absoluteFiles(plan: ClusterInitPlan, outDir: string): ClusterInitResult['files'] {
  return {
    caCert: path.join(outDir, plan.files.caCert),
    caKey: path.join(outDir, plan.files.caKey),
    context: path.join(outDir, plan.files.context),
    bundles: plan.files.bundles.map((b) => ({ node: b.node, file: path.join(outDir, b.file) })),
  };
}

function allFiles(files: ClusterInitResult['files']): string[] {
  return [files.caCert, files.caKey, ...files.bundles.map((b) => b.file), files.context];
}

/** The files of `plan` that already exist in `outDir` (CLUSTER_EXISTS unless --force). */
export function existingFiles(plan: ClusterInitPlan, outDir: string): string[] {
  return allFiles(absoluteFiles(plan, outDir)).filter((f) => existsSync(f));
}

function refuseExisting(plan: ClusterInitPlan, found: readonly string[]): PgpilotError {
  const names = found.map((f) => path.basename(f));
  return new PgpilotError('CLUSTER_EXISTS', `cluster init ${plan.cluster}: ${names.slice(0, 3).join(', ')}${names.length > 3 ? ` and ${names.length - 3} more` : ''} already exist`, {
    hint: 'another --out directory or cluster name; --force replaces them with a new cluster (new CA and secrets: hosts running the old bundles are cut off)',
    exitCode: 2,
  });
}

function leafKey(id: LeafId): string {
  return id.kind === 'admin' ? 'admin' : `${id.kind}:${id.node}`;
}

interface Pair {
  certPem: string;
  keyPem: string;
}

async function prepareOutDir(outDir: string): Promise<void> {
  try {
    await mkdir(outDir, { recursive: true, mode: 0o700 });
    const info = await stat(outDir);
    if (!info.isDirectory()) throw new Error('not a directory');
  } catch (error) {
    throw new PgpilotError('INPUT_INVALID', `--out ${outDir} cannot be used: ${(error as NodeJS.ErrnoException).code ?? errorMessage(error)}`, {
      hint: 'give a directory you can write (it is created when missing)',
      exitCode: 2,
      cause: error,
    });
  }
}

/** Runs the plan; returns where the files went. */
export async function runClusterInit(plan: ClusterInitPlan, outDirInput: string, options: { force: boolean }, deps: ClusterInitDeps): Promise<ClusterInitResult> {
  const outDir = path.resolve(outDirInput);
  const found = existingFiles(plan, outDir);
  if (found.length > 0 && !options.force) throw refuseExisting(plan, found);
  await prepareOutDir(outDir);
  const files = absoluteFiles(plan, outDir);
  const staging = await mkdtemp(path.join(outDir, `.${plan.cluster}.init-`));
  try {
    deps.progress(`creating the cluster CA of ${plan.cluster}`);
    const stagedCa = { caFile: path.join(staging, plan.files.caCert), caKeyFile: path.join(staging, plan.files.caKey) };
    const ca = await ensureCa(stagedCa, plan.cluster);

    deps.progress(`signing ${plan.leaves.length} certificates (admin, ${plan.nodes.length} node, ${plan.etcdMembers.length} etcd member)`);
    const signed = new Map<string, Pair>();
    await Promise.all(
      plan.leaves.map(async (leaf) => {
        const keyPem = await generatePrivateKeyPem();
        const certPem = await issueLeafCertificate({ caCertPem: ca.certPem, caKeyPem: ca.keyPem, keyPem, request: leaf.request });
        signed.set(leafKey(leaf.id), { certPem, keyPem });
      }),
    );
    const leafOf = (id: LeafId): Pair => {
      const pair = signed.get(leafKey(id));
      if (pair === undefined) throw new PgpilotError('INTERNAL', `certificate ${leafKey(id)} was not signed`);
      return pair;
    };

    const secrets = (deps.secrets ?? generateSecrets)();
    const createdAt = new Date(deps.clock.nowMs()).toISOString();
    const nodes = plan.nodes.map((n) => ({ name: n.name, host: n.host, etcdMember: n.etcdMember }));
    const store = plan.backupStore === null ? {} : { backupStore: plan.backupStore };

    const staged: { from: string; to: string }[] = [
      { from: stagedCa.caKeyFile, to: files.caKey },
      { from: stagedCa.caFile, to: files.caCert },
    ];
    for (const node of plan.nodes) {
      const nodePair = leafOf({ kind: 'node', node: node.name });
      const etcdPair = node.etcdMember ? leafOf({ kind: 'etcd', node: node.name }) : null;
      const bundle: NodeBundle = {
        kind: BUNDLE_KIND,
        version: 1,
        cluster: plan.cluster,
        node: node.name,
        createdAt,
        host: node.host,
        ports: plan.ports,
        nodes,
        etcd: plan.etcd,
        etcdMember:
          etcdPair === null || plan.initialCluster === null || plan.initialClusterToken === null
            ? null
            : { name: node.name, initialCluster: plan.initialCluster, initialClusterState: 'new', initialClusterToken: plan.initialClusterToken, certPem: etcdPair.certPem, keyPem: etcdPair.keyPem },
        clientCidrs: plan.clientCidrs,
        tags: {},
        secrets,
        tls: { caPem: ca.certPem, certPem: nodePair.certPem, keyPem: nodePair.keyPem },
        ...store,
      };
      const checked = nodeBundleSchema.safeParse(bundle);
      if (!checked.success) throw new PgpilotError('INTERNAL', `the bundle of ${node.name} does not match its schema: ${checked.error.issues[0]?.message ?? ''}`);
      const target = files.bundles.find((b) => b.node === node.name)?.file ?? path.join(outDir, `${plan.cluster}-${node.name}.bundle`);
      const stagedFile = path.join(staging, path.basename(target));
      await writeFileDurably(stagedFile, `${JSON.stringify(bundle, null, 2)}\n`, 0o600);
      staged.push({ from: stagedFile, to: target });
    }

    const admin = leafOf({ kind: 'admin' });
    const context: ClusterContext = {
      kind: CONTEXT_KIND,
      version: 1,
      cluster: plan.cluster,
      createdAt,
      ports: plan.ports,
      nodes,
      etcd: plan.etcd,
      clientCidrs: plan.clientCidrs,
      secrets,
      tls: { caPem: ca.certPem, certPem: admin.certPem, keyPem: admin.keyPem },
      // Relative to the context file: the two stay together when the directory moves.
      caKeyFile: plan.files.caKey,
      ...store,
    };
    const checkedContext = clusterContextSchema.safeParse(context);
    if (!checkedContext.success) throw new PgpilotError('INTERNAL', `the context does not match its schema: ${checkedContext.error.issues[0]?.message ?? ''}`);
    const stagedContext = path.join(staging, plan.files.context);
    await writeFileDurably(stagedContext, `${JSON.stringify(context, null, 2)}\n`, 0o600);
    staged.push({ from: stagedContext, to: files.context });

    // A second init racing this one: refuse rather than mix two clusters' files.
    const raced = existingFiles(plan, outDir);
    if (raced.length > 0 && !options.force) throw refuseExisting(plan, raced);
    for (const { from, to } of staged) {
      await rename(from, to);
      deps.progress(`wrote ${to}`);
    }
    return { outDir, files };
  } finally {
    await rm(staging, { recursive: true, force: true });
  }
}

