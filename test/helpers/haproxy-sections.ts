/** Reading generated HAProxy configurations in tests. */
import assert from 'node:assert/strict';

/** The lines of one `listen NAME` section (up to the next blank line), trimmed. */
export function section(config: string, name: string): string[] {
  const lines = config.split('\n');
  const start = lines.indexOf(`listen ${name}`);
  assert.notEqual(start, -1, `section ${name} missing in:\n${config}`);
  const end = lines.indexOf('', start);
  return lines.slice(start + 1, end === -1 ? undefined : end).map((l) => l.trim());
}

/** The `server` lines of a section. */
export function servers(lines: string[]): string[] {
  return lines.filter((l) => l.startsWith('server '));
}
