/**
 * CLI output helpers: plain tables for people, JSON for tools, progress and errors on stderr (so
 * `--json` output on stdout stays parseable), and the one place that maps errors to exit codes.
 */
import { isPgpilotError } from '../shared/errors.js';
import { redactSecrets } from '../shared/logger.js';

export interface Output {
  out(text: string): void;
  err(text: string): void;
}

export const processOutput: Output = {
  out: (text) => process.stdout.write(`${text}\n`),
  err: (text) => process.stderr.write(`${text}\n`),
};

export function renderTable(headers: readonly string[], rows: ReadonlyArray<ReadonlyArray<string>>): string {
  const widths = headers.map((h, i) => Math.max(h.length, ...rows.map((r) => (r[i] ?? '').length)));
  const line = (cells: ReadonlyArray<string>) =>
    cells
      .map((c, i) => c.padEnd(widths[i] ?? 0))
      .join('  ')
      .trimEnd();
  return [line(headers), ...rows.map(line)].join('\n');
}

export function printJson(output: Output, value: unknown): void {
  output.out(JSON.stringify(value, null, 2));
}

/** Prints a one-line error and its hint; returns the exit code. Never prints a stack trace. */
export function reportError(output: Output, error: unknown): number {
  if (isPgpilotError(error)) {
    output.err(`error: ${redactSecrets(error.message)}`);
    if (error.hint !== undefined) output.err(`hint: ${redactSecrets(error.hint)}`);
    return error.exitCode;
  }
  const message = error instanceof Error ? error.message : String(error);
  output.err(`error: internal error: ${redactSecrets(message)}`);
  output.err('hint: this is a bug in pgpilot; please report it with the command you ran (PGPILOT_DEBUG=1 prints the stack)');
  if (process.env['PGPILOT_DEBUG'] === '1' && error instanceof Error && error.stack !== undefined) output.err(redactSecrets(error.stack));
  return 70;
}
