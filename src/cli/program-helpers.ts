/**
 * Small helpers every command registration shares: integer option parsing, the examples block of
 * `--help`, the `--home` and `--context` options, the process output, and `makeWrap`, which turns a command function
 * returning an exit code into a commander action that never throws (errors become one line + hint
 * and an exit code through `reportError`). src/bin/cli.ts and the register-* modules use them.
 */
import { InvalidArgumentError, Option, type Command } from 'commander';
import { processOutput, reportError, type Output } from './output.js';

export const output: Output = processOutput;

/** Commander argument parser for a whole number option (`--timeout 30`). */
export function parseInteger(label: string): (value: string) => number {
  return (value: string): number => {
    if (!/^-?\d+$/.test(value.trim())) throw new InvalidArgumentError(`${label} must be a whole number`);
    return Number.parseInt(value, 10);
  };
}

/** The `Examples:` block appended to a command's `--help`. */
export function examples(...lines: string[]): string {
  return `\nExamples:\n${lines.map((l) => `  $ ${l}`).join('\n')}\n`;
}

export interface HomeOption {
  home?: string;
}

export function homeOption(): Option {
  return new Option('--home <dir>', 'state directory (default: $PGPILOT_HOME, ~/.pgpilot, or /var/lib/pgpilot as root)');
}

export interface ContextOption {
  context?: string;
}

/**
 * `--context FILE`: reach the cluster through an admin context (`NAME.context.json` from
 * `pgpilot cluster init`) instead of the local home; PGPILOT_CONTEXT is the same from the
 * environment, `--context` wins (src/cluster/open-cluster-handle.ts).
 */
export function contextOption(): Option {
  return new Option('--context <file>', 'reach the cluster through this admin context file (NAME.context.json from pgpilot cluster init; default: $PGPILOT_CONTEXT, else the local home)');
}

/** Wraps a command function (resolving to an exit code) as a commander action. */
export type Wrap = <A extends unknown[]>(fn: (...args: A) => Promise<number>) => (...args: A) => Promise<void>;

/** A `Wrap` that records the exit code with `setExitCode`, and maps any error to one through `reportError`. */
export function makeWrap(setExitCode: (code: number) => void, out: Output = output): Wrap {
  return <A extends unknown[]>(fn: (...args: A) => Promise<number>) =>
    async (...args: A): Promise<void> => {
      try {
        setExitCode(await fn(...args));
      } catch (error) {
        setExitCode(reportError(out, error));
      }
    };
}

/** What a register-* module needs from the program builder. */
export interface ProgramContext {
  wrap: Wrap;
  homeOption: () => Option;
  contextOption: () => Option;
  examples: (...lines: string[]) => string;
  output: Output;
  parseInteger: (label: string) => (value: string) => number;
}

/** Signature of a module that adds commands to the program. */
export type RegisterCommands = (program: Command, ctx: ProgramContext) => void;
