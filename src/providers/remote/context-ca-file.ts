/**
 * The cluster CA of an admin context as a file on the operator's machine: libpq's `sslrootcert`
 * (psql, printed connection strings) needs a file, and the context holds the CA as PEM text.
 *
 * Where: `<cluster>.ca.crt` next to the context file (the same name `pgpilot cluster init` uses
 * for it), written (0644, atomically) when absent or different; when that directory cannot be
 * written, `<home>/contexts/<cluster>/ca.crt` instead. The CA certificate is public: no secret is
 * written here.
 */
import { readFileSync } from 'node:fs';
import { mkdir, rename, writeFile } from 'node:fs/promises';
import path from 'node:path';

async function ensureFile(file: string, pem: string): Promise<void> {
  let current: string | null = null;
  try {
    current = readFileSync(file, 'utf8');
  } catch {
    current = null;
  }
  if (current === pem) return;
  await mkdir(path.dirname(file), { recursive: true });
  const temp = `${file}.tmp-${process.pid}`;
  await writeFile(temp, pem, { mode: 0o644 });
  await rename(temp, file);
}

/** The CA file for the context at `contextFile` (see the header for where). */
export async function contextCaFile(contextFile: string, cluster: string, caPem: string, home: string): Promise<string> {
  const beside = path.join(path.dirname(path.resolve(contextFile)), `${cluster}.ca.crt`);
  try {
    await ensureFile(beside, caPem);
    return beside;
  } catch {
    const fallback = path.join(home, 'contexts', cluster, 'ca.crt');
    await ensureFile(fallback, caPem);
    return fallback;
  }
}
