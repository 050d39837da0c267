/**
 * Where the shipped monitoring files live: `monitoring/` at the root of the pgpilot installation
 * (the repository), found from this module's own location (dist/src/metrics/ -> ../../../).
 */
import { existsSync } from 'node:fs';
import { fileURLToPath } from 'node:url';

function installedFile(relative: string): string {
  return fileURLToPath(new URL(`../../../${relative}`, import.meta.url));
}

export function alertRulesFile(): string {
  return installedFile('monitoring/alerts.yml');
}

export function dashboardFile(): string {
  return installedFile('monitoring/grafana-dashboard.json');
}

/** The alert rules file when it is there (a partial installation may lack it). */
export function existingAlertRulesFile(): string | null {
  const file = alertRulesFile();
  return existsSync(file) ? file : null;
}
