/**
 * `pgpilot certs show NAME [--json]` and `pgpilot certs rotate NAME [--json]`: the cluster's
 * certificates (src/providers/local/local-tls.ts) and their renewal with no downtime
 * (src/providers/local/cert-rotation.ts). `show` reads files only; `rotate` is not destructive
 * (the CA stays, old certificates stay valid until they expire), so it asks no confirmation.
 */
import { refuseRemote } from '../../cluster/require-local.js';
import { clusterStatus, validateClusterName, type ProviderDeps } from '../../providers/local/local-provider.js';
import { readManifest } from '../../providers/local/cluster-store.js';
import { clientUrl } from '../../etcd/etcd-server.js';
import { adminTlsFiles, describeClusterCertificates } from '../../providers/local/local-tls.js';
import { rotateClusterCertificates } from '../../providers/local/cert-rotation.js';
import { PgpilotError } from '../../shared/errors.js';
import { printJson, renderTable, type Output } from '../output.js';

export interface CertsOptions {
  home: string;
  name: string;
  context?: string | undefined;
  json: boolean;
}

const DAY_MS = 86_400_000;

export async function runShow(options: CertsOptions, output: Output, nowMs: number): Promise<number> {
  await refuseRemote(options, 'pgpilot certs show');
  const manifest = await readManifest(options.home, validateClusterName(options.name));
  const rows = describeClusterCertificates(manifest);
  const admin = adminTlsFiles(manifest);
  const etcdEndpoints = [clientUrl(manifest.etcd.host, manifest.etcd.clientPort)];
  if (options.json) {
    printJson(output, {
      cluster: manifest.name,
      caFile: admin.caFile,
      adminCert: admin.certFile,
      adminKey: admin.keyFile,
      etcdEndpoints,
      certificates: rows.map((r) => ({
        name: r.name,
        file: r.file,
        subject: r.subject,
        issuer: r.issuer,
        serial: r.serial,
        notBefore: r.notBefore,
        notAfter: r.notAfter,
        subjectAltNames: r.subjectAltNames,
      })),
    });
    return 0;
  }
  output.out(`certificates of ${manifest.name} (CA: ${admin.caFile})`);
  output.out('');
  output.out(
    renderTable(
      ['NAME', 'SUBJECT', 'SERIAL', 'EXPIRES', 'DAYS LEFT', 'SANS'],
      rows.map((r) => [r.name, r.subject, `${r.serial.slice(0, 16)}…`, r.notAfter.replace(/\.\d+Z$/, 'Z'), String(Math.floor((r.notAfterEpochMs - nowMs) / DAY_MS)), r.subjectAltNames.join(' ') || '-']),
    ),
  );
  output.out('');
  output.out(`admin client certificate: ${admin.certFile} (key ${admin.keyFile}, mode 0600)`);
  output.out(`etcd: ETCDCTL_API=3 etcdctl --endpoints ${etcdEndpoints.join(',')} --cacert ${admin.caFile} --cert ${admin.certFile} --key ${admin.keyFile} get --prefix /pgpilot/${manifest.name} --keys-only`);
  output.out(`renew the node and client certificates (no downtime): pgpilot certs rotate ${manifest.name}`);
  return 0;
}

export async function runRotate(options: CertsOptions, deps: ProviderDeps, output: Output): Promise<number> {
  await refuseRemote(options, 'pgpilot certs rotate');
  const manifest = await readManifest(options.home, validateClusterName(options.name));
  const status = await clusterStatus(options.home, manifest.name);
  const result = await rotateClusterCertificates(manifest, status, (line) => deps.progress(line));
  const failed = result.nodes.filter((n) => !n.reloaded && status.members.find((m) => m.name === n.node)?.pid !== null);
  if (options.json) printJson(output, { ...result, certificatesAfter: describeClusterCertificates(manifest).map((r) => ({ name: r.name, serial: r.serial, notAfter: r.notAfter })) });
  else {
    output.out(`rotated ${result.certificates} certificates of ${manifest.name}; the CA is unchanged`);
    for (const n of result.nodes) output.out(`  ${n.node}: ${n.reloaded ? 'serving the new certificate' : n.detail}`);
    output.out('old certificates stay valid until they expire (no revocation list); see docs/security.md');
  }
  if (failed.length > 0) {
    throw new PgpilotError('COMMAND_FAILED', `${failed.map((n) => n.node).join(', ')} did not reload the new certificate`, {
      hint: `the new files are in place and are used at the next start; run pgpilot certs rotate ${manifest.name} again, or pgpilot restart ${manifest.name} --node NODE`,
    });
  }
  return 0;
}
