/**
 * Random argument vectors into the real commander program (src/bin/cli.ts `runCli`) with every
 * command body stubbed (the `wrap` seam), so nothing real runs: whatever the arguments, the CLI
 * never throws and never prints a stack trace; it either reaches a command (exit 0 here, the
 * stub), prints help or the version (exit 0), or refuses with exit code 2 and a one-line
 * `error: ...` (plus commander's "did you mean" and pgpilot's hint line).
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import fc from 'fast-check';
import type { Command } from 'commander';
import { buildProgram, runCli } from '../../src/bin/cli.js';
import type { Wrap } from '../../src/cli/program-helpers.js';
import type { Output } from '../../src/cli/output.js';
import { fuzzParams } from './fuzz-settings.js';

const stub: Wrap = () => () => Promise.resolve();

/** Every command path (`config update`) and every option flag the program defines. */
function vocabulary(): { commands: string[][]; flags: string[] } {
  const program = buildProgram(() => undefined, { wrap: stub, writeOut: () => undefined, writeErr: () => undefined });
  const commands: string[][] = [];
  const flags = new Set<string>(['--help', '-h', '--version', '--']);
  const walk = (command: Command, path: string[]): void => {
    for (const option of command.options) {
      if (option.long !== undefined) flags.add(option.long);
      if (option.short !== undefined) flags.add(option.short);
    }
    for (const sub of command.commands) {
      const next = [...path, sub.name()];
      commands.push(next);
      walk(sub, next);
    }
  };
  walk(program, []);
  return { commands, flags: [...flags] };
}

void describe('fuzz: CLI argument vectors', () => {
  const { commands, flags } = vocabulary();
  const word = fc.oneof(
    fc.constantFrom(...flags),
    fc.constantFrom('demo', 'node1', '0', '-1', '99999999999999999999', '1.5', 'x=y', '=', 'quorum', 'off', '', ' ', '--set=work_mem=1MB', '-n3'),
    fc.string({ maxLength: 12 }),
    fc.string({ unit: 'binary', maxLength: 8 }),
  );
  const argv = fc.tuple(fc.option(fc.constantFrom(...commands), { nil: [] as string[] }), fc.array(word, { maxLength: 8 })).map(([command, rest]) => [...command, ...rest]);

  void it('exit 0 or 2, one error line, never a stack trace', async () => {
    await fc.assert(
      fc.asyncProperty(argv, async (args) => {
        const lines: string[] = [];
        const capture = (text: string): void => {
          lines.push(...text.split('\n').filter((l) => l.length > 0));
        };
        const output: Output = { out: () => undefined, err: capture };
        const code = await runCli(['node', 'pgpilot', ...args], { wrap: stub, output, writeOut: () => undefined, writeErr: capture });
        assert.ok(code === 0 || code === 2, `exit ${code} for ${JSON.stringify(args)}: ${lines.join(' | ')}`);
        assert.ok(!lines.some((l) => /^\s+at /.test(l)), `a stack trace for ${JSON.stringify(args)}`);
        if (code === 2) {
          assert.equal(lines.filter((l) => l.startsWith('error:')).length, 1, `one error line for ${JSON.stringify(args)}: ${lines.join(' | ')}`);
          assert.ok(lines.length <= 3, `at most error, suggestion and hint for ${JSON.stringify(args)}: ${lines.join(' | ')}`);
        }
      }),
      fuzzParams(2),
    );
  });
});
